"""The camera panel: choose a source, find cameras, start/stop, resolution, exposure, gain.

Cameras are probed in a background task (a driver can take seconds per index). The
last source used is remembered in QSettings and offered first next time.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.core.camera import FrameSource, HotFolderSource, OpenCVCamera, SimulatedCamera, probe_cameras
from app.ui.shared.workers import run_in_background

SIMULATED = "sim"
RESOLUTIONS = [("Camera default", None), ("640 × 480", (640, 480)), ("1280 × 720", (1280, 720)),
               ("1920 × 1080", (1920, 1080))]  # fmt: skip
AUTO = -1.0  # spin box value meaning "leave the driver's automatic setting"


def _setting_spin(suffix: str, maximum: float) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setRange(AUTO, maximum)
    spin.setSpecialValueText("Auto")
    spin.setValue(AUTO)
    spin.setSuffix(suffix)
    spin.setDecimals(1)
    spin.setKeyboardTracking(False)
    return spin


class CameraPanel(QWidget):
    start_requested = Signal(object)  # a FrameSource
    stop_requested = Signal()
    property_changed = Signal(str, float)  # "exposure"/"gain", value (running camera)

    def __init__(self, settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        self.running = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)

        # The source on a row of its own: beside the buttons it made the panel too wide
        # for a 1024 px screen next to the labeling tools.
        self.source_box = QComboBox()
        self.source_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.source_box.setMinimumWidth(160)
        self.source_box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.source_box.setMinimumContentsLength(12)
        layout.addWidget(self.source_box)
        row = QHBoxLayout()
        self.find_button = QPushButton("Find cameras")
        self.start_button = QPushButton("Start")
        self.start_button.setProperty("primary", True)
        for button in (self.find_button, self.start_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        row.addWidget(self.find_button)
        row.addWidget(self.start_button)
        layout.addLayout(row)

        grid = QGridLayout()
        self.resolution_box = QComboBox()
        self.resolution_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        for text, size in RESOLUTIONS:
            self.resolution_box.addItem(text, size)
        self.exposure_spin = _setting_spin("", 10000.0)
        self.gain_spin = _setting_spin("", 1000.0)
        grid.addWidget(QLabel("Resolution"), 0, 0)
        grid.addWidget(self.resolution_box, 0, 1)
        grid.addWidget(QLabel("Exposure"), 1, 0)
        grid.addWidget(self.exposure_spin, 1, 1)
        grid.addWidget(QLabel("Gain"), 2, 0)
        grid.addWidget(self.gain_spin, 2, 1)
        self.support_note = QLabel("")
        self.support_note.setProperty("role", "hint")
        self.support_note.setWordWrap(True)
        grid.addWidget(self.support_note, 3, 0, 1, 2)
        layout.addLayout(grid)

        self.find_button.clicked.connect(lambda: self.find_cameras())
        self.start_button.clicked.connect(lambda: self._toggle())
        self.source_box.currentIndexChanged.connect(self._source_choice_changed)
        self.exposure_spin.valueChanged.connect(lambda v: self._camera_property("exposure", v))
        self.gain_spin.valueChanged.connect(lambda v: self._camera_property("gain", v))
        self._fill_sources([])
        self._source_choice_changed()

    # -- the list of sources ------------------------------------------------------------

    def _fill_sources(self, cameras: list[int]) -> None:
        remembered = str(self.settings.value("camera/source", SIMULATED))
        self.source_box.blockSignals(True)
        self.source_box.clear()
        self.source_box.addItem("Simulated line", SIMULATED)
        for index in cameras:
            self.source_box.addItem(f"Camera {index}", f"cam:{index}")
        folder = str(self.settings.value("camera/folder", ""))
        if folder:
            self.source_box.addItem(f"Hot folder: {folder}", f"folder:{folder}")
        if remembered.startswith("cam:") and self.source_box.findData(remembered) < 0:
            self.source_box.addItem(f"Camera {remembered[4:]} (last used)", remembered)
        self.source_box.addItem("Hot folder… (choose)", "folder:")
        self.source_box.setCurrentIndex(max(0, self.source_box.findData(remembered)))
        self.source_box.blockSignals(False)

    def find_cameras(self) -> None:
        self.find_button.setEnabled(False)
        self.find_button.setText("Looking…")

        def done(found: list[int]) -> None:
            self.find_button.setEnabled(True)
            self.find_button.setText("Find cameras")
            self._fill_sources(found)
            self.support_note.setText(
                f"Found {len(found)} camera(s)." if found else "No camera found. Check the cable, or use the simulated line."
            )

        run_in_background(lambda: probe_cameras(max_index=4, timeout_s=4.0), done, owner=self)

    def _source_choice_changed(self) -> None:
        is_camera = str(self.source_box.currentData() or "").startswith("cam:")
        for widget in (self.resolution_box, self.exposure_spin, self.gain_spin):
            widget.setEnabled(is_camera)
        if not is_camera:
            self.support_note.setText("")

    def select_source(self, key: str) -> None:
        index = self.source_box.findData(key)
        if index < 0 and key.startswith("folder:"):
            self.settings.setValue("camera/folder", key[len("folder:"):])
            self._fill_sources([])
            index = self.source_box.findData(key)
        self.source_box.setCurrentIndex(max(0, index))

    # -- starting -------------------------------------------------------------------

    def make_source(self) -> FrameSource | None:
        key = str(self.source_box.currentData() or SIMULATED)
        if key == SIMULATED:
            return SimulatedCamera(seed=int(self.settings.value("camera/sim_seed", 0)))
        if key.startswith("cam:"):
            size = self.resolution_box.currentData()
            exposure = self.exposure_spin.value()
            gain = self.gain_spin.value()
            return OpenCVCamera(
                int(key[4:]),
                width=size[0] if size else None,
                height=size[1] if size else None,
                exposure=None if exposure == AUTO else exposure,
                gain=None if gain == AUTO else gain,
            )
        folder = key[len("folder:"):]
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, "Choose the hot folder to watch")
            if not folder:
                return None
            self.select_source(f"folder:{folder}")
        return HotFolderSource(folder)

    def _toggle(self) -> None:
        if self.running:
            self.stop_requested.emit()
            return
        source = self.make_source()
        if source is None:
            return
        key = str(self.source_box.currentData())
        self.settings.setValue("camera/source", key)
        if key.startswith("cam:"):
            self.settings.setValue("camera/index", int(key[4:]))  # what Inspect opens by default
        self.start_requested.emit(source)

    def set_running(self, running: bool) -> None:
        self.running = running
        self.start_button.setText("Stop" if running else "Start")
        self.start_button.setProperty("primary", not running)
        self.start_button.style().unpolish(self.start_button)
        self.start_button.style().polish(self.start_button)
        self.source_box.setEnabled(not running)
        self.resolution_box.setEnabled(not running and str(self.source_box.currentData()).startswith("cam:"))

    def _camera_property(self, key: str, value: float) -> None:
        if value != AUTO and self.running:
            self.property_changed.emit(key, value)

    def show_support(self, supported: dict[str, bool] | None) -> None:
        """What the connected source ignores; None (not a camera) clears the note, which
        may still say "No camera found" from an earlier search."""
        supported = supported or {}
        missing = [k for k, ok in supported.items() if not ok]
        self.support_note.setText(f"This camera ignores: {', '.join(missing)}." if missing else "")
