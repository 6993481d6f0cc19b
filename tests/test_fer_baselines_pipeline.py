"""The FER baselines through Dagster and dbt: a tiny random-initialised ViT (`image_classifier`),
an HSEmotion EfficientNet-B0 VA-MTL (`hsemotion`) and EmoNet (`emonet`, 8 classes + valence and
arousal) answer on a six-image manifest dataset as
model x dataset partitions (a separate process: the definitions read their config at import);
dbt then builds `marts.group_accuracy` and, for the VA models, the dimensional answers that the
dimensional statistics read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
from PIL import Image

from dbt_support import run_dbt
from fer_baseline_support import emonet_weights, hsemotion_weights, tiny_vit
from inference.models.fer_baselines import VA_MAPPING
from tests.test_clip_pipeline import RUN

REPO_ROOT = Path(__file__).resolve().parents[1]
PEOPLE = [("a", "happy", "black", "female"), ("b", "sad", "white", "male"), ("c", "neutral", "east_asian", "female"),
          ("d", "happy", "white", "female"), ("e", "anger", "black", "male"), ("f", "neutral", "east_asian", "male")]


def _dataset(root: Path) -> Path:
    (root / "img").mkdir(parents=True)
    for i in range(len(PEOPLE)):
        Image.new("RGB", (48, 56), (40 * i, 90, 200 - 20 * i)).save(root / "img" / f"{i}.png")
    pd.DataFrame({"image": [f"img/{i}.png" for i in range(len(PEOPLE))], "emotion": [p[1] for p in PEOPLE],
                  "race": [p[2] for p in PEOPLE], "gender": [p[3] for p in PEOPLE],
                  "identity": [p[0] for p in PEOPLE]}).to_csv(root / "manifest.csv", index=False)
    return root / "manifest.csv"


def test_fer_baselines_reach_group_accuracy_and_the_dimensional_answers(tmp_path):
    manifest = _dataset(tmp_path / "faces")
    vit = tiny_vit(tmp_path / "vit")
    hse = hsemotion_weights(tmp_path / "enet_b0_8_va_mtl.pt")
    emonet = emonet_weights(tmp_path / "emonet_8.pth")
    warehouse = tmp_path / "warehouse.duckdb"
    config = tmp_path / "benchmark.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "warehouse": str(warehouse), "reports_dir": str(tmp_path / "reports"), "cache_dir": str(tmp_path / "cache"),
        "datasets": {"london_subset": {"kind": "manifest", "location": str(manifest), "label_set": "canonical"}},
        "models": {
            "vit_fer": {"kind": "image_classifier", "version": "tiny-random",
                        "options": {"model": str(vit), "device": "cpu", "batch_size": 4}},
            "hse_va": {"kind": "hsemotion", "version": "random-b0", "options": {"path": str(hse), "device": "cpu"}},
            "emonet8": {"kind": "emonet", "version": "random-8", "options": {"path": str(emonet), "device": "cpu"}},
        },
    }))
    env = {**os.environ, "FER_CONFIG": str(config), "DAGSTER_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    env.pop("FER_WAREHOUSE", None)
    done = subprocess.run([sys.executable, "-c", RUN], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]
    # `run`, not `build`: the seeds and models are data-tested by the dbt project tests; this saves ~17 s CPU
    run_dbt(["run", "--select", "+group_accuracy", "+int_model_dimensional_answers"], warehouse=warehouse,
            target_dir=tmp_path / "target")

    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        accuracy = con.execute(
            "select model, grouping, group_value, n_images from marts.group_accuracy "
            "where true_emotion = 'all' order by all").df()
        dims = con.execute(
            "select model, dimension, value, n_valid, value_mapping, race from "
            "intermediate.int_model_dimensional_answers order by all").df()
        labels = con.execute("select distinct model, label_set from raw.predictions order by all").fetchall()
    finally:
        con.close()
    assert labels == [("emonet8", "emonet"), ("hse_va", "hsemotion"), ("vit_fer", "hf_fer")]
    for model in ("emonet8", "hse_va", "vit_fer"):
        race = accuracy[(accuracy["model"] == model) & (accuracy["grouping"] == "race")]
        assert dict(zip(race["group_value"], race["n_images"])) == {"black": 2, "east_asian": 2, "white": 2}
    assert set(dims["model"]) == {"emonet8", "hse_va"}  # only the VA models answer valence / arousal
    assert dims.groupby(["model", "dimension"]).size().to_dict() == {
        (m, d): 6 for m in ("emonet8", "hse_va") for d in ("arousal", "valence")}
    assert dims["value"].between(1, 9).all() and (dims["n_valid"] == 1).all()
    assert set(dims["value_mapping"]) == {VA_MAPPING}
