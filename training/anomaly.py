"""Good-only ("cold start") anomaly model: a PatchCore-like memory bank of OK patches.

For projects that have OK parts but no (or too few) defect labels. Nothing is trained:
the pretrained EfficientNet-Lite0 backbone is frozen, every 16x16 patch of an OK part
becomes a feature vector, a bounded, coreset-subsampled memory bank of those vectors is
kept, and a part's patch is as anomalous as it is far from its nearest OK neighbour.

The exported graph has exactly the supervised model's interface (so the line's runtime
does not change): input ``image`` uint8 [N, S, S, 3] BGR, the letterboxed part
(normalisation inside the graph, as in `InspectionNet.normalise`); outputs ``score`` [N],
``class_probs`` [N, 2] = [1 - score, score] and ``heatmap`` [N, S/16, S/16]. The
nearest-neighbour search lives inside the graph (d^2 = |f|^2 - 2 f.B^T + |B|^2, ReduceMin,
sqrt of the clamped value). Calibration is in the graph too:
``heatmap = sigmoid((heat_distance - mu) / sigma)`` and ``score = sigmoid((part_distance -
mu) / sigma)``, the part distance being the mean of its three largest patch distances and
each patch's heat distance the largest patch distance in its 3 x 3 neighbourhood, with
*mu* and *sigma* the median and a robust spread of the part distances of OK parts that
the bank did not contain (K-fold out-of-fold), so 0.5 means "as unusual as a typical
unseen OK part" and every patch of the heatmap is on the same scale as the score.
A model of whole parts (`AnomalyConfig.part_statistics`) adds a part-wide term to the
part's logit: the Mahalanobis distance of the part's feature statistics from the OK
parts' (training/part_statistics.py), z-scored on out-of-fold OK parts like the patch
term, the sum calibrated once more the same way. Its heatmap stays the patch evidence.

Patch features (the default recipe, chosen from measurements on the magnetic-tile data,
see benchmarks/anomaly_probe.py): the outputs of block 4 (stride 8, 40 channels), block
10 (stride 16, 112 channels) and block 14 (stride 32, 192 channels), each averaged over
its 3x3 neighbourhood; the stride-8 map average-pooled 2x2 and the stride-32 map
bilinearly upsampled to the stride-16 grid: 344 values per patch. The input side must
be a multiple of 32.

API::

    cfg = AnomalyConfig(input_size=288)
    fit = fit_anomaly(ok_images, cfg, on_event=print, should_stop=lambda: False)
    fit.net              # torch module, eval mode: uint8 NHWC -> .score/.class_probs/.heatmap
    fit.oof_ok_scores    # out-of-fold 0..1 scores of every training OK image (for the threshold)
    fit.bank_entries, fit.bank_bytes, fit.elapsed_s, fit.mu, fit.sigma
    anomaly_scores(fit.net, images)                       # PyTorch scores, numpy [N]
    export_anomaly(fit.net, path, 288, metadata, images)  # parity-checked, atomic; returns the diff

Memory is bounded whatever the number of images: features are extracted once per image
in small batches; a fixed-size candidate pool (reservoir sample of patches,
`AnomalyConfig.pool_rows`) feeds the greedy coreset; held-out features for the
out-of-fold scores are kept only up to `OOF_STORE_CAP_BYTES`, beyond which the
remaining images are re-extracted when their fold is scored. The bank never exceeds
`bank_cap_bytes` nor `max_bank_entries`.

`on_event` receives {"event": "progress", "phase": "features" | "coreset" | "oof",
"step": i, "steps": n, "eta_s": x}; `should_stop()` is checked every batch and every
few hundred coreset steps and raises `training.loop.Cancelled`.
"""

from __future__ import annotations

import io
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.core.operating_point import sigmoid
from training.export import export_checked
from training.loop import Cancelled
from training.network import HEATMAP_STRIDE, PIXEL_MEAN, PIXEL_STD, EfficientNetLite0, load_pretrained_backbone
from training.part_statistics import PartGaussian, fit_gaussian, out_of_fold_distances, part_statistics

EventSink = Callable[[dict], None]

# The memory bank is a constant of the exported graph: its size bounds the model file, the
# runtime memory and the time a part takes. 16384 entries x 345 floats = 22.6 MB, so with
# the default features MAX_BANK_ENTRIES binds first.
BANK_CAP_BYTES = 64 * 2**20
# At 288 px (324 patches) one part costs about 324 x entries x 344 multiply-adds on top of
# the backbone; 16384 entries keep it a few tens of ms on one ONNX Runtime thread
# (benchmarks/anomaly_probe.py reports the figure).
MAX_BANK_ENTRIES = 16384
# Candidate patches kept for the coreset (reservoir sample over all OK patches).
POOL_ROWS = 131072
# Held-out features kept between extraction and out-of-fold scoring (float32).
OOF_STORE_CAP_BYTES = 512 * 2**20
PROJECTION_DIM = 32  # random projection for the greedy coreset's distances
EXTRACT_BATCH = 8  # ONNX Runtime gains from small batches on a CPU
# Fewest OK parts each fold's Gaussian of the part-wide term is fitted on (`part_statistics`).
MIN_GAUSSIAN_PARTS = 10


@dataclass
class AnomalyConfig:
    input_size: int = 224
    folds: int = 4
    seed: int = 0
    bank_cap_bytes: int = BANK_CAP_BYTES
    max_bank_entries: int = MAX_BANK_ENTRIES
    pool_rows: int = POOL_ROWS
    # Bank entries = coreset_ratio x all OK patches seen, within the caps above.
    coreset_ratio: float = 0.1
    layers: tuple[int, ...] = (4, 10, 14)  # backbone blocks whose outputs make a patch feature
    neighbourhood: int = 3  # local average (k x k) on every feature map before pooling
    # Part distance from patch distances: "max", or "topK", the mean of the K largest.
    # One patch's distance is noisy; the mean of the three most unusual patches is less so
    # and still counts a defect that covers three 16-px patches in full (on magnetic tile,
    # test catch at 1 % false reject rose from 48 % to 57 % with a bank of 533 OK parts).
    pool: str = "top3"
    # Patches at the grid's edge left out of the part distance and the bank, and zeroed in
    # the heatmap (`TilePlan.redundant_ring`): set for tiles whose margin and overlap put
    # every part pixel in some tile's interior. There a tile's outer ring only repeats its
    # neighbour's interior, and it looks unusual to the bank (every layer's zero padding):
    # on kolektorsdd 100 of 115 OK test parts had their hottest patch in it, and the same
    # bank scored without it ranked the test parts at AUROC 0.957 instead of 0.924.
    ring: int = 0
    # Add the part-wide term (training/part_statistics.py): the part's mean and spread of
    # patch features against a Gaussian of the OK parts'. For whole (letterboxed) parts;
    # the trainer leaves it off for tiles. On magnetic tile (the trainer's own validation
    # parts against a bank of the training OK parts) it raised AUROC from 0.964 to 0.980;
    # on kolektorsdd's tiles it lowered it (0.946 to 0.928).
    part_statistics: bool = False
    # Each heatmap patch shows the largest patch distance in its k x k neighbourhood (1:
    # its own). A defect the bank sees in one patch then lights the patches it reaches
    # into; the part's score does not change. Chosen on the trainer's own data of both
    # data sets (docs/adr/0007): pixel AUROC and PRO rose with k = 3 on each.
    heatmap_neighbourhood: int = 3
    projection_dim: int = PROJECTION_DIM
    oof_store_cap_bytes: int = OOF_STORE_CAP_BYTES
    batch: int = EXTRACT_BATCH
    # False: only the first fold is scored out-of-fold, for the calibration (mu, sigma),
    # and `oof_ok_scores` holds that fold's images alone. For the anomaly half of a
    # combined model, which is re-scaled on validation OK parts and never places a
    # threshold with out-of-fold scores: on magnetic tile the other folds cost 3.5 s.
    score_every_fold: bool = True
    use_onnxruntime: bool = True  # extract features with ONNX Runtime on the CPU
    # "cuda": features, coreset and out-of-fold distances on the GPU the retrain uses (a
    # GPU server); the bank and the exported graph are the same either way.
    device: str = "cpu"


@dataclass
class AnomalyOutput:
    score: torch.Tensor  # [N] 0..1
    class_probs: torch.Tensor  # [N, 2] = [1 - score, score]
    heatmap: torch.Tensor  # [N, h, w] 0..1 per 16-px patch
    patch_distance: torch.Tensor  # [N, h, w] raw nearest-neighbour distance
    heat_distance: torch.Tensor  # [N, h, w] the distance the heatmap shows (`AnomalyNet.heat_distance`)


@dataclass
class AnomalyFit:
    net: "AnomalyNet"
    # Calibrated 0..1 scores of the training OK images, each from a bank without that
    # image: [n_ok] in image order, or the scored fold's only (`oof_indices`).
    oof_ok_scores: np.ndarray
    bank_entries: int
    bank_bytes: int
    elapsed_s: float
    mu: float
    sigma: float
    oof_distances: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    timings: dict = field(default_factory=dict)
    # Entries of each fold's coreset, in bank order (see `with_bank_prefix`).
    fold_entries: list[int] = field(default_factory=list)
    oof_indices: np.ndarray | None = None  # the images oof_ok_scores belong to; None: all
    # The part-wide term's covariance shrinkage (Ledoit-Wolf); None: the model has no such term.
    part_shrinkage: float | None = None


class PatchEmbedder(nn.Module):
    """uint8 NHWC BGR -> patch features [N, D, S/16, S/16] from the frozen backbone."""

    def __init__(self, backbone: EfficientNetLite0, layers: tuple[int, ...], neighbourhood: int):
        super().__init__()
        self.layers = tuple(sorted(layers))
        self.stem_conv, self.stem_bn = backbone._conv_stem, backbone._bn0
        self.blocks = nn.ModuleList(backbone._blocks[: self.layers[-1] + 1])
        self.neighbourhood = neighbourhood
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN))
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD))
        self.requires_grad_(False)
        self.dim = sum(b._bn2.num_features for i, b in enumerate(self.blocks) if i in self.layers)

    def normalise(self, images_u8: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC BGR -> float NCHW RGB, exactly as `InspectionNet.normalise`."""
        x = images_u8.float().flip(-1).permute(0, 3, 1, 2)
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, images_u8: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem_bn(self.stem_conv(self.normalise(images_u8))))
        maps = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.layers:
                maps.append(x)
        return self.pool_maps(maps, images_u8.shape[1] // HEATMAP_STRIDE)

    def pool_maps(self, maps: list[torch.Tensor], grid: int) -> torch.Tensor:
        """The tapped block outputs (in `layers` order) -> patch features on the *grid*;
        separate so a combined model can tap a backbone pass it shares (training/combined.py)."""
        return torch.cat([onto_grid(f, self.neighbourhood, grid) for f in maps], 1)


def onto_grid(feature_map: torch.Tensor, neighbourhood: int, grid: int) -> torch.Tensor:
    """One tapped block's output [N, C, s, s] -> [N, C, grid, grid]: each position the
    local average of its *neighbourhood* x *neighbourhood* (1: none), then average-pooled
    down or bilinearly resized up onto the patch grid."""
    f, k = feature_map, neighbourhood
    if k > 1:
        f = F.avg_pool2d(f, k, 1, k // 2, count_include_pad=False)
    side = f.shape[-1]
    if side > grid:
        f = F.avg_pool2d(f, side // grid)
    elif side < grid:
        f = F.interpolate(f, size=(grid, grid), mode="bilinear", align_corners=False)
    return f


class AnomalyNet(nn.Module):
    """Patch features, nearest OK neighbour in the bank, calibrated: the exported model."""

    def __init__(self, embedder: PatchEmbedder, bank: torch.Tensor, center: torch.Tensor,
                 mu: float, sigma: float, pool: str = "top3", ring: int = 0,
                 part_gaussian: PartGaussian | None = None, heatmap_neighbourhood: int = 1):
        super().__init__()
        self.embedder = embedder
        # Part-wide evidence beside the patches' (training/part_statistics.py); None: patches only.
        self.part_gaussian = part_gaussian
        # Features are centred on the bank's mean: smaller |f|^2 means less cancellation
        # in |f|^2 - 2 f.B + |B|^2, in float32, in both PyTorch and ONNX Runtime.
        bank = bank.float() - center.float()
        self.register_buffer("center", center.float().reshape(1, 1, -1))
        self.register_buffer("bank_t", bank.t().contiguous())  # [D, M]
        self.register_buffer("bank_sq", (bank * bank).sum(1).reshape(1, 1, -1))  # [1, 1, M]
        self.register_buffer("mu", torch.tensor(float(mu)))
        self.register_buffer("sigma", torch.tensor(float(sigma)))
        self.pool = pool
        self.ring = int(ring)
        self.heatmap_neighbourhood = int(heatmap_neighbourhood)
        if self.heatmap_neighbourhood < 1 or self.heatmap_neighbourhood % 2 == 0:
            raise ValueError(f"heatmap_neighbourhood must be odd and >= 1, not {heatmap_neighbourhood}")
        self.eval()

    @property
    def bank_entries(self) -> int:
        return int(self.bank_t.shape[1])

    @property
    def bank_bytes(self) -> int:
        return int((self.bank_t.numel() + self.bank_sq.numel()) * 4)  # float32

    def patch_distance(self, emb: torch.Tensor) -> torch.Tensor:
        """Patch features [N, D, h, w] -> distance to the nearest bank entry [N, h*w]."""
        f = emb.flatten(2).transpose(1, 2) - self.center  # [N, P, D]
        cross = torch.matmul(f, self.bank_t)  # [N, P, M]
        d2 = torch.amin(self.bank_sq - 2.0 * cross, dim=2) + (f * f).sum(2)  # [N, P]
        return torch.sqrt(torch.clamp(d2, min=0.0))

    def heat_distance(self, dist: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """[N, h*w] patch distances -> [N, h, w]: each patch's largest distance in its
        `heatmap_neighbourhood` among the patches the model scores. The outer *ring*
        neither gives nor takes (its own distance stays): the model's heatmap zeroes it,
        and a neighbour's unusual padded edge must not light the patches inside."""
        d = dist.reshape(-1, h, w)
        k = self.heatmap_neighbourhood
        if k == 1:
            return d
        r = self.ring
        inner = d[:, r:h - r, r:w - r] if r else d
        pooled = F.max_pool2d(inner[:, None], k, 1, k // 2)[:, 0]
        if not r:
            return pooled
        return F.pad(pooled, (r, r, r, r)) + (d - F.pad(inner, (r, r, r, r)))

    def forward(self, images_u8: torch.Tensor) -> AnomalyOutput:
        emb = self.embedder(images_u8)  # [N, D, h, w]
        n, d, h, w = emb.shape
        dist = self.patch_distance(emb)
        heat_d = self.heat_distance(dist, h, w)
        heat = torch.sigmoid((heat_d - self.mu) / self.sigma)
        if self.ring:
            r = self.ring
            heat = F.pad(heat[:, r:h - r, r:w - r], (r, r, r, r))
        score = torch.sigmoid(self.part_logit(emb, dist, images_u8))
        class_probs = torch.stack([1.0 - score, score], dim=1)
        return AnomalyOutput(score, class_probs, heat, dist.reshape(n, h, w), heat_d)

    def part_logit(self, emb: torch.Tensor, dist: torch.Tensor, images_u8: torch.Tensor) -> torch.Tensor:
        """The part's calibrated logit: its pooled patch distances, plus the part-wide term
        where the model has one."""
        patch_z = (pool_distances(dist, self.pool, self.ring) - self.mu) / self.sigma
        if self.part_gaussian is None:
            return patch_z
        return self.part_gaussian(patch_z, emb.flatten(2).transpose(1, 2), images_u8)


# -- feature extraction ----------------------------------------------------------------


def _feature_runner(embedder: PatchEmbedder, size: int, use_ort: bool, device: str = "cpu"):
    """images -> float32 numpy [n, h*w, D]. ONNX Runtime on the CPU when it works, PyTorch
    on *device* when that is a GPU."""
    if use_ort and device == "cpu":
        try:
            import onnxruntime as ort

            buf = io.BytesIO()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(embedder.eval(), (torch.zeros(1, size, size, 3, dtype=torch.uint8),), buf,
                                  dynamo=False, opset_version=17, input_names=["image"], output_names=["f"],
                                  dynamic_axes={"image": {0: "n"}, "f": {0: "n"}})
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads() or os.cpu_count() or 1
            session = ort.InferenceSession(buf.getvalue(), options, providers=["CPUExecutionProvider"])

            def run_ort(images: list[np.ndarray]) -> np.ndarray:
                (f,) = session.run(None, {"image": np.ascontiguousarray(np.stack(images))})
                return f.reshape(f.shape[0], f.shape[1], -1).transpose(0, 2, 1)

            return run_ort
        except Exception:  # any exporter or runtime trouble: PyTorch gives the same numbers
            pass

    on_device = embedder.to(device).eval()

    @torch.no_grad()
    def run_torch(images: list[np.ndarray]) -> np.ndarray:
        f = on_device(torch.from_numpy(np.stack(images)).to(device))
        return f.flatten(2).transpose(1, 2).cpu().numpy()

    return run_torch


def _check_images(images: list[np.ndarray], size: int) -> None:
    for img in images:
        if img.shape != (size, size, 3) or img.dtype != np.uint8:
            raise ValueError(f"expected letterboxed uint8 {size}x{size}x3 BGR parts, got {img.shape} {img.dtype}")
    if size % 32:
        raise ValueError(f"input_size must be a multiple of 32, got {size}")


class _Reservoir:
    """A fixed number of rows sampled uniformly from a stream (Algorithm R), with owners."""

    def __init__(self, rows: int, dim: int, rng: np.random.Generator):
        self.rows = np.zeros((rows, dim), np.float32)
        self.owner = np.full(rows, -1, np.int64)
        self.cap, self.seen, self.rng = rows, 0, rng

    def add(self, feats: np.ndarray, owner: np.ndarray) -> None:
        n = feats.shape[0]
        fill = max(0, min(n, self.cap - self.seen))
        if fill:
            self.rows[self.seen:self.seen + fill] = feats[:fill]
            self.owner[self.seen:self.seen + fill] = owner[:fill]
        if fill < n:
            t = self.seen + np.arange(fill, n)  # 0-based stream index of each remaining row
            j = (self.rng.random(n - fill) * (t + 1)).astype(np.int64)
            keep = j < self.cap
            # Later rows win on a repeated slot, exactly as the sequential algorithm.
            self.rows[j[keep]] = feats[fill:][keep]
            self.owner[j[keep]] = owner[fill:][keep]
        self.seen += n

    def view(self) -> tuple[np.ndarray, np.ndarray]:
        n = min(self.seen, self.cap)
        return self.rows[:n], self.owner[:n]


# -- coreset ---------------------------------------------------------------------------


def greedy_coreset(features: np.ndarray, m: int, projection_dim: int = PROJECTION_DIM, seed: int = 0,
                   should_stop: Callable[[], bool] = lambda: False,
                   on_step: Callable[[int, int], None] = lambda i, n: None, device: str = "cpu") -> np.ndarray:
    """Indices of *m* rows chosen by greedy k-center (farthest point) selection.

    Distances are computed on a random Gaussian projection to *projection_dim* dims (the
    Johnson-Lindenstrauss trick PatchCore uses): fast on a CPU and close enough to the
    full-dimensional choice.
    """
    n = features.shape[0]
    if m >= n:
        on_step(n, n)
        return np.arange(n)
    gen = torch.Generator().manual_seed(seed)
    x = torch.from_numpy(np.ascontiguousarray(features, np.float32))
    if x.shape[1] > projection_dim:
        # Drawn on the CPU whatever the device: the same seed picks the same coreset.
        proj = torch.randn(x.shape[1], projection_dim, generator=gen) / math.sqrt(projection_dim)
        x = x.to(device) @ proj.to(device)
    else:
        x = x.to(device)
    sq = (x * x).sum(1)
    min_d = torch.full((n,), float("inf"), device=device)
    chosen = np.empty(m, np.int64)
    idx = int(torch.randint(n, (1,), generator=gen))
    d = torch.empty(n, device=device)
    with torch.no_grad():
        for i in range(m):
            chosen[i] = idx
            c = x[idx]
            torch.mv(x, c, out=d)
            d.mul_(-2.0).add_(sq).add_(sq[idx])
            torch.minimum(min_d, d, out=min_d)
            idx = int(torch.argmax(min_d))
            if i % 256 == 255:
                if should_stop():
                    raise Cancelled()
                on_step(i + 1, m)
    if m % 256:
        on_step(m, m)
    return chosen


def _split_quota(total: int, sizes: list[int]) -> list[int]:
    """*total* entries shared in proportion to *sizes* (each at least 1, at most its size)."""
    all_rows = max(1, sum(sizes))
    quotas = [min(s, max(1, int(round(total * s / all_rows)))) if s else 0 for s in sizes]
    while sum(quotas) > total and max(quotas) > 1:
        quotas[int(np.argmax(quotas))] -= 1
    return quotas


def _bank_size(cfg: AnomalyConfig, patches_seen: int, pool: int, dim: int) -> int:
    by_bytes = cfg.bank_cap_bytes // (4 * (dim + 1))  # bank rows plus their |B|^2
    wanted = max(1, int(math.ceil(cfg.coreset_ratio * patches_seen)))
    return int(max(1, min(wanted, cfg.max_bank_entries, by_bytes, pool)))


@torch.no_grad()
def _nn_distances(feats: np.ndarray, bank: np.ndarray, center: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Nearest-bank-row distance of every row of *feats* (float32, same formula as the graph)."""
    b = torch.from_numpy(bank.astype(np.float32) - center).to(device)
    bsq = (b * b).sum(1)
    f = torch.from_numpy(feats.astype(np.float32) - center).to(device)
    out = torch.empty(f.shape[0], device=device)
    for i in range(0, f.shape[0], 4096):
        chunk = f[i:i + 4096]
        d2 = torch.amin(bsq[None] - 2.0 * chunk @ b.t(), dim=1) + (chunk * chunk).sum(1)
        out[i:i + 4096] = torch.sqrt(torch.clamp(d2, min=0.0))
    return out.cpu().numpy()


def _top_k(pool: str) -> int:
    """"max" -> 1, "top3" -> 3."""
    if pool == "max":
        return 1
    if pool.startswith("top") and pool[3:].isdigit() and int(pool[3:]) >= 1:
        return int(pool[3:])
    raise ValueError(f"unknown pool {pool!r}")


def pool_distances(patch_d: torch.Tensor, pool: str, ring: int = 0) -> torch.Tensor:
    """[N, P] patch distances of a square grid -> [N] part distances (the exported
    graph's pooling), the outer *ring* patches of the grid left out."""
    if ring:
        g = math.isqrt(patch_d.shape[1])
        patch_d = patch_d.reshape(-1, g, g)[:, ring:g - ring, ring:g - ring].reshape(patch_d.shape[0], -1)
    k = min(_top_k(pool), patch_d.shape[1])
    if k == 1:
        return patch_d.amax(dim=1)
    return torch.topk(patch_d, k, dim=1).values.mean(dim=1)


def _part_distance(patch_d: np.ndarray, pool: str, ring: int = 0) -> np.ndarray:
    """[n, P] patch distances -> [n] part distances, as `pool_distances`."""
    return pool_distances(torch.from_numpy(np.asarray(patch_d, np.float32)), pool, ring).numpy().astype(np.float64)


def calibration(ok_distances: np.ndarray) -> tuple[float, float]:
    """(mu, sigma) of the logistic from held-out OK part distances: median and a robust spread."""
    d = np.asarray(ok_distances, np.float64)
    mu = float(np.median(d))
    mad = 1.4826 * float(np.median(np.abs(d - mu)))
    iqr = float(np.subtract(*np.percentile(d, [75, 25]))) / 1.349
    sigma = max(mad, iqr, 1e-3 * max(abs(mu), 1e-6), 1e-6)
    return mu, sigma


# -- fitting ---------------------------------------------------------------------------


def fit_anomaly(ok_images: list[np.ndarray], cfg: AnomalyConfig, on_event: EventSink = lambda e: None,
                should_stop: Callable[[], bool] = lambda: False, groups: list | None = None) -> AnomalyFit:
    """Build the bank from OK parts, with out-of-fold OK scores for the threshold.

    *groups* names the part each image was cut from (tiles of one part): a part's tiles
    share a fold, so no held-out tile is scored against its own part's overlapping tiles.
    """
    t_start = time.monotonic()
    size = cfg.input_size
    n = len(ok_images)
    if n < 2:
        raise ValueError("a good-only model needs at least 2 OK images")
    _check_images(ok_images, size)
    rng = np.random.default_rng(cfg.seed)
    names = list(range(n)) if groups is None else list(groups)
    if len(names) != n:
        raise ValueError("groups must name one part per image")
    unique = list(dict.fromkeys(names))
    if len(unique) < 2:
        raise ValueError("a good-only model needs at least 2 OK parts")
    k = max(2, min(cfg.folds, len(unique)))
    fold_of_group = dict(zip((unique[i] for i in rng.permutation(len(unique))), np.arange(len(unique)) % k))
    fold_of = np.array([fold_of_group[g] for g in names], np.int64)

    embedder = PatchEmbedder(load_pretrained_backbone(), cfg.layers, cfg.neighbourhood).eval()
    dim = embedder.dim
    grid = size // HEATMAP_STRIDE
    patches = grid * grid
    # The patches that can count (`AnomalyConfig.ring`): only these enter the bank.
    judged = np.arange(patches).reshape(grid, grid)[cfg.ring:grid - cfg.ring, cfg.ring:grid - cfg.ring].ravel()
    run = _feature_runner(embedder, size, cfg.use_onnxruntime, cfg.device)

    # 1. Features, once per image: into the bounded pool, and kept for the held-out scoring
    #    while the store is under its cap.
    pool = _Reservoir(cfg.pool_rows, dim, np.random.default_rng(cfg.seed + 1))
    # The part-wide term needs enough OK parts in every fold's fit for a covariance worth
    # the name; with fewer the model is the patches alone.
    with_stats = cfg.part_statistics and (len(unique) - np.bincount(list(fold_of_group.values()), minlength=k).max()
                                        >= MIN_GAUSSIAN_PARTS)
    stats = np.zeros((n, 2 * dim), np.float32) if with_stats else None
    store: dict[int, np.ndarray] = {}
    store_cap = cfg.oof_store_cap_bytes // max(1, patches * dim * 4)
    t0 = time.monotonic()
    for i in range(0, n, cfg.batch):
        if should_stop():
            raise Cancelled()
        f = run(ok_images[i:i + cfg.batch])  # [b, P, D]
        if stats is not None:
            stats[i:i + f.shape[0]] = part_statistics(
                torch.from_numpy(np.ascontiguousarray(f, np.float32)),
                torch.from_numpy(np.stack(ok_images[i:i + cfg.batch]))).numpy()
        for j in range(f.shape[0]):
            if len(store) < store_cap:
                store[i + j] = np.array(f[j], np.float32)
        owner = np.repeat(np.arange(i, i + f.shape[0]), judged.size)
        pool.add(f[:, judged].reshape(-1, dim), owner)
        done = min(i + cfg.batch, n)
        rate = (time.monotonic() - t0) / done
        on_event({"event": "progress", "phase": "features", "step": done, "steps": n,
                  "eta_s": round(rate * (n - done), 1)})
    t_features = time.monotonic() - t0
    rows, owners = pool.view()

    # 2. A greedy coreset of each fold's own patches. The bank for scoring fold f held out
    #    is the union of the other folds' coresets, and the final bank is the union of all:
    #    every held-out score comes from a bank built exactly like the final one, and the
    #    coreset work is K small problems instead of K + 1 large ones.
    t1 = time.monotonic()
    m_total = _bank_size(cfg, n * judged.size, rows.shape[0], dim)
    fold_rows = [np.flatnonzero(fold_of[owners] == f) for f in range(k)]
    quotas = _split_quota(m_total, [r.size for r in fold_rows])
    parts = []
    for f in range(k):
        def step(i, total, f=f):
            done = f + i / total
            eta = (time.monotonic() - t1) / done * (k - done) if done else None
            on_event({"event": "progress", "phase": "coreset", "step": int(done * 1000), "steps": k * 1000,
                      "eta_s": None if eta is None else round(eta, 1)})

        cand = rows[fold_rows[f]]
        parts.append(cand[greedy_coreset(cand, quotas[f], cfg.projection_dim, cfg.seed + f, should_stop, step,
                                        cfg.device)])
    t_coreset = time.monotonic() - t1

    # 3. Out-of-fold part distances of every OK image.
    t2 = time.monotonic()
    oof_d = np.full(n, np.nan)
    for fold in range(k if cfg.score_every_fold else 1):
        held = np.flatnonzero(fold_of == fold)
        bank = np.concatenate([parts[f] for f in range(k) if f != fold])
        center = bank.mean(0)
        for i in range(0, held.size, cfg.batch):
            if should_stop():
                raise Cancelled()
            idx = held[i:i + cfg.batch]
            missing = [int(j) for j in idx if int(j) not in store]
            fresh = dict(zip(missing, run([ok_images[j] for j in missing]))) if missing else {}
            feats = np.stack([store[int(j)] if int(j) in store else fresh[int(j)] for j in idx]).astype(np.float32)
            d = _nn_distances(feats.reshape(-1, dim), bank, center, cfg.device).reshape(len(idx), patches)
            oof_d[idx] = _part_distance(d, cfg.pool, cfg.ring)
        on_event({"event": "progress", "phase": "oof", "step": fold + 1, "steps": k, "eta_s": None})
    store.clear()
    bank = np.concatenate(parts)
    t_oof = time.monotonic() - t2

    scored = None if cfg.score_every_fold else np.flatnonzero(fold_of == 0)
    if scored is not None:
        oof_d = oof_d[scored]
    mu, sigma = calibration(oof_d)
    oof_logit = (oof_d - mu) / sigma
    gaussian, shrinkage = None, None
    if stats is not None:
        # The part-wide term, out of fold like the patches': its own z, then the sum's.
        oof_g = out_of_fold_distances(stats, fold_of, k)
        if scored is not None:
            oof_g = oof_g[scored]
        mu_g, sigma_g = calibration(oof_g)
        both = oof_logit + (oof_g - mu_g) / sigma_g
        sum_mu, sum_sigma = calibration(both)
        mean, whiten, shrinkage = fit_gaussian(stats)
        gaussian = PartGaussian(mean, whiten, mu_g, sigma_g, sum_mu, sum_sigma)
        oof_logit = (both - sum_mu) / sum_sigma
    center = torch.from_numpy(bank.mean(0))
    net = AnomalyNet(embedder.cpu(), torch.from_numpy(bank), center, mu, sigma, cfg.pool, cfg.ring, gaussian,
                     cfg.heatmap_neighbourhood).eval()
    oof_scores = sigmoid(oof_logit).astype(np.float32)
    return AnomalyFit(net=net, oof_ok_scores=oof_scores, bank_entries=net.bank_entries, bank_bytes=net.bank_bytes,
                      elapsed_s=time.monotonic() - t_start, mu=mu, sigma=sigma, oof_distances=oof_d,
                      timings={"features_s": t_features, "coreset_s": t_coreset, "oof_s": t_oof},
                      fold_entries=[len(p) for p in parts], oof_indices=scored, part_shrinkage=shrinkage)


def with_bank_prefix(net: AnomalyNet, fold_entries: list[int], fraction: float) -> AnomalyNet:
    """The same model searching a smaller bank: the first *fraction* of each fold's coreset.

    The greedy k-center selection picks in order, so the first m picks are the coreset it
    would have chosen for m entries: no refit. The search cost per part falls with the
    bank (it is most of a combined model's time, benchmarks/results/latency.md). The
    calibration (mu, sigma) stays the full bank's; a combined model re-scales the
    anomaly logit on its own validation OK parts anyway.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    if sum(fold_entries) != net.bank_entries:
        raise ValueError("fold_entries must add up to the bank's entries")
    rows = net.bank_t.t() + net.center.reshape(1, -1)
    idx, start = [], 0
    for n in fold_entries:
        idx.extend(range(start, start + max(1, math.ceil(n * fraction))))
        start += n
    return AnomalyNet(net.embedder, rows[idx], net.center.reshape(-1), float(net.mu), float(net.sigma),
                      net.pool, net.ring, net.part_gaussian, net.heatmap_neighbourhood).eval()


@torch.no_grad()
def anomaly_outputs(net: AnomalyNet, images: list[np.ndarray], batch: int = 8) -> AnomalyOutput:
    net.eval()
    outs = [net(torch.from_numpy(np.stack(images[i:i + batch]))) for i in range(0, len(images), batch)]
    return AnomalyOutput(*(torch.cat([getattr(o, name) for o in outs]) for name in
                           ("score", "class_probs", "heatmap", "patch_distance", "heat_distance")))


def anomaly_scores(net: AnomalyNet, images: list[np.ndarray], batch: int = 8) -> np.ndarray:
    """PyTorch part scores (0..1), numpy [N]."""
    return anomaly_outputs(net, images, batch).score.numpy()


def export_anomaly(net: AnomalyNet, path: Path | str, input_size: int, metadata: dict,
                   parity_images: list[np.ndarray]) -> float:
    """Write the ONNX model to *path* atomically after the PyTorch/ONNX Runtime parity check.

    Raises `training.export.ExportParityError` (and writes nothing) when any of the three
    outputs differs by more than `training.export.PARITY_TOLERANCE`. Returns the difference.
    """
    return export_checked(net.cpu().eval(), Path(path), input_size, metadata, list(parity_images))
