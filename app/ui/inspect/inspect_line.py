"""The Inspect workspace's line: app.core.line_session.LineSession, heard through Qt.

The session owns the capture thread, the inspection thread (model, verdict, counters,
drift) and the writer thread (the project's inspection log, in batched commits). Its
listeners run on those threads; this module only turns what they hear into what the
GUI shows (the live view with its heatmap, records with their inspection ids, the
drift warning) and crosses into the GUI thread through signals. Results pile up in a
locked list; the GUI is woken by one signal per batch and takes them all at once, so a
fast line costs the GUI one repaint per tick, not one per part.

Several views: one trigger captures them all and the session judges them as one part;
each view's image and heatmap are composed here, on the line's thread, for the grid.
With a PLC configured, the PlcLink of app.core.plc listens to the same session and its
server (Modbus TCP or OPC UA) is started with the line and stopped with it.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
from dataclasses import dataclass, replace

import numpy as np
from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from app.core.errors import LinesideError
from app.core.frames import Frame, FrameQueue
from app.core.line_session import LineListener, LineSession, PartResult
from app.core.plc.signals import ErrorCode
from app.ui.inspect.inspect_log import InspectionRecord, record_of
from app.ui.inspect.inspect_plc import PlcConfig, start_plc_server, stop_plc_in_background, wait_for_stopped_plc_servers
from app.ui.inspect.inspect_review import PartRing, RetainedPart, retain
from app.ui.inspect.inspect_view import HEAT_ALPHA, bgr_to_qimage, blend_heatmap, display_layers

log = logging.getLogger(__name__)

WORKER_NICE = 5  # added to the line's threads' niceness: below the GUI thread, which a person at the line touches
MAX_PENDING = 2000  # records waiting for the GUI; beyond that the oldest go (GUI stalled)
COMMIT_INTERVAL_S = 0.25  # a GUI-only line: fewer fsyncs, the log a quarter second behind the banner


@dataclass
class ViewShot:
    """One view of the newest part: the frame, its display layers and the blended image."""

    image: np.ndarray
    display: QImage
    base: np.ndarray
    heat: np.ndarray


@dataclass
class LiveView:
    """The newest inspected part, for the banner, the image view and corrections.

    The fields name the first view (the only one on a one-view line); *shots* has every view.
    """

    record: InspectionRecord  # its inspection_id is filled in once the part is committed
    image: np.ndarray  # the frame as captured (BGR), kept for "this verdict is wrong"
    display: QImage  # the image with the heatmap, at display size
    class_probs: dict[str, float]
    base: np.ndarray | None = None  # the image at display size, without the heatmap
    heat: np.ndarray | None = None  # 0..1 heatmap at display size (re-blended on an opacity change)
    seq: int = 0  # the part's number in the session
    shots: list[ViewShot] | None = None  # every view, the first included

    def reblend(self, alpha: float) -> None:
        """Blend every view again at a new heatmap opacity (the GUI thread, on a change)."""
        for shot in self.shots or []:
            shot.display = bgr_to_qimage(blend_heatmap(shot.base, shot.heat, alpha))
        if self.shots:
            self.display = self.shots[0].display


class InspectLine(QObject):
    """One run of the Inspect workspace: a LineSession over *source*, heard through Qt."""

    results_ready = Signal()  # call take_results(); emitted once until they are taken
    model_loaded = Signal(str)  # the model version now judging parts
    failed = Signal(str)  # a message for the user; the line keeps going if it can
    source_state = Signal(str)  # "connected: <name>", "lost: <name> — reconnecting"
    ended = Signal()  # the line could not start (no model): stop() it

    def __init__(self, project, sources, continuous: bool = True, parts: PartRing | None = None,
                 frames: FrameQueue | None = None, parent: QObject | None = None,
                 names: list[str] | None = None, plc: PlcConfig | None = None) -> None:
        super().__init__(parent)
        sources = list(sources) if isinstance(sources, (list, tuple)) else [sources]
        given = list(names or [])
        self.names = [given[i] if i < len(given) else f"View {i + 1}" for i in range(len(sources))]
        self._parts = parts  # each part's image and heatmap go here, for review at the line
        self._frames = frames  # the live preview (the Capture workspace shows it)
        self._local_ids = itertools.count(-1, -1)  # keys of parts not written to the project's log
        self._lock = threading.Lock()
        self._records: list[InspectionRecord] = []
        self._judged: dict[int, tuple[InspectionRecord, RetainedPart | None]] = {}  # seq -> not yet committed
        self._latest: LiveView | None = None  # not yet taken by the GUI
        self._newest: LiveView | None = None  # the newest part's view, taken or not
        self._drift_text: str | None = None
        self._notified = False
        self._heat_alpha = HEAT_ALPHA  # a float: written by the GUI thread, read on the line's
        self._lowered: set[int] = set()
        self._running = False
        self._starter: threading.Thread | None = None
        self.plc = plc if plc is not None and plc.enabled else None
        # A PLC triggers the parts, as in `lineside run --plc`; and it is told of a result
        # only once committed, so the GUI's relaxed commit interval would delay every answer.
        self.session = LineSession(project, sources, [_Listener(self)], triggered=not continuous or self.plc is not None,
                                   commit_interval_s=0.0 if self.plc is not None else COMMIT_INTERVAL_S)
        self.plc_link = None
        self.plc_server = None
        self._plc_closed = False
        if self.plc is not None:
            from app.core.plc.link import PlcLink

            self.plc_link = PlcLink(trigger_enable=self.plc.trigger_enabled,
                                    handshake=self.plc.handshake).attach(self.session)

    # -- control from the GUI thread -----------------------------------------------

    def start(self) -> None:
        """Load the model and start the line, off the GUI thread."""
        self._running = True
        self._starter = threading.Thread(target=self._start, name="lineside-inspect-start", daemon=True)
        self._starter.start()

    def _start(self) -> None:
        try:
            if self.plc_link is not None:  # listening before the line runs, as `lineside run` does
                wait_for_stopped_plc_servers()  # the last run's server may still hold the port
                self.plc_server = start_plc_server(self.plc_link, self.plc)
            self.session.start()
        except LinesideError as exc:
            self.failed.emit(str(exc))
            self.ended.emit()
        except Exception as exc:  # a bug: say so rather than hang at READY
            log.exception("the inspection line could not start")
            self.failed.emit(f"The line could not start ({exc}); see the log.")
            self.ended.emit()

    def is_running(self) -> bool:
        return self._running

    def trigger(self) -> None:
        """Inspect the next part (trigger mode)."""
        if self.session.running:
            self.session.trigger()

    def set_continuous(self, continuous: bool) -> None:
        self.session.set_triggered(not continuous or self.plc is not None)

    def set_heat_alpha(self, alpha: float) -> None:
        """Opacity of the heatmap on the next parts (0 = off)."""
        self._heat_alpha = float(alpha)

    def reload_model(self) -> None:
        """Judge with the project's production model again (a new one was deployed)."""
        if not self.session.running:
            return

        def load() -> None:
            try:
                self.session.select_model(None)
            except LinesideError as exc:  # keep judging with the model we have
                self.failed.emit(str(exc))

        threading.Thread(target=load, name="lineside-inspect-model", daemon=True).start()

    def stop(self) -> None:
        """Finish the part in hand, commit every result, close the source."""
        self._running = False
        if self._starter is not None:
            self._starter.join()
        self.session.stop()
        if self.plc_link is not None and not self._plc_closed:  # after the session: the PLC saw every result
            self._plc_closed = True
            stop_plc_in_background(self.plc_server, self.plc_link)
            self.plc_server = None

    def take_results(self) -> tuple[list[InspectionRecord], LiveView | None, str | None]:
        """Everything committed since the last call, the newest part, the drift warning."""
        with self._lock:
            records, self._records = self._records, []
            latest, self._latest = self._latest, None
            self._notified = False
            return records, latest, self._drift_text

    @property
    def model_version(self) -> str:
        return self.session.model_version or ""

    # -- on the session's threads --------------------------------------------------

    def _notify(self) -> bool:
        """Under self._lock: wake the GUI once until it takes the results."""
        notify, self._notified = not self._notified, True
        return notify

    def _lower_priority(self) -> None:
        tid = threading.get_native_id()
        if tid not in self._lowered:
            self._lowered.add(tid)
            _lower_this_threads_priority()

    def judged(self, result: PartResult) -> None:
        self._lower_priority()
        record = record_of(result, self.names)
        shots = []
        for image, verdict in zip(result.images, result.verdicts):
            base, heat = display_layers(image, verdict.heatmap_on_image())
            shots.append(ViewShot(image, bgr_to_qimage(blend_heatmap(base, heat, self._heat_alpha)), base, heat))
        first = shots[0]
        live = LiveView(record, first.image, first.display, dict(result.verdicts[0].class_probs), first.base,
                        first.heat, seq=result.seq, shots=shots)
        kept = None
        if self._parts is not None:
            views = [retain(shot.image, shot.base, shot.heat) for shot in shots]
            kept = replace(views[0], others=tuple(views[1:]))
        with self._lock:
            self._judged[result.seq] = (record, kept)
            self._latest = self._newest = live
            notify = self._notify()
        if notify:
            self.results_ready.emit()

    def committed(self, results: list[PartResult]) -> None:
        self._lower_priority()
        records = []
        with self._lock:
            for result in results:
                judged = self._judged.pop(result.seq, None)
                if judged is None:
                    continue
                ident = result.inspection_id if result.inspection_id is not None else next(self._local_ids)
                record = replace(judged[0], inspection_id=int(ident))
                if self._parts is not None and judged[1] is not None:
                    self._parts.put(record.inspection_id, judged[1])
                if self._newest is not None and self._newest.seq == result.seq:
                    self._newest.record = record  # the part on screen now knows its id
                records.append(record)
            self._records.extend(records)
            del self._records[:-MAX_PENDING]
            notify = self._notify() if records else False
        if notify:
            self.results_ready.emit()

    def drifted(self, status: dict) -> None:
        with self._lock:
            self._drift_text = drift_message(status)
            notify = self._notify()
        if notify:
            self.results_ready.emit()

    def preview(self, view: int, frame: Frame) -> None:
        if self._frames is not None and view == 0:  # Capture's preview shows the first view only
            self._frames.put(frame)


class _Listener(LineListener):
    def __init__(self, line: InspectLine) -> None:
        self.line = line

    def on_state(self, state: str) -> None:
        if state.startswith(("connected", "lost")):
            self.line.source_state.emit(state)

    def on_frame(self, view: int, frame: Frame) -> None:
        self.line.preview(view, frame)

    def on_model(self, version: str | None) -> None:
        self.line.model_loaded.emit(version or "")

    def on_result(self, result: PartResult) -> None:
        self.line.judged(result)

    def on_committed(self, results: list[PartResult]) -> None:
        self.line.committed(results)

    def on_drift(self, status: dict) -> None:
        self.line.drifted(status)

    def on_error(self, code: int, message: str) -> None:
        # A lost camera is shown by its state; a model that cannot load ends the start.
        if code not in (ErrorCode.SOURCE_LOST, ErrorCode.MODEL_NOT_AVAILABLE):
            self.line.failed.emit(message[:1].upper() + message[1:])


def _lower_this_threads_priority() -> None:
    """Let the GUI thread win the CPU when the line runs flat out.

    On Linux a thread has its own nice value; Qt's thread priorities do nothing there
    under the default scheduler. Elsewhere Qt's priority is the right tool (on a
    thread Qt did not start it may do nothing).
    """
    if sys.platform.startswith("linux"):
        try:
            tid = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + WORKER_NICE))
        except OSError:
            pass
    else:
        thread = QThread.currentThread()
        if thread is not None:
            thread.setPriority(QThread.Priority.LowPriority)


def drift_message(status) -> str | None:
    """The warning to show for a DriftMonitor status, or None when all is normal: what to
    do first (the monitor's recommendation, with its evidence), else the reasons."""
    if status is None:
        return None
    if isinstance(status, dict):
        drifting, message, advice = status.get("drifting"), status.get("message"), status.get("recommendation")
    else:
        drifting, message, advice = (getattr(status, "drifting", False), getattr(status, "message", None),
                                     getattr(status, "recommendation", None))
    if not drifting:
        return None
    if advice:
        return f"The line has drifted from the training images. {advice[0].upper()}{advice[1:]}."
    return f"Images look different from the training images: {message}" if message else (
        "Images look different from the training images. Check the camera and lighting, "
        "or label some recent parts and retrain."
    )
