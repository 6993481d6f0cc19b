"""The statistics layer end to end on the Tae-shaped fixture (tests/support/tae_fixture.py):
simulated human raters and two imported models with planted effects, materialized in-process
by the same jobs as the demo. Each test checks that a planted effect is found where the seed
paper reports it."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg
import pytest

from dagster_project.analysis.results import RESULT_COLUMNS
from tests.support.tae_fixture import GEMMA_FEMALE_VALENCE_SHIFT
from tests.test_end_to_end import query

pytestmark = pytest.mark.slow

STATS_TABLES = [
    "misclassification_tests", "worst_subgroups", "categorical_agreement", "mcnemar_tests", "rater_reliability",
    "dimensional_agreement", "wilcoxon_tests", "mixed_models", "response_style", "human_rater_reliability",
    "human_response_style",
]


@pytest.mark.parametrize("table", STATS_TABLES)
def test_every_stats_table_has_the_common_columns_and_rows(demo, table):
    frame = query(f"select * from stats.{table}")
    assert list(frame.columns[: len(RESULT_COLUMNS)]) == RESULT_COLUMNS
    assert len(frame) > 0
    assert frame["detail"].map(lambda d: d == "" or isinstance(json.loads(d), dict)).all()


def test_imported_values_are_rescaled_and_the_mapping_recorded(demo):
    rows = query(
        "select raw_value, predicted_value, value_mapping from raw.predictions "
        "where model = 'fer_sim' and step_name = 'valence'"
    )
    assert rows["raw_value"].between(-1, 1).all() and rows["predicted_value"].between(1, 9).all()
    assert ((rows["raw_value"] + 1) / 2 * 8 + 1 - rows["predicted_value"]).abs().max() < 1e-9
    assert rows["value_mapping"].str.contains(r"\[-1").all()


def test_human_reliability_and_models_as_raters(demo):
    # The humans alone (per dataset) and each model version added as a rater (per slice).
    alpha = query(
        "select * from (select * from stats.human_rater_reliability union all by name "
        "select * from stats.rater_reliability) where measure = 'krippendorff_alpha_interval' "
        "and subset_kind = 'all' and dimension = 'valence'"
    ).set_index("model")
    # Raters share per-emotion means with noise SD 1: substantial agreement among humans.
    assert 0.6 < alpha.loc["human", "estimate"] < 0.95
    assert {"gemma_sim", "fer_sim"} <= set(alpha.index)
    per_race = query(
        "select subset from stats.human_rater_reliability where model = 'human' and subset_kind = 'race'"
    )
    assert set(per_race["subset"]) == {"black", "white", "korean"}


def test_mixed_model_recovers_planted_gender_bias(demo):
    rows = query(
        "select * from stats.mixed_models where measure = 'demographic' and dimension = 'valence' "
        "and model = 'gemma_sim' and rater_type = 'gemma_sim' and subset like '%gender%'"
    )
    assert len(rows) == 1  # one fit per model version: humans + gemma_sim; the gemma x gender term
    # Planted: gemma_sim rates female faces' valence 0.5 lower; reference gender is female,
    # so the gemma x male interaction is +0.5.
    row = rows.iloc[0]
    assert row.ci_low < -GEMMA_FEMALE_VALENCE_SHIFT < row.ci_high
    assert json.loads(row.detail)["converged"] is True


def test_correctness_model_is_gee_clustered_by_identity(demo):
    rows = query("select * from stats.mixed_models where analysis = 'correctness_model' and model = 'gemma_sim'")
    assert len(rows) > 0
    detail = json.loads(rows["detail"].iloc[0])
    assert detail["n_clusters"] == 18  # 3 races x 2 genders x 3 identities


def test_neutral_absorption_and_stereotyped_responding(demo):
    absorption = query(
        "select * from stats.response_style where model = 'gemma_sim' and measure = 'neutral_absorption_rate' "
        "and subset = 'sad'"
    )
    assert len(absorption) == 1 and absorption.iloc[0].ci_low < 0.7 < absorption.iloc[0].ci_high
    unique = query(
        "select * from stats.response_style where model = 'gemma_sim' and measure = 'n_unique_values' "
        "and subset_kind = 'emotion' and dimension = 'arousal'"
    )
    # Arousal comes from one prototype per predicted emotion: at most 2 values per true emotion.
    assert len(unique) == 6 and unique["estimate"].max() <= 2


def test_polarity_exaggeration_and_dimensional_agreement(demo):
    ratio = query(
        "select estimate from stats.response_style where model = 'gemma_sim' and measure = 'sd_ratio_to_humans' "
        "and subset_kind = 'all' and dimension = 'valence'"
    )
    assert ratio["estimate"].iloc[0] > 1.2  # gemma's prototypes are further from 5 than humans
    r = query(
        "select model, estimate from stats.dimensional_agreement where measure = 'pearson_r' and subset_kind = 'all' "
        "and dimension = 'valence'"
    ).set_index("model")["estimate"]
    # the loopback VLM (context carry) answers the human mean of the true emotion
    assert {"gemma_sim", "fer_sim", "loopback_vlm"} <= set(r.index)
    assert (r > 0.8).all()


def test_misclassification_finds_the_disgust_anger_merger(demo):
    rows = query(
        "select * from stats.categorical_agreement where model = 'fer_sim' and measure = 'accuracy' and subset_kind = 'all'"
    )
    assert rows.iloc[0].estimate < 0.95
    confusion = query(
        "select n from marts.confusion_counts where model = 'fer_sim' and grouping = 'all' "
        "and true_emotion = 'disgust' and predicted_emotion = 'anger'"
    )
    assert int(confusion["n"].iloc[0]) >= 10
    tests = query("select * from stats.misclassification_tests where model = 'fer_sim' and predicted_emotion = 'anger'")
    # pairs with a group below min_cell_n are flagged and not tested (no p-value, no correction)
    tested = tests[tests["p_value"].notna()]
    assert len(tested) and set(tested["correction"]) == {"holm"} and "p_adjusted_fdr_bh" in tests.columns


def test_mcnemar_compares_models_on_the_same_images(demo):
    rows = query("select * from stats.mcnemar_tests")
    pairs = {(r.dataset, r.subset) for r in rows.itertuples()}
    assert ("tae_sim", "fer_sim/sim-1 vs gemma_sim/sim-1") in pairs


def test_figures_of_the_statistics_layer_are_metadata(demo, instance):
    # Partitioned figures: some slices legitimately draw nothing (e.g. no numeric answers) and say
    # why in `preview`; at least one materialization of each must carry its inline figure.
    for key in ("bland_altman_plots", "strength_inversion", "dimensional_bias_bars", "disparity_forest_plots"):
        records = instance.fetch_materializations(dg.AssetKey(["reports", key]), limit=200).records
        previews = [str(r.asset_materialization.metadata.get("preview").value) for r in records
                    if r.asset_materialization and r.asset_materialization.metadata.get("preview")]
        assert any("data:image/png;base64," in p for p in previews), (key, previews[:3])


def test_table6_simple_effects_crossed_icc_and_human_ceiling(demo):
    # Tae's Table 6: one model-minus-human effect per emotion from the fitted mixed model.
    effects = query(
        "select * from stats.mixed_models where analysis = 'mixed_model_simple_effect' and model = 'gemma_sim' "
        "and measure = 'emotion' and dimension = 'arousal'"
    ).set_index("subset")
    assert len(effects) == 6 and (effects["subset_kind"] == "emotion").all()  # the seed subset_kinds vocabulary
    assert (effects["family_m"] == 6).all() and effects["p_adjusted"].notna().all()
    for row in effects.itertuples():
        # every image has 6 human ratings and one gemma answer: the model-based effect is the raw difference
        assert abs(row.estimate - json.loads(row.detail)["raw_mean_difference"]) < 1e-6
        assert row.ci_low < row.estimate < row.ci_high
    # ICC from the crossed model: 6 of 12 raters per image (an incomplete design)
    icc = query("select * from stats.human_rater_reliability where measure = 'icc_a1_crossed' and dimension = 'valence'")
    assert len(icc) == 1 and 0.3 < icc["estimate"].iloc[0] < 1
    assert json.loads(icc["detail"].iloc[0])["design"] == "incomplete"
    # the human ceiling, with its interval per dataset and beside every model row
    ceiling = query("select * from stats.human_rater_reliability where analysis = 'human_ceiling' and subset_kind = 'all'")
    assert set(ceiling["measure"]) == {"pearson_r", "mae"} and ceiling["ci_low"].notna().all()
    beside = query("select * from stats.dimensional_agreement where measure = 'pearson_r' and subset_kind = 'all'")
    assert beside["human_ceiling"].notna().all() and (beside["human_ceiling_n"] > 0).all()


def test_strength_inversion_compares_declared_families(demo):
    """gemma_sim (imported, `family: vlm`) is a VLM and fer_sim (imported, `family: fer`) the FER
    model; while the family came from the kind, every imported model was FER and the "best FER"
    on arousal was the simulated Gemma."""
    rows = query("select * from stats.strength_inversion where measure = 'vlm_minus_fer_best_r'")
    assert set(rows["dimension"]) == {"valence", "arousal"}
    for detail in rows["detail"].map(json.loads):
        assert detail["best_fer"]["model"].startswith("fer_sim ")
        assert detail["best_vlm"]["model"].split()[0] in {"gemma_sim", "loopback_vlm"}


def test_a_model_matching_no_paper_column_gets_a_hint(demo, instance):
    """The fixture's models declare no `paper_name:` and none is a paper's exact version: the
    papers views set them beside no column, and the materialization says so and how to fix it."""
    hints = query("select model, hint from papers.model_paper_matches").set_index("model")["hint"]
    assert hints.notna().all() and hints.str.contains("paper_name").all()
    records = instance.fetch_materializations(dg.AssetKey(["papers", "model_paper_matches"]), limit=1).records
    listed = str(records[0].asset_materialization.metadata["models_without_paper_column"].value)
    assert "gemma_sim@sim-1" in listed and "models.gemma_sim.paper_name" in listed


def test_group_confusion_grids_are_figures_metadata_and_in_the_report(demo, instance):
    """Issue 20 item 4: per slice, one confusion grid per race / gender / race x gender group
    (counts and row shares), as files, inline in the asset's metadata and in the HTML report."""
    from dagster_project.reporting import read_figures
    from dagster_project.settings import benchmark_config

    records = instance.fetch_materializations(dg.AssetKey(["reports", "group_confusion_matrices"]), limit=200).records
    files = [f for r in records for f in r.asset_materialization.metadata["files"].value]
    names = {Path(f).name.split("__")[0] for f in files}
    assert {"group_confusion_race", "group_confusion_gender", "group_confusion_race_gender"} <= names, names
    assert any("data:image/png;base64," in str(r.asset_materialization.metadata["preview"].value) for r in records)
    shown = {figure.name for figure in read_figures(benchmark_config().reports_dir)}
    assert {Path(f).name for f in files} <= shown
