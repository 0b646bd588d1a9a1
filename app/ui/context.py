"""The application's shared state: the open project, the camera, settings, signals.

Every workspace gets the one AppContext and talks to the others only through its
signals, so a workspace can be built, tested and replaced on its own.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from pathlib import Path

from PySide6.QtCore import QObject, QSettings, Signal

from app.core import audit, people
from app.core.camera import CaptureThread, FrameQueue, FrameSource
from app.core.errors import LinesideError
from app.ui.app import guard_against_emit_refcount_bug

log = logging.getLogger(__name__)

MAX_RECENT = 8
RECENT_KEY = "recent_projects"


def _detect_gpu() -> str | None:
    """The first NVIDIA GPU's name from `nvidia-smi -L`, or None. No torch import."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.stdout.splitlines():
        # "GPU 0: NVIDIA H100 (UUID: GPU-...)"
        if line.startswith("GPU ") and ":" in line:
            return line.split(":", 1)[1].split("(UUID")[0].strip() or "GPU"
    return None


class AppContext(QObject):
    project_changed = Signal(object)  # Project or None
    labels_changed = Signal(int)  # image id
    images_changed = Signal()  # images added or removed
    models_changed = Signal()
    status_message = Signal(str)
    camera_state = Signal(str)  # "connected: <name>", "lost: <name> — reconnecting", "stopped"
    training_device_changed = Signal(str)
    access_changed = Signal()  # who is signed in, or the project's people and roles, changed
    golden_changed = Signal()  # images went into or out of the golden set

    def __init__(self, settings: QSettings | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        guard_against_emit_refcount_bug()  # before the first of many emits
        self.settings = settings if settings is not None else QSettings()
        self.project = None
        self.person: people.Person | None = None  # who signed in at this station, for this project
        self.frame_source: FrameSource | None = None
        self.frames = FrameQueue(maxsize=4)
        self.camera_status = "stopped"
        self._capture: CaptureThread | None = None
        self._device = "CPU"
        self._device_thread: threading.Thread | None = None
        self.camera_state.connect(self._remember_camera_state)

    # -- projects -------------------------------------------------------------

    def open_project(self, path: Path | str):
        """Open an existing project (raises NotAProjectError with the folder named)."""
        from app.core.project import Project

        project = Project.open(Path(path))
        self._set_project(project)
        return project

    def create_project(self, path: Path | str):
        from app.core.project import Project

        project = Project.create(Path(path))
        self._set_project(project)
        return project

    def close_project(self) -> None:
        self.stop_source()
        if self.project is None:
            return
        old, self.project = self.project, None
        self.person = None  # people belong to a project: a sign-in never carries over
        close = getattr(old, "close", None)
        if callable(close):
            close()
        self.project_changed.emit(None)
        self.access_changed.emit()

    def _set_project(self, project) -> None:
        if self.project is not None:
            self.close_project()
        self.project = project
        self.person = None
        self._remember_recent(str(Path(project.root if hasattr(project, "root") else project.path).resolve()))
        self.project_changed.emit(project)
        self.access_changed.emit()
        self.status_message.emit(f"Opened {Path(self._project_path()).name}")

    def _project_path(self) -> str:
        project = self.project
        return str(getattr(project, "root", None) or getattr(project, "path", ""))

    def recent_projects(self) -> list[str]:
        value = self.settings.value(RECENT_KEY, [])
        if isinstance(value, str):  # QSettings returns a bare string for one-element lists
            value = [value]
        return [str(v) for v in (value or []) if v]

    def _remember_recent(self, path: str) -> None:
        recent = [p for p in self.recent_projects() if p != path]
        self.settings.setValue(RECENT_KEY, [path, *recent][:MAX_RECENT])
        self.settings.sync()

    def forget_recent(self, path: str) -> None:
        self.settings.setValue(RECENT_KEY, [p for p in self.recent_projects() if p != path])
        self.settings.sync()

    # -- who is at the station ------------------------------------------------
    # The core decides who may do what (app/core/people.py); the app only remembers who
    # signed in and asks the core, so a greyed-out button is a courtesy, not the check.

    def sign_in(self, name: str, pin: str) -> people.Person:
        """Sign *name* in with *pin* (audited by the core); PermissionDeniedError if wrong."""
        if self.project is None:
            raise LinesideError("Open a project first: people and PINs belong to a project.")
        person = people.sign_in(self.project, name, pin)
        self.person = person
        self.access_changed.emit()
        return person

    def sign_out(self) -> None:
        person, self.person = self.person, None
        if person is not None and self.project is not None:
            try:
                audit.record(self.project, audit.SIGN_OUT, person.name)
            except Exception:  # a locked or read-only project.db must not keep anyone signed in
                log.exception("could not record the sign-out of %s", person.name)
        self.access_changed.emit()

    def people_changed(self) -> None:
        """After people or roles changed: take the signed-in person's role afresh (someone
        removed is signed out), then tell every button that depends on it."""
        if self.person is not None and self.project is not None:
            now = {p.name: p for p in people.people(self.project)}
            self.person = now.get(self.person.name)
        self.access_changed.emit()

    def refusal(self, action: str) -> str | None:
        """The core's reason why the signed-in person may not do *action* now; None if allowed."""
        if self.project is None:
            return "Open a project first."
        try:
            people.require(self.project, self.person, action)
        except LinesideError as exc:
            return str(exc)
        return None

    # -- camera ---------------------------------------------------------------

    def start_source(self, source: FrameSource) -> None:
        """Stop the running source (if any) and capture from *source* in a thread."""
        self.stop_source()
        self.frames.clear()
        self.frame_source = source
        # The callback runs on the capture thread; a Qt signal emitted there is
        # delivered to GUI-thread receivers through the event loop.
        self._capture = CaptureThread(source, self.frames, on_state=self.camera_state.emit)
        self._capture.start()

    def stop_source(self) -> None:
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.stop()
            if capture.is_alive():
                log.warning("capture thread for %s did not stop in time", capture.source.name)
        self.frame_source = None
        self.frames.clear()
        if self.camera_status != "stopped":
            self.camera_state.emit("stopped")

    @property
    def capture_thread(self) -> CaptureThread | None:
        return self._capture

    def _remember_camera_state(self, state: str) -> None:
        self.camera_status = state

    # -- training device ------------------------------------------------------

    def training_device(self) -> str:
        """"CPU" or the GPU's name. The first call starts a background probe (nvidia-smi);
        training_device_changed fires if it finds a GPU."""
        if self._device_thread is None:
            self._device_thread = threading.Thread(target=self._probe_device, name="lineside-gpu-probe", daemon=True)
            self._device_thread.start()
        return self._device

    def _probe_device(self) -> None:
        name = _detect_gpu()
        if name:
            self._device = f"GPU ({name})"
            self.training_device_changed.emit(self._device)

    # -- helpers for workspaces ----------------------------------------------

    def report_error(self, exc: LinesideError | Exception) -> None:
        self.status_message.emit(str(exc))

    def shutdown(self) -> None:
        """Stop every thread this context started (called when the window closes)."""
        self.stop_source()
        if self._device_thread is not None:
            self._device_thread.join(6)
        self.close_project()
