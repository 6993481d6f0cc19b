"""Session set-up: one small benchmark (fixture datasets, both Xception models) and one
`dbt parse`, before any Dagster definitions are imported (they read the config at import).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support.openai_server import Action, OpenAIServer, RecordedRequest, client_error
from tests.support.tae_fixture import build_tae_fixture, context_carry_reply

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"
LONDON = SHARED / "datasets" / "london_set"
BIG_XCEPTION_DIR = SHARED / "models" / "face_classification"
PER_GROUP = 2  # identities per ethnicity x gender cell of the fixture subset
# The session's loopback VLM (kind openai, protocol context_carry on tae_sim): it answers the
# true emotion of each image (and the human mean valence / arousal of that emotion), except
# for these images, whose every request is blocked by the "content filter" (-> safety_block
# transport failures, never answers).
VLM_BLOCKED_IMAGES = ("images/bf00_sad.png", "images/km01_fear.png", "images/wm02_happy.png")
# Versions the server may list later; these misread Black faces (the bias regression gate's
# failing fixture); other versions answer like loopback-1.
VLM_BIASED_VERSIONS = ("loopback-2",)


class LoopbackVLM:
    """The scripted answers of the session's loopback OpenAI-compatible server."""

    def __init__(self, manifest: Path) -> None:
        import csv
        import hashlib

        self.truth: dict[str, str] = {}
        self.race: dict[str, str] = {}
        self.blocked: set[str] = set()
        with open(manifest, newline="") as fh:
            for row in csv.DictReader(fh):
                digest = hashlib.sha256((manifest.parent / row["image"]).read_bytes()).hexdigest()
                self.truth[digest] = row["emotion"]
                self.race[digest] = row["race"]
                if row["image"] in VLM_BLOCKED_IMAGES:
                    self.blocked.add(digest)

    def __call__(self, recorded: RecordedRequest) -> Action:
        import hashlib

        digest = hashlib.sha256(recorded.images[0]).hexdigest() if recorded.images else ""
        if digest in self.blocked:
            return client_error(400, "The image was rejected by the content filter.", code="content_filter")
        emotion = self.truth.get(digest, "neutral")
        model = (recorded.body or {}).get("model")
        if model in VLM_BIASED_VERSIONS and self.race.get(digest) == "black" and emotion != "neutral":
            emotion = "neutral"  # a regressed version: reads Black faces' expressions as neutral
        return context_carry_reply(recorded, emotion)


def fixture_identities() -> list[str]:
    """A few identities from every ethnicity x gender cell of the London Set (plus the
    two with a missing age), so every grouping has data."""
    rows = [line.split(",") for line in (LONDON / "london_info.csv").read_text().splitlines()[1:]]
    chosen: dict[tuple[str, str], list[str]] = {}
    for face_id, age, gender, eth in rows:
        cell = chosen.setdefault((eth, gender), [])
        if len(cell) < PER_GROUP or age == "NA":
            cell.append(face_id)
    return sorted(i for ids in chosen.values() for i in ids)


def _build_session_fixture(root: Path, vlm_base_url: str) -> Path:
    london = root / "london_subset"
    (london / "neutral_front").mkdir(parents=True)
    (london / "smiling_front").mkdir(parents=True)
    identities = fixture_identities()
    info_lines = (LONDON / "london_info.csv").read_text().splitlines()
    keep = [info_lines[0]] + [line for line in info_lines[1:] if line.split(",")[0] in identities]
    (london / "london_info.csv").write_text("\n".join(keep) + "\n")
    for face_id in identities:
        shutil.copy(LONDON / "neutral_front" / f"{face_id}_03.jpg", london / "neutral_front")
        shutil.copy(LONDON / "smiling_front" / f"{face_id}_08.jpg", london / "smiling_front")
    tae = build_tae_fixture(root / "tae_sim")
    config = root / "benchmark.yaml"
    config.write_text(
        f"""
warehouse: {root / 'warehouse.duckdb'}
reports_dir: {root / 'reports'}
cache_dir: {root / 'cache'}
datasets:
  london_subset:
    kind: london_set
    location: {london}
  tae_sim:
    kind: manifest
    location: {tae.manifest}
    label_set: canonical
    human_ratings:
      location: {tae.ratings}
      scale: [1, 9]
models:
  mini_xception:
    kind: fer_xception
    version: fer2013_mini_XCEPTION.102-0.66
    datasets: [london_subset]
  big_xception:
    kind: fer_xception
    version: fer2013_big_XCEPTION.54-0.66
    datasets: [london_subset]
    options:
      local_dir: {BIG_XCEPTION_DIR}
  gemma_sim:
    kind: imported
    family: vlm
    version: sim-1
    options:
      files: {{tae_sim: {tae.gemma_answers}}}
  fer_sim:
    kind: imported
    family: fer
    version: sim-1
    options:
      files: {{tae_sim: {tae.fer_answers}}}
      value_scale: [-1, 1]
  loopback_vlm:
    kind: openai
    version: loopback-1
    datasets: [tae_sim]
    # Re-evaluated weekly as dated snapshots (loopback-1+YYYYMMDDHHMM).
    reevaluate_cron: "0 3 * * 1"
    # New versions listed by the server (e.g. loopback-2) are discovered by the sensor.
    watch: {{provider: openai, base_url: {vlm_base_url}, pattern: "loopback-*", interval_s: 0}}
    options:
      base_url: {vlm_base_url}
      api_key_env: null
      protocol: {{name: context_carry}}
      max_in_flight: 8
      max_retries: 2
      timeout_s: 30
      price_per_million_tokens: {{input: 2.5, output: 10}}
statistics:
  min_cell_n: 5
  bootstrap_resamples: 50
"""
    )
    return config


def _is_xdist_controller(config: pytest.Config) -> bool:
    """True in the process that only hands tests to pytest-xdist workers (`-n 2`)."""
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    if not LONDON.is_dir():
        raise pytest.UsageError(f"tests need the shared assets at {SHARED} (London Set, FER models)")
    if _is_xdist_controller(config):
        # Parse the dbt project once, before the workers start: each would otherwise run
        # `dbt parse` into the same dbt/target at import. The controller runs no tests.
        from dagster_project.defs import dbt_project  # noqa: F401  (parses when stale)

        return
    root = Path(tempfile.mkdtemp(prefix="fer-session-"))
    config._fer_session_root = root  # type: ignore[attr-defined]
    server = OpenAIServer(models=("loopback-1",)).start()
    config._fer_vlm_server = server  # type: ignore[attr-defined]
    os.environ["FER_CONFIG"] = str(_build_session_fixture(root, server.base_url))
    server.responder = LoopbackVLM(root / "tae_sim" / "manifest.csv")
    os.environ.pop("FER_WAREHOUSE", None)
    os.environ["DAGSTER_HOME"] = str(root / "dagster_home")
    # dagster-dbt's invocation folders, and the saved parse each invocation shares with the next
    # (defs/dbt_runner), per session: a parallel worker's parse (another warehouse path, so
    # another profile) would otherwise replace this one's between two invocations.
    os.environ["DBT_TARGET_PATH"] = str(root / "dbt_target")
    (root / "dagster_home").mkdir()


def pytest_unconfigure(config: pytest.Config) -> None:
    server = getattr(config, "_fer_vlm_server", None)
    if server is not None:
        server.stop()
    root = getattr(config, "_fer_session_root", None)
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)


# The groups that take longest (`--durations`), longest first.
LONGEST_GROUPS = ("demo", "tests/journeys/test_chhua_tables_from_imported_answers.py",
                  "tests/journeys/test_fan_out_over_celery.py",
                  "tests/journeys/test_new_model_in_benchmark_yaml.py",
                  "tests/journeys/test_watched_provider_serves_a_new_version.py",
                  "tests/journeys/test_api_model_against_a_throttling_provider.py",
                  "tests/journeys/test_tae_reproduced_from_raw_answers.py", "tests/test_ui_browser.py",
                  "tests/journeys/test_ui_killed_mid_evaluation.py", "tests/journeys/test_dataset_in_a_wrong_layout.py",
                  "tests/test_incremental_slices.py",
                  "tests/test_fer_baselines_pipeline.py", "tests/test_clip_pipeline.py", "tests/test_dbt_runner.py",
                  "tests/test_slice_store.py", "tests/test_scale_out.py", "tests/test_papers_tables.py",
                  "tests/test_dbt_project.py", "tests/test_imported_pipeline.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist (`--dist loadgroup`): every test on the materialized demo runs on one
    worker, in file order (they share and extend one warehouse); every other file stays whole on
    one worker, so module fixtures are built once."""
    groups = {}
    for item in items:
        group = "demo" if "demo" in getattr(item, "fixturenames", ()) else item.nodeid.split("::", 1)[0]
        item.add_marker(pytest.mark.xdist_group(group))
        groups[item] = group
    # Longest first: with `--no-loadscope-reorder` (pyproject's addopts) xdist hands groups out in
    # this order, so the long ones start at once and the many short files fill in around them;
    # its default re-sorts groups by their number of tests, which left the one-test browser
    # group (~300 s) for last on one worker while the other idled.
    items.sort(key=lambda item: LONGEST_GROUPS.index(groups[item]) if groups[item] in LONGEST_GROUPS
               else len(LONGEST_GROUPS))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Fail loudly if pytest-xdist ignored the groups (it did, silently, under pytest 9): the demo
    would then be built once per worker and its tests, which extend one warehouse, run apart."""
    if getattr(session.config.option, "loadgroup", False) and any("@" not in item.nodeid for item in session.items):
        raise pytest.UsageError("pytest-xdist did not group the tests (`--dist loadgroup`); "
                                "see the pytest pin in pyproject.toml")


@pytest.fixture(scope="session")
def session_config_path() -> Path:
    return Path(os.environ["FER_CONFIG"])


@pytest.fixture(scope="session")
def vlm_server(pytestconfig) -> OpenAIServer:
    """The loopback OpenAI-compatible server behind the session's `loopback_vlm` model."""
    return pytestconfig._fer_vlm_server


@pytest.fixture(scope="session")
def instance():
    """A temporary Dagster instance shared by the end-to-end tests."""
    import dagster as dg

    with dg.instance_for_test() as inst:
        yield inst


@pytest.fixture(scope="session")
def demo(instance):
    """The whole graph materialized once, in-process, on the session fixture."""
    from dagster_project.orchestration import materialize_everything

    return materialize_everything(instance=instance)
