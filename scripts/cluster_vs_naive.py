"""Which significant results of a warehouse survive once repeated identities are counted
(issue 22). Reads stats.error_rate_ztests and stats.misclassification_tests (read-only) and
compares, per table:

* "today": the naive p-values (images independent), every pair tested, Holm within the family
  (what the code did before issue 22);
* "clustering alone": the naive p-values of the pairs tested now, Holm within the same families;
* "now": p_adjusted (cluster-aware where identities repeat, small cells not tested).

    .venv/bin/python scripts/cluster_vs_naive.py [data/warehouse.duckdb]
"""

from __future__ import annotations

import sys

import duckdb
import pandas as pd
from statsmodels.stats.multitest import multipletests

KEYS = {"error_rate_ztests": ["model", "grouping", "true_emotion", "group_a", "group_b"],
        "misclassification_tests": ["model", "subset_kind", "subset", "true_emotion", "predicted_emotion"]}


def holm(frame: pd.DataFrame, column: str) -> pd.Series:
    adjusted = pd.Series(float("nan"), index=frame.index)
    for _, idx in frame.groupby("family").groups.items():
        p = frame.loc[idx, column].dropna()
        if len(p):
            adjusted[p.index] = multipletests(p, method="holm")[1]
    return adjusted


def main(warehouse: str) -> None:
    pd.set_option("display.width", 250)
    con = duckdb.connect(warehouse, read_only=True)
    for table, keys in KEYS.items():
        frame = con.execute(f"select * from stats.{table}").df()
        today = holm(frame, "p_value_naive") < 0.05
        tested = frame["p_value"].notna()
        alone = holm(frame[tested], "p_value_naive").reindex(frame.index) < 0.05
        now = frame["p_adjusted"] < 0.05
        print(f"{table}: {len(frame)} pairs; significant today {int(today.sum())}, now {int(now.sum())} "
              f"(kept {int((today & now).sum())}, lost {int((today & ~now).sum())}, gained {int((~today & now).sum())}); "
              f"clustering alone (same tests, same families): lost {int((alone & ~now).sum())}, "
              f"gained {int((~alone & now).sum())}")
        changed = frame[today != now].assign(today=today[today != now], now=now[today != now])
        columns = [*keys, "n_a", "n_b", "design_effect_a", "design_effect_b", "p_value_naive", "p_value", "p_adjusted",
                   "below_min_n", "today", "now"]
        if len(changed):
            print(changed[columns].to_string(index=False))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "data/warehouse.duckdb")
