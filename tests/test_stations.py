"""Plant stations and the model each line runs (app/core/stations.py), and what the plant
view reads of them (app/core/plant_overview.py), on project.db and on a real PostgreSQL
server (tests/plant_fixtures.py).

Stations are simulated by calling `register` and `heartbeat` as `lineside run --station`
does. The models are the fixture ONNX model (tests/onnx_fixtures.py), which scores a
part by its mean brightness; versions differ only in their threshold, so the deploy
gate's verdicts are known in advance (as in tests/test_golden.py).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.core import audit, db, golden, people, plant_overview, stations
from app.core.errors import LinesideError
from app.core.golden import GateRefusedError
from app.core.people import PermissionDeniedError
from app.core.project import Project
from app.core.runtime import file_sha256
from tests.plant_fixtures import plant_url, postgres_server  # noqa: F401
from tests.test_golden import _part, _version

ENG_PIN, OP_PIN = "246810", "135790"
REASON = "faint scratch 0.6 accepted by QA (deviation 2024-117) for line B's trial"


@pytest.fixture(params=["sqlite", "postgresql"])
def project(request, tmp_path: Path):
    """An empty project, its database project.db or a PostgreSQL database."""
    database = request.getfixturevalue("plant_url") if request.param == "postgresql" else None
    proj = Project.create(tmp_path / "proj", database=database)
    yield proj
    proj.close()


def golden_line(project: Project) -> dict:
    """Golden parts (2 dark OK, scratches scoring 0.6 and 0.9); v1 (threshold 0.5) in
    production; v2 (0.55) as good as v1 on them; v3 (0.7) misses the faint scratch."""
    ok = [_part(project, 51, "ok", i) for i in range(2)]
    faint, clear = _part(project, 153, "scratch", 7), _part(project, 230, "scratch", 8)
    golden.mark_golden(project, [*ok, faint, clear])
    for version, threshold in (("v1", 0.5), ("v2", 0.55), ("v3", 0.7)):
        _version(project, version, threshold)
    project.deploy("v1")
    return {"faint": faint}


def sha(project: Project, version: str) -> str:
    return file_sha256(project.model(version).onnx_path)


def staff(project: Project) -> tuple[people.Person, people.Person]:
    people.add_person(project, "Erin", "engineer", ENG_PIN)
    people.add_person(project, "Olaf", "operator", OP_PIN, actor="Erin")
    return people.sign_in(project, "Erin", ENG_PIN), people.sign_in(project, "Olaf", OP_PIN)


def pins(project: Project) -> dict[str, str]:
    with project._read() as conn:
        return {r.line: r.model_version for r in conn.execute(sa.select(db.line_models))}


# -- the station's side ------------------------------------------------------------------


def test_register_heartbeat_and_offline_after_silence(project: Project):
    stations.register(project, "A1", "Line A", host="pc-a1")
    stations.register(project, "A2", "Line A", host="pc-a2")
    first = stations.stations(project, "Line A")[0]
    assert first.state == "starting" and first.shown_state == "starting" and first.online
    stations.heartbeat(project, "A1", state="running", model_version="v1", model_sha="ab" * 32, day="2024-05-02",
                       parts_today=200, fails_today=5, buffered=3)
    stations.heartbeat(project, "A2", state="running", drift="brightness +14% since training")
    a1, a2 = stations.stations(project)
    seen = a1.last_seen
    assert (a1.name, a1.host, a1.model_version, a1.parts_today, a1.buffered) == ("A1", "pc-a1", "v1", 200, 3)
    assert a1.yield_today == pytest.approx(0.975) and a2.yield_today is None
    assert a1.shown_state == "running" and a2.shown_state == "drift warning"

    quiet = seen + timedelta(seconds=stations.OFFLINE_AFTER_S + 1)
    late = {s.name: s for s in stations.stations(project, now=quiet)}
    assert not late["A1"].online and late["A1"].shown_state == "offline"
    assert stations.stations(project, now=seen + timedelta(seconds=stations.OFFLINE_AFTER_S - 1))[0].online

    stations.heartbeat(project, "A2", state="stopped")  # stopped on purpose: never shown offline
    assert {s.name: s.shown_state for s in stations.stations(project, now=quiet + timedelta(hours=1))} == {
        "A1": "offline", "A2": "stopped"}

    stations.register(project, "A2", "Line B")  # a station moved to another line says so
    assert [s.name for s in stations.stations(project, "Line B")] == ["A2"]
    with pytest.raises(LinesideError, match="not registered"):
        stations.heartbeat(project, "Z9", state="running")
    with pytest.raises(ValueError, match="state must be one of"):
        stations.heartbeat(project, "A1", state="asleep")
    with pytest.raises(LinesideError, match="line name"):
        stations.register(project, "A3", "  ")


# -- which model a line runs --------------------------------------------------------------


def test_target_precedence_line_row_then_default_row_then_production(project: Project):
    line = golden_line(project)
    assert line and stations.target(project, "Line A").version == "v1"
    goal = stations.target(project, "Line A")
    assert not goal.pinned and goal.sha256 == sha(project, "v1") and goal.deployed_at is not None

    stations.deploy_to_line(project, "Line B", "v2")
    assert (stations.target(project, "Line B").version, stations.target(project, "Line B").pinned) == ("v2", True)
    assert stations.target(project, "Line A").version == "v1"

    project.deploy("v2")  # project-wide: the default row moves, line B's pin stays
    stations.deploy_to_line(project, "Line B", "v1")
    assert stations.target(project, "Line A").version == "v2" and stations.target(project, "Line B").version == "v1"

    with project._write() as conn:  # a project deployed before schema v5 has no rows at all
        conn.execute(db.line_models.delete())
    goal = stations.target(project, "Line B")
    assert (goal.version, goal.pinned, goal.sha256) == ("v2", False, sha(project, "v2"))


def test_no_target_before_anything_is_in_production(project: Project):
    assert stations.target(project, "Line A") is None
    stations.register(project, "A1", "Line A")
    assert stations.rollout(project)[0].wanted is None and not stations.rollout(project)[0].done


def test_deploy_to_line_is_gated_and_audited(project: Project):
    line = golden_line(project)
    erin, olaf = staff(project)
    with pytest.raises(PermissionDeniedError, match="needs an engineer; Olaf is an operator"):
        stations.deploy_to_line(project, "Line B", "v2", actor=olaf)
    with pytest.raises(PermissionDeniedError, match="nobody is signed in"):
        stations.deploy_to_line(project, "Line B", "v2")
    with pytest.raises(GateRefusedError, match=f"image {line['faint']} \\(scratch\\)"):
        stations.deploy_to_line(project, "Line B", "v3", actor=erin)
    assert "Line B" not in pins(project)

    stations.deploy_to_line(project, "Line B", "v3", actor=erin, override_reason=REASON)
    assert pins(project)["Line B"] == "v3" and project.production_model().version == "v1"
    deploy = audit.entries(project, action=audit.DEPLOY)[-1]
    assert deploy.actor == "Erin" and deploy.what["line"] == "Line B" and deploy.what["version"] == "v3"
    assert deploy.what["gate"]["overridden"] is True
    (override,) = audit.entries(project, action=audit.GATE_OVERRIDE)
    assert override.what["reason"] == REASON

    with pytest.raises(PermissionDeniedError, match="Olaf is an operator"):
        stations.follow_production(project, "Line B", actor=olaf)
    stations.follow_production(project, "Line B", actor=erin)
    assert "Line B" not in pins(project) and stations.target(project, "Line B").version == "v1"
    unpinned = audit.entries(project, action=audit.DEPLOY)[-1]
    assert unpinned.actor == "Erin" and unpinned.what == {"line": "Line B", "follows": "production"}
    assert audit.verify(project).intact


def test_rollout_is_done_only_when_version_and_hash_match(project: Project):
    golden_line(project)
    stations.deploy_to_line(project, "Line B", "v2")
    for name, line in (("A1", "Line A"), ("B1", "Line B"), ("B2", "Line B"), ("B3", "Line B")):
        stations.register(project, name, line)
    stations.heartbeat(project, "A1", state="running", model_version="v1", model_sha=sha(project, "v1"))
    stations.heartbeat(project, "B1", state="running", model_version="v2", model_sha=sha(project, "v2"))
    stations.heartbeat(project, "B2", state="running", model_version="v2", model_sha="0" * 64)  # another file
    stations.heartbeat(project, "B3", state="running", model_version="v1", model_sha=sha(project, "v1"))
    rows = {r.station: r for r in stations.rollout(project)}
    assert {name: (r.running, r.wanted, r.done) for name, r in rows.items()} == {
        "A1": ("v1", "v1", True), "B1": ("v2", "v2", True), "B2": ("v2", "v2", False), "B3": ("v1", "v2", False)}
    assert [r.station for r in stations.rollout(project, "Line A")] == ["A1"] and rows["A1"].online

    view = plant_overview.read(project)
    assert [x.summary() for x in view.lines] == ["Line A: v1 on 1 of 1 station", "Line B: v2 on 1 of 3 stations"]
    assert [x.follows for x in view.lines] == ["production", "pinned"] and view.production.version == "v1"
    texts = {r.status.name: r.model_text() for r in view.rows}
    assert texts == {"A1": "v1", "B1": "v2", "B2": "v2 (other file) → v2 rolling out", "B3": "v1 → v2 rolling out"}


def test_overview_lists_pinned_lines_without_stations_and_says_what_it_cannot_read(project: Project):
    golden_line(project)
    stations.deploy_to_line(project, "Line C", "v2")
    view = plant_overview.read(project)
    assert view.rows == [] and [x.summary() for x in view.lines] == ["Line C: v2 on 0 of 0 stations"]
    assert plant_overview.read(project, "Line A").lines == []

    with project._write() as conn:  # before schema v5: the target comes from the production file
        conn.execute(db.line_models.delete())
    project.model("v1").onnx_path.unlink()  # the share went away
    stations.register(project, "A1", "Line A")
    view = plant_overview.read(project)
    assert view.lines[0].target is None and "is missing" in view.lines[0].problem
    assert view.production is None and "is missing" in view.production_problem


def test_the_join_hint_quotes_a_folder_with_a_space():
    assert plant_overview.join_hint("/plant/Line 3").startswith('lineside run "/plant/Line 3" --station NAME')
    assert plant_overview.join_hint("/plant/line3").startswith("lineside run /plant/line3 --station NAME")


def test_ago_reads_like_a_person_would_say_it():
    assert [plant_overview.ago(s) for s in (-3, 0.4, 12, 300, 7200, 3 * 86400)] == [
        "just now", "just now", "12 s ago", "5 min ago", "2 h ago", "3 days ago"]
