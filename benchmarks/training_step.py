"""One CPU training step on cached activations, in the standard layout and channels-last.

A CPU retrain caches the frozen prefix's activations once and then backprops through
the last block, the head convolution and the patch head on a 9 x 9 (or 10 x 10) grid,
every step (training/loop.py). This times that step as `_Fit.run` runs it (the real
`_Step`, `compute_loss`, AdamW over the trainable parameters, batch 32) with the
network and the batch in PyTorch's default layout and in channels-last, alternating
rounds in one process so that a busy neighbour slows both alike, and prints the ratio.
Writes benchmarks/results/training_step.md.

    python benchmarks/training_step.py [--steps 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import torch  # noqa: E402

from benchmarks.machine import load_average, machine_lines  # noqa: E402
from training.loop import TrainConfig, _FrozenPrefix, _in_layout, _Step, compute_loss  # noqa: E402
from training.network import HEATMAP_STRIDE, InspectionNet, load_pretrained_backbone  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "training_step.md"
# (input side, what it stands for): the two sizes the trainer picks most.
SIZES = ((288, "288 px, a whole part letterboxed (magnetic tile)"),
         (320, "320 px, a tile of a large part (kolektorsdd)"))
N_DEFECT_CLASSES = 5
BATCH = 32


def trainable_net(cfg: TrainConfig) -> InspectionNet:
    """The network as `_Fit` trains it on a CPU: stem and the first blocks frozen."""
    net = InspectionNet(N_DEFECT_CLASSES, load_pretrained_backbone())
    for p in net.backbone._conv_stem.parameters():
        p.requires_grad_(False)
    for block in net.backbone._blocks[:cfg.frozen_blocks]:
        for p in block.parameters():
            p.requires_grad_(False)
    net.train()
    for block in net.backbone._blocks[:cfg.frozen_blocks]:
        block.eval()
    return net


def cached_batch(net: InspectionNet, size: int, cfg: TrainConfig, gen: torch.Generator):
    """Activations of the frozen prefix for a batch of parts, and its targets: the shapes
    the cache holds (the prefix of real parts, so the values are realistic)."""
    images = torch.randint(0, 256, (BATCH, size, size, 3), dtype=torch.uint8, generator=gen)
    with torch.no_grad():
        x, f16 = _FrozenPrefix(net, cfg.frozen_blocks)(images)
    grid = size // HEATMAP_STRIDE
    is_defect = (torch.rand(BATCH, generator=gen) < 0.3).float()
    cls = torch.where(is_defect > 0, torch.randint(0, N_DEFECT_CLASSES, (BATCH,), generator=gen), -1)
    patches = torch.where(is_defect[:, None, None] > 0, (torch.rand(BATCH, grid, grid, generator=gen) < 0.1).float(),
                          torch.zeros(BATCH, grid, grid))
    return x.half(), f16.half(), is_defect, cls, patches


def time_steps(net, batch, cfg: TrainConfig, layout, steps: int) -> float:
    """Seconds per step, the step as `_Fit.run` runs it, in *layout*."""
    net.to(memory_format=layout)
    model = _Step(net, cfg.frozen_blocks, True)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=cfg.weight_decay)
    x16, f16_16, is_defect, cls, patches = batch
    pos_weight = torch.tensor(2.0)
    class_weights = torch.ones(N_DEFECT_CLASSES)

    def step():
        out = model(_in_layout(x16.float(), layout), _in_layout(f16_16.float(), layout))
        loss = compute_loss(out, is_defect, cls, patches, pos_weight, class_weights, cfg)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):  # oneDNN builds its kernels on the first calls
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - t0) / steps
    net.to(memory_format=torch.contiguous_format)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per round and layout")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per layout")
    args = parser.parse_args(argv)
    load_at_start = load_average()
    torch.set_num_threads(max(1, os.cpu_count() or 1))  # as the trainer does
    cfg = TrainConfig()
    gen = torch.Generator().manual_seed(0)
    rows = []
    for size, label in SIZES:
        torch.manual_seed(0)
        net = trainable_net(cfg)
        batch = cached_batch(net, size, cfg, gen)
        per_layout: dict[str, list[float]] = {"standard": [], "channels-last": []}
        for _ in range(args.rounds):
            per_layout["standard"].append(time_steps(net, batch, cfg, torch.contiguous_format, args.steps))
            per_layout["channels-last"].append(time_steps(net, batch, cfg, torch.channels_last, args.steps))
        standard = statistics.median(per_layout["standard"]) * 1000
        last = statistics.median(per_layout["channels-last"]) * 1000
        rows.append((label, standard, last))
        print(f"{label}: {standard:.1f} ms per step standard, {last:.1f} ms channels-last, "
              f"{standard / last:.2f}x", flush=True)
    lines = [
        "# One CPU training step: standard layout vs channels-last",
        "",
        "The step a CPU retrain repeats (training/loop.py `_Fit.run`): the last block, the head",
        f"convolution and the patch head forward and back on a batch of {BATCH} parts' cached",
        "activations, then AdamW. Both layouts alternate in one process; each figure is the",
        f"median of {args.rounds} rounds of {args.steps} steps. The trainer steps in channels-last.",
        "",
        "| Input | standard (ms per step) | channels-last (ms per step) | speed-up |",
        "|---|---:|---:|---:|",
        *(f"| {label} | {standard:.1f} | {last:.1f} | {standard / last:.2f}x |" for label, standard, last in rows),
        "",
        "Machine:",
        "",
        *machine_lines("benchmarks/training_step.py", ("torch",), load_at_start),
        "",
    ]
    from app.core.atomic import write_text

    write_text(RESULTS, "\n".join(lines))
    print(f"wrote {RESULTS.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
