"""Process-wide settings shared by the Dagster definitions (config, paths, dbt project)."""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path

from inference.config import CONFIG_ENV, DEFAULT_CONFIG, BenchmarkConfig, load_config

REPO_ROOT = Path(__file__).resolve().parents[1]
DBT_PROJECT_DIR = REPO_ROOT / "dbt"

# dbt runs as a subprocess; when this interpreter's environment is not activated (e.g.
# `.venv/bin/fer-warehouse`), its `dbt` is still the one to use.
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")


@functools.cache
def benchmark_config() -> BenchmarkConfig:
    """The benchmark declaration, loaded once per process.

    $FER_CONFIG wins; otherwise ./benchmark.yaml, falling back to the one at the repo root so
    that `dagster dev` started from another directory still finds it.
    """
    if os.environ.get(CONFIG_ENV):
        return load_config(os.environ[CONFIG_ENV])
    local = Path.cwd() / DEFAULT_CONFIG
    return load_config(local if local.is_file() else REPO_ROOT / DEFAULT_CONFIG)
