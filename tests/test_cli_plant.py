"""`lineside plant` and `lineside deploy --line` through `app.cli.main`, as a person types them.

Stations are simulated with `stations.register` and `stations.heartbeat`, as
`lineside run --station` calls them; the golden line and its versions come from
tests/test_stations.py (v1 in production, v2 as good, v3 refused by the deploy gate).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from app.cli import main
from app.core import audit, stations
from app.core.project import Project
from tests.plant_fixtures import plant_url, postgres_server  # noqa: F401
from tests.test_stations import ENG_PIN, OP_PIN, REASON, golden_line, pins, sha, staff


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def plant(tmp_path: Path) -> Path:
    """A project.db project with the golden line, and four stations on two lines:
    A1 runs v1, A2 warns of drift, B1 went quiet a minute ago, B2 is still starting."""
    path = tmp_path / "plant"
    with Project.create(path) as project:
        golden_line(project)
        simulate_stations(project)
    return path


def simulate_stations(project: Project) -> None:
    v1 = sha(project, "v1")
    for name, line in (("A1", "Line A"), ("A2", "Line A"), ("B1", "Line B"), ("B2", "Line B")):
        stations.register(project, name, line, host=f"pc-{name.lower()}")
    stations.heartbeat(project, "A1", state="running", model_version="v1", model_sha=v1, parts_today=1200,
                       fails_today=18, buffered=4)
    stations.heartbeat(project, "A2", state="running", model_version="v1", model_sha=v1, parts_today=800,
                       fails_today=40, drift="brightness +14% since training")
    a_minute_ago = stations._now() - timedelta(seconds=60)
    with pytest.MonkeyPatch.context() as clock:
        clock.setattr(stations, "_now", lambda: a_minute_ago)
        stations.heartbeat(project, "B1", state="running", model_version="v1", model_sha=v1, parts_today=50)


def test_plant_on_a_single_pc_project_says_how_a_station_joins(tmp_path: Path, capsys):
    assert run(capsys, "new", tmp_path / "solo")[0] == 0
    code, out, err = run(capsys, "plant", tmp_path / "solo")
    assert code == 0, err
    assert "No station has reported in this project yet" in out
    assert f"lineside run {tmp_path / 'solo'} --station NAME --line LINE --source camera:0" in out
    assert "project.db on this PC" in out and "--to-db" in out
    assert "no model in production yet" in out


def test_plant_table_marks_rollouts_states_and_the_lines(plant: Path, capsys):
    code, out, _ = run(capsys, "deploy", plant, "v2", "--line", "Line B")
    assert code == 0 and "golden set (4 parts): the deploy gate passes it" in out
    code, out, err = run(capsys, "plant", plant)
    assert code == 0, err
    rows = {line.split()[0]: line for line in out.splitlines() if line[:2] in ("A1", "A2", "B1", "B2")}
    assert "pc-a1" in rows["A1"] and " v1 " in rows["A1"] and "running" in rows["A1"]
    assert "1200" in rows["A1"] and "98.5%" in rows["A1"] and rows["A1"].split()[-2:] == ["4", "-"]
    assert "drift warning" in rows["A2"] and "brightness +14% since training" in rows["A2"]
    assert "v1 → v2 rolling out" in rows["B1"] and "offline" in rows["B1"] and "1 min ago" in rows["B1"]
    assert "none → v2 rolling out" in rows["B2"] and "starting" in rows["B2"]
    summary = [line.split() for line in out.splitlines() if line.startswith("Line ")]
    assert summary == [["Line", "A", "v1", "production", "2/2"], ["Line", "B", "v2", "pinned", "0/2"]]
    assert "lines without a pin of their own run the production model v1" in out


def test_plant_json_and_one_line(plant: Path, capsys):
    code, out, err = run(capsys, "plant", plant, "--json", "--line", "Line A")
    assert code == 0, err
    data = json.loads(out)
    assert [s["station"] for s in data["stations"]] == ["A1", "A2"]
    a1 = data["stations"][0]
    assert (a1["state"], a1["model_version"], a1["wanted_version"], a1["rolled_out"]) == ("running", "v1", "v1", True)
    assert a1["yield_today"] == pytest.approx(0.985) and a1["backlog"] == 4 and a1["online"] is True
    assert data["stations"][1]["state"] == "drift warning"
    assert data["lines"] == [{"line": "Line A", "version": "v1", "sha256": a1["model_sha"], "follows": "production",
                              "done": 2, "total": 2, "problem": None}]  # fmt: skip
    assert data["production"] == "v1" and data["database"] == "project.db"


def test_plant_watch_shows_it_again_until_ctrl_c(plant: Path, capsys, monkeypatch):
    naps = []

    def nap(seconds: float) -> None:
        naps.append(seconds)
        if len(naps) == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr("app.cli.plant_view.time.sleep", nap)
    code, out, _ = run(capsys, "plant", plant, "--json", "--watch", "2")
    assert code == 0 and naps == [2.0, 2.0]
    assert [len(json.loads(line)["stations"]) for line in out.splitlines()] == [4, 4]
    assert run(capsys, "plant", plant, "--watch", "0")[0] == 2


def test_deploy_to_a_line_needs_an_engineer_and_passes_the_gate(plant: Path, capsys, monkeypatch):
    with Project.open(plant) as project:
        staff(project)
    monkeypatch.setenv("LINESIDE_PIN", OP_PIN)
    code, _, err = run(capsys, "deploy", plant, "v2", "--line", "Line B", "--user", "Olaf")
    assert code == 2 and "needs an engineer; Olaf is an operator" in err
    monkeypatch.setenv("LINESIDE_PIN", ENG_PIN)
    code, _, err = run(capsys, "deploy", plant, "v3", "--line", "Line B", "--user", "Erin")
    assert code == 2 and "deploy gate refuses v3" in err
    code, out, err = run(capsys, "deploy", plant, "v3", "--line", "Line B", "--user", "Erin",
                         "--override-reason", REASON)
    assert code == 0, err
    assert "golden set (4 parts): the deploy gate refuses it; deployed anyway by Erin, the reason audited" in out
    assert "line Line B is pinned to v3: its stations load it" in out and "0 of 2 stations of line Line B run it now" in out
    assert f'lineside plant {plant} --line "Line B" --watch 2' in out
    with Project.open(plant) as project:
        assert pins(project) == {"": "v1", "Line B": "v3"} and project.production_model().version == "v1"
        assert audit.entries(project, action=audit.DEPLOY)[-1].what["line"] == "Line B"

    code, out, err = run(capsys, "deploy", plant, "--line", "Line B", "--follow-production", "--user", "Erin")
    assert code == 0 and "line Line B follows production again (v1)" in out, err
    with Project.open(plant) as project:
        assert pins(project) == {"": "v1"}


def test_deploy_options_that_do_not_fit_together(plant: Path, capsys):
    for argv, says in ((["--line", "Line B"], "Say which version line 'Line B' should run"),
                       (["v2", "--line", "Line B", "--follow-production"], "not both"),
                       (["--follow-production"], "--follow-production needs --line"),
                       ([], "Say which version to deploy")):  # fmt: skip
        code, _, err = run(capsys, "deploy", plant, *argv)
        assert code == 2 and says in err, (argv, err)
    code, out, err = run(capsys, "deploy", plant, "v2")  # without --line: project-wide, as always
    assert code == 0 and "v2 is now in production; v1 was retired" in out, err


def test_plant_on_postgresql(plant_url: str, tmp_path: Path, capsys):
    folder = tmp_path / "line"
    assert run(capsys, "new", folder, "--db", plant_url)[0] == 0
    code, out, _ = run(capsys, "plant", folder)
    assert code == 0 and "No station has reported" in out and "project.db on this PC" not in out
    with Project.open(folder) as project:
        golden_line(project)
        simulate_stations(project)
    assert run(capsys, "deploy", folder, "v2", "--line", "Line A")[0] == 0
    code, out, err = run(capsys, "plant", folder, "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["database"] == plant_url
    assert {s["station"]: s["state"] for s in data["stations"]} == {
        "A1": "running", "A2": "drift warning", "B1": "offline", "B2": "starting"}
    assert [(x["line"], x["version"], x["done"], x["total"]) for x in data["lines"]] == [
        ("Line A", "v2", 0, 2), ("Line B", "v1", 1, 2)]
