"""The HTML report (issue 11): built from small frames (pure function), opened in headless
Chromium offline; and the report the demo wrote from the session warehouse."""

from __future__ import annotations

from html import unescape
import re
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest

from dagster_project.analysis import figures
from dagster_project.analysis.agreement import categorical_agreement
from dagster_project.analysis.proportions import pairwise_error_ztests
from dagster_project.analysis.report import Figure, Settings, render_report, result_table
from stats_support import group_accuracy, grouped_answers
from tests.support.browser import artifacts_dir, chromium_page

EMOTIONS = ["anger", "happy", "neutral", "sad"]


def _answers(n: int = 240, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    truth = rng.choice(EMOTIONS, n)
    race = rng.choice(["black", "white"], n)
    right = rng.random(n) < np.where(race == "black", 0.55, 0.8)
    return pd.DataFrame({
        "model": "m<script>alert(1)</script>", "model_version": "v1", "dataset": "d", "protocol": "classify",
        "image_id": [f"i{k}" for k in range(n)], "identity": [f"p{k // 2}" for k in range(n)], "race": race,
        "gender": rng.choice(["female", "male"], n), "true_emotion": truth,
        "predicted_emotion": np.where(right, truth, rng.choice(EMOTIONS, n)), "answer_status": "answered",
    })


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> tuple[dict, Figure]:
    """Tables and one figure of a 240-image answer set (built once: matplotlib and the
    statistics are the slow part)."""
    grouped = grouped_answers(_answers())
    accuracy = group_accuracy(grouped)
    tables = {
        "marts.group_accuracy": accuracy,
        "stats.categorical_agreement": categorical_agreement(grouped, accuracy, bootstrap_resamples=50),
        "stats.error_rate_ztests": pairwise_error_ztests(accuracy, min_n=5),
    }
    pooled = accuracy[(accuracy["true_emotion"] == "all") & (accuracy["n"] > 0)]
    png = figures.forest_plot_png(pooled, "error rate", tmp_path_factory.mktemp("fig") / "forest.png")
    return tables, Figure(png.name, png.read_bytes())


def _small_report(small, papers: bool = False) -> tuple[str, dict]:
    tables, figure = small
    tables = dict(tables)
    if papers:
        tables["papers.chhua_table1"] = pd.DataFrame({
            "model": ["m"], "method": ["single"], "value": [0.71], "published_value": [0.69], "difference": [0.02]})
    html = render_report(tables, [figure], Settings(min_cell_n=5), generated_at="2026-01-01 00:00 UTC",
                         source="test frames")
    return html, tables


def test_report_from_small_frames_has_tables_notes_and_escapes(small):
    html, tables = _small_report(small)
    # the method notes: families (with m), intervals, denominators
    for text in ("Families", "m = the tests of a family", "Wilson score", "percentile bootstrap",
                 "intent-to-treat", "min_cell_n = 5", "holm within the family"):
        assert text in html, text
    # each table named, numbers from the frames
    for key in tables:
        assert key in html
    kappa = tables["stats.categorical_agreement"].query("measure == 'cohen_kappa' and subset_kind == 'all'").iloc[0]
    assert f"{kappa.estimate:.3f} [{kappa.ci_low:.3f}, {kappa.ci_high:.3f}]" in html
    # a value from the data cannot inject markup; nothing is fetched from outside the file
    assert "<script>" not in html and "m&lt;script&gt;" in html
    assert "http://" not in html and "https://" not in html
    assert html.count("data:image/png;base64,") == 1
    assert "Seed papers" not in html  # no papers.* tables: no section


def test_papers_section_appears_with_published_values(small):
    html, _ = _small_report(small, papers=True)
    assert "Seed papers" in html and "papers.chhua_table1" in html
    # issue 25: the paper's grid, ours / the paper's value in one cell (3 decimals: no rounding unit given)
    assert "0.710 / 0.690" in html and "outside the paper" in html


def test_result_table_puts_adjusted_tests_first_and_says_what_it_cut():
    frame = pd.DataFrame({
        "model": "m", "model_version": "v", "dataset": "d", "protocol": "p", "subset_kind": "race",
        "subset": ["a", "b", "c"], "measure": "z", "n": [50, 50, 3], "estimate": [0.1, 0.2, 0.3],
        "ci_low": np.nan, "ci_high": np.nan, "statistic": np.nan, "p_value": [0.0, 0.04, 0.001],
        "p_adjusted": [np.nan, 0.04, 0.002], "correction": ["", "holm", "holm"], "family": ["", "f", "f"],
        "family_m": pd.array([pd.NA, 2, 2], dtype="Int64"), "below_min_n": [False, False, True], "detail": "{}",
    })
    shown, note = result_table(frame, max_rows=2)
    assert list(shown["subset"]) == ["c", "b"]  # adjusted p 0.002, 0.04; the unadjusted row is cut
    assert list(shown["significant (alpha 0.05)"]) == ["n < min", "yes"]
    assert list(shown["family (m)"]) == ["f (m=2)", "f (m=2)"]
    assert note.startswith("2 of 3 rows shown")


def _open_offline(path: Path, shot: str) -> dict:
    """Open the file in headless Chromium; every request it makes, image sizes, screenshot."""
    requests: list[str] = []
    with chromium_page() as page:
        page.on("request", lambda request: requests.append(request.url))
        page.goto(path.resolve().as_uri(), wait_until="load")
        sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
        headings = page.eval_on_selector_all("[id]", "hs => hs.map(h => h.id)")
        page.screenshot(path=str(artifacts_dir("html_report") / shot), full_page=False)
    return {"requests": requests, "sizes": sizes, "headings": headings}


def test_small_report_opens_offline_in_chromium_with_its_figures(small, tmp_path):
    html, _ = _small_report(small)
    path = tmp_path / "report.html"
    path.write_text(html, encoding="utf-8")
    seen = _open_offline(path, "small_report.png")
    assert seen["sizes"] and all(done and width > 0 for done, width in seen["sizes"])
    leaving = [url for url in seen["requests"] if not url.startswith(("file:", "data:"))]
    assert leaving == []
    assert "stats.categorical_agreement" in seen["headings"]


@pytest.mark.usefixtures("demo")
def test_demo_writes_the_report_and_it_opens_offline(tmp_path):
    from dagster_project.cli import main
    from dagster_project.reporting import report_path
    from dagster_project.settings import benchmark_config

    cfg = benchmark_config()
    written = report_path(cfg)  # by reports/html_report in the demo's cross-slice refresh
    assert written.is_file()
    pngs = sorted(cfg.reports_dir.glob("*.png"))
    seen = _open_offline(written, "demo_report.png")
    assert len(seen["sizes"]) == len(pngs) > 0
    assert all(done and width > 0 for done, width in seen["sizes"])
    assert [url for url in seen["requests"] if not url.startswith(("file:", "data:"))] == []
    assert {"stats.categorical_agreement", "stats.error_rate_ztests", "stats.mcnemar_tests"} <= set(seen["headings"])
    # the command writes the same report from a snapshot, wherever it is told
    out = tmp_path / "cli.html"
    assert main(["report", "--out", str(out)]) == 0
    assert out.stat().st_size > 0 and "marts.group_accuracy" in out.read_text()
    # and with every figure linked and one row a table: the links reach the files from elsewhere
    lean = tmp_path / "elsewhere" / "lean.html"
    assert main(["report", "--out", str(lean), "--inline-mb", "0", "--max-rows", "1"]) == 0
    page = lean.read_text()
    hrefs = re.findall(r'<li><a href="([^"]+\.png)">', page)
    assert "data:image/png" not in page and len(hrefs) == len(pngs)
    assert {(lean.parent / unquote(href)).resolve() for href in hrefs} == {p.resolve() for p in pngs}
    assert 'every row: fer-warehouse sql "select * from stats.error_rate_ztests"' in unescape(page)


def _png_files(folder: Path, sizes: dict[str, int]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, size in sizes.items():
        (folder / name).write_bytes(b"\x89PNG" + bytes(size - 4))


def test_figures_past_the_budget_are_linked_comparisons_first(tmp_path):
    """A refresh of 200 slices left 2,800 figures (405 MB): inlined whole the report was 1.67 GB.
    The report inlines a prefix of the figures up to its budget, figures across slices first,
    and links the rest relative to where the report is written."""
    from dagster_project.reporting import read_figures

    figures_dir = tmp_path / "reports"
    _png_files(figures_dir, {"forest__m__v1__d__classify.png": 600, "forest__m__v2__d__classify.png": 600,
                             "strength_inversion__d.png": 600, "b_confusion__m__v1__d__classify.png": 600})
    found = read_figures(figures_dir, tmp_path / "out", inline_mb=1500 / 2**20)
    assert [f.name for f in found] == ["strength_inversion__d.png", "b_confusion__m__v1__d__classify.png",
                                       "forest__m__v1__d__classify.png", "forest__m__v2__d__classify.png"]
    assert [f.png is not None for f in found] == [True, True, False, False]  # 1,200 of 1,500 bytes, then cut
    assert found[2].href == "../reports/forest__m__v1__d__classify.png"
    assert all(f.png is not None for f in read_figures(figures_dir, inline_mb=None))
    html = render_report({}, found, Settings())
    assert html.count("data:image/png;base64,") == 2
    assert '2 more figures, linked' in html and 'href="../reports/forest__m__v2__d__classify.png"' in html


def test_tables_past_max_rows_name_the_sql_for_the_rest():
    frame = pd.DataFrame({
        "model": "m", "model_version": "v", "dataset": "d", "protocol": "p", "grouping": "race", "true_emotion": "all",
        "group_a": "black", "group_b": "white", "p_value": np.linspace(0.001, 0.5, 30), "detail": "{}"})
    html = render_report({"stats.error_rate_ztests": frame}, [], Settings(), max_rows=10)
    section = html.split('id="stats.error_rate_ztests"')[1].split("</details>")[0]
    assert section.count("<tr") == 11  # the header and 10 rows
    assert "10 of 30 rows shown" in section
    assert 'every row: fer-warehouse sql &#34;select * from stats.error_rate_ztests&#34;' in section
    assert "every row: fer-warehouse" not in render_report({"stats.error_rate_ztests": frame}, [], Settings())


def test_api_cost_section_shows_each_runs_cost_per_tier():
    costs = pd.DataFrame({
        "model": ["gpt"] * 3, "model_version": ["v1"] * 3, "dataset": ["faces"] * 3, "run_id": ["r1"] * 3,
        "service_tier": ["all", "flex", "standard"], "n_answers": [12, 10, 2], "input_tokens": [1200, 1000, 200],
        "output_tokens": [24, 20, 4], "cost_usd": [0.00217, 0.00135, 0.00082]})
    html = render_report({"marts.run_costs": costs}, [], Settings(min_cell_n=5))
    section = html.split('id="costs"')[1].split("<h2")[0]
    assert "marts.run_costs" in section and "0.0014" in section and "0.0022" in section
    assert section.count("<tr>") == 3  # one body row per tier and the total
    assert "no rows" in render_report({}, [], Settings(min_cell_n=5)).split('id="costs"')[1].split("<h2")[0]
