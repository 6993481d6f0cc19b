"""The `clip` kind through Dagster: a config with a randomly initialised tiny open_clip model
(zero-shot and linear probe) is ingested and evaluated as model x dataset partitions, in a
separate process (the definitions read their config at import), and its answers and image
embeddings land in the raw tables like every other model's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from tests.test_clip import TINY, TINY_CFG

REPO_ROOT = Path(__file__).resolve().parents[1]

RUN = """
import dagster as dg
from dagster_project.defs.partitions import MODEL_DIMENSION, register_configured_models
from dagster_project.orchestration import load_definitions
from dagster_project.settings import benchmark_config

cfg = benchmark_config()
instance = dg.DagsterInstance.ephemeral()
defs = load_definitions()
register_configured_models(instance, cfg)
defs.resolve_job_def("ingest_dataset").execute_in_process(instance=instance, partition_key="london_subset")
for model in sorted(cfg.models.values(), key=lambda m: m.partition_key):
    key = dg.MultiPartitionKey({MODEL_DIMENSION: model.partition_key, "dataset": "london_subset"})
    result = defs.resolve_job_def("evaluate_model_on_dataset").execute_in_process(instance=instance, partition_key=key)
    assert result.success
"""


def test_clip_models_run_as_partitions_and_land_in_the_raw_tables(pytestconfig, tmp_path):
    london = Path(pytestconfig._fer_session_root) / "london_subset"
    model_config = tmp_path / f"{TINY}.json"
    model_config.write_text(json.dumps(TINY_CFG))
    common = {"architecture": TINY, "model_config": str(model_config), "pretrained": "random", "seed": 5,
              "device": "cpu", "batch_size": 8}
    config = tmp_path / "benchmark.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "warehouse": str(tmp_path / "warehouse.duckdb"), "reports_dir": str(tmp_path / "reports"),
        "cache_dir": str(tmp_path / "cache"),
        "datasets": {"london_subset": {"kind": "london_set", "location": str(london)}},
        "models": {
            "clip_zero_shot": {"kind": "clip", "version": "tiny-random-5", "options": {**common, "mode": "zero_shot"}},
            "clip_probe": {"kind": "clip", "version": "tiny-random-5", "options": {
                **common, "mode": "linear_probe", "folds": 3, "inner_folds": 2, "Cs": [0.1, 1.0, 10.0]}},
        },
    }))
    env = {**os.environ, "FER_CONFIG": str(config), "DAGSTER_HOME": str(tmp_path)}
    env.pop("FER_WAREHOUSE", None)
    done = subprocess.run([sys.executable, "-c", RUN], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-4000:]

    con = duckdb.connect(str(tmp_path / "warehouse.duckdb"), read_only=True)
    try:
        n_images = con.execute("select count(*) from raw.dataset_images").fetchall()[0][0]
        answers = con.execute(
            "select model, protocol, parse_status, predicted_label, probabilities from raw.predictions order by all"
        ).df()
        embeddings = con.execute(
            "select model, count(*) as n, min(len(embedding)) as dim from raw.image_embeddings group by model order by model"
        ).df()
        runs = con.execute("select model, n_images, n_answers from raw.model_runs order by model").df()
    finally:
        con.close()
    assert n_images > 20
    per_model = answers.groupby("model").size().to_dict()
    assert per_model == {"clip_probe": n_images, "clip_zero_shot": n_images}
    assert set(answers["parse_status"]) == {"ok"}
    assert set(answers.loc[answers["model"] == "clip_probe", "protocol"]) == {"clip_linear_probe"}
    # the probe only ever predicts labels it was trained on (London Set: neutral and smiling)
    assert set(answers.loc[answers["model"] == "clip_probe", "predicted_label"]) <= {"neutral", "happy"}
    assert all(abs(sum(json.loads(p).values()) - 1) < 1e-6 for p in answers["probabilities"])
    assert embeddings["n"].tolist() == [n_images, n_images] and embeddings["dim"].eq(TINY_CFG["embed_dim"]).all()
    assert runs["n_answers"].tolist() == [n_images, n_images]

