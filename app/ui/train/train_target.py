"""Where a retrain runs: on this PC, or on the training server (docs/adr/0011).

The choice is remembered per project on this PC (in the app's settings, not in the
project): which machine trains is a station's call, and a station that picks the
server must not change what the engineer's PC next to it does.

The server's state is shown as honestly as the queue allows: a worker that waits for
work writes nothing, so an idle server is invisible; what can be said is how many jobs
wait, whether a worker is running one now (its heartbeat), and when a worker last
finished one.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from PySide6.QtCore import QSettings, Qt, QTimer
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


def read_server_status(project) -> ServerStatus:
    """The queue as the status line tells it (off the GUI thread)."""
    queued = train_jobs.jobs(project, (train_jobs.QUEUED,), limit=MAX_QUEUE_LOOKED_AT)
    running = train_jobs.jobs(project, (train_jobs.RUNNING,), limit=10)
    finished = [j for j in train_jobs.jobs(project, train_jobs.FINISHED, limit=RECENT_WORKED_JOBS)
                if j.worker and j.finished_at]  # a job cancelled while it waited had no worker
    last = max(finished, key=lambda j: j.finished_at, default=None)
    return ServerStatus(len(queued), running, last)


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
    elif status.last_finished is not None:
        job = status.last_finished
        seen = (f"last job finished {ago(job.finished_at, now)} by <b>{html.escape(job.worker or '?')}</b>"
                " (an idle server does not report in)")
    else:
        # The command on a line of its own: a path broken across lines is hard to copy.
        return (f"Training server: {waiting}. No training server has taken a job yet — start one on the "
                f"server with:<br><tt>lineside worker {html.escape(folder)}</tt>")
    return f"Training server: {seen}; {waiting}."


class ServerStatusLabel(QLabel):
    """The training server's state, read in the background while it is on screen."""

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
        """Read the queue again (skipped while hidden or while a read is under way)."""
        project = self._project
        if project is None or self._reading or not self.isVisible():
            return
        self._reading = True
        generation, folder = self._generation, str(project.path)

        def show(status: ServerStatus) -> None:
            if generation == self._generation:
                self._reading = False
                self.setText(status_text(status, folder))

        def failed(exc: Exception) -> None:
            if generation == self._generation:
                self._reading = False
                self.setText(f"Training server: the queue could not be read ({html.escape(str(exc))}).")

        run_in_background(lambda: read_server_status(project), show, failed, owner=self)

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self.refresh()  # it may have been hidden for a while
