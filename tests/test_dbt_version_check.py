"""dagster-dbt asks `dbt --version` before every dbt command; the dbt resource answers from the
installed dbt-core when the executable is this interpreter's own dbt (no process), and asks the
executable otherwise. Both answers are checked against what `dbt --version` prints. It also
builds an in-process dbt adapter per command, which the resource skips."""

import re
import stat
import subprocess
import sys
from pathlib import Path

from packaging.version import Version

from dagster_project.defs.resources import WarehouseDbtResource, own_dbt_version
from dagster_project.settings import DBT_PROJECT_DIR


def _printed_version(executable: str) -> Version:
    printed = subprocess.run([executable, "--version"], capture_output=True, text=True, check=True).stdout
    return Version(re.search(r"(\d+\.\d+\.\d+)", printed).group(1))


def _resource(executable: str) -> WarehouseDbtResource:
    return WarehouseDbtResource(project_dir=str(DBT_PROJECT_DIR), profiles_dir=str(DBT_PROJECT_DIR),
                                warehouse="unused.duckdb", dbt_executable=executable)


def test_this_interpreters_dbt_is_answered_from_its_package_as_dbt_prints_it():
    own = str(Path(sys.executable).parent / "dbt")
    assert own_dbt_version("dbt") == own_dbt_version(own) == _printed_version(own)
    assert _resource("dbt")._cli_version == _printed_version(own)


def test_another_dbt_executable_is_asked(tmp_path):
    other = tmp_path / "dbt"
    other.write_text("#!/bin/sh\necho 'Core:\n  - installed: 1.9.4'\n")
    other.chmod(other.stat().st_mode | stat.S_IXUSR)
    assert own_dbt_version(str(other)) is None
    assert _resource(str(other))._cli_version == Version("1.9.4") == _printed_version(str(other))


def test_a_dbt_command_starts_without_an_in_process_adapter():
    """dagster-dbt would load dbt's project, profile and macros in this process before each
    command (~2 s CPU) for row-count and column metadata the project never asks for."""
    invocation = _resource("dbt").cli(["--version"], manifest={"nodes": {}, "sources": {}, "metadata": {}},
                                      raise_on_error=True)
    assert invocation.wait().is_successful()
    assert invocation.adapter is None
