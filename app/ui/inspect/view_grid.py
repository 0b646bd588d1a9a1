"""The views of one part side by side: one view alone, two beside each other, 2 x 2.

Each tile is the part's image from that view with its heatmap, and a small tag naming
the view with its own verdict, so an inspector sees at a glance *where* a part failed.
With one view there is no tag and no frame: the screen is the single-view screen.
Clicking a tile picks the view that "this verdict is wrong" saves.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QVBoxLayout, QWidget

from app.ui.inspect.inspect_log import ViewOutcome
from app.ui.inspect.inspect_view import ImageView
from app.ui.shared.style import ACCENT, FAIL, PASS

TILE_MIN_SIZE = (120, 90)  # four tiles fit beside the log on a 1024 x 768 panel PC
SINGLE_MIN_SIZE = (240, 200)  # ImageView's own minimum: one view looks as it always did
IDLE_TAG = "#5f6b7a"


def grid_position(index: int, count: int) -> tuple[int, int]:
    """(row, column) of tile *index* among *count*: a row of two, then 2 x 2."""
    if count <= 2:
        return 0, index
    return divmod(index, 2)


def banner_detail(record) -> str | None:
    """The defect line of the verdict banner: with several views, which ones failed."""
    failed = record.failed_views
    if not failed:
        return record.defect_class
    return f"{record.defect_class or 'defect'} in {' + '.join(failed)}"


def worst_view(record) -> int:
    """The view to select for a new part: the failing one with the highest score, else the first."""
    failing = [(v.score, i) for i, v in enumerate(record.views) if v.label != "PASS"]
    return max(failing)[1] if failing else 0


def tag_text(outcome: ViewOutcome) -> str:
    verdict = "PASS" if outcome.label == "PASS" else f"FAIL {outcome.defect_class or 'defect'}"
    return f"{outcome.name} · {verdict} {outcome.score:.2f}"


class ViewTile(QFrame):
    """One view: its image and, beside other views, its name and verdict."""

    chosen = Signal(int)  # the tile index (not "clicked": that name passes a bool elsewhere)

    def __init__(self, index: int, image_view: ImageView | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        self.setObjectName("viewTile")
        self.image_view = image_view or ImageView()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.image_view)
        # On the image, not above it: a row of its own would take height the image needs.
        self.tag = QLabel(self.image_view)
        self.tag.setObjectName("viewTag")
        self.tag.setAttribute(Qt.WidgetAttribute.WA_TransparentForMouseEvents)
        self.tag.move(6, 6)
        self.name = ""
        self.outcome: ViewOutcome | None = None
        self._framed = False
        self._selected = False
        self.set_framed(False)

    def set_name(self, name: str) -> None:
        self.name = name
        if self.outcome is None:
            self._paint_tag(name, IDLE_TAG)

    def set_outcome(self, outcome: ViewOutcome | None) -> None:
        """The view's verdict of the part on screen; None: just its name."""
        self.outcome = outcome
        if outcome is None:
            self._paint_tag(self.name, IDLE_TAG)
        else:
            self._paint_tag(tag_text(outcome), PASS if outcome.label == "PASS" else FAIL)
        self.image_view.setAccessibleDescription(self.tag.text())

    def _paint_tag(self, text: str, color: str) -> None:
        self.tag.setText(text)
        self.tag.setStyleSheet(f"#viewTag {{ background: {color}; color: white; font-size: 11pt; font-weight: bold;"
                               " padding: 2px 8px; border-radius: 6px; }")
        self.tag.adjustSize()

    def set_framed(self, framed: bool) -> None:
        """Several views: a tag and a frame (the selected view's frame is coloured)."""
        self._framed = framed
        self.tag.setVisible(framed)
        self.image_view.setMinimumSize(*(TILE_MIN_SIZE if framed else SINGLE_MIN_SIZE))
        self._restyle()

    def set_selected(self, selected: bool) -> None:
        self._selected = selected
        self._restyle()

    def _restyle(self) -> None:
        if not self._framed:
            self.setStyleSheet("#viewTile { border: none; }")
            self.layout().setContentsMargins(0, 0, 0, 0)
            return
        color = ACCENT if self._selected else "transparent"
        self.setStyleSheet(f"#viewTile {{ border: 3px solid {color}; border-radius: 4px; }}")
        self.layout().setContentsMargins(3, 3, 3, 3)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton:
            self.chosen.emit(self.index)
        super().mousePressEvent(event)


class ViewGrid(QWidget):
    """Tiles for 1..4 views. Tile 0's ImageView is the one given (the workspace's image view)."""

    view_clicked = Signal(int)

    def __init__(self, first_view: ImageView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._layout = QGridLayout(self)
        self._layout.setContentsMargins(0, 0, 0, 0)
        self._layout.setSpacing(4)
        self.tiles: list[ViewTile] = []
        self._add_tile(first_view)
        self.selected = 0
        self.set_names(["View 1"])

    def _add_tile(self, image_view: ImageView | None = None) -> ViewTile:
        tile = ViewTile(len(self.tiles), image_view)
        tile.chosen.connect(self.select)
        tile.chosen.connect(self.view_clicked)
        self.tiles.append(tile)
        return tile

    @property
    def count(self) -> int:
        return len(self.tiles)

    def set_names(self, names: list[str]) -> None:
        """One tile per name, laid out for that many views."""
        names = list(names) or ["View 1"]
        while len(self.tiles) > len(names):
            tile = self.tiles.pop()
            self._layout.removeWidget(tile)
            tile.hide()  # gone now, not when the event loop next deletes it
            tile.setParent(None)
            tile.deleteLater()
        while len(self.tiles) < len(names):
            self._add_tile().image_view.set_placeholder(self.tiles[0].image_view.placeholder())
        for index, (tile, name) in enumerate(zip(self.tiles, names)):
            self._layout.removeWidget(tile)
            row, column = grid_position(index, len(names))
            self._layout.addWidget(tile, row, column)
            tile.set_name(name)
            tile.set_framed(len(names) > 1)
            tile.show()  # a widget added to a shown grid would appear only after the event loop ran
        for row in range(2):
            self._layout.setRowStretch(row, 1 if row == 0 or len(names) > 2 else 0)
        self.select(min(self.selected, len(self.tiles) - 1))

    def select(self, index: int) -> None:
        self.selected = index
        for tile in self.tiles:
            tile.set_selected(tile.index == index and self.count > 1)

    def show_part(self, images: list[QImage | None], outcomes: list[ViewOutcome | None]) -> None:
        """Each view's image and verdict of one part (missing ones: no image, just the name)."""
        for i, tile in enumerate(self.tiles):
            tile.image_view.set_image(images[i] if i < len(images) else None)
            tile.set_outcome(outcomes[i] if i < len(outcomes) else None)

    def set_placeholder(self, text: str) -> None:
        for tile in self.tiles:
            tile.image_view.set_placeholder(text)

    def images(self) -> list[QImage | None]:
        return [tile.image_view.image() for tile in self.tiles]
