"""The part on the Inspect screen: the newest one live, or a past one under review, and
"this verdict is wrong" for it.

PartOnScreenMixin is mixed into InspectWorkspace. Selecting a row of the log (click,
Up/Down, Enter) reviews that part (its kept image and heatmap, verdict and score) while
the line goes on counting; Esc or "Back to live" returns to the newest part. The part
on screen, in the selected view, is what "this verdict is wrong" (W) saves into the
project with the right label, once per part and view.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex
from PySide6.QtWidgets import QMessageBox

from app.core.errors import LinesideError
from app.ui.inspect.inspect_line import LiveView
from app.ui.inspect.inspect_log import InspectionRecord, _time_text
from app.ui.inspect.inspect_page import IDLE_IMAGE_TEXT
from app.ui.inspect.inspect_panels import CorrectionDialog
from app.ui.inspect.inspect_review import PartRing, RetainedPart, image_not_kept_text
from app.ui.inspect.inspect_view import blend_heatmap, bgr_to_qimage
from app.ui.inspect.view_grid import banner_detail, worst_view


class PartOnScreenMixin:
    """Live or review, and corrections; uses InspectWorkspace's widgets and state."""

    latest: LiveView | None
    parts: PartRing
    reviewing: InspectionRecord | None
    _corrected: set[tuple[int, int]]
    _shown_part: int | None
    _updating_table: bool

    # -- what the screen shows -------------------------------------------------------

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

    # -- review at the line ----------------------------------------------------------

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

    # -- this verdict is wrong -------------------------------------------------------

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

    def _wrong_key(self) -> None:
        if self.wrong_button.isEnabled():
            self.correct_current()
