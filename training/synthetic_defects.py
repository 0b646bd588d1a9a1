"""Synthetic defects drawn on OK parts, for a good-only line (DRAEM / CutPaste style).

A line that starts with many OK parts and no labeled defects can still train the
supervised `InspectionNet` (and so reuse its export, heatmap and threshold) when the
defects it learns from are made from the OK parts themselves. The kinds here are generic,
what any surface shows, and know nothing about a particular product or data set:

- ``blob``: an irregular patch (thresholded low-frequency noise under a soft window)
  filled with texture from another OK part, or from the same part shifted, rotated and
  re-scaled, with a random intensity change (DRAEM's anomaly source, with OK parts as
  the texture source instead of an external texture set);
- ``crack``: a thin dark or bright curved line (a smooth random walk, 1-4 px wide at
  256 px, sometimes branched);
- ``spot``: one to a few small dark or bright pits (about 2-12 px at 256 px);
- ``scar``: a CutPaste scar, a thin rotated strip of the part pasted elsewhere with a
  colour jitter (sometimes a larger CutPaste patch);
- ``shading``: a smooth local change of brightness or of contrast (uneven surface).

Every defect is blended with a random opacity (0.3-1.0) through a slightly blurred
alpha, so its edge is not trivially sharp, and the returned mask is exactly the region
that was changed: outside it the part is bit-identical to the OK part it came from.
Sizes scale with the part (its content box inside the letterbox, so defects never sit
on the letterbox padding).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from app.core.preprocess import PAD_VALUE
from training.data import OK, Sample

DEFECT = "defect"
KINDS = ("blob", "crack", "spot", "scar", "shading")
REFERENCE_SIDE = 256.0  # pixel sizes below are quoted at this part size and scale with it
ALPHA_RANGE = (0.3, 1.0)
MASK_LEVEL = 0.05  # alpha below this (the blurred fringe) is cut: the part stays untouched there
MIN_MEAN_CHANGE = 6.0  # grey levels: a defect nobody could see is label noise, so redraw it
ATTEMPTS = 6


# -- geometry helpers --------------------------------------------------------------------

def content_box(image: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the part inside its letterbox: edge rows/columns that are all
    the padding value are not part of the part."""
    pad = np.all(image == PAD_VALUE, axis=2) if image.ndim == 3 else image == PAD_VALUE
    rows = np.flatnonzero(~pad.all(axis=1))
    cols = np.flatnonzero(~pad.all(axis=0))
    if rows.size == 0 or cols.size == 0:
        return 0, image.shape[0], 0, image.shape[1]
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    if y1 - y0 < 8 or x1 - x0 < 8:  # a sliver: treat the whole image as the part
        return 0, image.shape[0], 0, image.shape[1]
    return y0, y1, x0, x1


def _point_in(box, rng, margin: float = 0.0) -> tuple[float, float]:
    y0, y1, x0, x1 = box
    my, mx = margin * (y1 - y0), margin * (x1 - x0)
    return float(rng.uniform(y0 + my, y1 - my)), float(rng.uniform(x0 + mx, x1 - mx))


def smooth_noise(h: int, w: int, cell: float, rng: np.random.Generator, octaves: int = 2) -> np.ndarray:
    """Perlin-like low-frequency noise in about [-1, 1]: random grids upsampled smoothly."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for _ in range(octaves):
        gh, gw = max(2, int(math.ceil(h / cell)) + 1), max(2, int(math.ceil(w / cell)) + 1)
        grid = rng.standard_normal((gh, gw)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
        cell = max(2.0, cell / 2)
    return np.clip(out / total / 1.5, -1, 1)


def _blob_field(shape, center, radius: float, rng, roughness: float = 0.6) -> np.ndarray:
    """An irregular blob around *center*: a soft window modulated by smooth noise, in [0, 1]."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    aspect = rng.uniform(0.5, 2.0)
    theta = rng.uniform(0, math.pi)
    dy, dx = yy - center[0], xx - center[1]
    u = (dx * math.cos(theta) + dy * math.sin(theta)) / (radius * math.sqrt(aspect))
    v = (-dx * math.sin(theta) + dy * math.cos(theta)) / (radius / math.sqrt(aspect))
    window = np.exp(-0.5 * (u * u + v * v))
    noise = smooth_noise(h, w, max(3.0, radius * rng.uniform(0.4, 1.0)), rng)
    return np.clip(window * (1.0 + roughness * noise), 0, 1)


def _source_view(src: np.ndarray, dst_center, src_center, angle: float, scale: float) -> np.ndarray:
    """*src* warped so that src_center lands on dst_center, rotated and re-scaled."""
    h, w = src.shape[:2]
    m = cv2.getRotationMatrix2D((src_center[1], src_center[0]), angle, scale)
    m[0, 2] += dst_center[1] - src_center[1]
    m[1, 2] += dst_center[0] - src_center[0]
    return cv2.warpAffine(src, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def _sign(rng) -> float:
    return 1.0 if rng.random() < 0.5 else -1.0


# -- the defect kinds: each returns (defect image float32 HxWxC, soft alpha HxW in [0, 1]) --

def _blob(img, others, box, side, rng):
    center = _point_in(box, rng, 0.05)
    radius = side * rng.uniform(0.03, 0.15)
    field = _blob_field(img.shape[:2], center, radius, rng)
    region = (field > 0.5).astype(np.float32)
    src = others[int(rng.integers(len(others)))] if rng.random() < 0.5 else img
    src_box = content_box(src)
    fill = _source_view(src, center, _point_in(src_box, rng, 0.1), rng.uniform(0, 360),
                        rng.uniform(0.6, 1.6)).astype(np.float32)
    gain = rng.uniform(0.6, 1.4)
    offset = _sign(rng) * rng.uniform(0, 50)
    mean = fill[region > 0].mean() if region.any() else fill.mean()
    fill = (fill - mean) * gain + mean + offset
    return fill, region


def _crack(img, others, box, side, rng):
    h, w = img.shape[:2]
    scale = side / REFERENCE_SIDE
    canvas = np.zeros((h, w), np.uint8)
    width = max(1, int(round(rng.uniform(1, 4) * scale)))
    length = side * rng.uniform(0.1, 0.5)
    branches = 1 + int(rng.random() < 0.3) + int(rng.random() < 0.1)
    y, x = _point_in(box, rng, 0.1)
    heading = rng.uniform(0, 2 * math.pi)
    for b in range(branches):
        seg_len = length if b == 0 else length * rng.uniform(0.2, 0.5)
        step = max(1.5, side / 100)
        pts = [(x, y)]
        turn = rng.uniform(0.05, 0.35)
        for _ in range(max(2, int(seg_len / step))):
            heading += rng.normal(0, turn)
            x += step * math.cos(heading)
            y += step * math.sin(heading)
            pts.append((x, y))
        cv2.polylines(canvas, [np.round(np.array(pts)).astype(np.int32)], False, 255, width, cv2.LINE_AA)
        # the next branch starts somewhere on this one, heading off sideways
        x, y = pts[int(rng.integers(len(pts)))]
        heading += _sign(rng) * rng.uniform(0.5, 1.2)
    alpha = canvas.astype(np.float32) / 255.0
    delta = _sign(rng) * rng.uniform(30, 110)
    return img.astype(np.float32) + delta, alpha


def _spot(img, others, box, side, rng):
    h, w = img.shape[:2]
    scale = side / REFERENCE_SIDE
    canvas = np.zeros((h, w), np.float32)
    cy, cx = _point_in(box, rng, 0.05)
    spread = side * rng.uniform(0.0, 0.08)
    for _ in range(int(rng.integers(1, 5))):
        d = max(2.0, rng.uniform(2, 12) * scale)
        y, x = cy + rng.normal(0, spread + 1e-6), cx + rng.normal(0, spread + 1e-6)
        axes = (max(1, int(round(d / 2 * rng.uniform(0.6, 1.4)))), max(1, int(round(d / 2 * rng.uniform(0.6, 1.4)))))
        cv2.ellipse(canvas, (int(round(x)), int(round(y))), axes, rng.uniform(0, 180), 0, 360, 1.0, -1, cv2.LINE_AA)
    delta = _sign(rng) * rng.uniform(30, 120)
    # pits are deepest in the middle
    inner = cv2.GaussianBlur(canvas, (0, 0), max(0.6, 1.0 * scale))
    return img.astype(np.float32) + delta * (0.5 + 0.5 * inner[..., None]), canvas


def _scar(img, others, box, side, rng):
    h, w = img.shape[:2]
    if rng.random() < 0.7:  # a scar: long and thin
        width = max(2.0, side * rng.uniform(0.01, 0.05))
        length = side * rng.uniform(0.1, 0.3)
    else:  # a CutPaste patch: 1-6 % of the part, aspect 0.3-3.3
        area = (box[1] - box[0]) * (box[3] - box[2]) * rng.uniform(0.01, 0.06)
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        width, length = math.sqrt(area / aspect), math.sqrt(area * aspect)
    center = _point_in(box, rng, 0.1)
    angle = rng.uniform(0, 180)
    rect = cv2.boxPoints(((center[1], center[0]), (length, width), angle))
    canvas = np.zeros((h, w), np.uint8)
    cv2.fillPoly(canvas, [np.round(rect).astype(np.int32)], 255)
    fill = _source_view(img, center, _point_in(box, rng, 0.1), rng.uniform(0, 360), 1.0).astype(np.float32)
    fill = (fill - 128.0) * rng.uniform(0.7, 1.3) + 128.0 + _sign(rng) * rng.uniform(0, 40)
    return fill, canvas.astype(np.float32) / 255.0


def _shading(img, others, box, side, rng):
    center = _point_in(box, rng, 0.05)
    radius = side * rng.uniform(0.06, 0.25)
    field = _blob_field(img.shape[:2], center, radius, rng, roughness=0.4)
    region = np.clip((field - 0.3) / 0.4, 0, 1)  # a soft-edged zone
    f = img.astype(np.float32)
    if rng.random() < 0.6:  # darker or brighter
        gain = rng.uniform(0.45, 0.8) if rng.random() < 0.5 else rng.uniform(1.25, 1.7)
        out = f * gain + (gain - 1.0) * 20.0
    else:  # flatter or harsher texture around the local mean
        local = cv2.GaussianBlur(f, (0, 0), max(1.5, side / 40))
        c = rng.uniform(0.1, 0.5) if rng.random() < 0.5 else rng.uniform(1.8, 3.0)
        out = local + (f - local) * c + _sign(rng) * rng.uniform(0, 25)
    return out, region


_MAKERS = {"blob": _blob, "crack": _crack, "spot": _spot, "scar": _scar, "shading": _shading}


def draw_defect(image: np.ndarray, others: list[np.ndarray], rng: np.random.Generator,
                kind: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """One synthetic defect on *image* (uint8 HxWx3): (defect image, 0/255 mask, kind).

    Outside the mask the result equals *image* exactly; inside, it was changed.
    """
    if kind is not None and kind not in _MAKERS:
        raise ValueError(f"unknown defect kind {kind!r}; expected one of {KINDS}")
    box = content_box(image)
    side = float(min(box[1] - box[0], box[3] - box[2]))
    base = image.astype(np.float32)
    best = None
    for _ in range(ATTEMPTS):
        k = kind or KINDS[int(rng.integers(len(KINDS)))]
        target, alpha = _MAKERS[k](image, others or [image], box, side, rng)
        # Blend with a random opacity through a slightly blurred alpha: no trivially sharp edge.
        blur = rng.uniform(0.4, 1.2) * max(1.0, side / REFERENCE_SIDE)
        alpha = cv2.GaussianBlur(alpha.astype(np.float32), (0, 0), blur) * rng.uniform(*ALPHA_RANGE)
        # Never on the letterbox padding.
        inside = np.zeros_like(alpha)
        inside[box[0]:box[1], box[2]:box[3]] = 1.0
        alpha *= inside
        region = alpha >= MASK_LEVEL
        if not region.any():
            continue
        a = np.where(region, alpha, 0.0)[..., None]
        out = np.clip(np.rint(base * (1 - a) + target * a), 0, 255).astype(np.uint8)
        out[~region] = image[~region]
        changed = np.any(out != image, axis=2)
        if not changed.any():
            continue
        mask = region  # the region that was painted; pixels outside it are untouched
        change = float(np.abs(out.astype(np.float32) - base)[mask].mean())
        if best is None or change > best[3]:
            best = (out, mask, k, change)
        if change >= MIN_MEAN_CHANGE:
            break
    if best is None:  # pathological input (e.g. a blank image): a plain spot, always visible
        out = image.copy()
        cy, cx = (box[0] + box[1]) // 2, (box[2] + box[3]) // 2
        r = max(1, int(side * 0.02))
        mask = np.zeros(image.shape[:2], bool)
        mask[max(0, cy - r):cy + r + 1, max(0, cx - r):cx + r + 1] = True
        out[mask] = np.where(out[mask] > 127, 0, 255).astype(np.uint8)
        return out, mask.astype(np.uint8) * 255, "spot"
    out, mask, k, _ = best
    return out, mask.astype(np.uint8) * 255, k


def synthesize(ok_samples: list[Sample], n: int, rng: np.random.Generator,
               kinds: tuple[str, ...] | None = None) -> list[Sample]:
    """*n* synthetic defective parts (verdict "defect", mask = the changed region) made
    from *ok_samples*. Every OK part serves as a base in turn (in a shuffled order), and
    texture for a blob may come from any of them."""
    oks = [s for s in ok_samples if s.verdict == OK]
    if not oks:
        raise ValueError("synthetic defects need at least one OK part")
    if n <= 0:
        return []
    images = [s.image for s in oks]
    order = np.concatenate([rng.permutation(len(oks)) for _ in range(int(math.ceil(n / len(oks))))])[:n]
    out = []
    for j, i in enumerate(order):
        kind = None if not kinds else kinds[int(rng.integers(len(kinds)))]
        base = oks[int(i)]
        img, mask, k = draw_defect(base.image, images, rng, kind)
        out.append(Sample(img, mask, DEFECT, f"{base.key}#synthetic{j}-{k}"))
    return out
