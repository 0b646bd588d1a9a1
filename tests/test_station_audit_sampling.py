"""Audit sampling on a plant station (app/core/outbox.py, app/core/station_agent.py): PASS
parts picked by result_uid wait as files in the station's outbox and reach the project's
labeling queue once each, after their results, whatever fails on the way.

SQLite projects, the tiny ONNX fixture model (score = brightness: the simulated line has
PASS and FAIL parts), real line sessions and threads; a crash is a real process killed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from app.core import atomic, outbox
from app.core.audit_sampling import SOURCE, TAG_INSPECTION, TAG_MODEL, escapes, sample_tags
from app.core.errors import DiskFullError, LinesideError
from app.core.line_session import CallbackListener, LineSession, PartResult
from app.core.line_sources import SimulatedLineSource
from app.core.monitoring import should_sample_uid
from app.core.outbox import SAMPLES_DIR, Outbox
from app.core.project import Project
from app.core.runtime import Inspector
from app.core.station_agent import StationAgent
from tests.onnx_fixtures import write_model

ROOT = Path(__file__).resolve().parents[1]
RATE = 0.5


@pytest.fixture
def project(tmp_path):
    proj = Project.create(tmp_path / "share" / "line1")
    proj.set_setting("audit_sample_rate", RATE)
    yield proj
    proj.close()


def wait_until(condition, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def picked(results: list[PartResult]) -> set[str]:
    return {r.result_uid for r in results if r.passed and should_sample_uid(r.result_uid, RATE)}


def samples_per_uid(project: Project) -> Counter:
    records = [r for r in project.images() if TAG_INSPECTION in r.tags]
    assert all(r.source == SOURCE for r in records)
    return Counter(r.tags[TAG_INSPECTION] for r in records)


def run_line(sink: Outbox, parts: int, views: int = 1, model: str = "v1", inspector=None) -> list[PartResult]:
    """Judge *parts* simulated parts into *sink*; the results it acknowledged."""
    if inspector is None:
        inspector = Inspector(write_model(sink.path.parent / "model.onnx", threshold=0.3), threshold=0.3)
    committed: list[PartResult] = []
    sources = [SimulatedLineSource(seed=view + 1, rate_hz=0) for view in range(views)]
    session = LineSession(inspector, sources, [CallbackListener(on_committed=committed.extend)], model=model,
                          sink=sink, max_parts=parts)  # fmt: skip
    session.start()
    assert session.wait(60)
    session.stop()
    assert len(committed) == parts
    return committed


def test_a_station_sends_its_sampled_pass_parts_to_the_labeling_queue_once(project, tmp_path):
    folder = project.models_dir / "v1"
    write_model(folder / "model.onnx", version="v1", threshold=0.3)
    project.register_model("v1", folder, 0.3, {}, {})
    project.deploy("v1")
    agent = StationAgent(project, "press-1", "line-1", tmp_path / "station")
    inspector, model = agent.prepare()  # connects: the project's rate is known now
    assert agent.outbox.sample_rate == RATE
    committed: list[PartResult] = []
    views = [SimulatedLineSource(seed=1, rate_hz=0), SimulatedLineSource(seed=2, rate_hz=0)]
    session = LineSession(inspector, views, [CallbackListener(on_committed=committed.extend)],
                          model=model.version, sink=agent.outbox, max_parts=40)  # fmt: skip
    session.start()
    agent.start(session)
    assert session.wait(60)
    session.stop()
    assert agent.stop() == 0 and agent.outbox.pending_samples() == 0

    sampled = picked(committed)
    fails = {r.result_uid for r in committed if not r.passed}
    assert sampled and fails and len(sampled) < sum(r.passed for r in committed)
    assert all(r.images is None for r in committed)  # dropped once the outbox had them
    assert samples_per_uid(project) == {uid: 2 for uid in sampled}  # one image per view, once
    records = [r for r in project.images() if TAG_INSPECTION in r.tags]
    assert {r.tags[TAG_MODEL] for r in records} == {"v1"}
    assert escapes(project, "v1")["sampled"] == 2 * len(sampled)
    assert list((tmp_path / "station" / SAMPLES_DIR).iterdir()) == []


class Unreachable:
    """The project behind a connection that is down until `up` is set; then the first
    *lost* sample calls are stored but their answer is lost."""

    def __init__(self, project: Project, lost: int) -> None:
        self.project, self.lost = project, lost
        self.up = threading.Event()
        self.sample_calls = 0

    def record_results(self, rows: list[dict]) -> int:
        if not self.up.is_set():
            raise LinesideError("Cannot reach the PostgreSQL server (connection refused)")
        return self.project.record_results(rows)

    def add_sample(self, image: np.ndarray, result_uid: str, model_version: str) -> None:
        self.sample_calls += 1
        if not self.up.is_set():
            raise LinesideError("Cannot reach the share")
        self.project.add_image_array(image, source=SOURCE, tags=sample_tags(result_uid, model_version))
        if self.lost:
            self.lost -= 1
            raise LinesideError("server closed the connection unexpectedly")


def test_samples_wait_while_the_project_is_away_and_arrive_once(project, tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "RETRY_MIN_S", 0.01)
    monkeypatch.setattr(outbox, "RETRY_MAX_S", 0.05)
    box = Outbox(tmp_path / "station" / "outbox.db", "press-3")
    box.sample_rate = RATE
    link = Unreachable(project, lost=2)
    box.start(link.record_results, link.add_sample)
    committed = run_line(box, 40)
    sampled = picked(committed)
    assert sampled and box.pending() == 40 and box.pending_samples() == len(sampled)
    assert link.sample_calls == 0  # a sample never goes before its result
    assert len(list((box.samples_dir).iterdir())) == len(sampled)

    link.up.set()
    wait_until(lambda: box.pending() == 0 and box.pending_samples() == 0, what="the outbox to empty")
    assert box.stop() == 0
    assert link.lost == 0 and link.sample_calls == len(sampled) + 2  # two answers lost, resent
    assert samples_per_uid(project) == {uid: 1 for uid in sampled}
    assert list(box.samples_dir.iterdir()) == []


def test_pending_samples_survive_a_crash_and_stray_files_are_cleared(project, tmp_path):
    path = tmp_path / "station" / "outbox.db"
    model = write_model(tmp_path / "model.onnx", threshold=0.3)
    # A station that acknowledges 30 results and is killed before it could send any.
    script = textwrap.dedent(f"""
        import json, os
        from app.core.line_session import CallbackListener, LineSession
        from app.core.line_sources import SimulatedLineSource
        from app.core.outbox import Outbox
        from app.core.runtime import Inspector
        box = Outbox({str(path)!r}, "press-3")
        box.sample_rate = {RATE}
        done = []
        session = LineSession(Inspector({str(model)!r}), [SimulatedLineSource(rate_hz=0)],
                              [CallbackListener(on_committed=done.extend)], model="v7", sink=box, max_parts=30)
        session.start()
        session.wait(60)
        session.stop()
        print(json.dumps([[r.result_uid, r.passed] for r in done]), flush=True)
        os._exit(9)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr
    done = json.loads(run.stdout.strip().splitlines()[-1])
    sampled = {uid for uid, passed in done if passed and should_sample_uid(uid, RATE)}
    assert len(done) == 30 and sampled
    samples = path.parent / SAMPLES_DIR
    (samples / "deadbeef-0.png").write_bytes(b"a commit that crashed before its transaction")
    (samples / ".deadbeef-1.png.x1y2.tmp").write_bytes(b"half a file")

    box = Outbox(path, "press-3")
    assert box.pending() == 30 and box.pending_samples() == len(sampled)
    assert sorted(p.name for p in samples.iterdir()) == sorted(f"{uid}-0.png" for uid in sampled)
    box.start(project.record_results, lambda image, uid, version: project.add_image_array(
        image, source=SOURCE, tags=sample_tags(uid, version)))
    assert box.stop(drain_s=20) == 0 and box.pending_samples() == 0
    assert samples_per_uid(project) == {uid: 1 for uid in sampled}
    assert {r.tags[TAG_MODEL] for r in project.images()} == {"v7"}


def test_a_project_refusing_samples_slows_no_result_down(project, tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "BATCH_ROWS", 5)
    box = Outbox(tmp_path / "outbox.db", "press-3")
    box.sample_rate = 1.0
    attempts: list[float] = []

    def refused(image, result_uid, model_version):
        attempts.append(time.monotonic())
        raise LinesideError("The share is read-only")

    box.commit([part(i) for i in range(1, 41)])
    started = time.monotonic()
    box.start(project.record_results, refused)
    wait_until(lambda: box.pending() == 0, what="the results to go")
    assert time.monotonic() - started < 4  # 8 batches; behind the samples' back-off they would take 10 s
    stopping = time.monotonic()
    assert box.stop(drain_s=5) == 0 and time.monotonic() - stopping < 3
    assert 1 <= len(attempts) <= 4 and box.pending_samples() == 40
    reopened = Outbox(tmp_path / "outbox.db", "press-3")
    assert reopened.pending_samples() == 40 and len(list(reopened.samples_dir.iterdir())) == 40
    reopened.close()


def part(seq: int, passed: bool = True) -> PartResult:
    image = np.full((32, 32, 3), seq % 256, np.uint8)
    return PartResult(seq=seq, trigger=None, at=time.time(), sources=["Camera 1"], verdicts=[], passed=passed,
                      score=0.1, defect_class=None, class_code=0, model_version="v1", images=[image],
                      image_sha=f"{seq:064x}", timing={"inspect": 1.0})  # fmt: skip


def test_a_sample_file_that_cannot_be_written_loses_the_sample_not_the_result(tmp_path, monkeypatch):
    box = Outbox(tmp_path / "outbox.db", "press-3")
    results = [part(i) for i in range(1, 21)]
    assert not any(box.keeps(r) for r in results)  # off until the agent knows the rate
    box.sample_rate = 1.0
    assert all(box.keeps(r) for r in results) and not box.keeps(part(99, passed=False))

    def full_disk(target, data):
        raise DiskFullError("The disk is full")

    monkeypatch.setattr(atomic, "write_bytes", full_disk)
    box.commit(results[:10])
    assert box.pending() == 10 and box.pending_samples() == 0
    monkeypatch.undo()
    box.commit(results)  # a retried commit: the first ten stored once, their samples now written
    assert box.pending() == 20 and box.pending_samples() == 20
    box.commit(results[10:])
    assert box.pending_samples() == 20
    box.close()
