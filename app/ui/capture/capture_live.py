"""The live camera view: the newest frame, scaled to fit, with the region of interest.

In ROI mode a left-drag draws the region (in frame pixels) and `roi_drawn` fires.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QFont, QFontMetrics, QImage, QMouseEvent, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.ui.capture.label_canvas import bgr_to_qimage

ROI_COLOR = "#ffd400"


def clamp_roi(roi: list[int] | tuple[int, ...] | None, width: int, height: int) -> tuple[int, int, int, int] | None:
    """The ROI cut to the frame, or None when it is missing or empty there."""
    if not roi or len(roi) != 4:
        return None
    x, y, w, h = (int(v) for v in roi)
    x0, y0 = max(0, min(width, x)), max(0, min(height, y))
    x1, y1 = max(0, min(width, x + w)), max(0, min(height, y + h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return x0, y0, x1 - x0, y1 - y0


def crop_to_roi(image: np.ndarray, roi: list[int] | tuple[int, ...] | None) -> np.ndarray:
    box = clamp_roi(roi, image.shape[1], image.shape[0])
    if box is None:
        return image
    x, y, w, h = box
    return np.ascontiguousarray(image[y : y + h, x : x + w])


class LiveView(QWidget):
    roi_drawn = Signal(list)  # [x, y, w, h] in frame pixels

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.image_size: tuple[int, int] | None = None  # (w, h) of the last frame
        self.roi: list[int] | None = None
        self.drawing_roi = False
        self.caption = ""
        self.placeholder = "No camera running. Choose a source and press Start."
        self.flash_text = ""
        self._qimage: QImage | None = None
        self._drag_from: tuple[float, float] | None = None
        self._drag_to: tuple[float, float] | None = None

    def show_frame(self, image: np.ndarray, caption: str = "") -> None:
        self._qimage = bgr_to_qimage(image)
        self.image_size = (image.shape[1], image.shape[0])
        self.caption = caption
        self.update()

    def clear(self) -> None:
        self._qimage, self.image_size, self.caption = None, None, ""
        self.update()

    def set_roi(self, roi: list[int] | None) -> None:
        self.roi = list(roi) if roi else None
        self.update()

    def set_drawing_roi(self, on: bool) -> None:
        self.drawing_roi = on
        self.setCursor(Qt.CursorShape.CrossCursor if on else Qt.CursorShape.ArrowCursor)

    def _frame_rect(self) -> QRectF | None:
        if self.image_size is None:
            return None
        w, h = self.image_size
        scale = min(self.width() / w, self.height() / h)
        return QRectF((self.width() - w * scale) / 2, (self.height() - h * scale) / 2, w * scale, h * scale)

    def to_frame(self, pos: QPointF) -> tuple[float, float] | None:
        rect = self._frame_rect()
        if rect is None or self.image_size is None:
            return None
        scale = rect.width() / self.image_size[0]
        x = min(max(0.0, (pos.x() - rect.x()) / scale), self.image_size[0])
        y = min(max(0.0, (pos.y() - rect.y()) / scale), self.image_size[1])
        return x, y

    def mousePressEvent(self, event: QMouseEvent) -> None:
        if self.drawing_roi and event.button() == Qt.MouseButton.LeftButton:
            self._drag_from = self._drag_to = self.to_frame(event.position())

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is not None:
            self._drag_to = self.to_frame(event.position())
            self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._drag_from is None:
            return
        start, end = self._drag_from, self.to_frame(event.position()) or self._drag_to
        self._drag_from = self._drag_to = None
        if start is None or end is None:
            return
        x0, x1 = sorted((start[0], end[0]))
        y0, y1 = sorted((start[1], end[1]))
        roi = [int(x0), int(y0), int(round(x1 - x0)), int(round(y1 - y0))]
        if roi[2] >= 8 and roi[3] >= 8:  # a click is not a region
            self.set_roi(roi)
            self.roi_drawn.emit(roi)
        self.update()

    def _roi_on_screen(self, roi: tuple[float, float, float, float]) -> QRectF | None:
        rect = self._frame_rect()
        if rect is None or self.image_size is None:
            return None
        scale = rect.width() / self.image_size[0]
        x, y, w, h = roi
        return QRectF(rect.x() + x * scale, rect.y() + y * scale, w * scale, h * scale)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#1d2026"))
        rect = self._frame_rect()
        font = QFont(painter.font())
        font.setPointSize(15)
        painter.setFont(font)
        if self._qimage is None or rect is None:
            painter.setPen(QColor("#d0d4da"))
            painter.drawText(self.rect().adjusted(20, 0, -20, 0), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                             self.placeholder)
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, True)
        painter.drawImage(rect, self._qimage)
        roi = self.roi
        if self._drag_from is not None and self._drag_to is not None:
            (ax, ay), (bx, by) = self._drag_from, self._drag_to
            roi = [min(ax, bx), min(ay, by), abs(bx - ax), abs(by - ay)]
        if roi:
            on_screen = self._roi_on_screen(tuple(roi))
            if on_screen is not None:
                painter.setPen(QPen(QColor(ROI_COLOR), 3, Qt.PenStyle.DashLine))
                painter.drawRect(on_screen)
                painter.drawText(on_screen.topLeft() + QPointF(6, -6), "ROI")
        if self.caption:
            painter.fillRect(QRectF(0, 0, self.width(), 34), QColor(0, 0, 0, 150))
            painter.setPen(QColor("white"))
            small = QFont(font)
            small.setPointSize(12)
            painter.setFont(small)
            # Elided, not cut: a narrow live view (1024 px screens) still ends in "…".
            caption = QFontMetrics(small).elidedText(self.caption, Qt.TextElideMode.ElideRight, self.width() - 20)
            painter.drawText(QRectF(10, 0, self.width() - 20, 34), Qt.AlignmentFlag.AlignVCenter, caption)
            painter.setFont(font)
        if self.flash_text:
            painter.fillRect(QRectF(0, self.height() - 60, self.width(), 60), QColor(19, 115, 51, 220))
            painter.setPen(QColor("white"))
            painter.drawText(QRectF(0, self.height() - 60, self.width(), 60), Qt.AlignmentFlag.AlignCenter, self.flash_text)
