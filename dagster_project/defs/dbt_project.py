"""The one cached DbtProject.

The manifest is parsed here when it is missing or older than any dbt source file, so every
entry point (demo, tests, a fresh clone, `fer-warehouse ui`) loads definitions that match the
SQL on disk. Not `prepare_if_dev()`: under `dg dev` / `dagster dev` (DAGSTER_IS_DEV_CLI, which
every run worker inherits) it runs `dbt parse` on EVERY load of the code location -- each run
launched from the UI paid ~14 s CPU for a manifest that was already fresh.
"""

from pathlib import Path

from dagster_dbt import DbtProject

from dagster_project.settings import DBT_PROJECT_DIR

SOURCE_DIRS = ("models", "seeds", "macros", "tests")

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)


def _newest_source_mtime(root: Path) -> float:
    files = [root / "dbt_project.yml", *(p for d in SOURCE_DIRS for p in (root / d).rglob("*") if p.is_file())]
    return max(p.stat().st_mtime for p in files if p.exists())


def manifest_is_stale() -> bool:
    manifest = dbt_project.manifest_path
    return not manifest.exists() or manifest.stat().st_mtime < _newest_source_mtime(DBT_PROJECT_DIR)


if manifest_is_stale():
    dbt_project.preparer.prepare(dbt_project)
