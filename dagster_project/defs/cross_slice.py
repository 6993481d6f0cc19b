"""Statistics that span slices, as small assets downstream of the partitioned ones.

* stats/mcnemar_tests (unpartitioned): McNemar between every pair of model versions on the
  images both answered, Holm within dataset/protocol; a family spans versions, so the table is
  computed whole from the slice models (cheap: every pair's 2x2 table from three matrix
  products per dataset/protocol, analysis/mcnemar.py).
* stats/human_rater_reliability and stats/human_response_style (per dataset): the human
  raters alone, the ceiling every model is read against; they depend on the dataset's
  ratings, never on a model version.
* stats/strength_inversion and its figure (unpartitioned): FER models against VLMs on a dataset.
* stats/pooled_misclassification_tests (unpartitioned): misclassification tests stratified by dataset
  across the datasets of a model version (analysis/pooled.py).
"""

import dagster as dg
import pandas as pd

from dagster_project.analysis import dimensional, pooled, reliability, response_style, stat_figures
from dagster_project.analysis.crossed_icc import crossed_icc
from dagster_project.analysis.human_ceiling import human_ceiling
from dagster_project.analysis.mcnemar import mcnemar_from_tables, tables_in_warehouse
from dagster_project.analysis.figures import slug
from dagster_project.analysis.inputs import (
    ANSWER_COLUMNS,
    ANSWERS_SQL,
    MODEL_VALUE_COLUMNS,
    RATINGS_SQL,
)
from dagster_project.analysis.results import adjust_within_families, empty_result
from dagster_project.analysis.slice_stats import NO_RATINGS
from dagster_project.defs.conditions import ACROSS_SLICES, AFTER_STATISTICS, SLICE_RESULTS
from dagster_project.defs.figures import figure_result
from dagster_project.defs.ingestion import DATASET_IMAGES, HUMAN_RATINGS
from dagster_project.defs.partitions import dataset_partitions
from dagster_project.defs.resources import WarehouseResource
from dagster_project.defs.stats_io import replace_rows, summary_metadata
from dagster_project.settings import benchmark_config
from inference.kinds import DEFAULT_MODEL_FAMILY

FINAL_ANSWERS = dg.AssetKey(["intermediate", "int_final_answers"])
HUMAN_RELIABILITY = dg.AssetKey(["stats", "human_rater_reliability"])
HUMAN_RESPONSE_STYLE = dg.AssetKey(["stats", "human_response_style"])
_DATASET_VIEWS = [dg.AssetKey(["intermediate", name]) for name in ("int_images_labeled", "int_human_ratings_labeled")]


@dg.asset(
    key=["stats", "mcnemar_tests"],
    deps=[FINAL_ANSWERS, *_DATASET_VIEWS],
    group_name="stats",
    kinds={"duckdb", "statsmodels"},
    automation_condition=ACROSS_SLICES,
    description="McNemar test between every pair of model versions on the images both answered; Holm within "
                "dataset/protocol (the family spans versions, so it is adjusted whole).",
)
def mcnemar_tests(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    cfg = benchmark_config().statistics
    with duckdb.get_connection() as con:  # the answers as integer codes; pairs counted as matrix products
        tables = tables_in_warehouse(con, ANSWERS_SQL)
    pairs = mcnemar_from_tables(tables, correction=cfg.corrections[0], min_n=cfg.min_cell_n)
    if len(pairs):
        pairs = adjust_within_families(pairs, cfg.corrections[0])
    with duckdb.get_connection() as con:
        replace_rows(con, "mcnemar_tests", {}, pairs)
    context.log.info(f"stats.mcnemar_tests: {len(pairs)} version pairs")
    return dg.MaterializeResult(metadata=summary_metadata(pairs))


def _human_only(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[frame["model"].astype(str) == "human"].reset_index(drop=True) if len(frame) else frame


@dg.multi_asset(
    specs=[
        dg.AssetSpec(HUMAN_RELIABILITY, deps=[DATASET_IMAGES, HUMAN_RATINGS, *_DATASET_VIEWS], group_name="stats",
                     kinds={"duckdb", "python"}, automation_condition=SLICE_RESULTS,
                     description="Krippendorff's alpha (and ICC where raters are fully crossed) among the human "
                                 "raters of a dataset, overall and per race / gender of the faces; ICC from a crossed "
                                 "image x rater mixed model (incomplete designs); the human ceiling (one human vs "
                                 "the other humans: Pearson r, MAE)."),
        dg.AssetSpec(HUMAN_RESPONSE_STYLE, deps=[DATASET_IMAGES, HUMAN_RATINGS, *_DATASET_VIEWS], group_name="stats",
                     kinds={"duckdb", "python"}, automation_condition=SLICE_RESULTS,
                     description="The human raters' own response style (SD per emotion, unique values), the "
                                 "baseline of stats.response_style."),
    ],
    partitions_def=dataset_partitions,
)
def human_baselines(context: dg.AssetExecutionContext, duckdb: WarehouseResource):
    cfg = benchmark_config().statistics
    dataset = context.partition_key
    with duckdb.get_connection() as con:
        ratings = con.execute(f"select * from ({RATINGS_SQL}) where dataset = ? order by all", [dataset]).df()
    # The humans alone: no model's answers (the slice models need not exist yet).
    if len(ratings):
        alpha = pd.concat([
            _human_only(reliability.rater_reliability(
                ratings, None, min_n=cfg.min_cell_n, bootstrap_resamples=cfg.bootstrap_resamples)),
            crossed_icc(ratings, min_n=cfg.min_cell_n),
            human_ceiling(ratings, min_n=cfg.min_cell_n, bootstrap_resamples=cfg.bootstrap_resamples),
        ], ignore_index=True)
        style = _human_only(response_style.response_style(
            pd.DataFrame(columns=MODEL_VALUE_COLUMNS), ratings, pd.DataFrame(columns=ANSWER_COLUMNS),
            min_n=cfg.min_cell_n))
        note = "computed"
    else:
        alpha, style, note = empty_result(cfg.min_cell_n), empty_result(cfg.min_cell_n), NO_RATINGS
    with duckdb.get_connection() as con:
        replace_rows(con, "human_rater_reliability", {"dataset": dataset}, alpha)
        replace_rows(con, "human_response_style", {"dataset": dataset}, style)
    for key, frame in ((HUMAN_RELIABILITY, alpha), (HUMAN_RESPONSE_STYLE, style)):
        yield dg.MaterializeResult(asset_key=key, metadata={"dataset": dataset, "note": note, **summary_metadata(frame)})


DIMENSIONAL_AGREEMENT = dg.AssetKey(["stats", "dimensional_agreement"])
MODEL_KINDS_SQL = "select distinct model, model_kind from raw.model_runs order by all"


def _model_families(duckdb: WarehouseResource) -> dict[str, str]:
    """{model: family}: benchmark.yaml's `models.<name>.family` (its kind's default when not
    declared); a model in the warehouse but no longer configured gets its recorded kind's default
    ('other' for an imported one: its family is unknown)."""
    with duckdb.get_connection() as con:
        kinds = dict(con.execute(MODEL_KINDS_SQL).fetchall())
    configured = {name: str(model.family) for name, model in benchmark_config().models.items()}
    return {**{model: DEFAULT_MODEL_FAMILY.get(kind, "other") for model, kind in kinds.items()}, **configured}


@dg.asset(
    key=["stats", "strength_inversion"],
    deps=[DIMENSIONAL_AGREEMENT],
    group_name="stats",
    kinds={"duckdb", "python"},
    automation_condition=ACROSS_SLICES,
    description="Tae et al.'s strength inversion per dataset: best VLM r minus best FER-model r with the mean human "
                "rating, per dimension, and whether FER models lead on valence while VLMs lead on arousal.",
)
def strength_inversion(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        agreement_rows = con.execute("select * from stats.dimensional_agreement").df()
    frame = dimensional.strength_inversion(agreement_rows, _model_families(duckdb))
    with duckdb.get_connection() as con:
        replace_rows(con, "strength_inversion", {}, frame)
    return dg.MaterializeResult(metadata=summary_metadata(frame))


@dg.asset(key=["reports", "strength_inversion"], deps=[DIMENSIONAL_AGREEMENT], group_name="reports",
          kinds={"matplotlib"}, automation_condition=ACROSS_SLICES, op_tags=AFTER_STATISTICS,
          description="Tae et al.'s Figure 3: each model's valence r vs arousal r with the mean human rating, "
                      "FER models and VLMs apart, per dataset.")
def strength_inversion_figure(duckdb: WarehouseResource) -> dg.MaterializeResult:
    with duckdb.get_connection() as con:
        agreement_rows = con.execute("select * from stats.dimensional_agreement").df()
    families, out_dir = _model_families(duckdb), benchmark_config().reports_dir
    paths = [
        stat_figures.strength_inversion_png(part, families, f"{dataset}: valence r vs arousal r with the human mean",
                                            out_dir / f"{slug('strength_inversion', dataset)}.png")
        for dataset, part in (agreement_rows.groupby("dataset", sort=True) if len(agreement_rows) else [])
    ]
    return figure_result(paths, "no figure: needs valence / arousal answers and human ratings")


MISCLASSIFICATION_RATIOS = dg.AssetKey(["marts", "misclassification_ratios"])
# The ratios of model versions x protocols answered on two or more datasets: the others have
# nothing to pool (at 200 versions of one dataset, two million rows read for no row written).
POOLABLE_RATIOS_SQL = """
select * from marts.misclassification_ratios
where (model, model_version, protocol) in (
    select model, model_version, protocol from marts.misclassification_ratios
    group by all having count(distinct dataset) >= 2)
order by all
"""


@dg.asset(
    key=["stats", "pooled_misclassification_tests"],
    deps=[MISCLASSIFICATION_RATIOS],
    group_name="stats",
    kinds={"duckdb", "statsmodels"},
    automation_condition=ACROSS_SLICES,
    description="Each misclassification between two groups pooled over the datasets of a model version: "
                "Cochran-Mantel-Haenszel test stratified by dataset, Mantel-Haenszel rate ratio, Chhua et al.'s "
                "crude pooled ratio and z-test beside it; the first statistics correction within each family.",
)
def pooled_misclassification_tests(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    cfg = benchmark_config().statistics
    with duckdb.get_connection() as con:
        ratios = con.execute(POOLABLE_RATIOS_SQL).df()
    frame = pooled.pooled_misclassification_tests(ratios, correction=cfg.corrections[0], min_n=cfg.min_cell_n,
                                                  alpha=cfg.alpha, family=cfg.family)
    with duckdb.get_connection() as con:
        replace_rows(con, "pooled_misclassification_tests", {}, frame)
    context.log.info(f"stats.pooled_misclassification_tests: {len(frame)} pooled pairs")
    return dg.MaterializeResult(metadata=summary_metadata(frame))
