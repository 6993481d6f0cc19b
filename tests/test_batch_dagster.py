"""Batch delivery the Dagster way, in a process of its own (its own benchmark file: the
definitions' dataset partitions are read from the config when they are imported): the
evaluation of a batch slice submits and returns without materializing raw/predictions; the
finished_api_batches sensor polls the loopback provider and requests the slice's next run
once its batch finished; that run ingests the answers and materializes the slice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from support.batch_servers import TieredOpenAIServer

REPO_ROOT = Path(__file__).resolve().parents[1]
LONDON = REPO_ROOT.parent / "shared" / "datasets" / "london_set"

_SCRIPT = textwrap.dedent("""
    import json
    import dagster as dg
    from dagster_project.defs.partitions import MODEL_PARTITIONS_NAME, slice_partition
    from dagster_project.orchestration import load_definitions
    from dagster_project.settings import benchmark_config
    from inference import warehouse
    from inference.slice_rows import dataset_rows

    bench = benchmark_config()
    rows = dataset_rows(bench, bench.datasets["faces"])
    with warehouse.writer(bench.warehouse) as con:
        warehouse.write_dataset(con, "faces", images=rows.images, quarantined=rows.quarantined,
                                ratings=rows.ratings, keep_sources=[], exclusions=rows.exclusions)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(MODEL_PARTITIONS_NAME, ["gpt@v1"])
    defs = load_definitions()
    job = defs.resolve_job_def("evaluate_model_on_dataset")
    sensor = defs.resolve_sensor_def("finished_api_batches")
    predictions = dg.AssetKey(["raw", "predictions"])

    def tick():
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        return result.run_requests or []

    def n_rows(sql):
        con = warehouse.connect(bench.warehouse, read_only=True)
        try:
            return con.execute(sql).fetchone()[0]
        finally:
            con.close()

    out = {}
    first = job.execute_in_process(instance=instance, partition_key=slice_partition("gpt@v1", "faces"))
    out["first_success"] = first.success
    out["materialized_after_first"] = sorted(instance.get_materialized_partitions(predictions))
    out["predictions_after_first"] = n_rows("select count(*) from raw.predictions")
    out["ticks"] = []
    requests = []
    for _ in range(4):
        requests = tick()
        out["ticks"].append(len(requests))
        if requests:
            break
    second = job.execute_in_process(instance=instance, partition_key=requests[0].partition_key, tags=requests[0].tags)
    out["second_success"] = second.success
    out["materialized_after_second"] = len(instance.get_materialized_partitions(predictions))
    out["predictions_after_second"] = n_rows("select count(*) from raw.predictions")
    out["images"] = n_rows("select count(*) from raw.dataset_images")
    out["ledger"] = n_rows("select count(*) from raw.api_batches where state = 'completed' and ingested")
    out["tick_after_ingest"] = len(tick())
    print("RESULT", json.dumps(out))
""")


def test_batch_slice_is_submitted_polled_by_the_sensor_and_ingested_by_the_next_run(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-batch-dagster-0123456789")
    with TieredOpenAIServer(models=("test-model",), default_text="happy") as server:
        config = tmp_path / "benchmark.yaml"
        config.write_text(f"""
warehouse: {tmp_path / 'warehouse.duckdb'}
cache_dir: {tmp_path / 'cache'}
reports_dir: {tmp_path / 'reports'}
datasets:
  faces: {{kind: london_set, location: {LONDON}}}
models:
  gpt:
    kind: openai
    version: v1
    options: {{model_id: test-model, base_url: "{server.base_url}", delivery: batch,
               price_per_million_tokens: {{input: 2.5, output: 10}}}}
""")
        env = {**os.environ, "FER_CONFIG": str(config), "DAGSTER_HOME": str(tmp_path / "dagster_home"),
               "PYTHONPATH": f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        (tmp_path / "dagster_home").mkdir()
        proc = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line is not None, proc.stdout[-3000:] + proc.stderr[-5000:]
    out = json.loads(line.removeprefix("RESULT "))
    n = out["images"]
    assert out["first_success"] and out["materialized_after_first"] == [] and out["predictions_after_first"] == 0
    assert out["ticks"][-1] == 1 and out["ticks"][:-1] == [0] * (len(out["ticks"]) - 1)
    assert out["second_success"] and out["materialized_after_second"] == 1
    assert out["predictions_after_second"] == n == len(server.batch_submissions) and out["ledger"] == 1
    assert set(server.batch_submissions.values()) == {1} and server.generation_count == 0
    assert out["tick_after_ingest"] == 0  # nothing left open
