"""scripts/bench_pair_tests.py keeps the per-pair statsmodels calls the pair tests made before
(`per_pair_comparisons`) beside today's all-pairs-at-once ones, and checks both give the same
rows. Run at a tiny size on a warehouse with the two marts it reads, so a renamed column or a
changed test breaks here, not at the next hand-run benchmark. The timing itself is by hand."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_pair_tests.py"
KEYS = {"model": "m", "dataset": "d", "protocol": "single"}


def _marts(rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    accuracy, ratios = [], []
    for version, emotion in itertools.product(("1", "2"), ("anger", "sad", "all")):
        cells = {}
        for group in ("black", "east_asian", "white"):
            n = int(rng.integers(8, 60))
            cells[group] = n, int(rng.integers(0, n + 1)), float(max(1, n // 3)), float(rng.uniform(1, 2))
            accuracy.append({**KEYS, "model_version": version, "grouping": "race", "group_value": group,
                             "true_emotion": emotion, "n": n, "correct": cells[group][1],
                             "n_clusters": cells[group][2], "design_effect": cells[group][3]})
        for a, b in itertools.permutations(cells, 2):
            for predicted in ("disgust", "error"):
                (n_a, _, k_a, d_a), (n_b, _, k_b, d_b) = cells[a], cells[b]
                count_a, count_b = int(rng.integers(0, n_a // 2)), int(rng.integers(0, n_b // 2))
                ratio = (count_a / n_a) / (count_b / n_b) if count_b else np.nan
                ratios.append({**KEYS, "model_version": version, "grouping": "race", "true_emotion": emotion,
                               "predicted_emotion": predicted, "group_a": a, "group_b": b,
                               "n_a": n_a, "count_a": count_a, "rate_a": count_a / n_a,
                               "n_b": n_b, "count_b": count_b, "rate_b": count_b / n_b,
                               "ratio": ratio, "ci_low": ratio * 0.5, "ci_high": ratio * 2,
                               "cluster_ci_low": ratio * 0.4, "cluster_ci_high": ratio * 2.5,
                               "n_clusters_a": k_a, "n_clusters_b": k_b, "design_effect_a": d_a,
                               "design_effect_b": d_b})
    return pd.DataFrame(accuracy), pd.DataFrame(ratios)


def test_both_ways_run_and_agree_on_a_tiny_warehouse(tmp_path: Path, capsys) -> None:
    accuracy, ratios = _marts(np.random.default_rng(8))
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        con.execute("create schema marts")
        con.execute("create table marts.group_accuracy as select * from accuracy")
        con.execute("create table marts.misclassification_ratios as select * from ratios")
    spec = importlib.util.spec_from_file_location("bench_pair_tests", SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main([str(tmp_path)])
    printed = capsys.readouterr().out
    assert "2 slices" in printed
    assert printed.count("equal") == 2 and "(before)" in printed and "(after)" in printed
