"""Run the dbt project (dbt/) against a given DuckDB file, isolated from other runs.

Each call runs `dbt` in a subprocess with the warehouse path in FER_WAREHOUSE and its own
target/ and logs/ folders, so tests running in parallel never share a manifest or a log. Calls
with the same target folder reuse its saved parse (dbt's partial parsing), as Dagster's do.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from dagster_project.defs.dbt_runner import SLICE_ENV

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt"


class DbtError(RuntimeError):
    """dbt exited non-zero; the message carries its output and the failing nodes."""


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def run_dbt(args: list[str], warehouse: Path, target_dir: Path, timeout_s: float = 600,
            slice_: dict[str, str] | list[dict[str, str]] | None = None) -> dict[str, Any]:
    """Run `dbt <args>` on `warehouse` (for `slice_` only, as the Dagster asset does: in
    SLICE_ENV); return run_results.json (empty dict if none).

    Raises DbtError with dbt's output and the non-passing results when dbt fails.
    """
    target_dir.mkdir(parents=True, exist_ok=True)
    env = {
        **{k: v for k, v in os.environ.items() if k != SLICE_ENV},
        **({SLICE_ENV: json.dumps(slice_)} if slice_ is not None else {}),
        "FER_WAREHOUSE": str(warehouse),
        "DBT_TARGET_PATH": str(target_dir),
        "DBT_LOG_PATH": str(target_dir / "logs"),
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
        "DBT_USE_COLORS": "false",
    }
    cmd = [
        dbt_executable(), *args,
        "--project-dir", str(DBT_PROJECT_DIR),
        "--profiles-dir", str(DBT_PROJECT_DIR),
        "--target-path", str(target_dir),
    ]
    proc = subprocess.run(cmd, cwd=DBT_PROJECT_DIR, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    results_file = target_dir / "run_results.json"
    results: dict[str, Any] = json.loads(results_file.read_text()) if results_file.exists() else {}
    if proc.returncode != 0:
        bad = [
            f"{r.get('unique_id')}: {r.get('status')}: {r.get('message')}"
            for r in results.get("results", [])
            if r.get("status") not in ("success", "pass")
        ]
        raise DbtError(
            f"`{' '.join(cmd)}` exited {proc.returncode}\n"
            + ("non-passing nodes:\n  " + "\n  ".join(bad) + "\n" if bad else "")
            + f"--- stdout ---\n{proc.stdout[-20000:]}\n--- stderr ---\n{proc.stderr[-5000:]}"
        )
    return results
