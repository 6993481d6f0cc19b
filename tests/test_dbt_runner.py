"""dbt_build: a real `dbt seed` of one seed, against a warehouse another process holds locked;
the saved parse shared between invocations; the slice in the environment of dbt only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import dagster as dg
from dagster_dbt import dbt_assets

from dagster_project.defs.dbt_project import dbt_project
from dagster_project.defs.dbt_runner import SLICE_ENV, slice_environment, dbt_build
from dagster_project.defs.resources import WarehouseDbtResource

LOCKED_NOTE = "warehouse locked by another process"


@dbt_assets(manifest=dbt_project.manifest_path, select="emotions")
def one_seed(context, dbt: WarehouseDbtResource):
    yield from dbt_build(context, dbt, ["seed", *dbt.vars_args()])


def _materialize(instance: dg.DagsterInstance, warehouse) -> dg.ExecuteInProcessResult:
    dbt = WarehouseDbtResource(project_dir=dbt_project, profiles_dir=str(dbt_project.project_dir),
                               warehouse=str(warehouse))
    return dg.materialize([one_seed], resources={"dbt": dbt}, instance=instance, raise_on_error=False)


def _warnings(instance: dg.DagsterInstance) -> list[str]:
    return [entry.user_message for run in instance.get_runs() for entry in instance.all_logs(run.run_id)
            if LOCKED_NOTE in (entry.user_message or "")]


def test_a_locked_warehouse_is_waited_out(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    # Holds the write lock until told (a line on stdin), at most 5 minutes.
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import duckdb, select, sys; c = duckdb.connect(sys.argv[1]); print('locked', flush=True); "
         "select.select([sys.stdin], [], [], 300); c.close()", str(warehouse)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    with dg.instance_for_test() as instance:
        def release_after_first_retry() -> None:
            deadline = time.monotonic() + 300
            while not _warnings(instance) and time.monotonic() < deadline:
                time.sleep(0.2)
            holder.communicate("go\n", timeout=30)

        releaser = threading.Thread(target=release_after_first_retry, daemon=True)
        releaser.start()
        result = _materialize(instance, warehouse)
        releaser.join(timeout=300)
        assert result.success
        assert _warnings(instance)[0].endswith("retrying `dbt seed` (1/5)")
        # only the successful try's events reach Dagster: one materialization of the seed
        assert [m.asset_key for m in result.get_asset_materialization_events()] == [
            dg.AssetKey(["seeds", "emotions"])]
    assert holder.wait(timeout=30) == 0


def test_another_failure_carries_the_end_of_dbt_log(tmp_path):
    not_a_file = tmp_path / "a_directory"
    not_a_file.mkdir()
    with dg.instance_for_test() as instance:
        result = _materialize(instance, not_a_file)
        assert not result.success
        (failure,) = [e for e in result.all_events if e.is_step_failure]
        message = failure.step_failure_data.user_failure_data.description
        assert message.startswith("`dbt seed` failed; end of dbt.log:")
        assert str(not_a_file) in message  # dbt's own error, naming the path it could not open
        assert not _warnings(instance)  # not a lock: not retried


def _invocation_logs(run_id: str) -> list[Path]:
    """dbt.log of each invocation of a run (dagster-dbt names its target folder after the run)."""
    shared = Path(os.environ.get("DBT_TARGET_PATH", "target"))  # where dagster-dbt puts them
    shared = shared if shared.is_absolute() else dbt_project.project_dir / shared
    return sorted(shared.glob(f"one_seed-{run_id[:7]}-*/dbt.log"))


def test_the_next_invocation_reuses_the_saved_parse(tmp_path):
    """Each invocation shares its saved parse; the next one with the same vars parses nothing again."""
    with dg.instance_for_test() as instance:
        first, second = (_materialize(instance, tmp_path / "warehouse.duckdb") for _ in range(2))
        assert first.success and second.success
        (log,) = _invocation_logs(second.run_id)
        # The first may parse in full (another config's parse may have been shared last).
        assert "Unable to do partial parsing" not in log.read_text()


def test_the_slice_is_in_the_environment_only_while_dbt_starts(monkeypatch):
    monkeypatch.setenv(SLICE_ENV, '{"stale": "value"}')  # e.g. left by hand: never leaks into a build
    with slice_environment([{"model": "m", "model_version": "1", "dataset": "d"},
                            {"model": "m", "model_version": "2", "dataset": "d"}]):
        assert json.loads(os.environ[SLICE_ENV]) == [{"dataset": "d", "model": "m", "model_version": "1"},
                                                     {"dataset": "d", "model": "m", "model_version": "2"}]
    with slice_environment(None):
        assert SLICE_ENV not in os.environ  # a build of every slice
    assert os.environ[SLICE_ENV] == '{"stale": "value"}'
