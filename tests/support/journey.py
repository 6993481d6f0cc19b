"""What a researcher touches, driven from outside: the `fer-warehouse` command, benchmark.yaml,
`fer-warehouse ui` (webserver + daemon, read through its GraphQL API), SQL through
`fer-warehouse sql --csv`, and loopback providers in processes of their own.

Nothing here imports the product (`dagster_project`, `inference`): a journey sees only what a
user sees. Each journey gets a fresh folder holding its benchmark.yaml, warehouse and
DAGSTER_HOME.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.dagster_ui import DagsterUI, free_port, group_members, london_subset  # noqa: F401 (re-exported)

REPO_ROOT = Path(__file__).resolve().parents[2]
FER_WAREHOUSE = str(Path(sys.executable).with_name("fer-warehouse"))
MINI_XCEPTION = "fer2013_mini_XCEPTION.102-0.66"
# Settings a user may write too (README, "New model versions evaluate themselves"): the journeys
# look for work every few seconds instead of every 30-60 s.
FAST_AUTOMATION = "automation: {sensor_interval_s: 5, automation_interval_s: 5}\n"


class CommandFailed(AssertionError):
    """A `fer-warehouse` command exited non-zero."""


def wait_until(what: str, check: Callable[[], Any], timeout_s: float, every_s: float = 2.0,
               alive: Callable[[], None] | None = None) -> Any:
    """Poll `check` until it returns something truthy (returned); `alive` raises when a process
    the wait depends on has died. A command that fails while polling counts as "not yet" (its
    last error is in the timeout's message)."""
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while True:
        try:
            value = check()
        except CommandFailed as failed:
            value, last_error = None, str(failed)[-2000:]
        if value:
            return value
        if alive is not None:
            alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout_s:.0f} s for {what}" + (f"; last error: {last_error}" if last_error else ""))
        time.sleep(every_s)


@dataclass
class Workspace:
    """A fresh folder with a benchmark.yaml, its warehouse and its DAGSTER_HOME."""

    root: Path
    env: dict[str, str] = field(init=False)

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "FER_CONFIG": str(self.config), "DAGSTER_HOME": str(self.root / "dagster_home")}
        # the session's own settings must not leak into the user's view
        for name in ("FER_WAREHOUSE", "DBT_TARGET_PATH"):
            self.env.pop(name, None)

    @property
    def config(self) -> Path:
        return self.root / "benchmark.yaml"

    def write_config(self, datasets: str, models: str, extra: str = "") -> None:
        self.config.write_text(
            f"warehouse: {self.root / 'warehouse.duckdb'}\nreports_dir: {self.root / 'reports'}\n"
            f"cache_dir: {self.root / 'cache'}\n{FAST_AUTOMATION}datasets:\n{datasets}models:\n{models}{extra}")

    def cli(self, *args: str, timeout_s: float = 900, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([FER_WAREHOUSE, *args], env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout_s)
        if check and done.returncode != 0:
            raise CommandFailed(f"fer-warehouse {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
        return done

    def sql(self, query: str) -> list[dict[str, str]]:
        """Rows of `query` as `fer-warehouse sql --csv` prints them."""
        out = self.cli("sql", "--csv", "-c", query, timeout_s=120).stdout
        return list(csv.DictReader(io.StringIO(out)))

    def scalar(self, query: str) -> str | None:
        rows = self.sql(query)
        return next(iter(rows[0].values())) if rows else None

    def table_exists(self, schema: str, table: str) -> bool:
        if not (self.root / "warehouse.duckdb").exists():  # nothing written yet
            return False
        return self.scalar(f"select count(*) from information_schema.tables where table_schema = '{schema}' "
                           f"and table_name = '{table}'") == "1"


class Provider:
    """`tests.support.loopback_provider` in its own process."""

    def __init__(self, log: Path, *args: str) -> None:
        self.log = open(log, "w")
        self.process = subprocess.Popen([sys.executable, "-m", "tests.support.loopback_provider", *args],
                                        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self.log, text=True)
        first = self.process.stdout.readline().split()
        if first[:1] != ["url"]:
            raise RuntimeError(f"loopback provider did not start; see {log}")
        self.url = first[1]
        self.base_url = self.url + "/v1"

    def _call(self, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def stats(self) -> dict:
        return self._call("/_loopback/stats")

    def configure(self, **settings: Any) -> dict:
        return self._call("/_loopback/configure", settings)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self.log.close()


@contextmanager
def provider(log: Path, *args: str) -> Iterator[Provider]:
    started = Provider(log, *args)
    try:
        yield started
    finally:
        started.stop()


RUN_END_STATES = frozenset({"SUCCESS", "FAILURE", "CANCELED"})


class UI(DagsterUI):
    """`fer-warehouse ui` as a user starts it, in a session (process group) of its own; its
    GraphQL client is the UI tests' (tests/support/dagster_ui.DagsterUI)."""

    def __init__(self, workspace: Workspace, log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        with open(log, "a") as out:
            self.process = subprocess.Popen([FER_WAREHOUSE, "ui", "--port", str(self.port)], env=workspace.env,
                                            cwd=workspace.root, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"fer-warehouse ui exited ({self.process.returncode}); see {self.log}")

    def wait_loaded(self, timeout_s: float = 900) -> None:
        def loaded() -> bool:
            try:
                return self.location_loaded()
            except (urllib.error.URLError, ConnectionError, RuntimeError, OSError, KeyError, TypeError):
                return False

        wait_until("the UI to load its code location", loaded, timeout_s, alive=self.alive)

    def runs(self) -> list[dict]:
        """Every run: id, status, job, partition tags."""
        data = self.graphql("""{ runsOrError(limit: 500) { ... on Runs { results {
            runId status pipelineName tags { key value } } } } }""")
        return [{"id": r["runId"], "status": r["status"], "job": r["pipelineName"],
                 "tags": {t["key"]: t["value"] for t in r["tags"]}} for r in data["runsOrError"]["results"]]

    def ended_runs(self, job: str, at_least: int, timeout_s: float = 300) -> list[dict]:
        """The runs of `job` once there are `at_least` of them and none is still queued or
        running. A run's assets can be in the warehouse before its run has ended (its last
        steps, or the run's own bookkeeping, still running), so a test that checks statuses
        after seeing the data waits for this."""
        def ended() -> list[dict] | None:
            runs = [r for r in self.runs() if r["job"] == job]
            return runs if len(runs) >= at_least and all(r["status"] in RUN_END_STATES for r in runs) else None

        return wait_until(f"{at_least} run(s) of {job} ended", ended, timeout_s, alive=self.alive)

    def instigator_ticks(self, name: str, limit: int = 20) -> list[dict]:
        """The latest ticks of a sensor: status and skip reason / error."""
        data = self.graphql("""query($name: String!) { sensorOrError(sensorSelector: {
              repositoryName: "__repository__", repositoryLocationName: "fer_bias_warehouse", sensorName: $name}) {
            ... on Sensor { sensorState { ticks(limit: %d) { status timestamp skipReason error { message } } } } } }""" % limit,
                            {"name": name})
        return data["sensorOrError"]["sensorState"]["ticks"]

    def groups(self) -> list[int]:
        """Process groups of the UI: this command's and the `dg dev` it leads."""
        pgids = {self.process.pid}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid:
                pgids.add(int(fields[2]))
        return sorted(pgids)

    def kill9(self) -> None:
        """SIGKILL to every process of the UI (webserver, daemon, code servers, run workers)."""
        groups = self.groups()
        for pgid in groups:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.process.wait(timeout=30)
        wait_until("every process of the killed UI to exit", lambda: not any(group_members(g) for g in groups), 60, 0.5)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()


@contextmanager
def ui(workspace: Workspace, log: Path) -> Iterator[UI]:
    started = UI(workspace, log)
    try:
        started.wait_loaded()
        yield started
    finally:
        started.stop()
