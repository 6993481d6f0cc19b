"""The report's summary page (issue 25): per slice the largest disparities that survive the
correction, accuracy by group (people beside the model, small groups in a note), what changed
since the previous version; the papers' grids without <NA>; and in Chromium the first screen
of a laptop shows the summary (screenshot in test-artifacts/report/)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dagster_project.analysis.paper_grid import paper_grid
from dagster_project.analysis.proportions import pairwise_error_ztests
from dagster_project.analysis.regression_gate import regression_gate
from dagster_project.analysis.report import Settings, render_report
from dagster_project.analysis.report_summary import slice_summaries
from dagster_project.analysis.worst_subgroup import worst_subgroups
from stats_support import group_accuracy, grouped_answers
from tests.support.browser import artifacts_dir, chromium_page

EMOTIONS = ["anger", "happy", "neutral", "sad"]
LAPTOP = (1366, 768)


def _answers(version: str, black_right: float, n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Black faces read right with `black_right`, white with 0.85; 3 images of a tiny group."""
    rng = np.random.default_rng(seed)
    truth = rng.choice(EMOTIONS, n)
    race = np.array(["black", "white"] * (n // 2))
    race[:3] = "other"  # below min_cell_n
    right = rng.random(n) < np.where(race == "black", black_right, 0.85)
    return pd.DataFrame({
        "model": "mx", "model_version": version, "dataset": "d", "protocol": "classify",
        "image_id": [f"i{k}" for k in range(n)], "race": race, "gender": rng.choice(["female", "male"], n),
        "true_emotion": truth, "predicted_emotion": np.where(right, truth, "sad"), "answer_status": "answered",
    })


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    # v1: the same error rate for both races (seed 2: no test survives by chance); v2: black faces worse
    answers = pd.concat([_answers("v1", 0.85, seed=2), _answers("v2", 0.35, seed=1)], ignore_index=True)
    accuracy = group_accuracy(grouped_answers(answers, ("race", "gender")))
    people = accuracy[accuracy["model_version"] == "v1"].assign(model="human", model_version="raters",
                                                                accuracy=0.91, ci_low=0.88, ci_high=0.94)
    ztests = pairwise_error_ztests(accuracy, groupings=("race", "gender"), min_n=10)
    worst = pd.concat([worst_subgroups(part, alpha=0.05, min_n=10)
                       for _, part in ztests.groupby("model_version")], ignore_index=True)
    order = pd.DataFrame({"model": "mx", "model_version": ["v1", "v2"],
                          "first_evaluated": pd.to_datetime(["2026-01-01", "2026-02-01"])})
    return {"marts.group_accuracy": pd.concat([accuracy, people], ignore_index=True),
            "stats.error_rate_ztests": ztests, "stats.worst_subgroups": worst, "raw.version_order": order}


def test_summary_leads_with_worst_subgroups_and_its_family(tables):
    v2 = [s for s in slice_summaries(tables, alpha=0.05, min_cell_n=10) if "v2" in s.title][0]
    worst = tables["stats.worst_subgroups"].query("model_version == 'v2' and rank == 1").iloc[0]
    top = v2.disparities.iloc[0]
    assert top["worse vs better group"] == worst.subset == "black vs white"
    assert top["difference [95 % CI]"] == f"{worst.estimate:.3f} [{worst.ci_low:.3f}, {worst.ci_high:.3f}]"
    assert top["family (m)"] == f"fdr_bh over the slice (m={worst.family_m})" and top["n"] == worst.n
    assert "stats.worst_subgroups" in v2.disparity_note and "other" not in " ".join(v2.disparities.iloc[:, 0])


def test_summary_falls_back_to_ztests_and_says_when_nothing_survives(tables):
    without = {k: v for k, v in tables.items() if k != "stats.worst_subgroups"}
    v1, v2 = sorted(slice_summaries(without, alpha=0.05, min_cell_n=10), key=lambda s: s.title)
    assert "stats.error_rate_ztests" in v2.disparity_note and len(v2.disparities)
    z = tables["stats.error_rate_ztests"].query("model_version == 'v2' and p_adjusted < 0.05 and not below_min_n")
    hit = z.loc[z["difference"].abs().idxmax()]  # the largest surviving difference leads
    top = v2.disparities.iloc[0]
    assert top["groups (a vs b)"] == f"{hit.group_a} vs {hit.group_b}" and top["true emotion"] == hit.true_emotion
    assert top["difference [95 % CI]"].startswith(f"{hit.difference:.3f} [")
    assert top["family (m)"] == f"{hit.correction}: {hit.family} (m={hit.family_m})"
    assert v1.disparity_note.startswith("no disparity survives the correction") and v1.disparities.empty


def test_groups_people_small_groups_and_the_change_since_the_previous_version(tables):
    v1, v2 = sorted(slice_summaries(tables, alpha=0.05, min_cell_n=10), key=lambda s: s.title)
    assert "other" not in set(v2.groups["group"]) and "race other (n=3)" in v2.small_groups_note
    people = tables["marts.group_accuracy"].query("model == 'human' and true_emotion == 'all'").set_index("group_value")
    assert list(v2.groups["people, same images [95 % CI] (n)"]) == [
        f"0.910 [0.880, 0.940] ({people.loc[g, 'n']})" for g in v2.groups["group"]]
    assert v1.change_note.startswith("first evaluated version")
    gate = regression_gate(tables["marts.group_accuracy"], model="mx", new_version="v2", previous_version="v1",
                           min_n=10)
    assert v2.change_note.startswith("since v1: accuracy") and gate.summary() in v2.change_note
    assert not gate.passed and len(v2.changes) == len(gate.offenders)
    assert "black vs white" in set(v2.changes["groups (a vs b)"])


def test_paper_grid_shows_the_printed_layout_without_na():
    frame = pd.DataFrame({
        "model": ["gemma", None], "model_version": ["1", None], "dataset": ["tae", None], "protocol": "p",
        "subset_kind": "emotion", "subset": ["fear", "happy"], "measure": "accuracy", "value": [0.5, np.nan],
        "published_model": ["Gemma3-4B", "Gemma3-4B"], "published_dataset": "Tae", "published_value": [0.979, 1.0],
        "published_relation": "=", "rounding_unit": 0.001, "within_rounding": pd.array([False, pd.NA], "boolean"),
    })
    grid = paper_grid(frame, "papers.tae_table4")  # emotions down, models across
    assert list(grid.index) == ["fear", "happy"] and list(grid.columns) == ["Gemma3-4B = gemma"]
    assert list(grid.iloc[:, 0]) == ["0.500 / 0.979\u2020", "- / 1.000"]
    html = render_report({"papers.tae_table4": frame}, [], Settings())
    assert "&lt;NA&gt;" not in html and "<NA>" not in html and "0.500 / 0.979\u2020" in html


def test_first_laptop_screen_shows_the_summary(tables, tmp_path):
    path = tmp_path / "report.html"
    path.write_text(render_report(tables, [], Settings(min_cell_n=10), generated_at="test", source="frames"))
    with chromium_page(LAPTOP) as page:
        page.goto(path.resolve().as_uri(), wait_until="load")
        summary = page.locator("#summary")
        first_table = summary.locator("table").first
        seen = {"summary": summary.bounding_box(), "table": first_table.bounding_box(),
                "heading": page.locator("#summary h3").first.inner_text(),
                "heading_box": page.locator("#summary h3").first.bounding_box(),
                "note_box": summary.locator("p.note", has_text="survives").first.bounding_box(),
                "details_open": page.eval_on_selector_all("details[open]", "ds => ds.length")}
        page.screenshot(path=str(artifacts_dir("report") / "first_screen.png"), full_page=False)
    assert seen["summary"]["y"] < 200  # right under the title
    table = seen["table"]
    assert table["y"] + table["height"] <= LAPTOP[1] and table["x"] + table["width"] <= LAPTOP[0]
    assert seen["heading"] == "mx v1 on d (classify)" and seen["heading_box"]["y"] < LAPTOP[1] / 2
    assert seen["note_box"]["y"] + seen["note_box"]["height"] <= LAPTOP[1]  # the disparity verdict is on screen
    assert seen["details_open"] == 0  # the full tables wait, collapsed, below


def test_ratio_forest_labels_drop_the_repeated_model_and_small_groups_stay_out():
    from dagster_project.analysis.stat_figures import ratio_forest_rows, without_small_groups
    tests = pd.DataFrame({"model": "mx", "subset": ["black vs white", "other vs white"], "estimate": [2.0, np.inf],
                          "ci_low": [1.2, np.nan], "ci_high": [3.3, np.nan], "count_a": [20, 2], "n_a": [100, 2],
                          "count_b": [10, 0], "n_b": [100, 100], "family_m": 2, "below_min_n": [False, True]})
    drawable, left_out = without_small_groups(tests)
    assert list(drawable["subset"]) == ["black vs white"] and left_out == 1
    assert list(ratio_forest_rows(drawable)["label"]) == ["black vs white"]  # one model: not repeated
    two = pd.concat([tests, tests.assign(model="other")], ignore_index=True)
    assert ratio_forest_rows(two)["label"].iloc[0] == "mx / black vs white"


def test_error_rate_forest_leaves_groups_below_min_cell_n_out(tmp_path, monkeypatch):
    from dagster_project.analysis import figures
    drawn = {}
    frame = pd.DataFrame({"grouping": ["all", "race", "race"], "group_value": ["all", "white", "other"],
                          "n": [200, 198, 2], "accuracy": [0.8, 0.8, 1.0], "ci_low": [0.7, 0.7, 0.3],
                          "ci_high": [0.9, 0.9, 1.0]})
    import matplotlib.pyplot as plt
    # keep the figure open instead of saving it, to read what was drawn
    monkeypatch.setattr(figures, "save_png", lambda fig, path: drawn.setdefault("fig", fig) and path)
    figures.forest_plot_png(frame, "t", tmp_path / "g.png", min_n=10)
    ax = drawn["fig"].axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["all: all (n=200)", "race: white (n=198)"]
    assert "1 group(s) below min_cell_n = 10 not drawn" in ax.get_title()
    plt.close(drawn["fig"])


def test_people_from_the_human_baseline_mart_stand_beside_the_model(tables):
    baseline = pd.DataFrame([{"dataset": "d", "grouping": "race", "group_value": "black", "true_emotion": "all",
                              "measure": "share_choosing_intended", "reader": "human", "value": 0.8125,
                              "n_images": 198}])
    only_mart = {**{k: v for k, v in tables.items() if k != "marts.group_accuracy"},
                 "marts.group_accuracy": tables["marts.group_accuracy"].query("model != 'human'"),
                 "marts.human_category_agreement": baseline}
    v2 = [s for s in slice_summaries(only_mart, alpha=0.05, min_cell_n=10) if "v2" in s.title][0]
    people = dict(zip(v2.groups["group"], v2.groups["people, same images [95 % CI] (n)"]))
    assert people["black"].startswith("0.812 (198; share of raters") and people["white"] == ""
