"""A papers.* view (one row per table cell, dbt/models/papers/) back in the paper's own grid.

Rows and columns as the paper printed them (GRID_LAYOUTS, read off the seed texts), each cell
"ours / paper" with a mark (OFF_MARK) where our value lies outside the paper's rounding
(`within_rounding` false, computed in SQL by the macro compare_with_published). A cell the paper
has and we do not reads "- / paper"; one we have and the paper does not, "ours / -".

The "model" key is the paper's name for a model when a warehouse model matched it (seed
published_aliases), followed by ours ("GPT-4o = gpt4o@2024-08"); otherwise the name of
whichever side has it. Our version, dataset and protocol join the label only where the table
holds more than one of them for a model and they are not a key of the grid already, so a label
never repeats what every row says.

Pure: frames in, frames out; the HTML report, `fer-warehouse export` and LaTeX share it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

OFF_MARK = "\u2020"  # dagger: outside the paper's rounding
MISSING = "-"


@dataclass(frozen=True)
class Layout:
    rows: tuple[str, ...]
    columns: tuple[str, ...]


# Keys: "model" (the label above), dataset, method, prompting, subset, race, true_emotion,
# measure, dimension. Read off the papers as printed (../shared/seeds/*.txt).
GRID_LAYOUTS: dict[str, Layout] = {
    "chhua_table1": Layout(rows=("model", "prompting"), columns=("dataset", "method")),
    "chhua_table2": Layout(rows=("true_emotion",), columns=("model", "race")),
    "chhua_race_ztests": Layout(rows=("model", "subset"), columns=("measure",)),
    "tae_table1": Layout(rows=("model",), columns=("measure",)),
    "tae_table2": Layout(rows=("subset",), columns=("model",)),
    "tae_table3": Layout(rows=("model",), columns=("measure",)),
    "tae_table4": Layout(rows=("subset",), columns=("model",)),
    "tae_table5": Layout(rows=("model",), columns=("measure",)),
    "tae_table6": Layout(rows=("subset",), columns=("model", "measure")),
    "asanuma_confusion": Layout(rows=("model", "subset"), columns=("measure",)),
}
DEFAULT_LAYOUT = Layout(rows=("model", "subset"), columns=("measure",))
DISAMBIGUATORS = ("model_version", "dataset", "protocol")


def layout_for(table: str) -> Layout:
    """The grid of papers.<table> (`table` with or without the schema)."""
    return GRID_LAYOUTS.get(table.removeprefix("papers."), DEFAULT_LAYOUT)


def _digits(rounding_unit) -> int:
    """Decimals the paper printed (rounding_unit 0.001 -> 3); 3 where it is unknown."""
    if rounding_unit is None or pd.isna(rounding_unit) or rounding_unit <= 0:
        return 3
    return max(0, min(6, -math.floor(math.log10(rounding_unit) + 1e-9)))


def _number(value, digits: int) -> str:
    if value is None or pd.isna(value):
        return MISSING
    return f"{value:.{digits}f}"


def _cell_text(row: pd.Series) -> str:
    digits = _digits(row.get("rounding_unit"))
    ours = _number(row.get("value"), digits)
    theirs = _number(row.get("published_value"), digits)
    if row.get("published_relation") == "<" and theirs != MISSING:
        theirs = "< " + theirs
    off = row.get("within_rounding")
    mark = OFF_MARK if off is not None and not pd.isna(off) and not bool(off) else ""
    return f"{ours} / {theirs}{mark}"


def _text(series: pd.Series) -> pd.Series:
    return series.astype(object).where(series.notna(), "").astype(str)


def _split_subset(frame: pd.DataFrame) -> pd.DataFrame:
    """Cells only the paper has carry their keys in `subset` ('race|emotion'); fill the split
    columns (race, true_emotion) from it where the warehouse side left them empty."""
    if "subset" not in frame or not {"race", "true_emotion"} <= set(frame.columns):
        return frame
    parts = _text(frame["subset"]).str.split("|", n=1, expand=True).reindex(columns=[0, 1])
    return frame.assign(race=frame["race"].where(frame["race"].notna(), parts[0]),
                        true_emotion=frame["true_emotion"].where(frame["true_emotion"].notna(), parts[1]))


def _our_labels(frame: pd.DataFrame, keys: set[str]) -> pd.Series:
    """model, plus version / dataset / protocol where a model has several of them here and
    the grid does not already show them."""
    label = _text(frame["model"])
    for column in DISAMBIGUATORS:
        if column in keys or column not in frame:
            continue
        several = frame.groupby(label)[column].transform("nunique") > 1
        label = label.where(~several, label + " " + _text(frame[column]))
    return label


def model_labels(frame: pd.DataFrame, keys: set[str]) -> pd.Series:
    """The "model" key of each row (module docstring)."""
    ours = _our_labels(frame, keys)
    paper = _text(frame.get("published_model", pd.Series("", index=frame.index)))
    has_ours = frame["model"].notna()
    # a paper-only cell of a paper model matched elsewhere in the table goes in that model's row
    matched = pd.Series(ours[has_ours & (paper != "")].values, index=paper[has_ours & (paper != "")].values)
    single = matched.groupby(level=0).agg(lambda s: s.iloc[0] if s.nunique() == 1 else "")
    borrowed = paper.map(single).fillna("")
    return pd.Series([
        (f"{p} = {o}" if p and o and p != o else (o or p)) if has else (f"{p} = {b}" if b and b != p else p)
        for p, o, b, has in zip(paper, ours, borrowed, has_ours)
    ], index=frame.index)


def paper_grid(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """papers.<table> as the printed grid: index = the layout's rows, columns = its columns
    (a MultiIndex when there are two), cells "ours / paper" with OFF_MARK outside rounding."""
    layout = layout_for(table)
    if frame.empty:
        return pd.DataFrame()
    frame = _split_subset(frame.copy())
    if "dataset" in frame and "published_dataset" in frame:  # the paper's spelling where it has one
        frame["dataset"] = frame["published_dataset"].where(frame["published_dataset"].notna(), frame["dataset"])
    keys = set(layout.rows) | set(layout.columns)
    frame["model"] = model_labels(frame, keys)
    for key in keys - {"model"}:
        frame[key] = _text(frame[key]) if key in frame else ""
    frame["cell"] = frame.apply(_cell_text, axis=1)
    grid = frame.pivot_table(index=list(layout.rows), columns=list(layout.columns), values="cell",
                             aggfunc="; ".join, sort=False)
    return grid.fillna("")


def has_difference_outside_rounding(frame: pd.DataFrame) -> int:
    """How many cells differ from the paper by more than its rounding."""
    if "within_rounding" not in frame:
        return 0
    return int((frame["within_rounding"].astype("boolean") == False).sum())  # noqa: E712 - NA stays out


GRID_NOTE = (f"each cell: ours / the paper's value, at the paper's precision; {OFF_MARK} = ours differs "
             f"by more than the paper's rounding; {MISSING} = that side has no value")
