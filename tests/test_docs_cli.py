"""`fer-warehouse docs` through the command line: dbt docs generated against the warehouse (a
snapshot of it) and served on 127.0.0.1; every model, source and column described, each stats
table with its own columns; a column the yml does not describe is named."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get(url: str, deadline: float) -> bytes:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def test_docs_generates_against_the_warehouse_and_serves_it(tmp_path):
    warehouse = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(warehouse))  # a stats table with a column no yml describes
    con.execute("create schema stats")
    con.execute("create table stats.error_rate_ztests (model varchar, group_a varchar, mystery_column double)")
    con.execute("create table stats.unheard_of (model varchar)")  # written by Python, declared nowhere
    con.close()
    out, port = tmp_path / "docs", _free_port()
    env = {**os.environ, "FER_WAREHOUSE": str(warehouse), "PYTHONPATH": str(REPO)}
    server = subprocess.Popen([sys.executable, "-m", "dagster_project.cli", "docs", "--port", str(port),
                               "--out", str(out)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        page = _get(f"http://127.0.0.1:{port}/index.html", time.monotonic() + 300)
        catalog = json.loads(_get(f"http://127.0.0.1:{port}/catalog.json", time.monotonic() + 10))
    finally:
        server.send_signal(signal.SIGTERM)
        printed, _ = server.communicate(timeout=30)
    assert b"dbt" in page and (out / "static_index.html").stat().st_size > 0
    assert server.returncode == 128 + signal.SIGTERM, printed
    # the catalog is the warehouse's: it holds the table as it really is
    stored = catalog["sources"]["source.fer_bias_warehouse.stats.error_rate_ztests"]["columns"]
    assert {c.lower() for c in stored} == {"model", "group_a", "mystery_column"}
    # the only thing without a description is the column the yml does not know
    assert "2 without a description" in printed and "stats.error_rate_ztests: mystery_column" in printed, printed
    assert "stats.unheard_of: no dbt model or source declares it" in printed

    manifest = json.loads((out / "manifest.json").read_text())
    ours = {uid: node for uid, node in {**manifest["nodes"], **manifest["sources"]}.items()
            if node["resource_type"] in ("model", "seed", "source")}
    assert all(node["description"].strip() for node in ours.values())
    assert all(col["description"].strip() for node in ours.values() for col in node["columns"].values())
    # each stats table its own source entry with its own columns (not one generic set)
    stats = {node["name"]: frozenset(node["columns"]) for node in ours.values()
             if node["resource_type"] == "source" and node["source_name"] == "stats"}
    assert "group_a" in stats["error_rate_ztests"] and "group_a" not in stats["categorical_agreement"]
    assert "emotion" in stats["categorical_agreement"]
