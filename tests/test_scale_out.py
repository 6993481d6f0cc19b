"""Scaling out on real services (docs/scaling-out.md): the Postgres-backed instance of
deploy/dagster.yaml records runs, and dagster-celery workers started here run evaluation
partitions concurrently, never more of one provider's partitions at once than its pool.

Needs PostgreSQL (127.0.0.1:5432, trust auth, user postgres) and RabbitMQ (127.0.0.1:5672,
guest/guest), which CI starts; each test skips, naming what is missing, where they are absent.
Every run uses a database of its own, created and dropped here.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagster_project import cli, scale_out
from inference.config import load_config
from inference.slice_rows import dataset_rows
from inference.slice_store import SliceStore
from inference.vlm.run_tags import provider_tag
from tests.support.celery_workers import celery_workers
from tests.support.openai_server import OpenAIServer
from tests.support.tae_fixture import build_tae_fixture

REPO_ROOT = Path(__file__).resolve().parents[1]
INSTANCE_YAML = REPO_ROOT / "deploy" / "dagster.yaml"
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
N_PARTITIONS, POOL = 4, 2  # four model versions of one provider; two workers on its queue
N_IMAGES, LATENCY_S = 3, 1.5


def _unreachable(port: int, what: str) -> str | None:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return None
    except OSError:
        return f"{what} is not reachable on 127.0.0.1:{port} (start it as .ci/run does; docs/scaling-out.md)"


needs_postgres = pytest.mark.skipif(bool(_unreachable(5432, "PostgreSQL")), reason=str(_unreachable(5432, "PostgreSQL")))
needs_rabbitmq = pytest.mark.skipif(bool(_unreachable(5672, "RabbitMQ")), reason=str(_unreachable(5672, "RabbitMQ")))


@pytest.fixture
def pg_url():
    """A fresh database for this test's Dagster instance, dropped afterwards."""
    import psycopg2

    name = f"fer_test_{uuid.uuid4().hex[:12]}"
    admin = psycopg2.connect(f"{PG_SERVER.replace('+psycopg2', '')}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"create database {name}")
    try:
        yield f"{PG_SERVER}/{name}"
    finally:
        admin.cursor().execute(f"drop database if exists {name} with (force)")
        admin.close()


@pytest.fixture
def scaled_env(tmp_path, pg_url, monkeypatch) -> dict[str, str]:
    """$DAGSTER_HOME holding deploy/dagster.yaml as fer-warehouse installs it, and its environment."""
    env = {"DAGSTER_HOME": str(tmp_path / "dagster_home"), "FER_DAGSTER_PG_URL": pg_url, "FER_CELERY_BROKER": BROKER}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    cli.dagster_home(INSTANCE_YAML)
    return env


@needs_postgres
def test_postgres_instance_records_a_run(scaled_env, pg_url):
    import psycopg2

    @dg.asset
    def answer() -> int:
        return 42

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        result = dg.materialize([answer], instance=instance)
        assert result.success
    # read back from Postgres itself, not through Dagster
    with psycopg2.connect(pg_url.replace("+psycopg2", "")) as con, con.cursor() as cur:
        cur.execute("select status from runs where run_id = %s", [result.run_id])
        assert cur.fetchone() == ("SUCCESS",)
        cur.execute("select count(*) from event_logs where run_id = %s and dagster_event_type = 'ASSET_MATERIALIZATION'",
                    [result.run_id])
        assert cur.fetchone() == (1,)


def test_a_handwritten_dagster_yaml_is_never_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    (tmp_path / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    cli.dagster_home(INSTANCE_YAML)
    assert (tmp_path / "dagster.yaml").read_text() == "telemetry: {enabled: false}\n"


def test_fan_out_puts_api_partitions_on_their_provider_queue_and_local_ones_on_the_default():
    """No services needed: the tags a fanned-out run carries decide the Celery queue it waits on."""
    from dagster_project.orchestration import load_definitions
    from dagster_project.settings import benchmark_config

    job = load_definitions().resolve_job_def("evaluate_model_on_dataset")
    bench = benchmark_config()
    api = scale_out.partition_run_tags(job, "tae_sim|loopback_vlm@loopback-1", bench)
    base_url = bench.models["loopback_vlm"].options["base_url"]
    assert api[scale_out.CELERY_QUEUE_TAG] == f"fer.{provider_tag('openai', base_url, None)}"
    assert api["fer/provider"] == provider_tag("openai", base_url, None)
    local = scale_out.partition_run_tags(job, "london_subset|mini_xception@fer2013_mini_XCEPTION.102-0.66", bench)
    assert scale_out.CELERY_QUEUE_TAG not in local and "fer/provider" not in local
    assert local["dagster/partition/dataset"] == "london_subset"


def _config(root: Path, base_url: str) -> Path:
    tae = build_tae_fixture(root / "tae_sim", identities_per_cell=1)
    lines = tae.manifest.read_text().splitlines()
    tae.manifest.write_text("\n".join(lines[: N_IMAGES + 1]) + "\n")
    models = "".join(
        f"""
  vlm_{i}:
    kind: openai
    version: v{i}
    options: {{base_url: {base_url}, api_key_env: null, max_in_flight: 1, max_retries: 0, timeout_s: 30}}"""
        for i in range(N_PARTITIONS))
    config = root / "benchmark.yaml"
    config.write_text(f"""
warehouse: {root / 'warehouse.duckdb'}
raw_slices: {root / 'slices'}
reports_dir: {root / 'reports'}
cache_dir: {root / 'cache'}
datasets:
  tae_sim: {{kind: manifest, location: {tae.manifest}, label_set: canonical}}
models:{models}
""")
    return config


def _overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


@needs_postgres
@needs_rabbitmq
def test_celery_workers_run_partitions_concurrently_within_the_provider_pool(tmp_path, scaled_env):
    with OpenAIServer(latency_s=LATENCY_S, default_text="happy") as server:
        config = _config(tmp_path, server.base_url)
        bench = load_config(config)
        ds = bench.datasets["tae_sim"]
        data = dataset_rows(bench, ds)
        SliceStore(bench.raw_slices).write_dataset(ds.name, images=data.images, quarantined=data.quarantined,
                                                   ratings=data.ratings, exclusions=data.exclusions)
        queue = f"fer.{provider_tag('openai', server.base_url, None)}"
        env = {**os.environ, **scaled_env, "FER_CONFIG": str(config), "DAGSTER_CELERY_BROKER_HOST": "127.0.0.1"}
        with celery_workers(POOL, queue, name="fer", cwd=REPO_ROOT, env=env, log_dir=tmp_path):
            fan_out = subprocess.run([sys.executable, "-m", "dagster_project.cli", "fan-out", "--wait", "--timeout", "420"],
                                     cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=480)
        worker_logs = "\n".join((tmp_path / f"worker{i}.log").read_text()[-2000:] for i in range(POOL))
        assert fan_out.returncode == 0, f"{fan_out.stdout}\n{fan_out.stderr[-3000:]}\n{worker_logs}"
        max_in_flight = server.max_concurrent

    run_ids = [line.split()[0] for line in fan_out.stdout.splitlines()]
    assert len(run_ids) == N_PARTITIONS
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
        assert {r.dagster_run.status for r in records} == {dg.DagsterRunStatus.SUCCESS}
        assert {r.dagster_run.tags[scale_out.CELERY_QUEUE_TAG] for r in records} == {queue}
        overlap = _overlap([(r.start_time, r.end_time) for r in records])
    assert overlap == POOL, f"{overlap} runs at once; the provider's pool is {POOL} workers"
    # never more of the provider's requests at once than its pool (whether the two runs' requests
    # also met at the server depends on how long each worker took to load the code)
    assert 1 <= max_in_flight <= POOL
    con = duckdb.connect()
    answers = con.execute("select model, count(*) from read_parquet(?) group by 1 order by 1",
                          [SliceStore(bench.raw_slices).table_glob("predictions")]).fetchall()
    assert answers == [(f"vlm_{i}", N_IMAGES) for i in range(N_PARTITIONS)]  # every partition landed, whole
