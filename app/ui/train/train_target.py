"""Where a retrain runs: on this PC, or on the training server (docs/adr/0011).

The choice is remembered per project on this PC (in the app's settings, not in the
project): which machine trains is a station's call, and a station that picks the
server must not change what the engineer's PC next to it does.

The server's state comes from the queue and from the workers' presence rows
(train_jobs.workers): how many jobs wait, whether a worker is running one (its
heartbeat), waiting for one, or when the last one was seen. The same read tells the main
window's status bar which server trains (`target_text`); it goes on while the server is
the choice, whether or not the Train tab is on screen, since the status bar always is.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtWidgets import QComboBox, QLabel, QWidget

from app.core import train_jobs
from app.ui.shared.workers import run_in_background

ON_THIS_PC, ON_SERVER = "on this PC", "on the training server"
SERVER_PROJECTS_KEY = "train/on_server_projects"  # the projects this PC retrains on the server
STATUS_REFRESH_MS = 10_000
MAX_QUEUE_LOOKED_AT = 1000
RECENT_WORKED_JOBS = 100


def project_key(project) -> str:
    return str(Path(project.path).resolve())


class TrainTargetBox(QComboBox):
    """"on this PC" / "on the training server", remembered per project."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self._key: str | None = None
        self.addItem(ON_THIS_PC)
        self.addItem(ON_SERVER)
        self.setToolTip("Where the next retrain runs. The training server runs 'lineside worker PROJECT' and "
                        "takes retrains from the project's queue; progress shows here either way.")
        self.currentIndexChanged.connect(self._remember)

    def on_server(self) -> bool:
        return self.currentIndex() == 1

    def set_project(self, project) -> None:
        self._key = project_key(project) if project is not None else None
        self.blockSignals(True)  # showing the remembered choice is no new choice
        self.setCurrentIndex(1 if self._key in self._server_projects() else 0)
        self.blockSignals(False)
        self.currentIndexChanged.emit(self.currentIndex())  # listeners update; _remember stores the same

    def _server_projects(self) -> list[str]:
        value = self.settings.value(SERVER_PROJECTS_KEY, [])
        if isinstance(value, str):  # QSettings returns a bare string for a one-element list
            value = [value]
        return [str(v) for v in (value or []) if v]

    def _remember(self, _index: int) -> None:
        if self._key is None:
            return
        others = [p for p in self._server_projects() if p != self._key]
        self.settings.setValue(SERVER_PROJECTS_KEY, others + [self._key] if self.on_server() else others)
        self.settings.sync()


@dataclass(frozen=True)
class ServerStatus:
    queued: int
    running: list[train_jobs.Job]
    last_finished: train_jobs.Job | None  # the newest job a worker ran to its end
    workers: list[train_jobs.WorkerPresence] = field(default_factory=list)  # the most recently seen first

    @property
    def online(self) -> list[train_jobs.WorkerPresence]:
        return [w for w in self.workers if w.online]


def read_server_status(project) -> ServerStatus:
    """The queue and the workers as the status line tells them (off the GUI thread)."""
    queued = train_jobs.jobs(project, (train_jobs.QUEUED,), limit=MAX_QUEUE_LOOKED_AT)
    running = train_jobs.jobs(project, (train_jobs.RUNNING,), limit=10)
    finished = [j for j in train_jobs.jobs(project, train_jobs.FINISHED, limit=RECENT_WORKED_JOBS)
                if j.worker and j.finished_at]  # a job cancelled while it waited had no worker
    last = max(finished, key=lambda j: j.finished_at, default=None)
    return ServerStatus(len(queued), running, last, train_jobs.workers(project))


def ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    seconds = max(0.0, (now - then).total_seconds())
    if seconds < 5:
        return "just now"
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            count = int(seconds // size)
            return f"{count} {unit}{'s' if unit == 'day' and count > 1 else ''} ago"
    return f"{int(seconds)} s ago"


def status_text(status: ServerStatus, folder: str, now: datetime | None = None) -> str:
    """One or two lines of rich text: is a worker there, and how long is the queue."""
    now = now or datetime.now(timezone.utc)
    waiting = {0: "no job waiting", 1: "1 job waiting"}.get(status.queued, f"{status.queued} jobs waiting")
    if status.running:
        job = max(status.running, key=lambda j: j.heartbeat_at or j.started_at or now)
        heard = job.heartbeat_at or job.started_at
        silent = heard is not None and (now - heard).total_seconds() > train_jobs.STALE_AFTER_S
        seen = (f"<b>{html.escape(job.worker or '?')}</b> is running job {job.id}"
                + (f", but its last heartbeat was {ago(heard, now)}: it may have stopped"
                   if silent else f" (last heartbeat {ago(heard, now)})"))
    elif status.online:
        names = ", ".join(f"<b>{html.escape(w.name)}</b>" for w in status.online)
        first = status.online[0]
        seen = (f"{names} {'is' if len(status.online) == 1 else 'are'} waiting for jobs "
                f"(seen {ago(first.seen, now)}, {_hardware(first)})")
        return f"Training server {seen}; {waiting}."
    elif status.workers:
        last = status.workers[0]
        # The command on a line of its own, as below.
        return (f"No training server online: the last one, <b>{html.escape(last.name)}</b>, was seen "
                f"{ago(last.seen, now)}{' (stopped)' if last.state == train_jobs.STOPPED else ''}; {waiting}. "
                f"Start it again on that PC with:<br><tt>lineside worker {html.escape(folder)}</tt>")
    elif status.last_finished is not None:  # a worker of before presence rows
        job = status.last_finished
        seen = (f"last job finished {ago(job.finished_at, now)} by <b>{html.escape(job.worker or '?')}</b>"
                " (a worker of an older Lineside does not report while it waits)")
    else:
        # The command on a line of its own: a path broken across lines is hard to copy.
        return (f"Training server: {waiting}. No training server has taken a job yet — start one on the "
                f"server with:<br><tt>lineside worker {html.escape(folder)}</tt>")
    return f"Training server: {seen}; {waiting}."


def _hardware(worker: train_jobs.WorkerPresence) -> str:
    return f"{worker.device}, {worker.gpus} GPUs" if worker.gpus and worker.gpus > 1 else worker.device


def target_text(status: ServerStatus | None) -> str:
    """What the status bar says trains: "server gpu-1", "server (none online)"."""
    if status is None:
        return "server"  # not read yet
    running = [j.worker for j in status.running if j.worker]
    busy = [w.name for w in status.online if w.state == train_jobs.BUSY]
    names = busy or [w.name for w in status.online] or running
    return f"server {names[0]}" if names else "server (none online)"


class ServerStatusLabel(QLabel):
    """The training server's state, read in the background while the server is chosen."""

    status_read = Signal(object)  # the ServerStatus of each read

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setTextFormat(Qt.TextFormat.RichText)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # to copy the command
        self.setStyleSheet("font-size: 13pt;")
        self._project = None
        self._generation = 0
        self._reading = False
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.refresh)
        self._timer.start(STATUS_REFRESH_MS)

    def set_project(self, project) -> None:
        self._project = project
        self._generation += 1
        self._reading = False
        self.setText("Training server: looking at the queue…" if project is not None else "")
        self.refresh()

    def refresh(self) -> None:
        """Read the queue again (skipped while the server is not the choice, i.e. this
        label was hidden, or while a read is under way)."""
        project = self._project
        if project is None or self._reading or self.isHidden():
            return
        self._reading = True
        generation, folder = self._generation, str(project.path)

        def show(status: ServerStatus) -> None:
            if generation == self._generation:
                self._reading = False
                self.setText(status_text(status, folder))
                self.status_read.emit(status)

        def failed(exc: Exception) -> None:
            if generation == self._generation:
                self._reading = False
                self.setText(f"Training server: the queue could not be read ({html.escape(str(exc))}).")

        run_in_background(lambda: read_server_status(project), show, failed, owner=self)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()  # it may have been hidden for a while
