"""Generated demo parts: deterministic, masks where the defects are, the import layout."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.imageio import read_image, read_mask
from app.core.synthetic import DEFECT_KINDS, PartStream, generate_part, write_demo_dataset


def _part(seed: int, defect: str | None, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    return generate_part(np.random.default_rng(seed), defect, size)


@pytest.mark.parametrize("defect", [None, *DEFECT_KINDS])
def test_same_seed_same_part(defect):
    first, first_mask = _part(7, defect)
    again, again_mask = _part(7, defect)
    assert first.shape == (256, 256, 3) and first.dtype == np.uint8
    assert first_mask.shape == (256, 256) and first_mask.dtype == np.uint8
    assert np.array_equal(first, again) and np.array_equal(first_mask, again_mask)
    assert not np.array_equal(first, _part(8, defect)[0])


def test_ok_parts_have_an_empty_mask_and_vary():
    images = [_part(seed, None) for seed in range(6)]
    assert all(mask.max() == 0 for _, mask in images)
    brightness = [image.mean() for image, _ in images]
    assert max(brightness) - min(brightness) > 3  # lighting varies from part to part


@pytest.mark.parametrize("defect", DEFECT_KINDS)
def test_the_defect_is_where_its_mask_is(defect):
    """Same seed with and without the defect: the images differ only around the mask."""
    for seed in range(8):
        clean, _ = _part(seed, None)
        broken, mask = _part(seed, defect)
        defect_pixels = int((mask > 0).sum())
        assert set(np.unique(mask)) == {0, 255}
        assert 5 < defect_pixels < 0.05 * mask.size, (seed, defect_pixels)
        diff = np.abs(clean.astype(np.int16) - broken.astype(np.int16)).max(axis=2)
        # Optics blur spreads the defect by a pixel or two beyond its outline.
        near = cv2.dilate(mask, np.ones((7, 7), np.uint8)) > 0
        assert diff[~near].max() <= 2, (seed, defect)  # at most a rounding step or a blur tail
        # Visible: the mask is painted generously, but its core changed clearly.
        assert np.percentile(diff[mask > 0], 90) > 15, (seed, defect)


def test_defects_lie_on_the_part_not_the_belt():
    for seed in range(5):
        image, mask = _part(seed, "spot")
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
        # Steel is far brighter than the belt; a spot darkens it but stays above belt level.
        belt_level = np.median(gray[:8, :8])
        assert np.median(gray[cv2.dilate(mask, np.ones((15, 15), np.uint8)) > 0]) > belt_level + 20


def test_other_sizes_and_unknown_defect():
    image, mask = _part(1, "scratch", size=128)
    assert image.shape == (128, 128, 3) and mask.shape == (128, 128) and mask.max() == 255
    with pytest.raises(ValueError, match="dent"):
        _part(1, "dent")


def test_generation_is_fast():
    rng = np.random.default_rng(0)
    generate_part(rng, "spot")
    start = time.perf_counter()
    for i in range(40):
        generate_part(rng, DEFECT_KINDS[i % 3] if i % 2 else None)
    per_part_ms = (time.perf_counter() - start) * 1000 / 40
    assert per_part_ms < 60  # a few ms on an idle machine; generous for shared CI runners


def test_write_demo_dataset_layout(tmp_path: Path):
    counts = write_demo_dataset(tmp_path / "demo", n_ok=3, n_per_defect=2, seed=5)
    assert counts == {"good": 3, "scratch": 2, "spot": 2, "chip": 2}
    root = tmp_path / "demo"
    assert sorted(p.name for p in (root / "good").iterdir()) == ["good_0000.png", "good_0001.png", "good_0002.png"]
    for kind in DEFECT_KINDS:
        for image_path in sorted((root / kind).iterdir()):
            mask = read_mask(root / "masks" / kind / image_path.name)
            assert read_image(image_path).shape == (256, 256, 3)
            assert mask.shape == (256, 256) and mask.max() == 255
    assert not (root / "masks" / "good").exists()
    # Seeded per image: a bigger set starts with the same pictures.
    write_demo_dataset(tmp_path / "more", n_ok=4, n_per_defect=1, seed=5)
    assert (root / "good" / "good_0001.png").read_bytes() == (tmp_path / "more" / "good" / "good_0001.png").read_bytes()
    assert (root / "chip" / "chip_0000.png").read_bytes() == (tmp_path / "more" / "chip" / "chip_0000.png").read_bytes()


def test_part_stream_is_deterministic_with_the_asked_defect_rate():
    stream, again = PartStream(seed=3, defect_rate=0.3, size=96), PartStream(seed=3, defect_rate=0.3, size=96)
    truths = []
    for _ in range(60):
        image, truth = stream.next_frame()
        other, other_truth = next(again)
        assert np.array_equal(image, other) and truth == other_truth
        assert image.shape == (96, 96, 3)
        assert (stream.last_mask.max() == 0) == (truth == "ok")
        truths.append(truth)
    defective = sum(t != "ok" for t in truths)
    assert 8 <= defective <= 30
    assert set(truths) <= {"ok", *DEFECT_KINDS}
    assert all(t == "ok" for _, t in (PartStream(seed=1, defect_rate=0.0, size=64).next_frame() for _ in range(10)))
