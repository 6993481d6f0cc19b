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
import re
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


# A configured grouping (statistics.groupings: 'age', an extra column, 'a*b') is a subset kind of
# its own, named as configured: its statistics write that name and lineage reads any grouping.
GROUPING_NAME = re.compile(r"[a-z][a-z0-9_]*(\*[a-z][a-z0-9_]*)?")


def check_subset_kinds(values: object) -> None:
    """Raise when a value ('' = unset) is neither a kind of the seed nor a grouping's name, or is
    a data column written in place of its kind ('true_emotion' for 'emotion'), naming the fix."""
    known = subset_kinds()
    columns = {by_column for kind, by_column in known.items() if by_column and by_column != kind}
    unknown = sorted({str(v) for v in values  # type: ignore[attr-defined]
                      if v not in ("", None) and v not in known
                      and (str(v) in columns or not GROUPING_NAME.fullmatch(str(v)))})
    if unknown:
        raise ValueError(f"subset_kind {unknown} not in inference/datasets/seeds/{SEED_FILE} (known: "
                         f"{', '.join(known)}) nor a grouping's name; write one of those (a data column's kind, not the "
                         f"column: {kind_of_column('true_emotion')!r} for 'true_emotion'), or add the kind to the "
                         f"seed so the SQL views can read it")


__all__ = ["SEED_FILE", "check_subset_kinds", "kind_of_column", "subset_kinds"]
