"""McNemar's test between every pair of model versions on the images both answered
(``statsmodels.stats.contingency_tables.mcnemar``; Holm, or another ``multipletests`` method,
within each dataset/protocol family via ``results.adjust_within_families``).

The test depends on the answers only through each pair's 2x2 table of (version a right or
wrong) x (version b right or wrong) over their shared images, so the tables are counted first
-- in pandas from an answers frame (`pair_tables`), or in DuckDB over the warehouse
(`PAIR_TABLES_SQL`: the cross-slice asset at 200 versions has ~20,000 pairs, and pandas joined
each pair's images in Python) -- and the same code turns tables into result rows
(`mcnemar_from_tables`). Both countings are tested equal.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from dagster_project.analysis.agreement import PAIR_KEYS, is_answered
from dagster_project.analysis.results import adjust_within_families, detail_json, none_if_nan, result_frame, result_row

TABLE_COLUMNS = ["dataset", "protocol", "model_a", "version_a", "model_b", "version_b", "n11", "n10", "n01", "n00"]

# One row per pair of versions on a dataset x protocol (a < b by model, then version), every
# pair even without a shared image (n = 0). An image counts once per version (the grain of
# int_final_answers); right = predicted = true emotion (a missing true emotion is wrong).
PAIR_TABLES_SQL = """
with answered as (
    select coalesce(dataset, '') as dataset, coalesce(protocol, '') as protocol, model, model_version, image_id,
           coalesce(true_emotion::varchar = predicted_emotion::varchar, false) as correct
    from ({answers})
    where answer_status = 'answered' and predicted_emotion is not null
),
versions as (select distinct dataset, protocol, model, model_version from answered),
pairs as (
    select a.dataset, a.protocol, a.model as model_a, a.model_version as version_a,
           b.model as model_b, b.model_version as version_b
    from versions a join versions b
      on a.dataset = b.dataset and a.protocol = b.protocol
     and (a.model < b.model or (a.model = b.model and a.model_version < b.model_version))
),
counts as (
    select a.dataset, a.protocol, a.model as model_a, a.model_version as version_a,
           b.model as model_b, b.model_version as version_b,
           count_if(a.correct and b.correct) as n11, count_if(a.correct and not b.correct) as n10,
           count_if(not a.correct and b.correct) as n01, count_if(not a.correct and not b.correct) as n00
    from answered a join answered b
      on a.dataset = b.dataset and a.protocol = b.protocol and a.image_id = b.image_id
     and (a.model < b.model or (a.model = b.model and a.model_version < b.model_version))
    group by all
)
select p.*, coalesce(n11, 0) as n11, coalesce(n10, 0) as n10, coalesce(n01, 0) as n01, coalesce(n00, 0) as n00
from pairs p left join counts c using (dataset, protocol, model_a, version_a, model_b, version_b)
order by dataset, protocol, model_a, version_a, model_b, version_b
"""


def pair_tables(answers: pd.DataFrame, involving: set[tuple[str, str, str]] | None = None) -> pd.DataFrame:
    """The 2x2 table of every pair of (model, model_version) on the same dataset x protocol
    (`involving`: only pairs with at least one of these (model, model_version, dataset))."""
    answered = answers[is_answered(answers)].copy()
    answered["_correct"] = answered["true_emotion"].astype(str) == answered["predicted_emotion"].astype(str)
    rows = []
    for (dataset, protocol), cell in answered.groupby(PAIR_KEYS, sort=True, dropna=False):
        dataset = "" if pd.isna(dataset) else str(dataset)
        protocol = "" if pd.isna(protocol) else str(protocol)
        versions = {
            key: frame.drop_duplicates("image_id").set_index("image_id")["_correct"]
            for key, frame in cell.groupby(["model", "model_version"], sort=True)
        }
        for (key_a, correct_a), (key_b, correct_b) in itertools.combinations(sorted(versions.items()), 2):
            if involving is not None and not {(*key_a, dataset), (*key_b, dataset)} & involving:
                continue
            joined = pd.concat([correct_a.rename("a"), correct_b.rename("b")], axis=1, join="inner")
            a, b = joined["a"].to_numpy(bool), joined["b"].to_numpy(bool)
            rows.append([dataset, protocol, str(key_a[0]), str(key_a[1]), str(key_b[0]), str(key_b[1]),
                         int(np.sum(a & b)), int(np.sum(a & ~b)), int(np.sum(~a & b)), int(np.sum(~a & ~b))])
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


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
