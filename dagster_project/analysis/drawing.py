"""Draw many figures at once on every core: a refresh of many slices draws hundreds of PNGs
(at 200 slices, ~1,000 figures took most of the refresh), and matplotlib draws on one core.

`draw_all` draws each (draw, frame, title, path) job -- in this process when there are few
(a spawned worker costs ~2 s of imports), else in a pool of spawned processes (not forked: the
Dagster run process holds threads and a DuckDB connection). Each figure is the same file
whichever way it is drawn (matplotlib's Agg output depends only on its inputs;
tests/test_drawing_pool.py compares the bytes)."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd

Draw = Callable[[pd.DataFrame, str, Path], Path]
DrawJob = tuple[Draw, pd.DataFrame, str, Path]
# Below this many figures per worker, a pool costs more than it saves.
FIGURES_PER_WORKER = 8
WORKERS_ENV = "FER_DRAWING_WORKERS"  # a cap (e.g. 1: never a pool); default: every core


def draw_all(jobs: Sequence[DrawJob]) -> list[Path]:
    """The path of each job's figure, in the jobs' order."""
    workers = min(len(jobs) // FIGURES_PER_WORKER, available_workers())
    if workers < 2:
        return [draw(frame, title, path) for draw, frame, title, path in jobs]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(_draw, jobs, chunksize=max(1, len(jobs) // (4 * workers))))


def available_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    cap = os.environ.get(WORKERS_ENV, "")
    return min(cores, int(cap)) if cap.isdigit() and int(cap) > 0 else cores


def _draw(job: DrawJob) -> Path:
    draw, frame, title, path = job
    return draw(frame, title, path)
