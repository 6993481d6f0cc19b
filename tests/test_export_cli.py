"""`fer-warehouse export` through the command line (a subprocess, as a user runs it): a papers.*
table in the paper's own grid (CSV and booktabs LaTeX), a stats.* table as stored, clear errors."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]

# papers.tae_table2 as the dbt view stores it: one row per cell (model x emotion), ours and
# the paper's value side by side. Gemma matched (happy within rounding, fear outside it), the
# paper's LLaMA cell has no warehouse row, our mini_xception has no paper value.
PAPER_ROWS = [
    # model, version, published_model, subset, value, published_value, within_rounding, row_source
    ("gemma_sim", "sim-1", "Gemma3-4B", "happy", 0.9996, 1.000, True, "warehouse and paper"),
    ("gemma_sim", "sim-1", "Gemma3-4B", "fear", 0.90, 0.979, False, "warehouse and paper"),
    (None, None, "LLaMA-3.2-11B", "fear", None, 0.654, None, "paper only"),
    ("mini_xception", "v1", None, "happy", 0.574, None, None, "warehouse only"),
]


def _warehouse(path: Path) -> None:
    papers = pd.DataFrame(PAPER_ROWS, columns=["model", "model_version", "published_model", "subset", "value",
                                               "published_value", "within_rounding", "row_source"])
    papers = papers.assign(dataset=["tae", "tae", None, "london"], protocol="classify", subset_kind="emotion",
                           measure="accuracy", rounding_unit=0.001, published_relation="=",
                           published_dataset=["Tae", "Tae", "Tae", None])
    papers["within_rounding"] = papers["within_rounding"].astype("boolean")
    stats = pd.DataFrame({"model": ["m_a", "m_b"], "subset": ["black vs white", "a_b & c"], "n": [40, 12],
                          "estimate": [0.12345678, -0.5], "p_value": [0.0012, 0.5],
                          "detail": ['{"test": "z"}', "{}"]})
    con = duckdb.connect(str(path))
    for schema, name, frame in (("papers", "tae_table2", papers), ("stats", "error_rate_ztests", stats)):
        con.execute(f"create schema if not exists {schema}")
        con.register("frame", frame)
        con.execute(f"create table {schema}.{name} as select * from frame")
        con.unregister("frame")
    con.close()


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("export") / "warehouse.duckdb"
    _warehouse(path)
    return path


def _export(warehouse: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "FER_WAREHOUSE": str(warehouse), "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "dagster_project.cli", "export", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


def test_papers_table_exports_as_the_papers_grid_in_csv(warehouse):
    done = _export(warehouse, "papers.tae_table2")
    assert done.returncode == 0, done.stderr
    grid = pd.read_csv(io.StringIO(done.stdout), index_col=0, keep_default_na=False)
    # the paper's Table 2: emotions down, models across; ours / theirs, dagger outside rounding
    assert list(grid.index) == ["happy", "fear"]
    assert set(grid.columns) == {"Gemma3-4B = gemma_sim", "LLaMA-3.2-11B", "mini_xception"}
    assert grid.loc["happy", "Gemma3-4B = gemma_sim"] == "1.000 / 1.000"
    assert grid.loc["fear", "Gemma3-4B = gemma_sim"] == "0.900 / 0.979\u2020"
    assert grid.loc["fear", "LLaMA-3.2-11B"] == "- / 0.654"
    assert grid.loc["happy", "mini_xception"] == "0.574 / -"
    assert grid.loc["fear", "mini_xception"] == ""  # no cell on either side: blank, never <NA>
    assert "<NA>" not in done.stdout and "nan" not in done.stdout


def test_papers_table_exports_as_booktabs_latex_and_long_form(warehouse, tmp_path):
    out = tmp_path / "t2.tex"
    done = _export(warehouse, "papers.tae_table2", "--format", "latex", "--out", str(out))
    assert done.returncode == 0, done.stderr
    latex = out.read_text()
    for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}", "\\caption{"):
        assert rule in latex, rule
    assert "0.900 / 0.979\\textsuperscript{\\dag}" in latex
    assert "papers.tae\\_table2" in latex and "\u2020" not in latex
    long = _export(warehouse, "papers.tae_table2", "--long")
    rows = pd.read_csv(io.StringIO(long.stdout))
    assert len(rows) == len(PAPER_ROWS) and {"published_value", "within_rounding", "row_source"} <= set(rows)


def test_stats_table_exports_as_stored_and_latex_escapes(warehouse):
    csv = _export(warehouse, "stats.error_rate_ztests", "--format", "csv")
    assert csv.returncode == 0, csv.stderr
    rows = pd.read_csv(io.StringIO(csv.stdout))
    assert rows["estimate"].iloc[0] == pytest.approx(0.12345678) and "detail" in rows
    latex = _export(warehouse, "stats.error_rate_ztests", "--format", "latex").stdout
    assert "a\\_b \\& c" in latex and "0.1235" in latex and "\\toprule" in latex
    assert "detail" not in latex.split("\\caption")[1]  # JSON details stay in the CSV


def test_unknown_or_foreign_tables_fail_with_the_list_of_tables(warehouse):
    missing = _export(warehouse, "papers.no_such_table")
    assert missing.returncode == 2
    assert "no table 'papers.no_such_table'" in missing.stderr and "papers.tae_table2" in missing.stderr
    raw = _export(warehouse, "raw.predictions")
    assert raw.returncode == 2 and "schema one of papers, marts, stats" in raw.stderr
