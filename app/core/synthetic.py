"""Generated parts for the demo, the simulated camera and the tests.

A turned steel washer with a locating notch, lying on a conveyor belt under a lamp.
Every part differs in lighting, position, rotation, size, focus and sensor noise, so a
model has to learn the defect and not the picture. Defects are small and low-contrast on
purpose: a 1-3 px scratch, a rust or oil spot, a chipped outer edge.

Deterministic per seed. The scene is drawn from the generator before the defect, and the
defect from its own child generator, so the same seed with and without a defect gives
the same part: the images differ only inside the defect mask.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from app.core.atomic import write_bytes
from app.core.imageio import encode_png

DEFECT_KINDS = ("scratch", "spot", "chip")
OK_FOLDER = "good"

# BGR colour casts: blue-grey steel on a dark green-grey belt, rust brown for spots.
STEEL_TINT = np.array([1.04, 1.0, 0.95], np.float32)
BELT_TINT = np.array([0.92, 1.0, 0.9], np.float32)
RUST_BGR = np.array([35.0, 60.0, 105.0], np.float32)


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return xx, yy


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Low-frequency noise, -1..1-ish: a few random values upsampled smoothly."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


class _Scene:
    """One washer's geometry and shading, before any defect."""

    def __init__(self, rng: np.random.Generator, size: int) -> None:
        s = float(size)
        self.size = size
        self.cx = s / 2 + rng.uniform(-0.08, 0.08) * s
        self.cy = s / 2 + rng.uniform(-0.08, 0.08) * s
        self.outer = rng.uniform(0.29, 0.35) * s
        self.inner = self.outer * rng.uniform(0.38, 0.48)
        self.rotation = rng.uniform(0, 2 * np.pi)  # where the locating notch points
        self.light = rng.uniform(0, 2 * np.pi)  # direction of the lamp
        self.metal_level = rng.uniform(125, 165)
        self.belt_level = rng.uniform(40, 70)
        self.gain = rng.uniform(0.82, 1.15)
        self.gradient = [float(g) for g in rng.uniform(-0.18, 0.18, size=2)]
        self.turning_freq = rng.uniform(0.9, 1.6)
        self.turning_phase = rng.uniform(0, 2 * np.pi)
        self.belt_noise = _smooth_noise(rng, size, 7)
        self.belt_streaks = rng.standard_normal(size).astype(np.float32)
        self.blur = rng.uniform(0.35, 0.9)
        self.noise = rng.uniform(1.5, 4.0)

        xx, yy = _grid(size)
        self.dx, self.dy = xx - self.cx, yy - self.cy
        self.radius = np.sqrt(self.dx**2 + self.dy**2)

    def alpha(self) -> np.ndarray:
        """Coverage of the washer, 0..1 with a one-pixel antialiased edge."""
        r = self.radius
        ring = np.clip(self.outer - r + 0.5, 0, 1) * np.clip(r - self.inner + 0.5, 0, 1)
        # Locating notch: a rectangular key cut into the inner edge.
        cos_r, sin_r = np.cos(self.rotation), np.sin(self.rotation)
        along = self.dx * cos_r + self.dy * sin_r
        across = -self.dx * sin_r + self.dy * cos_r
        depth, half_width = 0.22 * (self.outer - self.inner), 0.16 * self.inner
        notch = np.clip(self.inner + depth - along + 0.5, 0, 1) * np.clip(half_width - np.abs(across) + 0.5, 0, 1)
        return ring * (1.0 - notch * (along > 0))

    def metal(self) -> np.ndarray:
        """Brightness of turned steel: a bow-tie highlight plus fine concentric tool marks."""
        # cos(angle - light) from the offsets directly: no arctan2 over the whole image.
        towards_light = (self.dx * np.cos(self.light) + self.dy * np.sin(self.light)) / np.maximum(self.radius, 1.0)
        bow_tie = 2.0 * towards_light * towards_light - 1.0  # cos(2 * (angle - light))
        shade = self.metal_level + 30.0 * bow_tie * bow_tie * bow_tie
        shade += 5.0 * np.sin(self.radius * self.turning_freq + self.turning_phase)
        # Chamfered edges catch the lamp on one side and fall into shade on the other.
        outer_edge = np.clip(1.0 - (self.outer - self.radius) / 3.0, 0, 1)
        inner_edge = np.clip(1.0 - (self.radius - self.inner) / 2.5, 0, 1)
        shade += towards_light * (45.0 * outer_edge - 35.0 * inner_edge)
        return shade.astype(np.float32)

    def shadow(self) -> np.ndarray:
        """A soft ring offset away from the lamp (drawn, not blurred: blurring is slow)."""
        shift, soft = 0.025 * self.size, 0.03 * self.size
        xx, yy = _grid(self.size)
        sx = xx - (self.cx - shift * np.cos(self.light))
        sy = yy - (self.cy - shift * np.sin(self.light))
        r = np.sqrt(sx * sx + sy * sy)
        return np.clip((self.outer - r) / soft + 0.5, 0, 1) * np.clip((r - self.inner) / soft + 0.5, 0, 1)

    def belt(self) -> np.ndarray:
        streaks = np.broadcast_to(self.belt_streaks[:, None], (self.size, self.size))
        return self.belt_level * (1.0 + 0.12 * self.belt_noise) + 2.5 * streaks

    def lighting(self) -> np.ndarray:
        """Global lamp falloff: a tilt across the image and a gentle vignette."""
        xx, yy = _grid(self.size)
        s = float(self.size)
        u, v = xx / s - 0.5, yy / s - 0.5
        tilt = 1.0 + 2.0 * (self.gradient[0] * u + self.gradient[1] * v)
        return (self.gain * tilt * (1.0 - 0.35 * (u * u + v * v))).astype(np.float32)


def _point_on_ring(rng: np.random.Generator, scene: _Scene, margin: float) -> tuple[float, float]:
    r = rng.uniform(scene.inner + margin, scene.outer - margin)
    a = rng.uniform(0, 2 * np.pi)
    return scene.cx + r * np.cos(a), scene.cy + r * np.sin(a)


def _scratch(rng: np.random.Generator, scene: _Scene, metal: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """A thin slightly curved groove, darker (or a bright burr) than the metal around it."""
    size = scene.size
    x0, y0 = _point_on_ring(rng, scene, 3.0)
    length = rng.uniform(0.35, 0.8) * (scene.outer - scene.inner)
    heading = rng.uniform(0, 2 * np.pi)
    bend = rng.uniform(-0.25, 0.25) * length
    t = np.linspace(0, 1, 24, dtype=np.float32)[:, None]
    straight = np.array([x0, y0]) + t * length * np.array([np.cos(heading), np.sin(heading)])
    normal = np.array([-np.sin(heading), np.cos(heading)])
    points = straight + (4 * t * (1 - t)) * bend * normal
    thickness = int(rng.integers(1, 3)) * max(1, size // 256)
    layer = np.zeros((size, size), np.float32)
    cv2.polylines(layer, [np.round(points * 4).astype(np.int32)], False, 1.0, thickness, cv2.LINE_AA, shift=2)
    contrast = rng.uniform(32, 58) * (1 if rng.random() < 0.2 else -1)
    metal += contrast * layer
    mask = np.zeros((size, size), np.uint8)
    cv2.polylines(mask, [np.round(points * 4).astype(np.int32)], False, 255, thickness + 2, cv2.LINE_8, shift=2)
    # Where the groove runs off the washer (into the hole) there is nothing to mark.
    return np.where(alpha > 0, mask, 0).astype(np.uint8)


def _spot(rng: np.random.Generator, scene: _Scene, colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """An irregular rust or oil stain with a soft rim."""
    size = scene.size
    x0, y0 = _point_on_ring(rng, scene, 5.0)
    radius = rng.uniform(0.012, 0.03) * size
    stretch = rng.uniform(0.6, 1.0)
    turn = rng.uniform(0, np.pi)
    lobes = rng.uniform(0, 2 * np.pi, 2)
    # Drawn inside its own small window: the rest of the image is untouched.
    reach = int(np.ceil(radius * 1.5)) + 4
    x_lo, x_hi = max(0, int(x0) - reach), min(size, int(x0) + reach + 1)
    y_lo, y_hi = max(0, int(y0) - reach), min(size, int(y0) + reach + 1)
    yy, xx = np.mgrid[y_lo:y_hi, x_lo:x_hi].astype(np.float32)
    dx, dy = xx - x0, yy - y0
    u = dx * np.cos(turn) + dy * np.sin(turn)
    v = (-dx * np.sin(turn) + dy * np.cos(turn)) / stretch
    theta = np.arctan2(v, u)
    wobble = 1.0 + 0.15 * np.sin(2 * theta + lobes[0]) + 0.1 * np.sin(3 * theta + lobes[1])
    window = (slice(y_lo, y_hi), slice(x_lo, x_hi))
    blob = np.clip((radius * wobble - np.sqrt(u * u + v * v)) / 1.5 + 0.5, 0, 1) * alpha[window]
    blob = cv2.GaussianBlur(blob, (0, 0), 0.8)
    strength = rng.uniform(0.45, 0.75)
    patch = colour[window]
    target = RUST_BGR * rng.uniform(0.8, 1.3) if rng.random() < 0.6 else patch.mean(axis=2, keepdims=True) * 0.45
    weight = (strength * blob)[..., None]
    colour[window] = patch * (1 - weight) + target * weight
    mask = np.zeros((size, size), np.uint8)
    mask[window] = np.where((blob > 0.1) & (alpha[window] > 0.5), 255, 0)
    return mask


def _chip(rng: np.random.Generator, scene: _Scene, alpha: np.ndarray) -> np.ndarray:
    """A bite out of the outer edge: metal replaced by belt (returns the mask, edits alpha)."""
    size = scene.size
    a = rng.uniform(0, 2 * np.pi)
    bite = rng.uniform(0.025, 0.045) * size
    depth = rng.uniform(0.55, 0.9) * bite
    x0 = scene.cx + (scene.outer + bite - depth) * np.cos(a)
    y0 = scene.cy + (scene.outer + bite - depth) * np.sin(a)
    n = 9
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = bite * rng.uniform(0.85, 1.15, n)
    polygon = np.stack([x0 + radii * np.cos(angles), y0 + radii * np.sin(angles)], axis=1)
    cut = np.zeros((size, size), np.float32)
    cv2.fillPoly(cut, [np.round(polygon * 4).astype(np.int32)], 1.0, cv2.LINE_AA, shift=2)
    removed = alpha * cut
    alpha -= removed
    return np.where(removed > 0.1, 255, 0).astype(np.uint8)


def generate_part(
    rng: np.random.Generator, defect: str | None = None, size: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """A washer image (BGR uint8, size x size) and its defect mask (uint8 0/255; zero when OK)."""
    if defect is not None and defect not in DEFECT_KINDS:
        raise ValueError(f"unknown defect kind {defect!r}; expected one of {DEFECT_KINDS}")
    scene = _Scene(rng, size)
    defect_rng = np.random.default_rng(rng.integers(2**63))
    # Uniform noise of the same spread looks the same as Gaussian and costs a third.
    sensor_noise = rng.random((size, size, 3), dtype=np.float32) - np.float32(0.5)

    alpha = scene.alpha()
    metal = scene.metal()
    mask = np.zeros((size, size), np.uint8)
    if defect == "scratch":
        mask = _scratch(defect_rng, scene, metal, alpha)
    colour = metal[..., None] * STEEL_TINT
    if defect == "spot":
        mask = _spot(defect_rng, scene, colour, alpha)
    shadow = scene.shadow()  # cast by the whole washer, chipped or not
    if defect == "chip":
        mask = _chip(defect_rng, scene, alpha)
    belt = (scene.belt() * (1.0 - 0.45 * shadow))[..., None] * BELT_TINT

    image = belt + (colour - belt) * alpha[..., None]
    image *= scene.lighting()[..., None]
    image = cv2.GaussianBlur(image, (0, 0), scene.blur)
    image += np.float32(scene.noise * 3.46) * sensor_noise  # uniform with std = scene.noise
    image = np.clip(image + 0.5, 0, 255).astype(np.uint8)
    return image, mask


def write_demo_dataset(dest: Path, n_ok: int, n_per_defect: int, seed: int = 0) -> dict[str, int]:
    """Write good/, <kind>/ and masks/<kind>/ PNGs under *dest*; returns images per folder."""
    dest = Path(dest)
    counts: dict[str, int] = {}
    for kind_index, kind in enumerate((None, *DEFECT_KINDS)):
        folder = OK_FOLDER if kind is None else kind
        n = n_ok if kind is None else n_per_defect
        for i in range(n):
            # Seeded per image, so adding images never changes the ones already written.
            rng = np.random.default_rng([seed, kind_index, i])
            image, mask = generate_part(rng, kind)
            stem = f"{folder}_{i:04d}"
            write_bytes(dest / folder / f"{stem}.png", encode_png(image))
            if kind is not None:
                write_bytes(dest / "masks" / kind / f"{stem}.png", encode_png(mask))
        counts[folder] = n
    return counts


class PartStream:
    """An endless stream of parts for the simulated camera, some of them defective."""

    def __init__(self, seed: int = 0, defect_rate: float = 0.3, size: int = 256) -> None:
        self._rng = np.random.default_rng(seed)
        self.defect_rate = defect_rate
        self.size = size
        self.last_mask: np.ndarray | None = None

    def next_frame(self) -> tuple[np.ndarray, str]:
        """(BGR image, truth) where truth is "ok" or the defect kind."""
        defect = None
        if self._rng.random() < self.defect_rate:
            defect = DEFECT_KINDS[int(self._rng.integers(len(DEFECT_KINDS)))]
        image, self.last_mask = generate_part(self._rng, defect, self.size)
        return image, defect or "ok"

    def __iter__(self) -> "PartStream":
        return self

    def __next__(self) -> tuple[np.ndarray, str]:
        return self.next_frame()
