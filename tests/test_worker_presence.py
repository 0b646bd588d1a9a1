"""Worker presence (train_jobs.worker_alive / workers / worker_gone): a training server
that waits for jobs is seen as one, on SQLite and on a real throwaway PostgreSQL server
(tests/plant_fixtures.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from app.cli import worker as worker_cli
from app.core import train_jobs
from app.core.project import Project
from tests.plant_fixtures import plant_url, postgres_server  # noqa: F401
from tests.test_train_jobs import wait_until

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["sqlite", "postgresql"])
def folder(request, tmp_path: Path) -> Path:
    """An empty project folder on project.db or in a plant database."""
    database = None if request.param == "sqlite" else request.getfixturevalue("plant_url")
    Project.create(tmp_path / "p", database=database).close()
    return tmp_path / "p"


def presence(project: Project, name: str, **kwargs) -> train_jobs.WorkerPresence | None:
    return next((w for w in train_jobs.workers(project, **kwargs) if w.name == name), None)


def test_a_worker_is_online_while_it_says_so_and_offline_after(folder: Path):
    with Project.open(folder) as project:
        assert train_jobs.workers(project) == []
        train_jobs.worker_alive(project, "gpu-1", train_jobs.IDLE, "cuda", 2)
        train_jobs.worker_alive(project, "gpu-2", train_jobs.BUSY)
        seen = presence(project, "gpu-1")
        assert (seen.state, seen.device, seen.gpus, seen.pid, seen.online) == (
            train_jobs.IDLE, "cuda", 2, os.getpid(), True)
        assert [w.name for w in train_jobs.workers(project)] == ["gpu-2", "gpu-1"]  # the most recently seen first
        later = seen.seen + timedelta(seconds=train_jobs.ONLINE_WITHIN_S + 1)
        assert not presence(project, "gpu-1", now=later).online
        train_jobs.worker_gone(project, "gpu-1")
        gone = presence(project, "gpu-1")
        assert (gone.state, gone.online, gone.device, gone.gpus) == (train_jobs.STOPPED, False, "cuda", 2)
        with pytest.raises(ValueError):
            train_jobs.worker_alive(project, "gpu-1", train_jobs.STOPPED)
        project.set_setting("worker/odd", "not a presence row")  # ignored, not fatal
        assert {w.name for w in train_jobs.workers(project)} == {"gpu-1", "gpu-2"}


def test_serve_says_busy_while_it_runs_a_job_and_stopped_at_the_end(folder: Path, monkeypatch):
    states: list[str] = []

    def run_job(project, job, worker, *args):
        states.append(presence(project, worker).state)
        return train_jobs.finish(project, job.id, worker, train_jobs.DONE, result_version="v1")

    monkeypatch.setattr(worker_cli, "run_job", run_job)
    with Project.open(folder) as project:
        train_jobs.request_retrain(project, {}, "ann")
        ended = worker_cli.serve(project, "w1", device="cpu", once=True, poll_s=0.1, log=lambda line: None)
        assert [j.state for j in ended] == [train_jobs.DONE] and states == [train_jobs.BUSY]
        assert presence(project, "w1").state == train_jobs.STOPPED


def test_presence_is_said_again_while_the_worker_waits(folder: Path, monkeypatch):
    monkeypatch.setattr(train_jobs, "PRESENCE_S", 0.1)
    with Project.open(folder) as project:
        shutdown = threading.Event()
        thread = threading.Thread(target=worker_cli.serve, args=(project, "w1"), kwargs=dict(
            device="cpu", poll_s=0.1, shutdown=shutdown, log=lambda line: None))
        thread.start()
        try:
            first = wait_until(lambda: presence(project, "w1"), 30, "the worker's first presence")
            wait_until(lambda: presence(project, "w1").seen > first.seen, 30, "a second presence")
        finally:
            shutdown.set()
            thread.join()
        assert presence(project, "w1").state == train_jobs.STOPPED


@pytest.mark.skipif(os.name != "posix", reason="SIGTERM is POSIX")
def test_an_idle_worker_process_shows_up_and_goes_stopped_on_sigterm(folder: Path):
    process = subprocess.Popen([sys.executable, "-m", "app", "worker", str(folder), "--device", "cpu", "--poll",
                                "0.2", "--name", "w-idle"], cwd=ROOT, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    try:
        with Project.open(folder) as project:
            def online():
                if process.poll() is not None:
                    raise AssertionError(f"the worker ended early:\n{process.communicate()[0]}")
                seen = presence(project, "w-idle")
                return seen if seen and seen.online else None

            seen = wait_until(online, 120, "the worker to show up")
            assert (seen.state, seen.device, seen.pid) == (train_jobs.IDLE, "cpu", process.pid)
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=60)
            assert process.returncode == 0, out
            gone = presence(project, "w-idle")
            assert (gone.state, gone.online) == (train_jobs.STOPPED, False)
    finally:
        process.kill()
        process.communicate()
