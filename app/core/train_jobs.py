"""The training queue: retrains asked for from any station, run by a training server.

Anyone who can open the project can `request_retrain`; a worker (`lineside worker`,
docs/adr/0011) takes jobs one at a time with `claim_next`, writes the trainer's progress
events into the job (`append_event`), says it is alive (`heartbeat`, which also tells it
of a `request_cancel`) and ends the job with `finish` (or `release` when it is stopped
before the end). Readers follow a job with `events_since` or `watch`.

Two workers never take the same job: on PostgreSQL the claim locks the row it takes
(`SELECT ... FOR UPDATE SKIP LOCKED`, so a second worker skips it instead of waiting);
on SQLite every write transaction holds the database's single write lock (BEGIN
IMMEDIATE), which gives the same guarantee.

Queue writes on PostgreSQL do not take the store's advisory write lock (app/core/plant.py):
they are no part of the audit chain that lock orders, and a worker writing progress a
few times a second must not queue behind a station's import, nor hold it up.

Times come from the database server's clock where there is one, so that a worker's
heartbeat and another worker's staleness check compare one clock, not two PCs'.

A worker also says it is there while it waits (`worker_alive`, `worker_gone`): one row
per worker in the project's settings, `worker/<name>`, so the desktop app can tell an
idle training server from none at all (`workers`) without a schema change.
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import sqlalchemy as sa

from app.core import db
from app.core.errors import LinesideError

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)
# What heartbeat() tells the worker.
ALIVE, CANCEL, LOST = "alive", "cancel", "lost"

MODES = ("auto", "supervised", "good-only", "combined")
DEVICES = ("auto", "cpu", "cuda")
DEFAULT_OPTIONS: dict[str, Any] = {"mode": "auto", "epochs": None, "false_reject_target": None, "device": "auto",
                                   "seed": 0, "time_budget_s": None}
HEARTBEAT_S = 5.0  # how often a worker says it is alive (and learns of a cancel)
# A running job whose worker has not said so for this long is taken to be orphaned.
STALE_AFTER_S = 5 * 60.0
# Claims before a job that keeps losing its worker is failed instead of queued again.
MAX_ATTEMPTS = 2
# Worker presence: states, how often a worker says it is there, and how long after its
# last word it still counts as online (a few missed writes: a busy database, a slow poll).
IDLE, BUSY, STOPPED = "idle", "busy", "stopped"
PRESENCE_S = 15.0
ONLINE_WITHIN_S = 60.0
PRESENCE_PREFIX = "worker/"


@dataclass(frozen=True)
class Job:
    id: int
    requested_by: str
    requested_at: datetime
    options: dict
    state: str
    worker: str | None
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    cancel_requested: bool
    attempts: int
    result_version: str | None
    error: str | None

    @property
    def finished(self) -> bool:
        return self.state in FINISHED


@dataclass(frozen=True)
class JobEvent:
    id: int
    job_id: int
    at: datetime
    event: dict


@dataclass(frozen=True)
class WorkerPresence:
    name: str
    host: str
    device: str  # cpu or cuda
    gpus: int | None  # known only where the worker could ask torch
    state: str  # IDLE, BUSY or STOPPED
    seen: datetime
    pid: int | None
    online: bool  # said it is there within ONLINE_WITHIN_S, and has not stopped


def _job(row: sa.RowMapping) -> Job:
    return Job(**{key: row[key] for key in Job.__dataclass_fields__})


def check_options(options: dict | None) -> dict:
    """The job's options with defaults filled in (LinesideError naming what is wrong)."""
    given = dict(options or {})
    unknown = sorted(set(given) - set(DEFAULT_OPTIONS))
    if unknown:
        raise LinesideError(f"Unknown training option(s) {', '.join(unknown)}; known: {', '.join(DEFAULT_OPTIONS)}.")
    out = {**DEFAULT_OPTIONS, **{k: v for k, v in given.items() if v is not None}}
    if out["mode"] not in MODES:
        raise LinesideError(f"Training mode {out['mode']!r} is not one of {', '.join(MODES)}.")
    if out["device"] not in DEVICES:
        raise LinesideError(f"Device {out['device']!r} is not one of {', '.join(DEVICES)}.")
    epochs = out["epochs"]
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise LinesideError(f"Epochs must be a whole number of 1 or more, not {epochs!r}.")
    target = out["false_reject_target"]
    if target is not None and not (isinstance(target, (int, float)) and 0 < target < 0.5):
        raise LinesideError(f"The false-reject target must be a rate between 0 and 0.5 (e.g. 0.01), not {target!r}.")
    budget = out["time_budget_s"]
    if budget is not None and not (isinstance(budget, (int, float)) and 0 < budget < float("inf")):
        raise LinesideError(f"The time budget must be a number of seconds above 0, not {budget!r}.")
    if isinstance(out["seed"], bool) or not isinstance(out["seed"], int) or not 0 <= out["seed"] < 2**32:
        raise LinesideError(f"The seed must be a whole number from 0 to {2**32 - 1}, not {out['seed']!r}.")
    return out


def _actor(actor: Any) -> str:
    name = getattr(actor, "name", actor)  # a signed-in Person, or a name
    return str(name or "").strip() or "unknown"


# -- transactions ------------------------------------------------------------------


@contextmanager
def _queue_write(project) -> Iterator[sa.Connection]:
    """A short write transaction on the queue, without the plant-wide write lock (see the
    module's docstring): the store's own lock-free write, as station results use."""
    with project._write(lock=False) as conn:
        yield conn


def _now(conn: sa.Connection) -> datetime:
    if conn.dialect.name == "postgresql":
        return conn.scalar(sa.select(sa.func.now())).astimezone(timezone.utc)
    return datetime.now(timezone.utc)


def _get(conn: sa.Connection, job_id: int) -> Job:
    row = conn.execute(sa.select(db.train_jobs).where(db.train_jobs.c.id == job_id)).mappings().first()
    if row is None:
        raise LinesideError(f"There is no training job {job_id} in this project; 'lineside jobs PROJECT' lists them.")
    return _job(row)


# -- asking, looking -----------------------------------------------------------------


def request_retrain(project, options: dict | None = None, actor: Any = None) -> Job:
    """Queue a retrain with *options* (see DEFAULT_OPTIONS) on behalf of *actor*."""
    options = check_options(options)
    with _queue_write(project) as conn:
        result = conn.execute(db.train_jobs.insert().values(
            requested_by=_actor(actor), requested_at=_now(conn), options=options, state=QUEUED,
            cancel_requested=False, attempts=0))
        return _get(conn, result.inserted_primary_key[0])


def job(project, job_id: int) -> Job:
    with project._read() as conn:
        return _get(conn, job_id)


def jobs(project, states: tuple[str, ...] | None = None, limit: int = 20) -> list[Job]:
    """The newest jobs first."""
    query = sa.select(db.train_jobs).order_by(db.train_jobs.c.id.desc()).limit(limit)
    if states:
        query = query.where(db.train_jobs.c.state.in_(states))
    with project._read() as conn:
        return [_job(row) for row in conn.execute(query).mappings()]


def request_cancel(project, job_id: int) -> Job:
    """Cancel a queued job at once; ask the worker of a running one to stop (it does
    within a training step or two and marks the job cancelled). A finished job stays
    as it is."""
    table = db.train_jobs
    with _queue_write(project) as conn:
        current = _get(conn, job_id)
        if current.state == QUEUED:
            conn.execute(table.update().where(table.c.id == job_id, table.c.state == QUEUED).values(
                state=CANCELLED, finished_at=_now(conn), error="cancelled before a worker took it"))
        elif current.state == RUNNING:
            conn.execute(table.update().where(table.c.id == job_id).values(cancel_requested=True))
        return _get(conn, job_id)


# -- the worker's side ---------------------------------------------------------------


def claim_next(project, worker_name: str) -> Job | None:
    """Take the oldest queued job for *worker_name* (now running); None when none waits."""
    table = db.train_jobs
    with _queue_write(project) as conn:
        # SQLite has no row locks; SQLAlchemy leaves FOR UPDATE out there, and the
        # transaction's write lock does the job (see the module's docstring).
        query = (sa.select(table.c.id).where(table.c.state == QUEUED).order_by(table.c.id).limit(1)
                 .with_for_update(skip_locked=True))
        job_id = conn.scalar(query)
        if job_id is None:
            return None
        now = _now(conn)
        conn.execute(table.update().where(table.c.id == job_id).values(
            state=RUNNING, worker=worker_name, started_at=now, heartbeat_at=now, finished_at=None,
            attempts=table.c.attempts + 1))
        return _get(conn, job_id)


def _mine(job_id: int, worker_name: str):
    table = db.train_jobs
    return sa.and_(table.c.id == job_id, table.c.state == RUNNING, table.c.worker == worker_name)


def heartbeat(project, job_id: int, worker_name: str) -> str:
    """Say the worker is alive; ALIVE, CANCEL (someone asked to cancel) or LOST (the job
    is no longer this worker's: it was taken for stale and queued again or ended)."""
    table = db.train_jobs
    with _queue_write(project) as conn:
        updated = conn.execute(table.update().where(_mine(job_id, worker_name)).values(heartbeat_at=_now(conn)))
        if updated.rowcount == 0:
            return LOST
        return CANCEL if conn.scalar(sa.select(table.c.cancel_requested).where(table.c.id == job_id)) else ALIVE


def _plain(value: Any) -> Any:
    # numpy scalars (metrics) carry .item(); anything else stranger is kept as text.
    return value.item() if hasattr(value, "item") else str(value)


def append_event(project, job_id: int, event: dict) -> int:
    """Store one progress event of the job (app/core/trainer_events.py); its id."""
    plain = json.loads(json.dumps(event, default=_plain))
    with _queue_write(project) as conn:
        result = conn.execute(db.train_job_events.insert().values(job_id=job_id, at=_now(conn), event=plain))
        return int(result.inserted_primary_key[0])


def events_since(project, job_id: int, after_id: int = 0) -> list[JobEvent]:
    """The job's events after event *after_id*, oldest first.

    One worker writes a job's events one committed transaction after another, so their
    ids grow in the order they were written and a reader that passes the last id it saw
    misses none.
    """
    table = db.train_job_events
    query = sa.select(table).where(table.c.job_id == job_id, table.c.id > after_id).order_by(table.c.id)
    with project._read() as conn:
        return [JobEvent(row["id"], row["job_id"], row["at"], row["event"]) for row in conn.execute(query).mappings()]


def finish(project, job_id: int, worker_name: str, state: str, result_version: str | None = None,
           error: str | None = None) -> Job | None:
    """End the worker's running job as *state* (done, failed or cancelled); None when the
    job was no longer this worker's (see heartbeat), which leaves it untouched."""
    if state not in FINISHED:
        raise ValueError(f"a job finishes as one of {FINISHED}, not {state!r}")
    table = db.train_jobs
    with _queue_write(project) as conn:
        updated = conn.execute(table.update().where(_mine(job_id, worker_name)).values(
            state=state, finished_at=_now(conn), result_version=result_version, error=error))
        return _get(conn, job_id) if updated.rowcount else None


def record_result(project, job_id: int, worker_name: str, version: str) -> bool:
    """Note on the worker's running job that its model *version* is saved (the trainer's
    "done"), while the trainer goes on with the learning curve: a job whose worker is
    lost after this is done, not run again. False when the job was no longer this worker's."""
    with _queue_write(project) as conn:
        return bool(conn.execute(db.train_jobs.update().where(_mine(job_id, worker_name))
                                 .values(result_version=version)).rowcount)


def release(project, job_id: int, worker_name: str, reason: str) -> Job | None:
    """Put the worker's running job back in the queue (the worker is being stopped):
    nothing of a half-run is kept, the next worker starts it over. Not counted as an
    attempt: the job did not stop its worker. A job with a cancel pending is cancelled."""
    table = db.train_jobs
    with _queue_write(project) as conn:
        if conn.scalar(sa.select(table.c.cancel_requested).where(_mine(job_id, worker_name))):
            updated = conn.execute(table.update().where(_mine(job_id, worker_name)).values(
                state=CANCELLED, finished_at=_now(conn), error=reason))
        else:
            updated = conn.execute(table.update().where(_mine(job_id, worker_name)).values(
                state=QUEUED, worker=None, started_at=None, heartbeat_at=None, error=reason,
                attempts=sa.func.max(table.c.attempts - 1, 0) if conn.dialect.name == "sqlite"
                else sa.func.greatest(table.c.attempts - 1, 0)))
        return _get(conn, job_id) if updated.rowcount else None


def recover_stale(project, stale_after_s: float = STALE_AFTER_S) -> list[Job]:
    """Running jobs whose worker has not said it is alive for *stale_after_s*: put back
    in the queue, or failed after MAX_ATTEMPTS claims, or cancelled if that was asked.

    Done, when the worker had saved the model (record_result) and was only measuring its
    learning curve. Queued again, because before that a retrain has no effect (the new
    version is registered in one step; a half-written version folder is removed as a leftover),
    so running it again is safe, and a worker lost to a power cut or a reboot should not
    cost the person who asked for it. Failed after MAX_ATTEMPTS, because a job that
    takes its worker down every time (out of memory, say) must not go round for ever.
    """
    table = db.train_jobs
    recovered = []
    with _queue_write(project) as conn:
        now = _now(conn)
        query = (sa.select(table).where(table.c.state == RUNNING,
                                        table.c.heartbeat_at < now - timedelta(seconds=stale_after_s))
                 .order_by(table.c.id).with_for_update(skip_locked=True))
        for stale in [_job(row) for row in conn.execute(query).mappings()]:
            seen = stale.heartbeat_at.astimezone().strftime("%Y-%m-%d %H:%M:%S") if stale.heartbeat_at else "never"
            lost = f"worker {stale.worker} stopped answering (last heard of {seen})"
            if stale.result_version:  # the model was saved; only its learning curve was lost
                values = {"state": DONE, "finished_at": now}
            elif stale.cancel_requested:
                values = {"state": CANCELLED, "finished_at": now, "error": f"{lost}; a cancel had been asked for"}
            elif stale.attempts < MAX_ATTEMPTS:
                values = {"state": QUEUED, "worker": None, "started_at": None, "heartbeat_at": None,
                          "error": f"{lost}; put back in the queue to start over"}
            else:
                values = {"state": FAILED, "finished_at": now,
                          "error": f"{lost}; {stale.attempts} workers in a row stopped while running this job, so "
                                   "the job itself may be what stops them (out of memory?). Check the workers' logs, "
                                   "then request the retrain again"}
            conn.execute(table.update().where(table.c.id == stale.id, table.c.state == RUNNING).values(**values))
            recovered.append(_get(conn, stale.id))
    return recovered


# -- worker presence -------------------------------------------------------------------


def _set_presence(project, name: str, state: str, device: str | None, gpus: int | None) -> None:
    key = PRESENCE_PREFIX + name
    table = db.settings
    with _queue_write(project) as conn:
        if device is None:  # worker_gone: keep what the worker last said it has
            before = conn.scalar(sa.select(table.c.value).where(table.c.key == key)) or {}
            device, gpus = before.get("device", "cpu"), before.get("gpus")
        value = {"host": socket.gethostname(), "device": device, "gpus": gpus, "state": state,
                 "seen": _now(conn).isoformat(), "pid": os.getpid()}
        # Delete and insert, as Project.set_setting does: one statement on either database.
        conn.execute(sa.delete(table).where(table.c.key == key))
        conn.execute(table.insert().values(key=key, value=value))


def worker_alive(project, name: str, state: str, device: str = "cpu", gpus: int | None = None) -> None:
    """Say worker *name* is there, IDLE (waiting for a job) or BUSY, training on *device*
    (cpu or cuda, with *gpus* GPUs where known). A worker says so every PRESENCE_S."""
    if state not in (IDLE, BUSY):
        raise ValueError(f"a live worker is {IDLE} or {BUSY}, not {state!r}")
    _set_presence(project, name, state, device, gpus)


def worker_gone(project, name: str) -> None:
    """Worker *name* stopped cleanly: it is offline at once, not after ONLINE_WITHIN_S."""
    _set_presence(project, name, STOPPED, None, None)


def _presence(name: str, value: Any, now: datetime, online_within_s: float) -> WorkerPresence | None:
    try:
        seen = datetime.fromisoformat(value["seen"])
        state = str(value["state"])
    except (TypeError, KeyError, ValueError):
        return None  # not a row a worker wrote: ignored rather than fatal to the status line
    seen = seen if seen.tzinfo else seen.replace(tzinfo=timezone.utc)
    online = state != STOPPED and (now - seen).total_seconds() <= online_within_s
    gpus = value.get("gpus")
    return WorkerPresence(name, str(value.get("host") or "?"), str(value.get("device") or "cpu"),
                          gpus if isinstance(gpus, int) else None, state, seen, value.get("pid"), online)


def workers(project, now: datetime | None = None, online_within_s: float = ONLINE_WITHIN_S) -> list[WorkerPresence]:
    """Every worker that ever said it was there, the most recently seen first; *now*
    defaults to the database's clock (the one the workers' times come from)."""
    table = db.settings
    with project._read() as conn:
        rows = conn.execute(sa.select(table.c.key, table.c.value)
                            .where(table.c.key.startswith(PRESENCE_PREFIX, autoescape=True))).all()
        now = now or _now(conn)
    found = [_presence(key[len(PRESENCE_PREFIX):], value, now, online_within_s) for key, value in rows]
    return sorted((w for w in found if w is not None), key=lambda w: w.seen, reverse=True)


# -- following a job -------------------------------------------------------------------


def watch(project, job_id: int, on_event: Callable[[dict], None], after_id: int = 0, poll_s: float = 1.0,
          stop: Callable[[], bool] = lambda: False) -> Job:
    """Pass each of the job's events to *on_event* in order until the job has finished
    (or *stop* says so); the job as it stands then."""
    while True:
        # The state first, then the events: events are written before the job finishes,
        # so once a finished state is read, the events read after it are all there are.
        current = job(project, job_id)
        for event in events_since(project, job_id, after_id):
            on_event(event.event)
            after_id = event.id
        if current.finished or stop():
            return current
        time.sleep(poll_s)
