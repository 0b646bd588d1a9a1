"""Inspect: the production model judges parts at the line.

The line is app.core.line_session.LineSession (InspectLine hears it through Qt): it
captures from the source (a camera, the simulated line or a hot folder), judges each
part off the GUI thread and records it in the project; this widget shows the verdict
banner, the heatmap, counters and the log, and sends wrong verdicts back to labeling.

Review at the line: selecting a row of the log (click, Up/Down, Enter) shows that part
(its kept image and heatmap, verdict and score) while the line goes on counting; "this
verdict is wrong" (W) then works on that part. Esc or "Back to live" returns.

A station (app.ui.inspect.inspect_station): up to four views of each part side by side, each
with its own PASS/FAIL tag, the banner naming the view(s) that failed; and a PLC
(Modbus TCP or OPC UA, app.core.plc) that triggers the line, with its signals live in
a panel under the views. Both are kept in the project; one view and no PLC is the
plain workspace it always was.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QMessageBox,
    QPushButton,
    QSplitter,
    QStackedLayout,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import LinesideError
from app.ui.inspect.inspect_controls import HeatmapControls, ResultsPanel
from app.ui.inspect.inspect_line import InspectLine, LiveView
from app.ui.inspect.inspect_log import MAX_TABLE_ROWS, InspectionCounters, InspectionRecord, _time_text, export_csv
from app.ui.inspect.inspect_panels import CorrectionDialog, NoModelPanel
from app.ui.inspect.inspect_plc import wait_for_stopped_plc_servers
from app.ui.inspect.inspect_review import PartRing, RetainedPart, ReviewBar, image_not_kept_text
from app.ui.inspect.inspect_station import StationSetup, close_sources
from app.ui.inspect.inspect_view import ImageView, blend_heatmap, bgr_to_qimage
from app.ui.inspect.verdict_banner import NoticeBanner, VerdictBanner
from app.ui.inspect.view_grid import ViewGrid, banner_detail, worst_view
from app.ui.shared.keys import WINDOW_KEYS

SOURCES = (("simulated", "Simulated line"), ("camera", "Camera"), ("folder", "Hot folder…"))
TRIGGER_KEY_SETTING = "inspect/trigger_key"
GUI_REFRESH_MS = 100  # results are shown at most this often; the line may run faster
IDLE_IMAGE_TEXT = "Press Start to inspect parts."


class InspectWorkspace(QWidget):
    navigate_requested = Signal(str)  # "train" or "models"
    inspecting = Signal(bool)

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.worker: InspectLine | None = None  # the running line
        self._lent_camera = None  # Capture's running camera, given back to it when the line stops
        self.counters = InspectionCounters()
        self.session: list[InspectionRecord] = []
        self.latest: LiveView | None = None
        self.parts = PartRing()  # the newest parts' images, for review
        self.reviewing: InspectionRecord | None = None  # the past part on screen; None = live
        self._corrected: set[tuple[int, int]] = set()  # (part, view) already sent back to labeling (once each)
        self._shown_part: int | None = None  # the part on screen, so a new one picks its worst view
        self._updating_table = False
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._last_refresh = 0.0
        self._refresh_timer.timeout.connect(self._drain_results)
        self._build()
        self._connect()
        self._load_station()
        self.refresh()

    # -- layout ----------------------------------------------------------------------

    def _build(self) -> None:
        self._stack = QStackedLayout(self)
        self.no_model = NoModelPanel()
        self._stack.addWidget(self.no_model)
        line = QWidget()
        self._stack.addWidget(line)
        root = QVBoxLayout(line)

        # Two rows of controls: in one row they need more than a 1024 px screen has.
        self.source_combo = QComboBox()
        for key, text in SOURCES:
            self.source_combo.addItem(text, key)
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Continuous", True)
        self.mode_combo.addItem("On trigger key", False)
        self.start_button = QPushButton("&Start")
        self.start_button.setProperty("primary", True)
        self.start_button.setMinimumWidth(140)
        self.trigger_button = QPushButton("&Inspect now")
        self.key_edit = QKeySequenceEdit(QKeySequence(self._trigger_key()))
        self.key_edit.setMaximumWidth(140)
        self.key_edit.setToolTip("The key that triggers one inspection")
        self.station = StationSetup(self.context, self)
        first, second = QHBoxLayout(), QHBoxLayout()
        for widget in (QLabel("Source"), self.source_combo, self.station.views_button, QLabel("Mode"), self.mode_combo,
                       self.start_button):
            first.addWidget(widget)
        first.addStretch(1)
        self.model_label = QLabel("")
        self.model_label.setStyleSheet("font-size: 13pt;")
        first.addWidget(self.model_label)
        first.addWidget(self.station.plc_button)
        for widget in (self.trigger_button, QLabel("Key"), self.key_edit):
            second.addWidget(widget)
        second.addSpacing(16)
        self.heatmap_controls = HeatmapControls(self.context.settings)
        second.addWidget(self.heatmap_controls, 1)
        root.addLayout(first)
        root.addLayout(second)

        self.notice = NoticeBanner()
        root.addWidget(self.notice)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        self.review_bar = ReviewBar()
        left_layout.addWidget(self.review_bar)
        self.banner = VerdictBanner()
        self.banner.setMinimumHeight(150)
        left_layout.addWidget(self.banner)
        self.image_view = ImageView(IDLE_IMAGE_TEXT)  # view 1's; the grid adds the others beside it
        self.view_grid = ViewGrid(self.image_view)
        left_layout.addWidget(self.view_grid, 1)
        # Hidden unless a PLC is configured. Under the views, not beside the log: views of a
        # square part leave black bars there anyway, and the log needs its rows.
        left_layout.addWidget(self.station.plc_panel)
        splitter.addWidget(left)

        self.results = ResultsPanel()
        # The names tests and the window use, kept from before the panel was split out.
        self.counters_panel, self.table_model, self.table = self.results.counters_panel, self.results.table_model, self.results.table
        self.wrong_button, self.export_button = self.results.wrong_button, self.results.export_button
        self.reset_button = self.results.reset_button
        splitter.addWidget(self.results)
        # Even halves: the part is about square, so the left half is mostly black bars
        # anyway, and the log and counters on the right need the width.
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        root.addWidget(splitter, 1)

        # Trigger keys work anywhere in the workspace; Enter too, except in the log (it opens the part there).
        self._trigger_shortcuts = [QShortcut(QKeySequence(self._trigger_key()), self), QShortcut(QKeySequence("Return"), self)]
        self._heat_shortcut = QShortcut(QKeySequence("H"), self)
        self._wrong_shortcut = QShortcut(QKeySequence("W"), self)
        self._back_shortcut = QShortcut(QKeySequence("Esc"), self)
        for shortcut in (*self._trigger_shortcuts, self._heat_shortcut, self._wrong_shortcut, self._back_shortcut):
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def _connect(self) -> None:
        # clicked(bool) would hand its "checked" flag to a slot with an optional first
        # parameter (export_log(path=False), correct_current(verdict=False)): lambdas.
        self.start_button.clicked.connect(lambda: self.toggle())
        self.trigger_button.clicked.connect(lambda: self.trigger())
        for shortcut in self._trigger_shortcuts:
            shortcut.activated.connect(self.trigger)
        self._heat_shortcut.activated.connect(self.heatmap_controls.toggle)
        self._wrong_shortcut.activated.connect(self._wrong_key)
        self._back_shortcut.activated.connect(self.back_to_live)
        # Selected, not merely current: Tab into the log makes a row current without opening it.
        self.table.selectionModel().selectionChanged.connect(self._on_selection_changed)
        self.table.clicked.connect(lambda index: self._on_row_clicked(index))
        self.table.open_requested.connect(self.open_selected)
        self.table.back_requested.connect(self.back_to_live)
        self.review_bar.back_requested.connect(self.back_to_live)
        self.heatmap_controls.changed.connect(self._heat_alpha_changed)
        self.key_edit.editingFinished.connect(self._store_trigger_key)
        self.mode_combo.currentIndexChanged.connect(self._mode_changed)
        self.source_combo.currentIndexChanged.connect(lambda _i: self.station.set_first_kind(self.source_combo.currentData()))
        self.station.views_changed.connect(self._views_changed)
        self.view_grid.view_clicked.connect(lambda _i: self._update_wrong_button())
        self.wrong_button.clicked.connect(lambda: self.correct_current())
        self.export_button.clicked.connect(lambda: self.export_log())
        self.reset_button.clicked.connect(lambda: self.reset_counters())
        self.no_model.navigate_requested.connect(self.navigate_requested)
        self.context.project_changed.connect(self._on_project_changed)
        self.context.models_changed.connect(self._on_models_changed)
        self.context.camera_state.connect(self._on_camera_state)

    # -- state -----------------------------------------------------------------------

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def refresh(self) -> None:
        """Show the line view when a model is in production, else say what to do."""
        project = self.context.project
        model = project.production_model() if project is not None else None
        if project is None:
            self.no_model.set_message("Open a project to inspect parts.")
        elif model is None:
            self.no_model.set_message("No model is in production yet.")
        self._stack.setCurrentIndex(0 if model is None else 1)
        if model is not None and not self.is_running():
            self.model_label.setText(f"Model {model.version}")
        self._mode_changed()

    def _trigger_key(self) -> str:
        return str(self.context.settings.value(TRIGGER_KEY_SETTING, "Space"))

    def reserved_keys(self) -> set[str]:
        """Keys something else in Inspect or the window answers to (W, H, Esc, Enter, Ctrl+1..4)."""
        own = [self._trigger_shortcuts[1], self._heat_shortcut, self._wrong_shortcut, self._back_shortcut]
        return {k for k in {s.key().toString() for s in own} | set(WINDOW_KEYS) if k}

    def set_trigger_key(self, text: str) -> bool:
        """Bind the trigger to *text*; refuses (False, with a visible reason) a key in use:
        W as the trigger key would inspect a part instead of flagging a wrong verdict."""
        sequence = QKeySequence(text)
        if sequence.isEmpty():
            return False
        key = sequence.toString()
        if key in self.reserved_keys():
            self.notice.show_notice(f"{key} already has a job in Inspect, so it cannot trigger. "
                                    f"The trigger stays on {self._trigger_key()}.")
            self.key_edit.setKeySequence(QKeySequence(self._trigger_key()))
            return False
        self.context.settings.setValue(TRIGGER_KEY_SETTING, key)
        self._trigger_shortcuts[0].setKey(sequence)
        return True

    def _store_trigger_key(self) -> None:
        seq = self.key_edit.keySequence()
        # The field reports "finished" again when a refused key is put back: not a change.
        if not seq.isEmpty() and seq.toString() != self._trigger_key():
            self.set_trigger_key(seq.toString())

    def continuous(self) -> bool:
        return bool(self.mode_combo.currentData())

    def _plc_runs_line(self) -> bool:
        return self.worker is not None and self.worker.plc is not None

    def _mode_changed(self, *_args) -> None:
        # With a PLC the PLC alone triggers: a part it did not ask for would reach it as a result.
        self.trigger_button.setEnabled(self.is_running() and not self.continuous() and not self._plc_runs_line())
        if self.worker is not None:
            self.worker.set_continuous(self.continuous())

    def _load_station(self) -> None:
        """The project's views and PLC; view 1's source is the Source picker's."""
        self.station.load(self.context.project)
        index = self.source_combo.findData(self.station.views[0].kind)
        if index >= 0 and index != self.source_combo.currentIndex():
            self.source_combo.blockSignals(True)  # showing the stored choice is not a new choice
            self.source_combo.setCurrentIndex(index)
            self.source_combo.blockSignals(False)

    def _views_changed(self) -> None:
        self.view_grid.set_names(self.station.names)
        self._shown_part = None
        if self.reviewing is not None:
            self._show_review()
        else:
            self._show_live()

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

    # -- results ---------------------------------------------------------------------

    def _schedule_refresh(self) -> None:
        # The first part after a pause shows at once (a trigger feels instant); during a
        # run the screen is refreshed at most every GUI_REFRESH_MS, however fast the line.
        if not self._refresh_timer.isActive():
            since = (time.monotonic() - self._last_refresh) * 1000
            self._refresh_timer.start(max(0, int(GUI_REFRESH_MS - since)))

    def _drain_results(self) -> None:
        self._last_refresh = time.monotonic()
        if self.worker is not None:
            self._drain_from(self.worker)

    def _drain_from(self, worker: InspectLine) -> None:
        records, latest, drift = worker.take_results()
        for record in records:
            self.counters.add(record)
        self.session.extend(records)
        self._add_to_table(records)
        self.counters_panel.show_counters(self.counters)
        if latest is not None:
            self.latest = latest
            if self.reviewing is None:  # a part under review stays on screen until Back to live
                self._show_live()
        self.notice.show_notice(drift or "")

    def _add_to_table(self, records: list[InspectionRecord]) -> None:
        """New rows on top; while a past part is reviewed its row stays selected and where it was."""
        if not records:
            return
        bar = self.table.verticalScrollBar()
        top = bar.value()
        self._updating_table = True  # rows moving under the selection do not change the review
        try:
            self.table_model.add_records(records)
            if self.reviewing is not None:
                row = self.table_model.row_of(self.reviewing)
                if row is None:  # scrolled out of the log: the part stays on screen, unselected
                    self.table.selectionModel().clear()
                else:
                    self.table.updateGeometries()  # the scroll range grows now, not on the next paint
                    bar.setValue(top + min(len(records), MAX_TABLE_ROWS))
                    self.table.viewport().update()  # repaint whole: a scrolled blit left stale rows
        finally:
            self._updating_table = False

    def _show_live(self) -> None:
        live = self.latest
        self.view_grid.set_placeholder(IDLE_IMAGE_TEXT)
        if live is None:
            self.banner.show_idle()  # READY, waiting for the first part
            self.view_grid.show_part([], [])
        else:
            rec = live.record
            self.banner.show_verdict(rec.label == "PASS", banner_detail(rec), rec.score)
            self._show_views(rec, [shot.display for shot in live.shots] if live.shots else [live.display])
        self._update_wrong_button()

    def _show_views(self, record: InspectionRecord, images: list) -> None:
        """Each view's image and tag; a new part on screen selects its worst view."""
        key = self._key(record)[0]
        if key != self._shown_part:
            self._shown_part = key
            self.view_grid.select(worst_view(record))
        self.view_grid.show_part(images, list(record.views))

    def _on_worker_failed(self, message: str) -> None:
        self.context.status_message.emit(message)
        if self.latest is None and self.reviewing is None:  # nothing judged yet: the banner is free to say why
            self.banner.show_idle("ERROR", message[:80])

    def _on_worker_finished(self) -> None:
        if self.worker is not None and self.sender() is self.worker:
            self.stop()  # the line could not start (the model could not be loaded)

    def _on_camera_state(self, state: str) -> None:
        if state.startswith("lost"):
            self.notice.show_notice(f"Camera {state}")
        elif state.startswith("connected") and self.notice.text().startswith("Camera"):
            self.notice.show_notice("")

    def _on_models_changed(self) -> None:
        if self.worker is not None:
            self.worker.reload_model()
        self.refresh()

    def _on_project_changed(self, _project) -> None:
        self.stop()
        self.reset_counters()
        # The last part belongs to the old project: its verdict, image and correction go.
        self.latest = None
        self._corrected.clear()
        self._load_station()  # the new project's views and PLC
        self.banner.show_idle()
        self.view_grid.show_part([], [])
        self.wrong_button.setEnabled(False)
        self.notice.show_notice("")
        self.refresh()

    def _heat_alpha_changed(self, alpha: float) -> None:
        if self.worker is not None:
            self.worker.set_heat_alpha(alpha)
        if self.reviewing is not None:
            self._show_review()
            return
        live = self.latest
        if live is not None and live.base is not None and live.heat is not None:
            # Re-blend the part on screen now; the next parts come blended by the worker.
            if live.shots:
                live.reblend(alpha)
            else:
                live.display = bgr_to_qimage(blend_heatmap(live.base, live.heat, alpha))
            self._show_views(live.record, [shot.display for shot in live.shots] if live.shots else [live.display])

    # -- actions ---------------------------------------------------------------------

    def reset_counters(self) -> None:
        self.back_to_live()  # the log's rows go, and with them the parts to review
        self.parts.clear()
        self.counters = InspectionCounters()
        self.session = []
        self.table_model.clear()
        self.counters_panel.show_counters(self.counters)

    def export_log(self, path: Path | str | None = None) -> Path | None:
        if path is None:
            default = Path(str(self.context.settings.value("inspect/export_dir", str(Path.home()))))
            name = default / time.strftime("inspections-%Y%m%d-%H%M%S.csv")
            chosen, _ = QFileDialog.getSaveFileName(self, "Export the log", str(name), "CSV files (*.csv)")
            if not chosen:
                return None
            path = chosen
            self.context.settings.setValue("inspect/export_dir", str(Path(chosen).parent))
        try:
            export_csv(path, self.session)
        except (LinesideError, OSError) as exc:
            QMessageBox.warning(self, "Export failed", str(exc))
            return None
        self.context.status_message.emit(f"Exported {len(self.session)} inspections to {path}")
        return Path(path)

    def correct_current(self, verdict: str | None = None) -> int | None:
        """Save the part on screen (the one under review, else the newest) into the
        project with the right label.

        Returns the new image id. *verdict* skips the question (keyboard and tests).
        """
        project = self.context.project
        rec, image = self._part_on_screen()
        if project is None or rec is None or image is None or self._key(rec) in self._corrected:
            return None
        view = self._view_on_screen(rec)
        if verdict is None:
            said = "PASS" if rec.label == "PASS" else f"FAIL ({rec.defect_class})"
            part = f"of {_time_text(rec.at)} (score {rec.score:.2f})" if self.reviewing is not None else ""
            if rec.views:  # several views: the image saved is the selected one's
                part = f"{part} as {rec.views[view].name} saw it".strip()
            dialog = CorrectionDialog(project.classes(), said, self, part=part)
            if dialog.exec() != CorrectionDialog.DialogCode.Accepted or dialog.choice is None:
                return None
            verdict = dialog.choice
        try:
            tags = {"model_said": rec.label, "model_version": rec.model_version}
            if rec.inspection_id is not None and rec.inspection_id > 0:
                tags["inspection_id"] = str(rec.inspection_id)
            if rec.views:
                tags["view"] = rec.views[view].name
            stored, _new = project.add_image_array(image, source="line", tags=tags)
            project.set_label(stored.id, verdict, author="line")
        except LinesideError as exc:
            QMessageBox.warning(self, "Could not save the part", str(exc))
            return None
        self._corrected.add(self._key(rec))  # one correction per part
        self._update_wrong_button()
        self.context.labels_changed.emit(stored.id)
        if hasattr(self.context, "images_changed"):
            self.context.images_changed.emit()
        self.context.status_message.emit(f"Saved the part as '{verdict}' for the next training.")
        return stored.id

    # -- review at the line ----------------------------------------------------------

    def _key(self, record: InspectionRecord) -> tuple[int, int]:
        """(part, view): a part seen by several views can be corrected once per view."""
        part = record.inspection_id if record.inspection_id is not None else id(record)
        return part, self._view_on_screen(record)

    def _view_on_screen(self, record: InspectionRecord) -> int:
        """The selected view of *record* (0 for a part seen by one view)."""
        return min(self.view_grid.selected, len(record.views) - 1) if record.views else 0

    def _part_on_screen(self):
        """(record, original image or None) of the part the screen shows; with several
        views, the selected view's image."""
        if self.reviewing is not None:
            part = self.parts.get(self.reviewing.inspection_id)
            view = self._view_on_screen(self.reviewing)
            return self.reviewing, part.view(view).image if part is not None and view < part.view_count else None
        if self.latest is not None:
            live, view = self.latest, self._view_on_screen(self.latest.record)
            return live.record, live.shots[view].image if live.shots and view < len(live.shots) else live.image
        return None, None

    def _update_wrong_button(self) -> None:
        rec, image = self._part_on_screen()
        self.wrong_button.setEnabled(rec is not None and image is not None and self._key(rec) not in self._corrected)

    def review(self, record: InspectionRecord) -> None:
        """Show a past part (its kept image and heatmap, verdict and score) until Back to live."""
        self.reviewing = record
        row = self.table_model.row_of(record)
        if row is not None and self.table.currentIndex().row() != row:
            self._updating_table = True
            try:
                self.table.setCurrentIndex(self.table_model.index(row, 0))
            finally:
                self._updating_table = False
            self.table.scrollTo(self.table_model.index(row, 0))  # opened from elsewhere: show its row
        self._show_review()

    def _show_review(self) -> None:
        rec = self.reviewing
        if rec is None:
            return
        part: RetainedPart | None = self.parts.get(rec.inspection_id)
        self.review_bar.show_record(rec, kept=part is not None)
        self.banner.show_verdict(rec.label == "PASS", banner_detail(rec), rec.score)
        if part is None:
            self.view_grid.set_placeholder(image_not_kept_text(self.parts.max_parts))
            self._show_views(rec, [])
        else:
            alpha = self.heatmap_controls.alpha()
            views = [part.view(i) for i in range(part.view_count)]
            self._show_views(rec, [bgr_to_qimage(blend_heatmap(v.base, v.heat01(), alpha)) for v in views])
        self._update_wrong_button()

    def back_to_live(self) -> None:
        """Leave the review: the newest part, its verdict and the live updates again."""
        if self.reviewing is None:
            return
        self.reviewing = None
        self.review_bar.hide()
        self._updating_table = True
        try:
            self.table.selectionModel().clear()  # also the current row: Down starts again at the newest
        finally:
            self._updating_table = False
        self._show_live()

    def open_selected(self) -> None:
        """Enter on the log: review the selected part (the newest when none is)."""
        index = self.table.currentIndex()
        row = index.row() if index.isValid() else 0
        if 0 <= row < self.table_model.rowCount():
            self.review(self.table_model.record(row))

    def _on_selection_changed(self, *_args) -> None:
        if self._updating_table:
            return
        rows = self.table.selectionModel().selectedRows()
        if len(rows) == 1 and (record := self.table_model.record(rows[0].row())) is not self.reviewing:
            self.review(record)

    def _on_row_clicked(self, index: QModelIndex) -> None:
        if index.isValid() and self.table_model.record(index.row()) is not self.reviewing:
            self.review(self.table_model.record(index.row()))

    def _wrong_key(self) -> None:
        if self.wrong_button.isEnabled():
            self.correct_current()
