"""Incremental statistics: only the slices that changed since a table was written are recomputed.

A slice is one evaluated (model, model_version, dataset); each dataset is also a slice of its
own (model = model_version = '') for the human-only rows (e.g. Krippendorff's alpha among the
human raters). Every slice has a fingerprint: when it was last evaluated or its dataset
ingested (dbt's int_slices), its dataset's human ratings, and the statistics settings. A
stats table keeps, in stats.slice_state, the fingerprints it was computed from; the next
materialization recomputes the slices whose fingerprint differs and keeps every other row as
it is, so evaluating the 21st version of a model costs what the 1st did.

Row ownership: a row with a model_version belongs to its (model, model_version, dataset)
slice; a row without one (model = 'human' or '') to its dataset. Pairwise tables (McNemar
between versions) also name the second slice of each row; the row is recomputed when either
side changes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

import duckdb
import pandas as pd

SLICE_KEYS = ["model", "model_version", "dataset"]
STATE_TABLE = "stats.slice_state"
# Bump when a change to the statistics code should recompute every stored slice.
STATE_VERSION = "1"

FINGERPRINTS_SQL = """
with
ratings as (
    select dataset, count(*) as n, max(loaded_at) as loaded_at
    from staging.stg_human_ratings
    group by dataset
),
images as (
    select dataset, max(loaded_at) as loaded_at
    from staging.stg_dataset_images
    group by dataset
),
model_slices as (
    select slices.model, slices.model_version, slices.dataset,
           concat_ws('|', slices.slice_updated_at, ratings.n, ratings.loaded_at) as fingerprint
    from intermediate.int_slices as slices
    left join ratings on ratings.dataset = slices.dataset
),
dataset_slices as (
    select '' as model, '' as model_version, images.dataset,
           concat_ws('|', images.loaded_at, ratings.n, ratings.loaded_at) as fingerprint
    from images
    left join ratings on ratings.dataset = images.dataset
)
select * from model_slices
union all
select * from dataset_slices
order by all
"""


@dataclass(frozen=True)
class SlicePlan:
    """What one materialization of a stats table must recompute."""

    current: pd.DataFrame  # SLICE_KEYS + fingerprint, every slice in the warehouse now
    changed: pd.DataFrame  # SLICE_KEYS of the slices to recompute (new or changed fingerprint)
    removed: pd.DataFrame  # SLICE_KEYS held by the table but gone from the warehouse

    @property
    def up_to_date(self) -> bool:
        return self.changed.empty and self.removed.empty

    @property
    def datasets(self) -> list[str]:
        """Datasets whose human-only rows are recomputed (any of their slices changed)."""
        return sorted(set(self.changed["dataset"]) | set(self.removed["dataset"]))

    @property
    def model_slices(self) -> pd.DataFrame:
        """Changed slices that are model versions (not the datasets' own)."""
        return self.changed[self.changed["model_version"] != ""].reset_index(drop=True)

    def describe(self) -> str:
        return (f"{len(self.model_slices)} model slice(s) and "
                f"{int((self.changed['model_version'] == '').sum())} dataset slice(s) recomputed, "
                f"{len(self.removed)} removed, {len(self.current) - len(self.changed)} kept")


def settings_hash(settings: object) -> str:
    """Short hash of the statistics settings: changing any of them recomputes every slice."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(f"{STATE_VERSION}|{text}".encode()).hexdigest()[:12]


def current_fingerprints(con: duckdb.DuckDBPyConnection, settings: object) -> pd.DataFrame:
    frame = con.execute(FINGERPRINTS_SQL).df()
    frame["fingerprint"] = frame["fingerprint"].fillna("").astype(str) + "|" + settings_hash(settings)
    return frame[[*SLICE_KEYS, "fingerprint"]]


def plan_slices(current: pd.DataFrame, held: pd.DataFrame) -> SlicePlan:
    """Compare the fingerprints now with those a table was computed from."""
    merged = current.merge(held, on=SLICE_KEYS, how="outer", suffixes=("", "_held"), indicator=True)
    changed = merged[(merged["_merge"] == "left_only") |
                     ((merged["_merge"] == "both") & (merged["fingerprint"] != merged["fingerprint_held"]))]
    removed = merged[merged["_merge"] == "right_only"]
    return SlicePlan(
        current=current.reset_index(drop=True),
        changed=changed[SLICE_KEYS].reset_index(drop=True),
        removed=removed[SLICE_KEYS].reset_index(drop=True),
    )


def _keys(frame: pd.DataFrame, columns: list[str]) -> pd.Series:
    return frame[columns].astype(str).agg("\x1f".join, axis=1) if len(frame) else pd.Series([], dtype=str)


def stale_rows(
    old: pd.DataFrame,
    plan: SlicePlan,
    second_slice: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.Series:
    """Rows of `old` that the recomputation replaces: those of changed or removed slices, the
    human-only rows of their datasets, and (pairwise tables) rows whose second slice changed."""
    if old.empty:
        return pd.Series([], dtype=bool)
    gone = set(_keys(pd.concat([plan.changed, plan.removed]), SLICE_KEYS))
    own = _keys(old, SLICE_KEYS).isin(gone)
    dataset_rows = (old["model_version"].astype(str) == "") & old["dataset"].astype(str).isin(plan.datasets)
    stale = own | dataset_rows
    if second_slice is not None:
        stale |= _keys(second_slice(old), SLICE_KEYS).isin(gone).to_numpy()
    return stale


def merge_results(
    old: pd.DataFrame,
    new: pd.DataFrame,
    plan: SlicePlan,
    second_slice: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """The table after a recomputation: `old` without its stale rows, plus `new`."""
    if old.empty:
        return new.reset_index(drop=True)
    kept = old[~stale_rows(old, plan, second_slice).to_numpy()]
    if new.empty:
        return kept.reset_index(drop=True)
    return pd.concat([kept, new], ignore_index=True)


def mcnemar_second_slice(frame: pd.DataFrame) -> pd.DataFrame:
    """(model, model_version, dataset) of version b of each McNemar row (kept in its detail)."""
    detail = frame["detail"].map(lambda text: json.loads(text) if text else {})
    return pd.DataFrame({
        "model": detail.map(lambda d: d.get("model_b", "")),
        "model_version": detail.map(lambda d: d.get("model_version_b", "")),
        "dataset": frame["dataset"].to_numpy(),
    })


def read_state(con: duckdb.DuckDBPyConnection, table: str) -> pd.DataFrame:
    """The fingerprints `table` was computed from (empty when it was never computed here)."""
    exists = con.execute(
        "select count(*) from information_schema.tables where table_schema = 'stats' and table_name in (?, 'slice_state')",
        [table],
    ).fetchall()[0][0]  # fetchall: DuckDB refuses new work while a result is half-read
    if exists < 2:
        return pd.DataFrame(columns=[*SLICE_KEYS, "fingerprint"])
    return con.execute(
        f"select model, model_version, dataset, fingerprint from {STATE_TABLE} where table_name = ?", [table]
    ).df()


def write_state(con: duckdb.DuckDBPyConnection, table: str, current: pd.DataFrame) -> None:
    con.execute(
        f"create table if not exists {STATE_TABLE} (table_name varchar, model varchar, model_version varchar, "
        "dataset varchar, fingerprint varchar, primary key (table_name, model, model_version, dataset))"
    )
    con.execute(f"delete from {STATE_TABLE} where table_name = ?", [table])
    con.register("_state", current.assign(table_name=table))
    con.execute(f"insert into {STATE_TABLE} select table_name, model, model_version, dataset, fingerprint from _state")
    con.unregister("_state")


__all__ = [
    "SLICE_KEYS", "SlicePlan", "current_fingerprints", "mcnemar_second_slice", "merge_results", "plan_slices",
    "read_state", "settings_hash", "stale_rows", "write_state",
]
