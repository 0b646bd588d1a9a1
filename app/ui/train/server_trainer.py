"""A retrain on the training server, seen from the GUI as the same signals as a local one.

The request goes into the project's training queue (app/core/train_jobs.py) and a
`lineside worker` takes it (docs/adr/0011). The worker writes the trainer's own events
into the job; this class reads them back about twice a second and emits them as
TrainerSignals, so the workspace draws a server run with the code that draws a local
one. Every database read and write runs on the worker pool (app/ui/shared/workers.py),
never on the GUI thread: a plant database across the network may take its time.

The outcome comes from the job's state, not from the events: a worker that is stopped
writes an "error" event and puts the job back in the queue, where the next worker
starts it over, so only a finished job says how it ended. The one exception is "done":
the model is saved then, and the job's end (after the learning curve) adds nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from app.core import train_jobs
from app.ui.shared.workers import run_in_background
from app.ui.train.trainer_signals import TrainerSignals

POLL_MS = 500
# After a failed read (the database away for a moment) the next one waits longer.
RETRY_MS = 3000
MAX_QUEUE_LOOKED_AT = 1000


@dataclass(frozen=True)
class JobSnapshot:
    job: train_jobs.Job
    events: list[train_jobs.JobEvent]
    ahead: int  # queued jobs a worker takes before this one (while it waits)


def read_job(project, job_id: int, after_id: int) -> JobSnapshot:
    """The job, its events after *after_id*, and its place in the queue (off the GUI thread)."""
    # The state first, then the events: a worker writes every event before it finishes
    # the job, so once a finished state is read the events read after it are complete.
    job = train_jobs.job(project, job_id)
    events = train_jobs.events_since(project, job_id, after_id)
    ahead = 0
    if job.state == train_jobs.QUEUED:
        queued = train_jobs.jobs(project, (train_jobs.QUEUED,), limit=MAX_QUEUE_LOOKED_AT)
        ahead = sum(1 for other in queued if other.id < job_id)
    return JobSnapshot(job, events, ahead)


def newest_open_job(project) -> train_jobs.Job | None:
    """The newest queued or running job: the one a reopened Train view follows again."""
    found = train_jobs.jobs(project, (train_jobs.QUEUED, train_jobs.RUNNING), limit=1)
    return found[0] if found else None


class ServerTrainer(TrainerSignals):
    """Queues one retrain (or follows one already queued) and reports its events."""

    queued = Signal(object, int)  # the job (train_jobs.Job), how many jobs are ahead of it in the queue
    taken = Signal(object)  # the job, now running on its worker
    cancelling = Signal()  # a cancel was asked for; the worker has not confirmed it yet
    cancel_failed = Signal(str)  # the cancel did not reach the queue: the job runs on, Cancel may be pressed again
    notice = Signal(str)  # a passing problem (the database did not answer); the run goes on

    def __init__(self, parent: QObject | None = None, poll_ms: int = POLL_MS) -> None:
        super().__init__(parent)
        self.poll_ms = poll_ms
        self._project: Any = None
        self._job_id: int | None = None
        self._active = False
        # Bumped whenever following stops or starts over: a read that was under way
        # then delivers into nothing.
        self._generation = 0
        self._reading = False
        self._reset_run_state()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self._poll)

    def _reset_run_state(self) -> None:
        self._after_id = 0
        self._done_event: dict | None = None
        self._last_error: str | None = None
        self._state: str | None = None
        self._worker: str | None = None
        self._ahead: int | None = None
        self._cancel_asked = False

    # -- control ---------------------------------------------------------------------

    @property
    def job_id(self) -> int | None:
        return self._job_id

    def is_running(self) -> bool:
        return self._active

    def start(self, project, options: dict, actor: Any) -> None:
        """Queue a retrain of *project* with *options* (train_jobs.check_options) and follow it."""
        if self._active:
            raise RuntimeError("A training is already running.")
        generation = self._begin(project, None)
        run_in_background(lambda: train_jobs.request_retrain(project, options, actor),
                          lambda job: self._queued_as(generation, job),
                          lambda exc: self._request_failed(generation, exc), owner=self)

    def follow(self, project, job_id: int) -> None:
        """Follow a job already in the queue, from its first event (a reopened Train view)."""
        if self._active:
            raise RuntimeError("A training is already running.")
        self._begin(project, job_id)
        self._timer.start(0)

    def cancel(self) -> None:
        """Ask for the job to be cancelled: at once while it waits, else by its worker
        within a training step or two. `cancelled` follows when the job says so."""
        if not self._active or self._cancel_asked:
            return
        self._cancel_asked = True
        self.cancelling.emit()
        if self._job_id is not None:  # else the request is under way: cancelled once queued
            self._send_cancel()

    def stop_following(self) -> None:
        """Stop reading the job (the window closes, another project opens); the job itself
        goes on: it is the training server's, not this window's."""
        self._generation += 1
        self._timer.stop()
        self._active, self._job_id, self._project, self._reading = False, None, None, False

    # -- following ---------------------------------------------------------------------

    def _begin(self, project, job_id: int | None) -> int:
        self._generation += 1
        self._new_run()
        self._reset_run_state()
        self._project, self._job_id, self._active, self._reading = project, job_id, True, False
        return self._generation

    def _queued_as(self, generation: int, job: train_jobs.Job) -> None:
        if generation != self._generation:
            return
        self._job_id = job.id
        if self._cancel_asked:
            self._send_cancel()
        self._timer.start(0)

    def _request_failed(self, generation: int, exc: Exception) -> None:
        if generation != self._generation:
            return
        self.stop_following()
        self._report(lambda: self.failed.emit(f"The retrain could not be queued for the training server: {exc}"))
        self.finished.emit(-1)

    def _send_cancel(self) -> None:
        project, job_id, generation = self._project, self._job_id, self._generation

        def failed(exc: Exception) -> None:
            if generation == self._generation:
                self._cancel_asked = False
                self.cancel_failed.emit(f"The cancel did not reach the training queue ({exc}); press Cancel again.")

        # The answer needs no handling: the next read shows the job cancelled, or its
        # cancel flag set until the worker stops.
        run_in_background(lambda: train_jobs.request_cancel(project, job_id), None, failed, owner=self)

    def _poll(self) -> None:
        if not self._active or self._job_id is None or self._reading:
            return
        self._reading = True
        project, job_id, after_id, generation = self._project, self._job_id, self._after_id, self._generation
        run_in_background(lambda: read_job(project, job_id, after_id),
                          lambda snapshot: self._apply(generation, snapshot),
                          lambda exc: self._read_failed(generation, exc), owner=self)

    def _read_failed(self, generation: int, exc: Exception) -> None:
        if generation != self._generation:
            return
        self._reading = False
        self.notice.emit(f"The training queue did not answer ({exc}); trying again.")
        self._timer.start(RETRY_MS)

    def _apply(self, generation: int, snapshot: JobSnapshot) -> None:
        if generation != self._generation:
            return
        self._reading = False
        job = snapshot.job
        # The job's state first, its events after: "taken by gpu-1" must not be shown
        # over the progress the worker has written since.
        if job.state == train_jobs.QUEUED and (self._state != job.state or self._ahead != snapshot.ahead):
            self._ahead = snapshot.ahead
            self.queued.emit(job, snapshot.ahead)
        elif job.state == train_jobs.RUNNING and (self._state != job.state or self._worker != job.worker):
            self._worker = job.worker
            self.taken.emit(job)
        if job.cancel_requested and not job.finished and not self._cancel_asked:  # asked at another station
            self._cancel_asked = True
            self.cancelling.emit()
        self._state = job.state
        for stored in snapshot.events:
            if generation != self._generation:  # a slot stopped the following
                return
            self._after_id = stored.id
            self._on_event(stored.event)
        if generation != self._generation:
            return
        if job.finished:
            self._end(job)
        else:
            self._timer.start(self.poll_ms)

    def _on_event(self, event: dict) -> None:
        if self.emit_progress_event(event):
            if event.get("event") == "start":  # a worker started the job (over): forget the last try
                self._done_event, self._last_error = None, None
            return
        kind = event.get("event")
        if kind == "done":  # the model is saved: shown now, while the worker measures its learning curve
            self._done_event = event
            self._report(lambda: self.done.emit(event))
        elif kind == "error":
            self._last_error = str(event.get("message") or "")
            self.log_line.emit(self._last_error)
        # "cancelled": the job's state says so

    def _end(self, job: train_jobs.Job) -> None:
        done_event = self._done_event or {"event": "done", "version": job.result_version}
        error = job.error or self._last_error or "The training failed on the training server."
        self.stop_following()
        if job.state == train_jobs.DONE:
            self._report(lambda: self.done.emit(done_event))
        elif job.state == train_jobs.FAILED:
            self._report(lambda: self.failed.emit(error))
        else:
            self._report(self.cancelled.emit)
        self.finished.emit(0 if job.state == train_jobs.DONE else 1)
