"""One retrain on two processes with DistributedDataParallel (gloo on the CPU), against
the same retrain on one process: real backprop, real export, real registration."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from app.core import train_jobs
from app.core.project import Project
from app.core.runtime import Inspector
from tests.training_fixtures import TINY_INPUT_SIZE, make_spot_project
from training.distributed import shard_indices



def test_shards_are_disjoint_even_and_cover_every_sample():
    for n, world in ((21, 2), (20, 4), (5, 3), (1, 2)):
        shards = [shard_indices(n, rank, world) for rank in range(world)]
        assert {len(s) for s in shards} == {-(-n // world)}  # every rank takes the same number of steps
        assert set().union(*map(set, shards)) == set(range(n))
        padded = sum(map(len, shards)) - n
        assert padded < world  # only the padding repeats a sample
    assert shard_indices(4, 0, 2) == [0, 2] and shard_indices(4, 1, 2) == [1, 3]


# -- two real processes ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _join_group(rank: int, world: int, port: int):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE=str(world))
    from training import distributed

    return distributed.init("cpu")


def _weights_digest(net) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(net.state_dict().items()):
        digest.update(name.encode() + tensor.detach().cpu().numpy().tobytes())
    return digest.hexdigest()


def _loop_rank(rank: int, world: int, port: int, out: str) -> None:
    """Each rank runs training.loop.train on the same list; its shard and weights to a file."""
    from training import distributed
    from training.data import Sample
    from training.loop import TrainConfig, train
    from training.network import load_pretrained_backbone

    replicas = _join_group(rank, world, port)
    try:
        rng = np.random.default_rng(5)  # the same samples on every rank, as rank 0 would send them
        samples = [Sample(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8), None, "ok" if i % 3 else "pit",
                          f"part{i}") for i in range(18)]
        cfg = TrainConfig(input_size=96, epochs=1, batch_size=8, class_names=["ok", "pit"], device="cpu")
        result = train(samples, samples[:6] if rank == 0 else [], cfg, replicas=replicas)
        last_block = result.net.backbone._blocks[-1]
        Path(out, f"rank{rank}.json").write_text(json.dumps({
            "seen": replicas.seen, "digest": _weights_digest(result.net),
            "moved": _weights_digest(last_block) != _weights_digest(load_pretrained_backbone()._blocks[-1])}))
    finally:
        distributed.leave(replicas)


@pytest.mark.slow
def test_ddp_keeps_the_ranks_weights_identical_while_each_trains_its_own_shard(tmp_path: Path):
    import torch.multiprocessing as mp

    mp.spawn(_loop_rank, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert set(ranks[0]["seen"]).isdisjoint(ranks[1]["seen"])
    assert sorted(ranks[0]["seen"] + ranks[1]["seen"]) == sorted(f"part{i}" for i in range(18))
    # Different data, one set of weights: the gradients were averaged across the ranks.
    assert ranks[0]["moved"] and ranks[1]["moved"]  # the training layers did train
    assert ranks[0]["digest"] == ranks[1]["digest"]


def _pipeline_rank(rank: int, world: int, port: int, project: str, out: str) -> None:
    from training import distributed

    replicas = _join_group(rank, world, port)
    try:
        if rank == 0:
            events: list[dict] = []
            model, seen = distributed.train_project_distributed(project, replicas, epochs=3, mode="supervised",
                                                                device="cpu", on_event=events.append)
            Path(out, "result.json").write_text(json.dumps({"version": model.version, "seen": seen,
                                                            "events": [e["event"] for e in events]}))
        else:
            distributed.follow(replicas)
    finally:
        distributed.leave(replicas)


def _describe(project: Project, version: str) -> dict:
    model = project.model(version)
    meta = json.loads((model.path / "model.json").read_text())
    return {"mode": meta["mode"], "class_names": meta["class_names"], "input_size": meta["input_size"],
            "status": model.status}


@pytest.mark.slow
def test_two_processes_register_the_model_one_process_would(tmp_path: Path):
    import torch.multiprocessing as mp

    from training import pipeline
    from training.export import PARITY_TOLERANCE

    folder = make_spot_project(tmp_path / "spots")
    with Project.open(folder) as project:
        project.set_setting("learning_curve", False)
    mp.spawn(_pipeline_rank, args=(2, _free_port(), str(folder), str(tmp_path)), nprocs=2, join=True)
    result = json.loads((tmp_path / "result.json").read_text())
    single = pipeline.train_project(folder, epochs=3, mode="supervised", device="cpu")

    with Project.open(folder) as project:
        both = project.model(result["version"])
        assert _describe(project, both.version) == _describe(project, single.version) == {
            "mode": "supervised", "class_names": ["ok", "pit"], "input_size": TINY_INPUT_SIZE, "status": "candidate"}
        for model in (both, single):
            assert model.report["parity_max_abs_diff"] <= PARITY_TOLERANCE  # the ONNX export was checked
            assert 0.0 <= model.threshold <= 1.0 and model.metrics["auroc"] is not None
        assert both.report["epochs_run"] == single.report["epochs_run"] == 3
        assert both.report["learning_curve"] is None
        # Each rank saw its own part of the training set, together all of it.
        trained_on = set(json.loads((both.path / "training_set.json").read_text())["train"])
        rank0, rank1 = (set(keys) for keys in result["seen"])
        assert rank0 | rank1 == trained_on and len(rank0 & rank1) <= 1  # one padded sample at most
        assert result["events"][-1] == "done" and "epoch" in result["events"]
        inspector = Inspector(both.onnx_path)
        verdict = inspector.inspect(project.load_image(project.images()[0].id))
        assert 0.0 <= verdict.score <= 1.0


@pytest.mark.slow
def test_a_worker_runs_a_job_on_two_processes_under_torchrun(tmp_path: Path, capsys):
    from app.cli import main
    from tests.test_train_jobs import tiny_project

    folder = tiny_project(tmp_path / "tiny")
    with Project.open(folder) as project:
        job = train_jobs.request_retrain(project, {"mode": "supervised", "epochs": 2}, "ann")
    assert main(["worker", str(folder), "--once", "--processes", "2", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    with Project.open(folder) as project:
        final = train_jobs.job(project, job.id)
        assert final.state == train_jobs.DONE, (final.error, out)
        kinds = [e.event["event"] for e in train_jobs.events_since(project, job.id)]
        assert kinds.index("start") < kinds.index("epoch") and kinds[-1] == "done"
        assert project.model(final.result_version).report["learning_curve"] is None  # the distributed run's


@pytest.mark.slow
def test_a_cancel_stops_every_process_of_a_distributed_job(tmp_path: Path):
    import threading
    import time

    from app.cli.worker import serve
    from tests.test_train_jobs import tiny_project, wait_until

    folder = tiny_project(tmp_path / "tiny")
    with Project.open(folder) as project:
        job = train_jobs.request_retrain(project, {"mode": "supervised", "epochs": 200}, "ann")
        ended: list = []
        worker = threading.Thread(target=lambda: ended.extend(serve(
            project, "w1", device="cpu", processes=2, once=True, heartbeat_s=0.1, log=lambda line: None)))
        worker.start()
        wait_until(lambda: any(e.event["event"] == "epoch" for e in train_jobs.events_since(project, job.id)),
                   what="the first epoch")
        t_cancel = time.monotonic()
        train_jobs.request_cancel(project, job.id)
        worker.join(timeout=120)
        assert not worker.is_alive() and time.monotonic() - t_cancel < 60
        final = train_jobs.job(project, job.id)
        assert final.state == train_jobs.CANCELLED and ended == [final] and project.models() == []
        assert train_jobs.events_since(project, job.id)[-1].event == {"event": "cancelled"}
