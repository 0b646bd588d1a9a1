"""The part image with the model's heatmap laid over it.

The overlay is composed on the inspection thread (numpy + OpenCV, at display size), so
the GUI thread only draws a finished QImage. The heatmap's own value sets the blend
weight: a good part stays almost untouched, a defect lights up.
"""

from __future__ import annotations

import cv2
import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import QSizePolicy, QWidget

DISPLAY_MAX_SIDE = 720
HEAT_ALPHA = 0.65


def display_layers(image: np.ndarray, heat: np.ndarray, max_side: int = DISPLAY_MAX_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The image downscaled to *max_side* and the 0..1 heatmap resized to match it.

    Kept apart (not only blended) so the GUI can re-blend the part on screen when the
    inspector changes the overlay's opacity, without running the model again.
    """
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    base = cv2.resize(image, size, interpolation=cv2.INTER_AREA) if scale < 1.0 else image
    heat = cv2.resize(np.asarray(heat, np.float32), size, interpolation=cv2.INTER_LINEAR)
    return base, np.clip(np.nan_to_num(heat), 0.0, 1.0)


def blend_heatmap(base: np.ndarray, heat: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """*base* with the same-sized heatmap blended in turbo colours; alpha 0 = the bare part."""
    if alpha <= 0.0:
        return base
    colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_TURBO)
    weight = (heat * min(1.0, alpha))[:, :, None]
    return (base.astype(np.float32) * (1 - weight) + colored.astype(np.float32) * weight).astype(np.uint8)


def overlay_heatmap(image: np.ndarray, heat: np.ndarray, max_side: int = DISPLAY_MAX_SIDE, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """BGR image (downscaled to *max_side*) with the 0..1 heatmap blended in turbo colours."""
    return blend_heatmap(*display_layers(image, heat, max_side), alpha)


def bgr_to_qimage(image: np.ndarray) -> QImage:
    """A QImage that owns its pixels (safe to hand from a worker thread to the GUI)."""
    rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
    h, w = rgb.shape[:2]
    return QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()


class ImageView(QWidget):
    """Draws a QImage scaled to fit, centred, aspect kept."""

    def __init__(self, placeholder: str = "", parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = placeholder
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_image(self, image: QImage | None) -> None:
        self._image = image
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def set_placeholder(self, text: str) -> None:
        """What the view says while it has no image."""
        if text != self._placeholder:
            self._placeholder = text
            self.update()

    def placeholder(self) -> str:
        return self._placeholder

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(640, 480)

    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.black)
        if self._image is None or self._image.isNull():
            painter.setPen(Qt.GlobalColor.white)
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
        else:
            img = self._image
            scale = min(self.width() / img.width(), self.height() / img.height())
            w, h = img.width() * scale, img.height() * scale
            target = QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
            painter.drawImage(target, img)
        painter.end()
