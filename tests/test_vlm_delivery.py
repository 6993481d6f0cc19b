"""Half-price deliveries of the openai kind (`options.delivery`), through the official `openai`
client against the loopback server of tests/support/batch_servers.py (real HTTP, nothing
patched): Flex with its fallback when shed, Batch through Files and Batches with the slice's
ledger (raw.api_batches) in the embedded warehouse or the slice store, a restart after kill -9."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from inference.batch_ledger import SliceStoreLedger, WarehouseLedger
from inference.config import ModelConfig
from inference.datasets import load_london_set
from inference.frames import predictions_frame
from inference.models.vlm import VLMAdapter
from inference.models.vlm_batch import BatchPending
from support.batch_servers import TieredOpenAIServer
from support.openai_server import client_error, rate_limited, server_error

REPO_ROOT = Path(__file__).resolve().parents[1]
LONDON = REPO_ROOT.parent / "shared" / "datasets" / "london_set"
KEY = "sk-test-delivery-SECRET-0123456789"
N_IMAGES = 4
LABELS = ("happy", "sad", "angry", "fear", "surprise", "disgust", "neutral")
SLICE = {"model": "gpt", "model_version": "v1", "dataset": "faces"}
# the answer columns of raw.predictions (run_id, created_at and latency differ between runs)
ANSWER_COLUMNS = ["image_id", "protocol", "step", "sample_index", "attempt", "prompt_hash", "raw_text",
                  "parse_status", "predicted_label", "input_tokens", "output_tokens"]


@pytest.fixture(scope="module")
def images():
    load = load_london_set(LONDON)
    return sorted(load.images, key=lambda i: i.image_id)[:N_IMAGES]


def label_of(recorded) -> str:
    """A fixed answer per image and sample (the loopback provider's 'model')."""
    seed = (recorded.body or {}).get("seed")
    digest = hashlib.sha256((recorded.images[0] if recorded.images else b"") + str(seed).encode()).digest()
    return LABELS[digest[0] % len(LABELS)]


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with TieredOpenAIServer(models=("test-model",)) as srv:
        srv.answer_fn = label_of
        yield srv


def adapter(server, tmp_path: Path, **options) -> VLMAdapter:
    options = {"model_id": "test-model", "base_url": server.base_url, "timeout_s": 5,
               "protocol": {"name": "maj_at_k", "k": 3, "temperature": 1, "seed": 7, "max_tokens": 16},
               "price_per_million_tokens": {"input": 2.5, "output": 10}, **options}
    return VLMAdapter(ModelConfig(name="gpt", kind="openai", version="v1", options=options), tmp_path / "cache")


def rounds(model: VLMAdapter, images, ledger, limit: int = 12) -> tuple[list, int]:
    """Batch rounds until the slice is complete (what the sensor's runs do): (answers, rounds)."""
    for n in range(1, limit + 1):
        try:
            return model.predict(images, batch_ledger=ledger), n
        except BatchPending:
            continue
    raise AssertionError(f"not complete after {limit} rounds")


def answer_rows(answers) -> pd.DataFrame:
    frame = predictions_frame(answers, run_id="r", model="gpt", model_version="v1", model_kind="openai",
                              dataset="faces", label_set="canonical")
    return frame[ANSWER_COLUMNS].sort_values(ANSWER_COLUMNS[:5]).reset_index(drop=True)


# ----------------------------------------------------------------------------- flex


def test_flex_asks_for_the_flex_tier_and_falls_back_to_standard_when_shed(server, images, tmp_path):
    server.shed_flex = 5  # five flex requests meet "429 Resource Unavailable"
    model = adapter(server, tmp_path, delivery="flex")
    answers = model.predict(images)
    tiers = pd.Series([a.preprocessing["service_tier"] for a in answers]).value_counts().to_dict()
    assert tiers == {"flex": 3 * N_IMAGES - 5, "standard": 5}
    sent = [r.body.get("service_tier") for r in server.generation_requests]
    assert sent.count("flex") == 3 * N_IMAGES and sent.count(None) == 5  # each shed one once more, standard
    assert server.flex_shed == 5 and len(answers) == 3 * N_IMAGES
    # the run's cost prices each answer at the tier that served it
    by_tier: dict[str, list[int]] = {}
    for a in answers:
        by_tier.setdefault(a.preprocessing["service_tier"], []).append(a)
    expected = sum((a.input_tokens * 2.5 + a.output_tokens * 10) * (0.5 if tier == "flex" else 1.0)
                   for tier, group in by_tier.items() for a in group) / 1e6
    assert model.usage["cost_usd"] == pytest.approx(expected, abs=1e-6)


def test_an_accounts_rate_limit_on_flex_is_waited_out_not_sent_at_standard(server, images, tmp_path):
    server.enqueue(rate_limited(retry_after="0.05"))
    answers = adapter(server, tmp_path, delivery="flex", max_retries=0).predict(images[:1])
    assert {a.preprocessing["service_tier"] for a in answers} == {"flex"}
    assert [r.body.get("service_tier") for r in server.generation_requests] == ["flex"] * 4


# ----------------------------------------------------------------------------- batch


@pytest.mark.parametrize("store", ["warehouse", "slices"])
def test_a_batch_run_fills_the_same_rows_as_a_standard_run(server, images, tmp_path, store):
    standard = adapter(server, tmp_path / "standard").predict(images)
    server.reset()
    ledger = (WarehouseLedger(tmp_path / "wh.duckdb", SLICE) if store == "warehouse"
              else SliceStoreLedger(tmp_path / "slices", SLICE))
    model = adapter(server, tmp_path / "batch", delivery="batch")
    with pytest.raises(BatchPending, match=f"{N_IMAGES} of {N_IMAGES} images wait"):
        model.predict(images, batch_ledger=ledger)
    [record] = ledger.records()  # written before the batch was sent, then given its id
    assert record.state == "validating" and record.batch_id in server.batches and len(record.custom_ids) == 3 * N_IMAGES
    assert server.generation_count == 0  # nothing went through the chat endpoint
    batch, n = rounds(model, images, ledger)
    assert n == 2  # in_progress, then completed
    pd.testing.assert_frame_equal(answer_rows(batch), answer_rows(standard))
    assert {a.preprocessing["service_tier"] for a in batch} == {"batch"}
    assert {a.preprocessing["service_tier"] for a in standard} == {"standard"}
    assert set(server.batch_submissions.values()) == {1} and len(server.batch_submissions) == 3 * N_IMAGES
    [record] = ledger.records()
    assert (record.state, record.ingested, record.n_answered) == ("completed", True, 3 * N_IMAGES)
    assert model.usage["cost_usd"] == pytest.approx(
        sum(a.input_tokens * 1.25 + a.output_tokens * 5 for a in batch) / 1e6, abs=1e-6)


def test_expired_and_failed_requests_are_sent_again_alone(server, images, tmp_path):
    ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
    model = adapter(server, tmp_path, delivery="batch")
    server.expire_after = 8  # the first batch expires after 8 of its 12 requests
    server.enqueue(server_error(503), rate_limited())  # and two of those 8 fail, retryably
    with pytest.raises(BatchPending):
        model.predict(images, batch_ledger=ledger)
    with pytest.raises(BatchPending):
        model.predict(images, batch_ledger=ledger)  # in_progress
    with pytest.raises(BatchPending, match="6 requests submitted now in 1 batches"):
        model.predict(images, batch_ledger=ledger)  # expired: the 4 never run and the 2 failed go again
    server.expire_after = None
    answers, _ = rounds(model, images, ledger)
    assert len(answers) == 3 * N_IMAGES and {a.parse_status for a in answers} <= {"ok", "repaired"}
    first, second = ledger.records()
    assert first.state == "expired" and first.n_answered == 6 and len(first.request_errors) == 2
    assert second.state == "completed" and len(second.custom_ids) == 6
    assert set(second.custom_ids) == set(first.custom_ids) - {k for k in first.custom_ids
                                                              if k not in second.custom_ids}
    assert sorted(server.batch_submissions.values()) == [1] * 6 + [2] * 6
    assert sum(server.batch_answers.values()) == 3 * N_IMAGES  # every answer delivered once


def test_a_request_the_batch_rejects_is_a_transport_failure_not_resent(server, images, tmp_path):
    ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
    model = adapter(server, tmp_path, delivery="batch", protocol={"name": "single"})
    server.enqueue(client_error(400, "image too large"))
    answers, _ = rounds(model, images, ledger)
    assert len(answers) == N_IMAGES - 1 and len(model.transport_failures) == 1
    assert model.transport_failures[0]["kind"] == "client_error"
    assert "image too large" in model.transport_failures[0]["message"]
    assert set(server.batch_submissions.values()) == {1}


def test_retry_until_valid_sends_each_retry_in_a_later_batch(server, images, tmp_path):
    ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
    model = adapter(server, tmp_path, delivery="batch", protocol={"name": "retry_until_valid", "max_tries": 3})
    replies = iter(["no idea", "still unsure"])
    server.answer_fn = lambda r: next(replies, "happy")  # the first image's first two tries are invalid
    answers, n = rounds(model, images[:1], ledger)
    assert [a.parse_status for a in answers] == ["unparseable", "unparseable", "ok"]
    assert n == 1 + 3 * 2 and len(ledger.records()) == 3  # one batch per try, two polls each


# ----------------------------------------------------------------------------- kill -9 and a restart

_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from inference.batch_ledger import WarehouseLedger
    from inference.config import ModelConfig
    from inference.datasets import load_london_set
    from inference.models.vlm import VLMAdapter
    from inference.models.vlm_batch import BatchPending

    base_url, root, london, n = sys.argv[1], Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    images = sorted(load_london_set(london).images, key=lambda i: i.image_id)[:n]
    model = VLMAdapter(ModelConfig(name="gpt", kind="openai", version="v1", options={
        "model_id": "test-model", "base_url": base_url, "delivery": "batch", "timeout_s": 120,
        "protocol": {"name": "maj_at_k", "k": 3, "temperature": 1, "seed": 7, "max_tokens": 16}}), root / "cache")
    ledger = WarehouseLedger(root / "wh.duckdb", {"model": "gpt", "model_version": "v1", "dataset": "faces"})
    try:
        answers = model.predict(images, batch_ledger=ledger)
    except BatchPending as pending:
        print("PENDING", pending, flush=True)
        sys.exit(3)
    print("DONE", len(answers), flush=True)
""")


def _child(server, tmp_path: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    return subprocess.Popen([sys.executable, "-c", _CHILD, server.base_url, str(tmp_path), str(LONDON),
                             str(N_IMAGES)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_kill_9_after_the_batch_was_created_then_a_restart_polls_instead_of_resubmitting(server, tmp_path):
    server.stall_batch_create = 60.0  # the batch exists, its id never reaches the client
    child = _child(server, tmp_path)
    deadline = time.monotonic() + 60
    while not server.batches and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.batches, child.communicate(timeout=5)[0] if child.poll() is not None else "no batch created"
    os.kill(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    rows = con.execute("select state, batch_id, n_requests from raw.api_batches").fetchall()
    con.close()
    assert rows == [("submitting", None, 3 * N_IMAGES)]  # recorded before sending; the id never came
    server.stall_batch_create = 0.0
    outcomes = []
    for _ in range(6):  # the restarted process (a sensor's runs): one round each
        restart = _child(server, tmp_path)
        out, _ = restart.communicate(timeout=120)
        outcomes.append(out.strip().splitlines()[-1])
        if restart.returncode == 0:
            break
    assert outcomes[-1] == f"DONE {3 * N_IMAGES}", outcomes
    assert len(server.batches) == 1 and set(server.batch_submissions.values()) == {1}
    assert len(server.batch_submissions) == 3 * N_IMAGES and set(server.batch_answers.values()) == {1}
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    ledger = con.execute("select batch_id, state, ingested, n_answered from raw.api_batches").fetchall()
    con.close()
    assert ledger == [(next(iter(server.batches)), "completed", True, 3 * N_IMAGES)]
    print("server ledger:", json.dumps({"batches": len(server.batches),
                                        "submissions per request": sorted(set(server.batch_submissions.values())),
                                        "answers per request": sorted(set(server.batch_answers.values())),
                                        "requests": len(server.batch_submissions), "rounds": outcomes}))


# ----------------------------------------------------------------------------- dry run and prices


def test_dry_run_prints_each_tiers_cost(images, tmp_path, capsys):
    from dagster_project.cli import main

    config = tmp_path / "benchmark.yaml"
    config.write_text(f"""
warehouse: {tmp_path / 'none.duckdb'}
cache_dir: {tmp_path / 'cache'}
datasets:
  faces: {{kind: london_set, location: {LONDON}, allow_external_apis: true}}
models:
  gpt:
    kind: openai
    version: gpt-x
    options:
      protocol: {{name: maj_at_k, k: 5, temperature: 1}}
      price_per_million_tokens: {{input: 2.5, output: 10, flex: {{input: 1.5, output: 6}}}}
      delivery: auto
      deliver_within_h: 48
""")
    assert main(["dry-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("gpt@gpt-x")).split()
    header = next(line for line in out.splitlines() if "cost_standard_usd" in line).split()
    values = dict(zip(header, row))
    standard, flex, batch = (float(values[f"cost_{t}_usd"]) for t in ("standard", "flex", "batch"))
    assert values["delivery"] == "batch"  # 48 h allow the 24 h batch window
    assert batch == pytest.approx(standard / 2, abs=1e-4) and float(values["projected_cost_usd"]) == batch
    assert flex == pytest.approx(standard * 0.6, abs=1e-4)  # its own configured price


def test_auto_without_a_deadline_and_flex_on_gemini_are_refused_naming_the_key(tmp_path):
    from inference.config import ConfigError
    from inference.models.vlm_options import vlm_options

    with pytest.raises(ConfigError, match=r"models.g.options.delivery: auto picks the tier by a deadline"):
        vlm_options(ModelConfig(name="g", kind="openai", version="x", options={"delivery": "auto"}))
    with pytest.raises(ConfigError, match=r"models.g.options.delivery: kind gemini has no flex tier"):
        vlm_options(ModelConfig(name="g", kind="gemini", version="x", options={"delivery": "flex"}))


# ----------------------------------------------------------------------------- budget cap


def test_a_run_whose_estimate_exceeds_the_budget_refuses_to_start_naming_it(server, images, tmp_path):
    from inference.models.vlm import BudgetExceeded

    model = adapter(server, tmp_path, budget_usd=0.001)
    estimate = model.plan(images)["projected_cost_usd"]
    with pytest.raises(BudgetExceeded, match=rf"dry-run estimate for {N_IMAGES} images is \${estimate:.2f} at the "
                                             rf"standard tier .* over budget_usd 0.001: the run is not started"):
        model.predict(images)
    assert server.requests == []  # nothing sent, nothing uploaded
    with pytest.raises(BudgetExceeded):
        adapter(server, tmp_path, budget_usd=0.001, delivery="batch").predict(
            images, batch_ledger=WarehouseLedger(tmp_path / "wh.duckdb", SLICE))
    assert server.requests == [] and not (tmp_path / "wh.duckdb").exists()


def test_a_run_whose_billed_tokens_reach_the_budget_stops_sending_and_keeps_every_answer(server, images, tmp_path):
    # retries of invalid answers are not in the estimate (first tries only): the billed cost can reach it
    server.answer_fn = lambda r: "I cannot tell"
    options = dict(protocol={"name": "retry_until_valid", "max_tries": 10, "max_tokens": 16}, max_in_flight=1)
    estimate = adapter(server, tmp_path, **options).plan(images)["projected_cost_usd"]
    model = adapter(server, tmp_path, budget_usd=round(estimate * 1.1, 4), **options)
    answers = model.predict(images)
    budget_failures = [f for f in model.transport_failures if f["kind"] == "budget"]
    assert model.usage["stopped_at_budget"] and budget_failures
    assert "reached budget_usd" in budget_failures[0]["message"]
    assert len(answers) == server.generation_count < 10 * N_IMAGES  # every answer billed is kept
    assert model.usage["cost_usd"] >= model.options.budget_usd
    spent_before_last = model.usage["cost_usd"] - max(
        (a.input_tokens * 2.5 + a.output_tokens * 10) / 1e6 for a in answers)
    assert spent_before_last < model.options.budget_usd  # it stopped at the first answer that reached it
    # a rerun with a larger budget asks only what was never sent: no request goes out twice
    rerun = adapter(server, tmp_path, budget_usd=1.0, **options)
    assert len(rerun.predict(images)) == 10 * N_IMAGES and rerun.transport_failures == []
    assert rerun.usage["cache_hits"] == len(answers) and server.generation_count == 10 * N_IMAGES


def test_batches_stop_being_submitted_once_their_billed_cost_reaches_the_budget(server, images, tmp_path):
    server.answer_fn = lambda r: "I cannot tell"
    options = dict(delivery="batch", protocol={"name": "retry_until_valid", "max_tries": 10, "max_tokens": 16})
    estimate = adapter(server, tmp_path, **options).plan(images[:1])["projected_cost_usd"]
    model = adapter(server, tmp_path, budget_usd=round(estimate * 1.1, 5), **options)
    ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
    answers, _ = rounds(model, images[:1], ledger, limit=40)
    assert 1 < len(answers) < 10 and [f["kind"] for f in model.transport_failures] == ["budget"]
    assert len(server.batches) == len(answers) == sum(server.batch_submissions.values())  # one try per batch
    billed = sum(a.input_tokens * 1.25 + a.output_tokens * 5 for a in answers) / 1e6
    last = (answers[-1].input_tokens * 1.25 + answers[-1].output_tokens * 5) / 1e6
    assert billed >= model.options.budget_usd > billed - last  # stopped at the first batch that reached it


# ----------------------------------------------------------------------------- cost in SQL


def test_the_cost_marts_price_each_stored_answer_at_its_tier_as_the_run_billed_it(server, images, tmp_path):
    from dbt_support import run_dbt

    from inference import warehouse
    from inference.frames import Discovery, evaluation_rows, utc_now
    from inference.models.base import EvaluationContext

    server.shed_flex = 4
    model = adapter(server, tmp_path, delivery="flex")
    evaluation = model.evaluate(images, EvaluationContext())
    cfg = model.cfg
    rows = evaluation_rows(evaluation, run_id="run-flex", model=cfg, dataset="faces", n_images=N_IMAGES,
                           started=utc_now(), discovery=Discovery())
    path = tmp_path / "warehouse.duckdb"
    with warehouse.writer(path) as con:
        warehouse.write_evaluation(con, {"model": "gpt", "model_version": "v1", "dataset": "faces"}, rows)
    run_dbt(["run", "--select", "+run_costs"], warehouse=path, target_dir=tmp_path / "target")
    tested = run_dbt(["test", "--select", "answer_costs", "run_costs"], warehouse=path, target_dir=tmp_path / "target")
    assert len(tested["results"]) >= 10 and {r["status"] for r in tested["results"]} == {"pass"}
    con = duckdb.connect(str(path), read_only=True)
    per_tier = dict(con.execute("select service_tier, cost_usd from marts.run_costs").fetchall())
    n_by_tier = dict(con.execute("select service_tier, n_answers from marts.run_costs").fetchall())
    con.close()
    assert n_by_tier == {"flex": 3 * N_IMAGES - 4, "standard": 4, "all": 3 * N_IMAGES}
    assert per_tier["all"] == pytest.approx(evaluation.usage.cost_usd, abs=1e-9)  # SQL = the run's own bill
    standard = [a for a in evaluation.answers if a.preprocessing["service_tier"] == "standard"]
    assert per_tier["standard"] == pytest.approx(
        sum(a.input_tokens * 2.5 + a.output_tokens * 10 for a in standard) / 1e6, abs=1e-9)
    assert per_tier["flex"] == pytest.approx(per_tier["all"] - per_tier["standard"], abs=1e-9)
