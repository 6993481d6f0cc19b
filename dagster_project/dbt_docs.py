"""`fer-warehouse docs`: the warehouse's dbt documentation, generated and served locally.

`dbt docs generate --static` runs against a snapshot of the warehouse (so it never blocks a run
writing it, and the catalog holds the columns the tables really have), with the same vars as
the pipeline's dbt commands; the result lands in `<reports_dir>/dbt_docs/`: index.html with
manifest.json and catalog.json (served by `dbt docs serve` on 127.0.0.1), and
static_index.html, one file that opens offline. Every model, source and column has a
description in the project's yml; `undocumented` lists what the catalog holds that has none,
and the command prints it, so a new column without a description does not go unnoticed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from dagster_project.settings import DBT_PROJECT_DIR
from inference.config import BenchmarkConfig, dbt_vars
from inference.warehouse import snapshot_for_reading

DOCS_DIR = "dbt_docs"
DOCUMENTED_TYPES = ("model", "seed", "source")
# Tables of the warehouse that dbt must know (as a model or a source) to document them.
STORED_TABLES = "warehouse_tables.json"
STORED_TABLES_SQL = """
select table_schema, table_name from information_schema.tables
where table_catalog = current_database() and table_schema in ('stats', 'marts', 'papers') order by all
"""


def docs_dir(cfg: BenchmarkConfig) -> Path:
    return cfg.reports_dir / DOCS_DIR


def dbt_executable() -> str:
    return str(Path(sys.executable).with_name("dbt"))


def _dbt_args(target: Path) -> list[str]:
    return ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR),
            "--target-path", str(target)]


def generate(cfg: BenchmarkConfig, target: Path) -> Path:
    """dbt docs generate --static into `target` from a snapshot of cfg.warehouse; returns target."""
    target.mkdir(parents=True, exist_ok=True)
    with snapshot_for_reading(cfg.warehouse) as snapshot:
        con = duckdb.connect(str(snapshot))
        try:
            if cfg.raw_slices:  # the Parquet slice store's raw.* views, made in the (private) copy
                from inference.slice_store import attach_views

                attach_views(con, cfg.raw_slices)
            tables = con.execute(STORED_TABLES_SQL).fetchall()
        finally:
            con.close()
        (target / STORED_TABLES).write_text(json.dumps([f"{schema}.{name}" for schema, name in tables]))
        variables = {"warehouse": str(snapshot), **dbt_vars(cfg.statistics)}
        if cfg.dataset_groups:
            variables["dataset_groups"] = cfg.dataset_groups
        command = [dbt_executable(), "docs", "generate", "--static", *_dbt_args(target),
                   "--vars", json.dumps(variables, sort_keys=True)]
        done = subprocess.run(command, cwd=DBT_PROJECT_DIR, capture_output=True, text=True,
                              env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
    if done.returncode != 0:
        raise RuntimeError(f"dbt docs generate failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
    return target


def undocumented(target: Path) -> list[str]:
    """'<resource>: <column>' (or '<resource>' alone) for each model, seed or source, and each
    column the catalog or the yml knows, without a description; and each stats / marts / papers
    table of the warehouse that no model or source declares."""
    manifest = json.loads((target / "manifest.json").read_text())
    catalog = json.loads((target / "catalog.json").read_text())
    missing = []
    for uid, node in sorted({**manifest["nodes"], **manifest["sources"]}.items()):
        if node["resource_type"] not in DOCUMENTED_TYPES or node.get("package_name") != manifest["metadata"].get(
                "project_name", node.get("package_name")):
            continue
        name = uid.split(".", 2)[-1]
        if not (node.get("description") or "").strip():
            missing.append(name)
        declared = {k.lower(): v for k, v in node.get("columns", {}).items()}
        stored = catalog["nodes"].get(uid) or catalog["sources"].get(uid) or {"columns": {}}
        for column in sorted(set(declared) | {k.lower() for k in stored["columns"]}):
            if not (declared.get(column, {}).get("description") or "").strip():
                missing.append(f"{name}: {column}")
    known = {f"{node['schema']}.{node.get('alias') or node.get('identifier') or node['name']}".lower()
             for node in {**manifest["nodes"], **manifest["sources"]}.values() if "schema" in node}
    stored = json.loads((target / STORED_TABLES).read_text()) if (target / STORED_TABLES).exists() else []
    missing += [f"{table}: no dbt model or source declares it" for table in stored if table.lower() not in known]
    return missing


def serve(target: Path, port: int) -> int:
    """dbt docs serve on 127.0.0.1 until SIGTERM / Ctrl-C."""
    from dagster_project.process_group import run_until_signalled

    command = [dbt_executable(), "docs", "serve", "--host", "127.0.0.1", "--port", str(port), "--no-browser",
               *_dbt_args(target)]
    print(f"dbt docs on http://127.0.0.1:{port} (Ctrl-C stops it)", flush=True)
    return run_until_signalled(command, cwd=DBT_PROJECT_DIR,
                               env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"})
