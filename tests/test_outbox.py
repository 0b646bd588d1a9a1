"""A plant station's outbox (app/core/outbox.py): results acknowledged on the station's own
disk, forwarded to the project's database once each, whatever fails on the way.

Real project stores (SQLite: record_results behaves the same on both stores), a real
tiny model, real threads; a crash is a real process killed after its acknowledgements.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.core import db, outbox
from app.core.errors import LinesideError
from app.core.line_session import CallbackListener, LineSession, PartResult
from app.core.line_sources import SimulatedLineSource
from app.core.outbox import Outbox
from app.core.project import Project
from app.core.runtime import Inspector
from tests.onnx_fixtures import write_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def project(tmp_path):
    proj = Project.create(tmp_path / "project")
    yield proj
    proj.close()


def part(seq: int, passed: bool = True) -> PartResult:
    return PartResult(seq=seq, trigger=None, at=time.time(), sources=["Camera 1"], verdicts=[], passed=passed,
                      score=0.1 if passed else 0.9, defect_class=None if passed else "scratch", class_code=0,
                      model_version="v1", image_sha=f"{seq:064x}", timing={"inspect": 1.5})  # fmt: skip


def stored(project: Project) -> tuple[int, int, dict[str, int]]:
    """(rows, distinct result_uids, rows per station) of the project's inspections."""
    table = db.inspections
    with project._read() as conn:
        rows = conn.scalar(sa.select(sa.func.count()).select_from(table))
        uids = conn.scalar(sa.select(sa.func.count(sa.distinct(table.c.result_uid))))
        per_station = dict(conn.execute(sa.select(table.c.station, sa.func.count()).group_by(table.c.station)).all())
    return rows, uids, per_station


def wait_until(condition, timeout: float = 20.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what or condition}"
        time.sleep(0.02)


def test_a_session_acknowledges_from_the_outbox_and_the_forwarder_sends_each_once(project, tmp_path):
    inspector = Inspector(write_model(tmp_path / "model.onnx", threshold=0.3), threshold=0.3)
    box = Outbox(tmp_path / "station" / "outbox.db", "press-3")
    committed: list[PartResult] = []
    session = LineSession(inspector, [SimulatedLineSource(rate_hz=0)], [CallbackListener(on_committed=committed.extend)],
                          model="v7", sink=box, max_parts=30)  # fmt: skip
    session.start()
    assert session.wait(30)
    session.stop()
    assert session.committed == 30 == box.pending() == len(committed)
    assert stored(project)[0] == 0  # acknowledged before anything reached the database
    box.start(project.record_results)
    assert box.stop(drain_s=20) == 0 and box.sent == 30
    assert stored(project) == (30, 30, {"press-3": 30})
    rows = {row["result_uid"]: row for row in project.inspections()}
    for result in committed:  # what the PLC heard is what the database holds
        row = rows[result.result_uid]
        assert (row["verdict"], row["model_version"], row["image_sha"]) == (result.label, "v7", result.image_sha)
        assert row["score"] == pytest.approx(result.score)


def test_acknowledged_results_survive_a_crash_and_are_sent_once(project, tmp_path):
    path = tmp_path / "station" / "outbox.db"
    model = write_model(tmp_path / "model.onnx", threshold=0.3)
    # A station that acknowledges 25 results and is killed before it could send any.
    script = textwrap.dedent(f"""
        import os
        from app.core.line_session import CallbackListener, LineSession
        from app.core.line_sources import SimulatedLineSource
        from app.core.outbox import Outbox
        from app.core.runtime import Inspector
        box = Outbox({str(path)!r}, "press-3")
        session = LineSession(Inspector({str(model)!r}), [SimulatedLineSource(rate_hz=0)], sink=box, max_parts=25)
        session.start()
        session.wait(60)
        session.stop()
        print(session.committed, flush=True)
        os._exit(9)
    """)
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 9, run.stderr
    acknowledged = int(run.stdout.strip())
    assert acknowledged == 25

    box = Outbox(path, "press-3")
    assert box.pending() == acknowledged
    box.start(project.record_results)
    assert box.stop(drain_s=20) == 0
    assert stored(project) == (acknowledged, acknowledged, {"press-3": acknowledged})

    again = Outbox(path, "press-3")  # the next start: nothing left to send twice
    assert again.pending() == 0 and again.forward_once(project.record_results) == 0
    again.close()
    assert stored(project)[0] == acknowledged


class FlakyProject:
    """The real project behind a connection that fails: the first *refused* calls never
    reach the database; the next *lost* calls are stored but their answer is lost (the
    connection dropped after the commit); then every call goes through."""

    def __init__(self, project: Project, refused: int, lost: int) -> None:
        self.project, self.refused, self.lost = project, refused, lost
        self.calls = 0

    def record_results(self, rows: list[dict]) -> int:
        self.calls += 1
        if self.calls <= self.refused:
            raise LinesideError("Cannot reach the PostgreSQL server (connection refused)")
        stored_now = self.project.record_results(rows)
        if self.calls <= self.refused + self.lost:
            raise LinesideError("server closed the connection unexpectedly")
        return stored_now


def test_a_forwarder_failing_then_succeeding_stores_each_result_once(project, tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "BATCH_ROWS", 7)  # several batches, each failing in turn
    monkeypatch.setattr(outbox, "RETRY_MIN_S", 0.01)
    monkeypatch.setattr(outbox, "RETRY_MAX_S", 0.05)
    box = Outbox(tmp_path / "outbox.db", "press-3")
    box.commit([part(i, passed=i % 3 != 0) for i in range(1, 31)])
    flaky = FlakyProject(project, refused=3, lost=2)
    box.start(flaky.record_results)
    wait_until(lambda: box.pending() == 0, what="the outbox to empty")
    assert box.stop() == 0
    assert flaky.calls >= 3 + 2 + 30 // 7
    assert stored(project) == (30, 30, {"press-3": 30})
    fails = [r for r in project.inspections() if r["verdict"] == "FAIL"]
    assert len(fails) == 10 and {r["defect_class"] for r in fails} == {"scratch"}


def test_a_failing_forwarder_backs_off_instead_of_busy_looping(project, tmp_path):
    box = Outbox(tmp_path / "outbox.db", "press-3")
    box.commit([part(1)])
    calls: list[float] = []

    def unreachable(rows):
        calls.append(time.monotonic())
        raise LinesideError("Cannot reach the PostgreSQL server")

    box.start(unreachable)
    time.sleep(1.2)
    assert 1 <= len(calls) <= 3  # tries at 0, 0.5 and 1.5 s: the pause doubles
    assert box.last_error and "Cannot reach" in box.last_error
    started = time.monotonic()
    assert box.stop(drain_s=5) == 1  # the database is away: it gives up soon, the result stays
    assert time.monotonic() - started < 5
    reopened = Outbox(tmp_path / "outbox.db", "press-3")
    assert reopened.pending() == 1
    reopened.close()


def test_a_resent_batch_or_a_retried_commit_is_stored_once(project, tmp_path):
    box = Outbox(tmp_path / "outbox.db", "press-3")
    results = [part(i) for i in range(1, 6)]
    box.commit(results)
    box.commit(results[:2])  # the writer retried a commit it thought had failed: same result_uids
    assert box.pending() == 5
    sent: list[list[dict]] = []
    assert box.forward_once(sent.append) == 5
    rows = sent[0]
    assert project.record_results(rows) == 5
    assert project.record_results(rows) == 0  # the same batch again, after an ambiguous failure
    assert project.record_results(rows[3:] + [dict(rows[0], result_uid="fresh")]) == 1
    assert stored(project) == (6, 6, {"press-3": 6})
    box.close()


def test_an_outbox_over_its_cap_says_so_and_drops_nothing(tmp_path):
    alarms: list[str] = []
    box = Outbox(tmp_path / "outbox.db", "press-3", max_rows=5, on_alarm=alarms.append)
    for i in range(8):
        box.commit([part(i)])
    assert box.pending() == 8 and box.over_capacity
    assert len(alarms) == 1 and "more than 5" in alarms[0]  # once a minute, not once a part
    box.close()


def test_the_writer_and_the_forwarder_share_the_outbox_safely(project, tmp_path, monkeypatch):
    monkeypatch.setattr(outbox, "BATCH_ROWS", 13)
    box = Outbox(tmp_path / "outbox.db", "press-3")
    box.start(project.record_results)

    def writer(offset: int) -> None:
        for i in range(40):
            box.commit([part(offset + i)])

    threads = [threading.Thread(target=writer, args=(k * 1000,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert box.stop(drain_s=20) == 0
    assert stored(project) == (120, 120, {"press-3": 120})
