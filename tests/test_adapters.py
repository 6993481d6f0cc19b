"""The adapter interfaces: the kinds registry (lazy imports), `evaluate` of an imported model,
and `write_evaluation` replacing a slice in every raw table in one transaction."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from inference import warehouse
from inference.config import MODEL_KINDS, DatasetConfig, ModelConfig
from inference.datasets import DatasetAdapter, dataset_adapter
from inference.datasets.base import ImageRecord
from inference.frames import Discovery, evaluation_rows
from inference.kinds import DATASET_ADAPTERS, MODEL_ADAPTERS, adapter_class
from inference.models import EvaluationContext, ModelAdapter, build_model
from inference.models.base import parse_options

ROOT = Path(__file__).resolve().parents[1]
SLICE = {"model": "ext", "model_version": "run-1", "dataset": "ds"}


def test_loading_a_config_imports_no_adapter_module():
    code = ("import sys, inference.config, inference.models; "
            "print(sorted(m for m in sys.modules if m.startswith('inference.models.') or m in "
            "('torch', 'keras', 'open_clip', 'openai', 'httpx')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "['inference.models.base']"
    assert MODEL_KINDS == tuple(MODEL_ADAPTERS)


@pytest.mark.parametrize("kind", sorted(MODEL_ADAPTERS))
def test_every_model_kind_is_a_model_adapter_that_builds(kind):
    cls = adapter_class(MODEL_ADAPTERS, kind, f"models.{kind}")
    assert issubclass(cls, ModelAdapter) and "build" in vars(cls) and "evaluate" in vars(cls)


# Options a kind cannot do without (the generic kinds have no preset to fall back on).
REQUIRED_OPTIONS = {"filename_pattern": {"pattern": r"(?P<emotion>[^/]+)/[^/]+\.jpg"}}


@pytest.mark.parametrize("kind", sorted(DATASET_ADAPTERS))
def test_every_dataset_kind_is_a_dataset_adapter(kind):
    adapter = dataset_adapter(DatasetConfig(name="d", kind=kind, location="x", options=REQUIRED_OPTIONS.get(kind, {})))
    assert isinstance(adapter, DatasetAdapter) and adapter.kind == kind


def test_unknown_kinds_name_the_entry_and_the_choices():
    with pytest.raises(ValueError, match="models.m: no adapter for kind 'resnet'; known kinds: clip, emonet, fer_xception"):
        adapter_class(MODEL_ADAPTERS, "resnet", "models.m")
    with pytest.raises(ValueError, match="'resnet' is not a known kind; use one of: fer_xception"):
        ModelConfig(name="m", kind="resnet", version="v1")


def test_options_errors_name_the_key():
    from inference.models.imported import ImportedOptions, ImportedOptionsError

    cfg = ModelConfig(name="ext", kind="imported", family="vlm", version="v1", options={"protocol": ["a"]})
    with pytest.raises(ImportedOptionsError, match=r"models.ext.options.protocol: Input should be a valid string"):
        parse_options(ImportedOptions, cfg, ImportedOptionsError)


def _images(root: Path) -> list[ImageRecord]:
    return [ImageRecord(f"img/{i}.jpg", root / f"{i}.jpg", f"hash{i}", "happy", f"p{i}", None, None, None, 1, 1)
            for i in range(3)]


def _evaluate(tmp_path: Path, rows: list[dict]):
    (tmp_path / "preds.csv").write_text(pd.DataFrame(rows).to_csv(index=False))
    cfg = ModelConfig(name="ext", kind="imported", family="vlm", version="run-1", options={"files": {"ds": "preds.csv"}})
    model = build_model(cfg, tmp_path, resolve=lambda p: tmp_path / p, dataset="ds")
    evaluation = model.evaluate(_images(tmp_path), EvaluationContext())
    started = datetime(2025, 1, 1, tzinfo=timezone.utc)
    return cfg, evaluation, evaluation_rows(evaluation, run_id="r1", model=cfg, dataset="ds", n_images=3,
                                            started=started, discovery=Discovery())


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = ("predictions", "model_runs", "model_versions", "quarantine", "transport_failures")
    return {t: con.execute(f"select count(*) from raw.{t}").fetchone()[0] for t in tables}


def test_evaluate_reports_answers_quarantine_and_its_sources(tmp_path):
    _, evaluation, rows = _evaluate(tmp_path, [{"image": "img/0.jpg", "label": "happy"},
                                               {"image": "img/1.jpg", "label": " SAD "},
                                               {"image": "img/7.jpg", "label": "sad"}])
    assert [a.predicted_label for a in evaluation.answers] == ["happy", "SAD"]  # label_key matches "sad"
    assert evaluation.label_set == "canonical" and evaluation.usage is None
    assert [q.row_number for q in evaluation.quarantined] == [3]
    assert evaluation.quarantine_sources == [str(tmp_path / "preds.csv")]
    assert rows.model_run.loc[0, "n_answers"] == 2 and rows.model_version["discovered_by"] == "config"


def test_write_evaluation_replaces_the_slice_in_one_transaction(tmp_path):
    _, _, rows = _evaluate(tmp_path, [{"image": "img/0.jpg", "label": "happy"}, {"image": "img/9.jpg", "label": "x"}])
    with warehouse.writer(tmp_path / "w.duckdb") as con:
        warehouse.write_evaluation(con, SLICE, rows)
        assert _counts(con) == {"predictions": 1, "model_runs": 1, "model_versions": 1, "quarantine": 1,
                                "transport_failures": 0}
        warehouse.write_evaluation(con, SLICE, rows)  # a re-run replaces, never duplicates
        assert _counts(con)["predictions"] == 1 and _counts(con)["model_runs"] == 1
        before = _counts(con)
        # a broken model_runs frame (written last) rolls back every table written before it
        broken = warehouse.EvaluationRows(
            transport_failures=rows.transport_failures, quarantined=rows.quarantined.iloc[:0],
            quarantine_sources=rows.quarantine_sources, predictions=rows.predictions.iloc[:0],
            model_run=rows.model_run.assign(no_such_column=1),
        )
        with pytest.raises(duckdb.BinderException):
            warehouse.write_evaluation(con, SLICE, broken)
        assert _counts(con) == before


def test_a_run_without_answers_records_only_why(tmp_path):
    _, evaluation, rows = _evaluate(tmp_path, [{"image": "img/9.jpg", "label": "happy"}])
    assert evaluation.answers == [] and rows.predictions is None and rows.model_run is None
    with warehouse.writer(tmp_path / "w.duckdb") as con:
        warehouse.write_evaluation(con, SLICE, rows)
        assert _counts(con) == {"predictions": 0, "model_runs": 0, "model_versions": 0, "quarantine": 1,
                                "transport_failures": 0}


def test_write_dataset_keeps_the_quarantine_rows_of_model_files(tmp_path):
    from inference.datasets.base import QuarantinedRow
    from inference.frames import quarantined_rows_frame

    model_file = str(tmp_path / "preds.csv")
    rows = [QuarantinedRow(model_file, 1, "img/9.jpg", "unknown image"), QuarantinedRow("m.csv", 2, None, "bad")]
    empty = pd.DataFrame({"dataset": pd.Series(dtype=str)})
    with warehouse.writer(tmp_path / "w.duckdb") as con:
        warehouse.replace_quarantine(con, "ds", quarantined_rows_frame("ds", rows))
        for _ in range(2):  # re-running ingestion replaces its own rows only
            warehouse.write_dataset(con, "ds", images=empty, ratings=empty, keep_sources=[model_file],
                                    quarantined=quarantined_rows_frame("ds", rows[1:]))
        got = con.execute("select source from raw.quarantine order by source").fetchall()
    assert sorted(got) == sorted([("m.csv",), (model_file,)])
