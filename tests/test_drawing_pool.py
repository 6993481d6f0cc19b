"""Many figures are drawn on every core (drawing.draw_all): in worker processes, in the jobs'
order, and each file byte for byte the one drawn in this process."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from dagster_project.analysis import figures
from dagster_project.analysis.drawing import FIGURES_PER_WORKER, draw_all
from dagster_project.analysis.on_cores import WORKERS_ENV, available_workers
from tests.support.pid_figure import draw_pid

EMOTIONS = ["anger", "happy", "neutral", "sad"]


def _counts(seed: int) -> pd.DataFrame:
    rows = [{"true_emotion": t, "predicted_emotion": p, "n": (seed * 7 + i * 3 + j) % 11}
            for i, t in enumerate(EMOTIONS) for j, p in enumerate(EMOTIONS)]
    return pd.DataFrame(rows)


def _jobs(out: Path, n: int):
    return [(figures.confusion_matrix_png, _counts(k), f"slice {k}", out / f"confusion_{k:02d}.png") for k in range(n)]


@pytest.fixture()
def two_workers(monkeypatch):
    if available_workers() < 2:
        pytest.skip("one core: draw_all never starts a pool here")
    monkeypatch.setenv(WORKERS_ENV, "2")


def test_many_figures_are_drawn_in_workers_in_order(tmp_path: Path, two_workers) -> None:
    n = 2 * FIGURES_PER_WORKER
    jobs = [(draw_pid, pd.DataFrame(), f"{k}", tmp_path / f"pid_{k:02d}.txt") for k in range(n)]
    paths = draw_all(jobs)
    assert paths == [job[3] for job in jobs]
    pids = {int(path.read_text()) for path in paths}
    assert os.getpid() not in pids and len(pids) >= 1


def test_a_figure_drawn_in_a_worker_is_the_same_file(tmp_path: Path, two_workers, monkeypatch) -> None:
    n = 2 * FIGURES_PER_WORKER
    pooled = draw_all(_jobs(tmp_path / "pool", n))
    monkeypatch.setenv(WORKERS_ENV, "1")
    here = draw_all(_jobs(tmp_path / "here", n))
    assert [p.name for p in pooled] == [p.name for p in here]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(pooled, here))


def test_few_figures_are_drawn_here(tmp_path: Path, two_workers) -> None:
    jobs = [(draw_pid, pd.DataFrame(), "", tmp_path / f"pid_{k}.txt") for k in range(FIGURES_PER_WORKER)]
    assert {int(path.read_text()) for path in draw_all(jobs)} == {os.getpid()}
