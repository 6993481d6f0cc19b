"""Asanuma's three settings through the whole pipeline: 7-class (`single`), 6-class without
neutral (`n_class_without_neutral`) and the neutral gate (`two_stage`), each an `openai` model
answered by the loopback OpenAI server over real HTTP, on a CAER-S-shaped folder. One Dagster
run per step in a separate process (tests/support/slice_pipeline.py): ingest, evaluate each
slice (`evaluate_slice` -> raw.predictions), each slice's dbt models (-> marts), then the views
over every slice (-> papers.asanuma_confusion)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from tests.support.dataset_layouts import build_caer_s
from tests.support.openai_server import Action, OpenAIServer, RecordedRequest, answer
from tests.support.slice_pipeline import materialize_slices

VERSION = "loopback-asanuma"
SETTINGS = {  # model name -> (protocol, template, stored_as: the names a user may give the runs)
    "gpt_7class": ("single", "asanuma_7class", "experiment_2"),
    "gpt_6class": ("n_class_without_neutral", "asanuma_6class", "experiment_3"),
    "gpt_two_stage": ("two_stage", "asanuma_two_stage", "experiment_4"),
}
# Only what the test reads: each slice's dbt models, then the papers views over them.


class AsanumaReader:
    """A scripted reader with Asanuma's neutral bias: it reads disgust as neutral whenever
    neutral is on offer (7 classes, and at the gate), and forced to choose among six classes it
    reads a neutral face as sad; every other face as its folder's emotion."""

    def __init__(self, root: Path) -> None:
        self.truth = {hashlib.sha256(p.read_bytes()).hexdigest(): p.parent.name
                      for p in root.rglob("*.png")}

    def __call__(self, recorded: RecordedRequest) -> Action:
        truth = self.truth[hashlib.sha256(recorded.images[0]).hexdigest()]
        seen_as = "Neutral" if truth == "Disgust" else truth
        if "Neutral or non-Neutral" in recorded.prompt:
            return answer("Neutral" if seen_as == "Neutral" else "non-Neutral")
        if "Neutral" not in recorded.prompt:  # the six-class list
            return answer("Sad" if truth == "Neutral" else truth)
        return answer(seen_as)


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> duckdb.DuckDBPyConnection:
    root = tmp_path_factory.mktemp("asanuma")
    caer_s = build_caer_s(root)
    models = {
        name: {"kind": "openai", "version": VERSION, "datasets": ["caer_s"], "options": {
            "base_url": None, "api_key_env": None, "max_retries": 1, "timeout_s": 30,
            "protocol": {"name": protocol, "template": template, "stored_as": stored_as}}}
        for name, (protocol, template, stored_as) in SETTINGS.items()
    }
    with OpenAIServer(models=(VERSION,)) as server:
        server.responder = AsanumaReader(caer_s)
        for model in models.values():
            model["options"]["base_url"] = server.base_url
        config = root / "benchmark.yaml"
        config.write_text(json.dumps({  # JSON is YAML
            "warehouse": str(root / "warehouse.duckdb"), "reports_dir": str(root / "reports"),
            "cache_dir": str(root / "cache"),
            "datasets": {"caer_s": {"kind": "caer_s", "location": str(caer_s)}},
            "models": models,
            "statistics": {"min_cell_n": 1, "bootstrap_resamples": 20},
        }))
        materialize_slices(config, root)
    con = duckdb.connect(str(root / "warehouse.duckdb"), read_only=True)
    yield con
    con.close()


def _confusion(con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    return con.execute(
        "select model, protocol, classification, true_emotion, predicted_emotion, count, n, value, row_source "
        "from papers.asanuma_confusion order by all").df()


def test_every_setting_reaches_asanuma_confusion_from_the_warehouse(warehouse):
    cells = _confusion(warehouse)
    assert set(cells["row_source"]) == {"warehouse only"}
    # the stored names say nothing of the setting: it comes from what the answers record
    assert set(zip(cells["model"], cells["protocol"])) == {(m, s[2]) for m, s in SETTINGS.items()}
    by_model = cells.groupby("model")["classification"].agg(set).to_dict()
    assert by_model == {"gpt_7class": {"n-class"}, "gpt_6class": {"6-class without neutral"},
                        "gpt_two_stage": {"two-stage"}}
    # each setting: every answered image of each true emotion, shares summing to one
    for (_, true_emotion), rows in cells.groupby(["model", "true_emotion"]):
        assert rows["value"].sum() == pytest.approx(1.0), true_emotion


def test_the_neutral_bias_shows_in_each_setting(warehouse):
    cells = _confusion(warehouse).set_index(["model", "true_emotion", "predicted_emotion"])
    # 7 classes: disgust read as neutral
    assert cells.loc[("gpt_7class", "disgust", "neutral"), "value"] == 1.0
    # 6 classes: the neutral face is forced to sad; no answer is 'neutral'
    assert cells.loc[("gpt_6class", "neutral", "sad"), "value"] == 1.0
    assert "neutral" not in set(cells.loc["gpt_6class"].index.get_level_values("predicted_emotion"))
    # two stages: the gate's 'neutral' is the final answer (no second call), 'non-neutral' asks six
    assert cells.loc[("gpt_two_stage", "disgust", "neutral"), "value"] == 1.0
    assert cells.loc[("gpt_two_stage", "neutral", "neutral"), "value"] == 1.0
    assert cells.loc[("gpt_two_stage", "happy", "happy"), "value"] == 1.0


def test_two_stage_stores_the_gate_and_the_derived_emotion_step(warehouse):
    rows = warehouse.execute(
        "select image_id, step, step_name, predicted_label, parse_status, raw_text is null as derived "
        "from raw.predictions where model = 'gpt_two_stage' order by image_id, step").df()
    gates = rows[rows["step_name"] == "neutral_gate"]
    emotions = rows[rows["step_name"] == "emotion"]
    assert len(gates) == len(emotions) == 5
    assert set(gates["step"]) == {1} and set(emotions["step"]) == {2}
    neutral_gate = set(gates.loc[gates["predicted_label"] == "neutral", "image_id"])
    assert neutral_gate == set(emotions.loc[emotions["derived"], "image_id"])  # no second call for these
    accuracy = warehouse.execute(
        "select model, protocol, n_answered, correct from marts.group_accuracy "
        "where grouping = 'all' and true_emotion = 'all' order by model").df()
    assert accuracy.set_index("model")["n_answered"].to_dict() == {"gpt_6class": 5, "gpt_7class": 5, "gpt_two_stage": 5}
    # correct: 7-class all but disgust; 6-class all but neutral; two-stage all but disgust
    assert accuracy.set_index("model")["correct"].to_dict() == {"gpt_6class": 4, "gpt_7class": 4, "gpt_two_stage": 4}
