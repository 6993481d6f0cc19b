"""Time to evaluate the k-th version of a watched model, k = 1..21 (target: t21 / t1 <= 1.2).

    .venv/bin/python scripts/bench_new_version.py [--versions 21] [--identities 10] [--keep DIR]

A Tae-shaped dataset (tests/support/tae_fixture.py: 3 races x 2 genders x 6 emotions x
`--identities` identities, simulated human raters) is ingested once. A loopback
OpenAI-compatible server (tests/support/openai_server.py) lists one more version of the model
`vlm` before each step; the real `watched_model_versions` sensor discovers it, and its run
request is executed in-process exactly as the daemon would: `evaluate_model_on_dataset` for the
new partition (three-step context-carry prompt: emotion, valence, arousal), then what
declarative automation runs after it: `refresh_slice` for that partition (dbt slice models,
statistics, figures, the bias regression gate) and `refresh_cross_slice` (McNemar between
versions, the per-dataset figures).

Each version answers differently (a seeded share of images misread, per version), so every
statistic has work to do. Printed per version: evaluation (inference) seconds, refresh seconds,
total, and rows in marts.group_accuracy; at the end the ratio of the last version to the first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.openai_server import Action, OpenAIServer, RecordedRequest  # noqa: E402
from tests.support.tae_fixture import EMOTIONS, build_tae_fixture, context_carry_reply  # noqa: E402


class VersionedResponder:
    """Answers the true emotion, except for a seeded 25 % of images (a fixed wrong emotion), and
    that emotion's human mean valence / arousal. The misread images are the same for every
    version unless `vary`: then every version costs the same work downstream (the statistics'
    optimizers converge alike), so the timings show growth with the number of versions only."""

    def __init__(self, manifest: Path, vary: bool = False) -> None:
        import csv

        self.vary = vary
        self.truth: dict[str, str] = {}
        with open(manifest, newline="") as fh:
            for row in csv.DictReader(fh):
                digest = hashlib.sha256((manifest.parent / row["image"]).read_bytes()).hexdigest()
                self.truth[digest] = row["emotion"]

    def __call__(self, recorded: RecordedRequest) -> Action:
        digest = hashlib.sha256(recorded.images[0]).hexdigest() if recorded.images else ""
        version = str((recorded.body or {}).get("model"))
        emotion = self.truth.get(digest, "neutral")
        seed = f"{version}|{digest}" if self.vary else digest
        draw = int(hashlib.sha256(seed.encode()).hexdigest()[:8], 16)
        if draw % 4 == 0:
            emotion = EMOTIONS[(EMOTIONS.index(emotion) + 1 + draw % 5) % len(EMOTIONS)]
        return context_carry_reply(recorded, emotion)


def write_config(root: Path, base_url: str, identities: int) -> Path:
    tae = build_tae_fixture(root / "tae", identities_per_cell=identities)
    config = root / "benchmark.yaml"
    config.write_text(f"""
warehouse: {root / 'warehouse.duckdb'}
reports_dir: {root / 'reports'}
cache_dir: {root / 'cache'}
datasets:
  tae:
    kind: manifest
    location: {tae.manifest}
    label_set: canonical
    human_ratings: {{location: {tae.ratings}, scale: [1, 9]}}
models:
  vlm:
    kind: openai
    version: v01
    watch: {{provider: openai, base_url: {base_url}, pattern: "v*", interval_s: 0}}
    options:
      base_url: {base_url}
      api_key_env: null
      protocol: {{name: context_carry}}
      max_in_flight: 16
statistics:
  min_cell_n: 5
  bootstrap_resamples: 50
""")
    return config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--versions", type=int, default=21)
    parser.add_argument("--identities", type=int, default=10, help="identities per race x gender cell")
    parser.add_argument("--keep", type=Path, default=None, help="keep the warehouse and instance here")
    parser.add_argument("--json", type=Path, default=None, help="also write the per-version rows here")
    parser.add_argument("--vary", action="store_true", help="each version misreads different images")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-new-version-"))
    root.mkdir(parents=True, exist_ok=True)
    versions = [f"v{k:02d}" for k in range(1, args.versions + 1)]
    server = OpenAIServer(models=versions[:1]).start()
    try:
        os.environ["FER_CONFIG"] = str(write_config(root, server.base_url, args.identities))
        os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
        (root / "dagster_home").mkdir(exist_ok=True)
        server.responder = VersionedResponder(root / "tae" / "manifest.csv", vary=args.vary)
        rows = run(versions, server)
    finally:
        server.stop()
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    first, last = rows[0], rows[-1]
    print(f"\nversion {last['version']} vs {first['version']}: total {last['total_s'] / first['total_s']:.2f}x "
          f"(evaluation {last['evaluate_s'] / first['evaluate_s']:.2f}x, "
          f"refresh {last['refresh_s'] / first['refresh_s']:.2f}x); target <= 1.2x")
    if len(rows) >= 6:  # one slow tick (another process on the cores) should not decide it
        head = statistics.median(r["total_s"] for r in rows[:3])
        tail = statistics.median(r["total_s"] for r in rows[-3:])
        print(f"median of the last three / median of the first three: {tail / head:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


def run(versions: list[str], server: OpenAIServer) -> list[dict]:
    import dagster as dg

    from dagster_project.orchestration import load_definitions, refresh
    from dagster_project.settings import benchmark_config
    from inference import warehouse

    instance = dg.DagsterInstance.get()
    defs = load_definitions()
    sensor = defs.resolve_sensor_def("watched_model_versions")
    start = time.perf_counter()
    defs.resolve_job_def("ingest_dataset").execute_in_process(instance=instance, partition_key="tae")
    print(f"ingest (no model yet): {time.perf_counter() - start:.1f}s")
    print(f"{'version':>8} {'requests':>9} {'evaluate_s':>11} {'refresh_s':>10} {'total_s':>8} {'mart_rows':>10}")
    cursor, rows = None, []
    for k, version in enumerate(versions, start=1):
        server.models = tuple(versions[:k])
        server.reset()
        with dg.partition_loading_context(dynamic_partitions_store=instance):
            tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor))
        cursor = tick.cursor
        if len(tick.run_requests) != 1:
            raise SystemExit(f"expected one run request for {version}, got {tick.run_requests} ({tick.skip_message})")
        request = tick.run_requests[0]
        t0 = time.perf_counter()
        defs.resolve_job_def("evaluate_model_on_dataset").execute_in_process(
            instance=instance, partition_key=request.partition_key, tags=request.tags)
        t1 = time.perf_counter()
        refresh(defs, instance, [request.partition_key])
        t2 = time.perf_counter()
        con = warehouse.connect(benchmark_config().warehouse, read_only=True)
        mart_rows = con.execute("select count(*) from marts.group_accuracy").fetchall()[0][0]
        con.close()
        row = {"version": version, "requests": server.generation_count, "evaluate_s": t1 - t0,
               "refresh_s": t2 - t1, "total_s": t2 - t0, "mart_rows": mart_rows}
        rows.append(row)
        print(f"{version:>8} {row['requests']:>9} {row['evaluate_s']:>11.1f} {row['refresh_s']:>10.1f} "
              f"{row['total_s']:>8.1f} {mart_rows:>10}", flush=True)
    return rows


if __name__ == "__main__":
    main()
