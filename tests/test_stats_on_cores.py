"""A run of many slices computes each statistic on every core (on_cores.map_on_cores from
defs/statistics.computed_in_batches): each slice's rows computed in a worker process are the
rows computed in the run's own process -- for every per-slice statistic, on the demo's slices
(real answers, human ratings, numeric model answers)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from dagster_project.analysis import slice_stats
from dagster_project.analysis.inputs import load_inputs
from dagster_project.analysis.on_cores import WORKERS_ENV, available_workers, map_on_cores
from dagster_project.defs.statistics import stats_computations
from dagster_project.settings import benchmark_config
from inference import warehouse


def _pid(_item: int) -> int:
    return os.getpid()


@pytest.fixture()
def two_workers(monkeypatch):
    if available_workers() < 2:
        pytest.skip("one core: map_on_cores never starts a pool here")
    monkeypatch.setenv(WORKERS_ENV, "2")


def test_many_items_go_to_workers_in_order_few_stay_here(two_workers) -> None:
    assert map_on_cores(abs, list(range(-20, 0)), per_worker=4) == list(range(20, 0, -1))
    assert os.getpid() not in set(map_on_cores(_pid, list(range(16)), per_worker=4))
    assert set(map_on_cores(_pid, list(range(7)), per_worker=4)) == {os.getpid()}  # < 2 workers' worth


def _blas_threads(_item: int) -> int:
    """The most threads any loaded BLAS (numpy's, scipy's OpenBLAS) would use here."""
    import numpy  # noqa: F401 - loads numpy's OpenBLAS
    import scipy.linalg  # noqa: F401 - and scipy's
    from threadpoolctl import threadpool_info

    return max(info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas")


def test_jobs_run_with_one_blas_thread_in_workers_and_here(two_workers) -> None:
    """One worker per core is the parallelism: a job's BLAS keeps to one thread, in a worker
    and in this process alike (so a job computes the same way wherever it runs), and this
    process's BLAS threads are its own again afterwards."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=2, user_api="blas"):  # this process as a 2-core machine starts
        assert _blas_threads(0) == 2
        assert set(map_on_cores(_blas_threads, list(range(16)), per_worker=4)) == {1}  # workers
        assert map_on_cores(_blas_threads, [0], per_worker=4) == [1]  # here
        assert _blas_threads(0) == 2


@pytest.mark.usefixtures("demo")
def test_each_statistic_computed_in_workers_equals_the_one_computed_here(two_workers) -> None:
    cfg = benchmark_config()
    con = warehouse.connect(cfg.warehouse, read_only=True)
    try:
        computations = stats_computations()
        # each statistic's own frames, as its asset reads them (the others NotLoaded: sent too)
        inputs = {table: load_inputs(con, only=reads) for table, (_, _, reads) in computations.items()}
        # two slices of the dataset with human ratings (every statistic has rows there)
        keys = con.execute("select distinct model, model_version, dataset from intermediate.int_final_answers "
                           "where dataset in (select dataset from intermediate.int_human_ratings_labeled) "
                           "order by all limit 2").fetchall()
    finally:
        con.close()
    assert len(keys) == 2 and inputs["rater_reliability"].has_ratings
    assert {"misclassification_tests", "categorical_agreement", "mixed_models", "rater_reliability"} <= set(computations)
    for table, (compute, needs_ratings, _) in computations.items():
        jobs = [(compute, inputs[table].of_slice(*key), cfg.statistics, needs_ratings) for key in keys]
        here = [slice_stats.compute_slice(job) for job in jobs]
        there = map_on_cores(slice_stats.compute_slice, jobs, per_worker=1)
        assert any(len(rows) for rows, _ in here), table
        for key, (rows, note), (rows_there, note_there) in zip(keys, here, there):
            assert note == note_there, (table, key)
            pd.testing.assert_frame_equal(rows, rows_there, obj=f"stats.{table} {key}")
