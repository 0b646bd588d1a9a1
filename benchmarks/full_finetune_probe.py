"""What the GPU recipe (the whole network fine-tuned on freshly augmented parts every
step, `--device cuda`) gives on magnetic tile, run on the CPU (docs/adr/0005).

The detection benchmark's project (the dataset's train and val images, split by the
trainer), `train_project` in supervised mode with `full_finetune` on and no learning
curve, then every test image through the exported model at its stored threshold, as
`benchmarks/detection.py` judges. One JSON line. About 11-13 minutes on 2 cores.

    python benchmarks/full_finetune_probe.py [--seed 0]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import detection, tile_data  # noqa: E402
from training import loop, pipeline  # noqa: E402


@dataclasses.dataclass
class WholeNetworkConfig(loop.TrainConfig):
    full_finetune: bool | None = True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dataset-root", type=Path, default=tile_data.DEFAULT_DATASET)
    args = parser.parse_args()
    torch.set_num_threads(2)
    pipeline.TrainConfig = WholeNetworkConfig
    print(json.dumps(detection.probe_supervised(args.dataset_root, "whole network", args.seed)))


if __name__ == "__main__":
    main()
