"""A plant station's outbox: its results on its own disk first, in the plant database later.

The station's writer commits each batch of results here (`commit`, the LineSession's
sink): one SQLite transaction in WAL mode with synchronous=FULL, so once it returns the
results are on the local disk, and that is when the PLC and the other outputs hear of
them. Neither the network nor the database server is on that path, so the line keeps
judging while they are away.

A forwarder thread sends the waiting rows, oldest first, in batches to the plant
database (`send`, e.g. `Project.record_results`) and deletes them only after that call
returned. A failed call keeps them and is retried with a growing pause (RETRY_MIN_S up
to RETRY_MAX_S). A call that failed after the server had committed (the answer was
lost) sends the same rows again; the plant store skips a result_uid it already holds,
so each result is stored once. Waiting rows survive a crash or a restart and go at the
next start.

Nothing is ever dropped: past `max_rows` waiting results the outbox says so loudly (the
log's error level and `on_alarm`) and keeps accepting them.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from app.core.errors import DiskFullError, LinesideError

if TYPE_CHECKING:
    from app.core.line_session import PartResult

log = logging.getLogger(__name__)

# Rows a forwarder sends in one commit. Catching up after an outage, 16 stations at once
# on a 2-core server: 500 a batch gave a p99 commit of 180 ms, 100 about 60 ms, at tens of
# thousands of results/s either way (benchmarks/results/plant.md).
BATCH_ROWS = 100
RETRY_MIN_S, RETRY_MAX_S = 0.5, 5.0
IDLE_POLL_S = 0.5  # the forwarder also looks without being woken (a row left by a failed send)
MAX_ROWS = 2_000_000  # about a week of a busy line with the database away: time to say so
ALARM_EVERY_S = 60.0
BUSY_TIMEOUT_S = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    result_uid TEXT NOT NULL UNIQUE,
    result TEXT NOT NULL
)"""


def new_result_uid() -> str:
    return uuid.uuid4().hex


def result_row(result: "PartResult", station: str) -> dict:
    """The plant store's inspections row of a committed PartResult (Project.record_results)."""
    return {
        "at": datetime.fromtimestamp(result.at, timezone.utc).isoformat(),
        "model_version": result.model_version,
        "image_sha": result.image_sha,
        "source": result.source[:200],
        "verdict": result.label,
        "score": float(result.score),
        "defect_class": result.defect_class,
        "latency_ms": float(result.timing.get("inspect", 0.0)),
        "station": station,
        "result_uid": result.result_uid,
    }


class Outbox:
    """Results waiting for the plant database, in `path` (a SQLite file of the station's own).

    `commit(results)` stores results (the line's acknowledgement); `start(send)` runs the
    forwarder; `stop(drain_s)` sends what it can within drain_s and ends it; `pending()`
    is how many results wait; `last_error` why the last send failed (None after a success).
    """

    def __init__(self, path: Path | str, station: str, max_rows: int = MAX_ROWS,
                 on_alarm: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.station = station
        self.max_rows = int(max_rows)
        self.on_alarm = on_alarm
        self.sent = 0  # results the plant database confirmed since this outbox was opened
        self.last_error: str | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # One connection for the writer and the forwarder, each statement under _lock;
            # the network call happens outside it.
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._conn:
                self._conn.execute(_SCHEMA)
            self._pending = int(self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
        except sqlite3.Error as exc:
            raise LinesideError(f"The station's outbox {self.path} cannot be opened: {exc}.") from exc
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None
        self._alarmed_at = 0.0

    # -- the writer's side ---------------------------------------------------------------

    def commit(self, results: list["PartResult"]) -> None:
        """Store *results* durably (LinesideError when the disk refuses: the line retries).
        A result keeps the result_uid it got at its first try, so a retry adds it once."""
        for result in results:
            if result.result_uid is None:
                result.result_uid = new_result_uid()
        self.add([result_row(r, self.station) for r in results])

    def add(self, rows: list[dict]) -> int:
        """Store rows of Project.record_results' shape; how many were new."""
        values = [(row["result_uid"], json.dumps(row)) for row in rows]
        try:
            with self._lock, self._conn:
                before = self._conn.total_changes
                self._conn.executemany("INSERT OR IGNORE INTO outbox (result_uid, result) VALUES (?, ?)", values)
                added = self._conn.total_changes - before
                self._pending += added
                pending = self._pending
        except sqlite3.Error as exc:
            error = DiskFullError if "full" in str(exc).lower() else LinesideError
            raise error(f"The station's outbox {self.path} could not store {len(rows)} results: {exc}.") from exc
        with self._wake:
            self._wake.notify_all()
        if pending > self.max_rows:
            self._alarm(pending)
        return added

    def _alarm(self, pending: int) -> None:
        now = time.monotonic()
        if now - self._alarmed_at < ALARM_EVERY_S:
            return
        self._alarmed_at = now
        message = (f"{pending} results wait in the station's outbox {self.path}, more than {self.max_rows}: "
                   f"the plant database has not taken results for a long time ({self.last_error or 'no error'}). "
                   "None is dropped, but the station's disk fills up: restore the connection.")
        log.error(message)
        if self.on_alarm is not None:
            self.on_alarm(message)

    def pending(self) -> int:
        return self._pending

    @property
    def over_capacity(self) -> bool:
        return self._pending > self.max_rows

    # -- the forwarder ---------------------------------------------------------------------

    def start(self, send: Callable[[list[dict]], object]) -> None:
        """Forward waiting results with *send* (it raises when they did not reach the database)."""
        self._thread = threading.Thread(target=self._forward_loop, args=(send,), name="lineside-outbox",
                                        daemon=True)  # fmt: skip
        self._thread.start()

    def stop(self, drain_s: float = 10.0) -> int:
        """Send what waits for up to *drain_s* seconds (less when the database does not
        answer), end the forwarder, close; how many results are left (they go at the next
        start)."""
        self._drain_until = time.monotonic() + max(0.0, drain_s)
        self._stopping.set()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(drain_s + 30.0)  # a send in flight ends by its connect timeout
            if self._thread.is_alive():
                log.error("outbox: the forwarder did not end; %d results stay in %s", self._pending, self.path)
                return self._pending
        self.close()
        return self._pending

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def forward_once(self, send: Callable[[list[dict]], object]) -> int:
        """Send one batch of the oldest waiting results; how many were sent (0: none wait).
        Raises what *send* raised, and the results stay."""
        with self._lock:
            rows = self._conn.execute("SELECT id, result FROM outbox ORDER BY id LIMIT ?", (BATCH_ROWS,)).fetchall()
        if not rows:
            return 0
        send([_decoded(text) for _, text in rows])
        ids = [(ident,) for ident, _ in rows]
        with self._lock, self._conn:
            self._conn.executemany("DELETE FROM outbox WHERE id = ?", ids)
            self._pending -= len(ids)
        self.sent += len(ids)
        return len(ids)

    def _draining_done(self) -> bool:
        return self._stopping.is_set() and (self._pending == 0 or time.monotonic() >= self._drain_until)

    def _pause(self, seconds: float) -> None:
        if self._stopping.is_set():
            seconds = min(seconds, max(0.0, self._drain_until - time.monotonic()))
        with self._wake:
            self._wake.wait(seconds)

    def _forward_loop(self, send: Callable[[list[dict]], object]) -> None:
        failures = failed_while_stopping = 0
        while not self._draining_done():
            try:
                sent = self.forward_once(send)
            except Exception as exc:  # the server away, the share away, a refused login: retry
                failures += 1
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if failures == 1:
                    log.warning("outbox: %d results wait; the plant database cannot take them: %s",
                                self._pending, message)
                self.last_error = message
                if self._stopping.is_set():
                    failed_while_stopping += 1
                    if failed_while_stopping >= 2:
                        break  # stopping while the database is away: the rows go at the next start
                self._pause(min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (failures - 1)))
                continue
            if failures:
                log.info("outbox: the plant database takes results again (%d still waiting)", self._pending)
            failures, self.last_error = 0, None
            if not sent:
                with self._wake:
                    if self._pending == 0 and not self._stopping.is_set():
                        self._wake.wait(IDLE_POLL_S)


def _decoded(text: str) -> dict:
    row = json.loads(text)
    row["at"] = datetime.fromisoformat(row["at"])
    return row
