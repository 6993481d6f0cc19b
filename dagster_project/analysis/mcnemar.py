"""McNemar's test between every pair of model versions on the images both answered
(``statsmodels.stats.contingency_tables.mcnemar``; Holm, or another ``multipletests`` method,
within each dataset/protocol family via ``results.adjust_within_families``).

The test depends on the answers only through each pair's 2x2 table of (version a right or
wrong) x (version b right or wrong) over their shared images, so the tables are counted first
and the same code turns tables into result rows (`mcnemar_from_tables`).

The tables of all pairs at once, as matrix products (`pair_tables`): with A[v, i] = 1 where
version v answered image i and R[v, i] = 1 where it answered it right, R @ R.T counts the
images both versions got right, R @ A.T those version a got right among the images both
answered, A @ A.T the shared images; the other cells are differences. At 200 versions x
10,000 images that is ~20,000 tables from three small matrix products, where a join of every
pair's images (DuckDB, what the cross-slice asset ran before; scripts/bench_mcnemar.py times
both) built 10^8 joined rows. The counting is tested equal to a join per pair.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dagster_project.analysis.agreement import ANSWERED, PAIR_KEYS
from dagster_project.analysis.results import adjust_within_families, detail_json, none_if_nan, result_frame, result_row

TABLE_COLUMNS = ["dataset", "protocol", "model_a", "version_a", "model_b", "version_b", "n11", "n10", "n01", "n00"]

# Each answered image of each version, right or wrong: what the tables are counted from. An
# image counts once per version (the grain of int_final_answers); right = predicted = true
# emotion (a missing true emotion is wrong).
CORRECTNESS_SQL = """
select coalesce(dataset, '') as dataset, coalesce(protocol, '') as protocol, model, model_version, image_id,
       coalesce(true_emotion::varchar = predicted_emotion::varchar, false) as correct
from ({answers})
where answer_status = 'answered' and predicted_emotion is not null
"""

# Matrix cells (versions x images) per block of images: bounds the memory of a cell with many
# versions and images (128 MB per float64 matrix); float64 counts are exact far beyond it.
_BLOCK_CELLS = 2 ** 24


def pair_tables(answers: pd.DataFrame, involving: set[tuple[str, str, str]] | None = None) -> pd.DataFrame:
    """The 2x2 table of every pair of (model, model_version) on the same dataset x protocol, a
    row per pair (a < b by model, then version) even without a shared image (n = 0), ordered
    by TABLE_COLUMNS[:6] (`involving`: only pairs with at least one of these
    (model, model_version, dataset)). Counted by the warehouse's own SQL (tables_in_warehouse)
    over the frame, so a frame and the warehouse cannot count differently; a frame without
    answer_status counts every row with a predicted emotion (agreement.is_answered)."""
    import duckdb

    frame = answers if "answer_status" in answers else answers.assign(answer_status=ANSWERED)
    with duckdb.connect() as con:
        con.register("answers", frame)
        return _only_involving(tables_in_warehouse(con, "select * from answers"), involving)


# The same rows as integer codes, so that millions of answers come out of DuckDB as four numeric
# columns instead of six of strings (at 20 versions x 100,000 images: 8 s -> ~1 s): a code per
# dataset x protocol (cell), per version within it (sorted by model, then version) and per image.
_ANSWERED_CTE = "with answered as materialized ({correctness})"
CELL_VERSIONS_SQL = _ANSWERED_CTE + """
select distinct dataset, protocol, model, model_version from answered order by dataset, protocol, model, model_version
"""
CODED_SQL = _ANSWERED_CTE + """,
cells as (
    select dataset, protocol, row_number() over (order by dataset, protocol) - 1 as cell_code
    from (select distinct dataset, protocol from answered)
),
versions as (
    select dataset, protocol, model, model_version,
           row_number() over (partition by dataset, protocol order by model, model_version) - 1 as version_code
    from (select distinct dataset, protocol, model, model_version from answered)
),
images as (
    select dataset, protocol, image_id,
           row_number() over (partition by dataset, protocol order by image_id) - 1 as image_code
    from (select distinct dataset, protocol, image_id from answered)
)
select cells.cell_code, versions.version_code, images.image_code, answered.correct
from answered
join cells using (dataset, protocol)
join versions using (dataset, protocol, model, model_version)
join images using (dataset, protocol, image_id)
"""


def tables_in_warehouse(con, answers_sql: str) -> pd.DataFrame:
    """`pair_tables` of the answers `answers_sql` selects (ANSWER_COLUMNS), counted from their
    integer codes (CODED_SQL) on connection `con`."""
    correctness = CORRECTNESS_SQL.format(answers=answers_sql)
    labels = con.execute(CELL_VERSIONS_SQL.format(correctness=correctness)).df()
    coded = con.execute(CODED_SQL.format(correctness=correctness)).fetchnumpy()
    cell_codes = np.asarray(coded["cell_code"], dtype=np.int64)
    # each cell's rows as one run of a stable order (one pass, not a mask over every row per cell)
    order = np.argsort(cell_codes, kind="stable")
    version_codes, image_codes, right = (np.asarray(coded[name], dtype=dtype)[order] for name, dtype in
                                         (("version_code", np.int64), ("image_code", np.int64), ("correct", bool)))
    groups = labels.groupby(PAIR_KEYS, sort=True)
    bounds = np.searchsorted(cell_codes[order], np.arange(groups.ngroups + 1))
    parts = []
    for cell_code, ((dataset, protocol), versions) in enumerate(groups):
        run = slice(bounds[cell_code], bounds[cell_code + 1])
        parts.append(_cell_tables(
            str(dataset), str(protocol), list(zip(versions["model"].astype(str), versions["model_version"].astype(str))),
            version_codes[run], image_codes[run], int(image_codes[run].max()) + 1 if run.stop > run.start else 0,
            right[run]))
    return _concat_tables(parts)


def _concat_tables(parts: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=TABLE_COLUMNS)


def _only_involving(tables: pd.DataFrame, involving: set[tuple[str, str, str]] | None) -> pd.DataFrame:
    if involving is None or not len(tables):
        return tables
    keep = [{(a, va, d), (b, vb, d)} & involving != set() for d, a, va, b, vb in
            tables[["dataset", "model_a", "version_a", "model_b", "version_b"]].itertuples(index=False)]
    return tables[keep].reset_index(drop=True)


def _cell_tables(dataset: str, protocol: str, versions: list[tuple[str, str]], version_codes: np.ndarray,
                 image_codes: np.ndarray, n_images: int, right: np.ndarray) -> pd.DataFrame:
    """Every pair's table within one dataset x protocol, from three matrix products.
    `versions`: (model, model_version), sorted; the answers' codes into them and into the
    images (0..n_images-1), and whether each answer was right."""
    n_versions = len(versions)
    right_right = np.zeros((n_versions, n_versions))
    right_answered = np.zeros((n_versions, n_versions))
    shared = np.zeros((n_versions, n_versions))
    block = max(1, _BLOCK_CELLS // max(n_versions, 1))
    for start in range(0, n_images, block):
        inside = (image_codes >= start) & (image_codes < start + block)
        width = min(block, n_images - start)
        answered_m, right_m = np.zeros((n_versions, width)), np.zeros((n_versions, width))
        answered_m[version_codes[inside], image_codes[inside] - start] = 1.0
        right_m[version_codes[inside], image_codes[inside] - start] = right[inside]
        right_right += right_m @ right_m.T
        right_answered += right_m @ answered_m.T
        shared += answered_m @ answered_m.T
    a, b = np.triu_indices(n_versions, k=1)  # versions are sorted: a < b
    n11 = right_right[a, b]
    n10 = right_answered[a, b] - n11   # a right on the shared images, b wrong
    n01 = right_answered[b, a] - n11   # b right, a wrong
    n00 = shared[a, b] - n11 - n10 - n01
    models = np.array([model for model, _ in versions], dtype=object)
    model_versions = np.array([version for _, version in versions], dtype=object)
    return pd.DataFrame({
        "dataset": dataset, "protocol": protocol,
        "model_a": models[a], "version_a": model_versions[a], "model_b": models[b], "version_b": model_versions[b],
        **{name: np.rint(counts).astype("int64") for name, counts in
           (("n11", n11), ("n10", n10), ("n01", n01), ("n00", n00))},
    }, columns=TABLE_COLUMNS)


def mcnemar_between_models(
    answers: pd.DataFrame,
    *,
    correction: str = "holm",
    min_n: int = 10,
    exact_below: int = 25,
    continuity_correction: bool = True,
    involving: set[tuple[str, str, str]] | None = None,
) -> pd.DataFrame:
    """McNemar's test for every pair of (model, model_version) on the same dataset x protocol.

    `involving` = {(model, model_version, dataset)}: only the pairs with at least one of these
    (the pairs a newly evaluated version adds); None = every pair.

    Images: those both versions answered (joined on image_id). 2x2 table: rows = model a
    correct / incorrect, columns = model b correct / incorrect. The exact binomial test is used
    when the discordant count (b + c) is below `exact_below` (25), else the chi-square test
    (with Edwards' continuity correction when `continuity_correction`, the statsmodels default).

    Orientation / labels: pairs are ordered by (model, model_version); model and model_version
    are those of 'a', subset = "{model_a}/{version_a} vs {model_b}/{version_b}", and detail
    holds model_b, model_version_b and the table. estimate = accuracy(a) - accuracy(b) on the
    shared images (no CI). family = "{dataset}/{protocol}"; p_adjusted by `correction` within it.
    """
    return mcnemar_from_tables(pair_tables(answers, involving), correction=correction, min_n=min_n,
                               exact_below=exact_below, continuity_correction=continuity_correction)


def mcnemar_from_tables(tables: pd.DataFrame, *, correction: str = "holm", min_n: int = 10, exact_below: int = 25,
                        continuity_correction: bool = True) -> pd.DataFrame:
    """Result rows (see mcnemar_between_models) from `pair_tables` / PAIR_TABLES_SQL rows."""
    rows = [_mcnemar_row(table, exact_below, continuity_correction) for table in tables.itertuples(index=False)]
    return adjust_within_families(result_frame(rows, min_n), correction)


def _mcnemar_row(pair, exact_below: int, continuity: bool) -> dict:
    from statsmodels.stats.contingency_tables import mcnemar
    table = np.array([[pair.n11, pair.n10], [pair.n01, pair.n00]], dtype=int)
    n = int(table.sum())
    discordant = int(table[0, 1] + table[1, 0])
    exact = discordant < exact_below
    stat = pval = estimate = np.nan
    accuracy_a = accuracy_b = None
    if n:
        res = mcnemar(table, exact=exact, correction=continuity)
        stat, pval = float(res.statistic), float(res.pvalue)
        accuracy_a, accuracy_b = float((pair.n11 + pair.n10) / n), float((pair.n11 + pair.n01) / n)
        estimate = accuracy_a - accuracy_b
    method = ("exact binomial (statistic = min(b, c))" if exact else
              "chi-square" + (" with continuity correction" if continuity else " without continuity correction"))
    return result_row(
        analysis="mcnemar_between_models", model=pair.model_a, model_version=pair.version_a,
        dataset=pair.dataset, protocol=pair.protocol, subset_kind="model_pair",
        subset=f"{pair.model_a}/{pair.version_a} vs {pair.model_b}/{pair.version_b}", measure="mcnemar", n=n,
        estimate=estimate, statistic=stat, p_value=pval, family=f"{pair.dataset}/{pair.protocol}",
        detail=detail_json(model_b=pair.model_b, model_version_b=pair.version_b, table=table, discordant=discordant,
                           exact=bool(exact), method=method, estimate="accuracy_a - accuracy_b on shared images",
                           accuracy_a=none_if_nan(accuracy_a) if n else None,
                           accuracy_b=none_if_nan(accuracy_b) if n else None),
    )
