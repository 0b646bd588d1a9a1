"""Starting, stopping and triggering the Inspect workspace's line.

LineControlMixin is mixed into InspectWorkspace: it makes the frame source (lending
Capture's running camera to the line and giving it back), starts the InspectLine with
the station's views and PLC, keeps the Start/Stop, mode and trigger controls in step
with it, and stops it, draining its last results into the log.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.core.errors import LinesideError
from app.ui.inspect.inspect_line import InspectLine
from app.ui.inspect.inspect_plc import wait_for_stopped_plc_servers
from app.ui.inspect.inspect_station import close_sources


class LineControlMixin:
    """The line's start, stop and trigger; uses InspectWorkspace's widgets and results."""

    worker: InspectLine | None
    _lent_camera: object | None

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def continuous(self) -> bool:
        return bool(self.mode_combo.currentData())

    def _plc_runs_line(self) -> bool:
        return self.worker is not None and self.worker.plc is not None

    def _mode_changed(self, *_args) -> None:
        # With a PLC the PLC alone triggers: a part it did not ask for would reach it as a result.
        self.trigger_button.setEnabled(self.is_running() and not self.continuous() and not self._plc_runs_line())
        if self.worker is not None:
            self.worker.set_continuous(self.continuous())

    # -- start / stop ----------------------------------------------------------------

    def toggle(self) -> None:
        if self.is_running():
            self.stop()
        else:
            self.start()

    def start(self, source_key: str | None = None, hot_folder: Path | str | None = None) -> bool:
        """Start inspecting from "simulated", "camera" or "folder" (asks for the folder
        unless *hot_folder* is given). Returns False when nothing was started."""
        project = self.context.project
        if project is None or project.production_model() is None or self.is_running():
            return False
        source_key = source_key or self.source_combo.currentData()
        try:
            extra = self.station.extra_sources()  # views 2..4, before Capture lends its camera
        except LinesideError as exc:
            QMessageBox.warning(self, "Cannot start the views", str(exc))
            return False
        source = self._make_source(source_key, hot_folder)
        if source is None:
            close_sources(extra)
            return False
        plc = self.station.plc if self.station.plc.enabled else None
        if plc is not None and self.continuous():
            self.mode_combo.setCurrentIndex(1)  # the PLC triggers the parts
        self.worker = InspectLine(project, [source, *extra], continuous=self.continuous(), parts=self.parts,
                                  frames=self.context.frames, parent=self, names=self.station.names, plc=plc)
        self.worker.set_heat_alpha(self.heatmap_controls.alpha())
        self.worker.results_ready.connect(self._schedule_refresh)
        self.worker.model_loaded.connect(lambda v: self.model_label.setText(f"Model {v}"))
        self.worker.failed.connect(self._on_worker_failed)
        self.worker.source_state.connect(self.context.camera_state)
        self.worker.ended.connect(self._on_worker_finished)
        self.worker.start()
        self.start_button.setText("&Stop")
        self.source_combo.setEnabled(False)
        self.mode_combo.setEnabled(plc is None)
        self.station.set_running(True)
        if self.worker.plc_link is not None:
            self.station.plc_panel.attach(self.worker.plc_link)
        if self.reviewing is None:
            self.banner.show_idle("READY", "Waiting for the first part")
        self._mode_changed()
        self.inspecting.emit(True)
        return True

    def _make_source(self, key: str, hot_folder: Path | str | None = None):
        """The frame source for the line, or None (no folder chosen). The line's session
        captures from it; the camera already running in Capture is lent to it."""
        from app.core.camera import HotFolderSource, OpenCVCamera, SimulatedCamera

        self._lent_camera = None
        first = self.station.views[0]
        if key == "camera" and self.context.frame_source is not None:
            self._lent_camera = self.context.frame_source  # one capture at a time: the line's
            self.context.stop_source()
            return self._lent_camera
        if key == "simulated":
            return SimulatedCamera(seed=int(time.time()) % 10_000)
        if key == "camera":
            index = first.camera if first.camera is not None else int(self.context.settings.value("camera/index", 0))
            return OpenCVCamera(index)
        folder = str(hot_folder or first.folder or "")
        if not folder:
            start_dir = str(self.context.settings.value("inspect/hot_folder", ""))
            folder = QFileDialog.getExistingDirectory(self, "Hot folder to watch", start_dir)
        if not folder:
            return None
        self.context.settings.setValue("inspect/hot_folder", folder)
        source = HotFolderSource(Path(folder))
        try:
            source.open()  # files from now on are parts, though the model is still loading
        except LinesideError as exc:
            QMessageBox.warning(self, "Cannot start the source", str(exc))
            return None
        return source

    def stop(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            self.station.plc_panel.detach()
            worker.stop()  # every part judged is committed: the log is complete
            self._drain_from(worker)
            worker.deleteLater()
            self.context.frames.clear()
            if self.context.camera_status != "stopped":
                self.context.camera_state.emit("stopped")
        lent, self._lent_camera = self._lent_camera, None
        if lent is not None:  # Capture's camera goes back to Capture
            try:
                self.context.start_source(lent)
            except LinesideError as exc:
                self.context.status_message.emit(str(exc))
        self.start_button.setText("&Start")
        self.source_combo.setEnabled(True)
        self.mode_combo.setEnabled(True)
        self.station.set_running(False)
        self._mode_changed()
        self.inspecting.emit(False)

    def shutdown(self) -> None:
        """Stop the inspection thread and the PLC server (the window is closing)."""
        self.stop()
        wait_for_stopped_plc_servers()

    def trigger(self) -> None:
        if self.worker is not None and not self.continuous() and not self._plc_runs_line():
            self.worker.trigger()
