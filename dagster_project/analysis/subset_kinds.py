"""The one vocabulary of `subset_kind` values, shared by the statistics and the SQL views.

The dbt seed `subset_kinds.csv` (inference/datasets/seeds/, linked as dbt/seeds) lists every
kind with the data column it subsets by. Python reads the same file: `result_frame` refuses a
kind that is not in it, and a statistic that subsets by a data column (a mixed model's
by-factor `true_emotion`) writes that column's kind (`emotion`), never the column's name, so a
view filtering `subset_kind = 'emotion'` reads every per-emotion row. dbt tests the published
values and the papers views against the seed (relationships); tests/test_subset_kinds.py checks
every kind the SQL names is in it.
"""

from __future__ import annotations

import csv
from functools import lru_cache

from inference.datasets.labels import default_seeds_dir

SEED_FILE = "subset_kinds.csv"


@lru_cache(maxsize=1)
def subset_kinds() -> dict[str, str]:
    """{subset_kind: the data column it subsets by ('' when none)}, from the seed."""
    path = default_seeds_dir() / SEED_FILE
    with path.open(newline="") as handle:
        return {row["subset_kind"]: row["by_column"] for row in csv.DictReader(handle)}


def kind_of_column(column: str) -> str:
    """The subset_kind of rows that subset by the data column `column` ('true_emotion' -> 'emotion')."""
    for kind, by_column in subset_kinds().items():
        if by_column == column:
            return kind
    raise ValueError(f"no subset_kind subsets by column {column!r}: add a row '<kind>,{column},<meaning>' to "
                     f"inference/datasets/seeds/{SEED_FILE}")


def check_subset_kinds(values: object) -> None:
    """Raise when a value ('' = unset) is not a kind of the seed, naming it and the fix."""
    known = subset_kinds()
    unknown = sorted({str(v) for v in values if v not in ("", None) and v not in known})  # type: ignore[attr-defined]
    if unknown:
        raise ValueError(f"subset_kind {unknown} not in inference/datasets/seeds/{SEED_FILE} (known: "
                         f"{', '.join(known)}); write one of those, or add the kind to the seed so the SQL views "
                         f"can read it")


__all__ = ["SEED_FILE", "check_subset_kinds", "kind_of_column", "subset_kinds"]
