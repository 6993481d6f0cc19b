"""A real `fer-warehouse ui` (dagster dev) on a tiny benchmark, for browser tests and the UI
benchmark: its own config, warehouse and DAGSTER_HOME, queried through the UI's GraphQL API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LONDON = REPO_ROOT.parent / "shared" / "datasets" / "london_set"
MINI_XCEPTION = "fer2013_mini_XCEPTION.102-0.66"


def london_subset(london: Path, identities_per_cell: int = 1) -> Path:
    """A London Set copy in its published layout at `london`, with `identities_per_cell`
    identities per ethnicity x gender (both expressions)."""
    rows = [line.split(",") for line in (LONDON / "london_info.csv").read_text().splitlines()]
    chosen: dict[tuple[str, str], list[list[str]]] = {}
    for row in rows[1:]:
        cell = chosen.setdefault((row[3], row[2]), [])
        if len(cell) < identities_per_cell:
            cell.append(row)
    keep = sorted(row for cell in chosen.values() for row in cell)
    for folder, suffix in (("neutral_front", "03"), ("smiling_front", "08")):
        (london / folder).mkdir(parents=True, exist_ok=True)
        for row in keep:
            shutil.copy(LONDON / folder / f"{row[0]}_{suffix}.jpg", london / folder)
    (london / "london_info.csv").write_text("\n".join(",".join(r) for r in [rows[0], *keep]) + "\n")
    return london


def tiny_benchmark(root: Path, identities_per_cell: int = 1) -> Path:
    """A London Set subset (`identities_per_cell` identity per ethnicity x gender, both
    expressions) evaluated by mini-Xception alone: the smallest graph with every kind of asset."""
    london = london_subset(root / "london_tiny", identities_per_cell)
    config = root / "benchmark.yaml"
    config.write_text(f"""
warehouse: {root / 'warehouse.duckdb'}
reports_dir: {root / 'reports'}
cache_dir: {REPO_ROOT / 'data' / 'cache'}
datasets:
  london_tiny: {{kind: london_set, location: {london}}}
models:
  mini_xception: {{kind: fer_xception, version: {MINI_XCEPTION}}}
statistics: {{min_cell_n: 2, bootstrap_resamples: 20}}
""")
    return config


def warehouse_env(config: Path, dagster_home: Path) -> dict[str, str]:
    dagster_home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "FER_CONFIG": str(config), "DAGSTER_HOME": str(dagster_home)}
    env.pop("FER_WAREHOUSE", None)
    return env


def run_steps_in_subprocess(env: dict[str, str], steps: list[tuple[str, str, str | None]]) -> None:
    """Run demo steps (label, job, partition) in a fresh process: definitions read FER_CONFIG
    at import, so another config needs another interpreter."""
    code = ("import sys, json\nfrom dagster_project.orchestration import Step, materialize_everything\n"
            "materialize_everything(steps=[Step(*s) for s in json.loads(sys.argv[1])])\n")
    subprocess.run([sys.executable, "-c", code, json.dumps(steps)], env=env, cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, fields after the command name) of every process: state, ppid, pgrp, ..."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            yield int(stat.parent.name), stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError, ValueError):
            continue


def group_members(pgid: int) -> list[int]:
    """Live processes of process group `pgid`."""
    return [pid for pid, fields in _proc_stats() if int(fields[2]) == pgid]


def child_group(pid: int) -> int:
    """The process group of `pid`'s child: `fer-warehouse ui` starts `dg dev` leading its own."""
    for _, fields in _proc_stats():
        if int(fields[1]) == pid:
            return int(fields[2])
    raise LookupError(f"process {pid} has no child process")


def group_cpu_s(pgid: int) -> float:
    """CPU seconds of every live process in the group, with their reaped children's."""
    ticks = sum(sum(int(value) for value in fields[11:15])  # utime stime cutime cstime
                for _, fields in _proc_stats() if int(fields[2]) == pgid)
    return ticks / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class DagsterUI:
    process: subprocess.Popen
    url: str

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": query, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        if payload.get("errors"):
            raise RuntimeError(f"GraphQL errors: {payload['errors']}")
        return payload["data"]

    def location_loaded(self) -> bool:
        data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                            "locationOrLoadError { __typename } } } } }")
        entries = data["workspaceOrError"]["locationEntries"]
        return bool(entries) and all(e["loadStatus"] == "LOADED" for e in entries)

    def location_names(self) -> list[str]:
        data = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name } } } }")
        return [e["name"] for e in data["workspaceOrError"]["locationEntries"]]


@contextmanager
def dagster_ui(env: dict[str, str], log: Path, timeout_s: float = 900) -> Iterator[DagsterUI]:
    """`fer-warehouse ui` on a free port until the code location is loaded; stopped with SIGTERM."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("fer-warehouse")), "ui", "--port", str(port)]
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO_ROOT, stdout=out, stderr=subprocess.STDOUT)
    ui = DagsterUI(process, f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"fer-warehouse ui exited ({process.returncode}); see {log}")
            try:
                if ui.location_loaded():
                    break
            except (urllib.error.URLError, ConnectionError, RuntimeError, KeyError, TypeError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"the UI did not load its code location in {timeout_s} s; see {log}")
            time.sleep(1)
        yield ui
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
