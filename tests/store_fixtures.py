"""Images the store tests draw themselves: small, distinct, real PNG/JPEG files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def part_image(seed: int, size: tuple[int, int] = (48, 64), defect: bool = False) -> np.ndarray:
    """A gray 'part' with noise unique to *seed*; a defect adds a dark scratch."""
    rng = np.random.default_rng(seed)
    h, w = size
    image = np.full((h, w, 3), 150, np.uint8)
    image = cv2.add(image, rng.integers(0, 40, (h, w, 3), dtype=np.uint8))
    cv2.circle(image, (w // 2, h // 2), min(h, w) // 3, (200, 200, 200), -1)
    if defect:
        cv2.line(image, (w // 4, h // 4), (3 * w // 4, 3 * h // 4), (20, 20, 20), 3)
    return image


def defect_mask(size: tuple[int, int] = (48, 64)) -> np.ndarray:
    h, w = size
    mask = np.zeros((h, w), np.uint8)
    cv2.line(mask, (w // 4, h // 4), (3 * w // 4, 3 * h // 4), 255, 3)
    return mask


def encoded(image: np.ndarray, suffix: str = ".png") -> bytes:
    ok, buf = cv2.imencode(suffix, image)
    assert ok
    return buf.tobytes()


def write_image(path: Path, image: np.ndarray) -> bytes:
    """Write *image* encoded by the path's suffix; returns the bytes written."""
    data = encoded(image, path.suffix)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return data
