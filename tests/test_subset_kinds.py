"""One vocabulary of subset kinds for the statistics (Python) and the views (SQL): the seed
subset_kinds.csv. papers.tae_table6 once filtered `subset_kind = 'emotion'` while the mixed
model wrote its by-factor's name 'true_emotion', so no Table 6 cell showed a warehouse value."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from dagster_project.analysis import dimensional, response_style
from dagster_project.analysis.mixed_models import rating_mixed_models
from dagster_project.analysis.results import result_frame, result_row
from dagster_project.analysis.subset_kinds import kind_of_column, subset_kinds
from tests.test_lmm_contrasts import _ratings

DBT = Path(__file__).resolve().parents[1] / "dbt"
# subset_kind = 'x', subset_kind in ('x', 'y'), 'x' as subset_kind
_FILTER = re.compile(r"subset_kind\s*(?:=|<>|!=)\s*'([^']*)'|subset_kind\s+in\s*\(([^)]*)\)", re.I)
_CONSTANT = re.compile(r"'([^']*)'\s+as\s+subset_kind", re.I)


def sql_subset_kinds() -> dict[str, set[str]]:
    """{file: the subset kinds its SQL names} over dbt models and macros."""
    found: dict[str, set[str]] = {}
    for path in [*DBT.glob("models/**/*.sql"), *DBT.glob("macros/**/*.sql")]:
        text = path.read_text()
        kinds = set()
        for single, listed in _FILTER.findall(text):
            kinds |= {single} if single else set(re.findall(r"'([^']*)'", listed))
        kinds |= set(_CONSTANT.findall(text))
        if kinds:
            found[str(path.relative_to(DBT))] = kinds
    return found


def test_every_kind_the_sql_names_is_in_the_vocabulary():
    named = sql_subset_kinds()
    assert "models/papers/tae_table6.sql" in named and "emotion" in named["models/papers/tae_table6.sql"]
    unknown = {file: kinds - set(subset_kinds()) for file, kinds in named.items() if kinds - set(subset_kinds())}
    assert not unknown, unknown


def test_the_mixed_model_writes_the_kind_the_table6_view_reads():
    humans, models = _ratings({"angry": 0.5, "happy": 0.0, "sad": -1.0}, per_emotion=16, raters_per_image=3)
    table = rating_mixed_models(humans, models, min_n=5, per_model=True)
    written = set(table["subset_kind"])
    assert written <= set(subset_kinds()), written - set(subset_kinds())
    effects = table[table["analysis"] == "mixed_model_simple_effect"]
    by_formula = effects.groupby("measure")["subset_kind"].agg(set).to_dict()
    # the emotion formula's effects are per emotion; the demographic one's per race and gender
    assert by_formula == {"emotion": {"emotion"}, "demographic": {"race", "gender"}}, by_formula
    assert "emotion" in sql_subset_kinds()["models/papers/tae_table6.sql"]


def test_other_statistics_write_vocabulary_kinds():
    humans, models = _ratings({"angry": 0.5, "happy": 0.0, "sad": -1.0}, per_emotion=12, raters_per_image=3)
    frames = [dimensional.dimensional_agreement(models, humans, min_n=5),
              dimensional.wilcoxon_by_emotion(models, humans, min_n=5),
              response_style.response_style(models, humans, None, min_n=5)]
    written = set().union(*(set(frame["subset_kind"]) for frame in frames if len(frame)))
    assert {"all", "emotion"} <= written <= set(subset_kinds())


def test_a_kind_outside_the_vocabulary_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"true_emotion.*subset_kinds\.csv"):
        result_frame([result_row(analysis="x", subset_kind="true_emotion", subset="fear", n=3)], 1)
    assert kind_of_column("true_emotion") == "emotion" and kind_of_column("race") == "race"
    with pytest.raises(ValueError, match="subset_kinds.csv"):
        kind_of_column("hair_colour")
    # an empty frame and unset kinds pass
    assert len(result_frame([], 1)) == 0 and isinstance(result_frame([result_row(analysis="x")], 1), pd.DataFrame)
