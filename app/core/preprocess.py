"""Geometry shared by the trainer and the line: letterbox to a square input.

Parts keep their aspect ratio (pad, don't stretch): a stretched scratch is a different
scratch. Normalisation is *not* here: it lives inside the exported ONNX graph, so the
only thing both sides must agree on is this function, and both import it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Padding value: mid-gray reads as "no evidence" better than black next to dark parts.
PAD_VALUE = 114


@dataclass(frozen=True)
class Letterbox:
    """Where the original image sits inside the square model input."""

    scale: float
    pad_x: int
    pad_y: int
    width: int  # original width
    height: int  # original height
    size: int  # model input side


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, Letterbox]:
    """Resize *image* (HxWxC uint8) to fit a size x size square, centred, padded."""
    h, w = image.shape[:2]
    scale = min(size / w, size / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, (new_w, new_h), interpolation=interp)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    if image.ndim == 3:
        out = np.full((size, size, image.shape[2]), PAD_VALUE, dtype=image.dtype)
    else:
        out = np.full((size, size), PAD_VALUE, dtype=image.dtype)
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return out, Letterbox(scale, pad_x, pad_y, w, h, size)


def letterbox_mask(mask: np.ndarray, size: int) -> np.ndarray:
    """Letterbox a 0/255 mask the same way as its image; padding is 'no defect'."""
    h, w = mask.shape[:2]
    scale = min(size / w, size / h)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    resized = cv2.resize(mask, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
    out = np.zeros((size, size), dtype=np.uint8)
    pad_x, pad_y = (size - new_w) // 2, (size - new_h) // 2
    out[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return out


def heatmap_to_image(heatmap: np.ndarray, box: Letterbox) -> np.ndarray:
    """Map a model-grid heatmap (h x w, any resolution) back onto the original image."""
    full = cv2.resize(heatmap.astype(np.float32), (box.size, box.size), interpolation=cv2.INTER_LINEAR)
    new_w, new_h = max(1, round(box.width * box.scale)), max(1, round(box.height * box.scale))
    crop = full[box.pad_y : box.pad_y + new_h, box.pad_x : box.pad_x + new_w]
    return cv2.resize(crop, (box.width, box.height), interpolation=cv2.INTER_LINEAR)
