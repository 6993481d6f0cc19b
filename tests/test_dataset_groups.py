"""Dataset groups (benchmark.yaml `dataset_groups:`): validated with the key and the fix, and
passed to dbt as the var the pooled marts read (group_accuracy_pooled; its SQL is checked by the
dbt unit test group_accuracy_pooled_counts_the_members_together)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.config import ConfigError, load_config

CONFIG = """
datasets:
  radiate: {kind: manifest, location: radiate.csv}
  tarr: {kind: manifest, location: tarr.csv}
  cfd: {kind: manifest, location: cfd.csv}
models:
  mini: {kind: fer_xception, version: v1}
"""


def _load(tmp_path: Path, groups: str):
    path = tmp_path / "benchmark.yaml"
    path.write_text(CONFIG + groups)
    return load_config(path)


def test_a_group_names_its_members_and_reaches_dbt_as_a_var(tmp_path):
    from dagster_project.defs.resources import WarehouseDbtResource

    cfg = _load(tmp_path, "dataset_groups: {radiate_tarr: [radiate, tarr]}\n")
    assert cfg.dataset_groups == {"radiate_tarr": ("radiate", "tarr")}
    assert _load(tmp_path, "").dataset_groups == {}
    dbt = WarehouseDbtResource(project_dir=str(Path(__file__).parents[1] / "dbt"), warehouse="w.duckdb",
                               dataset_groups=json.dumps(cfg.dataset_groups))
    assert json.loads(dbt.vars_args()[1])["dataset_groups"] == {"radiate_tarr": ["radiate", "tarr"]}


@pytest.mark.parametrize(("groups", "message"), [
    ("dataset_groups: {rt: [radiate, tar]}", r"dataset_groups\.rt: \['tar'\] are not configured datasets; use some of"),
    ("dataset_groups: {rt: [radiate]}", r"dataset_groups\.rt: list two or more different datasets"),
    ("dataset_groups: {rt: [radiate, radiate]}", r"dataset_groups\.rt: list two or more different datasets"),
    ("dataset_groups: {cfd: [radiate, tarr]}", r"dataset_groups\.cfd: 'cfd' is also a dataset's name"),
    ("dataset_groups: {Radiate-Tarr: [radiate, tarr]}", r"dataset_groups\.Radiate-Tarr: name must be lower-case"),
    ("dataset_groups: [radiate, tarr]", r"dataset_groups: must map a group name to a list of datasets"),
])
def test_bad_groups_are_named_with_the_fix(tmp_path, groups, message):
    with pytest.raises(ConfigError, match=message):
        _load(tmp_path, groups + "\n")
