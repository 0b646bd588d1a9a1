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

Audit sampling (app/core/audit_sampling.py) works the same way: PASS results that their
result_uid picks at `sample_rate` (0 = off, the agent sets the project's rate) have
their images written as PNG files into `outbox-samples/` and recorded as pending samples
in the same transaction as the results. After its result has gone, the forwarder adds
each sample to the project (`send_sample`) and then deletes it; a resent image is found
by its content hash and stored once. Samples back off on their own when they fail, so
a share refusing images never slows the results down.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from app.core import atomic
from app.core.errors import DiskFullError, LinesideError
from app.core.imageio import to_bgr8
from app.core.monitoring import should_sample_uid

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
SAMPLES_DIR = "outbox-samples"
SAMPLE_BATCH = 8  # sample images a forwarder round adds: each is a file on the share
# Fast PNG: the file is written on the writer's path (1 part in 200); the project
# re-encodes it when it stores it.
_SAMPLE_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]

_SCHEMA = ("""
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    result_uid TEXT NOT NULL UNIQUE,
    result TEXT NOT NULL
)""", """
CREATE TABLE IF NOT EXISTS outbox_samples (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    result_uid TEXT NOT NULL,
    view INTEGER NOT NULL,
    model_version TEXT NOT NULL,
    file TEXT NOT NULL,
    UNIQUE (result_uid, view)
)""")
SendSample = Callable[[np.ndarray, str, str], object]  # (image, result_uid, model_version)


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
    `sample_rate` (0 = off) picks PASS results for audit sampling; `pending_samples()`
    is how many sample images wait.
    """

    def __init__(self, path: Path | str, station: str, max_rows: int = MAX_ROWS,
                 on_alarm: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.station = station
        self.max_rows = int(max_rows)
        self.on_alarm = on_alarm
        self.sent = 0  # results the plant database confirmed since this outbox was opened
        self.samples_sent = 0
        self.last_error: str | None = None
        self.sample_rate = 0.0  # off until the agent knows the project's rate
        self.samples_dir = self.path.parent / SAMPLES_DIR
        self._send_sample: SendSample | None = None
        self._sample_failures, self._samples_retry_at = 0, 0.0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # One connection for the writer and the forwarder, each statement under _lock;
            # the network call happens outside it.
            self._conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")
            with self._conn:
                for statement in _SCHEMA:
                    self._conn.execute(statement)
            self._pending = int(self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            files = {name for (name,) in self._conn.execute("SELECT file FROM outbox_samples")}
            self._pending_samples = len(files)
            self._remove_stray_sample_files(files)
        except sqlite3.Error as exc:
            raise LinesideError(f"The station's outbox {self.path} cannot be opened: {exc}.") from exc
        self._lock = threading.Lock()
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._drain_until = 0.0
        self._thread: threading.Thread | None = None
        self._alarmed_at = 0.0

    # -- the writer's side ---------------------------------------------------------------

    def keeps(self, result: "PartResult") -> bool:
        """Whether the line must keep the part's images until its commit: a PASS part
        its result_uid samples (given here, on the inspection thread, so it decides)."""
        if not result.passed or self.sample_rate <= 0:
            return False
        if result.result_uid is None:
            result.result_uid = new_result_uid()
        return should_sample_uid(result.result_uid, self.sample_rate)

    def commit(self, results: list["PartResult"]) -> None:
        """Store *results* durably (LinesideError when the disk refuses: the line retries).
        A result keeps the result_uid it got at its first try, so a retry adds it once."""
        for result in results:
            if result.result_uid is None:
                result.result_uid = new_result_uid()
        samples = [sample for result in results for sample in self._write_sample(result)]
        self.add([result_row(r, self.station) for r in results], samples)

    def _write_sample(self, result: "PartResult") -> list[tuple]:
        """The sample rows of *result* once its PNG files are on disk; none when it is not
        sampled. A file that cannot be written loses the sample, never the result."""
        if not (result.passed and result.images and should_sample_uid(result.result_uid, self.sample_rate)):
            return []
        rows: list[tuple] = []
        try:
            for view, image in enumerate(result.images):
                name = f"{result.result_uid}-{view}.png"
                if image.dtype not in (np.uint8, np.uint16):
                    image = to_bgr8(image)
                ok, png = cv2.imencode(".png", image, _SAMPLE_PNG)
                if not ok:
                    raise LinesideError("the image could not be encoded as PNG")
                atomic.write_bytes(self.samples_dir / name, png.tobytes())
                rows.append((result.result_uid, view, str(result.model_version or ""), name))
        except (OSError, LinesideError, cv2.error) as exc:
            log.warning("outbox: the audit sample of result %s is lost: %s", result.result_uid, exc)
            for _, _, _, name in rows:
                (self.samples_dir / name).unlink(missing_ok=True)
            return []
        return rows

    def add(self, rows: list[dict], samples: list[tuple] = ()) -> int:
        """Store rows of Project.record_results' shape, and *samples* (result_uid, view,
        model_version, file) in the same transaction; how many rows were new."""
        values = [(row["result_uid"], json.dumps(row)) for row in rows]
        try:
            with self._lock, self._conn:
                before = self._conn.total_changes
                self._conn.executemany("INSERT OR IGNORE INTO outbox (result_uid, result) VALUES (?, ?)", values)
                added = self._conn.total_changes - before
                if samples:
                    before = self._conn.total_changes
                    self._conn.executemany("INSERT OR IGNORE INTO outbox_samples (result_uid, view, model_version, "
                                           "file) VALUES (?, ?, ?, ?)", samples)  # fmt: skip
                    self._pending_samples += self._conn.total_changes - before
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

    def pending_samples(self) -> int:
        return self._pending_samples

    @property
    def over_capacity(self) -> bool:
        return self._pending > self.max_rows

    # -- the forwarder ---------------------------------------------------------------------

    def start(self, send: Callable[[list[dict]], object], send_sample: SendSample | None = None) -> None:
        """Forward waiting results with *send* (it raises when they did not reach the
        database), then waiting samples with *send_sample* (none are sent without one)."""
        self._send_sample = send_sample
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

    def forward_samples_once(self, send_sample: SendSample) -> int:
        """Add the oldest waiting samples whose result has gone; how many went. Raises what
        *send_sample* raised, and that sample and the ones after it stay."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT s.id, s.result_uid, s.model_version, s.file FROM outbox_samples s WHERE NOT EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.result_uid = s.result_uid) ORDER BY s.id LIMIT ?", (SAMPLE_BATCH,)
            ).fetchall()  # fmt: skip
        for ident, result_uid, model_version, name in rows:
            path = self.samples_dir / name
            image = _read_sample(path)
            if image is None:
                log.error("outbox: the audit sample %s is missing or unreadable; it is dropped", path)
            else:
                send_sample(image, result_uid, model_version)
                self.samples_sent += 1
            # The row goes first: a crash between the two leaves a stray file, removed at the next open.
            with self._lock, self._conn:
                self._conn.execute("DELETE FROM outbox_samples WHERE id = ?", (ident,))
                self._pending_samples -= 1
            path.unlink(missing_ok=True)
        return len(rows)

    def _remove_stray_sample_files(self, recorded: set[str]) -> None:
        """Files of a commit that crashed before its transaction (or of a sample already
        sent): no row points at them."""
        if not self.samples_dir.is_dir():
            return
        with os.scandir(self.samples_dir) as entries:
            for entry in entries:
                if entry.is_file() and entry.name not in recorded:
                    Path(entry.path).unlink(missing_ok=True)

    def _forward_samples(self) -> int:
        """Samples, with a back-off of their own: a share refusing images must not slow
        the results down."""
        if self._send_sample is None or time.monotonic() < self._samples_retry_at:
            return 0
        try:
            sent = self.forward_samples_once(self._send_sample)
        except Exception as exc:  # the share away, the server away: retry later
            self._sample_failures += 1
            if self._sample_failures == 1:
                log.warning("outbox: %d audit samples wait; the project cannot take them: %s",
                            self._pending_samples, str(exc).strip() or type(exc).__name__)
            pause = min(RETRY_MAX_S, RETRY_MIN_S * 2 ** (self._sample_failures - 1))
            self._samples_retry_at = time.monotonic() + pause
            return 0
        self._sample_failures = 0
        return sent

    def _draining_done(self) -> bool:
        # Samples the project keeps refusing are left for the next start, like results.
        samples_go = self._send_sample is not None and self._sample_failures < 2
        waiting = self._pending + (self._pending_samples if samples_go else 0)
        return self._stopping.is_set() and (waiting == 0 or time.monotonic() >= self._drain_until)

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
            sent += self._forward_samples()
            if not sent:
                with self._wake:
                    if self._pending == 0 and not self._stopping.is_set():
                        self._wake.wait(IDLE_POLL_S)
                if self._stopping.is_set():  # only samples in their back-off are left
                    self._pause(self._samples_retry_at - time.monotonic())


def _read_sample(path: Path) -> np.ndarray | None:
    try:
        data = np.fromfile(path, dtype=np.uint8)  # cv2.imread cannot open every path on Windows
    except OSError:
        return None
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


def _decoded(text: str) -> dict:
    row = json.loads(text)
    row["at"] = datetime.fromisoformat(row["at"])
    return row
