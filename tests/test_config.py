"""benchmark.yaml validation: every error names the key and the fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.config import ConfigError, load_config

VALID = """
datasets:
  london:
    kind: london_set
    location: faces
models:
  mini:
    kind: fer_xception
    version: fer2013_mini_XCEPTION.102-0.66
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "benchmark.yaml"
    path.write_text(text)
    return path


def test_valid_config_resolves_paths_relative_to_the_file(tmp_path, monkeypatch):
    monkeypatch.delenv("FER_WAREHOUSE", raising=False)
    cfg = load_config(_write(tmp_path, VALID))
    assert cfg.warehouse == tmp_path / "data" / "warehouse.duckdb"
    assert cfg.resolve(cfg.datasets["london"].location) == tmp_path / "faces"
    assert cfg.models["mini"].partition_key == "mini@fer2013_mini_XCEPTION.102-0.66"
    assert cfg.datasets["london"].effective_label_set == "london_set"


def test_warehouse_env_overrides_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_WAREHOUSE", str(tmp_path / "elsewhere.duckdb"))
    assert load_config(_write(tmp_path, VALID)).warehouse == tmp_path / "elsewhere.duckdb"


def test_config_env_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("FER_CONFIG", str(_write(tmp_path, VALID)))
    assert load_config().path == tmp_path / "benchmark.yaml"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (VALID + "extra_section: 1\n", "unknown key 'extra_section'"),
        (VALID.replace("kind: fer_xception", "kind: fer_resnet"), "models.mini.kind: 'fer_resnet' is not a known kind; use one of"),
        (VALID.replace("    version: fer2013_mini_XCEPTION.102-0.66\n", ""), "models.mini.version: required key is missing; add it"),
        (VALID.replace("version: fer2013_mini_XCEPTION.102-0.66", "version: 'a|b'"), "models.mini.version: Value error, use letters"),
        (VALID.replace("    location: faces", "    locaton: faces"), "datasets.london.locaton: unknown key; remove it"),
        (VALID.replace("  london:", "  London-Set:"), "datasets.London-Set: name must be lower-case"),
        (VALID + "statistics:\n  alpha: 2\n", "statistics.alpha: Input should be less than 1"),
        ("datasets: []\n", "'datasets:' must map names to entries"),
        ("- just\n- a list\n", "the top level must be a mapping"),
        ("datasets: {a: [\n", "not valid YAML"),
    ],
)
def test_invalid_config_names_key_and_fix(tmp_path, text, expected):
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, text))
    assert expected in str(err.value)
    assert str(tmp_path / "benchmark.yaml") in str(err.value)


def test_missing_file_says_how_to_fix(tmp_path):
    with pytest.raises(ConfigError, match="does not exist; create it"):
        load_config(tmp_path / "nope.yaml")


def test_model_datasets_must_be_configured(tmp_path):
    text = VALID.replace("    version: fer2013_mini_XCEPTION.102-0.66", "    version: v1\n    datasets: [london, paris]")
    with pytest.raises(ConfigError, match=r"models.mini.datasets: \['paris'\] are not configured datasets"):
        load_config(_write(tmp_path, text))
    cfg = load_config(_write(tmp_path, VALID.replace("    version: fer2013_mini_XCEPTION.102-0.66", "    version: v1\n    datasets: [london]")))
    assert cfg.models["mini"].covers("london") and not cfg.models["mini"].covers("paris")


IMPORTED = VALID.replace("kind: fer_xception", "kind: imported").replace(
    "version: fer2013_mini_XCEPTION.102-0.66", "version: run-1\n    options: {files: {london: p.csv}}")


def test_model_family_defaults_by_kind_and_is_required_for_imported(tmp_path):
    # every kind with a default, as strength inversion reads it
    families = {kind: load_config(_write(tmp_path, VALID.replace("kind: fer_xception", f"kind: {kind}")
                                         .replace("    version: fer2013_mini_XCEPTION.102-0.66",
                                                  "    version: v1" + ("\n    options: {model_id: m}"
                                                                      if kind in ("transformers", "mlx") else ""))))
                .models["mini"].family
                for kind in ("fer_xception", "emonet", "hsemotion", "image_classifier", "openai", "gemini",
                             "transformers", "clip")}
    assert families == {"fer_xception": "fer", "emonet": "fer", "hsemotion": "fer", "image_classifier": "fer",
                        "openai": "vlm", "gemini": "vlm", "transformers": "vlm", "clip": "clip"}
    with pytest.raises(ConfigError) as err:
        load_config(_write(tmp_path, IMPORTED))
    assert "models.mini.family: " in str(err.value) and "required for kind 'imported'" in str(err.value)
    assert "'family: fer'" in str(err.value) and "'family: vlm'" in str(err.value)
    assert load_config(_write(tmp_path, IMPORTED.replace("kind: imported", "kind: imported\n    family: vlm"))
                       ).models["mini"].family == "vlm"
    # a declared family overrides the kind's default; an unknown one names the choices
    assert load_config(_write(tmp_path, VALID.replace("kind: fer_xception", "kind: fer_xception\n    family: other"))
                       ).models["mini"].family == "other"
    with pytest.raises(ConfigError, match=r"models.mini.family: .*'llm' is not a model family; use one of: fer, vlm"):
        load_config(_write(tmp_path, IMPORTED.replace("kind: imported", "kind: imported\n    family: llm")))


def test_paper_name_exact_or_pattern_reaches_dbt(tmp_path):
    """`paper_name:` sets any model version beside a paper's column (dbt var paper_names, read by
    the papers views' name_matches): an `openai_main` at gpt-4o-2024-08-06 is Chhua's GPT-4o."""
    from dagster_project.defs.resources import WarehouseDbtResource
    from inference.paper_names import paper_names

    text = VALID.replace("kind: fer_xception", "kind: openai\n    paper_name: GPT-4o").replace(
        "version: fer2013_mini_XCEPTION.102-0.66", "version: gpt-4o-2024-08-06").replace(
        "  mini:", "  openai_main:").replace(
        "    location: faces", "    location: faces\n    paper_name: {pattern: 'London( Set)?'}")
    cfg = load_config(_write(tmp_path, text))
    names = paper_names(cfg.models, cfg.datasets)
    assert names == {"models": {"openai_main": {"exact": "GPT-4o"}}, "datasets": {"london": {"pattern": "London( Set)?"}}}
    resource = WarehouseDbtResource(project_dir=str(Path(__file__).resolve().parents[1] / "dbt"), warehouse="w.duckdb",
                                    paper_names=json.dumps(names))
    assert json.loads(resource.vars_args()[1])["paper_names"] == names
    with pytest.raises(ConfigError, match=r"models.openai_main.paper_name: .*'GPT-4o\(' is not a regular expression"):
        load_config(_write(tmp_path, text.replace("paper_name: GPT-4o", "paper_name: {pattern: 'GPT-4o('}")))
