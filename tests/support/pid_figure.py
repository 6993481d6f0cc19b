"""A `draw` for tests/test_drawing_pool.py: writes the id of the process that drew it (importable
by a spawned worker, which a function defined in a test module is not always)."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def draw_pid(frame: pd.DataFrame, title: str, path: Path) -> Path:
    del frame, title
    path.write_text(str(os.getpid()))
    return path
