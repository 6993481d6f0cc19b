"""The group-pair tests of every slice (stats.error_rate_ztests, stats.misclassification_tests;
stats.worst_subgroups runs the first again), two ways side by side in one run, on the marts of
a warehouse that scripts/bench_at_scale.py kept:

* before: one statsmodels call per pair and test (proportions_ztest, confint_proportions_2indep;
  `per_pair_comparisons` below, what clustered.comparison ran for each pair until now);
* after: every pair of the slice in one call per test (clustered.comparisons, what runs now).

    .venv/bin/python scripts/bench_pair_tests.py DIR   # DIR: bench_at_scale.py --keep DIR

Each slice is computed as the assets compute it (one call per slice, from its own mart rows);
the two results are checked equal (z and p to 1e-9 relative: the score test and proportions_ztest
agree to ~1e-14; everything else exactly). Wall and CPU seconds of this process.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dagster_project.analysis import clustered, proportions  # noqa: E402

SLICE = ["model", "model_version", "dataset"]


def per_pair_comparisons(a: clustered.GroupCell, b: clustered.GroupCell, alpha: float = 0.05) -> pd.DataFrame:
    """Before: each pair's naive and cluster-aware z-test and interval by its own statsmodels calls."""
    from statsmodels.stats.proportion import confint_proportions_2indep, proportions_ztest

    def tests(cell_a: clustered.GroupCell, cell_b: clustered.GroupCell, effective: bool) -> tuple:
        if not 0 < cell_a.count + cell_b.count < cell_a.n + cell_b.n:
            return (np.nan,) * 4
        (ca, na), (cb, nb) = (cell_a.effective, cell_b.effective) if effective else (
            (cell_a.count, cell_a.n), (cell_b.count, cell_b.n))
        z, p = proportions_ztest(np.array([ca, cb]), np.array([na, nb]))
        low, high = confint_proportions_2indep(ca, na, cb, nb, method="wald", compare="diff", alpha=alpha)
        return float(z), float(p), float(low), float(high)

    rows = []
    for i in range(len(a.count)):
        cell_a, cell_b = (clustered.GroupCell(int(c.count[i]), int(c.n[i]), float(c.n_clusters[i]),
                                              float(c.design_effect[i])) for c in (a, b))
        method = clustered.inference_method(cell_a, cell_b)
        naive = tests(cell_a, cell_b, effective=False)
        decisive = tests(cell_a, cell_b, effective=True) if method == clustered.CLUSTER_METHOD else naive
        rows.append({**dict(zip(("z", "p_value", "ci_low", "ci_high"), decisive)),
                     **dict(zip(("z_naive", "p_value_naive", "ci_low_naive", "ci_high_naive"), naive)),
                     "inference": method, "n_clusters_a": cell_a.n_clusters, "n_clusters_b": cell_b.n_clusters,
                     "design_effect_a": cell_a.design_effect, "design_effect_b": cell_b.design_effect})
    return pd.DataFrame(rows, index=pd.RangeIndex(len(rows)))


def all_slices(frame: pd.DataFrame, compute) -> pd.DataFrame:
    return pd.concat([compute(part) for _, part in frame.groupby(SLICE, sort=True)], ignore_index=True)


def timed(label: str, run) -> pd.DataFrame:
    wall, cpu = time.perf_counter(), time.process_time()
    out = run()
    print(f"{label:<52} wall {time.perf_counter() - wall:7.1f} s   cpu {time.process_time() - cpu:7.1f} s")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("kept", type=Path, help="the --keep folder of scripts/bench_at_scale.py")
    args = parser.parse_args(argv)
    with duckdb.connect(str(args.kept / "warehouse.duckdb"), read_only=True) as con:
        accuracy = con.execute("select * from marts.group_accuracy").df()
        ratios = con.execute("select * from marts.misclassification_ratios").df()
    print(f"{accuracy[SLICE].drop_duplicates().shape[0]} slices; {len(accuracy):,} group_accuracy rows, "
          f"{len(ratios):,} misclassification_ratios rows")
    jobs = {"error_rate_ztests": (accuracy, proportions.pairwise_error_ztests),
            "misclassification_tests": (ratios, proportions.misclassification_tests)}
    for name, (frame, compute) in jobs.items():
        after = timed(f"{name}, all pairs at once (after)", lambda: all_slices(frame, compute))
        proportions.comparisons = per_pair_comparisons
        try:
            before = timed(f"{name}, a statsmodels call per pair (before)", lambda: all_slices(frame, compute))
        finally:
            proportions.comparisons = clustered.comparisons
        pd.testing.assert_frame_equal(after, before, rtol=1e-9, check_dtype=False)
        print(f"  {len(after):,} rows, equal")


if __name__ == "__main__":
    main()
