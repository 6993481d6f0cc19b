"""Many independent pure jobs on every core: a refresh of many slices computes hundreds of
per-slice statistics and draws hundreds of figures, and pandas, statsmodels and matplotlib
each use one core.

`map_on_cores(fn, items, per_worker)` is `[fn(item) for item in items]`, in that order --
in this process when there are too few items to pay for workers (a spawned worker costs ~2 s
of imports), else in a pool of spawned processes (not forked: the Dagster run process holds
threads and a DuckDB connection). The pool is kept for the life of the process, so the many
assets of one run start their workers once. `fn` must be a module-level function; each
result is the same whichever way it is computed (the jobs are pure: tests/test_drawing_pool.py
and tests/test_stats_on_cores.py compare them).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from typing import TypeVar

WORKERS_ENV = "FER_WORKERS"  # a cap (e.g. 1: never a pool); default: every core

Item = TypeVar("Item")
Result = TypeVar("Result")
_pools: dict[int, ProcessPoolExecutor] = {}


def map_on_cores(fn: Callable[[Item], Result], items: Sequence[Item], per_worker: int) -> list[Result]:
    """fn of each item, in order; on up to every core when there are at least 2 x per_worker items."""
    workers = min(len(items) // max(per_worker, 1), available_workers())
    # a daemonic process (e.g. a pool worker of a task queue) may not start processes of its own
    if workers < 2 or multiprocessing.current_process().daemon:
        with one_blas_thread():  # as in a worker: the same arithmetic, whichever way it runs
            return [fn(item) for item in items]
    pool = _pool(workers)
    try:
        return list(pool.map(fn, items, chunksize=max(1, len(items) // (4 * workers))))
    except BrokenProcessPool:  # a worker died (killed, out of memory): the next call starts anew
        _pools.pop(workers, None)
        raise


def available_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cap = os.environ.get(WORKERS_ENV, "")
    return min(cores, int(cap)) if cap.isdigit() and int(cap) > 0 else cores


def _pool(workers: int) -> ProcessPoolExecutor:
    if workers not in _pools:
        _pools[workers] = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                              initializer=_start_worker)
    return _pools[workers]


# OpenBLAS reads these when it is loaded; threadpoolctl limits the copies already loaded.
BLAS_THREADS_ENV = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS (numpy's and scipy's OpenBLAS) on one thread inside the block. The jobs are many small
    fits (a GEE solves a 7 x 7 system per identity), where BLAS threads only wait on each other,
    and one worker per core is already the parallelism: a slice's correctness GEEs took 0.88 s of
    CPU with OpenBLAS's 2 threads and 0.62 s with one at 10,000 images (6.3 and 5.7 s at 100,000),
    in the same wall time when alone; with a worker on each core the spare thread's CPU is the
    other worker's. A job computes the same way in a worker and here, so its rows do not depend on
    where it ran."""
    # threadpoolctl limits the libraries loaded when the block starts: load both OpenBLAS copies
    # first, so a job's own first import of scipy does not bring in an unlimited one
    import numpy  # noqa: F401
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _start_worker() -> None:
    """A pool worker's BLAS on one thread for its life (one_blas_thread's reasons): the
    environment for the libraries it loads later, threadpoolctl for any already loaded."""
    for name in BLAS_THREADS_ENV:
        os.environ[name] = "1"
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


@atexit.register
def shutdown() -> None:
    """Stop the workers (also at exit: a run worker's pool ends with it)."""
    while _pools:
        _pools.popitem()[1].shutdown(wait=True, cancel_futures=True)
