"""The image grid beside the canvas, with filters.

Filters: all, unlabeled, OK, each defect class, the golden set (marked ★), "model
disagrees with the label" and "most uncertain first". The last two need the production model's opinion of every
image; it is computed by the ONNX Runtime Inspector in a background task and cached
per model version. Thumbnails are decoded in the background too: a project of
thousands of images opens at once and fills in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QImage, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QComboBox, QLabel, QListView, QListWidget, QListWidgetItem, QVBoxLayout, QWidget

from app.core.imageio import read_image
from app.core.records import OK
from app.ui.shared.style import FAIL, LINE, PASS
from app.ui.shared.workers import run_in_background

log = logging.getLogger(__name__)

THUMB = 112
ID_ROLE = Qt.ItemDataRole.UserRole
ALL, UNLABELED, DISAGREES, UNCERTAIN = "all", "unlabeled", "disagrees", "uncertain"
GOLDEN_SET = "golden set"  # a filter key; the split itself is called "golden"
GOLDEN_MARK = " ★"
THUMB_BATCH = 24


@dataclass(frozen=True)
class Opinion:
    """What the production model says about one image."""

    passed: bool
    score: float
    defect_class: str | None
    threshold: float

    def disagrees_with(self, verdict: str | None) -> bool:
        if verdict is None:
            return False
        if verdict == OK:
            return not self.passed
        return self.passed or (self.defect_class not in (None, "defect", verdict))


def model_opinions(project, image_ids: list[int]) -> tuple[str, dict[int, Opinion]]:
    """Run the production model over *image_ids* (a background task): (version, opinions)."""
    from app.core.runtime import load_inspector_for_project

    inspector, model = load_inspector_for_project(project)
    opinions: dict[int, Opinion] = {}
    for image_id in image_ids:
        try:
            verdict = inspector.inspect(project.load_image(image_id))
        except Exception as exc:  # one unreadable image must not lose the others
            log.warning("cannot score image %s: %s", image_id, exc)
            continue
        opinions[image_id] = Opinion(verdict.passed, verdict.score, verdict.defect_class, verdict.threshold)
    return model.version, opinions


def make_thumbnail(path) -> QImage:
    image = read_image(path)
    h, w = image.shape[:2]
    scale = THUMB / max(h, w)
    small = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
    rgb = np.ascontiguousarray(cv2.cvtColor(small, cv2.COLOR_BGR2RGB))
    return QImage(rgb.data, rgb.shape[1], rgb.shape[0], 3 * rgb.shape[1], QImage.Format.Format_RGB888).copy()


class Filmstrip(QWidget):
    image_selected = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.project = None
        self._verdicts: dict[int, str | None] = {}
        self._golden: set[int] = set()
        self._colors: dict[str, str] = {}
        self._thumbs: dict[int, QImage] = {}
        self._pending_thumbs: set[int] = set()
        self._opinions: dict[int, Opinion] = {}
        self._opinion_version: str | None = None
        self._scored: set[int] = set()
        self._scoring = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.filter_box = QComboBox()
        self.filter_box.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # keys are for labeling
        self.filter_box.currentIndexChanged.connect(lambda _i: self.refresh())
        layout.addWidget(self.filter_box)
        self.note = QLabel("")
        self.note.setProperty("role", "hint")
        self.note.setWordWrap(True)
        layout.addWidget(self.note)
        self.list = QListWidget()
        self.list.setViewMode(QListView.ViewMode.IconMode)
        self.list.setIconSize(QSize(THUMB, THUMB))
        self.list.setGridSize(QSize(THUMB + 16, THUMB + 34))
        self.list.setResizeMode(QListView.ResizeMode.Adjust)
        self.list.setMovement(QListView.Movement.Static)
        self.list.setUniformItemSizes(True)
        self.list.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # arrows move through the workspace
        self.list.currentItemChanged.connect(self._current_changed)
        layout.addWidget(self.list, 1)

    # -- content --------------------------------------------------------------------

    def set_project(self, project) -> None:
        self.project = project
        self._thumbs.clear()
        self._pending_thumbs.clear()
        self._opinions, self._opinion_version, self._scored = {}, None, set()
        self.reload()

    def reload(self, select_id: int | None = None) -> None:
        """Re-read images, labels and classes from the project, keep the filter."""
        if self.project is None:
            self.list.clear()
            return
        self._colors = {c.name: c.color for c in self.project.classes()}
        labels = {record.id: label.verdict for record, label in self.project.labeled()}
        records = self.project.images()
        self._verdicts = {record.id: labels.get(record.id) for record in records}
        self._golden = {record.id for record in records if record.split == "golden"}
        self._rebuild_filters()
        self.refresh(select_id)

    def _rebuild_filters(self) -> None:
        current = self.filter_box.currentData()
        self.filter_box.blockSignals(True)
        self.filter_box.clear()
        self.filter_box.addItem("All images", ALL)
        self.filter_box.addItem("Unlabeled", UNLABELED)
        self.filter_box.addItem("OK", OK)
        for name in self._colors:
            self.filter_box.addItem(name, name)
        self.filter_box.addItem("Golden set ★", GOLDEN_SET)
        self.filter_box.addItem("Model disagrees with the label", DISAGREES)
        self.filter_box.addItem("Most uncertain first", UNCERTAIN)
        index = self.filter_box.findData(current)
        self.filter_box.setCurrentIndex(max(0, index))
        self.filter_box.blockSignals(False)

    def set_filter(self, key: str) -> None:
        self.filter_box.setCurrentIndex(max(0, self.filter_box.findData(key)))

    def _visible_ids(self) -> list[int]:
        key = self.filter_box.currentData() or ALL
        ids = list(self._verdicts)
        if key == ALL:
            return ids
        if key == UNLABELED:
            return [i for i in ids if self._verdicts[i] is None]
        if key == GOLDEN_SET:
            return [i for i in ids if i in self._golden]
        if key in (DISAGREES, UNCERTAIN):
            if not self._ensure_opinions():
                return []
            if key == DISAGREES:
                return [i for i in ids if i in self._opinions and self._opinions[i].disagrees_with(self._verdicts[i])]
            scored = [i for i in ids if i in self._opinions]
            return sorted(scored, key=lambda i: abs(self._opinions[i].score - self._opinions[i].threshold))
        return [i for i in ids if self._verdicts[i] == key]

    def refresh(self, select_id: int | None = None) -> None:
        keep = select_id if select_id is not None else self.current_id()
        self.list.blockSignals(True)
        self.list.clear()
        for image_id in self._visible_ids():
            item = QListWidgetItem(self._caption(image_id))
            item.setData(ID_ROLE, image_id)
            item.setSizeHint(QSize(THUMB + 16, THUMB + 34))
            self._decorate(item)
            self.list.addItem(item)
        self.list.blockSignals(False)
        if keep is not None and self.select(keep, emit=False):
            pass
        self._load_missing_thumbs()

    def _caption(self, image_id: int) -> str:
        verdict = self._verdicts.get(image_id)
        text = f"#{image_id} · {verdict}" if verdict else f"#{image_id}"
        if image_id in self._golden:
            text += GOLDEN_MARK
        opinion = self._opinions.get(image_id)
        if opinion is not None and self.filter_box.currentData() in (DISAGREES, UNCERTAIN):
            text += f" ({opinion.score:.2f})"
        return text

    def _border_color(self, image_id: int) -> str:
        verdict = self._verdicts.get(image_id)
        if verdict is None:
            return LINE
        return PASS if verdict == OK else self._colors.get(verdict, FAIL)

    def _decorate(self, item: QListWidgetItem) -> None:
        image_id = int(item.data(ID_ROLE))
        pixmap = QPixmap(THUMB, THUMB)
        pixmap.fill(QColor("#e4e7ec"))
        painter = QPainter(pixmap)
        thumb = self._thumbs.get(image_id)
        if thumb is not None:
            painter.drawImage((THUMB - thumb.width()) // 2, (THUMB - thumb.height()) // 2, thumb)
        width = 3 if self._verdicts.get(image_id) is None else 8
        painter.setPen(QPen(QColor(self._border_color(image_id)), width))
        painter.drawRect(width // 2, width // 2, THUMB - width, THUMB - width)
        painter.end()
        icon = QIcon(pixmap)
        icon.addPixmap(pixmap, QIcon.Mode.Selected)  # no blue tint over the part
        item.setIcon(icon)
        item.setText(self._caption(image_id))

    def update_image(self, image_id: int) -> None:
        """The label of one image changed: update its frame without a full reload."""
        if self.project is None:
            return
        if image_id not in self._verdicts:
            self.reload(select_id=self.current_id())
            return
        label = self.project.label(image_id)
        self._verdicts[image_id] = label.verdict if label else None
        if label and label.verdict not in (None, OK) and label.verdict not in self._colors:
            self._colors = {c.name: c.color for c in self.project.classes()}
            self._rebuild_filters()
        item = self._item(image_id)
        if item is not None:
            self._decorate(item)

    def update_golden(self) -> None:
        """Images went into or out of the golden set: re-read it, keep the view."""
        if self.project is None:
            return
        self._golden = {record.id for record in self.project.images(split="golden")}
        if self.filter_box.currentData() == GOLDEN_SET:
            self.refresh()
            return
        for row in range(self.list.count()):
            self._decorate(self.list.item(row))

    # -- selection ------------------------------------------------------------------

    def _item(self, image_id: int) -> QListWidgetItem | None:
        for row in range(self.list.count()):
            item = self.list.item(row)
            if int(item.data(ID_ROLE)) == image_id:
                return item
        return None

    def ids(self) -> list[int]:
        return [int(self.list.item(row).data(ID_ROLE)) for row in range(self.list.count())]

    def current_id(self) -> int | None:
        item = self.list.currentItem()
        return None if item is None else int(item.data(ID_ROLE))

    def select(self, image_id: int, emit: bool = True) -> bool:
        item = self._item(image_id)
        if item is None:
            return False
        self.list.blockSignals(not emit)
        self.list.setCurrentItem(item)
        self.list.blockSignals(False)
        self.list.scrollToItem(item)
        return True

    def move(self, delta: int) -> int | None:
        """Select the image *delta* places away in the current view; its id or None."""
        count = self.list.count()
        if count == 0:
            return None
        row = self.list.currentRow()
        row = 0 if row < 0 else max(0, min(count - 1, row + delta))
        self.list.setCurrentRow(row)
        return self.current_id()

    def _current_changed(self, current: QListWidgetItem | None, _previous) -> None:
        if current is not None:
            self.image_selected.emit(int(current.data(ID_ROLE)))

    # -- background work --------------------------------------------------------------

    def _load_missing_thumbs(self) -> None:
        if self.project is None:
            return
        wanted = [i for i in self.ids() if i not in self._thumbs and i not in self._pending_thumbs][:THUMB_BATCH]
        if not wanted:
            return
        self._pending_thumbs.update(wanted)
        paths = {i: self.project.image(i).path for i in wanted}
        project = self.project

        def load() -> dict[int, QImage]:
            out = {}
            for image_id, path in paths.items():
                try:
                    out[image_id] = make_thumbnail(path)
                except Exception as exc:  # a missing file shows as an empty frame
                    log.warning("thumbnail for image %s: %s", image_id, exc)
            return out

        def done(thumbs: dict[int, QImage]) -> None:
            self._pending_thumbs.difference_update(wanted)
            if project is not self.project:
                return
            self._thumbs.update(thumbs)
            for image_id in wanted:
                self._thumbs.setdefault(image_id, QImage())
                item = self._item(image_id)
                if item is not None:
                    self._decorate(item)
            self._load_missing_thumbs()  # the next batch

        run_in_background(load, done, lambda exc: self._pending_thumbs.difference_update(wanted), owner=self)

    def _ensure_opinions(self) -> bool:
        """True when the model's opinions are ready; otherwise start computing them."""
        if self.project is None:
            return False
        production = self.project.production_model()
        if production is None:
            self.note.setText("No model at the line yet: train and deploy one to use this filter.")
            return False
        missing = [i for i in self._verdicts if i not in self._scored]
        if self._opinion_version == production.version and not missing:
            self.note.setText(f"Model {production.version}'s opinion of each image.")
            return True
        if self._opinion_version != production.version:
            self._opinions, self._scored = {}, set()
            missing = list(self._verdicts)
        if not self._scoring:
            self._scoring = True
            project = self.project
            self.note.setText(f"Model {production.version} is looking at {len(missing)} images…")

            def done(result: tuple[str, dict[int, Opinion]]) -> None:
                self._scoring = False
                if project is not self.project:
                    return
                self._opinion_version = result[0]
                self._opinions.update(result[1])
                self._scored.update(missing)  # unreadable ones too: never retried in a loop
                self.refresh()

            def failed(exc: Exception) -> None:
                self._scoring = False
                self.note.setText(f"Could not run the model: {exc}")

            run_in_background(lambda: model_opinions(project, missing), done, failed, owner=self)
        return False
