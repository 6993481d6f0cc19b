"""One benchmark config through Dagster in a separate process (the definitions read their
config at import): ingest every dataset, evaluate every configured slice, build each slice's dbt
models (not its statistics or figures), then the views over every slice (papers.*, the
across-slice marts) and, with `report`, the HTML report. Only what a test reads is run."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
RUN = """
import sys
import dagster as dg
from dagster_project.defs.dbt_assets import warehouse_after_stats, warehouse_slices
from dagster_project.defs.html_report import html_report
from dagster_project.defs.partitions import register_configured_models
from dagster_project.orchestration import configured_slices, load_definitions
from dagster_project.settings import benchmark_config

cfg, instance, defs = benchmark_config(), dg.DagsterInstance.ephemeral(), load_definitions()
register_configured_models(instance, cfg)

def run(job, assets=None, **partition):
    selection = list(assets) if assets is not None else None
    result = defs.resolve_job_def(job).execute_in_process(instance=instance, asset_selection=selection, **partition)
    assert result.success, job

for dataset in sorted(cfg.datasets):
    run("ingest_dataset", partition_key=dataset)
for key in configured_slices(cfg):
    run("evaluate_model_on_dataset", partition_key=key)
    run("refresh_slice", warehouse_slices.keys, partition_key=key)
report = list(html_report.keys) if sys.argv[1] == "report" else []
run("refresh_cross_slice", [*warehouse_after_stats.keys, *report])
"""


def materialize_slices(config: Path, home: Path, *, report: bool = False, timeout_s: float = 900) -> None:
    """Run the steps above for `config`, with DAGSTER_HOME and dbt's target under `home`."""
    env = {**os.environ, "FER_CONFIG": str(config), "DAGSTER_HOME": str(home),
           "DBT_TARGET_PATH": str(home / "dbt_target")}
    env.pop("FER_WAREHOUSE", None)
    done = subprocess.run([sys.executable, "-c", RUN, "report" if report else "no-report"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
