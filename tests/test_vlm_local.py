"""Local VLM backends (transformers, mlx) on tiny random-weight models built offline.

Each family (PaliGemma, Gemma 3, LLaMA-3.2-Vision, Qwen2-VL) is built from its configuration
classes by `tests.support.tiny_vlms`, saved with `save_pretrained` and loaded by the backend
from that directory, as a user's download would be. Random weights answer garbage, so these
tests check the pipeline (prompt rendering, batching, token counts, protocol shape), not
labels; a second build per family is forced to answer "happy 5" (every other token
suppressed) so a context-carry conversation provably runs all three steps.
"""

from __future__ import annotations

import asyncio
import math
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers")

from inference.datasets.base import ImageRecord
from inference.models.base import PARSE_STATUSES
from inference.vlm.mlx_backend import (
    UNAVAILABLE_MESSAGE,
    MlxBackend,
    MlxUnavailableError,
    mlx_supported_platform,
)
from inference.vlm.protocols import ProtocolConfig, run_protocol
from inference.vlm.transformers_backend import (
    ModelNotAvailableError,
    TransformersBackend,
    chat_messages,
    paligemma_prompt,
)
from inference.vlm.types import (
    ChatBackend,
    ChatRequest,
    ChatResponse,
    GenerationParams,
    TransportError,
    Turn,
)
from tests.support.tiny_vlms import FAMILIES, build_tiny_vlm

pytestmark = pytest.mark.filterwarnings(  # transformers' PaliGemma processor on numpy 2
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning")

LONDON = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "london_set"
FORCED = "happy 5"


@pytest.fixture(scope="module")
def tiny_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny_vlms")
    dirs = {}
    for family in FAMILIES:
        dirs[family] = build_tiny_vlm(family, root / family)
        dirs[family + ":forced"] = build_tiny_vlm(family, root / f"{family}_forced",
                                                  only_answer=FORCED)
    return dirs


@pytest.fixture(scope="module")
def face() -> tuple[ImageRecord, bytes]:
    path = LONDON / "smiling_front" / "001_08.jpg"
    if not path.is_file():
        candidates = sorted(LONDON.glob("*_front/*.jpg"))
        if not candidates:
            pytest.skip(f"the London Set is not at {LONDON} (see README: ../shared/)")
        path = candidates[0]
    data = path.read_bytes()
    import hashlib

    from PIL import Image

    with Image.open(path) as im:
        width, height = im.size
    record = ImageRecord(
        image_id=path.relative_to(LONDON).as_posix(), path=path,
        image_hash=hashlib.sha256(data).hexdigest(), source_label=path.parent.name.split("_")[0],
        identity=path.stem.split("_")[0], race=None, gender=None, age=None,
        width=width, height=height)
    return record, data


def _request(image: bytes, text: str, *, max_tokens: int = 8, temperature: float = 0.0,
             seed: int | None = None, history: tuple[Turn, ...] = ()) -> ChatRequest:
    return ChatRequest(turns=history + (Turn("user", text, with_image=not history),),
                       image_bytes=image, image_mime="image/jpeg",
                       params=GenerationParams(temperature=temperature, max_tokens=max_tokens,
                                               seed=seed))


class Recording:
    """A ChatBackend that passes requests on and keeps them (no patching of the backend)."""

    def __init__(self, inner: TransformersBackend) -> None:
        self.inner, self.name = inner, inner.name
        self.requests: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.requests.append(request)
        return await self.inner.complete(request)


# ----------------------------------------------------------------------------- prompts


def test_paligemma_prompt_keeps_the_task_prefix_and_flattens_conversations():
    q1 = "answer en Classify the image into one of the eight expressions: [happy, sad]."
    assert paligemma_prompt((Turn("user", q1, with_image=True),)) == (
        "answer en classify the image into one of the eight expressions: [happy, sad].")
    assert paligemma_prompt((Turn("user", "What is the\nexpression?", with_image=True),)) == (
        "answer en what is the expression?")
    turns = (Turn("system", "Be brief."), Turn("user", "What is it? One word.", with_image=True),
             Turn("assistant", "Happy"), Turn("user", "You said happy. Rate 1 to 9."))
    assert paligemma_prompt(turns) == (
        "answer en be brief. what is it? one word. happy you said happy. rate 1 to 9.")
    assert paligemma_prompt((Turn("user", "caption es", with_image=True),)) == "caption es"


def test_chat_messages_put_the_image_in_the_first_marked_turn():
    turns = (Turn("system", "S"), Turn("user", "q1", with_image=True), Turn("assistant", "a1"),
             Turn("user", "q2", with_image=True))
    assert chat_messages(turns) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q1"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a1"}]},
        {"role": "user", "content": [{"type": "text", "text": "q2"}]},
    ]
    unmarked = chat_messages((Turn("user", "q"),))
    assert unmarked[0]["content"][0] == {"type": "image"}


# ----------------------------------------------------------------------------- per family


@pytest.mark.parametrize("family", FAMILIES)
def test_single_turn_answer(family, tiny_dirs, face):
    backend = TransformersBackend(str(tiny_dirs[family]), local_files_only=True)
    assert isinstance(backend, ChatBackend)
    assert backend.family == family and backend.device == "cpu" and backend.dtype == "float32"
    response = asyncio.run(backend.complete(_request(
        face[1], "What is the facial expression in this image?", max_tokens=8)))
    assert isinstance(response.text, str) and not response.refused
    assert response.finish_reason in ("stop", "length")
    assert 1 <= response.output_tokens <= 8
    if response.finish_reason == "length":
        assert response.output_tokens == 8
    assert response.input_tokens > 5  # prompt + image placeholder tokens
    assert response.latency_ms > 0
    assert backend.generate_calls == 1 and backend.batch_sizes == [1]


@pytest.mark.parametrize("family", FAMILIES)
def test_context_carry_conversation_on_random_weights(family, tiny_dirs, face):
    record, data = face
    backend = TransformersBackend(str(tiny_dirs[family]))
    protocol = ProtocolConfig("context_carry", "tae_context_carry",
                              params=GenerationParams(max_tokens=6))
    result = asyncio.run(run_protocol(backend, protocol, record, data, "image/jpeg"))
    assert result.failures == []
    answers = result.answers
    assert 1 <= len(answers) <= 3
    assert [a.step for a in answers] == list(range(1, len(answers) + 1))
    assert [a.step_name for a in answers] == ["emotion", "valence", "arousal"][: len(answers)]
    for i, a in enumerate(answers):
        assert a.raw_text is not None and a.parse_status in PARSE_STATUSES
        assert a.output_tokens >= 1 and a.input_tokens > 0
        assert a.preprocessing["backend"] == backend.name
        valid = a.parse_status in ("ok", "repaired")
        if i + 1 < len(answers):
            assert valid  # a later step was asked only after a valid answer
        elif len(answers) < 3:
            assert not valid  # the conversation stopped because this answer was not valid


@pytest.mark.parametrize("family", FAMILIES)
def test_context_carry_runs_three_turns_carrying_the_answers(family, tiny_dirs, face):
    record, data = face
    backend = TransformersBackend(str(tiny_dirs[family + ":forced"]))
    recording = Recording(backend)
    protocol = ProtocolConfig("context_carry", "tae_context_carry",
                              params=GenerationParams(max_tokens=1))
    result = asyncio.run(run_protocol(recording, protocol, record, data, "image/jpeg"))
    assert [(a.step, a.step_name, a.raw_text) for a in result.answers] == [
        (1, "emotion", FORCED), (2, "valence", FORCED), (3, "arousal", FORCED)]
    assert result.answers[0].predicted_label == "happy"
    assert [a.predicted_value for a in result.answers[1:]] == [5.0, 5.0]
    assert all(a.output_tokens == 1 for a in result.answers)
    # each turn carries the earlier questions and the model's answers
    assert [len(r.turns) for r in recording.requests] == [1, 3, 5]
    final = backend.render_prompt(recording.requests[-1].turns)
    assert final.count(FORCED) == 2
    assert "happy with pleasantness 5" in final.lower()
    if family == "paligemma":
        assert final.startswith("<image>answer en what is the facial expression in this image?")
        assert "\n" not in final
    else:
        assert final.lower().count("what is the facial expression") == 1
    lengths = [a.input_tokens for a in result.answers]
    assert lengths[0] < lengths[1] < lengths[2]


@pytest.mark.parametrize("family", FAMILIES)
def test_concurrent_requests_are_batched_and_match_one_at_a_time(family, tiny_dirs, face):
    image = face[1]
    questions = ["What is the facial expression in this image?", "happy or sad?",
                 ("Choose one from: happy, sad, angry, fear, disgust, neutral. Answer with a "
                  "single word only."), "emotion?", "Rate from 1 to 9 where 1 is very unpleasant",
                 "What expression?", "neutral"]
    requests = [_request(image, q, max_tokens=6) for q in questions]
    batched = TransformersBackend(str(tiny_dirs[family]), max_batch_size=3, batch_wait_ms=300)

    async def together():
        return await asyncio.gather(*(batched.complete(r) for r in requests))

    got = asyncio.run(together())
    assert batched.generate_calls == math.ceil(len(requests) / 3) == 3
    assert batched.batch_sizes == [3, 3, 1]

    single = TransformersBackend(str(tiny_dirs[family]), max_batch_size=1, batch_wait_ms=0)

    async def one_by_one():
        return [await single.complete(r) for r in requests]

    alone = asyncio.run(one_by_one())
    assert single.generate_calls == len(requests)
    assert [r.text for r in got] == [r.text for r in alone]
    assert [r.output_tokens for r in got] == [r.output_tokens for r in alone]
    assert [r.input_tokens for r in got] == [r.input_tokens for r in alone]  # padding excluded
    assert len({r.input_tokens for r in got}) > 1  # the batch really needed padding
    batched.close()
    single.close()


def test_different_decoding_settings_are_not_batched_together(tiny_dirs, face):
    backend = TransformersBackend(str(tiny_dirs["qwen2_vl"]), max_batch_size=8, batch_wait_ms=200)
    requests = [_request(face[1], "emotion?", max_tokens=4),
                _request(face[1], "emotion?", max_tokens=4, temperature=1.0, seed=1),
                _request(face[1], "mood?", max_tokens=4),
                _request(face[1], "mood?", max_tokens=4, temperature=1.0, seed=2)]

    async def together():
        return await asyncio.gather(*(backend.complete(r) for r in requests))

    asyncio.run(together())
    assert backend.generate_calls == 2 and sorted(backend.batch_sizes) == [2, 2]


def test_sampling_repeats_with_the_same_seed(tiny_dirs, face):
    backend = TransformersBackend(str(tiny_dirs["gemma3"]), max_batch_size=1, batch_wait_ms=0)

    async def ask(seed):
        return (await backend.complete(_request(face[1], "emotion?", max_tokens=12,
                                                temperature=1.5, seed=seed))).text

    first = [asyncio.run(ask(s)) for s in (1, 2, 3, 4)]
    again = [asyncio.run(ask(s)) for s in (1, 2, 3, 4)]
    assert first == again
    assert len(set(first)) > 1  # different seeds sample different answers


def test_processor_kwargs_reach_the_image_processor(tiny_dirs, face):
    request = _request(face[1], "emotion?", max_tokens=2)
    default = TransformersBackend(str(tiny_dirs["qwen2_vl"]))
    larger = TransformersBackend(str(tiny_dirs["qwen2_vl"]), processor_kwargs={
        "size": {"shortest_edge": 32 * 32, "longest_edge": 32 * 32}})
    n_default = asyncio.run(default.complete(request)).input_tokens
    n_larger = asyncio.run(larger.complete(request)).input_tokens
    assert n_larger - n_default == 16 - 4  # 32x32 px -> 16 merged patches instead of 4


def test_unreadable_image_is_a_client_error(tiny_dirs):
    backend = TransformersBackend(str(tiny_dirs["mllama"]))
    with pytest.raises(TransportError) as info:
        asyncio.run(backend.complete(_request(b"not an image", "emotion?")))
    assert info.value.kind == "client_error" and not info.value.retryable
    assert backend.generate_calls == 0


# ----------------------------------------------------------------------------- loading errors


def test_missing_model_offline_says_what_to_download_and_where(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(ModelNotAvailableError) as info:
        TransformersBackend("fer-bias-warehouse-test/no-such-vlm", local_files_only=True)
    msg = str(info.value)
    assert "'fer-bias-warehouse-test/no-such-vlm' (revision 'main')" in msg
    assert "hf download fer-bias-warehouse-test/no-such-vlm --revision main" in msg
    assert "huggingface-cli download fer-bias-warehouse-test/no-such-vlm" in msg
    assert "--local-dir" in msg and "local_files_only=True" in msg

    # HF_HUB_OFFLINE wins over local_files_only=False: still nothing is downloaded
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotAvailableError, match="HF_HUB_OFFLINE is set") as info:
        TransformersBackend("fer-bias-warehouse-test/no-such-vlm", local_files_only=False,
                            revision="v1.0")
    assert "--revision v1.0" in str(info.value)

    missing = tmp_path / "models" / "paligemma"
    with pytest.raises(ModelNotAvailableError, match="does not exist.*--local-dir"):
        TransformersBackend(str(missing))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotAvailableError, match="no config.json"):
        TransformersBackend(str(tmp_path / "empty"))


def test_load_in_4bit_on_cpu_is_a_clear_error(tiny_dirs):
    with pytest.raises(ValueError, match=r"load_in_4bit=True needs a CUDA GPU.*device='cpu'"):
        TransformersBackend(str(tiny_dirs["paligemma"]), device="cpu", load_in_4bit=True)


def test_bad_arguments_are_clear_errors(tiny_dirs):
    with pytest.raises(ValueError, match="dtype must be one of"):
        TransformersBackend(str(tiny_dirs["gemma3"]), dtype="int8")
    with pytest.raises(ValueError, match="family 'llava'.*model_type 'gemma3'.*supported"):
        TransformersBackend(str(tiny_dirs["gemma3"]), family="llava")
    with pytest.raises(ValueError, match="max_batch_size"):
        TransformersBackend(str(tiny_dirs["gemma3"]), max_batch_size=0)


# ----------------------------------------------------------------------------- mlx


@pytest.mark.skipif(mlx_supported_platform(), reason="checks the non-Apple-silicon error")
def test_mlx_backend_outside_apple_silicon_is_a_clear_error():
    with pytest.raises(MlxUnavailableError, match=UNAVAILABLE_MESSAGE):
        MlxBackend("mlx-community/Qwen2-VL-2B-Instruct-4bit")


def _mlx_vlm_importable() -> bool:
    if not mlx_supported_platform():
        return False
    try:
        import mlx_vlm  # noqa: F401
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _mlx_vlm_importable(),
                    reason="mlx-vlm runs on Apple silicon only (mlx cannot install on Linux)"
                    if sys.platform != "darwin" else "mlx-vlm is not installed")
def test_mlx_backend_answers_a_context_carry_conversation(tiny_dirs, face):
    record, data = face
    backend = MlxBackend(str(tiny_dirs["qwen2_vl"]))
    response = asyncio.run(backend.complete(_request(data, "emotion?", max_tokens=4)))
    assert isinstance(response.text, str)
    protocol = ProtocolConfig("context_carry", "tae_context_carry",
                              params=GenerationParams(max_tokens=4))
    result = asyncio.run(run_protocol(backend, protocol, record, data, "image/jpeg"))
    assert result.failures == [] and 1 <= len(result.answers) <= 3
