"""Reading images of any kind into one layout: 8-bit, 3-channel BGR.

Cameras and hot folders deliver gray, BGR, BGRA, 16-bit and float images. Everything
downstream (training, the ONNX runtime, the UI) sees uint8 HxWx3 BGR, converted here in
one place so the line and the trainer cannot disagree.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from app.core.errors import BadImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert an image of any depth and channel layout to uint8 HxWx3 BGR."""
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise BadImageError("The image is empty.")
    img = image
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        elif np.issubdtype(img.dtype, np.floating):
            # Float images are taken as 0..1 when they fit there, else as 0..255.
            scale = 255.0 if float(np.nanmax(img)) <= 1.0 else 1.0
            img = np.clip(np.nan_to_num(img) * scale, 0, 255).astype(np.uint8)
        else:
            img = np.clip(img, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 1:
        return cv2.cvtColor(img[:, :, 0], cv2.COLOR_GRAY2BGR)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    raise BadImageError(f"Unsupported image layout {image.shape} ({image.dtype}).")


def decode_image(data: bytes, name: str = "image") -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, ...) to uint8 BGR, or raise BadImageError."""
    if not data:
        raise BadImageError(f"{name}: the file is empty (0 bytes).")
    buf = np.frombuffer(data, dtype=np.uint8)
    img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadImageError(f"{name}: not a readable image (corrupt or unsupported format).")
    return to_bgr8(img)


def read_image(path: Path | str) -> np.ndarray:
    """Read an image file to uint8 BGR. Works with non-ASCII paths on Windows."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadImageError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    return decode_image(data, str(path))


def read_mask(path: Path | str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a defect mask as uint8 0/255, optionally resized (nearest) to *shape* (h, w)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadImageError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    if not data:
        raise BadImageError(f"{path}: the mask file is empty (0 bytes).")
    mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise BadImageError(f"{path}: not a readable mask image.")
    if shape is not None and mask.shape[:2] != tuple(shape):
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise BadImageError("Could not encode the image as PNG.")
    return buf.tobytes()


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
