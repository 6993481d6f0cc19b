"""Session set-up: one small benchmark (fixture datasets, both Xception models) and one
`dbt parse`, before any Dagster definitions are imported (they read the config at import).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
LONDON = SHARED / "datasets" / "london_set"
BIG_XCEPTION_DIR = SHARED / "models" / "face_classification"
PER_GROUP = 2  # identities per ethnicity x gender cell of the fixture subset


def fixture_identities() -> list[str]:
    """A few identities from every ethnicity x gender cell of the London Set (plus the
    two with a missing age), so every grouping has data."""
    rows = [line.split(",") for line in (LONDON / "london_info.csv").read_text().splitlines()[1:]]
    chosen: dict[tuple[str, str], list[str]] = {}
    for face_id, age, gender, eth in rows:
        cell = chosen.setdefault((eth, gender), [])
        if len(cell) < PER_GROUP or age == "NA":
            cell.append(face_id)
    return sorted(i for ids in chosen.values() for i in ids)


def _build_session_fixture(root: Path) -> Path:
    london = root / "london_subset"
    (london / "neutral_front").mkdir(parents=True)
    (london / "smiling_front").mkdir(parents=True)
    identities = fixture_identities()
    info_lines = (LONDON / "london_info.csv").read_text().splitlines()
    keep = [info_lines[0]] + [line for line in info_lines[1:] if line.split(",")[0] in identities]
    (london / "london_info.csv").write_text("\n".join(keep) + "\n")
    for face_id in identities:
        shutil.copy(LONDON / "neutral_front" / f"{face_id}_03.jpg", london / "neutral_front")
        shutil.copy(LONDON / "smiling_front" / f"{face_id}_08.jpg", london / "smiling_front")
    config = root / "benchmark.yaml"
    config.write_text(
        f"""
warehouse: {root / 'warehouse.duckdb'}
reports_dir: {root / 'reports'}
cache_dir: {REPO_ROOT / 'data' / 'cache'}
datasets:
  london_subset:
    kind: london_set
    location: {london}
models:
  mini_xception:
    kind: fer_xception
    version: fer2013_mini_XCEPTION.102-0.66
  big_xception:
    kind: fer_xception
    version: fer2013_big_XCEPTION.54-0.66
    options:
      local_dir: {BIG_XCEPTION_DIR}
"""
    )
    return config


def pytest_configure(config: pytest.Config) -> None:
    if not LONDON.is_dir():
        raise pytest.UsageError(f"tests need the shared assets at {SHARED} (London Set, FER models)")
    root = Path(tempfile.mkdtemp(prefix="fer-session-"))
    config._fer_session_root = root  # type: ignore[attr-defined]
    os.environ["FER_CONFIG"] = str(_build_session_fixture(root))
    os.environ.pop("FER_WAREHOUSE", None)
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    (root / "dagster_home").mkdir()


def pytest_unconfigure(config: pytest.Config) -> None:
    root = getattr(config, "_fer_session_root", None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def session_config_path() -> Path:
    return Path(os.environ["FER_CONFIG"])
