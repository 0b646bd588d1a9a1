"""One retrain on several processes with DistributedDataParallel (a server with several GPUs).

    torchrun --standalone --nproc_per_node N -m training.distributed PROJECT [--epochs E] [--device cuda] ...

(`lineside worker PROJECT --processes N` starts it like this for each job.) Rank 0 runs
the retrain exactly as `lineside train` does (training/pipeline.py): it checks and splits
the data, loads it, and after the backprop it validates, exports, checks parity, sets
the threshold and registers the candidate. Only the backprop is shared. Rank 0 sends
every other rank its disjoint shard of the training samples (split like torch's
DistributedSampler, padded so every rank takes the same number of steps); each rank
caches the frozen prefix of its own shard, which is most of a CPU retrain, and steps
through it; DDP averages the gradients of the layers that train after every step, so
all ranks hold the same weights. Rank 0 alone validates after each epoch and says when
all stop (early stopping, time budget); a cancel on rank 0 stops every rank at the next
step. Each rank's batch is the single-process batch divided by the number of ranks, so
the effective batch and the number of steps, the recipe of docs/adr/0005, stay the same.

Backend: NCCL on CUDA, gloo on the CPU. The samples and rank 0's messages always go
through gloo (objects sent over NCCL would have to pass through the GPU).

Not shared: the anomaly model of good-only and combined modes (a memory bank, no
backprop), which rank 0 fits alone, and the learning curve, which is left out of a
distributed run's report (it re-fits from the cached features; each rank holds only its
shard's).
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import signal
import sys
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from training import loop

EXIT_ERROR, EXIT_CANCELLED = 2, 3
# How long the other ranks wait for rank 0's next message: it loads the data before the
# backprop and exports and evaluates after it, which can take a while on a large project.
MESSAGE_TIMEOUT = timedelta(hours=2)


def shard_indices(n: int, rank: int, world: int) -> list[int]:
    """The sample indices rank *rank* of *world* trains on: every world-th from rank on,
    wrapped around at the end (the few padded ones repeat samples of the first shards),
    so every rank has ceil(n / world) of them."""
    return [(rank + k * world) % n for k in range(math.ceil(n / world))] if n else []


class DistributedReplicas(loop.Replicas):
    """This process's place among the ranks (training.loop.Replicas' contract)."""

    def __init__(self, device: str, messages=None):
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = device  # "cpu", or "cuda" (this rank's GPU is the current device)
        self.messages = messages  # the gloo group objects travel in; None: the default group
        self.seen: list[str] = []  # keys of the samples this rank last trained on
        self.busy = False  # in the backprop: the other ranks are not waiting for a message

    def shard(self, samples: list) -> list:
        chosen = [samples[i] for i in shard_indices(len(samples), self.rank, self.world)]
        self.seen = [s.key for s in chosen]
        return chosen

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [torch.cuda.current_device()] if self.device.startswith("cuda") else None
        # Some trainable layers get no gradient in a step (the ImageNet classifier; on the
        # cached path the stem's batch norm): DDP is told to expect that.
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=True)

    def agree(self, flag: bool) -> bool:
        value = torch.tensor([1 if flag else 0], device=self.device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())

    # -- rank 0's messages --------------------------------------------------------------
    def send(self, messages: list) -> None:
        dist.scatter_object_list([None], messages, src=0, group=self.messages)

    def receive(self):
        out = [None]
        dist.scatter_object_list(out, None, src=0, group=self.messages)
        return out[0]

    def gather_seen(self) -> list[list[str]] | None:
        gathered = [None] * self.world if self.rank == 0 else None
        dist.gather_object(self.seen, gathered, dst=0, group=self.messages)
        return gathered


def _threads_per_rank() -> int:
    ranks_here = int(os.environ.get("LOCAL_WORLD_SIZE") or dist.get_world_size())
    return max(1, (os.cpu_count() or 1) // ranks_here)


def _for_rank(samples: list, rank: int, world: int) -> list:
    """*samples* as rank *rank* needs them: its shard whole, the rest without images
    (their verdicts still weigh the classes alike on every rank)."""
    mine = set(shard_indices(len(samples), rank, world))
    return [s if i in mine else replace(s, image=None, mask=None) for i, s in enumerate(samples)]


class _Leader:
    """Rank 0's training step for the pipeline (its train_fn)."""

    def __init__(self, replicas: DistributedReplicas):
        self.replicas = replicas
        self.seen: list[list[str]] = []

    def train(self, train_samples, val_samples, cfg, on_event, should_stop):
        world = self.replicas.world
        cfg = replace(cfg, batch_size=max(1, math.ceil(cfg.batch_size / world)))
        self.replicas.send([None] + [(_for_rank(train_samples, r, world), cfg) for r in range(1, world)])
        self.replicas.busy = True
        threads = torch.get_num_threads()
        torch.set_num_threads(_threads_per_rank())
        try:
            result = loop.train(train_samples, val_samples, cfg, on_event, should_stop, replicas=self.replicas)
        except loop.Cancelled:  # every rank agreed on it: all are past the backprop
            self._after_training()
            raise
        finally:
            torch.set_num_threads(threads)
        self._after_training()
        return result

    def _after_training(self) -> None:
        self.replicas.busy = False
        gc.collect()  # the DDP wrapper (see leave())
        self.seen = self.replicas.gather_seen()


def follow(replicas: DistributedReplicas) -> None:
    """A rank other than 0: train on each shard rank 0 sends until it says stop."""
    while (message := replicas.receive()) is not None:
        samples, cfg = message
        torch.set_num_threads(_threads_per_rank())
        replicas.busy = True  # failing in here, this rank must not wait for the others at leave()
        try:
            loop.train(samples, [], cfg, replicas=replicas)
        except loop.Cancelled:
            pass
        replicas.busy = False
        gc.collect()  # the DDP wrapper (see leave())
        replicas.gather_seen()


def train_project_distributed(project_dir: Path | str, replicas: DistributedReplicas, **kwargs):
    """Rank 0: the retrain (training.pipeline.train_project's keyword arguments), the
    others training along; (the registered ModelVersion, the sample keys each rank
    trained on). The other ranks must be in follow() meanwhile."""
    from training import pipeline

    leader = _Leader(replicas)
    try:
        model = pipeline.train_project(project_dir, train_fn=leader.train, **kwargs)
    finally:
        # Tell the others to go home, unless they are still in the backprop: then this
        # rank failed in it, and the launcher ends them as this process ends.
        if not replicas.busy:
            replicas.send([None] * replicas.world)
    return model, leader.seen


def init(device: str) -> DistributedReplicas:
    """Join the process group torchrun (or a test) describes in the environment."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl")
        return DistributedReplicas(device, dist.new_group(backend="gloo", timeout=MESSAGE_TIMEOUT))
    dist.init_process_group("gloo", timeout=MESSAGE_TIMEOUT)
    return DistributedReplicas(device)


def leave(replicas: DistributedReplicas) -> None:
    """Leave the process group, all ranks together. torch's gloo backend now and then
    aborts the process at exit (std::terminate) when a rank leaves while another still
    talks to it or a DDP wrapper outlives the group: seen in about 1 of 3 two-rank runs
    here. So each training's wrapper is freed right after it (it sits in reference
    cycles, hence gc.collect()), and the ranks meet at a barrier before they go: 0 in
    36 runs. A rank that failed in the backprop skips the barrier (the others are
    elsewhere); its launcher ends them."""
    if not replicas.busy:
        gc.collect()
        dist.barrier()
    dist.destroy_process_group()


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    from app.cli.train import _epochs, _rate, _seconds, _seed

    p = argparse.ArgumentParser(prog="torchrun --nproc_per_node N -m training.distributed",
                                description="Retrain PROJECT on N processes (one per GPU) with DDP.")
    p.add_argument("project", type=Path)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--epochs", type=_epochs, default=None)
    p.add_argument("--time-budget", type=_seconds, default=None, metavar="SECONDS")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--mode", choices=["auto", "supervised", "good-only", "combined"], default="auto")
    p.add_argument("--false-reject-target", type=_rate, default=None, metavar="RATE")
    p.add_argument("--progress", choices=["text", "json"], default="text")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from app.cli.signals import SignalStop
    from app.cli.train_events import json_event, text_event
    from app.core.errors import LinesideError

    args = _arguments(argv)
    replicas = init(args.device)
    try:
        if replicas.rank != 0:
            # Rank 0 decides: a Ctrl+C or SIGTERM reaches every rank, and rank 0 turns it
            # into a cancel that all ranks agree on at the next step.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            follow(replicas)
            return 0
        emit = json_event if args.progress == "json" else text_event
        cancel = threading.Event()
        SignalStop(cancel, (signal.SIGINT, signal.SIGTERM)).start()  # for the life of this process
        try:
            model, seen = train_project_distributed(
                args.project, replicas, epochs=args.epochs, time_budget_s=args.time_budget, device=replicas.device,
                seed=args.seed, mode=args.mode, false_reject_target=args.false_reject_target, on_event=emit,
                should_stop=cancel.is_set)
        except loop.Cancelled:
            if args.progress == "json":
                emit({"event": "cancelled"})
            else:
                print("training cancelled; nothing was saved")
            return EXIT_CANCELLED
        except LinesideError as exc:
            if args.progress == "json":
                emit({"event": "error", "message": str(exc)})
            print(f"lineside: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if seen:
            shares = ", ".join(f"rank {rank} {len(keys)}" for rank, keys in enumerate(seen))
            print(f"{model.version} trained on {replicas.world} processes; training samples per rank: {shares}",
                  file=sys.stderr)
        return 0
    finally:
        leave(replicas)


if __name__ == "__main__":
    sys.exit(main())
