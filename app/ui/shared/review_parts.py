"""A row of "Check <file>" buttons for the held-out OK parts that place a model's
threshold (`metrics["highest_ok_parts"]`): one click opens a part where it is labeled,
because a defective part labeled OK among them raises the threshold for the whole line.
A part the trainer found a defective lookalike for (training/lookalikes.py) also gets a
"Compare <file>" button that opens that labeled part, to set the two side by side.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QPushButton, QWidget

from app.core.operating_point import threshold_text
from app.ui.shared.flow_layout import FlowLayout

NAME_CHARS = 28  # camera file names run long; three buttons must fit a 1024-px screen


def short_name(name: str) -> str:
    return name if len(name) <= NAME_CHARS else name[:12] + "…" + name[-13:]


class ReviewPartsStrip(QWidget):
    """Buttons that wrap (a flow layout), hidden when there is nothing to check."""

    review_requested = Signal(int)  # an image id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.row = FlowLayout(self, spacing=8)
        self.buttons: list[QPushButton] = []  # one "Check" per part
        self.lookalike_buttons: list[QPushButton] = []  # "Compare", where a part has a lookalike
        self.hide()

    def show_parts(self, parts: list) -> None:
        while (item := self.row.takeAt(0)) is not None:  # the last model's buttons
            if item.widget() is not None:
                item.widget().deleteLater()
        self.buttons, self.lookalike_buttons = [], []
        for part in parts or []:
            if not isinstance(part, dict) or not isinstance(part.get("image_id"), int):
                continue
            name = str(part.get("filename") or "part")
            self.buttons.append(self._add(
                f"Check {short_name(name)}", part["image_id"],
                f"{name}: held-out OK part scored {threshold_text(float(part.get('score', 0.0)))}; "
                "open it where it is labeled"))
            like = part.get("looks_like")
            if isinstance(like, dict) and isinstance(like.get("image_id"), int):
                other = str(like.get("filename") or "part")
                self.lookalike_buttons.append(self._add(
                    f"Compare {short_name(other)}", like["image_id"],
                    f"{other}, labeled {like.get('verdict', 'defective')}: the labeled part {name} looks most "
                    "like. The same part imaged twice and labeled twice? Open it where it is labeled"))
        self.setVisible(bool(self.buttons))

    def _add(self, text: str, image_id: int, tooltip: str) -> QPushButton:
        """A button in the row that opens *image_id* where it is labeled."""
        button = QPushButton(text)
        button.setToolTip(tooltip)
        button.clicked.connect(lambda _=False, i=image_id: self.review_requested.emit(i))
        self.row.addWidget(button)
        return button
