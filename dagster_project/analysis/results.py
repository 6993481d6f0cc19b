"""The common shape of every statistics table: one row per test or estimate.

Every stats.* table has these columns (plus its own extras after them), so a user can
filter any of them the same way: by model, subset, measure, and whether the cell was
large enough to trust.
"""

from __future__ import annotations

import gc
import json
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from dagster_project.analysis.subset_kinds import check_subset_kinds

RESULT_COLUMNS = [
    "analysis",      # e.g. 'categorical_agreement', 'rater_reliability'
    "model",         # model name ('human' for human-only estimates; '' when not model-specific)
    "model_version",
    "dataset",
    "protocol",
    "subset_kind",   # one of the seed subset_kinds.csv: 'all', 'emotion', 'race', 'gender', 'term', ...
    "subset",        # the value of subset_kind ('all' when subset_kind = 'all')
    "measure",       # e.g. 'cohen_kappa', 'krippendorff_alpha_ordinal', 'mae', 'wilcoxon'
    "n",             # units the estimate rests on (images, pairs, ratings)
    "estimate",
    "ci_low",
    "ci_high",
    "statistic",     # test statistic where the measure is a test
    "p_value",
    "p_adjusted",
    "correction",    # 'holm', 'fdr_bh', 'bonferroni', or '' when not adjusted
    "family",        # the set of tests adjusted together
    "family_m",      # m: the tests of the family that have a p-value (untestable ones not counted)
    "below_min_n",
    "detail",        # JSON text with anything measure-specific (method, df, converged, ...)
]


def json_safe(value: Any) -> Any:
    """numpy scalars/arrays -> Python values, NaN/inf -> None, recursively (for `detail`)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in (value.tolist() if isinstance(value, np.ndarray) else value)]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def detail_json(detail: Mapping[str, Any] | None = None, **values: Any) -> str:
    """The `detail` column: sorted, JSON-safe text."""
    return json.dumps(json_safe({**(detail or {}), **values}), sort_keys=True)


def none_if_nan(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else value


# Extra columns a row may carry after RESULT_COLUMNS (kept by result_frame's extra_columns).
OPTIONAL_COLUMNS = ("dimension",)


def result_row(**values: Any) -> dict[str, Any]:
    """One result row with every column present (missing ones null/empty)."""
    row: dict[str, Any] = {col: None for col in RESULT_COLUMNS}
    unknown = set(values) - set(RESULT_COLUMNS) - set(OPTIONAL_COLUMNS)
    if unknown:
        raise KeyError(f"unknown result columns: {sorted(unknown)}")
    row.update(values)
    return row


def result_frame(rows: Iterable[Mapping[str, Any]], min_n: int, extra_columns: tuple[str, ...] = ()) -> pd.DataFrame:
    """Rows -> a frame with RESULT_COLUMNS (then `extra_columns`) in order, typed, and
    below_min_n filled from n."""
    frame = pd.DataFrame(list(rows), columns=[*RESULT_COLUMNS, *extra_columns])
    frame["family_m"] = pd.to_numeric(frame["family_m"], errors="coerce").astype("Int64")
    for col in ("estimate", "ci_low", "ci_high", "statistic", "p_value", "p_adjusted"):
        frame[col] = pd.to_numeric(frame[col], errors="coerce").astype(float)
    frame["n"] = pd.to_numeric(frame["n"], errors="coerce").astype("Int64")
    frame["below_min_n"] = frame["n"].fillna(0).astype(int) < min_n
    for col in ("analysis", "model", "model_version", "dataset", "protocol", "subset_kind", "subset",
                "measure", "correction", "family", "detail"):
        frame[col] = frame[col].fillna("").astype(str)
    check_subset_kinds(frame["subset_kind"].unique())  # what the SQL views read (seed subset_kinds)
    return frame


def dimension_frame(rows: Iterable[Mapping[str, Any]], min_n: int) -> pd.DataFrame:
    """result_frame with the extra column `dimension` ('' where a row has none): the
    dimension is a column of its own, never packed into `detail`."""
    frame = result_frame(rows, min_n, extra_columns=("dimension",))
    frame["dimension"] = frame["dimension"].fillna("").astype(str)
    return frame


@contextmanager
def collections_of_new_objects_only() -> Iterator[None]:
    """statsmodels 0.15's multipletests calls gc.collect() after each Holm adjustment (to free
    one temporary array). In a process holding Dagster, dbt and pandas that is a full
    collection, ~0.14 s per call (measured: 5.4 of 7.5 s in 40 calls of the pooled tests), and
    a statistics asset adjusts one family at a time. gc.freeze() puts the objects alive now out
    of the collector's reach, so each such call sweeps only what was made since; unfrozen after
    (unless something froze objects before us)."""
    frozen_before = gc.get_freeze_count()
    gc.freeze()
    try:
        yield
    finally:
        if not frozen_before:
            gc.unfreeze()


def adjust_within_families(frame: pd.DataFrame, method: str, alpha: float = 0.05) -> pd.DataFrame:
    """Fill p_adjusted by `method` (statsmodels multipletests) within each non-empty family,
    and family_m = the number of p-values adjusted together (untestable rows not counted)."""
    from statsmodels.stats.multitest import multipletests
    frame = frame.copy()
    with collections_of_new_objects_only():
        for family, idx in frame[frame["family"] != ""].groupby("family").groups.items():
            p = frame.loc[idx, "p_value"]
            ok = p.notna()
            frame.loc[idx, "family_m"] = int(ok.sum())
            if ok.any():
                _, adjusted, _, _ = multipletests(p[ok].to_numpy(), alpha=alpha, method=method)
                frame.loc[p[ok].index, "p_adjusted"] = adjusted
                frame.loc[idx, "correction"] = method
    return frame


def empty_result(min_n: int = 1) -> pd.DataFrame:
    return result_frame([], min_n)


__all__ = [
    "OPTIONAL_COLUMNS", "RESULT_COLUMNS", "adjust_within_families", "collections_of_new_objects_only", "detail_json", "dimension_frame", "empty_result", "json_safe", "none_if_nan",
    "result_frame", "result_row",
]
