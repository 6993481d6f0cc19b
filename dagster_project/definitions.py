"""Entry point for `dagster dev` / workspace.yaml: everything lives in the defs/ tree."""

from pathlib import Path

import dagster as dg

from dagster_project.defs.automation import EXECUTOR


@dg.definitions
def defs() -> dg.Definitions:
    # The executor of runs outside the named jobs (asset page, backfills, declarative
    # automation): one process per run, like the jobs (see defs/automation.py).
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(executor=EXECUTOR),
    )
