"""CPU cost of loading the code location, what every run launched from the UI pays first.

Loads `dagster_project.definitions` in fresh processes (as a run worker does, with
DAGSTER_IS_DEV_CLI=1 as under `fer-warehouse ui` / `dg dev`), reports user+system CPU seconds
(median of --repeat; children such as a `dbt parse` included) and lists the heavy libraries the
load imported -- none should be (see DEVELOPERS.md "Keep the code location cheap to load").

    .venv/bin/python scripts/bench_code_location.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("scipy", "statsmodels", "pingouin", "sklearn", "matplotlib", "seaborn", "krippendorff",
         "torch", "transformers", "timm", "openai", "google.genai", "aiohttp")
LOAD = ("import json, sys\nfrom dagster_project.definitions import defs\ndefs()\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")


def load_once() -> tuple[float, list[str]]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    env = {**os.environ, "DAGSTER_IS_DEV_CLI": "1"}
    out = subprocess.run([sys.executable, "-c", LOAD], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, json.loads(out.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    runs = [load_once() for _ in range(args.repeat)]
    cpus = [cpu for cpu, _ in runs]
    print(f"code location load: median {statistics.median(cpus):.2f} s CPU over {len(cpus)} loads "
          f"({', '.join(f'{c:.2f}' for c in cpus)})")
    print(f"heavy libraries imported: {runs[-1][1] or 'none'}")
    return 1 if runs[-1][1] else 0


if __name__ == "__main__":
    sys.exit(main())
