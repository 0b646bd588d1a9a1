"""Geometry shared by the trainer and the line: letterbox to a square input.

Parts keep their aspect ratio (pad, don't stretch): a stretched scratch is a different
scratch. Normalisation is *not* here: it lives inside the exported ONNX graph, so the
only thing both sides must agree on is this function, and both import it.
"""

from __future__ import annotations

import math
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


# Rows sampled before the full check: a colour part almost always differs in them, so
# it costs a few microseconds to turn away.
GREY_PROBE_ROWS = 16


def grey_channel(image: np.ndarray) -> np.ndarray | None:
    """The one channel of a grey part, else None: a 2-D uint8 image, or a BGR one whose
    three channels are equal everywhere (a mono camera's frames, a grey JPEG decoded to
    BGR). Letterboxing or tiling that channel and copying it to three channels after
    (`imageio.to_bgr8`) gives bit for bit what cutting all three gives, since OpenCV
    resamples each channel alike, for a third of the resampling: cutting a kolektorsdd
    part took 1.81 ms, this check included, against 2.26 ms (`tests/test_tiling.py`
    holds the equality on generated and, where present, the datasets' parts)."""
    if image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        return image
    if image.ndim != 3 or image.shape[2] != 3:
        return None
    probe = image[:: max(1, image.shape[0] // GREY_PROBE_ROWS)]
    if not (np.array_equal(probe[..., 0], probe[..., 1]) and np.array_equal(probe[..., 0], probe[..., 2])):
        return None
    image = np.ascontiguousarray(image)
    channel = cv2.extractChannel(image, 0)
    if cv2.norm(image, cv2.cvtColor(channel, cv2.COLOR_GRAY2BGR), cv2.NORM_INF) != 0:
        return None
    return channel


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


# --- Tiling: judging large parts in overlapping tiles near native resolution -------------
#
# A 500 x 1,250 px part letterboxed into 224 px loses 82 % of its linear resolution and a
# thin crack with it. A TilePlan scales the part once (usually to native or close to it),
# cuts an overlapping grid of model-sized tiles covering all of it, and the runtime pools
# the tiles' verdicts and stitches their heatmaps back over the original image. The ONNX
# model stays the per-tile network; this module is the one definition of the geometry.

DEFAULT_OVERLAP = 0.125  # 1/8 of a tile: a defect cut by one border sits inside the next tile
# A defect should span at least one heatmap patch (the head judges 16 px patches) at the
# chosen scale; below that the patch that holds it is mostly clean surface.
MIN_DEFECT_SPAN_PX = 16.0
# Tiling must buy clearly more resolution than the whole-part letterbox to be worth the
# extra model runs; 1.5x linear is 2.25x the pixels on the defect.
MIN_RESOLUTION_GAIN = 1.5
# Line latency grows with tiles per part; past this the plan gives up resolution instead.
MAX_TILES_PER_PART = 32
# Pad around the scaled part before it is cut, so no border of the part is a tile's outer
# edge: there the network's own zero padding meets the part's last pixels, and a defect
# on the border is judged from half a neighbourhood. One heatmap patch (16 px) is enough
# for the patch that holds the border to see past it. On kolektorsdd two of the test
# cracks lie on the part's right border; without the margin the supervised model scored
# them 0.16 and 0.37 (missed); with a 16-px margin bought by shrinking the part instead
# of growing the tile they were caught, but the resolution lost missed two others.
TILE_MARGIN = 16


@dataclass(frozen=True)
class TileLayout:
    """Where each tile of one part sits. Origins are in *scaled* pixels and may be
    negative on an axis shorter than a tile (the part is centred and padded there)."""

    height: int  # original image height
    width: int  # original image width
    scaled_height: int
    scaled_width: int
    scale: float
    tile: int
    origins: tuple[tuple[int, int], ...]  # (y0, x0) of each tile, row-major

    def __len__(self) -> int:
        return len(self.origins)


def _axis_origins(length: int, tile: int, stride: int) -> list[int]:
    """Tile starts along one axis: centred when the part is shorter than a tile, else the
    fewest tiles at <= stride apart, spread evenly so the last one ends exactly at the
    border (no padding inside the part, overlap never below the plan's)."""
    if length <= tile:
        return [-((tile - length) // 2)]
    n = -(-(length - tile) // stride) + 1  # ceil division
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


@dataclass(frozen=True)
class TilePlan:
    """How parts are cut into model inputs: side *tile* (= the model input size), source
    scaled by *scale* (output px per source px, 1.0 = native), tiles *overlap* apart, the
    scaled part padded by *margin* px on every side before it is cut (`TILE_MARGIN`;
    models saved before the margin existed have 0)."""

    tile: int
    scale: float
    overlap: float = DEFAULT_OVERLAP
    margin: int = 0

    def __post_init__(self) -> None:
        # Checked here so a damaged "tiling" entry in a model fails on load, not mid-line.
        if int(self.tile) != self.tile or self.tile < 16:
            raise ValueError(f"tile side must be an integer >= 16, got {self.tile!r}")
        if not (0.0 < float(self.scale) <= 8.0):
            raise ValueError(f"tile scale must be in (0, 8], got {self.scale!r}")
        if not (0.0 <= float(self.overlap) <= 0.5):
            raise ValueError(f"tile overlap must be in [0, 0.5], got {self.overlap!r}")
        if int(self.margin) != self.margin or not 0 <= self.margin < self.tile // 4:
            raise ValueError(f"tile margin must be an integer in [0, tile/4), got {self.margin!r}")

    @property
    def stride(self) -> int:
        """Pixels (scaled) between tile starts; at least 1 so the grid always advances."""
        return max(1, self.tile - round(self.tile * self.overlap))

    def redundant_ring(self, patch: int) -> int:
        """Patches at each tile's edge that judge nothing another tile does not judge
        better: 1 when the margin is at least a *patch* (the outer ring of a tile on the
        part's border lies in the margin) and neighbours overlap by at least two patches
        (a tile's edge ring inside the part is a whole patch inside its neighbour's
        edge); else 0. Every part pixel then lies in some tile's interior."""
        return int(self.margin >= patch and self.tile - self.stride >= 2 * patch)

    def to_dict(self) -> dict:
        return {"tile": int(self.tile), "scale": float(self.scale), "overlap": float(self.overlap),
                "margin": int(self.margin)}

    @classmethod
    def from_dict(cls, data: dict | None) -> "TilePlan | None":
        """The model metadata's "tiling" entry; absent/None means whole-part letterbox."""
        if data is None:
            return None
        return cls(int(data["tile"]), float(data["scale"]), float(data.get("overlap", DEFAULT_OVERLAP)),
                   int(data.get("margin", 0)))

    def scaled_size(self, height: int, width: int) -> tuple[int, int]:
        return max(1, round(height * self.scale)), max(1, round(width * self.scale))

    def _origins(self, length: int) -> list[int]:
        m = int(self.margin)
        return [o - m for o in _axis_origins(length + 2 * m, self.tile, self.stride)]

    def layout(self, height: int, width: int) -> TileLayout:
        sh, sw = self.scaled_size(height, width)
        ys, xs = self._origins(sh), self._origins(sw)
        origins = tuple((y, x) for y in ys for x in xs)
        return TileLayout(height, width, sh, sw, float(self.scale), self.tile, origins)

    def count(self, height: int, width: int) -> int:
        """Tiles a part of this size needs (for latency estimates and the plan rule)."""
        sh, sw = self.scaled_size(height, width)
        return len(self._origins(sh)) * len(self._origins(sw))

    def tiles(self, image: np.ndarray) -> tuple[list[np.ndarray], TileLayout]:
        """Cut *image* (H x W[xC] uint8) into tile x tile crops; padding is PAD_VALUE."""
        layout = self.layout(*image.shape[:2])
        interp = cv2.INTER_AREA if self.scale < 1 else cv2.INTER_LINEAR
        scaled = self._resize(image, layout, interp)
        return [_crop(scaled, y, x, self.tile, PAD_VALUE) for y, x in layout.origins], layout

    def tile_mask(self, mask: np.ndarray) -> list[np.ndarray]:
        """Cut a 0/255 mask exactly like `tiles` cuts its image; padding is 'no defect'.

        Downscaling uses area coverage and keeps any covered pixel: a 1 px painted crack
        must still mark its tile (nearest-neighbour would drop most of it)."""
        layout = self.layout(*mask.shape[:2])
        if self.scale < 1:
            cover = self._resize((mask > 0).astype(np.float32), layout, cv2.INTER_AREA)
            scaled = np.where(cover > 0, 255, 0).astype(np.uint8)
        else:
            scaled = self._resize(np.where(mask > 0, 255, 0).astype(np.uint8), layout, cv2.INTER_NEAREST)
        return [_crop(scaled, y, x, self.tile, 0) for y, x in layout.origins]

    @staticmethod
    def _resize(image: np.ndarray, layout: TileLayout, interp: int) -> np.ndarray:
        if (layout.scaled_height, layout.scaled_width) == image.shape[:2]:
            return image  # native scale: no resampling, not even a copy
        return cv2.resize(image, (layout.scaled_width, layout.scaled_height), interpolation=interp)


def _crop(scaled: np.ndarray, y0: int, x0: int, tile: int, fill: int) -> np.ndarray:
    """The tile x tile window at (y0, x0) of *scaled*; outside the part is *fill*."""
    out = np.full((tile, tile) + scaled.shape[2:], fill, dtype=scaled.dtype)
    h, w = scaled.shape[:2]
    ya, yb, xa, xb = max(0, y0), min(h, y0 + tile), max(0, x0), min(w, x0 + tile)
    out[ya - y0 : yb - y0, xa - x0 : xb - x0] = scaled[ya:yb, xa:xb]
    return out


def stitch_scaled(heatmaps, layout: TileLayout) -> np.ndarray:
    """Tile heatmaps (each h x w over its tile) as one float32 map over the *scaled* part,
    the max where tiles overlap: a defect seen by either tile stays hot."""
    canvas = np.full((layout.scaled_height, layout.scaled_width), -np.inf, np.float32)
    t = layout.tile
    for heat, (y0, x0) in zip(heatmaps, layout.origins):
        full = cv2.resize(np.asarray(heat, np.float32), (t, t), interpolation=cv2.INTER_LINEAR)
        ya, yb = max(0, y0), min(layout.scaled_height, y0 + t)
        xa, xb = max(0, x0), min(layout.scaled_width, x0 + t)
        np.maximum(canvas[ya:yb, xa:xb], full[ya - y0 : yb - y0, xa - x0 : xb - x0], out=canvas[ya:yb, xa:xb])
    canvas[~np.isfinite(canvas)] = 0.0  # never happens with a full layout; keeps maps finite
    return canvas


def stitch(heatmaps, layout: TileLayout) -> np.ndarray:
    """Tile heatmaps stitched into one float32 H x W heatmap over the ORIGINAL image."""
    canvas = stitch_scaled(heatmaps, layout)
    if canvas.shape == (layout.height, layout.width):
        return canvas
    return cv2.resize(canvas, (layout.width, layout.height), interpolation=cv2.INTER_LINEAR)


def stitch_grid(heatmaps, layout: TileLayout, stride: int) -> tuple[np.ndarray, Letterbox]:
    """The stitched heatmap at patch-grid resolution, laid out like a letterbox of the
    scaled part (square, centred, padding cells 0), with the matching Letterbox: so code
    that maps `heatmap` through `heatmap_to_image(heatmap, box)` keeps working."""
    side = -(-max(layout.scaled_height, layout.scaled_width) // stride) * stride
    pad_y, pad_x = (side - layout.scaled_height) // 2, (side - layout.scaled_width) // 2
    square = np.zeros((side, side), np.float32)
    square[pad_y : pad_y + layout.scaled_height, pad_x : pad_x + layout.scaled_width] = stitch_scaled(
        heatmaps, layout
    )
    g = side // stride
    grid = square.reshape(g, stride, g, stride).max(axis=(1, 3))  # a hot pixel keeps its cell hot
    return grid, Letterbox(layout.scale, pad_x, pad_y, layout.width, layout.height, side)


def defect_extent(mask: np.ndarray | None) -> float | None:
    """How far a painted defect spans, in source px: the short side of its bounding box.

    The short side is what shrinks below a patch first (a long thin crack is long in one
    direction only). None when nothing is painted."""
    if mask is None:
        return None
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return float(min(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1))


def _cap_tiles(plan: TilePlan, height: int, width: int, floor: float) -> TilePlan:
    """Lower the scale (not below *floor*) until a typical part fits MAX_TILES_PER_PART."""
    while plan.count(height, width) > MAX_TILES_PER_PART and plan.scale * 0.95 >= floor:
        plan = TilePlan(plan.tile, plan.scale * 0.95, plan.overlap, plan.margin)
    return plan


def choose_tile_plan(image_sizes: list[tuple[int, int]], defect_extents: list[float],
                     input_size: int, margin: int = TILE_MARGIN, whole_size: int | None = None) -> TilePlan | None:
    """The tile plan for a data set, from its images' sizes and painted defects only.

    *input_size* S is the part's side inside a tile; the tile (the model input) is
    S + 2 x *margin*, so the part's borders sit *margin* px inside it. *whole_size*
    (default S) is the input the whole part would be letterboxed into instead.

    - whole-part scale s_whole = whole_size / max(h, w) at the median image size;
    - tile scale s_tile = min(1, S / min(h, w)): the short side fills one tile (inside
      its margins), so a long part becomes one row of tiles, and nothing is upscaled
      beyond native;
    - raised (never above 1.0) if the 25th percentile defect extent (px, see
      `defect_extent`) would span fewer than MIN_DEFECT_SPAN_PX at s_tile;
    - lowered if a median part would need more than MAX_TILES_PER_PART tiles;
    - tile only if s_tile / s_whole >= MIN_RESOLUTION_GAIN, else None (whole-part letterbox).
    """
    if not image_sizes:
        return None
    h = float(np.median([s[0] for s in image_sizes]))
    w = float(np.median([s[1] for s in image_sizes]))
    s_whole = (whole_size or input_size) / max(h, w)
    s_tile = min(1.0, input_size / min(h, w))
    extents = [float(e) for e in defect_extents if e is not None and e > 0]
    if extents:
        small = float(np.percentile(extents, 25))
        s_tile = min(1.0, max(s_tile, MIN_DEFECT_SPAN_PX / small))
    plan = _cap_tiles(TilePlan(input_size + 2 * margin, s_tile, DEFAULT_OVERLAP, margin), round(h), round(w),
                      floor=s_whole)
    if plan.scale / s_whole < MIN_RESOLUTION_GAIN:
        return None
    # Floored to 4 decimals for a readable model JSON; never rounded up past a tile border.
    return TilePlan(plan.tile, math.floor(plan.scale * 1e4) / 1e4, DEFAULT_OVERLAP, margin)
