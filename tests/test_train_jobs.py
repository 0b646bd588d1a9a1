"""The training queue and the training server (`lineside worker`), on SQLite and on a real
throwaway PostgreSQL server (tests/plant_fixtures.py), with the real trainer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.cli import main
from app.cli.worker import EventRecorder, serve
from app.core import db, migrations, plant, train_jobs
from app.core.errors import LinesideError
from app.core.importer import import_folder
from app.core.project import OK, Project
from app.core.synthetic import write_demo_dataset
from app.core.trainer_events import problems
from tests.plant_fixtures import plant_url, postgres_server  # noqa: F401
from tests.store_fixtures import encoded, part_image
from tests.training_fixtures import TINY_INPUT_SIZE

ROOT = Path(__file__).resolve().parents[1]
TRAIN = {"mode": "supervised", "epochs": 3}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def wait_until(condition, timeout_s: float = 120.0, what: str = "the condition"):
    """Poll *condition* until it returns something true; that value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def tiny_project(folder: Path, database: str | None = None, n_ok: int = 14, n_per_defect: int = 6) -> Path:
    """tests/training_fixtures.make_tiny_project, on SQLite or in a plant database."""
    source = folder.parent / f"{folder.name}-source"
    write_demo_dataset(source, n_ok, n_per_defect, seed=3)
    with Project.create(folder, name="tiny", database=database) as project:
        project.set_setting("input_size", TINY_INPUT_SIZE)
        project.set_setting("tiling", False)
        project.set_setting("learning_curve", False)  # seconds these tests do not need
        import_folder(project, source)
    return folder


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request) -> str | None:
    """None for project.db, else the URL of an empty plant database."""
    return None if request.param == "sqlite" else request.getfixturevalue("plant_url")


@pytest.fixture
def store(database, tmp_path: Path) -> Path:
    """An empty project folder on either database."""
    Project.create(tmp_path / "p", database=database).close()
    return tmp_path / "p"


def start_worker(folder: Path, once: bool = True, **kwargs) -> tuple[threading.Thread, threading.Event, list]:
    """A worker thread (its own Project, as on another PC) that runs one job (once), or
    polls for jobs until its shutdown event is set."""
    shutdown, ended = threading.Event(), []

    def work() -> None:
        with Project.open(folder) as project:
            ended.extend(serve(project, "w1", device="cpu", once=once, poll_s=0.1, shutdown=shutdown,
                               log=lambda line: None, **kwargs))

    thread = threading.Thread(target=work)
    thread.start()
    return thread, shutdown, ended


# -- the queue ---------------------------------------------------------------------------


def test_options_are_checked_and_filled_in(store: Path):
    with Project.open(store) as project:
        job = train_jobs.request_retrain(project, {"epochs": 4, "mode": "good-only"}, "ann")
        assert job.state == train_jobs.QUEUED and job.requested_by == "ann" and job.attempts == 0
        assert job.options == {**train_jobs.DEFAULT_OPTIONS, "epochs": 4, "mode": "good-only"}
        assert job.requested_at.tzinfo is not None
        for bad, message in (({"epochs": 0}, "Epochs"), ({"mode": "magic"}, "mode"), ({"speed": 2}, "Unknown"),
                             ({"false_reject_target": 0.7}, "false-reject"), ({"device": "tpu"}, "Device")):
            with pytest.raises(LinesideError, match=message):
                train_jobs.request_retrain(project, bad, "ann")
        assert [j.id for j in train_jobs.jobs(project)] == [job.id]  # nothing else was queued
        with pytest.raises(LinesideError, match="no training job 99"):
            train_jobs.request_cancel(project, 99)


def test_two_workers_racing_never_take_the_same_job(store: Path):
    workers = [Project.open(store) for _ in range(2)]  # two engines, as two servers
    try:
        for _ in range(4):  # a few rounds: a race that happens to go one way proves little
            queued = {train_jobs.request_retrain(workers[0], TRAIN, "ann").id for _ in range(3)}
            start = threading.Barrier(2)
            taken: dict[str, list[int]] = {"a": [], "b": []}

            def take(project: Project, name: str) -> None:
                start.wait()
                while (job := train_jobs.claim_next(project, name)) is not None:
                    taken[name].append(job.id)

            threads = [threading.Thread(target=take, args=(p, n)) for p, n in zip(workers, taken)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert not set(taken["a"]) & set(taken["b"]), taken
            assert sorted(taken["a"] + taken["b"]) == sorted(queued)
            for name, ids in taken.items():
                for job_id in ids:
                    job = train_jobs.job(workers[1], job_id)
                    assert (job.state, job.worker, job.attempts) == (train_jobs.RUNNING, name, 1)
                    assert train_jobs.finish(workers[0], job_id, name, train_jobs.DONE, "v1").state == train_jobs.DONE
    finally:
        for project in workers:
            project.close()


def test_a_claim_skips_the_job_another_worker_has_locked(plant_url: str, tmp_path: Path):
    """PostgreSQL: a worker does not wait behind another's uncommitted claim, it takes the next job."""
    Project.create(tmp_path / "p", database=plant_url).close()
    with Project.open(tmp_path / "p") as project:
        first, second = (train_jobs.request_retrain(project, TRAIN, "ann") for _ in range(2))
        engine = sa.create_engine(plant_url)
        try:
            with engine.connect() as other, other.begin():  # another worker, halfway through its claim
                other.execute(sa.text("SELECT id FROM train_jobs WHERE id = :id FOR UPDATE"), {"id": first.id})
                claimed = []
                thread = threading.Thread(target=lambda: claimed.append(train_jobs.claim_next(project, "w2")))
                thread.start()
                thread.join(timeout=30)
                assert not thread.is_alive(), "the claim waited for the other worker's lock"
                assert claimed[0].id == second.id
        finally:
            engine.dispose()
        assert train_jobs.job(project, first.id).state == train_jobs.QUEUED


def test_cancel_of_a_queued_job_is_immediate_and_a_finished_job_stays(store: Path):
    with Project.open(store) as project:
        queued = train_jobs.request_retrain(project, TRAIN, "ann")
        cancelled = train_jobs.request_cancel(project, queued.id)
        assert cancelled.state == train_jobs.CANCELLED and cancelled.finished_at is not None
        assert train_jobs.claim_next(project, "w1") is None  # nothing left to take
        done = train_jobs.request_retrain(project, TRAIN, "ann")
        assert train_jobs.claim_next(project, "w1").id == done.id
        assert train_jobs.request_cancel(project, done.id).cancel_requested  # running: the worker is asked
        assert train_jobs.heartbeat(project, done.id, "w1") == train_jobs.CANCEL
        train_jobs.finish(project, done.id, "w1", train_jobs.DONE, "v1")
        assert train_jobs.request_cancel(project, done.id).state == train_jobs.DONE


def _age_heartbeat(folder: Path, job_id: int, minutes: float) -> None:
    """Set the job's last heartbeat *minutes* back: what a worker that died that long ago leaves."""
    with Project.open(folder) as project, project._write() as conn:
        then = datetime.now(timezone.utc) - timedelta(minutes=minutes)
        conn.execute(db.train_jobs.update().where(db.train_jobs.c.id == job_id).values(heartbeat_at=then))


def test_a_crashed_workers_job_is_queued_again_then_failed(store: Path):
    with Project.open(store) as project:
        job = train_jobs.request_retrain(project, TRAIN, "ann")
        assert train_jobs.claim_next(project, "crashed-1").id == job.id
        assert train_jobs.recover_stale(project, stale_after_s=60) == []  # it answered just now
        _age_heartbeat(store, job.id, minutes=10)
        (recovered,) = train_jobs.recover_stale(project, stale_after_s=5 * 60)
        assert recovered.state == train_jobs.QUEUED and recovered.worker is None
        assert "worker crashed-1 stopped answering" in recovered.error and "start over" in recovered.error
        # The first worker, if it comes back, finds the job is no longer its own.
        assert train_jobs.heartbeat(project, job.id, "crashed-1") == train_jobs.LOST
        assert train_jobs.finish(project, job.id, "crashed-1", train_jobs.DONE, "v9") is None
        # A second worker takes it and dies too: that is once too often.
        second = train_jobs.claim_next(project, "crashed-2")
        assert (second.id, second.attempts) == (job.id, 2)
        _age_heartbeat(store, job.id, minutes=10)
        (failed,) = train_jobs.recover_stale(project, stale_after_s=5 * 60)
        assert failed.state == train_jobs.FAILED and "2 workers in a row" in failed.error
        # A stale job someone wanted cancelled ends cancelled, not queued.
        other = train_jobs.request_retrain(project, TRAIN, "bob")
        train_jobs.claim_next(project, "crashed-3")
        train_jobs.request_cancel(project, other.id)
        _age_heartbeat(store, other.id, minutes=10)
        (cancelled,) = train_jobs.recover_stale(project, stale_after_s=5 * 60)
        assert cancelled.state == train_jobs.CANCELLED and "cancel had been asked" in cancelled.error


def test_a_worker_lost_after_saving_the_model_leaves_the_job_done(store: Path):
    """The model is saved at the trainer's "done"; losing the worker during the learning
    curve after it must not train the same model again."""
    with Project.open(store) as project:
        job = train_jobs.request_retrain(project, TRAIN, "ann")
        train_jobs.claim_next(project, "lost-1")
        assert train_jobs.record_result(project, job.id, "somebody-else", "v3") is False  # only its own job
        assert train_jobs.record_result(project, job.id, "lost-1", "v3") is True
        assert train_jobs.job(project, job.id).state == train_jobs.RUNNING  # still measuring the curve
        _age_heartbeat(store, job.id, minutes=10)
        (recovered,) = train_jobs.recover_stale(project, stale_after_s=5 * 60)
        assert (recovered.state, recovered.result_version) == (train_jobs.DONE, "v3")
        assert train_jobs.claim_next(project, "lost-2") is None  # nothing went back to the queue


def test_progress_events_are_throttled_but_the_milestones_kept(tmp_path: Path):
    with Project.create(tmp_path / "p") as project:
        job = train_jobs.request_retrain(project, TRAIN, "ann")
        record = EventRecorder(project, job.id, min_interval_s=3600)  # nothing is "later" in this test
        record({"event": "start", "device": "CPU", "n_train": 1, "n_val": 1, "classes": [OK], "epochs": 1})
        for step in range(1, 51):
            record({"event": "progress", "phase": "train", "epoch": 1, "epochs": 1, "step": step, "steps": 50,
                    "eta_s": 1.0, "np_value": _NumpyLike(step)})
        record({"event": "epoch", "epoch": 1, "epochs": 1, "train_loss": 0.5, "val_loss": float("nan"),
                "val_auroc": 0.9, "val_catch_rate": 0.5, "eta_s": 0.0})
        stored = [e.event for e in train_jobs.events_since(project, job.id)]
        assert [e["event"] for e in stored] == ["start", "progress", "progress", "epoch"]
        assert [e["step"] for e in stored if e["event"] == "progress"] == [1, 50]  # the phase's first and last
        assert stored[1]["np_value"] == 1  # numpy scalars are stored as plain numbers
        ids = [e.id for e in train_jobs.events_since(project, job.id)]
        assert ids == sorted(ids) and [e.id for e in train_jobs.events_since(project, job.id, ids[1])] == ids[2:]


class _NumpyLike:
    """Stands in for a numpy scalar in an event (metrics come as numpy floats)."""

    def __init__(self, value):
        self.value = value

    def item(self):
        return self.value


# -- the worker, with the real trainer --------------------------------------------------


@pytest.mark.slow
def test_a_jobs_events_reach_a_reader_in_order_while_it_runs(database, tmp_path: Path):
    folder = tiny_project(tmp_path / "tiny", database)
    with Project.open(folder) as project:
        job = train_jobs.request_retrain(project, TRAIN, "ann")
        seen: list[tuple[dict, str]] = []  # each event, and the job's state when the reader got it
        thread, _, ended = start_worker(folder)
        final = train_jobs.watch(project, job.id, lambda e: seen.append((e, train_jobs.job(project, job.id).state)),
                                 poll_s=0.05)
        thread.join()
        assert final.state == train_jobs.DONE and ended[0].result_version == final.result_version
        events = [e for e, _ in seen]
        assert [p for e in events for p in problems(e)] == []  # the trainer's own protocol
        kinds = [e["event"] for e in events]
        assert kinds[0] == "progress" and kinds.index("start") < kinds.index("epoch") and kinds[-1] == "done"
        assert [e["epoch"] for e in events if e["event"] == "epoch"] == [1, 2, 3]
        assert events[-1]["version"] == final.result_version
        assert any(state == train_jobs.RUNNING for _, state in seen), "nothing arrived while the job ran"
        assert project.model(final.result_version).status == "candidate"  # registered, never deployed
        assert final.worker == "w1" and final.finished_at >= final.started_at and final.error is None


@pytest.mark.slow
def test_cancel_stops_a_running_job(database, tmp_path: Path):
    folder = tiny_project(tmp_path / "tiny", database)
    with Project.open(folder) as project:
        job = train_jobs.request_retrain(project, {"mode": "supervised", "epochs": 200}, "ann")
        thread, _, ended = start_worker(folder, heartbeat_s=0.1)
        wait_until(lambda: any(e.event["event"] == "epoch" for e in train_jobs.events_since(project, job.id)),
                   what="the first epoch")
        assert train_jobs.request_cancel(project, job.id).state == train_jobs.RUNNING
        thread.join(timeout=120)
        assert not thread.is_alive()
        final = train_jobs.job(project, job.id)
        assert final.state == train_jobs.CANCELLED and final.error == "cancelled on request"
        assert ended == [final] and final.result_version is None
        assert train_jobs.events_since(project, job.id)[-1].event == {"event": "cancelled"}
        epochs = [e.event["epoch"] for e in train_jobs.events_since(project, job.id) if e.event["event"] == "epoch"]
        assert 1 <= len(epochs) < 200 and project.models() == []  # stopped mid-way, nothing registered


@pytest.mark.slow
def test_a_job_with_too_few_labels_fails_with_the_reason(database, tmp_path: Path):
    folder = tiny_project(tmp_path / "few", database, n_ok=4, n_per_defect=1)
    with Project.open(folder) as project:
        job = train_jobs.request_retrain(project, {"mode": "supervised"}, "ann")
        thread, _, _ = start_worker(folder)
        thread.join()
        final = train_jobs.job(project, job.id)
        assert final.state == train_jobs.FAILED and "label" in final.error.lower()
        assert train_jobs.events_since(project, job.id)[-1].event == {"event": "error", "message": final.error}


def _worker_process(folder: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "app", "worker", str(folder), "--device", "cpu", "--poll",
                             "0.2", "--name", "w-proc", *extra], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _training_started(project: Project, job_id: int, worker: subprocess.Popen) -> bool:
    if worker.poll() is not None:
        raise AssertionError(f"the worker ended early:\n{worker.communicate()[0]}")
    return any(e.event["event"] in ("epoch", "start") for e in train_jobs.events_since(project, job_id))


@pytest.mark.slow
def test_a_killed_workers_job_is_recovered_and_done_by_another(database, tmp_path: Path):
    folder = tiny_project(tmp_path / "tiny", database)
    with Project.open(folder) as project:
        # Long enough to be killed halfway; the time budget ends the run that follows.
        job = train_jobs.request_retrain(project, {"mode": "supervised", "epochs": 200, "time_budget_s": 4}, "ann")
        worker = _worker_process(folder, "--heartbeat", "0.2")
        try:
            wait_until(lambda: _training_started(project, job.id, worker), what="the worker to start training")
        finally:
            worker.kill()  # a power cut: no goodbye, the job stays "running"
            worker.communicate(timeout=60)
        assert train_jobs.job(project, job.id).state == train_jobs.RUNNING
        (recovered,) = wait_until(lambda: train_jobs.recover_stale(project, stale_after_s=1.0),
                                  what="the heartbeat to go stale")
        assert recovered.state == train_jobs.QUEUED and "w-proc stopped answering" in recovered.error
        thread, _, ended = start_worker(folder)  # the next worker runs it as it was asked for
        thread.join()
        assert ended[0].id == job.id and ended[0].state == train_jobs.DONE and ended[0].attempts == 2
        assert project.model(ended[0].result_version).status == "candidate"


@pytest.mark.slow
@pytest.mark.skipif(os.name != "posix", reason="SIGTERM is POSIX")
def test_sigterm_puts_the_running_job_back_in_the_queue(tmp_path: Path):
    folder = tiny_project(tmp_path / "tiny")
    with Project.open(folder) as project:
        job = train_jobs.request_retrain(project, {"mode": "supervised", "epochs": 200}, "ann")
        worker = _worker_process(folder)
        try:
            wait_until(lambda: _training_started(project, job.id, worker), what="the worker to start training")
            worker.send_signal(signal.SIGTERM)
            out, _ = worker.communicate(timeout=120)
        finally:
            worker.kill()
        assert worker.returncode == 0, out
        assert "worker w-proc stopped" in out and "Traceback" not in out
        final = train_jobs.job(project, job.id)
        assert (final.state, final.worker, final.attempts) == (train_jobs.QUEUED, None, 0)
        assert "was stopped before the job finished" in final.error
        assert project.models() == []


# -- the command line ----------------------------------------------------------------------


def test_jobs_are_queued_listed_and_cancelled_from_the_command_line(store: Path, capsys):
    code, out, err = run(capsys, "retrain", store, "--on-server", "--epochs", "2", "--by", "ann", "--no-wait")
    assert code == 0 and "queued training job 1 for ann (epochs 2)" in out, err
    code, out, _ = run(capsys, "jobs", store)
    assert code == 0 and out.splitlines()[1].split()[:3] == ["1", "queued", "ann"]
    code, out, _ = run(capsys, "jobs", store, "--cancel", "1")
    assert code == 0 and "cancelled" in out
    code, out, err = run(capsys, "jobs", store, "--watch", "1")
    assert code == 3 and "job 1 cancelled" in err
    code, out, err = run(capsys, "jobs", store, "--cancel", "7")
    assert code == 2 and "no training job 7" in err
    code, out, err = run(capsys, "retrain", store)
    assert code == 2 and "--on-server" in err and "lineside train" in err
    code, out, err = run(capsys, "worker", store, "--once")
    assert code == 0 and "no training job is waiting" in out


def test_the_worker_says_what_is_wrong_with_its_project(tmp_path: Path, capsys):
    code, out, err = run(capsys, "worker", tmp_path / "nowhere", "--once")
    assert code == 2 and "is not a Lineside project" in err and "Traceback" not in err
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder = tmp_path / "plant"
    for sub in ("images", "masks", "models"):
        (folder / sub).mkdir(parents=True)
    plant.write_pointer(folder, plant.parse_url(f"postgresql+psycopg://lineside@127.0.0.1:{port}/line3"))
    code, out, err = run(capsys, "worker", folder, "--once")
    assert code == 2 and "Cannot reach the PostgreSQL server" in err and "Traceback" not in err


@pytest.mark.slow
def test_retrain_on_server_prints_the_lines_lineside_train_prints(tmp_path: Path, capsys):
    folder = tiny_project(tmp_path / "tiny")
    thread, shutdown, _ = start_worker(folder, once=False)  # polls for the job the command below queues
    try:
        code, out, err = run(capsys, "retrain", folder, "--on-server", "--mode", "supervised", "--epochs", "2")
    finally:
        shutdown.set()
        thread.join()
    assert code == 0, err
    assert "queued training job 1" in out and "training on CPU" in out
    assert "epoch   1/2" in out and "epoch   2/2" in out and "new candidate v1 (supervised)" in out


# -- schema version 4 --------------------------------------------------------------------


def _version_3_database(engine: sa.Engine) -> None:
    """What a version-3 Lineside made: the revisions up to 0003, with a few rows."""
    with engine.begin() as conn:
        migrations.upgrade(conn, None, 3)
        conn.execute(sa.text("INSERT INTO settings (key, value) VALUES ('name', '\"Line 3\"')"))
        conn.execute(sa.text("INSERT INTO images (sha256, path, filename, source, captured_at, width, height, split) "
                             "VALUES ('ab', 'images/ab/ab.png', 'a.png', 'import', '2025-01-02 03:04:05', 8, 8, "
                             "'golden')"))
        conn.execute(sa.text("INSERT INTO labels (image_id, verdict, author, created_at) "
                             "VALUES (1, 'ok', 'ann', '2025-01-02 03:05:00')"))
    engine.dispose()


def _check_upgraded(folder: Path) -> None:
    with Project.open(folder) as project:
        assert project.name == "Line 3" and project.image(1).split == "golden"
        assert project.label(1).verdict == OK and project.label(1).author == "ann"
        with project._read() as conn:
            assert conn.scalar(db.schema_version.select()) == db.SCHEMA_VERSION
            assert conn.scalar(sa.text("SELECT version_num FROM alembic_version")) == f"{db.SCHEMA_VERSION:04d}"
        job = train_jobs.request_retrain(project, TRAIN, "ann")
        assert train_jobs.claim_next(project, "w1").id == job.id
        train_jobs.append_event(project, job.id, {"event": "cancelled"})
        assert [e.event for e in train_jobs.events_since(project, job.id)] == [{"event": "cancelled"}]


def test_a_version_3_project_db_is_upgraded_to_the_current_schema_on_opening(tmp_path: Path):
    folder = tmp_path / "old"
    for sub in ("images", "masks", "models"):
        (folder / sub).mkdir(parents=True)
    _version_3_database(sa.create_engine(f"sqlite:///{folder / 'project.db'}"))
    _check_upgraded(folder)


def test_a_version_3_plant_database_is_upgraded_by_migrate_schema(plant_url: str, tmp_path: Path, capsys):
    folder = tmp_path / "plant"
    for sub in ("images", "masks", "models"):
        (folder / sub).mkdir(parents=True)
    _version_3_database(sa.create_engine(plant_url))
    plant.write_pointer(folder, plant.parse_url(plant_url))
    code, out, err = run(capsys, "worker", folder, "--once")
    assert code == 2 and "holds schema 3" in err and f"lineside migrate-schema {folder}" in err
    code, out, err = run(capsys, "migrate-schema", folder)
    assert code == 0 and f"upgraded from schema 3 to {db.SCHEMA_VERSION}" in out, err
    _check_upgraded(folder)


def test_the_queue_tables_come_with_a_copy_to_the_server(plant_url: str, tmp_path: Path):
    from app.core.plant_copy import copy_to_server

    with Project.create(tmp_path / "pc") as project:
        project.add_image_bytes(encoded(part_image(1)), "a.png")
        job = train_jobs.request_retrain(project, TRAIN, "ann")
        train_jobs.append_event(project, job.id, {"event": "progress", "phase": "prepare", "step": 0, "steps": 1,
                                                  "eta_s": None})
    report = copy_to_server(tmp_path / "pc", plant_url, tmp_path / "plant")
    assert report.rows["train_jobs"] == 1 and report.rows["train_job_events"] == 1
    with Project.open(tmp_path / "plant") as project:
        assert train_jobs.job(project, job.id).options == job.options
        assert json.dumps(train_jobs.events_since(project, job.id)[0].event)
