"""raw.api_batches: the batches a slice submitted to a provider's batch API, kept in whichever
raw store the deployment uses, so that a restarted process -- or another machine -- polls and
ingests them instead of submitting (and paying for) the same requests again.

A row is written BEFORE anything is sent (state 'submitting', with every request key), then
updated with the provider's batch id, each polled state and, once its results were read into
the response cache, `ingested`. Two stores, one interface (`BatchLedger`):
- `WarehouseLedger`: the embedded warehouse file (one short write transaction per update);
- `SliceStoreLedger`: the Parquet slice store (`raw_slices:`), one file per slice, replaced
  atomically on each update (only the slice's own evaluation writes it).
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pandas as pd

from inference import slice_store, warehouse

# The provider's states of a batch that will change no more, and ours for a row whose batch was
# never created (its process died between recording and sending, and no batch names it).
FINAL_STATES = frozenset({"completed", "expired", "failed", "cancelled", "never_sent"})


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass
class BatchRecord:
    """One row of raw.api_batches (see the DDL in inference.warehouse)."""

    model: str
    model_version: str
    dataset: str
    provider: str
    custom_ids: list[str]
    ledger_id: str = field(default_factory=lambda: f"ledger-{uuid.uuid4().hex}")
    batch_id: str | None = None
    input_file_id: str | None = None
    state: str = "submitting"
    ingested: bool = False
    request_errors: dict[str, dict[str, Any]] = field(default_factory=dict)
    n_answered: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    created_at: datetime = field(default_factory=_now)
    updated_at: datetime = field(default_factory=_now)

    @property
    def open(self) -> bool:
        """Its requests are still out: not final, or final but not yet read."""
        return self.state not in FINAL_STATES or (self.state != "never_sent" and not self.ingested)

    def to_row(self) -> dict[str, Any]:
        row = asdict(self)
        row["custom_ids"] = json.dumps(self.custom_ids)
        row["request_errors"] = json.dumps(self.request_errors)
        row["n_requests"] = len(self.custom_ids)
        return row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> BatchRecord:
        names = {f.name for f in fields(cls)}
        values = {k: (None if _missing(v) else v) for k, v in row.items() if k in names}
        values["custom_ids"] = json.loads(values["custom_ids"])
        values["request_errors"] = json.loads(values.get("request_errors") or "{}")
        values["ingested"] = bool(values["ingested"])
        for name in ("n_answered", "input_tokens", "output_tokens"):
            if values.get(name) is not None:
                values[name] = int(values[name])
        return cls(**values)


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


class BatchLedger(Protocol):
    """One slice's raw.api_batches rows."""

    slice_key: dict[str, str]

    def records(self) -> list[BatchRecord]: ...

    def save(self, record: BatchRecord) -> None: ...


def _frame(records: list[BatchRecord]) -> pd.DataFrame:
    frame = pd.DataFrame([r.to_row() for r in records])
    return frame


class WarehouseLedger:
    """raw.api_batches in the embedded warehouse file."""

    def __init__(self, path: Path | str, slice_key: dict[str, str]) -> None:
        self.path = Path(path)
        self.slice_key = dict(slice_key)

    def records(self) -> list[BatchRecord]:
        with warehouse.writer(self.path) as con:
            frame = con.execute(
                "select * from raw.api_batches where model = ? and model_version = ? and dataset = ? "
                "order by created_at, ledger_id",
                [self.slice_key["model"], self.slice_key["model_version"], self.slice_key["dataset"]]).df()
        return [BatchRecord.from_row(row) for row in frame.to_dict("records")]

    def save(self, record: BatchRecord) -> None:
        record.updated_at = _now()
        with warehouse.writer(self.path) as con, warehouse.transaction(con):
            con.execute("delete from raw.api_batches where ledger_id = ?", [record.ledger_id])
            warehouse._insert(con, "raw.api_batches", _frame([record]))


class SliceStoreLedger:
    """raw.api_batches as the slice's own Parquet file in the slice store."""

    def __init__(self, root: str | Path, slice_key: dict[str, str]) -> None:
        self.store = slice_store.SliceStore(root)
        self.slice_key = dict(slice_key)

    def records(self) -> list[BatchRecord]:
        self.store.ensure_layout()
        frame = self.store.read_table("api_batches", self.slice_key)
        return sorted((BatchRecord.from_row(row) for row in frame.to_dict("records")),
                      key=lambda r: (r.created_at, r.ledger_id))

    def save(self, record: BatchRecord) -> None:
        record.updated_at = _now()
        kept = [r for r in self.records() if r.ledger_id != record.ledger_id]
        self.store.replace_slice_table("api_batches", self.slice_key, _frame([*kept, record]))


def open_records(warehouse_path: Path | str, raw_slices: str | None) -> list[BatchRecord]:
    """Every slice's batches whose answers are not yet read (for the sensor that polls them)."""
    query = "select * from {} where not ingested and state <> 'never_sent' order by created_at"
    if raw_slices:
        store = slice_store.SliceStore(raw_slices)
        store.ensure_layout()
        con = duckdb.connect()
        try:
            frame = con.execute(query.format("read_parquet(?, union_by_name = true, hive_partitioning = false)"),
                                [store.table_glob("api_batches")]).df()
        finally:
            con.close()
    else:
        if not Path(warehouse_path).exists():
            return []
        con = warehouse.connect(Path(warehouse_path), read_only=True)
        try:
            frame = con.execute(query.format("raw.api_batches")).df()
        except duckdb.CatalogException:  # a warehouse written before batches existed
            return []
        finally:
            con.close()
    return [BatchRecord.from_row(row) for row in frame.to_dict("records")]


def ledger_for(warehouse_path: Path | str, raw_slices: str | None, slice_key: dict[str, str]) -> BatchLedger:
    """The ledger of a slice in the deployment's raw store."""
    if raw_slices:
        return SliceStoreLedger(raw_slices, slice_key)
    return WarehouseLedger(warehouse_path, slice_key)


__all__ = ["FINAL_STATES", "BatchLedger", "BatchRecord", "SliceStoreLedger", "WarehouseLedger", "ledger_for",
           "open_records"]
