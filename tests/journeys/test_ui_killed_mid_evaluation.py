"""Journey: the UI's whole process group is killed with SIGKILL while an API model is being
evaluated; the researcher starts the UI again. The dead run is noticed, retried, and finishes:
every image has exactly one stored answer, and the provider was asked again at most for the
requests that were in flight at the kill.

Before the fix the embedded instance had no run monitoring: the killed run stayed STARTED for
ever and nothing finished the slice."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.journey import UI, Workspace, london_subset, provider, ui, wait_until

IN_FLIGHT = 2
TIMEOUT_S = 900


@pytest.mark.timeout(1800)
def test_a_run_killed_with_the_ui_is_retried_and_stores_each_answer_once(tmp_path: Path) -> None:
    work = Workspace(tmp_path / "work")
    london = london_subset(tmp_path / "london", identities_per_cell=2)
    n_images = len(list(london.glob("*/*.jpg")))
    with provider(tmp_path / "provider.log", "--models", "loop-1", "--default", "sad", "--latency", "1.0") as api:
        work.write_config(
            f"  london: {{kind: london_set, location: {london}}}\n",
            f"  loop_vlm:\n    kind: openai\n    version: loop-1\n"
            f"    options: {{base_url: '{api.base_url}', api_key_env: null, max_in_flight: {IN_FLIGHT}, "
            f"timeout_s: 30}}\n")
        first = UI(work, tmp_path / "ui.log")
        try:
            first.wait_loaded()
            wait_until("a few answers", lambda: sum(api.stats()["ledger"].values()) >= 4, TIMEOUT_S, 0.5,
                       alive=first.alive)
        finally:
            first.kill9()
        answered_before_kill = sum(api.stats()["ledger"].values())
        assert answered_before_kill < n_images, "the evaluation finished before the kill: make it slower"

        with ui(work, tmp_path / "ui.log") as second:
            wait_until("every image answered in the warehouse", lambda: work.table_exists("raw", "predictions") and
                       work.scalar("select count(*) from raw.predictions where model = 'loop_vlm'") == str(n_images),
                       TIMEOUT_S, alive=second.alive)
            # The answers are stored before the retry's run has ended (CI saw it STARTED).
            runs = second.ended_runs("evaluate_model_on_dataset", at_least=2)
            statuses = sorted(r["status"] for r in runs)
            assert statuses == ["FAILURE", "SUCCESS"], statuses  # the killed run, and its retry
            retry = next(r for r in runs if r["status"] == "SUCCESS")
            assert retry["tags"].get("dagster/parent_run_id") == next(r["id"] for r in runs if r["status"] == "FAILURE")

        stored = work.sql("select image_hash, count(*) as n from raw.predictions where model = 'loop_vlm' group by 1")
        assert len(stored) == n_images and {row["n"] for row in stored} == {"1"}
        ledger = api.stats()["ledger"]
        assert len(ledger) == n_images
        asked_again = sum(n - 1 for n in ledger.values())
        assert asked_again <= IN_FLIGHT, ledger
