"""The Dagster instance file fer-warehouse writes into $DAGSTER_HOME: the embedded default when
none is configured, refreshed when fer-warehouse wrote it (so a new default reaches existing
homes), and never touched when a person wrote it."""

from __future__ import annotations

import yaml

from dagster_project import cli


def test_the_embedded_default_is_written_and_refreshed_but_a_hand_written_file_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    config = tmp_path / "dagster.yaml"

    cli.dagster_home()
    written = yaml.safe_load(config.read_text())
    assert written["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert written["run_coordinator"]["config"]["dequeue_interval_seconds"] == 1

    # An older default that fer-warehouse wrote: replaced by today's.
    config.write_text(f"{cli.WRITTEN_MARK}. Old.\nrun_coordinator:\n  module: x\n")
    cli.dagster_home()
    assert config.read_text() == cli.DAGSTER_YAML

    # A person's own file: kept as it is.
    config.write_text("telemetry:\n  enabled: true\n")
    cli.dagster_home()
    assert config.read_text() == "telemetry:\n  enabled: true\n"


def test_a_configured_instance_file_is_copied_with_its_origin(tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    source = tmp_path / "deploy.yaml"
    source.write_text("telemetry:\n  enabled: false\n")

    home = cli.dagster_home(source)
    text = (home / "dagster.yaml").read_text()
    assert text.startswith(f"{cli.WRITTEN_MARK} from {source}")
    assert yaml.safe_load(text) == {"telemetry": {"enabled": False}}

    # Later, with no instance configured (DAGSTER_HOME is how the deployment is chosen): kept.
    cli.dagster_home()
    assert (home / "dagster.yaml").read_text() == text
