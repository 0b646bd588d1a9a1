"""Which labeled part a held-out OK part looks most like, when that part is labeled defective.

The threshold is placed by the highest-scoring held-out OK parts (app.core.operating_point),
so one defective part labeled OK among them raises it for the whole line. A common way
that happens: the same part imaged twice (another exposure, another station) and labeled
differently. On magnetic tile the top validation OK parts were exactly that: exposures
of tiles whose other exposures are labeled break and blowhole (docs/adr/0006).

Each labeled part is described by the pretrained backbone's stride-16 features (mean
and spread over the part, at a small input: the part's look, not its detail), each
feature standardised over the project's parts, compared by cosine similarity. An OK part
whose most similar other labeled part is a defective one gets that part named beside it:
a hint to compare the two, never a relabel. Nothing here changes a model or a figure.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from training.data import Sample, part_key
from training.loop import prefix_runner
from training.network import STRIDE16_BLOCK, InspectionNet, load_pretrained_backbone

EMBED_SIZE = 128  # magnetic tile's 940 parts: 3 s on 2 cores (ONNX Runtime prefix), 4 s at 160 px


def part_embeddings(samples: Sequence[Sample]) -> tuple[list[str], np.ndarray]:
    """(part keys, unit-length rows): one row per part, its tiles' rows averaged. On the
    CPU whatever trains the model: a few seconds, and no copy of the network on a GPU."""
    net = InspectionNet(1, load_pretrained_backbone()).eval()
    run = prefix_runner(net, STRIDE16_BLOCK + 1, EMBED_SIZE, "cpu")
    rows = []
    for i in range(0, len(samples), run.batch):
        small = [cv2.resize(s.image, (EMBED_SIZE, EMBED_SIZE), interpolation=cv2.INTER_AREA)
                 for s in samples[i:i + run.batch]]
        x, _ = run(small)
        x = x.float()
        rows.append(torch.cat([x.mean((2, 3)), x.std((2, 3))], 1).numpy())
    features = np.concatenate(rows).astype(np.float64)
    keys = [part_key(s.key) for s in samples]
    parts = list(dict.fromkeys(keys))
    index = {k: i for i, k in enumerate(parts)}
    owner = np.array([index[k] for k in keys])
    pooled = np.zeros((len(parts), features.shape[1]))
    np.add.at(pooled, owner, features)
    pooled /= np.bincount(owner, minlength=len(parts))[:, None]
    return parts, unit_rows(pooled)


def unit_rows(features: np.ndarray) -> np.ndarray:
    """Each feature standardised over the parts (so no single channel's scale decides),
    then each row scaled to unit length (cosine similarity is a dot product)."""
    z = (features - features.mean(0)) / (features.std(0) + 1e-6)
    return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def defective_lookalikes(keys: Sequence[str], embeddings: np.ndarray, verdicts: Sequence[str],
                         queries: Sequence[str], ok: str = "ok") -> dict[str, tuple[str, float]]:
    """For each query part: (key, similarity) of the most similar other labeled part,
    kept only when that part is labeled defective (verdict other than *ok*)."""
    index = {k: i for i, k in enumerate(keys)}
    found: dict[str, tuple[str, float]] = {}
    for query in queries:
        i = index.get(query)
        if i is None or len(keys) < 2:
            continue
        similarity = embeddings @ embeddings[i]
        similarity[i] = -np.inf
        j = int(np.argmax(similarity))
        if verdicts[j] != ok:
            found[query] = (keys[j], float(similarity[j]))
    return found


def with_lookalikes(parts: list[dict], samples: Sequence[Sample], labeled: dict[str, tuple[int, str, str]],
                    ok: str = "ok") -> list[dict]:
    """*parts* (app.core.operating_point.highest_ok_parts) with "looks_like" added to
    each whose most similar labeled part is defective: {image_id, filename, verdict,
    similarity}. *samples* are the labeled parts' network inputs (keys: image sha256, tiles
    "#t<i>"), *labeled* maps each sha256 to (image id, filename, verdict as labeled).
    Without a labeled defect there is nothing to find and nothing is computed."""
    if not parts or all(verdict == ok for _, _, verdict in labeled.values()):
        return parts
    by_id = {image_id: sha for sha, (image_id, _, _) in labeled.items()}
    keys, embeddings = part_embeddings([s for s in samples if part_key(s.key) in labeled])
    verdicts = [labeled[k][2] for k in keys]
    found = defective_lookalikes(keys, embeddings, verdicts, [by_id.get(p["image_id"], "") for p in parts], ok)
    out = []
    for part in parts:
        hit = found.get(by_id.get(part["image_id"], ""))
        if hit is not None:
            image_id, filename, verdict = labeled[hit[0]]
            part = {**part, "looks_like": {"image_id": image_id, "filename": filename, "verdict": verdict,
                                           "similarity": round(hit[1], 3)}}
        out.append(part)
    return out
