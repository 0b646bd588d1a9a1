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
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.project import Project  # noqa: E402
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
    detection.SEED = args.seed
    items = tile_data.read_split(args.dataset_root)
    train_val = tile_data.in_split(items, "train", "val")
    test, _ = tile_data.without_leaks(tile_data.in_split(items, "test"), train_val)
    with tempfile.TemporaryDirectory(prefix="lineside-full-finetune-") as work:
        project = tile_data.build_project(Path(work) / "project", args.dataset_root, train_val, keep_splits=False)
        with Project.open(project) as p:
            p.set_setting("learning_curve", False)
        run = detection.train(project, "whole network", "supervised", False)
        t = detection.judge_test(run, test, args.dataset_root)
    print(json.dumps({"seed": args.seed, "retrain_s": round(run.train_s), "validation_auroc": run.metrics.get("auroc"),
                      "caught": f"{t['caught']}/{t['n_defect']}", "false_rejects": f"{t['false_rejects']}/{t['n_ok']}",
                      "test_auroc": round(t["auroc"], 4), "pixel_auroc": t["pixel_auroc"] and round(t["pixel_auroc"], 4),
                      "test_optimal_catch_at_1pct": round(t["catch_at_1pct_false_reject_test_optimal"], 3)}))


if __name__ == "__main__":
    main()
