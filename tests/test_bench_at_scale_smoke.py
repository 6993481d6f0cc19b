"""scripts/bench_at_scale.py writes its 10^7 answers straight into the raw tables; when a raw
table gained a column (`media_type`) its positional inserts stopped running and nobody noticed
until the next hand-run benchmark (issue 23). A full run at the smallest size still takes
minutes (dbt foundation, every statistic, the report), so CI runs its raw writers alone
against today's raw schema: a column added without a default, or a renamed one, fails here.
The timing itself is by hand (the script's docstring; numbers in the notes), never a test."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

from inference import warehouse

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_at_scale.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_at_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_its_raw_rows_fit_todays_raw_schema(tmp_path: Path) -> None:
    bench = load_script()
    n_images, n_samples = 70, 3
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        warehouse.ensure_raw_schema(con)
        bench.write_images(con, n_images)
        for version_index in (1, 2):
            bench.write_version(con, version_index, n_images, n_samples)
        images = con.execute("select count(*), count(distinct source_label), count(media_type) from raw.dataset_images").fetchone()
        answers = con.execute("""select count(*), count(distinct model_version),
                                        count(*) filter (where parse_status = 'ok' and predicted_label is null)
                                 from raw.predictions""").fetchone()
        runs = con.execute("select count(*), sum(n_answers) from raw.model_runs").fetchone()
        versions = con.execute("select count(*) from raw.model_versions").fetchone()
    assert images == (n_images, len(bench.EMOTIONS), n_images)
    assert answers == (2 * n_images * n_samples, 2, 0)
    assert runs == (2, 2 * n_images * n_samples)
    assert versions == (2,)
