"""VLM kinds (openai, gemini) as model adapters: `VLMAdapter` on real London Set images through
the real `openai` / `google-genai` clients against the loopback servers in tests/support
(nothing patched): protocols, retries, transport failures, the response cache, secrets, the
external-API rule, config validation and the dry run."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from inference import warehouse
from inference.config import ConfigError, DatasetConfig, ModelConfig, parse_config
from inference.datasets import load_london_set
from inference.frames import predictions_frame, transport_failures_frame
from inference.models import build_model
from inference.models.vlm import ExternalAPIError, VLMAdapter, is_local_url
from support.gemini_server import GeminiServer, finish_safety, prompt_blocked
from support.openai_server import (
    OpenAIServer, answer, client_error, hang, rate_limited, refusal, server_error,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
LONDON = REPO_ROOT.parent / "shared" / "datasets" / "london_set"
OPENAI_KEY = "sk-test-adapter-SECRET-0123456789"
GEMINI_KEY = "AIza-test-adapter-SECRET-0123456789"
N_IMAGES = 4


@pytest.fixture(scope="module")
def images():
    load = load_london_set(LONDON)
    return sorted(load.images, key=lambda i: i.image_id)[:N_IMAGES]


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["openai", "gemini"])
def served(request, monkeypatch, tmp_path):
    """(kind, server, make(options) -> VLMAdapter) for each HTTP kind."""
    kind = request.param
    if kind == "openai":
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
        server = OpenAIServer()
    else:
        monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
        server = GeminiServer()
    with server:
        def make(version: str = "v1", **options) -> VLMAdapter:
            options.setdefault("base_url", server.base_url)
            options.setdefault("timeout_s", 5)
            cfg = ModelConfig(name=f"{kind}_vlm", kind=kind, version=version,
                              options={"model_id": "test-model", **options})
            return VLMAdapter(cfg, tmp_path / "cache")

        yield kind, server, make


def test_answers_land_with_prompt_hash_raw_text_and_status(served, images, tmp_path):
    kind, server, make = served
    server.default_text = "happy"
    adapter = make(protocol={"name": "single"}, price_per_million_tokens={"input": 1, "output": 2})
    answers = adapter.predict(images)
    assert len(answers) == N_IMAGES and server.generation_count == N_IMAGES
    assert [a.image_id for a in answers] == [i.image_id for i in images]
    assert {a.parse_status for a in answers} == {"ok"} and {a.predicted_label for a in answers} == {"happy"}
    assert all(a.raw_text == "happy" and len(a.prompt_hash) == 64 for a in answers)
    assert adapter.template.hash == answers[0].prompt_hash and adapter.label_set == "canonical"
    # the real image bytes were sent: the file's hash is the image_hash
    sent = {digest(r.images[0]) for r in server.generation_requests}
    assert sent == {i.image_hash for i in images}
    usage = adapter.usage
    assert usage["calls"] == N_IMAGES and usage["cache_hits"] == 0
    assert usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert usage["cost_usd"] == pytest.approx((usage["input_tokens"] + 2 * usage["output_tokens"]) / 1e6)
    assert len(adapter.weights_sha256) == 64 and adapter.transport_failures == []


def test_second_predict_makes_no_http_call_and_a_killed_run_asks_only_for_the_rest(served, images):
    kind, server, make = served
    server.default_text = "sad"
    first = make(protocol={"name": "maj_at_k", "k": 2, "temperature": 1.0}).predict(images[:2])
    assert server.generation_count == 4
    again = make(protocol={"name": "maj_at_k", "k": 2, "temperature": 1.0})
    answers = again.predict(images[:2])
    assert server.generation_count == 4  # zero calls
    assert again.usage["calls"] == 0 and again.usage["cache_hits"] == 4
    assert [(a.image_id, a.sample_index, a.raw_text) for a in answers] == \
        [(a.image_id, a.sample_index, a.raw_text) for a in first]
    # "killed" after two images: the full run asks only for the two missing ones
    more = make(protocol={"name": "maj_at_k", "k": 2, "temperature": 1.0})
    assert len(more.predict(images)) == 2 * N_IMAGES
    assert server.generation_count == 8 and more.usage["cache_hits"] == 4
    # another version or protocol is another answer: not served from the cache
    make(version="v2", protocol={"name": "single"}).predict(images[:1])
    assert server.generation_count == 9


def test_maj_at_5_and_retry_until_valid_store_every_sample_and_try(served, images):
    kind, server, make = served
    server.default_text = "neutral"
    answers = make(protocol={"name": "maj_at_k", "k": 5, "temperature": 1.0}).predict(images[:2])
    assert sorted({a.sample_index for a in answers}) == [0, 1, 2, 3, 4]
    assert len(answers) == 10 and server.generation_count == 10
    server.reset()
    # image 1: two unparseable tries, then a valid answer; every try is a row
    target = images[0].image_hash

    def responder(recorded):
        if digest(recorded.images[0]) == target and responder.bad < 2:
            responder.bad += 1
            return answer("hmm, hard to say")
        return answer("surprise")

    responder.bad = 0
    server.responder = responder
    tried = make(protocol={"name": "retry_until_valid", "max_tries": 4}).predict(images[:2])
    first = [a for a in tried if a.image_hash == target]
    assert [(a.attempt, a.parse_status) for a in first] == [(1, "unparseable"), (2, "unparseable"), (3, "ok")]
    assert [a.attempt for a in tried if a.image_hash != target] == [1]


def test_rate_limits_server_errors_and_timeouts_are_retried(served, images):
    kind, server, make = served
    server.default_text = "happy"
    server.enqueue(rate_limited(retry_after="0"), server_error(500), hang(3))
    adapter = make(protocol={"name": "single"}, timeout_s=1, max_retries=4, max_in_flight=1)
    answers = adapter.predict(images[:2])
    assert [a.parse_status for a in answers] == ["ok", "ok"]
    assert adapter.transport_failures == []
    assert adapter.usage["calls"] == 5 and server.generation_count == 5


def test_exhausted_retries_and_safety_blocks_are_transport_failures_not_answers(served, images):
    kind, server, make = served
    down, blocked = images[0].image_hash, images[1].image_hash

    def responder(recorded):
        h = digest(recorded.images[0])
        if h == down:
            return server_error(503)
        if h == blocked:
            if kind == "openai":
                return client_error(400, "rejected", code="content_filter")
            return finish_safety() if responder.n % 2 else prompt_blocked()
        return answer("fear")

    responder.n = 0
    server.responder = responder
    adapter = make(protocol={"name": "context_carry"}, max_retries=2)
    answers = adapter.predict(images)
    assert {a.image_hash for a in answers} == {i.image_hash for i in images[2:]}
    failures = {f["image_hash"]: f for f in adapter.transport_failures}
    assert set(failures) == {down, blocked}
    assert failures[down]["kind"] == "server_error" and failures[down]["status"] == 503
    assert failures[blocked]["kind"] == "safety_block"
    assert failures[down]["step"] == 1 and failures[down]["step_name"] == "emotion"
    # 503: first call + 2 retries; a safety block is not retried
    calls = [digest(r.images[0]) for r in server.generation_requests]
    assert calls.count(down) == 3 and calls.count(blocked) == 1
    # failures are not cached: a re-run asks again for them only
    server.reset()
    adapter.predict(images)
    assert {digest(r.images[0]) for r in server.generation_requests} == {down, blocked}


def test_refusal_is_an_answer_with_status_refused(served, images):
    kind, server, make = served
    if kind == "openai":
        server.enqueue(refusal("I'm sorry, I can't help with identifying emotions."))
    else:
        server.enqueue(answer("I'm sorry, but I can't help with that."))
    answers = make(protocol={"name": "single"}, max_in_flight=1).predict(images[:1])
    assert [(a.parse_status, a.predicted_label) for a in answers] == [("refused", None)]
    assert "sorry" in answers[0].raw_text


def test_missing_key_names_the_variable(served, images, monkeypatch):
    kind, server, make = served
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    with pytest.raises(RuntimeError) as err:
        make(protocol={"name": "single"}).predict(images[:1])
    variable = "OPENAI_API_KEY" if kind == "openai" else "GEMINI_API_KEY"
    assert variable in str(err.value) and f"models.{kind}_vlm" in str(err.value)
    with pytest.raises(RuntimeError, match="MY_VLM_KEY"):
        make(protocol={"name": "single"}, api_key_env="MY_VLM_KEY").predict(images[:1])
    assert server.generation_count == 0


def test_key_never_reaches_duckdb_or_error_text(served, images, tmp_path):
    kind, server, make = served
    key = OPENAI_KEY if kind == "openai" else GEMINI_KEY
    echo = images[1].image_hash

    def responder(recorded):  # a provider that quotes the key back in its error message
        if digest(recorded.images[0]) == echo:
            return client_error(401, f"Incorrect API key provided: {key}")
        return answer("anger")

    server.responder = responder
    adapter = make(protocol={"name": "single"})
    answers = adapter.predict(images)
    headers = server.generation_requests[0].headers
    assert key in (headers.get("authorization", "") + headers.get("x-goog-api-key", ""))
    assert [f["kind"] for f in adapter.transport_failures] == ["client_error"]
    assert key not in repr(adapter.transport_failures) and "***" in adapter.transport_failures[0]["message"]
    path = tmp_path / "w.duckdb"
    with warehouse.writer(path) as con:
        slice_ = {"model": "m", "model_version": "v1", "dataset": "london"}
        warehouse.replace_slice(con, "raw.predictions", slice_, predictions_frame(
            answers, run_id="r", model="m", model_version="v1", model_kind=kind,
            label_set=adapter.label_set, dataset="london"))
        warehouse.replace_slice(con, "raw.transport_failures", slice_, transport_failures_frame(
            adapter.transport_failures, run_id="r", model="m", model_version="v1", dataset="london"))
        assert con.execute("select count(*) from raw.transport_failures").fetchone()[0] == 1
        con.execute("checkpoint")
    stored = path.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.rglob("*.sqlite*"))
    assert key.encode() not in stored
    assert key not in repr(adapter) and key not in str(adapter.usage)


def test_external_api_needs_the_datasets_consent(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("GEMINI_API_KEY", GEMINI_KEY)
    closed = DatasetConfig(name="faces", kind="london_set")
    open_ = DatasetConfig(name="faces", kind="london_set", allow_external_apis=True)
    for kind in ("openai", "gemini"):
        cfg = ModelConfig(name="remote", kind=kind, version="m-1")
        with pytest.raises(ExternalAPIError) as err:
            build_model(cfg, tmp_path, dataset_config=closed)
        message = str(err.value)
        assert "datasets.faces.allow_external_apis" in message and "allow_external_apis: true" in message
        assert build_model(cfg, tmp_path, dataset_config=open_).external
        # built without a dataset, predict refuses before any call
        with pytest.raises(ExternalAPIError):
            VLMAdapter(cfg, tmp_path).predict([])
    # a local server is not external, whatever the dataset says
    local = ModelConfig(name="local", kind="openai", version="m-1",
                        options={"base_url": "http://127.0.0.1:8000/v1", "api_key_env": None})
    assert not build_model(local, tmp_path, dataset_config=closed).external
    assert is_local_url("http://localhost:11434/v1") and is_local_url("http://[::1]:8080/v1")
    assert not is_local_url("https://api.openai.com/v1") and not is_local_url("http://10.0.0.5/v1")


def _config(models: str, tmp_path: Path) -> str:
    return f"""
datasets:
  faces: {{kind: london_set, location: {LONDON}}}
models:
{models}
"""


@pytest.mark.parametrize("body, expected", [
    ("  g: {kind: openai, version: x, options: {max_inflight: 3}}", "models.g.options.max_inflight: unknown key; allowed:"),
    ("  g: {kind: openai, version: x, options: {protocol: {name: maj_at_k, k: 0}}}", "models.g.options.protocol.k:"),
    ("  g: {kind: gemini, version: x, options: {protocol: {name: best_of}}}", "models.g.options.protocol.name: 'best_of' is not a protocol"),
    ("  g: {kind: openai, version: x, options: {protocol: {name: context_carry, template: chhua_single}}}",
     "models.g.options.protocol.template: protocol 'context_carry' needs a template"),
    ("  g: {kind: openai, version: x, options: {api_key_env: sk-abc123}}", "models.g.options.api_key_env: give the NAME"),
    ("  g: {kind: transformers, version: x, options: {base_url: 'http://localhost:1/v1'}}", "models.g.options.base_url: kind transformers runs locally"),
    ("  g: {kind: openai, version: x, options: {price_per_million_tokens: {input: 1}}}", "models.g.options.price_per_million_tokens.output: required key"),
    ("  g: {kind: claude, version: x}", "models.g.kind: 'claude' is not a known kind; use one of: fer_xception, imported, openai, gemini, transformers, mlx, clip"),
])
def test_vlm_options_are_validated_naming_the_key(body, expected, tmp_path):
    import yaml

    with pytest.raises(ConfigError) as err:
        parse_config(yaml.safe_load(_config(body, tmp_path)), tmp_path / "benchmark.yaml")
    assert expected in str(err.value)
    assert "sk-abc123" not in str(err.value)


def test_missing_local_backend_module_says_so(tmp_path):
    cfg = ModelConfig(name="local", kind="mlx", version="m")
    adapter = build_model(cfg, tmp_path)
    try:
        import inference.vlm.mlx_backend  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="inference.vlm.mlx_backend.MlxBackend"):
            adapter.predict([])


def test_plan_and_dry_run_spend_nothing(images, tmp_path, capsys):
    from dagster_project.cli import main

    cfg = ModelConfig(name="gpt", kind="openai", version="gpt-x",
                      options={"protocol": {"name": "maj_at_k", "k": 5, "temperature": 1, "max_tokens": 16},
                               "price_per_million_tokens": {"input": 2.5, "output": 10}})
    plan = VLMAdapter(cfg, tmp_path).plan(images)
    assert plan["expected_calls"] == plan["max_calls"] == 5 * N_IMAGES
    assert plan["projected_output_tokens"] == 16 * 5 * N_IMAGES and plan["projected_input_tokens"] > 800 * 5 * N_IMAGES
    assert plan["projected_cost_usd"] == pytest.approx(
        (plan["projected_input_tokens"] * 2.5 + plan["projected_output_tokens"] * 10) / 1e6, abs=1e-4)
    retry = VLMAdapter(ModelConfig(name="r", kind="gemini", version="g",
                                   options={"protocol": {"name": "context_carry", "retry_invalid": True, "max_tries": 3}}),
                       tmp_path).plan(images)
    assert retry["expected_calls"] == 3 * N_IMAGES and retry["max_calls"] == 9 * N_IMAGES
    config = tmp_path / "benchmark.yaml"
    config.write_text(f"""
warehouse: {tmp_path / 'none.duckdb'}
cache_dir: {tmp_path / 'cache'}
datasets:
  faces: {{kind: london_set, location: {LONDON}}}
models:
  gpt:
    kind: openai
    version: gpt-x
    options: {{protocol: {{name: single}}, price_per_million_tokens: {{input: 2.5, output: 10}}}}
  mini: {{kind: fer_xception, version: fer2013_mini_XCEPTION.102-0.66}}
""")
    assert main(["dry-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "gpt@gpt-x" in out and "204" in out and "BLOCKED: set datasets.faces.allow_external_apis: true" in out
    assert "local model, no API calls" in out and "total: 204 calls expected" in out
    assert not (tmp_path / "none.duckdb").exists() and not (tmp_path / "cache" / "responses.sqlite").exists()
