"""The inspection thread: frames in, verdicts out, never on the GUI thread.

It takes the newest frame from the capture queue (continuously, or when triggered),
runs the production model with ONNX Runtime, records the verdict in the project,
updates the drift monitor and composes the heatmap overlay. Results pile up in a
locked list; the GUI is woken by one signal per batch and takes them all at once, so a
fast line costs the GUI one repaint per tick, not one per part.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import QThread, Signal
from PySide6.QtGui import QImage

from app.core.camera import Frame, FrameQueue
from app.core.errors import LinesideError
from app.ui.inspect_log import InspectionRecord
from app.ui.inspect_review import PartRing, retain
from app.ui.inspect_view import HEAT_ALPHA, bgr_to_qimage, blend_heatmap, display_layers

log = logging.getLogger(__name__)

WORKER_NICE = 5  # added to the thread's niceness: below the GUI thread, which is what a person at the line touches
MAX_PENDING = 2000  # records waiting for the GUI; beyond that the oldest go (GUI stalled)


@dataclass
class LiveView:
    """The newest inspected part, for the banner, the image view and corrections."""

    record: InspectionRecord
    image: np.ndarray  # the frame as captured (BGR), kept for "this verdict is wrong"
    display: QImage  # the image with the heatmap, at display size
    class_probs: dict[str, float]
    base: np.ndarray | None = None  # the image at display size, without the heatmap
    heat: np.ndarray | None = None  # 0..1 heatmap at display size (re-blended on an opacity change)


class InspectWorker(QThread):
    results_ready = Signal()  # call take_results(); emitted once until they are taken
    model_loaded = Signal(str)  # the model version now judging parts
    failed = Signal(str)  # a message for the user; the thread keeps going if it can

    def __init__(
        self,
        project,
        frames: FrameQueue,
        continuous: bool = True,
        record: bool = True,
        parent=None,
        parts: PartRing | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("lineside-inspect")
        self._project = project
        self._frames = frames
        self._continuous = continuous
        self._record = record
        self._parts = parts  # each part's image and heatmap go here, for review at the line
        self._local_ids = itertools.count(-1, -1)  # keys of parts not written to the project's log
        self._stop = threading.Event()
        self._trigger = threading.Event()
        self._reload = threading.Event()
        self._lock = threading.Lock()
        self._pending: list[InspectionRecord] = []
        self._latest: LiveView | None = None
        self._drift_text: str | None = None
        self._notified = False
        self._inspector = None
        self._model_version = ""
        self._drift = None
        self._heat_alpha = HEAT_ALPHA  # a float: written by the GUI thread, read here
        self.inspected = 0

    # -- control from the GUI thread -----------------------------------------------

    def trigger(self) -> None:
        """Inspect the next frame (trigger mode)."""
        self._trigger.set()

    def set_continuous(self, continuous: bool) -> None:
        wake = continuous and not self._continuous
        self._continuous = continuous
        if wake:  # leave the trigger wait at once; it does not count as a trigger
            self._trigger.set()

    def set_heat_alpha(self, alpha: float) -> None:
        """Opacity of the heatmap on the next parts (0 = off)."""
        self._heat_alpha = float(alpha)

    def reload_model(self) -> None:
        """Load the project's production model again (a new one was deployed)."""
        self._reload.set()

    def stop(self, timeout_ms: int = 10_000) -> bool:
        self._stop.set()
        self._trigger.set()
        return self.wait(timeout_ms)

    def take_results(self) -> tuple[list[InspectionRecord], LiveView | None, str | None]:
        """Everything inspected since the last call, the newest part, the drift warning."""
        with self._lock:
            records, self._pending = self._pending, []
            latest, self._latest = self._latest, None
            self._notified = False
            return records, latest, self._drift_text

    @property
    def model_version(self) -> str:
        return self._model_version

    # -- the thread ----------------------------------------------------------------

    def run(self) -> None:
        _lower_this_threads_priority()
        try:
            self._load_model()
        except LinesideError as exc:
            self.failed.emit(str(exc))
            return
        while not self._stop.is_set():
            if self._reload.is_set():
                self._reload.clear()
                try:
                    self._load_model()
                except LinesideError as exc:  # keep judging with the model we have
                    self.failed.emit(str(exc))
            frame = self._next_frame()
            if frame is None or self._stop.is_set():
                continue
            try:
                self._inspect(frame)
            except LinesideError as exc:
                self.failed.emit(str(exc))
            except Exception:  # one bad frame must not stop the line
                log.exception("inspection of frame %s failed", frame.index)
                self.failed.emit(f"Frame {frame.index} from {frame.source} could not be inspected (see the log).")

    def _next_frame(self) -> Frame | None:
        if self._continuous:
            return self._frames.get_latest(timeout=0.1)
        if not self._trigger.wait(0.1):
            return None
        self._trigger.clear()
        if self._stop.is_set() or self._continuous:
            return None
        frame = self._frames.get_latest(timeout=2.0)
        if frame is None:
            self.failed.emit("No image arrived from the camera for this trigger.")
        return frame

    def _load_model(self) -> None:
        from app.core.runtime import load_inspector_for_project

        inspector, model = load_inspector_for_project(self._project)
        inspector.warmup()
        self._inspector, self._model_version = inspector, model.version
        self._drift = _make_drift_monitor(inspector)
        self.model_loaded.emit(model.version)

    def _inspect(self, frame: Frame) -> None:
        verdict = self._inspector.inspect(frame.image)
        if self._record:
            inspection_id = self._project.record_inspection(
                self._model_version,
                verdict.label,
                float(verdict.score),
                verdict.defect_class,
                float(verdict.latency_ms),
                frame.source,
            )
        else:
            inspection_id = next(self._local_ids)
        record = InspectionRecord(
            at=frame.at,
            frame_index=frame.index,
            source=frame.source,
            label=verdict.label,
            defect_class=verdict.defect_class,
            score=float(verdict.score),
            latency_ms=float(verdict.latency_ms),
            model_version=self._model_version,
            truth=frame.truth,
            file=str(frame.path) if frame.path is not None else None,
            inspection_id=int(inspection_id),
        )
        drift_text = self._update_drift(frame.image, float(verdict.score))
        base, heat = display_layers(frame.image, verdict.heatmap_on_image())
        display = bgr_to_qimage(blend_heatmap(base, heat, self._heat_alpha))
        live = LiveView(record, frame.image, display, dict(verdict.class_probs), base, heat)
        if self._parts is not None:
            self._parts.put(record.inspection_id, retain(frame.image, base, heat))
        self.inspected += 1
        with self._lock:
            self._pending.append(record)
            del self._pending[:-MAX_PENDING]
            self._latest = live
            self._drift_text = drift_text
            notify, self._notified = not self._notified, True
        if notify:
            self.results_ready.emit()

    def _update_drift(self, image: np.ndarray, score: float) -> str | None:
        if self._drift is None:
            return None
        from app.core import monitoring

        self._drift.update(monitoring.image_stats(image), score)
        return drift_message(self._drift.status())


def _lower_this_threads_priority() -> None:
    """Let the GUI thread win the CPU when the line runs flat out.

    On Linux a thread has its own nice value; Qt's thread priorities do nothing there
    under the default scheduler. Elsewhere Qt's priority is the right tool.
    """
    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICE))
        except OSError:
            pass
    else:
        QThread.currentThread().setPriority(QThread.Priority.LowPriority)


def _make_drift_monitor(inspector):
    """A drift monitor against the model's training reference, or None without one."""
    reference = getattr(inspector.info, "reference", None)
    if not reference:
        return None
    try:
        from app.core.monitoring import DriftMonitor
    except ImportError:  # an edition without monitoring
        return None
    return DriftMonitor(reference)


def drift_message(status) -> str | None:
    """The warning to show for a DriftMonitor status, or None when all is normal."""
    if status is None:
        return None
    if isinstance(status, dict):
        drifting, message = status.get("drifting"), status.get("message")
    else:
        drifting, message = getattr(status, "drifting", False), getattr(status, "message", None)
    if not drifting:
        return None
    return f"Images look different from the training images: {message}" if message else (
        "Images look different from the training images. Check the camera and lighting, "
        "or label some recent parts and retrain."
    )
