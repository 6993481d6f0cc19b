"""The statistics layer: one stats.* table per analysis of the seed papers.

Every table but McNemar's is partitioned like the slice models (model version x dataset): a
partition computes its slice's rows from that slice's answers and its dataset's human ratings
(library code in dagster_project/analysis/) and replaces exactly those rows. Results that
span slices are small assets of their own: McNemar between versions (with its family
adjustment, unpartitioned) and the human-only baselines per dataset (stats/human_baselines).
Tables that need human ratings stay empty for a slice without them, and say so.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import dagster as dg
import pandas as pd
from duckdb import DuckDBPyConnection

from dagster_project.analysis import slice_stats
from dagster_project.analysis.headlines import largest_significant_disparity
from dagster_project.analysis.inputs import StatsInputs, frames_of_slices, load_inputs, select_in_slices
from dagster_project.analysis.on_cores import map_on_cores
from dagster_project.analysis.proportions import pairwise_error_ztests
from dagster_project.defs.conditions import SLICE_RESULTS
from dagster_project.defs.dbt_assets import SLICE_INPUTS
from dagster_project.defs.partitions import SINGLE_RUN, SliceKey, model_dataset_partitions, slice_frame, slices_of
from dagster_project.defs.resources import WarehouseResource
from dagster_project.defs.stats_io import owned_by, replace_many_rows, summary_metadata
from dagster_project.settings import benchmark_config
from inference.config import StatisticsConfig

_SLICE_MODELS = [dg.AssetKey(["intermediate", name]) for name in ("int_final_answers", "int_model_dimensional_answers")]
_DATASET_VIEWS = [dg.AssetKey(["intermediate", name]) for name in ("int_images_labeled", "int_human_ratings_labeled")]
# What a slice's statistics read: its answers (same partition), the dataset views, and (for
# staleness) the slice's raw inputs, its dataset's images and human ratings included.
SLICE_STATS_DEPS = [*(dg.AssetDep(key) for key in _SLICE_MODELS), *_DATASET_VIEWS, *SLICE_INPUTS]
GROUP_ACCURACY = dg.AssetKey(["marts", "group_accuracy"])
# Final answers read at once by a run of many slices (the answers frame holds a row per answer).
ANSWERS_PER_READ = 2_000_000
# Slices a worker process must have before a run computes a statistic on several cores (a
# spawned worker costs ~2 s of imports once per run; a slice's statistic 0.05-2 s).
SLICES_PER_WORKER = 4

Compute = Callable[[StatsInputs, StatisticsConfig], pd.DataFrame]


@dataclass(frozen=True)
class SliceResult:
    rows: pd.DataFrame  # the rows written for the slice
    metadata: dict


SliceCompute = Callable[[SliceKey], tuple[pd.DataFrame, str]]


def materialize_slices(context: dg.AssetExecutionContext, warehouse: WarehouseResource, table: str,
                       compute: SliceCompute, slice_keys: Sequence[SliceKey]) -> list[SliceResult]:
    """Compute each slice's rows of stats.<table> and replace them, every slice in one
    transaction (in the run's order: the same rows and types as one run per slice); other
    slices stay as they are."""
    results, parts = [], []
    for slice_key in slice_keys:
        frame, note = compute(slice_key)
        own = owned_by(frame, slice_key)
        parts.append((slice_key.as_dict(), own))
        results.append(SliceResult(own, {"note": note, **slice_key.as_dict(), **summary_metadata(own)}))
        context.log.info(f"stats.{table} [{slice_key.model}@{slice_key.model_version} | {slice_key.dataset}]: "
                         f"{len(own)} rows ({note})")
    with warehouse.get_connection() as con:
        replace_many_rows(con, table, parts)
    return results


def run_metadata(results: Sequence[SliceResult]) -> dict:
    """One slice's metadata; for a run of several (one materialization per partition, all with
    the same metadata), the total row count and a table of each slice's rows and note."""
    if len(results) == 1:
        return results[0].metadata
    table = pd.DataFrame([{key: result.metadata[key] for key in ("model", "model_version", "dataset", "note")}
                          | {"rows": len(result.rows)} for result in results])
    return {"dagster/row_count": int(table["rows"].sum()), "slices": len(results),
            "rows_by_slice": dg.MetadataValue.md(table.to_markdown(index=False))}


def computed_in_batches(warehouse: WarehouseResource, slice_keys: Sequence[SliceKey],
                        read: Callable[[DuckDBPyConnection, list[SliceKey]], StatsInputs],
                        compute: Compute, cfg: StatisticsConfig, needs_ratings: bool,
                        ) -> Iterator[tuple[SliceKey, tuple[pd.DataFrame, str]]]:
    """Each slice with its rows and note, read for many slices at once (one query per frame for
    up to ANSWERS_PER_READ final answers, so memory stays bounded at 10^7 answers) and computed
    slice by slice from its own inputs -- on every core when the batch has many slices."""
    for batch in answer_batches(warehouse, slice_keys):
        with warehouse.get_connection() as con:
            inputs = read(con, batch)
        jobs = [(compute, inputs.of_slice(key.model, key.model_version, key.dataset), cfg, needs_ratings)
                for key in batch]
        nothing_to_compute = needs_ratings and not inputs.has_ratings
        del inputs  # the slices' own frames are in the jobs
        if nothing_to_compute:  # a rating statistic without ratings: its note only, no worker is worth its start
            yield from zip(batch, [slice_stats.compute_slice(job) for job in jobs])
        else:
            yield from zip(batch, map_on_cores(slice_stats.compute_slice, jobs, SLICES_PER_WORKER))


def answer_batches(warehouse: WarehouseResource, slice_keys: Sequence[SliceKey]) -> list[list[SliceKey]]:
    """`slice_keys` in order, cut into runs of at most ANSWERS_PER_READ final answers (a
    slice bigger than that alone)."""
    if len(slice_keys) <= 1:
        return [list(slice_keys)]
    with warehouse.get_connection() as con:
        counts = select_in_slices(con, "select model, model_version, dataset, count(*) as n_answers "
                                       "from intermediate.int_final_answers group by all",
                                  slice_frame(*slice_keys), order_by="model, model_version, dataset")
    sizes = {(m, v, d): n for m, v, d, n in counts.itertuples(index=False)}
    batches: list[list[SliceKey]] = [[]]
    held = 0
    for slice_key in slice_keys:
        size = sizes.get((slice_key.model, slice_key.model_version, slice_key.dataset), 0)
        if batches[-1] and held + size > ANSWERS_PER_READ:
            batches.append([])
            held = 0
        batches[-1].append(slice_key)
        held += size
    return batches


_COMPUTATIONS: dict[str, tuple[Compute, bool, tuple[str, ...]]] = {}


def stats_computations() -> dict[str, tuple[Compute, bool, tuple[str, ...]]]:
    """{table: (compute, needs_ratings, reads)} of every stats_asset: what each computes per
    slice, from which frames."""
    return dict(_COMPUTATIONS)


def stats_asset(name: str, description: str, compute: Compute, reads: tuple[str, ...], *,
                needs_ratings: bool = False, extra_deps: tuple[dg.AssetKey, ...] = ()) -> dg.AssetsDefinition:
    """A per-slice stats.<name> asset; `reads`: the StatsInputs frames `compute` uses (only
    those are read from the warehouse); `extra_deps`: marts it reads (so it runs after them).
    A run of several slices reads their inputs together and computes each slice from its own
    rows: the same result as a run per slice."""
    _COMPUTATIONS[name] = (compute, needs_ratings, reads)

    @dg.asset(
        key=["stats", name],
        deps=[*SLICE_STATS_DEPS, *extra_deps],
        partitions_def=model_dataset_partitions,
        backfill_policy=SINGLE_RUN,
        group_name="stats",
        kinds={"duckdb", "python"},
        description=description,
        automation_condition=SLICE_RESULTS,
    )
    def _asset(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
        bench = benchmark_config()
        slice_keys = slices_of(context.partition_keys, bench)

        def read(con: DuckDBPyConnection, batch: list[SliceKey]) -> StatsInputs:
            return load_inputs(con, slice_frame(*batch), sorted({key.dataset for key in batch}), only=reads)

        # One batch of slices' inputs held at a time: materialize_slices asks in the same order.
        results_in_order = computed_in_batches(duckdb, slice_keys, read, compute, bench.statistics, needs_ratings)

        def run(slice_key: SliceKey) -> tuple[pd.DataFrame, str]:
            computed_key, result = next(results_in_order)
            assert computed_key == slice_key, (computed_key, slice_key)
            return result

        return dg.MaterializeResult(metadata=run_metadata(materialize_slices(context, duckdb, name, run, slice_keys)))

    return _asset


@dg.asset(
    key=["stats", "error_rate_ztests"],
    deps=[GROUP_ACCURACY, *SLICE_INPUTS],
    partitions_def=model_dataset_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="stats",
    kinds={"duckdb", "statsmodels"},
    automation_condition=SLICE_RESULTS,
    description=(
        "Two-proportion z-tests of error rate between every pair of race / gender / race x gender "
        "groups, per model version, dataset, protocol and true emotion ('all' = pooled); "
        "Holm-adjusted within each family, family recorded next to each p-value."
    ),
)
def error_rate_ztests(context: dg.AssetExecutionContext, duckdb: WarehouseResource) -> dg.MaterializeResult:
    bench = benchmark_config()
    cfg, slice_keys = bench.statistics, slices_of(context.partition_keys, bench)
    with duckdb.get_connection() as con:  # group_accuracy is small: every slice in one read
        accuracy = select_in_slices(con, "select * from marts.group_accuracy", slice_frame(*slice_keys))
    own_rows = frames_of_slices(accuracy)

    def run(slice_key: SliceKey) -> tuple[pd.DataFrame, str]:
        own = own_rows.get((slice_key.model, slice_key.model_version, slice_key.dataset), accuracy.iloc[0:0])
        tests = pairwise_error_ztests(own, groupings=cfg.groupings, correction=cfg.corrections[0],
                                      alpha=cfg.alpha, min_n=cfg.min_cell_n, family=cfg.family)
        return tests, "computed"

    results = materialize_slices(context, duckdb, "error_rate_ztests", run, slice_keys)
    if len(results) > 1:
        return dg.MaterializeResult(metadata=run_metadata(results))
    result = results[0]
    tests = result.rows  # the slice's rows as written (no read-back), for the preview below
    significant = (tests[tests["significant"].fillna(False).astype(bool) & ~tests["below_min_n"].astype(bool)]
                   if len(tests) else tests)
    preview = significant.sort_values("p_adjusted").head(15)[
        ["model", "dataset", "grouping", "true_emotion", "group_a", "group_b", "error_rate_a", "error_rate_b", "p_adjusted"]
    ] if len(significant) else significant
    return dg.MaterializeResult(metadata={
        **result.metadata,
        "n_tests": len(tests),
        "n_families": int(tests["family"].nunique()) if len(tests) else 0,
        "n_significant": len(significant),
        "largest_significant_disparity": largest_significant_disparity(tests),
        "significant_pairs": dg.MetadataValue.md(preview.to_markdown(index=False) if len(preview) else "none"),
    })


misclassification = stats_asset(
    "misclassification_tests",
    "Rate ratio (Katz log CI) and two-proportion z-test of every misclassification (and any error) between "
    "every pair of race / gender / race x gender groups, per true emotion and pooled; Holm within family, "
    "Benjamini-Hochberg alongside.",
    slice_stats.misclassification_rows,
    ("misclassification_ratios",),
)
worst_subgroup_table = stats_asset(
    "worst_subgroups",
    "Where the model is worst: every pairwise error-rate test of the slice (every grouping, intersection and "
    "emotion; cluster-aware where identities repeat), worse group first, Benjamini-Hochberg over the whole slice; "
    "the disparities that survive ranked by error-rate difference (rank 1 = largest).",
    slice_stats.worst_subgroups_rows,
    ("group_accuracy",),
    extra_deps=(GROUP_ACCURACY,),
)
categorical_agreement = stats_asset(
    "categorical_agreement",
    "Accuracy (Wilson CI), macro F1 and balanced accuracy over the classes in each subset's truth (bootstrap CIs; "
    "groups compared only within a class set) and Cohen's kappa (asymptotic CI) per model version x dataset, "
    "overall and per group.",
    slice_stats.categorical_rows,
    ("grouped", "group_accuracy"),
)
rater_reliability = stats_asset(
    "rater_reliability",
    "Krippendorff's alpha (nominal / ordinal / interval) of the human raters with the model version added as a "
    "rater; the humans alone are in stats.human_rater_reliability.",
    slice_stats.reliability_rows,
    ("ratings", "model_values"),
    needs_ratings=True,
)
dimensional_agreement = stats_asset(
    "dimensional_agreement",
    "Pearson r, MAE, RMSE, Bland-Altman bias and 95 % limits of agreement of model valence/arousal vs the mean "
    "human rating, overall and per emotion; beside r and MAE the human ceiling (one human vs the other humans).",
    slice_stats.dimensional_rows,
    ("ratings", "model_values"),
    needs_ratings=True,
)
wilcoxon_tests = stats_asset(
    "wilcoxon_tests",
    "Wilcoxon signed-rank test of model vs mean human rating per emotion and dimension, Bonferroni within family.",
    slice_stats.wilcoxon_rows,
    ("ratings", "model_values"),
    needs_ratings=True,
)
mixed_model_fits = stats_asset(
    "mixed_models",
    "MixedLM `rating ~ rater_type * emotion + (1|image_id)` and demographic versions, one fit of the human raters "
    "with the model version (REML, one row per coefficient, convergence recorded), the model-minus-human simple "
    "effect per emotion / race / gender from that fit (Tae's Table 6 'LMM p'; Holm within family), and a GEE (binomial, "
    "exchangeable, clustered by identity) of correctness on race, gender and emotion.",
    slice_stats.mixed_rows,
    ("answers", "ratings", "model_values"),
)
response_style_summary = stats_asset(
    "response_style",
    "Stereotyped responding (unique values, SD per emotion), polarity exaggeration (SD ratio to humans), "
    "per-emotion affine calibration (cross-validated MAE before/after), neutral absorption, strength inversion.",
    slice_stats.response_style_rows,
    ("answers", "ratings", "model_values"),
)

SLICE_STATS = [error_rate_ztests, misclassification, worst_subgroup_table, categorical_agreement, rater_reliability, dimensional_agreement,
               wilcoxon_tests, mixed_model_fits, response_style_summary]
