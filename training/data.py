"""Training samples: letterboxed uint8 parts, patch targets from masks, augmentation.

Images go through `app.core.preprocess.letterbox` (or, for a tiled model, the same
`TilePlan.tiles` the line uses), so the network sees parts at training time exactly as
it will at the line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from app.core.imageio import read_image, read_mask
from app.core.preprocess import TilePlan, letterbox, letterbox_mask

OK = "ok"


@dataclass
class Sample:
    """One labeled part, already letterboxed to the model input size."""

    image: np.ndarray  # uint8 S x S x 3 BGR
    mask: np.ndarray | None  # uint8 S x S 0/255, None when the label has no painted region
    verdict: str  # "ok" or a defect class name
    key: str  # stable id (the image sha256, or a file path)


def load_sample(image_path: Path | str, verdict: str, size: int, mask_path: Path | str | None = None,
                key: str | None = None, mask: np.ndarray | None = None) -> Sample:
    image = read_image(image_path)
    if mask is None and mask_path is not None:
        mask = read_mask(mask_path, image.shape[:2])
    boxed, _ = letterbox(image, size)
    boxed_mask = None
    if mask is not None and verdict != OK:
        boxed_mask = letterbox_mask(mask, size)
    return Sample(boxed, boxed_mask, verdict, key or str(image_path))


def load_tiled_samples(image_path: Path | str, verdict: str, plan: TilePlan, mask: np.ndarray | None = None,
                       key: str | None = None) -> list[Sample]:
    """One Sample per tile of the part, cut exactly as the line cuts it.

    A tile's label comes from the painted mask: a defect tile keeps the part's class and
    its tile mask; a tile of a defective part with no painted pixel in it is an OK tile
    (the inspector painted where the defect is, so the rest of the part is clean). A
    defective part without a mask cannot say which tiles hold the defect: every tile
    carries the defect class and no mask, a bag, which the trainer weighs as one part
    (training.weak_tiles).
    Keys are "<key>#t<i>" so tiles of one part stay distinguishable and traceable.
    """
    has_mask = mask is not None and bool(np.any(mask))
    image = read_image(image_path)
    tiles, _ = plan.tiles(image)
    base = key or str(image_path)
    if verdict == OK or not has_mask:
        return [Sample(t, None, verdict, f"{base}#t{i}") for i, t in enumerate(tiles)]
    if mask.shape[:2] != image.shape[:2]:  # a mask painted on a resized view still lines up
        mask = cv2.resize(mask, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_NEAREST)
    samples = []
    for i, (tile, tile_mask) in enumerate(zip(tiles, plan.tile_mask(mask))):
        if tile_mask.any():
            samples.append(Sample(tile, tile_mask, verdict, f"{base}#t{i}"))
        else:
            samples.append(Sample(tile, None, OK, f"{base}#t{i}"))
    return samples


def part_key(key: str) -> str:
    """The part a sample belongs to: its key without the tile suffix "#t<i>" that
    `load_tiled_samples` adds; any other key is a part of its own."""
    base, sep, tile = key.rpartition("#t")
    return base if sep and tile.isdigit() else key


def patch_targets(mask: np.ndarray | None, verdict: str, grid: int) -> np.ndarray:
    """Per-patch defect targets in {0, 1}, or -1 where unknown.

    An OK part says every patch is clean. A painted defect says which patches hold it
    (any defect pixel in the patch). A defect without a painted region says nothing
    per patch: the image-level label alone teaches those.
    """
    if verdict == OK:
        return np.zeros((grid, grid), np.float32)
    if mask is None:
        return np.full((grid, grid), -1.0, np.float32)
    # Max-pool the mask onto the patch grid: a 1-pixel blowhole still marks its patch.
    size = mask.shape[0]
    cell = size // grid
    pooled = (mask[: cell * grid, : cell * grid] > 0).reshape(grid, cell, grid, cell).max(axis=(1, 3))
    return pooled.astype(np.float32)


def augment(image: np.ndarray, mask: np.ndarray | None, rng: np.random.Generator):
    """Variations a part really shows at the line: orientation, small shifts and
    rotations, lighting, focus and sensor noise. Geometry moves the mask with the image."""
    size = image.shape[0]
    if rng.random() < 0.5:
        image, mask = image[:, ::-1], None if mask is None else mask[:, ::-1]
    if rng.random() < 0.5:
        image, mask = image[::-1], None if mask is None else mask[::-1]
    angle = rng.uniform(-10, 10)
    shift = rng.uniform(-0.04, 0.04, size=2) * size
    m = cv2.getRotationMatrix2D((size / 2, size / 2), angle, rng.uniform(0.95, 1.05))
    m[:, 2] += shift
    image = cv2.warpAffine(np.ascontiguousarray(image), m, (size, size), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_REFLECT)
    if mask is not None:
        mask = cv2.warpAffine(np.ascontiguousarray(mask), m, (size, size), flags=cv2.INTER_NEAREST,
                              borderValue=0)
    img = image.astype(np.float32)
    img = (img - 128.0) * rng.uniform(0.8, 1.2) + 128.0 + rng.uniform(-20, 20)
    if rng.random() < 0.2:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.3:
        img = img + rng.normal(0, rng.uniform(1, 5), img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8), mask
