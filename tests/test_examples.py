"""The seed studies' configs under examples/ (README "Reproduce the seed studies") load and
validate -- structure, kinds, VLM protocols and templates, dataset groups -- without any dataset
or weights file present (those are read when a dataset is ingested or a model built)."""

from __future__ import annotations

from pathlib import Path

import pytest

from inference.config import load_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize(("name", "datasets", "models"), [
    ("chhua", {"radiate", "tarr", "cfd"},
     {"gpt4o", "gpt4o_cot", "gemini_flash", "gemini_pro", "paligemma", "clip_linear_probe"}),
    ("tae", {"gist_ai_face_db"}, {"gemma3", "llama32_vision", "efficientnet_va", "emonet", "beit"}),
    ("asanuma", {"caer", "caer_s"},
     {"gemini_7class", "gemini_6class", "gemini_two_stage", "gpt4o_7class", "gpt4o_6class", "gpt4o_two_stage"}),
])
def test_each_seed_study_config_loads(name, datasets, models, monkeypatch):
    monkeypatch.delenv("FER_WAREHOUSE", raising=False)
    monkeypatch.delenv("FER_RAW_SLICES", raising=False)
    cfg = load_config(EXAMPLES / f"{name}.yaml")
    assert set(cfg.datasets) == datasets and set(cfg.models) == models
    assert cfg.warehouse == (EXAMPLES.parent / "data" / name / "warehouse.duckdb").resolve()
    if name == "chhua":
        # RADIATE + Tarr, and all three: the pool papers.chhua_table2 is met by
        assert cfg.dataset_groups == {"radiate_tarr": ("radiate", "tarr"), "radiate_tarr_cfd": ("radiate", "tarr", "cfd")}


def test_tae_families_make_the_strength_inversion_comparable(monkeypatch):
    """Tae et al. compare FER baselines with VLMs: the example's baselines (kinds hsemotion, emonet,
    image_classifier) are FER models, its two transformers models VLMs (once all 'other' / absent)."""
    monkeypatch.delenv("FER_WAREHOUSE", raising=False)
    cfg = load_config(EXAMPLES / "tae.yaml")
    assert {name: model.family for name, model in cfg.models.items()} == {
        "gemma3": "vlm", "llama32_vision": "vlm", "efficientnet_va": "fer", "emonet": "fer", "beit": "fer"}
