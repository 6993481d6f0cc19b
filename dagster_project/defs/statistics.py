"""The statistics layer: one stats.* table per analysis of the seed papers.

Each asset reads the same inputs (final answers, human ratings, numeric model answers) from
the dbt models, computes with library code (see dagster_project/analysis/) and replaces its
table. Tables that need human ratings stay empty, and say so, when none are configured.
"""

import contextlib
import gc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dagster as dg
import duckdb
import pandas as pd

from dagster_project.analysis.inputs import StatsInputs, load_inputs, select_in_slices
from dagster_project.analysis import agreement, dimensional, mixed_models, reliability, response_style
from dagster_project.analysis.proportions import misclassification_tests, pairwise_error_ztests
from dagster_project.analysis.results import adjust_within_families, empty_result
from dagster_project.analysis.slices import (
    SlicePlan,
    current_fingerprints,
    mcnemar_second_slice,
    merge_results,
    plan_slices,
    read_state,
    write_state,
)
from dagster_project.defs.resources import WarehouseResource
from dagster_project.settings import benchmark_config
from inference.config import StatisticsConfig

INPUT_MODELS = [
    dg.AssetKey(["intermediate", name])
    for name in ("int_final_answers", "int_images_labeled", "int_human_ratings_labeled", "int_model_dimensional_answers",
                 "int_slices")
]
GROUP_ACCURACY = dg.AssetKey(["marts", "group_accuracy"])
SLICES = dg.AssetKey(["intermediate", "int_slices"])
NO_RATINGS = "no human ratings configured: table left empty (add `human_ratings:` to a dataset in benchmark.yaml)"

Compute = Callable[[StatsInputs, StatisticsConfig], pd.DataFrame]


@contextlib.contextmanager
def quick_gc() -> Iterator[None]:
    """statsmodels' Holm adjustment calls gc.collect() for every family; in a Dagster process
    with a large heap that costs ~45 ms each. Freezing the existing heap first makes those
    collections scan only what the statistics allocate."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def write_stats_table(con, name: str, frame: pd.DataFrame) -> None:
    con.execute("create schema if not exists stats")
    con.register("_frame", frame)
    con.execute(f"create or replace table stats.{name} as select * from _frame")
    con.unregister("_frame")


def _summary(frame: pd.DataFrame) -> dict:
    meta: dict = {"dagster/row_count": len(frame)}
    if "p_adjusted" in frame and len(frame):
        meta["n_significant_adjusted"] = int((frame["p_adjusted"] < benchmark_config().statistics.alpha).sum())
    if "below_min_n" in frame and len(frame):
        meta["n_below_min_n"] = int(frame["below_min_n"].sum())
    if "measure" in frame and len(frame):
        meta["measures"] = dg.MetadataValue.json(frame["measure"].value_counts().to_dict())
    return meta


# A batch: the rows of the slices a plan says to recompute (and a note for the logs).
ComputeBatch = Callable[[duckdb.DuckDBPyConnection, SlicePlan, StatisticsConfig], tuple[pd.DataFrame, str]]


@dataclass(frozen=True)
class IncrementalTable:
    compute_batch: ComputeBatch
    second_slice: Callable[[pd.DataFrame], pd.DataFrame] | None = None  # pairwise tables
    finish: Callable[[pd.DataFrame, StatisticsConfig], pd.DataFrame] | None = None  # on the merged table


TABLES: dict[str, IncrementalTable] = {}


def recompute_from_scratch(con: duckdb.DuckDBPyConnection, name: str) -> pd.DataFrame:
    """stats.<name> computed from every slice at once (what the incremental table must equal)."""
    cfg, table = benchmark_config().statistics, TABLES[name]
    current = current_fingerprints(con, cfg.model_dump())
    plan = plan_slices(current, current.iloc[:0])
    with quick_gc():
        frame, _note = table.compute_batch(con, plan, cfg)
        return table.finish(frame, cfg) if table.finish else frame


def materialize_incrementally(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, name: str
) -> tuple[pd.DataFrame, dict]:
    """Recompute stats.<name> for the slices that changed since it was written (see
    analysis/slices.py); rows of the other slices are kept as they are. `finish` runs on the
    whole merged table (e.g. a multiplicity adjustment whose families span slices)."""
    cfg, table = benchmark_config().statistics, TABLES[name]
    with warehouse.get_connection() as con:
        current = current_fingerprints(con, cfg.model_dump())
        held = read_state(con, name)  # empty when the table was never computed with its state
        plan = plan_slices(current, held)
        if plan.up_to_date:
            frame = con.execute(f"select * from stats.{name}").df()
            context.log.info(f"stats.{name}: up to date ({len(frame)} rows, {len(current)} slices)")
            return frame, {"note": "up to date", "slices": plan.describe(), "n_slices_recomputed": 0}
        with quick_gc():
            new, note = table.compute_batch(con, plan, cfg)
        old = con.execute(f"select * from stats.{name}").df() if len(held) else pd.DataFrame()
    merged = merge_results(old, new, plan, table.second_slice)
    if table.finish is not None:
        with quick_gc():
            merged = table.finish(merged, cfg)
    with warehouse.get_connection() as con:
        con.begin()
        write_stats_table(con, name, merged)
        write_state(con, name, plan.current)
        con.commit()
    context.log.info(f"stats.{name}: {plan.describe()}; {len(new)} rows computed, {len(merged)} in the table ({note})")
    return merged, {"note": note, "slices": plan.describe(), "n_slices_recomputed": len(plan.model_slices)}


def stats_asset(name: str, description: str, compute: Compute, *, needs_ratings: bool = False) -> dg.AssetsDefinition:
    def compute_batch(con, plan: SlicePlan, cfg: StatisticsConfig) -> tuple[pd.DataFrame, str]:
        inputs = load_inputs(con, plan.model_slices, plan.datasets)
        if needs_ratings and not inputs.has_ratings:
            return empty_result(cfg.min_cell_n), NO_RATINGS
        return compute(inputs, cfg), "computed"

    TABLES[name] = IncrementalTable(compute_batch)

    @dg.asset(
        key=["stats", name],
        deps=INPUT_MODELS,
        group_name="stats",
        kinds={"duckdb", "python"},
        description=description,
    )
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
        frame, meta = materialize_incrementally(context, duckdb, name)
        return dg.MaterializeResult(metadata={**meta, **_summary(frame)})

    return _asset


def _accuracy_of_changed_slices(con, plan: SlicePlan, cfg: StatisticsConfig) -> tuple[pd.DataFrame, str]:
    accuracy = select_in_slices(con, "select * from marts.group_accuracy", plan.model_slices)
    tests = pairwise_error_ztests(
        accuracy, groupings=cfg.groupings, correction=cfg.corrections[0], alpha=cfg.alpha, min_n=cfg.min_cell_n,
        family=cfg.family,
    )
    return tests, "computed"


TABLES["error_rate_ztests"] = IncrementalTable(_accuracy_of_changed_slices)


@dg.asset(
    key=["stats", "error_rate_ztests"],
    deps=[GROUP_ACCURACY, SLICES],
    group_name="stats",
    kinds={"duckdb", "statsmodels"},
    description=(
        "Two-proportion z-tests of error rate between every pair of race / gender / race x gender "
        "groups, per model version, dataset, protocol and true emotion ('all' = pooled); "
        "Holm-adjusted within each family, family recorded next to each p-value."
    ),
)
def error_rate_ztests(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    tests, meta = materialize_incrementally(context, duckdb, "error_rate_ztests")
    # astype(bool): rows kept from the stored table come back from DuckDB as objects
    significant = tests[tests["significant"].fillna(False).astype(bool) & ~tests["below_min_n"].astype(bool)]
    preview = significant.sort_values("p_adjusted").head(15)[
        ["model", "dataset", "grouping", "true_emotion", "group_a", "group_b", "error_rate_a", "error_rate_b", "p_adjusted"]
    ]
    context.log.info(f"{len(tests)} pairwise tests, {len(significant)} significant after Holm")
    return dg.MaterializeResult(
        metadata={
            **meta,
            "n_tests": len(tests),
            "n_families": int(tests["family"].nunique()) if len(tests) else 0,
            "n_significant": len(significant),
            "significant_pairs": dg.MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "none"),
            "dagster/row_count": len(tests),
        }
    )


def _misclassification(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return misclassification_tests(
        inputs.misclassification_ratios, corrections=cfg.corrections, min_n=cfg.min_cell_n, alpha=cfg.alpha,
        family=cfg.family,
    )


def _categorical(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return agreement.categorical_agreement(
        inputs.grouped, inputs.group_accuracy, min_n=cfg.min_cell_n, bootstrap_resamples=cfg.bootstrap_resamples
    )


def _reliability(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return reliability.rater_reliability(
        inputs.ratings, inputs.model_values, min_n=cfg.min_cell_n, bootstrap_resamples=cfg.bootstrap_resamples
    )


def _dimensional(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return dimensional.dimensional_agreement(inputs.model_values, inputs.ratings, min_n=cfg.min_cell_n)


def _wilcoxon(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return dimensional.wilcoxon_by_emotion(inputs.model_values, inputs.ratings, min_n=cfg.min_cell_n)


def _mixed(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    parts = [mixed_models.correctness_model(inputs.answers, min_n=cfg.min_cell_n)]
    if inputs.has_ratings and not inputs.model_values.empty:
        # One human-vs-model fit per model version (as Tae et al.), each on its own so that the
        # fit, and its rater_type level (the model name), do not depend on which other versions
        # are in the warehouse: a new version is one new fit.
        fits = [
            mixed_models.rating_mixed_models(inputs.ratings, values, min_n=cfg.min_cell_n, per_model=True)
            for _, values in inputs.model_values.groupby(["model", "model_version", "dataset", "protocol"], sort=True)
        ]
        parts[:0] = [fit for fit in fits if len(fit)]
    return pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[-1]


def _response_style(inputs: StatsInputs, cfg: StatisticsConfig) -> pd.DataFrame:
    return response_style.response_style(inputs.model_values, inputs.ratings, inputs.answers, min_n=cfg.min_cell_n)


misclassification = stats_asset(
    "misclassification_tests",
    "Rate ratio (Katz log CI) and two-proportion z-test of every misclassification (and any error) between "
    "every pair of race / gender / race x gender groups, per true emotion and pooled; Holm within family, "
    "Benjamini-Hochberg alongside.",
    _misclassification,
)
categorical_agreement = stats_asset(
    "categorical_agreement",
    "Accuracy (Wilson CI), macro F1 (bootstrap CI) and Cohen's kappa (asymptotic CI) per model version x dataset, "
    "overall and per group.",
    _categorical,
)


def _mcnemar_pairs_of_changed(con, plan: SlicePlan, cfg: StatisticsConfig) -> tuple[pd.DataFrame, str]:
    """The pairs a changed version takes part in, against every version on its datasets."""
    current = plan.current[plan.current["model_version"] != ""]
    inputs = load_inputs(con, current[current["dataset"].isin(plan.datasets)], [])
    changed = {tuple(map(str, row)) for row in plan.model_slices[["model", "model_version", "dataset"]].itertuples(index=False)}
    pairs = agreement.mcnemar_between_models(
        inputs.answers, correction=cfg.corrections[0], min_n=cfg.min_cell_n, involving=changed)
    return pairs, "computed"


def _adjust_mcnemar_families(frame: pd.DataFrame, cfg: StatisticsConfig) -> pd.DataFrame:
    # A family (dataset/protocol) spans versions: re-adjust it whole once the new pairs are in.
    return adjust_within_families(frame, cfg.corrections[0]) if len(frame) else frame


TABLES["mcnemar_tests"] = IncrementalTable(
    _mcnemar_pairs_of_changed, second_slice=mcnemar_second_slice, finish=_adjust_mcnemar_families)


@dg.asset(
    key=["stats", "mcnemar_tests"],
    deps=INPUT_MODELS,
    group_name="stats",
    kinds={"duckdb", "python"},
    description="McNemar test between every pair of model versions on the images both answered; Holm within "
                "dataset/protocol. A new version adds only its own pairs (the family is re-adjusted).",
)
def mcnemar_tests(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    frame, meta = materialize_incrementally(context, duckdb, "mcnemar_tests")
    return dg.MaterializeResult(metadata={**meta, **_summary(frame)})


rater_reliability = stats_asset(
    "rater_reliability",
    "Krippendorff's alpha (nominal / ordinal / interval) among human raters, with each model added as a rater, and "
    "per demographic group of the faces; ICC(A,1)/ICC(A,k) where raters are fully crossed.",
    _reliability,
    needs_ratings=True,
)
dimensional_agreement = stats_asset(
    "dimensional_agreement",
    "Pearson r, MAE, RMSE, Bland-Altman bias and 95 % limits of agreement of model valence/arousal vs the mean "
    "human rating, overall and per emotion.",
    _dimensional,
    needs_ratings=True,
)
wilcoxon_tests = stats_asset(
    "wilcoxon_tests",
    "Wilcoxon signed-rank test of model vs mean human rating per emotion and dimension, Bonferroni within family.",
    _wilcoxon,
    needs_ratings=True,
)
mixed_model_fits = stats_asset(
    "mixed_models",
    "MixedLM `rating ~ rater_type * emotion + (1|image_id)` and demographic versions, one fit of the human raters "
    "with each model version (REML, one row per coefficient, "
    "convergence recorded), and a GEE (binomial, exchangeable, clustered by identity) of correctness on race, "
    "gender and emotion.",
    _mixed,
)
response_style_summary = stats_asset(
    "response_style",
    "Stereotyped responding (unique values, SD per emotion), polarity exaggeration (SD ratio to humans), "
    "per-emotion affine calibration (cross-validated MAE before/after), neutral absorption, strength inversion.",
    _response_style,
)
