"""Journey: while the UI runs, a watched provider starts serving a new version of a model. It is
evaluated once on the dataset, gated against the version before it, and reaches the marts; when
the provider's listing goes down, the sensor's tick skips saying why and the UI stays up."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.journey import Workspace, london_subset, provider, ui, wait_until

TIMEOUT_S = 900
GATE = """query { assetCheckExecutions(assetKey: {path: ["marts", "group_accuracy"]},
  checkName: "bias_regression_gate", limit: 10) { runId status evaluation { success
  metadataEntries { label ... on JsonMetadataEntry { jsonString } } } } }"""


def gate_comparisons(running) -> list[str]:
    """The comparisons the bias regression gate made, newest execution first."""
    return [entry.get("jsonString") or "" for execution in running.graphql(GATE)["assetCheckExecutions"]
            if execution["evaluation"] for entry in execution["evaluation"]["metadataEntries"]
            if entry["label"] == "comparisons"]


def versions_in_marts(work: Workspace) -> set[str]:
    if not work.table_exists("marts", "group_accuracy"):
        return set()
    return {row["model_version"] for row in work.sql(
        "select distinct model_version from marts.group_accuracy where model = 'loop_vlm'")}


def answers_per_version(ledger: dict[str, int]) -> dict[str, list[int]]:
    counts: dict[str, list[int]] = {}
    for key, n in ledger.items():
        counts.setdefault(key.split(":", 1)[0], []).append(n)
    return counts


@pytest.mark.timeout(1800)
def test_a_version_a_watched_provider_starts_serving_is_evaluated_once_and_gated(tmp_path: Path) -> None:
    work = Workspace(tmp_path / "work")
    london = london_subset(tmp_path / "london")
    n_images = len(list(london.glob("*/*.jpg")))
    with provider(tmp_path / "provider.log", "--models", "loop-1", "--default", "happy") as api:
        work.write_config(
            f"  london: {{kind: london_set, location: {london}}}\n",
            f"  loop_vlm:\n    kind: openai\n    version: loop-1\n"
            f"    watch: {{provider: openai, base_url: '{api.base_url}', pattern: 'loop-*', interval_s: 0}}\n"
            f"    options: {{base_url: '{api.base_url}', api_key_env: null, max_in_flight: 8, timeout_s: 30}}\n")
        with ui(work, tmp_path / "ui.log") as running:
            wait_until("loop-1 in the marts", lambda: versions_in_marts(work) == {"loop-1"}, TIMEOUT_S,
                       alive=running.alive)
            api.configure(models=["loop-1", "loop-2"])  # the provider starts serving loop-2
            wait_until("loop-2 in the marts", lambda: versions_in_marts(work) == {"loop-1", "loop-2"}, TIMEOUT_S,
                       alive=running.alive)
            per_version = answers_per_version(api.stats()["ledger"])
            assert {v: (len(n), set(n)) for v, n in per_version.items()} == {
                "loop-1": (n_images, {1}), "loop-2": (n_images, {1})}
            comparisons = wait_until("the bias regression gate comparing loop-2 with loop-1", lambda: [
                c for c in gate_comparisons(running) if "loop_vlm: loop-1 -> loop-2" in c], TIMEOUT_S,
                alive=running.alive)
            assert comparisons

            api.configure(models_status=503)  # the provider's listing goes down
            reason = wait_until("a skipped watch tick naming the outage", lambda: [
                t["skipReason"] for t in running.instigator_ticks("watched_model_versions")
                if t["status"] == "SKIPPED" and "loop_vlm" in (t["skipReason"] or "")], TIMEOUT_S,
                alive=running.alive)
            assert "503" in reason[0] or "unavailable" in reason[0].lower(), reason[0]
            running.alive()
            assert running.graphql("{ version }")["version"]  # the UI still answers
            evaluations = running.ended_runs("evaluate_model_on_dataset", at_least=2)
            assert len(evaluations) == 2 and {r["status"] for r in evaluations} == {"SUCCESS"}
