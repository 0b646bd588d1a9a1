"""Every part at one scale instead of each letterboxed to fit, for the supervised model
on magnetic tile (docs/adr/0008, "every part at one scale").

Magnetic tiles vary in size, so letterboxing shows their surfaces at scales from 0.48
to 1.14. `--recipe one-scale` scales every part alike (the median part's long side
fills the 288-px input) and cuts the parts that are then longer than one input into
288-px tiles; `one-scale-margin` does the same with 320-px tiles holding 288 px of part
inside the usual 16-px margin; `letterbox` is the shipped choice. The detection
benchmark's project (the dataset's train and val images, split by the trainer),
`train_project` in supervised mode without the learning curve, then every test image
through the exported model at its stored threshold, as `benchmarks/detection.py`
judges. One JSON line, about 3-5 minutes on 2 cores.

    python benchmarks/scale_probe.py --recipe one-scale [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.preprocess import TILE_MARGIN, TilePlan  # noqa: E402
from benchmarks import detection, tile_data  # noqa: E402
from training import pipeline  # noqa: E402

SIZE = 288  # what the trainer chooses for magnetic tile


def one_scale(margin: int):
    """A stand-in for `pipeline.choose_size_and_tiling`: one TilePlan at the scale that
    fits the median labeled part's long side into SIZE px."""
    def choose(project, labeled, mode):
        long_side = float(np.median([max(record.height, record.width) for record, _ in labeled]))
        plan = TilePlan(SIZE + 2 * margin, SIZE / long_side, margin=margin)
        return plan.tile, plan
    return choose


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", choices=["letterbox", "one-scale", "one-scale-margin"], default="one-scale")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-root", type=Path, default=tile_data.DEFAULT_DATASET)
    args = parser.parse_args()
    torch.set_num_threads(2)
    if args.recipe != "letterbox":
        pipeline.choose_size_and_tiling = one_scale(TILE_MARGIN if args.recipe == "one-scale-margin" else 0)
    result = detection.probe_supervised(args.dataset_root, args.recipe, args.seed)
    print(json.dumps({"recipe": args.recipe, **result}))


if __name__ == "__main__":
    main()
