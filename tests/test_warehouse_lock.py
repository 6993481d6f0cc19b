"""Opening the warehouse while another process holds its write lock: the connection waits the
lock out, and the wait is logged once (what a deployment counts as a lock wait)."""

from __future__ import annotations

import logging
import time

from inference import warehouse
from tests.support.lock_holder import hold_write_lock

HOLD_S = 1.5


def test_a_held_lock_is_waited_out_and_logged_once(tmp_path, caplog):
    path = tmp_path / "warehouse.duckdb"
    holder = hold_write_lock(path, HOLD_S)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.DEBUG, logger="inference.warehouse"):
            con = warehouse.connect(path, timeout_s=30)
        waited = time.monotonic() - started
        con.close()
    finally:
        holder.wait(timeout=30)
    waits = [r for r in caplog.records if warehouse.LOCK_WAIT_MESSAGE in r.getMessage()]
    assert waited > 0.5 and waits, "the connection did not wait for the holder"
    assert [r.levelno for r in waits].count(logging.WARNING) == 1
    assert all(r.levelno == logging.DEBUG for r in waits[1:])


def test_a_free_warehouse_logs_no_wait(tmp_path, caplog):
    with caplog.at_level(logging.DEBUG, logger="inference.warehouse"):
        warehouse.connect(tmp_path / "warehouse.duckdb").close()
    assert not [r for r in caplog.records if warehouse.LOCK_WAIT_MESSAGE in r.getMessage()]
