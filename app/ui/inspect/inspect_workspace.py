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

InspectWorkspace is put together from InspectPage (inspect_page: the widgets and the
trigger key), LineControlMixin (line_control: start, stop, trigger) and
PartOnScreenMixin (part_on_screen: live or review, and corrections); this module wires
them up and carries the line's results onto the screen and into the log.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

from app.core.errors import LinesideError
from app.ui.inspect.inspect_line import InspectLine, LiveView
from app.ui.inspect.inspect_log import MAX_TABLE_ROWS, InspectionCounters, InspectionRecord, export_csv
from app.ui.inspect.inspect_page import InspectPage
from app.ui.inspect.inspect_review import PartRing
from app.ui.inspect.inspect_view import blend_heatmap, bgr_to_qimage
from app.ui.inspect.line_control import LineControlMixin
from app.ui.inspect.part_on_screen import PartOnScreenMixin

GUI_REFRESH_MS = 100  # results are shown at most this often; the line may run faster


class InspectWorkspace(PartOnScreenMixin, LineControlMixin, InspectPage):
    navigate_requested = Signal(str)  # "train" or "models"
    inspecting = Signal(bool)

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(context, parent)  # InspectPage: the widgets
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
        self._connect()
        self._load_station()
        self.refresh()

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

    # -- the line and the project ----------------------------------------------------

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

    # -- log -------------------------------------------------------------------------

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
