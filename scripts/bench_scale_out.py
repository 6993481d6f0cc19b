"""Eight evaluation partitions, serially in-process vs fanned out to dagster-celery workers
(targets: wall speed-up >= 3x with 4 workers, zero lock waits, marts identical).

    .venv/bin/python scripts/bench_scale_out.py [--partitions 8] [--workers 4] [--images 30] [--latency 1.0]
        [--hold-lock-s 60]   # the warehouse's write lock held meanwhile: still no wait

Needs PostgreSQL (127.0.0.1:5432, user postgres, trust) and RabbitMQ (127.0.0.1:5672, guest).
One loopback OpenAI-compatible server (tests/support/openai_server.py, `--latency` s per request)
answers every image's true emotion. `--partitions` model versions (kind openai, one request at a
time each: `max_in_flight: 1`) are evaluated on a Tae-shaped dataset of `--images` images:

1. embedded: one DuckDB file; ingest, then each partition's `evaluate_model_on_dataset` run one
   after another in one process (`orchestration.materialize_everything`, as `fer-warehouse demo`);
   timed: the evaluations.
2. distributed: deploy/dagster.yaml (a fresh Postgres database, CeleryRunLauncher), raw slices in
   a Parquet slice store, `--workers` Celery workers (`--pool threads --concurrency 1`) on the provider's queue; the
   dataset is ingested into the store, then `fer-warehouse fan-out --wait`; timed: that command.
   Neither the raw writers nor the evaluation job's asset checks on raw/predictions open the
   warehouse file (the checks read the slices in an in-memory DuckDB), so a dbt build holding
   it delays no evaluation.
3. one `dbt build` on each warehouse; every marts.* table is compared row for row.
Lock waits are counted from the warehouse's lock-wait warnings in the workers' logs and the
runs' captured logs.

Each layout has its own response cache, so both make every call. Wall times are of this machine
as it is (load average printed): on a shared machine they are inflated, the distributed run more
(its workers each load the code) than the serial one.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "tests"))

from tests.dbt_support import run_dbt  # noqa: E402
from tests.support.lock_holder import hold_write_lock  # noqa: E402
from tests.support.openai_server import OpenAIServer  # noqa: E402
from tests.support.tae_fixture import build_tae_fixture  # noqa: E402
from tests.support.warehouse_compare import differing_tables, schema_tables  # noqa: E402

PG = "postgresql+psycopg2://postgres@127.0.0.1:5432"
BROKER = "pyamqp://guest:guest@127.0.0.1:5672//"
SERIAL = """
import json, sys, time
import dagster as dg
from dagster_project.orchestration import Step, materialize_everything
instance = dg.DagsterInstance.ephemeral()
materialize_everything(instance=instance, steps=[Step("ingest", "ingest_dataset", "tae_sim")])
t0 = time.perf_counter()
materialize_everything(instance=instance, steps=[Step(k, "evaluate_model_on_dataset", k) for k in sys.argv[1:]])
print(json.dumps({"seconds": time.perf_counter() - t0}))
"""


def write_config(root: Path, base_url: str, args: argparse.Namespace, layout: str) -> Path:
    models = "".join(
        f"\n  vlm_{i}:\n    kind: openai\n    version: v{i}\n    options: {{base_url: {base_url}, api_key_env: null, "
        f"max_in_flight: 1, max_retries: 0, timeout_s: 60}}" for i in range(args.partitions))
    slices = f"raw_slices: {root / layout / 'slices'}\n" if layout == "distributed" else ""
    config = root / layout / "benchmark.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(f"warehouse: {root / layout / 'warehouse.duckdb'}\n{slices}reports_dir: {root / layout / 'reports'}\n"
                      f"cache_dir: {root / layout / 'cache'}\ndatasets:\n  tae_sim: {{kind: manifest, location: "
                      f"{root / 'tae_sim' / 'manifest.csv'}, label_set: canonical}}\nmodels:{models}\n")
    return config


def build_dataset(root: Path, n_images: int) -> dict[str, str]:
    """A Tae-shaped dataset cut to `n_images`; returns {image sha256: true emotion}."""
    tae = build_tae_fixture(root / "tae_sim", identities_per_cell=max(1, n_images // 36 + 1))
    lines = tae.manifest.read_text().splitlines()
    tae.manifest.write_text("\n".join(lines[: n_images + 1]) + "\n")
    truth = {}
    for line in lines[1: n_images + 1]:
        image, emotion = line.split(",")[:2]
        truth[hashlib.sha256((tae.root / image).read_bytes()).hexdigest()] = emotion
    return truth


def run_serial(config: Path, keys: list[str]) -> float:
    env = {**os.environ, "FER_CONFIG": str(config)}
    proc = subprocess.run([sys.executable, "-c", SERIAL, *keys], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True)
    if proc.returncode:
        sys.exit(f"serial run failed:\n{proc.stderr[-3000:]}")
    import json

    return json.loads(proc.stdout.strip().splitlines()[-1])["seconds"]


def run_distributed(root: Path, config: Path, queue: str, workers: int, hold_lock_s: float = 0.0
                    ) -> tuple[float, float]:
    """(wall seconds of `fan-out --wait`, seconds from the first run's start to the last run's end)."""
    import dagster as dg
    import psycopg2

    from dagster_project import cli
    from inference.config import load_config
    from inference.slice_rows import dataset_rows
    from inference.slice_store import SliceStore

    db = f"fer_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(f"{PG.replace('+psycopg2', '')}/postgres")
    admin.autocommit = True
    admin.cursor().execute(f"create database {db}")
    env = {**os.environ, "FER_CONFIG": str(config), "DAGSTER_HOME": str(root / "dagster_home"),
           "FER_DAGSTER_PG_URL": f"{PG}/{db}", "FER_CELERY_BROKER": BROKER, "DAGSTER_CELERY_BROKER_HOST": "127.0.0.1"}
    os.environ.update({k: env[k] for k in ("DAGSTER_HOME", "FER_DAGSTER_PG_URL", "FER_CELERY_BROKER")})
    cli.dagster_home(REPO_ROOT / "deploy" / "dagster.yaml")
    bench = load_config(config)
    data = dataset_rows(bench, bench.datasets["tae_sim"])
    SliceStore(bench.raw_slices).write_dataset("tae_sim", images=data.images, quarantined=data.quarantined,
                                               ratings=data.ratings, exclusions=data.exclusions)
    logs = [open(root / f"worker{i}.log", "w") for i in range(workers)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "celery", "--app", "dagster_celery.app", "worker", "--queues", queue, "--pool", "threads",
         "--concurrency", "1", "--hostname", f"bench{i}-{uuid.uuid4().hex[:6]}@%h", "--include", "dagster_project.definitions",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"], cwd=REPO_ROOT, env=env, stdout=log, stderr=log)
        for i, log in enumerate(logs)]
    try:
        deadline = time.monotonic() + 600  # workers up: they import the code once, before any run
        while time.monotonic() < deadline and not all(
                " ready." in (root / f"worker{i}.log").read_text() for i in range(workers)):
            time.sleep(1)
        if hold_lock_s:  # another process holds the warehouse's write lock meanwhile
            hold_write_lock(root / "warehouse.duckdb", hold_lock_s)
        t0 = time.perf_counter()
        fan = subprocess.run([sys.executable, "-m", "dagster_project.cli", "fan-out", "--wait"], cwd=REPO_ROOT,
                             env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=60)
    if fan.returncode:
        sys.exit(f"fan-out failed:\n{fan.stdout}\n{fan.stderr[-3000:]}")
    run_ids = [line.split()[0] for line in fan.stdout.splitlines()]
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records(dg.RunsFilter(run_ids=run_ids))
        span = max(r.end_time for r in records) - min(r.start_time for r in records)
    admin.cursor().execute(f"drop database if exists {db} with (force)")
    return wall, span


def count_lock_waits(root: Path) -> tuple[int, int]:
    """(lock waits logged, log files read) under `root`: the Celery workers' logs and the runs'
    captured stdout/stderr in DAGSTER_HOME (each wait is logged once, at its first retry)."""
    from inference.warehouse import LOCK_WAIT_MESSAGE

    logs = [p for p in root.rglob("*") if p.is_file() and p.suffix in (".log", ".err", ".out")]
    return sum(p.read_text(errors="replace").count(LOCK_WAIT_MESSAGE) for p in logs), len(logs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--images", type=int, default=30)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--hold-lock-s", type=float, default=0.0,
                        help="hold the warehouse's write lock for this long as the fan-out starts (as a long dbt "
                             "build would): the runs must still finish, with no lock wait")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fer-scale-"))
    truth = build_dataset(root, args.images)
    keys = [f"tae_sim|vlm_{i}@v{i}" for i in range(args.partitions)]
    print(f"{args.partitions} partitions x {args.images} images, {args.latency}s per request, one request at a "
          f"time per partition; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; work in {root}")
    with OpenAIServer(latency_s=args.latency) as server:
        server.answer_fn = lambda rec: truth.get(hashlib.sha256(rec.images[0]).hexdigest(), "neutral")
        from inference.vlm.run_tags import provider_tag

        queue = f"fer.{provider_tag('openai', server.base_url, None)}"
        embedded = write_config(root, server.base_url, args, "embedded")
        serial = run_serial(embedded, keys)
        print(f"serial, in-process, embedded:   {serial:7.1f} s")
        distributed = write_config(root, server.base_url, args, "distributed")
        wall, span = run_distributed(root / "distributed", distributed, queue, args.workers, args.hold_lock_s)
        print(f"fan-out, {args.workers} Celery workers:      {wall:7.1f} s wall ({span:.1f} s first run start -> "
              f"last run end)")
    print(f"speed-up: {serial / wall:.2f}x wall ({serial / span:.2f}x over the runs' span); target >= 3x")
    waits, files = count_lock_waits(root / "distributed")
    print(f"lock waits during the fan-out: {waits} (warehouse lock-wait warnings, inference.warehouse."
          f"LOCK_WAIT_MESSAGE, in {files} worker and captured run logs); neither the raw writers nor the "
          f"raw tables' asset checks open the warehouse file")
    import duckdb

    from inference.slice_store import attach_views

    sliced = root / "distributed" / "warehouse.duckdb"
    con = duckdb.connect(str(sliced))
    attach_views(con, root / "distributed" / "slices")
    con.close()
    dbt_args = ["build", "--exclude-resource-type", "test", "--exclude-resource-type", "unit_test"]
    for warehouse in (root / "embedded" / "warehouse.duckdb", sliced):
        run_dbt(dbt_args, warehouse=warehouse, target_dir=warehouse.parent / "target")
    expected, got = schema_tables(root / "embedded" / "warehouse.duckdb", "marts"), schema_tables(sliced, "marts")
    differ = differing_tables(expected, got)
    rows = {name: len(frame) for name, frame in expected.items()}
    print(f"marts identical: {not differ} ({rows}){'; differ: ' + ', '.join(differ) if differ else ''}")
    return 0 if not differ else 1


if __name__ == "__main__":
    sys.exit(main())
