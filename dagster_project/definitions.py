"""Entry point for `dagster dev` / workspace.yaml: everything lives in the defs/ tree."""

import warnings
from pathlib import Path

import dagster as dg

# Beta / preview notices about Dagster APIs we chose (e.g. MultiToSingleDimensionPartitionMapping)
# say nothing a user of the UI can act on; every code-location load would repeat them in its log.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

from dagster_project.defs.automation import EXECUTOR  # noqa: E402 - after the filters above


@dg.definitions
def defs() -> dg.Definitions:
    # The executor of runs outside the named jobs (asset page, backfills, declarative
    # automation): one process per run, like the jobs (see defs/automation.py).
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=EXECUTOR),
    )
