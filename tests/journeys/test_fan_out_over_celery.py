"""Journey: with PostgreSQL and RabbitMQ up, a researcher scales out as README "Scaling out" says:
benchmark.yaml names deploy/dagster.yaml and a slice store, two Celery workers serve the default
queue and the provider's, and `fer-warehouse fan-out` ingests, evaluates and refreshes. The
marts equal those of the embedded `fer-warehouse demo` on the same data and answers.

Skips, naming the service, where PostgreSQL (127.0.0.1:5432) or RabbitMQ (127.0.0.1:5672) is not
reachable; `psql` creates and drops the journey's own database."""

from __future__ import annotations

import shutil
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.support.celery_workers import celery_workers
from tests.support.journey import REPO_ROOT, Workspace, provider
from tests.support.tae_fixture import build_tae_fixture

MARTS = ("group_accuracy", "confusion_counts", "misclassification_ratios", "answer_status_rates")
MODELS = {"vlm_a": "va", "vlm_b": "vb"}  # name -> version (the provider's model id)


def _missing_service() -> str | None:
    for port, name in ((5432, "PostgreSQL"), (5672, "RabbitMQ")):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return f"{name} is not reachable on 127.0.0.1:{port} (README, 'Scaling out')"
    if shutil.which("psql") is None:
        return "psql (PostgreSQL's client) is not installed"
    return None


def _psql(sql: str) -> None:
    subprocess.run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-c", sql],
                   check=True, capture_output=True, timeout=60)


def _config(work: Workspace, manifest: Path, base_url: str, distributed: bool) -> None:
    models = "".join(f"  {name}:\n    kind: openai\n    version: {version}\n    options: {{base_url: '{base_url}', "
                     f"api_key_env: null, max_in_flight: 4, timeout_s: 30}}\n" for name, version in MODELS.items())
    extra = (f"raw_slices: {work.root / 'slices'}\ndagster_instance: {REPO_ROOT / 'deploy' / 'dagster.yaml'}\n"
             if distributed else "")
    work.write_config(f"  faces: {{kind: manifest, location: {manifest}, label_set: canonical}}\n", models, extra)


def _marts(work: Workspace) -> dict[str, str]:
    return {name: work.cli("sql", "--csv", "-c", f"select * from marts.{name} order by all",
                           timeout_s=120).stdout for name in MARTS}


@pytest.mark.timeout(1500)
@pytest.mark.skipif(bool(_missing_service()), reason=str(_missing_service()))
def test_fan_out_over_celery_gives_the_marts_of_the_embedded_run(tmp_path: Path) -> None:
    faces = build_tae_fixture(tmp_path / "faces", identities_per_cell=1)
    database = f"fer_journey_{uuid.uuid4().hex[:10]}"
    with provider(tmp_path / "provider.log", "--models", ",".join(MODELS.values()), "--latency", "0.05",
                  "--answers", str(faces.manifest)) as api:
        embedded = Workspace(tmp_path / "embedded")
        _config(embedded, faces.manifest, api.base_url, distributed=False)
        embedded.cli("demo")

        scaled = Workspace(tmp_path / "scaled")
        _config(scaled, faces.manifest, api.base_url, distributed=True)
        scaled.env.update(FER_DAGSTER_PG_URL=f"postgresql+psycopg2://postgres@127.0.0.1:5432/{database}",
                          FER_CELERY_BROKER="pyamqp://guest:guest@127.0.0.1:5672//",
                          DAGSTER_CELERY_BROKER_HOST="127.0.0.1")
        provider_queue = "fer.openai." + api.url.split("://", 1)[1].replace(":", "_") + ".nokey"
        _psql(f"create database {database}")
        try:
            with celery_workers(2, f"dagster,{provider_queue}", name="journey", cwd=scaled.root, env=scaled.env,
                                log_dir=tmp_path):
                scaled.cli("fan-out", "--job", "ingest_dataset", "--partition", "faces", "--wait", "--timeout", "600")
                launched = scaled.cli("fan-out", "--wait", "--timeout", "600").stdout
                assert len(launched.splitlines()) == len(MODELS)
                scaled.cli("fan-out", "--job", "refresh_slice", "--wait", "--timeout", "600")
        finally:
            _psql(f"drop database if exists {database} with (force)")
        ledger = api.stats()["ledger"]

    # every image answered once per model: the scaled run's answers came from the response cache
    # of its own workspace, so each model was asked twice in all (once per deployment)
    assert set(ledger.values()) == {2} and len(ledger) == len(MODELS) * faces.n_images
    assert list((tmp_path / "scaled" / "slices").rglob("*.parquet")), "no slice written as Parquet"
    assert _marts(scaled) == _marts(embedded)
