"""The DuckDB warehouse: raw-table DDL, connections that wait out locks, idempotent writes.

(Over 400 lines: ~170 are the raw tables' DDL, kept beside the writers that fill them so that a
column change is one file.)

DuckDB allows one writing process per file. Every writer here holds the file only for the
short transaction that replaces its slice, and retries while another process holds it;
readers work on a snapshot (see `snapshot_for_reading`), so ad hoc SQL never blocks or
breaks a materialization.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import tenacity

log = logging.getLogger(__name__)
RAW_SCHEMA = "raw"

# One row per image of a dataset. Grain: (dataset, image_id).
DATASET_IMAGES_DDL = """
create table if not exists raw.dataset_images (
    dataset        varchar not null,   -- dataset name in benchmark.yaml
    image_id       varchar not null,   -- posix path relative to the dataset root
    image_hash     varchar not null,   -- sha256 of the image file bytes
    label_set      varchar not null,   -- vocabulary of source_label (dbt seed emotion_label_map)
    source_label   varchar not null,   -- the dataset's own emotion label
    identity       varchar,            -- person shown; several images may share one
    race           varchar,            -- as the dataset reports it (mapped by seed race_map)
    gender         varchar,
    age            double,
    width          integer not null,
    height         integer not null,
    extra          json,               -- any further manifest columns
    loaded_at      timestamp not null,
    media_type     varchar,            -- 'image', or 'video' for clips (null: written before it existed = image)
    primary key (dataset, image_id)
)
"""

# Images a dataset kind left out on purpose (a preset's or the config's exclusions), each with
# the reason, so a denominator never shrinks silently. Grain: (dataset, image_id).
DATASET_EXCLUSIONS_DDL = """
create table if not exists raw.dataset_exclusions (
    dataset        varchar not null,
    image_id       varchar not null,   -- posix path relative to the dataset root
    field          varchar not null,   -- what the rule looked at: emotion, race, gender, ...
    value          varchar not null,   -- the image's value, as the dataset writes it
    reason         varchar not null,   -- which rule (preset default or config) and how to change it
    excluded_at    timestamp not null,
    primary key (dataset, image_id)
)
"""

# Rows of a dataset that could not be loaded, with the reason. Grain: (dataset, source, row_number).
QUARANTINE_DDL = """
create table if not exists raw.quarantine (
    dataset        varchar not null,
    source         varchar not null,   -- file that held the row (manifest or folder)
    row_number     integer not null,   -- 1-based data row in that file (0 when not row-based)
    image_path     varchar,
    reason         varchar not null,
    record         json,
    quarantined_at timestamp not null
)
"""

# One row per answer of a model about an image. A model may answer several times per image
# (protocol steps, samples of maj@k, retries), hence the wide grain.
# Grain: (model, model_version, dataset, image_id, protocol, step, sample_index, attempt).
PREDICTIONS_DDL = """
create table if not exists raw.predictions (
    run_id          varchar not null,
    model           varchar not null,
    model_version   varchar not null,
    model_kind      varchar not null,
    label_set       varchar not null,  -- vocabulary of predicted_label (seed emotion_label_map)
    dataset         varchar not null,
    image_id        varchar not null,
    image_hash      varchar not null,
    protocol        varchar not null,  -- e.g. 'classify', 'single', 'maj_at_k', 'context_carry'
    step            integer not null,  -- 1-based step of a multi-step protocol
    step_name       varchar not null,  -- 'emotion', 'valence', 'arousal', ...
    sample_index    integer not null,  -- 0-based sample for maj@k
    attempt         integer not null,  -- 1-based try for retry-until-valid
    prompt_hash     varchar,           -- null for models without prompts
    raw_text        varchar,           -- the model's raw answer (null for classifiers)
    parse_status    varchar not null,  -- ok / repaired / refused / unparseable / off_label / no_face
    predicted_label varchar,           -- null when no valid answer
    predicted_value double,            -- numeric answer (valence / arousal) when step asks for one
    probabilities   json,              -- full probability vector {label: p} when the model gives one
    face_found      boolean,           -- null when no face detection ran
    face_box        json,              -- [x, y, w, h] in the original image
    preprocessing   json,              -- crop, size, colour, normalisation applied
    latency_ms      double,
    input_tokens    integer,
    output_tokens   integer,
    created_at      timestamp not null,
    raw_value       double,            -- numeric answer as the model / file gave it
    value_mapping   varchar,           -- how raw_value became predicted_value, e.g. '[-1, 1] -> [1, 9]: ...'
    primary key (model, model_version, dataset, image_id, protocol, step, sample_index, attempt)
)
"""

# One row per materialization of a (model version x dataset) partition.
MODEL_RUNS_DDL = """
create table if not exists raw.model_runs (
    run_id         varchar not null primary key,
    model          varchar not null,
    model_version  varchar not null,
    model_kind     varchar not null,
    dataset        varchar not null,
    started_at     timestamp not null,
    finished_at    timestamp not null,
    n_images       integer not null,
    n_answers      integer not null,
    n_no_face      integer not null,
    weights_sha256 varchar,
    options        json,               -- model options from the config (never secrets)
    prices         json                -- USD per million tokens per delivery tier, as priced for this
                                       -- run: {"standard": {"input", "output"}, "flex": ..., "batch": ...}
)
"""

# Human ratings of a dataset's images, one row per rater x image x dimension.
# Grain: (dataset, rater, image_id, dimension).
HUMAN_RATINGS_DDL = """
create table if not exists raw.human_ratings (
    dataset        varchar not null,
    rater          varchar not null,   -- rater id as the ratings file gives it
    image_id       varchar not null,   -- image of raw.dataset_images (path relative to the dataset root)
    dimension      varchar not null,   -- 'emotion' (categorical) or a numeric one: valence, arousal, ...
    value          double,             -- numeric rating on [scale_min, scale_max]; null for 'emotion'
    label          varchar,            -- 'emotion' only: the label, in the dataset's label_set
    scale_min      double,             -- scale of numeric dimensions; null for 'emotion'
    scale_max      double,
    loaded_at      timestamp not null,
    primary key (dataset, rater, image_id, dimension)
)
"""

# Requests of a VLM that never got a model answer after the engine's retries (rate limits,
# timeouts, server errors, safety blocks, ...). Never answers: they stay out of every accuracy
# denominator. Grain: (model, model_version, dataset, image_id, protocol, step, sample_index, attempt).
TRANSPORT_FAILURES_DDL = """
create table if not exists raw.transport_failures (
    run_id         varchar not null,
    model          varchar not null,
    model_version  varchar not null,
    dataset        varchar not null,
    image_id       varchar not null,
    image_hash     varchar not null,
    protocol       varchar not null,
    step           integer not null,   -- step of the protocol that got no answer
    step_name      varchar not null,
    sample_index   integer not null,
    attempt        integer not null,   -- try (retry-until-valid) whose request failed
    kind           varchar not null,   -- rate_limited / timeout / server_error / safety_block / bad_response / client_error / deadline
    status         integer,            -- HTTP status when there was one
    message        varchar,            -- what went wrong (secrets scrubbed)
    created_at     timestamp not null,
    primary key (model, model_version, dataset, image_id, protocol, step, sample_index, attempt)
)
"""

# Image embeddings of embedding models (CLIP), for probes and later analysis.
# Grain: (model, model_version, dataset, image_id).
IMAGE_EMBEDDINGS_DDL = """
create table if not exists raw.image_embeddings (
    run_id         varchar not null,
    model          varchar not null,
    model_version  varchar not null,
    dataset        varchar not null,
    image_id       varchar not null,
    image_hash     varchar not null,
    dim            integer not null,
    embedding      float[] not null,
    created_at     timestamp not null,
    primary key (model, model_version, dataset, image_id)
)
"""

# Every model version the warehouse has seen: when and how it was discovered.
# Grain: (model, model_version).
MODEL_VERSIONS_DDL = """
create table if not exists raw.model_versions (
    model          varchar not null,
    model_version  varchar not null,
    model_kind     varchar not null,
    discovered_at  timestamp not null,   -- first seen (sensor tick, or first evaluation if pinned)
    discovered_by  varchar not null,     -- 'config' or 'sensor:<provider>'
    discovered_from varchar,             -- provider URL / repo / folder (never a secret)
    first_run_id   varchar not null,
    primary key (model, model_version)
)
"""

# One row per batch submitted to a provider's batch API (models.<name>.options.delivery: batch),
# written before anything is sent, updated as it is polled and read (inference.batch_ledger).
# Grain: ledger_id (ours; sent as the batch's metadata, so a batch created by a process killed
# before it could record the provider's id is found again by listing the batches).
API_BATCHES_DDL = """
create table if not exists raw.api_batches (
    ledger_id      varchar not null primary key,
    model          varchar not null,
    model_version  varchar not null,
    dataset        varchar not null,
    provider       varchar not null,   -- 'openai'
    batch_id       varchar,            -- the provider's id; null until it answered the creation
    input_file_id  varchar,
    custom_ids     json not null,      -- the requests' keys (response-cache keys), in file order
    n_requests     integer not null,
    state          varchar not null,   -- submitting / validating / in_progress / finalizing / completed /
                                       -- expired / failed / cancelled / never_sent
    ingested       boolean not null,   -- its answers are in the response cache
    request_errors json,               -- {custom_id: {kind, status, message}}: requests it failed
    n_answered     integer,
    input_tokens   bigint,             -- billed tokens of its answers
    output_tokens  bigint,
    created_at     timestamp not null,
    updated_at     timestamp not null
)
"""

ALL_DDL = (IMAGE_EMBEDDINGS_DDL, MODEL_VERSIONS_DDL, DATASET_IMAGES_DDL, DATASET_EXCLUSIONS_DDL, QUARANTINE_DDL, PREDICTIONS_DDL, MODEL_RUNS_DDL, HUMAN_RATINGS_DDL,
           TRANSPORT_FAILURES_DDL, API_BATCHES_DDL)

# Columns added after a table was first released: warehouses created before get them on
# the next connection (`ensure_raw_schema`). (table, column, type)
ADDED_COLUMNS = (
    ("raw.predictions", "raw_value", "double"),
    ("raw.predictions", "value_mapping", "varchar"),
    ("raw.dataset_images", "media_type", "varchar"),
    ("raw.model_runs", "prices", "json"),
)


# Logged once per wait (at its first retry), so a deployment can count its lock waits
# (scripts/bench_scale_out.py does); the later retries of the same wait only at DEBUG.
LOCK_WAIT_MESSAGE = "waiting for another process's lock on the warehouse"


def _log_lock_wait(state: tenacity.RetryCallState) -> None:
    level = logging.WARNING if state.attempt_number == 1 else logging.DEBUG
    log.log(level, "%s (try %d, %.1f s so far)", LOCK_WAIT_MESSAGE, state.attempt_number, state.seconds_since_start)


def lock_retrying(timeout_s: float) -> tenacity.Retrying:
    """Wait out another process's lock for up to `timeout_s`: the one lock-wait policy.

    Full-jitter exponential backoff (at most 2 s apart), so waiting writers do not wake in step.
    """
    return tenacity.Retrying(
        stop=tenacity.stop_after_delay(timeout_s),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=2.0),
        retry=tenacity.retry_if_exception(
            lambda exc: isinstance(exc, duckdb.IOException) and "lock" in str(exc).lower()
        ),
        before_sleep=_log_lock_wait,
        reraise=True,
    )


def connect(path: Path, *, read_only: bool = False, timeout_s: float = 120.0) -> duckdb.DuckDBPyConnection:
    """Open the warehouse, waiting (with jittered backoff) while another process holds its lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return lock_retrying(timeout_s)(duckdb.connect, str(path), read_only=read_only)


@contextlib.contextmanager
def writer(path: Path, timeout_s: float = 600.0) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-write connection with the raw schema ensured."""
    con = connect(path, timeout_s=timeout_s)
    try:
        ensure_raw_schema(con)
        yield con
    finally:
        con.close()


def ensure_raw_schema(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(f"create schema if not exists {RAW_SCHEMA}")
    for ddl in ALL_DDL:
        con.execute(ddl)
    for table, column, type_ in ADDED_COLUMNS:
        con.execute(f"alter table {table} add column if not exists {column} {type_}")


def replace_quarantine(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    frame: pd.DataFrame,
    *,
    sources: list[str] | None = None,
    keep_sources: list[str] | None = None,
) -> int:
    """Replace quarantined rows of `dataset` by `frame`, touching only some sources.

    `sources`: only rows from these files are replaced (an imported-predictions file);
    `keep_sources`: every row of the dataset is replaced except those from these files
    (ingestion keeps the rows that the model assets quarantined).
    """
    if sources is not None and not sources:
        return 0
    with transaction(con):
        _replace_quarantine_rows(con, dataset, frame, sources=sources, keep_sources=keep_sources)
    return len(frame)


def _replace_quarantine_rows(con: duckdb.DuckDBPyConnection, dataset: str, frame: pd.DataFrame, *,
                             sources: list[str] | None, keep_sources: list[str] | None) -> None:
    """replace_quarantine inside the caller's transaction."""
    clause, params = "dataset = ?", [dataset]
    if sources is not None:
        clause += f" and source in ({', '.join('?' for _ in sources)})"
        params += list(sources)
    if keep_sources:
        clause += f" and source not in ({', '.join('?' for _ in keep_sources)})"
        params += list(keep_sources)
    con.execute(f"delete from raw.quarantine where {clause}", params)
    _insert(con, "raw.quarantine", frame)


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction: committed when the block ends, rolled back (and re-raised) on an error."""
    con.execute("begin transaction")
    try:
        yield con
    except BaseException:
        con.execute("rollback")
        raise
    con.execute("commit")


def _insert(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    if len(frame):
        con.register("_incoming", frame)
        columns = ", ".join(frame.columns)
        con.execute(f"insert into {table} ({columns}) select {columns} from _incoming")
        con.unregister("_incoming")


def _replace_rows(con: duckdb.DuckDBPyConnection, table: str, where: dict[str, str], frame: pd.DataFrame) -> None:
    """replace_slice inside the caller's transaction."""
    clause = " and ".join(f"{col} = ?" for col in where)
    con.execute(f"delete from {table} where {clause}", list(where.values()))
    _insert(con, table, frame)


def replace_slice(
    con: duckdb.DuckDBPyConnection, table: str, where: dict[str, str], frame: pd.DataFrame
) -> int:
    """Atomically replace the rows of `table` matching `where` by `frame`.

    Re-materializing a partition therefore never duplicates rows, and a failure half-way
    leaves the previous slice intact.
    """
    with transaction(con):
        _replace_rows(con, table, where, frame)
    return len(frame)


def write_dataset(con: duckdb.DuckDBPyConnection, dataset: str, *, images: pd.DataFrame,
                  quarantined: pd.DataFrame, ratings: pd.DataFrame, keep_sources: list[str],
                  exclusions: pd.DataFrame | None = None) -> None:
    """Replace a dataset's images, exclusions, human ratings and quarantined rows (except those of
    the model files `keep_sources`, which the model assets replace) in one transaction."""
    with transaction(con):
        _replace_rows(con, "raw.dataset_images", {"dataset": dataset}, images)
        _replace_rows(con, "raw.dataset_exclusions", {"dataset": dataset},
                      exclusions if exclusions is not None else pd.DataFrame())
        _replace_quarantine_rows(con, dataset, quarantined, sources=None, keep_sources=keep_sources)
        _replace_rows(con, "raw.human_ratings", {"dataset": dataset}, ratings)


@dataclass
class EvaluationRows:
    """Every raw row one evaluation of a model version on a dataset writes (see write_evaluation)."""

    transport_failures: pd.DataFrame
    quarantined: pd.DataFrame  # rows of the model's own files (an imported model's predictions file)
    quarantine_sources: list[str]  # those files: their raw.quarantine rows are replaced
    # None when the run gave no answers: the slice's previous answers, runs and embeddings stay.
    predictions: pd.DataFrame | None = None
    embeddings: pd.DataFrame | None = None  # None: the model has none (kept as they are)
    model_run: pd.DataFrame | None = None
    model_version: dict[str, Any] | None = None  # record_model_version's keyword arguments


def write_evaluation(con: duckdb.DuckDBPyConnection, slice_key: dict[str, str], rows: EvaluationRows) -> None:
    """Replace a (model, model_version, dataset) slice in every raw table in ONE transaction, so a
    reader never sees answers of one run next to failures or runs of another."""
    with transaction(con):
        _replace_rows(con, "raw.transport_failures", slice_key, rows.transport_failures)
        if rows.quarantine_sources:
            _replace_quarantine_rows(con, slice_key["dataset"], rows.quarantined,
                                     sources=rows.quarantine_sources, keep_sources=None)
        if rows.predictions is None:
            return
        _replace_rows(con, "raw.predictions", slice_key, rows.predictions)
        if rows.embeddings is not None:
            _replace_rows(con, "raw.image_embeddings", slice_key, rows.embeddings)
        if rows.model_version is not None:
            record_model_version(con, **rows.model_version)
        if rows.model_run is not None:
            _replace_rows(con, "raw.model_runs", slice_key, rows.model_run)


@contextlib.contextmanager
def snapshot_for_reading(path: Path, timeout_s: float = 300.0) -> Iterator[Path]:
    """Copy the warehouse to a private file and yield its path.

    The copy is taken under a read-only connection (so no writer is mid-transaction and
    the WAL is checkpointed) and the lock is released at once, so a long interactive SQL
    session never holds the file that materializations write.
    """
    if not path.exists():
        raise FileNotFoundError(
            f"warehouse {path} does not exist yet; run `make demo` (or materialize assets) first"
        )
    tmpdir = Path(tempfile.mkdtemp(prefix="fer-warehouse-"))
    target = tmpdir / path.name
    con = connect(path, read_only=True, timeout_s=timeout_s)
    try:
        shutil.copyfile(path, target)
        wal = path.with_name(path.name + ".wal")
        if wal.exists():  # left by a writer that died before checkpointing
            shutil.copyfile(wal, target.with_name(target.name + ".wal"))
    finally:
        con.close()
    try:
        yield target
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def record_model_version(
    con: duckdb.DuckDBPyConnection,
    *,
    model: str,
    model_version: str,
    model_kind: str,
    discovered_by: str,
    discovered_at,
    discovered_from: str | None,
    run_id: str,
) -> None:
    """Remember a model version the first time it is evaluated; later runs keep the first row."""
    con.execute(
        """
        insert into raw.model_versions
            (model, model_version, model_kind, discovered_at, discovered_by, discovered_from, first_run_id)
        values (?, ?, ?, ?, ?, ?, ?)
        on conflict do nothing
        """,
        [model, model_version, model_kind, discovered_at, discovered_by, discovered_from, run_id],
    )
