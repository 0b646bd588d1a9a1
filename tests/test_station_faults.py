"""Fault test of the plant stations: the PostgreSQL server goes away while four stations
inspect, and comes back 20 s later.

Four real `lineside run --station` processes (simulated line, tiny model) on a project
whose database runs on a server of this test's own (tests/plant_fixtures.py), stopped
the way an administrator does (pg_ctl stop -m fast: open connections are cut). No
station may stop judging parts; afterwards every result a station acknowledged (its
final line: "N parts judged, N committed, ...") is in the database exactly once.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.core import db, stations
from app.core.project import Project
from tests.onnx_fixtures import write_model
from tests.plant_fixtures import stoppable_postgres_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
STATIONS = 4
OUTAGE_S = 20.0
LINE = "line-1"
FINAL = re.compile(r"station (\S+): (\d+) parts judged, (\d+) committed, (\d+) sent, (\d+) waiting in the outbox")


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def outbox_pending(folder: Path) -> int:
    """Results waiting in a station's outbox, read as a second process would."""
    conn = sqlite3.connect(f"{(folder / 'outbox.db').as_uri()}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
    finally:
        conn.close()


def stored_per_station(project: Project) -> dict[str, tuple[int, int]]:
    """Station -> (rows, distinct result_uids) in the plant database."""
    table = db.inspections
    query = sa.select(table.c.station, sa.func.count(), sa.func.count(sa.distinct(table.c.result_uid)))
    with project._read() as conn:
        return {name: (rows, uids) for name, rows, uids in conn.execute(query.group_by(table.c.station))}


@pytest.mark.slow
def test_stations_keep_judging_through_a_database_outage_and_lose_nothing(
        stoppable_postgres_server, tmp_path: Path):  # noqa: F811
    server = stoppable_postgres_server
    share = tmp_path / "share" / "line1"
    with Project.create(share, database=server.url(server.new_database())) as project:
        folder = project.models_dir / "v1"
        write_model(folder / "model.onnx", version="v1", threshold=0.3)
        project.register_model("v1", folder, 0.3, {}, {})
        project.deploy("v1")

    env = dict(os.environ, LINESIDE_HOME=str(tmp_path / "home"))
    names = [f"press-{i}" for i in range(1, STATIONS + 1)]
    folders = {name: tmp_path / "stations" / name for name in names}
    logs = {name: tmp_path / f"{name}.err" for name in names}
    procs = {}
    for i, name in enumerate(names):
        argv = [sys.executable, "-m", "app", "run", str(share), "--source", f"sim:{i}", "--rate", "10",
                "--station", name, "--line", LINE, "--station-dir", str(folders[name]), "--no-keep", "--quiet"]
        with open(logs[name], "w") as err:
            procs[name] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=err)
    project = Project.open(share)
    try:
        def running() -> bool:
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} ended: {logs[name].read_text()}"
            stored = stored_per_station(project)
            return all(stored.get(name, (0, 0))[0] > 0 for name in names)

        wait_until(running, 60, "every station to store results")
        before = {s.name: s.parts_today for s in stations.stations(project, LINE)}

        server.stop()
        down = time.monotonic()
        pending_early = {name: outbox_pending(folders[name]) for name in names}
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down)))
        pending_late = {name: outbox_pending(folders[name]) for name in names}
        for name, proc in procs.items():
            assert proc.poll() is None, f"{name} stopped during the outage: {logs[name].read_text()}"
            # Judged and acknowledged all along: about 10 parts a second went into its outbox.
            assert pending_late[name] - pending_early[name] >= 50, (name, pending_early, pending_late)
        server.start()

        def caught_up() -> bool:
            rows = {s.name: s for s in stations.stations(project, LINE)}
            # The outage's backlog is sent (a result judged a moment ago may still wait).
            return all(rows[name].online and rows[name].parts_today > before[name] + 50
                       and rows[name].buffered <= 10 for name in names)  # fmt: skip

        wait_until(caught_up, 30, "heartbeats with the outage's parts and the backlogs sent")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()

    try:
        for name, proc in procs.items():
            text = logs[name].read_text()
            assert proc.returncode == 0, text
            assert "the project cannot be reached" in text and "reachable again" in text, text
            (final,) = FINAL.findall(text)
            station, judged, committed, _sent, waiting = final
            assert station == name and int(judged) == int(committed) and int(waiting) == 0, final
            acknowledged = int(committed)
            assert stored_per_station(project)[name] == (acknowledged, acknowledged), name
        assert all(s.state == "stopped" for s in stations.stations(project, LINE))
    finally:
        project.close()
