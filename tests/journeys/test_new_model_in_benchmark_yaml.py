"""Journey: a researcher adds a model version to benchmark.yaml and starts the UI. It is evaluated
once on the dataset, and its marts, statistics, figures and report follow with no click; after a
restart of the UI nothing is asked again.

Before the fix, `fer-warehouse ui` registered the version as a partition before the daemon started,
and the sensor evaluated only versions that were not yet partitions: the model was never asked."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.journey import Workspace, london_subset, provider, ui, wait_until

RESULTS_TIMEOUT_S = 900


def vlm_model(base_url: str, version: str = "loop-1") -> str:
    return (f"  loop_vlm:\n    kind: openai\n    version: {version}\n"
            f"    options: {{base_url: '{base_url}', api_key_env: null, max_in_flight: 8, timeout_s: 30}}\n")


@pytest.mark.timeout(1800)
def test_a_model_added_to_benchmark_yaml_is_evaluated_once_when_the_ui_starts(tmp_path: Path) -> None:
    work = Workspace(tmp_path / "work")
    london = london_subset(tmp_path / "london")
    n_images = len(list(london.glob("*/*.jpg")))
    with provider(tmp_path / "provider.log", "--models", "loop-1", "--default", "happy") as api:
        work.write_config(f"  london: {{kind: london_set, location: {london}}}\n", vlm_model(api.base_url))
        with ui(work, tmp_path / "ui.log") as first:
            # No click: the sensor ingests the dataset, evaluates the configured version, and
            # declarative automation builds the slice's marts, statistics and figures, then the report.
            report = work.root / "reports" / "report.html"
            wait_until("the report", report.exists, RESULTS_TIMEOUT_S, alive=first.alive)
            ledger = api.stats()["ledger"]
            assert len(ledger) == n_images and set(ledger.values()) == {1}, ledger
            assert work.scalar("select count(*) from raw.predictions where model = 'loop_vlm'") == str(n_images)
            accuracy = work.sql("select grouping, n_images, correct from marts.group_accuracy "
                                "where model = 'loop_vlm' and grouping = 'all' and true_emotion = 'all'")
            assert [row["n_images"] for row in accuracy] == [str(n_images)]
            assert int(work.scalar("select count(*) from stats.error_rate_ztests where model = 'loop_vlm'")) > 0
            figures = list((work.root / "reports").rglob("*.png"))
            assert figures, "no figure drawn"
            assert "loop_vlm" in report.read_text()
            evaluations = first.ended_runs("evaluate_model_on_dataset", at_least=1)
            assert [r["status"] for r in evaluations] == ["SUCCESS"]
        with ui(work, tmp_path / "ui.log") as second:
            # Two ticks of the sensor after the restart, and nothing is asked or launched again.
            restarted = time.time()
            wait_until("two sensor ticks after the restart", lambda: len([
                t for t in second.instigator_ticks("configured_model_versions") if t["timestamp"] > restarted]) >= 2,
                300, alive=second.alive)
            assert api.stats()["ledger"] == ledger
            assert len([r for r in second.runs() if r["job"] == "evaluate_model_on_dataset"]) == 1
