"""Synthetic defects on OK parts: shapes, masks exactly where the part changed, seeds, sizes."""

from __future__ import annotations

import numpy as np
import pytest

from app.core.preprocess import PAD_VALUE, letterbox
from training.data import OK, Sample, patch_targets
from training.synthetic_defects import DEFECT, KINDS, content_box, draw_defect, synthesize


def _ok_part(seed: int, size: int = 128, shape: tuple[int, int] | None = None) -> np.ndarray:
    """A textured grey part (streaks + grain), letterboxed when *shape* is not square."""
    rng = np.random.default_rng(seed)
    h, w = shape or (size, size)
    base = 90 + 25 * np.sin(np.arange(w) / rng.uniform(3, 9))[None, :] + rng.normal(0, 6, (h, w))
    img = np.repeat(np.clip(base, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    return letterbox(img, size)[0] if shape else img


def _oks(n: int = 4, size: int = 128, shape=None) -> list[Sample]:
    return [Sample(_ok_part(i, size, shape), None, OK, f"ok{i}") for i in range(n)]


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_changes_exactly_its_mask(kind):
    oks = _oks()
    for seed in range(6):
        base = oks[seed % len(oks)].image
        img, mask, got = draw_defect(base, [s.image for s in oks], np.random.default_rng(seed), kind)
        assert got == kind
        assert img.shape == base.shape and img.dtype == np.uint8
        assert mask.shape == base.shape[:2] and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
        changed = np.any(img != base, axis=2)
        assert not np.any(changed & (mask == 0)), "pixels changed outside the mask"
        inside = mask > 0
        assert changed[inside].mean() > 0.5, "most of the mask must really differ"
        assert np.abs(img.astype(float) - base)[inside].mean() >= 2.0


def test_synthesize_samples_and_patch_targets():
    oks = _oks()
    out = synthesize(oks, 10, np.random.default_rng(0))
    assert len(out) == 10
    for s in out:
        assert s.verdict == DEFECT and s.image.shape == (128, 128, 3) and s.mask.shape == (128, 128)
        assert patch_targets(s.mask, s.verdict, 8).sum() >= 1  # the head gets a positive patch
    # every OK part is used as a base before any is used twice
    bases = [s.key.split("#")[0] for s in out[:4]]
    assert sorted(bases) == ["ok0", "ok1", "ok2", "ok3"]
    assert synthesize(oks, 0, np.random.default_rng(0)) == []
    with pytest.raises(ValueError):
        synthesize([], 3, np.random.default_rng(0))


def test_same_seed_same_defects():
    oks = _oks()
    a = synthesize(oks, 6, np.random.default_rng(3))
    b = synthesize(oks, 6, np.random.default_rng(3))
    c = synthesize(oks, 6, np.random.default_rng(4))
    assert all(np.array_equal(x.image, y.image) and np.array_equal(x.mask, y.mask) and x.key == y.key
               for x, y in zip(a, b))
    assert any(not np.array_equal(x.mask, y.mask) for x, y in zip(a, c))


def test_never_on_the_letterbox_padding():
    oks = _oks(3, 128, shape=(60, 128))  # a wide part: padding above and below
    y0, y1, x0, x1 = content_box(oks[0].image)
    assert (x0, x1) == (0, 128) and 0 < y0 < y1 < 128
    for s in synthesize(oks, 25, np.random.default_rng(1)):
        ys, _ = np.nonzero(s.mask)
        assert ys.min() >= y0 and ys.max() < y1
        assert np.all(s.image[:y0] == PAD_VALUE) and np.all(s.image[y1:] == PAD_VALUE)


@pytest.mark.parametrize("kind", ["crack", "spot", "scar"])
def test_sizes_scale_with_the_part(kind):
    def median_area(size):
        oks = _oks(3, size)
        areas = [(s.mask > 0).mean() for s in synthesize(oks, 24, np.random.default_rng(5), kinds=(kind,))]
        return float(np.median(areas))
    # as a fraction of the part, a defect is about as large at 96 px as at 384 px
    small, large = median_area(96), median_area(384)
    assert 0.25 < small / large < 4.0


def test_defects_are_small_compared_with_the_part():
    oks = _oks(4, 160)
    fractions = [(s.mask > 0).mean() for s in synthesize(oks, 40, np.random.default_rng(2))]
    assert max(fractions) < 0.35 and np.median(fractions) < 0.08
