"""Batch delivery (`options.delivery: batch`) through the official clients against the loopback
servers of tests/support/batch_servers.py: OpenAI Files + Batches and Gemini batch mode (inline
requests). The slice's batches live in raw.api_batches (embedded warehouse or slice store); a
batch run stores the same rows as a standard run; expired and failed requests are sent again
alone; a process killed between submission and completion is followed by one that polls and
ingests instead of submitting again."""

from __future__ import annotations

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
from inference.models.vlm import VLMAdapter
from inference.models.vlm_batch import BatchPending
from support.openai_server import client_error, rate_limited, server_error
from support.delivery_fixtures import (  # noqa: F401  (images, server: fixtures)
    KEY, LONDON, N_IMAGES, REPO_ROOT, SLICE, adapter, answer_rows, images, label_of, rounds, server,
)


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


# ----------------------------------------------------------------------------- gemini batch mode


def test_a_gemini_batch_run_fills_the_same_rows_as_a_standard_run_and_resends_only_the_failed(
        images, tmp_path, monkeypatch):
    from support.batch_servers import GeminiBatchServer

    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-delivery-SECRET-0123456789")
    with GeminiBatchServer(models=("test-model",)) as server:
        server.answer_fn = label_of

        def gemini(root: Path, **options) -> VLMAdapter:
            options = {"model_id": "test-model", "base_url": server.base_url, "timeout_s": 5,
                       "protocol": {"name": "maj_at_k", "k": 3, "temperature": 1, "seed": 7, "max_tokens": 16},
                       **options}
            return VLMAdapter(ModelConfig(name="gem", kind="gemini", version="v1", options=options), root)

        standard = gemini(tmp_path / "standard").predict(images)
        server.reset()
        ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
        model = gemini(tmp_path / "batch", delivery="batch", max_retries=2)
        server.enqueue(server_error(503))  # the first request of the batch fails, retryably
        batch, n = rounds(model, images, ledger)
        assert n == 5  # submit, running, succeeded (+ one request again), running, succeeded
        pd.testing.assert_frame_equal(answer_rows(batch), answer_rows(standard))
        assert {a.preprocessing["service_tier"] for a in batch} == {"batch"}
        assert sorted(server.batch_submissions.values()) == [1] * (3 * N_IMAGES - 1) + [2]
        assert sum(server.batch_answers.values()) == 3 * N_IMAGES and server.generation_count == 0
        first, second = ledger.records()
        assert first.state == "completed" and list(first.request_errors.values())[0]["kind"] == "server_error"
        assert len(second.custom_ids) == 1


def test_a_gemini_batch_created_by_a_process_that_died_before_recording_it_is_adopted(
        images, tmp_path, monkeypatch):
    from inference.batch_ledger import BatchRecord
    from inference.models.vlm import build_backend
    from inference.vlm.batch import batch_client
    from support.batch_servers import GeminiBatchServer

    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-delivery-SECRET-0123456789")
    with GeminiBatchServer(models=("test-model",)) as server:
        server.answer_fn = label_of
        model = VLMAdapter(ModelConfig(name="gem", kind="gemini", version="v1", options={
            "model_id": "test-model", "base_url": server.base_url, "delivery": "batch",
            "protocol": {"name": "single"}}), tmp_path / "cache")
        ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
        # what a killed process left: the row (written first) and the provider's batch, no id between
        # them. A scratch round submits the very requests; the batch then names this row.
        with pytest.raises(BatchPending):
            model.predict(images, batch_ledger=WarehouseLedger(tmp_path / "scratch.duckdb", SLICE))
        [scratch] = WarehouseLedger(tmp_path / "scratch.duckdb", SLICE).records()
        record = BatchRecord(**SLICE, provider="gemini", custom_ids=scratch.custom_ids)
        ledger.save(record)
        server.jobs[scratch.batch_id]["metadata"]["displayName"] = record.ledger_id
        answers, _ = rounds(model, images, ledger)
        assert len(answers) == N_IMAGES and len(server.jobs) == 1 and set(server.batch_submissions.values()) == {1}
        [adopted] = ledger.records()
        assert adopted.batch_id == scratch.batch_id and adopted.state == "completed" and adopted.ingested
        assert batch_client("gemini", build_backend(model.cfg, model.options)).find("no-such-ledger") is None


@pytest.mark.parametrize("store", ["warehouse", "slices"])
def test_the_sensor_reads_every_slices_unfinished_batches_from_either_store(tmp_path, store):
    from inference.batch_ledger import BatchRecord, ledger_for, open_records

    raw_slices = str(tmp_path / "slices") if store == "slices" else None
    warehouse_path = tmp_path / "wh.duckdb"
    assert open_records(warehouse_path, raw_slices) == []  # nothing written yet: nothing open
    other = {**SLICE, "model_version": "v2"}
    states = {"a": ("in_progress", False), "b": ("completed", True), "c": ("completed", False),
              "d": ("never_sent", False)}
    for name, (state, ingested) in states.items():
        key = other if name == "c" else SLICE
        ledger_for(warehouse_path, raw_slices, key).save(BatchRecord(
            **key, provider="openai", custom_ids=[name], batch_id=f"batch-{name}", state=state, ingested=ingested))
    found = {(r.model_version, r.batch_id) for r in open_records(warehouse_path, raw_slices)}
    assert found == {("v1", "batch-a"), ("v2", "batch-c")}  # not ingested, and ever sent
    [record] = [r for r in ledger_for(warehouse_path, raw_slices, other).records()]
    assert record.custom_ids == ["c"] and record.state == "completed" and not record.ingested


def test_a_batch_the_provider_rejects_ends_in_transport_failures_not_a_loop_of_resubmissions(
        server, images, tmp_path):
    ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
    model = adapter(server, tmp_path, delivery="batch", protocol={"name": "single"})
    server.fail_validation = True
    answers, n = rounds(model, images, ledger)
    assert answers == [] and n == 2 and len(server.batches) == 1
    assert {f["kind"] for f in model.transport_failures} == {"client_error"} and len(model.transport_failures) == N_IMAGES
    assert "does not support batches" in model.transport_failures[0]["message"]


def test_a_key_the_provider_quotes_back_in_a_batch_error_never_reaches_the_warehouse(server, images, tmp_path):
    ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
    model = adapter(server, tmp_path, delivery="batch", protocol={"name": "single"})
    server.enqueue(client_error(401, f"Incorrect API key provided: {KEY}"))
    answers, _ = rounds(model, images, ledger)
    assert len(answers) == N_IMAGES - 1 and KEY not in model.transport_failures[0]["message"]
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    stored = con.execute("select request_errors from raw.api_batches").fetchall()
    con.close()
    assert "Incorrect API key provided" in str(stored) and KEY not in str(stored)


def test_requests_another_round_recorded_meanwhile_are_not_submitted_again(server, images, tmp_path):
    from inference.batch_ledger import BatchRecord
    from inference.models.vlm import build_backend
    from inference.models.vlm_batch import submit_round
    from inference.vlm.batch import batch_client
    from inference.vlm.types import ChatRequest, GenerationParams, Turn

    ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
    ledger.save(BatchRecord(**SLICE, provider="openai", custom_ids=["a", "b"], batch_id="batch-other",
                            state="in_progress"))  # another process's round, recorded after this one read
    request = ChatRequest((Turn("user", "which emotion?", with_image=True),), images[0].path.read_bytes(),
                          "image/jpeg", GenerationParams())
    model = adapter(server, tmp_path, delivery="batch")
    client = batch_client("openai", build_backend(model.cfg, model.options))
    [record] = submit_round(ledger, client, {"a": request, "b": request, "c": request}, "openai")
    assert record.custom_ids == ["c"] and dict(server.batch_submissions) == {"c": 1}
    assert submit_round(ledger, client, {"a": request, "c": request}, "openai") == []
