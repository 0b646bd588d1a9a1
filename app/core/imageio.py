"""Reading images of any kind into one layout: 8-bit, 3-channel BGR.

Cameras and hot folders deliver gray, BGR, BGRA, 16-bit and float images. Everything
downstream (training, the ONNX runtime, the UI) sees uint8 HxWx3 BGR, converted here in
one place so the line and the trainer cannot disagree.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import cv2
import numpy as np

from app.core.errors import BadImageError

# OpenCV logs its own lines for a file it cannot decode ("[ERROR:0@0.04] ... imdecode_",
# "libpng error: ..."): beside our message, which names the file and says what is
# wrong, they are noise on the terminal of a shop-floor user.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"}


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Convert an image of any depth and channel layout to uint8 HxWx3 BGR."""
    if image is None or not isinstance(image, np.ndarray) or image.size == 0:
        raise BadImageError("The image is empty.")
    img = image
    if img.dtype == np.bool_:
        img = img.astype(np.uint8) * 255  # a bool image is black and white
    if img.dtype != np.uint8:
        if img.dtype == np.uint16:
            img = (img >> 8).astype(np.uint8)
        elif np.issubdtype(img.dtype, np.floating):
            # Float images are taken as 0..1 when they fit there, else as 0..255.
            finite = img[np.isfinite(img)]
            scale = 255.0 if finite.size == 0 or float(finite.max()) <= 1.0 else 1.0
            img = np.clip(np.nan_to_num(img.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0) * scale,
                          0, 255).astype(np.uint8)
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


def range_note(image: np.ndarray) -> str | None:
    """Why an image as read is far from what a model is trained on, or None.

    The case it knows: a 12-bit camera writing its values into a 16-bit file without
    scaling them. As 8-bit those pixels come out at 0..15 of 255, almost black.
    """
    if image.dtype == np.uint16 and image.size and int(image.max()) < 4096:
        return ("16-bit pixels that use only the lowest 12 bits (values up to 4095 of 65535): "
                "read as 8-bit they are almost black, far from the brightness range a model is trained on. "
                "Set the camera to write 8-bit images, or 16-bit scaled to the full range")
    return None


PATCH_SIDE = 16  # one cell of a model's heatmap: a smaller part is less than one patch


def part_note(image: np.ndarray) -> str | None:
    """Why a decoded part (uint8 BGR) is unlike anything a model is trained on, or None:
    smaller than one heatmap patch, or one value everywhere (a lens cap, no light, no part).
    It still gets a verdict; the line is told, once per source, not to trust it blindly."""
    h, w = image.shape[:2]
    if min(h, w) < PATCH_SIDE:
        return (f"only {w} x {h} pixels, smaller than one {PATCH_SIDE}-pixel patch of the model: "
                "its verdict says little. Check the camera's region of interest")
    if image.size and int(image.max()) == int(image.min()):
        return (f"the same value ({int(image.min())}) in every pixel: a blank frame (lens cap, no light, "
                "no part in view?), far from the parts a model is trained on")
    return None


def _cut_short(data: bytes) -> str | None:
    """The format of a PNG or JPEG file that lacks its end marker, else None.

    Such a file is still being written or was copied incompletely. Caught here rather
    than by the decoder, which says less and lets libpng print its own line.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n") and data.rfind(b"IEND") == -1:
        return "PNG"
    if data.startswith(b"\xff\xd8\xff") and data.find(b"\xff\xd9") == -1:
        return "JPEG"
    return None


def decode_image(data: bytes, name: str = "image", notes: list[str] | None = None) -> np.ndarray:
    """Decode encoded image bytes (PNG, JPEG, ...) to uint8 BGR, or raise BadImageError.

    *notes*, when given, gets range_note's remark about the file's pixel values.
    """
    if not data:
        raise BadImageError(f"{name}: the file is empty (0 bytes).")
    cut = _cut_short(data)
    if cut is not None:
        raise BadImageError(f"{name}: not a readable image (the {cut} file is cut short, it has no end marker: "
                            "it is still being written, or the copy did not finish).")
    buf = np.frombuffer(data, dtype=np.uint8)
    try:
        img = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:  # e.g. a header that claims more pixels than OpenCV allows
        raise BadImageError(f"{name}: not a readable image ({str(exc).strip().splitlines()[-1]}).") from exc
    if img is None:
        raise BadImageError(f"{name}: not a readable image (corrupt or unsupported format).")
    if notes is not None:
        note = range_note(img)
        if note is not None:
            notes.append(note)
    return to_bgr8(img)


def read_file(path: Path | str) -> bytes:
    """The bytes of the file at *path*, or BadImageError saying why not.

    Only a regular file is read: a named pipe (or a link to one) would block for ever,
    and a device such as /dev/zero would never end. Opened without blocking, so that
    a pipe is refused rather than waited on.
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise BadImageError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file (a pipe, device or socket)"
            raise BadImageError(f"{path}: {kind}, not an image file.")
        with open(fd, "rb", closefd=False) as fh:
            return fh.read()
    except OSError as exc:
        raise BadImageError(f"{path}: cannot be read ({exc.strerror or exc}).") from exc
    finally:
        os.close(fd)


def read_image(path: Path | str, notes: list[str] | None = None) -> np.ndarray:
    """Read an image file to uint8 BGR. Works with non-ASCII paths on Windows."""
    return decode_image(read_file(path), str(path), notes)


def read_mask(path: Path | str, shape: tuple[int, int] | None = None) -> np.ndarray:
    """Read a defect mask as uint8 0/255, optionally resized (nearest) to *shape* (h, w).

    A folder of masks (MVTec LOCO: one file per defect region) reads as their union."""
    path = Path(path)
    if path.is_dir():
        return _joined_masks(path, shape)
    data = read_file(path)
    if not data:
        raise BadImageError(f"{path}: the mask file is empty (0 bytes).")
    try:
        mask = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_GRAYSCALE)
    except cv2.error:
        mask = None
    if mask is None:
        raise BadImageError(f"{path}: not a readable mask image.")
    if shape is not None and mask.shape[:2] != tuple(shape):
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return np.where(mask > 0, 255, 0).astype(np.uint8)


def _joined_masks(folder: Path, shape: tuple[int, int] | None) -> np.ndarray:
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
    except OSError as exc:
        raise BadImageError(f"{folder}: the mask folder cannot be read ({exc.strerror or exc}).") from exc
    if not files:
        raise BadImageError(f"{folder}: a mask folder with no mask images in it.")
    masks = [read_mask(f, shape) for f in files]
    if len({m.shape for m in masks}) > 1:
        raise BadImageError(f"{folder}: the masks in this folder differ in size.")
    return np.maximum.reduce(masks)


def encode_png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise BadImageError("Could not encode the image as PNG.")
    return buf.tobytes()


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")
