"""Combined mode: the supervised head and the good-only anomaly score in one model.

A supervised model learns the defects it was shown; the anomaly model flags whatever
is unlike the OK parts, including kinds of defect nobody has labeled yet. With a few
dozen labeled defects the two see different things, so the combined model adds their
evidence: each model's logit is put on a common scale by the OK parts it has never
seen,

    z = (logit - median of held-out OK logits) / (99th percentile - median),

so 0 is a typical OK part and 1 the OK part one in a hundred reaches, and the combined
part logit is z_supervised + z_anomaly. The heatmap is the same sum per 16-px patch (the
anomaly half's as its own heatmap shows it: `AnomalyNet.heat_distance`), so it is on the
score's scale. The stored threshold is then chosen on the exported
combined model's held-out OK scores, like any other model's (docs/adr/0006).

Whether the combination is kept is measured, not assumed: `compare` counts the
validation defects each candidate catches at its own target-false-reject threshold
(set on the validation OK parts) and keeps the combined model only when it catches
more. The sentence saying so goes into the model's mode reason.

When the supervised model was trained with its early blocks frozen (the CPU path,
docs/adr/0005) those blocks still hold the pretrained weights the anomaly model reads
its features from, so the exported graph runs that shared part of the backbone once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from app.core.evaluation import auroc
from app.core.operating_point import logit, operating_point
from training.anomaly import AnomalyNet
from training.network import STRIDE16_BLOCK, InspectionNet, NetOutput

MIN_SCALE = 0.05  # logits; a degenerate OK spread must not blow one model's vote up


@dataclass(frozen=True)
class Reference:
    """Where a model's held-out OK logits sit: the centre and the 1-in-100 spread."""

    median: float
    scale: float

    @classmethod
    def from_ok_scores(cls, ok_scores) -> "Reference":
        logits = logit(np.asarray(ok_scores, np.float64))
        median = float(np.median(logits))
        return cls(median, max(float(np.quantile(logits, 0.99)) - median, MIN_SCALE))

    def z(self, logits):
        return (logits - self.median) / self.scale


def combined_scores(sup_scores, anom_scores, sup_ref: Reference, anom_ref: Reference) -> np.ndarray:
    """The combined part score from the two models' part scores (numpy, 0..1)."""
    z = sup_ref.z(logit(np.asarray(sup_scores, np.float64))) + anom_ref.z(logit(np.asarray(anom_scores, np.float64)))
    return 1.0 / (1.0 + np.exp(-z))


def shares_backbone_prefix(supervised: InspectionNet, anomaly: AnomalyNet) -> bool:
    """True when the blocks the anomaly model reads are bit-identical in both models."""
    emb = anomaly.embedder
    ours = supervised.backbone
    pairs = [(ours._conv_stem, emb.stem_conv), (ours._bn0, emb.stem_bn)]
    pairs += [(ours._blocks[i], emb.blocks[i]) for i in range(len(emb.blocks))]
    for a, b in pairs:
        sa, sb = a.state_dict(), b.state_dict()
        if sa.keys() != sb.keys() or not all(torch.equal(sa[k].cpu(), sb[k].cpu()) for k in sa):
            return False
    return True


class CombinedNet(nn.Module):
    """uint8 BGR parts in; supervised + anomaly evidence out, with the supervised interface."""

    def __init__(self, supervised: InspectionNet, anomaly: AnomalyNet, sup_ref: Reference, anom_ref: Reference):
        super().__init__()
        self.supervised, self.anomaly = supervised.cpu().eval(), anomaly.cpu().eval()
        self.shared = shares_backbone_prefix(self.supervised, self.anomaly)
        for name, value in (("sup_median", sup_ref.median), ("sup_scale", sup_ref.scale),
                            ("anom_median", anom_ref.median), ("anom_scale", anom_ref.scale)):
            self.register_buffer(name, torch.tensor(float(value)))
        self.eval()

    def _both(self, images_u8: torch.Tensor) -> tuple[NetOutput, torch.Tensor]:
        emb = self.anomaly.embedder
        if not self.shared:
            return self.supervised(images_u8), emb(images_u8)
        backbone = self.supervised.backbone
        x = backbone.stem(self.supervised.normalise(images_u8))
        taps, f16 = [], None
        for i in range(len(emb.blocks)):
            x = backbone._blocks[i](x)
            if i in emb.layers:
                taps.append(x)
            if i == STRIDE16_BLOCK:
                f16 = x
        features = emb.pool_maps(taps, images_u8.shape[1] // 16)
        return self.supervised.patch_head(*self.supervised.features(x, len(emb.blocks), f16)), features

    def forward(self, images_u8: torch.Tensor) -> NetOutput:
        sup, features = self._both(images_u8)
        n, h, w = sup.patch_logits.shape
        distance = self.anomaly.patch_distance(features)  # [N, P]
        # The anomaly half's heatmap evidence, as its own heatmap shows it.
        anomaly_patch = (self.anomaly.heat_distance(distance, h, w).reshape(n, h * w) - self.anomaly.mu) / self.anomaly.sigma
        # The anomaly model's own part logit, pooled as it pools: what its exported scores were.
        anomaly_part = self.anomaly.part_logit(features, distance, images_u8)
        part = ((sup.defect_logit - self.sup_median) / self.sup_scale
                + (anomaly_part - self.anom_median) / self.anom_scale)
        patches = ((sup.patch_logits.reshape(n, h * w) - self.sup_median) / self.sup_scale
                   + (anomaly_patch - self.anom_median) / self.anom_scale).reshape(n, h, w)
        score = torch.sigmoid(part)
        class_probs = torch.cat([(1 - score)[:, None], score[:, None] * torch.softmax(sup.class_logits, dim=1)],
                                dim=1)
        return NetOutput(score, class_probs, torch.sigmoid(patches), part, patches, sup.class_logits)


@dataclass
class Comparison:
    """How supervised alone, supervised + anomaly and the anomaly model alone did on the
    validation split, and which is kept."""

    n_defects: int
    caught: dict[str, int]
    auroc: dict[str, float]
    kept: str  # "supervised", "combined" or "good-only"

    @property
    def keep_combined(self) -> bool:
        return self.kept == "combined"

    def sentence(self) -> str:
        s, c, g = "supervised", "combined", "good-only"
        verdict = {s: "so the anomaly score is left out",
                   c: "so the anomaly score is added as extra evidence",
                   g: "so the anomaly model alone is kept (the labeled defects do not yet teach the "
                      "supervised model more than it adds)"}[self.kept]
        alone = (f", the anomaly model alone {self.caught[g]}/{self.n_defects} (AUROC {self.auroc[g]:.3f})"
                 if g in self.caught else "")
        return (f"on the validation split at the target false-reject rate, supervised alone caught "
                f"{self.caught[s]}/{self.n_defects} defects (AUROC {self.auroc[s]:.3f}) and supervised + anomaly "
                f"{self.caught[c]}/{self.n_defects} (AUROC {self.auroc[c]:.3f}){alone}, {verdict}")

    def to_dict(self) -> dict:
        return {"n_defects": self.n_defects, "caught": self.caught, "auroc": self.auroc, "kept": self.kept}


def compare(sup_scores, combined, is_defect, target: float, anomaly=None) -> Comparison:
    """Validation defects caught at each candidate's own threshold (from validation OK
    parts). Kept: the combination when it catches strictly more than supervised alone;
    the anomaly model alone (*anomaly*, when given) when it catches strictly more than
    supervised alone and at least as many as the combination: with a handful of labeled
    defects a supervised half that has learned little only dilutes the anomaly score it
    is added to, and of two that tie the simpler is kept (the anomaly model alone is the
    combination without its supervised half)."""
    is_defect = np.asarray(is_defect, bool)
    caught, areas = {}, {}
    candidates = [("supervised", sup_scores), ("combined", combined)]
    if anomaly is not None:
        candidates.append(("good-only", anomaly))
    for name, scores in candidates:
        scores = np.asarray(scores, np.float64)
        point = operating_point(scores[~is_defect], scores[is_defect], target, "validation OK parts")
        caught[name] = int(np.sum(scores[is_defect] >= point.threshold))
        areas[name] = float(auroc(is_defect.astype(int), scores))
    # Strictly more defects caught: an AUROC a thousandth higher on a few dozen defects is
    # not a measured help, and the simpler model is the one to keep then.
    kept = "combined" if caught["combined"] > caught["supervised"] else "supervised"
    if anomaly is not None and caught["good-only"] > caught["supervised"] \
            and caught["good-only"] >= caught["combined"]:
        kept = "good-only"
    return Comparison(int(is_defect.sum()), caught, areas, kept)
