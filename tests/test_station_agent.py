"""A plant station following its line's model (app/core/station_agent.py,
app/core/station_models.py): the deployed model copied, checked and switched between two
parts; heartbeats and the roll-out view; a tampered copy refused; a start from the local
copy while the project is away.

Model following runs on a real PostgreSQL project (tests/plant_fixtures.py); the local
cache on SQLite projects. Real tiny models (tests/onnx_fixtures.py), real threads.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.core import stations
from app.core.line_session import CallbackListener, LineSession, PartResult
from app.core.line_sources import SimulatedLineSource
from app.core.project import Project
from app.core.runtime import file_sha256
from app.core.station_agent import StationAgent
from app.core.station_models import LocalModel, ModelRefused, StationModels
from tests.onnx_fixtures import write_model
from tests.plant_fixtures import plant_url, postgres_server  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
LINE = "line-1"
# Thresholds tell the versions apart in every view's verdict (Verdict.threshold).
THRESHOLDS = {"v1": 0.30, "v2": 0.31, "v3": 0.32}


def add_model(project: Project, version: str, deploy: bool = False) -> Path:
    folder = project.models_dir / version
    write_model(folder / "model.onnx", version=version, threshold=THRESHOLDS[version])
    project.register_model(version, folder, THRESHOLDS[version], {}, {})
    if deploy:
        project.deploy(version)
    return folder / "model.onnx"


def wait_until(condition, timeout: float = 15.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def station_row(project: Project, name: str) -> stations.StationStatus:
    return next(s for s in stations.stations(project) if s.name == name)


class Station:
    """A station as `lineside run --station` builds it, in this process: two views per part."""

    def __init__(self, project, folder: Path, name: str = "press-1", **agent_options) -> None:
        self.results: list[PartResult] = []
        self.lock = threading.Lock()
        self.agent = StationAgent(project, name, LINE, folder, **agent_options)
        inspector, model = self.agent.prepare()
        views = [SimulatedLineSource(seed=1, rate_hz=40), SimulatedLineSource(seed=2, rate_hz=40)]
        self.session = LineSession(inspector, views, [CallbackListener(on_result=self._judged)],
                                   model=model.version, sink=self.agent.outbox)  # fmt: skip

    def _judged(self, result: PartResult) -> None:
        with self.lock:
            self.results.append(result)

    def judged(self) -> int:
        with self.lock:
            return len(self.results)

    def start(self, follow: bool = True) -> "Station":
        self.session.start()
        if follow:
            self.agent.start(self.session)
        else:
            self.agent.attach(self.session)
        return self

    def stop(self) -> int:
        self.session.stop()
        return self.agent.stop()


@pytest.fixture
def plant_project(plant_url: str, tmp_path: Path):  # noqa: F811
    project = Project.create(tmp_path / "share" / "line1", database=plant_url)
    add_model(project, "v1", deploy=True)
    add_model(project, "v2")
    yield project
    project.close()


def test_a_deploy_rolls_out_to_the_station_between_two_parts(plant_project: Project, tmp_path: Path):
    project = plant_project
    station = Station(project, tmp_path / "station", poll_s=0.2, heartbeat_s=0.5).start()
    try:
        wait_until(lambda: station.judged() >= 10, what="parts judged with v1")
        project.deploy("v2")
        deployed = time.monotonic()
        wait_until(lambda: station.session.model_version == "v2", 5, "the station to run v2")
        switch_s = time.monotonic() - deployed
        at_switch = station.judged()
        wait_until(lambda: station.judged() >= at_switch + 10, what="parts judged with v2")

        sha = file_sha256(project.model("v2").onnx_path)
        wait_until(lambda: station_row(project, "press-1").model_version == "v2", 5, "the heartbeat to say v2")
        row = station_row(project, "press-1")
        assert (row.state, row.model_sha, row.line, row.message) == ("running", sha, LINE, None)
        assert row.parts_today > 0 and row.online
        (rollout,) = stations.rollout(project, LINE)
        assert (rollout.running, rollout.wanted, rollout.done) == ("v2", "v2", True)

        # Pinned to one line: back to v1, from the copy the station kept (nothing copied).
        stations.deploy_to_line(project, LINE, "v1")
        wait_until(lambda: station.session.model_version == "v1", 5, "the station to run v1 again")
        at_return = station.judged()
        wait_until(lambda: station.judged() >= at_return + 5, what="parts judged with v1 again")
        wait_until(lambda: stations.rollout(project, LINE)[0].done, 5, "the roll-out of v1 to finish")
    finally:
        left = station.stop()
    assert switch_s < 3.0 and left == 0
    assert sorted(p.name for p in (tmp_path / "station" / "models").iterdir()) == ["v1", "v2"]
    assert json.loads((tmp_path / "station" / "current.json").read_text())["version"] == "v1"
    assert station_row(project, "press-1").state == "stopped"

    # Every part was judged by one model in all its views, and is stored as that model's.
    for result in station.results:
        assert {v.threshold for v in result.verdicts} == {THRESHOLDS[result.model_version]}, result.seq
    rows = sorted(project.inspections(), key=lambda r: r["id"])  # the outbox sends in commit order
    assert len(rows) == station.session.committed == len({r["result_uid"] for r in rows})
    assert {r["station"] for r in rows} == {"press-1"}
    runs = [version for version, _ in itertools.groupby(r["model_version"] for r in rows)]
    assert runs == ["v1", "v2", "v1"]  # one clean switch each way, no part in between


def test_a_copy_that_differs_from_the_deployed_file_is_refused(plant_project: Project, tmp_path: Path):
    project = plant_project
    # The following is driven by the test (check_model), so nothing races the tampering.
    station = Station(project, tmp_path / "station").start(follow=False)
    try:
        add_model(project, "v3")
        project.deploy("v3")
        # Overwritten on the share after the deploy checked it: another model's bytes.
        write_model(project.model("v3").onnx_path, version="v3", threshold=0.9)
        station.agent.check_model()
        assert station.session.model_version == "v1"
        assert "hash" in station.agent.message and "v1 keeps judging" in station.agent.message
        assert not (tmp_path / "station" / "models" / "v3").exists()
        station.agent.beat()
        row = station_row(project, "press-1")
        assert row.model_version == "v1" and "v3" in row.message and "hash" in row.message
        assert stations.rollout(project, LINE)[0].done is False

        station.agent.check_model()  # not copied again at every poll: after REFUSED_RETRY_S
        assert station.session.model_version == "v1"

        project.deploy("v2")  # the next deploy is followed as usual, and the message goes
        station.agent.check_model()
        assert station.session.model_version == "v2" and station.agent.message is None
    finally:
        station.stop()


# -- the local copies (SQLite projects) --------------------------------------------------


@pytest.fixture
def project(tmp_path: Path):
    proj = Project.create(tmp_path / "share" / "line1")
    add_model(proj, "v1", deploy=True)
    yield proj
    proj.close()


def test_a_station_starts_from_its_local_copy_when_the_project_is_away(project: Project, tmp_path: Path):
    folder = tmp_path / "station"
    first = Station(project.path, folder).start()
    wait_until(lambda: first.judged() >= 5, what="parts judged")
    assert first.stop() == 0
    sent = first.session.committed

    away = project.path.with_name("moved")
    project.close()
    shutil.move(project.path, away)  # the share is gone
    messages: list[str] = []
    offline = Station(project.path, folder, on_message=messages.append).start()
    try:
        assert offline.session.model_version == "v1"
        wait_until(lambda: offline.judged() >= 5, what="parts judged offline")
        assert offline.agent.online is False and any("local copy of model v1" in m for m in messages)
    finally:
        left = offline.stop()
    assert left == offline.session.committed  # kept for the next start

    shutil.move(away, project.path)  # back: the next start sends them
    again = Station(project.path, folder).start()
    wait_until(lambda: again.agent.outbox.pending() == 0, what="the outbox to empty")
    assert again.stop() == 0
    with Project.open(project.path) as reopened:
        rows = reopened.inspections()
    total = sent + offline.session.committed + again.session.committed
    assert len(rows) == len({r["result_uid"] for r in rows}) == total


def test_a_station_with_no_model_anywhere_says_why(tmp_path: Path):
    with pytest.raises(Exception, match="no model to run"):
        StationAgent(tmp_path / "nowhere", "press-1", LINE, tmp_path / "station").prepare()


def test_local_copies_are_checked_kept_and_pruned(project: Project, tmp_path: Path):
    models = StationModels(tmp_path / "station")
    source = project.model("v1").path
    sha = file_sha256(source / "model.onnx")
    with pytest.raises(ModelRefused, match="hash"):
        models.fetch(source, "v1", "0" * 64)
    assert not list((tmp_path / "station" / "models").iterdir())  # no partial copy left behind
    with pytest.raises(ModelRefused):
        models.fetch(source, "../v1", sha)
    for version in ("v1", "v2", "v3", "v4"):
        local = models.fetch(source, version, sha)
        assert file_sha256(local / "model.onnx") == sha
        time.sleep(0.01)
    assert models.prune(keep=["v1"]) == ["v2"]  # the current one and the two newest stay
    assert sorted(p.name for p in models.models_dir.iterdir()) == ["v1", "v3", "v4"]

    model = LocalModel("v4", sha, 0.3, "float", 2, models.models_dir / "v4", lanes=2)
    models.remember(model)
    assert models.current() == model
    loaded = models.load(model)
    assert loaded.threshold == 0.3 and loaded.threads == 2 and loaded.lanes == 2
    # A record written before lanes existed loads with one lane.
    record = json.loads(models.current_file.read_text())
    del record["lanes"]
    models.current_file.write_text(json.dumps(record))
    assert models.current() == LocalModel("v4", sha, 0.3, "float", 2, models.models_dir / "v4")
    (models.models_dir / "v4" / "model.onnx").write_bytes(b"damaged")
    assert models.current() is None  # a damaged local copy is not started from


# -- the command line --------------------------------------------------------------------


def test_lineside_run_station_judges_with_the_lines_model_and_reports(project: Project, tmp_path: Path, capsys):
    from app.cli import main

    folder = tmp_path / "station"
    argv = [sys.executable, "-m", "app", "run", str(project.path), "--source", "sim", "--rate", "0",
            "--max-parts", "15", "--station", "press-1", "--line", LINE, "--station-dir", str(folder),
            "--no-keep", "--quiet"]  # fmt: skip
    env = dict(os.environ, LINESIDE_HOME=str(tmp_path / "home"))
    run = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert f"station press-1 on line {LINE} running: model v1" in run.stderr
    assert "press-1: 15 parts judged, 15 committed, 15 sent, 0 waiting in the outbox" in run.stderr
    rows = project.inspections()
    assert len(rows) == 15 and {r["station"] for r in rows} == {"press-1"}
    assert (folder / "models" / "v1" / "model.onnx").is_file() and (folder / "outbox.db").is_file()
    row = station_row(project, "press-1")
    assert (row.state, row.model_version, row.parts_today) == ("stopped", "v1", 15)

    for wrong, why in ((["--station", "press-1"], "needs --line"),
                       (["--station", "press-1", "--line", LINE, "--model", "v1"], "does not go with --station"),
                       (["--line", LINE], "go with --station")):  # fmt: skip
        assert main(["run", str(project.path), "--source", "sim", *wrong]) == 2
        assert why in capsys.readouterr().err
