"""Capture & Label: the live camera beside the labeling workspace.

The capture thread fills the context's FrameQueue; a ~30 Hz timer on the GUI thread
takes the newest frame without waiting. The capture key (Space by default; foot pedals
send a configurable key, stored in QSettings) freezes the frame on screen, cuts it to
the project's region of interest, saves it into the project in a background task and
selects it for labeling. A camera that disappears turns the banner red until it is back.
"""

from __future__ import annotations

import logging

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.core.camera import Frame
from app.ui.capture.capture_controls import CameraPanel
from app.ui.capture.capture_live import LiveView, clamp_roi, crop_to_roi
from app.ui.capture.label_workspace import LabelWorkspace
from app.ui.shared.keys import WINDOW_KEYS
from app.ui.shared.style import FAIL
from app.ui.shared.workers import run_in_background

log = logging.getLogger(__name__)

CAPTURE_KEY_SETTING = "capture/key"
DEFAULT_CAPTURE_KEY = "Space"
FRAME_INTERVAL_MS = 33


def save_frame(project, frame: Frame, roi) -> int:
    """Store the frame (cut to the ROI) in the project; returns the image id. Runs off the GUI thread."""
    box = clamp_roi(roi, frame.image.shape[1], frame.image.shape[0])
    tags = {"camera": frame.source, "frame": str(frame.index)}
    if box is not None:
        tags["roi"] = ",".join(str(v) for v in box)
    if frame.truth is not None:
        tags["simulated_truth"] = frame.truth
    record, _new = project.add_image_array(crop_to_roi(frame.image, box), source="camera", tags=tags)
    return record.id


class CaptureWorkspace(QWidget):
    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.last_frame: Frame | None = None
        self.frozen_until = 0
        self._saving = False
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(8, 8, 8, 8)
        self.alarm = QFrame()
        self.alarm.setProperty("role", "alarm")
        alarm_layout = QHBoxLayout(self.alarm)
        self.alarm_text = QLabel("")
        alarm_layout.addWidget(self.alarm_text)
        self.alarm.hide()
        outer.addWidget(self.alarm)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.setChildrenCollapsible(False)
        outer.addWidget(split, 1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 8, 0)
        self.camera_panel = CameraPanel(context.settings)
        left_layout.addWidget(self.camera_panel)
        self.live = LiveView()
        left_layout.addWidget(self.live, 1)

        buttons = QHBoxLayout()
        self.capture_button = QPushButton("")
        self.capture_button.setProperty("primary", True)
        self.capture_button.setMinimumHeight(72)
        self.capture_button.setStyleSheet("font-size: 18pt;")
        self.roi_button = QPushButton("Draw ROI")
        self.roi_button.setCheckable(True)
        self.clear_roi_button = QPushButton("Clear ROI")
        for button in (self.capture_button, self.roi_button, self.clear_roi_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        left_layout.addWidget(self.capture_button)
        buttons.addWidget(self.roi_button)
        buttons.addWidget(self.clear_roi_button)
        left_layout.addLayout(buttons)

        key_row = QHBoxLayout()
        key_label = QLabel("Capture key:")
        key_label.setToolTip("The key that captures a frame: a foot pedal sends one too")
        key_row.addWidget(key_label)
        self.key_edit = QKeySequenceEdit(QKeySequence(self.capture_key_text()))
        self.key_edit.setMaximumSequenceLength(1)
        key_row.addWidget(self.key_edit, 1)
        left_layout.addLayout(key_row)
        self.key_message = QLabel("")
        self.key_message.setWordWrap(True)
        self.key_message.setStyleSheet(f"color: {FAIL}; font-weight: 700;")
        self.key_message.hide()
        left_layout.addWidget(self.key_message)
        # The camera column scrolls when the screen is short (1024 x 768) rather than
        # squeezing the live view or pushing the labeling tools off the window.
        self.left_scroll = QScrollArea()
        self.left_scroll.setWidgetResizable(True)
        self.left_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.left_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.left_scroll.setWidget(left)
        self.left_scroll.setMinimumWidth(left.minimumSizeHint().width() + 24)
        split.addWidget(self.left_scroll)

        self.labeling = LabelWorkspace(context)
        split.addWidget(self.labeling)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        split.setSizes([560, 900])
        self.labeling.install_shortcuts(self)

        self.capture_shortcut = QShortcut(QKeySequence(self.capture_key_text()), self)
        self.capture_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.capture_shortcut.activated.connect(self.capture)
        # Esc takes the keyboard back from a spin box or key field to the labeling keys.
        self.escape_shortcut = QShortcut(QKeySequence("Esc"), self)
        self.escape_shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.escape_shortcut.activated.connect(self._escape)
        self._update_capture_button()

        self.timer = QTimer(self)
        self.timer.setInterval(FRAME_INTERVAL_MS)
        self.timer.timeout.connect(self.poll_frame)

        self.camera_panel.start_requested.connect(self.context.start_source)
        self.camera_panel.stop_requested.connect(self.context.stop_source)
        self.camera_panel.property_changed.connect(self._set_camera_property)
        self.capture_button.clicked.connect(self.capture)
        self.roi_button.toggled.connect(self.live.set_drawing_roi)
        self.live.roi_drawn.connect(self._roi_drawn)
        self.clear_roi_button.clicked.connect(lambda: self._roi_drawn([]))
        self.key_edit.editingFinished.connect(self._capture_key_edited)
        context.camera_state.connect(self.on_camera_state)
        context.project_changed.connect(self._project_changed)
        self._project_changed(context.project)

    # -- activation -----------------------------------------------------------------

    def activate(self) -> None:
        self.timer.start()
        self.labeling.set_shortcuts_enabled(True)
        self.capture_shortcut.setEnabled(True)
        self.setFocus()

    def deactivate(self) -> None:
        # The camera keeps running (Inspect uses the same source); only the view stops.
        self.timer.stop()
        self.labeling.set_shortcuts_enabled(False)
        self.capture_shortcut.setEnabled(False)

    def _escape(self) -> None:
        canvas = self.labeling.canvas
        if canvas.polygon:  # the shortcut comes before the canvas sees the key
            canvas.polygon = []
            canvas.update()
        self.setFocus()

    # -- capture key ------------------------------------------------------------------

    def capture_key_text(self) -> str:
        return str(self.context.settings.value(CAPTURE_KEY_SETTING, DEFAULT_CAPTURE_KEY)) or DEFAULT_CAPTURE_KEY

    def reserved_keys(self) -> set[str]:
        """Keys something else in this tab or window answers to (labeling, Esc, Ctrl+1..4)."""
        keys = {s.key().toString() for s in self.labeling._shortcuts} | {self.escape_shortcut.key().toString()}
        return {k for k in keys | set(WINDOW_KEYS) if k}

    def set_capture_key(self, text: str) -> bool:
        """Bind capture to *text*; refuses (False, with a visible reason) a key in use.

        Clicking the key field and pressing 0 used to make 0 the capture key: from then
        on "OK" captured a frame instead of labeling one, and nothing said so.
        """
        sequence = QKeySequence(text)
        if sequence.isEmpty():
            return False
        key = sequence.toString()
        if key in self.reserved_keys():
            self.key_message.setText(f"{key} is a labeling or window key, so it cannot capture. "
                                     f"Capture stays on {self.capture_key_text()}.")
            self.key_message.show()
            self.key_edit.setKeySequence(QKeySequence(self.capture_key_text()))
            return False
        self.key_message.hide()
        self.context.settings.setValue(CAPTURE_KEY_SETTING, key)
        self.capture_shortcut.setKey(sequence)
        self._update_capture_button()
        return True

    def _capture_key_edited(self) -> None:
        sequence = self.key_edit.keySequence()
        # The field reports "finished" again when a refused key is put back: not a change.
        if not sequence.isEmpty() and sequence.toString() != self.capture_key_text():
            self.set_capture_key(sequence.toString())
        self.setFocus()  # back to labeling keys

    def _update_capture_button(self) -> None:
        self.capture_button.setText(f"Capture  ({self.capture_key_text()})")

    # -- frames ---------------------------------------------------------------------

    def poll_frame(self) -> None:
        frame = self.context.frames.get_latest()
        if frame is None:
            return
        self.last_frame = frame
        if self._saving:
            return  # the captured frame stays on screen until it is saved
        self.live.flash_text = ""
        truth = f" · truth: {frame.truth}" if frame.truth else ""
        self.live.show_frame(frame.image, f"{frame.source} · frame {frame.index}{truth}")

    def capture(self) -> None:
        project = self.context.project
        if project is None:
            return
        frame = self.last_frame or self.context.frames.get_latest()
        if frame is None:
            self.context.status_message.emit("No frame to capture: start a camera first.")
            return
        if self._saving:
            return
        self._saving = True
        self.live.show_frame(frame.image, f"{frame.source} · frame {frame.index} · captured")
        self.live.flash_text = "Saving…"
        roi = project.get_setting("roi")

        def done(image_id: int) -> None:
            self._saving = False
            self.live.flash_text = f"Saved as image #{image_id}"
            self.live.update()
            if self.context.project is project:
                self.context.images_changed.emit()
                self.labeling.select(image_id)
                self.context.status_message.emit(f"Captured image #{image_id}")

        def failed(exc: Exception) -> None:
            self._saving = False
            self.live.flash_text = ""
            self.context.status_message.emit(f"Capture NOT saved: {exc}")
            self.labeling._show_saved(f"Capture NOT saved: {exc}", ok=False)

        run_in_background(lambda: save_frame(project, frame, roi), done, failed, owner=self)

    # -- camera state -------------------------------------------------------------------

    def on_camera_state(self, state: str) -> None:
        lost = state.startswith("lost")
        self.alarm.setVisible(lost)
        if lost:
            name = state[len("lost: "):].replace(" — reconnecting", "")
            self.alarm_text.setText(f"⚠  Lost {name} — reconnecting…  Check the cable; frames resume by themselves.")
        running = state != "stopped"
        self.camera_panel.set_running(running)
        if state.startswith("connected"):
            source = self.context.frame_source
            self.camera_panel.show_support(getattr(source, "supported", None))
        if not running:
            self.live.clear()
            self.last_frame = None

    def _set_camera_property(self, key: str, value: float) -> None:
        source, capture = self.context.frame_source, self.context.capture_thread
        if capture is None or not hasattr(source, "set_property"):
            return

        def apply() -> None:
            source.set_property(key, value)

        capture.call_soon(apply)

    # -- ROI ---------------------------------------------------------------------------

    def _roi_drawn(self, roi: list) -> None:
        self.roi_button.setChecked(False)
        project = self.context.project
        if project is None:
            return
        project.set_setting("roi", list(roi) if roi else None)
        self.live.set_roi(roi or None)
        self.context.status_message.emit(
            f"Region of interest set: x {roi[0]}, y {roi[1]}, {roi[2]}×{roi[3]}" if roi else "Region of interest cleared"
        )

    def _project_changed(self, project) -> None:
        self.live.set_roi(project.get_setting("roi") if project is not None else None)
        self.capture_button.setEnabled(project is not None)

    def frame_array(self) -> np.ndarray | None:
        return None if self.last_frame is None else self.last_frame.image
