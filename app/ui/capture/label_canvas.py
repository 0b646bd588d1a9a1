"""The labeling canvas: a zoomable, pannable image with brush, eraser and polygon tools.

The defect mask is a uint8 0/255 array the size of the image, drawn over it in the
class colour. Painting edits it in place; at the end of each stroke (or when a polygon
closes) `mask_edited` fires with a copy, and the workspace saves it as a new label.

Mouse: left = the tool, middle or right drag = pan, wheel = zoom around the pointer.
Polygon: click the corners; double-click, Enter or a click on the first corner closes
it, Backspace removes the last corner, Esc drops it.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QPoint, QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeyEvent, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

TOOLS = ("brush", "eraser", "polygon", "pan")
MIN_SCALE, MAX_SCALE = 0.05, 40.0
CLOSE_POLYGON_PX = 12  # a click this close (screen px) to the first corner closes it


def bgr_to_qimage(image: np.ndarray) -> QImage:
    """A QImage that owns a copy of the pixels (the array may be reused by the caller)."""
    rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def mask_overlay(mask: np.ndarray, color: str, alpha: int = 110) -> QImage:
    """The mask as a translucent layer in *color*, with an opaque outline for small marks."""
    h, w = mask.shape
    c = QColor(color)
    rgba = np.zeros((h, w, 4), np.uint8)
    inside = mask > 0
    rgba[inside] = (c.red(), c.green(), c.blue(), alpha)
    edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    rgba[edge & inside] = (c.red(), c.green(), c.blue(), 255)
    return QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888).copy()


class LabelCanvas(QWidget):
    mask_edited = Signal(object)  # np.ndarray copy, uint8 0/255
    view_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(320, 240)
        self.image: np.ndarray | None = None
        self.mask: np.ndarray | None = None
        self.color = "#e6194b"
        self.tool = "brush"
        self.brush_radius = 12  # image pixels
        self.editable = True
        self.placeholder = "No image selected"
        self.scale = 1.0
        self.offset = QPointF(0, 0)
        self.polygon: list[tuple[float, float]] = []
        self._qimage: QImage | None = None
        self._overlay: QImage | None = None
        self._stroke_last: tuple[float, float] | None = None
        self._pan_from: QPointF | None = None
        self._pointer: QPointF | None = None

    # -- content --------------------------------------------------------------------

    def set_image(self, image: np.ndarray | None, mask: np.ndarray | None = None, color: str | None = None) -> None:
        """Show *image* (BGR uint8) with *mask* (or an empty one); fits it to the view."""
        self.image = image
        self.polygon = []
        self._stroke_last = None
        if color:
            self.color = color
        if image is None:
            self.mask, self._qimage, self._overlay = None, None, None
        else:
            self._qimage = bgr_to_qimage(image)
            self.set_mask(mask)
            self.fit()
        self.update()

    def set_mask(self, mask: np.ndarray | None) -> None:
        """Replace the mask without moving the view (after undo, or a reload)."""
        if self.image is None:
            return
        h, w = self.image.shape[:2]
        if mask is None or mask.shape[:2] != (h, w):
            self.mask = np.zeros((h, w), np.uint8)
        else:
            self.mask = np.where(mask > 0, 255, 0).astype(np.uint8)
        self._refresh_overlay()

    def set_color(self, color: str) -> None:
        self.color = color
        self._refresh_overlay()

    def set_tool(self, tool: str) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool}")
        self.tool = tool
        if tool != "polygon":
            self.polygon = []
        self.setCursor(Qt.CursorShape.OpenHandCursor if tool == "pan" else Qt.CursorShape.CrossCursor)
        self.update()

    def set_brush_radius(self, radius: int) -> None:
        self.brush_radius = int(max(1, min(200, radius)))
        self.update()

    def _refresh_overlay(self) -> None:
        self._overlay = None if self.mask is None or not self.mask.any() else mask_overlay(self.mask, self.color)
        self.update()

    # -- view -----------------------------------------------------------------------

    def fit(self) -> None:
        if self.image is None:
            return
        h, w = self.image.shape[:2]
        self.scale = max(MIN_SCALE, min(self.width() / w, self.height() / h))
        self.offset = QPointF((self.width() - w * self.scale) / 2, (self.height() - h * self.scale) / 2)
        self.view_changed.emit()
        self.update()

    def zoom(self, factor: float, around: QPointF | None = None) -> None:
        if self.image is None:
            return
        around = around if around is not None else QPointF(self.width() / 2, self.height() / 2)
        image_pt = self.to_image(around)
        self.scale = max(MIN_SCALE, min(MAX_SCALE, self.scale * factor))
        self.offset = QPointF(around.x() - image_pt[0] * self.scale, around.y() - image_pt[1] * self.scale)
        self.view_changed.emit()
        self.update()

    def to_image(self, point: QPointF | QPoint) -> tuple[float, float]:
        p = QPointF(point)
        return ((p.x() - self.offset.x()) / self.scale, (p.y() - self.offset.y()) / self.scale)

    def to_widget(self, x: float, y: float) -> QPointF:
        return QPointF(x * self.scale + self.offset.x(), y * self.scale + self.offset.y())

    def resizeEvent(self, event) -> None:  # keep the whole image visible on resize
        super().resizeEvent(event)
        self.fit()

    # -- painting the mask -----------------------------------------------------------

    def _paint_segment(self, start: tuple[float, float], end: tuple[float, float]) -> None:
        if self.mask is None:
            return
        value = 0 if self.tool == "eraser" else 255
        a = (int(round(start[0])), int(round(start[1])))
        b = (int(round(end[0])), int(round(end[1])))
        cv2.line(self.mask, a, b, value, thickness=2 * self.brush_radius, lineType=cv2.LINE_8)
        cv2.circle(self.mask, b, self.brush_radius, value, -1)
        cv2.circle(self.mask, a, self.brush_radius, value, -1)
        self._refresh_overlay()

    def close_polygon(self) -> bool:
        """Fill the open polygon into the mask; False if it has fewer than 3 corners."""
        if self.mask is None or len(self.polygon) < 3:
            return False
        points = np.round(np.array(self.polygon)).astype(np.int32)
        cv2.fillPoly(self.mask, [points], 255)
        self.polygon = []
        self._refresh_overlay()
        self.mask_edited.emit(self.mask.copy())
        return True

    def clear_mask(self) -> None:
        if self.mask is None or not self.mask.any():
            return
        self.mask[:] = 0
        self._refresh_overlay()
        self.mask_edited.emit(self.mask.copy())

    # -- events ---------------------------------------------------------------------

    def mousePressEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        if event.button() in (Qt.MouseButton.MiddleButton, Qt.MouseButton.RightButton) or (
            event.button() == Qt.MouseButton.LeftButton and self.tool == "pan"
        ):
            self._pan_from = pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
            return
        if event.button() != Qt.MouseButton.LeftButton or self.image is None or not self.editable:
            return
        point = self.to_image(pos)
        if self.tool in ("brush", "eraser"):
            self._stroke_last = point
            self._paint_segment(point, point)
        elif self.tool == "polygon":
            if len(self.polygon) >= 3:
                first = self.to_widget(*self.polygon[0])
                if (first - pos).manhattanLength() <= CLOSE_POLYGON_PX:
                    self.close_polygon()
                    return
            self.polygon.append(point)
            self.update()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        pos = event.position()
        self._pointer = pos
        if self._pan_from is not None:
            self.offset += pos - self._pan_from
            self._pan_from = pos
            self.view_changed.emit()
        elif self._stroke_last is not None:
            point = self.to_image(pos)
            self._paint_segment(self._stroke_last, point)
            self._stroke_last = point
        self.update()

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_from is not None:
            self._pan_from = None
            self.set_tool(self.tool)  # restore the tool's cursor
            return
        if self._stroke_last is not None and event.button() == Qt.MouseButton.LeftButton:
            self._stroke_last = None
            if self.mask is not None:
                self.mask_edited.emit(self.mask.copy())

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        if self.tool == "polygon" and event.button() == Qt.MouseButton.LeftButton:
            self.close_polygon()
            return
        if event.button() == Qt.MouseButton.MiddleButton:
            self.fit()

    def wheelEvent(self, event: QWheelEvent) -> None:
        steps = event.angleDelta().y() / 120
        if steps:
            self.zoom(1.25**steps, event.position())

    def leaveEvent(self, event) -> None:
        self._pointer = None
        self.update()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if self.polygon and key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.close_polygon()
        elif self.polygon and key == Qt.Key.Key_Backspace:
            self.polygon.pop()
            self.update()
        elif self.polygon and key == Qt.Key.Key_Escape:
            self.polygon = []
            self.update()
        else:
            event.ignore()  # labeling keys belong to the workspace

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor("#2b2f36"))
        if self._qimage is None or self.image is None:
            painter.setPen(QColor("#d0d4da"))
            font = painter.font()
            font.setPointSize(16)
            painter.setFont(font)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.placeholder)
            return
        h, w = self.image.shape[:2]
        target = QRectF(self.offset.x(), self.offset.y(), w * self.scale, h * self.scale)
        # Smooth when shrinking, sharp pixels when zoomed in to paint small defects.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.scale < 2)
        painter.drawImage(target, self._qimage)
        if self._overlay is not None:
            painter.drawImage(target, self._overlay)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if self.polygon:
            pen = QPen(QColor(self.color), 2)
            painter.setPen(pen)
            points = [self.to_widget(x, y) for x, y in self.polygon]
            for a, b in zip(points, points[1:]):
                painter.drawLine(a, b)
            if self._pointer is not None:
                pen.setStyle(Qt.PenStyle.DashLine)
                painter.setPen(pen)
                painter.drawLine(points[-1], self._pointer)
            painter.setBrush(QColor(self.color))
            for p in points:
                painter.drawEllipse(p, 5, 5)
        if self._pointer is not None and self.tool in ("brush", "eraser") and self.editable:
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.setPen(QPen(QColor("white"), 2))
            r = self.brush_radius * self.scale
            painter.drawEllipse(self._pointer, r, r)
            painter.setPen(QPen(QColor("black"), 1))
            painter.drawEllipse(self._pointer, r + 1.5, r + 1.5)
