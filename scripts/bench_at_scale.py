"""The whole refresh at scale: V model versions x N images x K maj@k samples (issue 11).

    .venv/bin/python scripts/bench_at_scale.py [--versions 20] [--images 100000] [--samples 5]
                                               [--add-one] [--keep DIR] [--json FILE]

Targets (issue 11, "At scale"): the refresh of 20 versions x 100,000 images x 5 samples
(10^7 raw answers) <= 3 minutes; adding one version to it <= 1/10 of that.

What is timed is the refresh as the orchestration runs it -- nothing is mocked:
1. `warehouse_foundation` (dbt seeds, staging and dataset views);
2. `refresh_slice` for every version (dbt slice models and marts, every stats.* table,
   every slice figure), then `refresh_cross_slice` (McNemar between versions, per-dataset
   figures, the HTML report);
3. with `--add-one`: one more version's answers, then `refresh_slice` for it and
   `refresh_cross_slice` -- what the sensors run when a version is evaluated.

What is NOT timed: making the answers. They are written straight into the raw tables by
DuckDB SQL (the rows `inference.warehouse.write_evaluation` would write for a maj@k VLM,
without image files or a model): a seeded hash decides each sample's answer, right with a
probability that depends on the image's race and the version (so statistics have group
differences to find), otherwise another emotion; a few answers are unparseable. The dataset
has no human ratings (a 100,000-image set rarely has them), so the rating statistics take
their "no ratings" path; their own cost is per rated image, not per version.

Printed: wall seconds and CPU seconds (this process + waited-for children, i.e. dbt) per
phase, when each slice refresh run had committed every stats.* table (what a researcher
queries; its figures come after), and the slowest asset steps summed over partitions. On a
shared machine wall time is inflated by other processes; CPU time is the steadier number.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

EMOTIONS = ("anger", "disgust", "fear", "happy", "neutral", "sad", "surprise")
RACES = ("white", "black", "east_asian", "south_asian")
GENDERS = ("female", "male")
MODEL, DATASET = "synth_vlm", "synth"


def write_config(root: Path, bootstrap_resamples: int) -> Path:
    config = root / "benchmark.yaml"
    config.write_text(f"""
warehouse: {root / 'warehouse.duckdb'}
reports_dir: {root / 'reports'}
cache_dir: {root / 'cache'}
datasets:
  {DATASET}:
    kind: manifest
    location: {root / 'never-read.csv'}   # the images are written to raw tables directly
    label_set: canonical
models:
  {MODEL}:
    kind: openai
    version: v01
    options: {{base_url: "http://127.0.0.1:9/v1", api_key_env: null, protocol: {{name: maj_at_k, k: 5}}}}
statistics:
  bootstrap_resamples: {bootstrap_resamples}
""")
    return config


def _sql_list(values: tuple[str, ...]) -> str:
    return "[" + ", ".join(f"'{v}'" for v in values) + "]"


def write_images(con, n_images: int) -> None:
    """raw.dataset_images: N images, emotion / race / gender / identity from the image number."""
    con.execute(f"""
        insert into raw.dataset_images (dataset, image_id, image_hash, label_set, source_label, identity,
            race, gender, age, width, height, extra, loaded_at, media_type)
        select '{DATASET}', printf('img/%06d.png', i), md5(i::varchar), 'canonical',
               {_sql_list(EMOTIONS)}[1 + i % 7], printf('p%05d', i // 7),
               {_sql_list(RACES)}[1 + (hash('race' || i) % 4)::int], {_sql_list(GENDERS)}[1 + (hash('gender' || i) % 2)::int],
               null, 48, 48, null, now(), 'image'
        from range({n_images}) t(i)
    """)


def write_version(con, version_index: int, n_images: int, n_samples: int) -> None:
    """raw.predictions (N x K answers), raw.model_runs and raw.model_versions of one version."""
    version = f"v{version_index:02d}"
    run_id = f"bench-{version}"
    # P(right) per race: 0.75, 0.70 (black, and lower as versions go on), 0.74, 0.72 (x1000)
    right = f"case race when 'black' then {700 - 2 * version_index} when 'white' then 750 " \
            "when 'east_asian' then 740 else 720 end"
    con.execute(f"""
        insert into raw.predictions (run_id, model, model_version, model_kind, label_set, dataset, image_id,
            image_hash, protocol, step, step_name, sample_index, attempt, prompt_hash, raw_text, parse_status,
            predicted_label, created_at)
        with images as (
            select image_id, image_hash, source_label, race,
                   list_position({_sql_list(EMOTIONS)}, source_label) - 1 as truth
            from raw.dataset_images where dataset = '{DATASET}'
        ), draws as (
            select images.*, s, hash(image_id, s, '{version}') % 1000 as u,
                   hash(image_id, s, '{version}', 'other') % 6 as shift, {right} as p_right
            from images, range({n_samples}) t(s)
        )
        select '{run_id}', '{MODEL}', '{version}', 'openai', 'canonical', '{DATASET}', image_id, image_hash,
               'maj_at_k', 1, 'emotion', s, 1, 'h', null,
               case when u >= 995 then 'unparseable' else 'ok' end,
               case when u >= 995 then null
                    when u < p_right then source_label
                    else {_sql_list(EMOTIONS)}[1 + ((truth + 1 + shift) % 7)::int] end,
               now()
        from draws
    """)
    con.execute(f"""
        insert into raw.model_runs (run_id, model, model_version, model_kind, dataset, started_at, finished_at,
            n_images, n_answers, n_no_face)
        values ('{run_id}', '{MODEL}', '{version}', 'openai', '{DATASET}', now(), now(),
            {n_images}, {n_images * n_samples}, 0)
    """)
    con.execute(f"""
        insert into raw.model_versions (model, model_version, model_kind, discovered_at, discovered_by,
            discovered_from, first_run_id)
        values ('{MODEL}', '{version}', 'openai', now(), 'config', null, '{run_id}')
    """)


def cpu_seconds() -> float:
    """CPU of this process (DuckDB's threads included) and of waited-for children (dbt, the
    statistics' and figures' worker processes once shut down)."""
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


class Phases:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def time(self, name: str, action) -> None:
        from dagster_project.analysis import on_cores

        wall, cpu = time.perf_counter(), cpu_seconds()
        action()
        # The worker processes of statistics and figures end with the phase, as they end with a
        # run's process: their CPU is then counted (children's CPU is counted once they end),
        # and the next phase starts its own, as the next run would.
        on_cores.shutdown()
        row = {"phase": name, "wall_s": time.perf_counter() - wall, "cpu_s": cpu_seconds() - cpu}
        self.rows.append(row)
        print(f"{name:<48} wall {row['wall_s']:7.1f} s   cpu {row['cpu_s']:7.1f} s", flush=True)


def step_events(instance, run_id: str) -> tuple[float, list[tuple[str, str, float]]]:
    """A run's first event's time and its (step key, "start" | "success", time) events."""
    import dagster as dg

    kinds = {dg.DagsterEventType.STEP_START: "start", dg.DagsterEventType.STEP_SUCCESS: "success"}
    entries = instance.all_logs(run_id)
    steps = [(entry.dagster_event.step_key, kinds[entry.dagster_event.event_type], entry.timestamp)
             for entry in entries
             if entry.dagster_event is not None and entry.dagster_event.step_key
             and entry.dagster_event.event_type in kinds]
    return (entries[0].timestamp if entries else 0.0), steps


def step_seconds(instance, run_ids: list[str]) -> collections.Counter:
    """Seconds per asset step (summed over the runs), from the runs' step start/success events."""
    totals: collections.Counter = collections.Counter()
    for run_id in run_ids:
        started: dict[str, float] = {}
        for key, kind, at in step_events(instance, run_id)[1]:
            if kind == "start":
                started[key] = at
            elif key in started:
                totals[key] += at - started[key]
    return totals


def results_committed(instance, run_ids: list[str]) -> list[dict]:
    """Per slice refresh run: seconds from its start until every stats.* table was committed
    (the last statistics step's success: the tables a researcher queries) and until it ended."""
    rows = []
    for run_id in run_ids:
        run = instance.get_run_by_id(run_id)
        if run is None or run.job_name != "refresh_slice":
            continue
        start, steps = step_events(instance, run_id)
        stats_done = [at for key, kind, at in steps if kind == "success" and key.startswith("stats__")]
        rows.append({"run": run.tags.get("dagster/asset_partition_range_start") or run.tags.get("dagster/partition"),
                     "stats_committed_s": (max(stats_done) - start) if stats_done else None,
                     "run_s": (steps[-1][2] - start) if steps else None})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=5, help="maj@k samples per image")
    parser.add_argument("--bootstrap", type=int, default=200, help="statistics.bootstrap_resamples")
    parser.add_argument("--add-one", action="store_true", help="then add one more version and time that")
    parser.add_argument("--keep", type=Path, default=None, help="keep the warehouse, reports and instance here")
    parser.add_argument("--json", type=Path, default=None, help="also write the timings here")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-at-scale-"))
    root.mkdir(parents=True, exist_ok=True)
    os.environ["FER_CONFIG"] = str(write_config(root, args.bootstrap))
    os.environ.pop("FER_WAREHOUSE", None)
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    (root / "dagster_home").mkdir(exist_ok=True)
    print(f"{args.versions} versions x {args.images} images x {args.samples} samples = "
          f"{args.versions * args.images * args.samples:,} raw answers; in {root}")
    try:
        phases, steps, committed = run(args)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print("\nslice refresh runs: every stats.* table committed after / the run ended after (seconds):")
    for row in committed:
        print(f"  {row['run']:<58} {row['stats_committed_s'] or 0:7.1f} / {row['run_s'] or 0:7.1f}")
    print("\nslowest asset steps (seconds, summed over partitions):")
    for key, seconds in steps.most_common(12):
        print(f"  {key:<60} {seconds:7.1f}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "phases": phases.rows, "steps": dict(steps),
                                         "results_committed": committed}, indent=2))


def run(args: argparse.Namespace) -> tuple[Phases, collections.Counter, list[dict]]:
    import dagster as dg

    from dagster_project.defs.dbt_assets import warehouse_foundation
    from dagster_project.defs.partitions import MODEL_PARTITIONS_NAME, slice_partition
    from dagster_project.defs.resources import resources
    from dagster_project.orchestration import load_definitions, refresh
    from dagster_project.settings import benchmark_config
    from inference import warehouse

    cfg = benchmark_config()
    instance = dg.DagsterInstance.get()
    defs = load_definitions()
    phases = Phases()
    run_ids: list[str] = []

    def build(versions: range) -> None:
        with warehouse.writer(cfg.warehouse) as con:
            warehouse.ensure_raw_schema(con)
            if versions.start == 1:
                write_images(con, args.images)
            for k in versions:
                write_version(con, k, args.images, args.samples)
        instance.add_dynamic_partitions(MODEL_PARTITIONS_NAME, [f"{MODEL}@v{k:02d}" for k in versions])

    def slices(versions: range) -> list[dg.MultiPartitionKey]:
        return [slice_partition(f"{MODEL}@v{k:02d}", DATASET) for k in versions]

    def foundation() -> None:
        result = dg.materialize([warehouse_foundation], instance=instance,
                                resources=resources().resources)
        run_ids.append(result.run_id)

    first = range(1, args.versions + 1)
    phases.time(f"write raw answers of {args.versions} versions (not timed)", lambda: build(first))
    total_wall, total_cpu = time.perf_counter(), cpu_seconds()
    phases.time("dbt foundation (seeds, staging, dataset views)", foundation)
    phases.time(f"refresh {args.versions} slices + cross-slice", lambda: run_ids.extend(refresh(defs, instance, slices(first))))
    wall, cpu = time.perf_counter() - total_wall, cpu_seconds() - total_cpu
    phases.rows.append({"phase": "whole refresh", "wall_s": wall, "cpu_s": cpu})
    print(f"{'WHOLE REFRESH (target <= 180 s)':<48} wall {wall:7.1f} s   cpu {cpu:7.1f} s", flush=True)
    if args.add_one:
        extra = range(args.versions + 1, args.versions + 2)
        phases.time("write raw answers of one more version (not timed)", lambda: build(extra))
        phases.time("ADD ONE VERSION: refresh it + cross-slice (target <= 18 s)",
                    lambda: run_ids.extend(refresh(defs, instance, slices(extra))))
    return phases, step_seconds(instance, run_ids), results_committed(instance, run_ids)


if __name__ == "__main__":
    main()
