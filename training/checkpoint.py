"""Rebuild the exported network in PyTorch from the `checkpoint.pt` beside a model.

Each mode saves its own kind of checkpoint (training/pipeline.py), always with the
config it was trained with; this is the one place that reads all three back, for the
parity tests and the eager-PyTorch baseline of the latency benchmark.
"""

from __future__ import annotations

from pathlib import Path

import torch


def _anomaly_net(saved: dict):
    from training.anomaly import AnomalyNet, PatchEmbedder
    from training.network import load_pretrained_backbone
    from training.part_statistics import PartGaussian

    cfg, sd = saved["config"], saved["state_dict"]
    embedder = PatchEmbedder(load_pretrained_backbone(), tuple(cfg["layers"]), cfg["neighbourhood"])
    center = sd["center"].reshape(-1)
    bank = sd["bank_t"].t() + center  # the bank is stored centred
    return AnomalyNet(embedder, bank, center, float(sd["mu"]), float(sd["sigma"]), cfg.get("pool", "max"),
                      cfg.get("ring", 0), PartGaussian.from_state_dict(sd), cfg.get("heatmap_neighbourhood", 1))


def _supervised_net(saved: dict):
    from training.network import InspectionNet

    net = InspectionNet(len(saved["class_names"]) - 1)
    net.load_state_dict(saved["state_dict"])
    return net


def load_network(checkpoint: Path | str) -> torch.nn.Module:
    """The network as exported (eval mode, CPU): supervised, good-only or combined."""
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if saved.get("mode") == "combined":
        from training.combined import CombinedNet, Reference

        refs = saved["references"]
        net = CombinedNet(_supervised_net(saved), _anomaly_net(saved["anomaly"]), Reference(**refs["supervised"]),
                          Reference(**refs["anomaly"]))
    elif "bank_t" in saved["state_dict"]:
        net = _anomaly_net(saved)
    else:
        net = _supervised_net(saved)
    return net.eval()
