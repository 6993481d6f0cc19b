"""Draw many figures at once on every core (on_cores.map_on_cores): a refresh of many slices
draws hundreds of PNGs (at 200 slices, ~1,000 figures took most of the refresh), and
matplotlib draws on one core. Each figure is the same file whichever way it is drawn
(matplotlib's Agg output depends only on its inputs; tests/test_drawing_pool.py compares the
bytes)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from dagster_project.analysis.on_cores import map_on_cores

Draw = Callable[[pd.DataFrame, str, Path], Path]
DrawJob = tuple[Draw, pd.DataFrame, str, Path]
# Below this many figures per worker, a pool costs more than it saves.
FIGURES_PER_WORKER = 8


def draw_all(jobs: Sequence[DrawJob]) -> list[Path]:
    """The path of each job's figure, in the jobs' order."""
    return map_on_cores(_draw, jobs, FIGURES_PER_WORKER)


def _draw(job: DrawJob) -> Path:
    draw, frame, title, path = job
    return draw(frame, title, path)
