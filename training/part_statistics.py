"""Part-wide evidence for the good-only model: how unusual the part is as a whole.

The memory bank (training/anomaly.py) asks of every 16-px patch "have I seen an OK
patch like this?". A defect that changes the whole surface a little (an uneven
finish, a shade of discolouration, a coarser grain) leaves every patch close to
*some* OK patch and slips through. This module models the part as a whole: the mean
and the spread of its patch features over the part (letterbox padding left out), a
single Gaussian fitted to those of the OK parts, and the Mahalanobis distance from it.

The covariance is shrunk towards a scaled identity by the Ledoit-Wolf estimate: a
project has a few hundred OK parts and the statistics have 2 x 344 dimensions, so the
sample covariance is singular, and how far to shrink it follows from the parts
themselves (few parts: close to a plain Euclidean distance).

Only whole parts (letterboxed) carry it. A tile is a piece of the part, and a tiled
model's defects are small by construction (tiling is chosen for small defects on large
parts), so tile-wide statistics only add noise: measured on kolektorsdd's tiles, adding
them lowered the good-only part AUROC (docs/adr/0007).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.core.preprocess import PAD_VALUE
from training.network import HEATMAP_STRIDE

# A patch is padding when at least this share of its pixels is exactly the letterbox grey.
PADDING_SHARE = 0.5


def part_statistics(features: torch.Tensor, images_u8: torch.Tensor) -> torch.Tensor:
    """Patch features [N, P, D] of letterboxed parts [N, S, S, 3] -> [N, 2D]: the mean and
    the standard deviation of each feature over the part's patches (padding left out;
    a part that is all padding-grey uses every patch). One definition for fitting and
    for the exported graph."""
    pad = (images_u8 == PAD_VALUE).to(torch.float32).amin(dim=-1)  # [N, S, S]: 1 where all channels are grey
    share = F.avg_pool2d(pad[:, None], HEATMAP_STRIDE).flatten(1)  # [N, P]
    weight = (share < PADDING_SHARE).to(torch.float32)
    count = weight.sum(dim=1, keepdim=True)
    weight = torch.where(count > 0, weight, torch.ones_like(weight))
    weight = weight / weight.sum(dim=1, keepdim=True)
    mean = torch.einsum("np,npd->nd", weight, features)
    var = torch.einsum("np,npd->nd", weight, (features - mean[:, None, :]) ** 2)
    return torch.cat([mean, torch.sqrt(torch.clamp(var, min=0.0))], dim=1)


def ledoit_wolf_shrinkage(x: np.ndarray) -> float:
    """The Ledoit-Wolf (2004) weight of the scaled identity in the shrunk covariance of
    the rows of *x* (0 = sample covariance, 1 = identity x mean variance)."""
    n, d = x.shape
    if n < 2:
        return 1.0
    xc = x - x.mean(0)
    s = xc.T @ xc / n
    m = np.trace(s) / d
    delta = float(((s - m * np.eye(d)) ** 2).sum())
    if delta <= 0:
        return 1.0
    # sum over rows of |x x^T - S|_F^2, without forming the d x d outer products.
    sq = (xc * xc).sum(1)
    beta = float((sq ** 2).sum() - 2.0 * ((xc @ s) * xc).sum() + n * (s * s).sum()) / n ** 2
    return float(min(1.0, max(0.0, beta / delta)))


def fit_gaussian(stats: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(mean, whitening matrix W, shrinkage) of the OK parts' statistics [n, k]: the
    Mahalanobis distance of g is |(g - mean) W|."""
    x = np.asarray(stats, np.float64)
    mean = x.mean(0)
    shrink = ledoit_wolf_shrinkage(x)
    xc = x - mean
    cov = xc.T @ xc / max(1, x.shape[0])
    scale = max(float(np.trace(cov)) / x.shape[1], 1e-12)
    cov = (1.0 - shrink) * cov + shrink * scale * np.eye(x.shape[1])
    eigval, eigvec = np.linalg.eigh(cov)
    eigval = np.maximum(eigval, 1e-6 * scale)
    whiten = (eigvec / np.sqrt(eigval)) @ eigvec.T
    return mean.astype(np.float32), whiten.astype(np.float32), shrink


def mahalanobis(stats: np.ndarray, mean: np.ndarray, whiten: np.ndarray) -> np.ndarray:
    t = (np.asarray(stats, np.float64) - mean) @ whiten.astype(np.float64)
    return np.sqrt((t * t).sum(1))


def out_of_fold_distances(stats: np.ndarray, fold_of: np.ndarray, folds: int) -> np.ndarray:
    """Each part's distance from the Gaussian of the other folds' parts."""
    out = np.full(len(stats), np.nan)
    for f in range(folds):
        held = fold_of == f
        if held.any() and (~held).any():
            mean, whiten, _ = fit_gaussian(stats[~held])
            out[held] = mahalanobis(stats[held], mean, whiten)
    return out


class PartGaussian(nn.Module):
    """The exported part-wide term: statistics -> Mahalanobis distance -> z on the OK scale,
    added to the patch evidence's z and the sum calibrated again on held-out OK parts."""

    def __init__(self, mean: np.ndarray, whiten: np.ndarray, mu: float, sigma: float,
                 sum_mu: float, sum_sigma: float):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean, np.float32)))
        self.register_buffer("whiten", torch.as_tensor(np.asarray(whiten, np.float32)))
        self.register_buffer("calibration", torch.tensor([mu, sigma, sum_mu, sum_sigma], dtype=torch.float32))

    @classmethod
    def from_state_dict(cls, sd: dict, prefix: str = "part_gaussian.") -> "PartGaussian | None":
        if prefix + "whiten" not in sd:
            return None
        c = sd[prefix + "calibration"].tolist()
        return cls(sd[prefix + "mean"].numpy(), sd[prefix + "whiten"].numpy(), *c)

    def distance(self, features: torch.Tensor, images_u8: torch.Tensor) -> torch.Tensor:
        t = (part_statistics(features, images_u8) - self.mean) @ self.whiten
        return torch.sqrt((t * t).sum(dim=1))

    def forward(self, patch_z: torch.Tensor, features: torch.Tensor, images_u8: torch.Tensor) -> torch.Tensor:
        """[N] z of the pooled patch distance -> [N] calibrated part logit."""
        mu, sigma, sum_mu, sum_sigma = self.calibration.unbind()
        both = patch_z + (self.distance(features, images_u8) - mu) / sigma
        return (both - sum_mu) / sum_sigma
