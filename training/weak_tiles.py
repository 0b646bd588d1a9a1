"""Tiles of a defective part with no painted region: multiple-instance training.

A painted region says which tiles of a large part hold the defect (`training.data.
load_tiled_samples`). Without one the label says only that *some* tile does. Those
tiles are a **bag**: each carries the part's class and a weight, and the weights of a
bag sum to one, so the bag counts as one defective part. In the first epoch the weight
is shared evenly; from then on it goes whole to the tile the network currently scores
highest, as the line judges the part by its highest tile. The other tiles of the bag
teach nothing: they may be clean, and they are not known to be. Patches of a bag carry
no target (`training.data.patch_targets`: a defect without a mask is unknown per patch).

A bag is one part in one augmented view (the cache keeps several views of every tile).
With several training processes a part's tiles may fall to different processes; each
then forms a bag of the tiles it holds.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import torch

from training.data import OK, Sample, part_key


def is_weak(sample: Sample) -> bool:
    """A tile of a defective part that has no painted region (not a whole part)."""
    return sample.verdict != OK and sample.mask is None and part_key(sample.key) != sample.key


def bag_ids(samples: list[Sample], views: list[int] | None = None) -> np.ndarray:
    """Per row, the bag it belongs to (one per part and view), or -1 for an ordinary row."""
    views = views if views is not None else [0] * len(samples)
    ids: dict[tuple[str, int], int] = {}
    out = np.full(len(samples), -1, np.int64)
    for i, (s, view) in enumerate(zip(samples, views)):
        if is_weak(s):
            out[i] = ids.setdefault((part_key(s.key), view), len(ids))
    return out


def even_weights(bags: np.ndarray) -> torch.Tensor:
    """1 for an ordinary row, 1/n for each of a bag's n tiles."""
    weights = np.ones(len(bags), np.float32)
    weak = bags >= 0
    if weak.any():
        sizes = np.bincount(bags[weak])
        weights[weak] = 1.0 / sizes[bags[weak]]
    return torch.from_numpy(weights)


def highest_weights(bags: np.ndarray, scores: np.ndarray) -> torch.Tensor:
    """1 for an ordinary row and for the highest-scoring tile of each bag, 0 for the
    bag's other tiles. *scores* holds a score for every row (ordinary rows ignored)."""
    weights = np.ones(len(bags), np.float32)
    best: dict[int, tuple[float, int]] = {}
    for row in np.flatnonzero(bags >= 0):
        weights[row] = 0.0
        if bags[row] not in best or scores[row] > best[bags[row]][0]:
            best[bags[row]] = (float(scores[row]), row)
    for _, row in best.values():
        weights[row] = 1.0
    return torch.from_numpy(weights)


def part_counts(samples: list[Sample]) -> Counter:
    """How many inputs of each verdict the loss sees, a bag counting once: what the
    class balance (the defect weight, the class weights) is computed from."""
    counts = Counter(s.verdict for s in samples if not is_weak(s))
    counts.update(verdict for _, verdict in {(part_key(s.key), s.verdict) for s in samples if is_weak(s)})
    return counts
