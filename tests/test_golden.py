"""The golden set (never trained on) and the deploy gate built on it.

The fixture model scores a part by its mean brightness (tests/onnx_fixtures.py), so a
uniform gray part of brightness b scores b/255 under every version; versions differ
only in their stored threshold, which is what decides PASS or FAIL at the line.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.core import audit, golden, people
from app.core.errors import LinesideError
from app.core.golden import GOLDEN, GateRefusedError
from app.core.imageio import encode_png
from app.core.people import PermissionDeniedError
from app.core.project import Project
from tests.onnx_fixtures import write_model

ENG_PIN, OP_PIN = "246810", "135790"


def _part(project: Project, level: int, verdict: str, n: int = 0) -> int:
    image = np.full((64, 64, 3), level, np.uint8)
    image[0, 0] = n  # distinct bytes for distinct parts of the same brightness
    record, _ = project.add_image_bytes(encode_png(image), f"part-{level}-{n}.png")
    project.set_label(record.id, verdict, author="ann")
    return record.id


def _version(project: Project, version: str, threshold: float) -> None:
    folder = project.path / "models" / version
    write_model(folder / "model.onnx", threshold=threshold, version=version)
    (folder / "model.json").write_text(json.dumps({"version": version, "report": {"n_train": 4}}))
    project.register_model(version, folder, threshold, {}, {"n_train": 4})


@pytest.fixture
def line(tmp_path: Path) -> dict:
    return make_golden_line(tmp_path / "proj")


def make_golden_line(path: Path) -> dict:
    """Training parts (split train), and golden: 2 dark OK parts, scratches at 0.6 and 0.9;
    v1 (threshold 0.5, the fixture model's score = brightness) in production."""
    with Project.create(path) as project:
        trained = [_part(project, 40, "ok", i) for i in range(3)] + [_part(project, 220, "scratch", i) for i in range(3)]
        for image_id in trained:
            project.set_split(image_id, "train")
        ok = [_part(project, 51, "ok", i) for i in range(2)]  # score 0.2
        faint = _part(project, 153, "scratch", 7)  # score 0.6
        clear = _part(project, 230, "scratch", 8)  # score 0.9
        assert golden.mark_golden(project, [*ok, faint, clear]) == [*ok, faint, clear]
        _version(project, "v1", 0.5)
        project.deploy("v1")
    return {"path": path, "trained": trained, "ok": ok, "faint": faint, "clear": clear}


def _staff(path: Path) -> None:
    with Project.open(path) as project:
        people.add_person(project, "Erin", "engineer", ENG_PIN)
        people.add_person(project, "Olaf", "operator", OP_PIN, actor="Erin")


def test_golden_parts_are_never_trained_on(line: dict):
    with Project.open(line["path"]) as project:
        gold = set(line["ok"]) | {line["faint"], line["clear"]}
        project.set_label(_part(project, 90, "ok", 1), "ok")  # a new part without a split
        project.assign_splits(0.5)
        assert all(project.image(i).split == GOLDEN for i in gold)  # assign_splits never moves them
        seen = {r.id for split in ("train", "val") for r, _ in project.labeled(split=split)}
        assert not seen & gold and set(line["trained"]) <= seen
        assert {r.id for r, _ in golden.golden_parts(project)} == gold
        with pytest.raises(LinesideError, match="training split"):
            golden.mark_golden(project, [line["trained"][0]])
        unlabeled, _ = project.add_image_bytes(encode_png(np.full((8, 8, 3), 9, np.uint8)), "u.png")
        with pytest.raises(LinesideError, match="has no label"):
            golden.mark_golden(project, [unlabeled.id])
        added = audit.entries(project, action=audit.GOLDEN_ADD)
        assert [p["image_id"] for p in added[0].what["parts"]] == sorted(gold)


def test_propose_is_balanced_and_skips_the_training_split(tmp_path: Path):
    with Project.create(tmp_path / "p") as project:
        train = [_part(project, 30 + i, "ok", i) for i in range(5)]
        for image_id in train:
            project.set_split(image_id, "train")
        oks = [_part(project, 60 + i, "ok", i) for i in range(6)]
        scratches = [_part(project, 150 + i, "scratch", i) for i in range(3)]
        dent = _part(project, 200, "dent")
        project.set_split(oks[0], "val")  # validation moves last
        proposal = golden.propose(project, 6)
        verdicts = [project.label(i).verdict for i in proposal]
        assert sorted(verdicts) == ["dent", "ok", "ok", "ok", "scratch", "scratch"]  # dent has only one
        assert not set(proposal) & set(train) and oks[0] not in proposal
        assert golden.propose(project, 6) == proposal  # the same on any run
        assert len(golden.propose(project, 100)) == 10 and dent in golden.propose(project, 3)
        assert scratches[0] in proposal or scratches[1] in proposal


def test_gate_refuses_a_candidate_that_misses_a_golden_defect(line: dict, capsys):
    with Project.open(line["path"]) as project:
        _version(project, "v2", 0.7)  # misses the faint scratch (0.6) that v1 (0.5) catches
    _staff(line["path"])
    assert main(["golden", str(line["path"]), "check", "v2"]) == 1
    assert "gate: REFUSES" in capsys.readouterr().out
    with pytest.MonkeyPatch.context() as env:
        env.setenv("LINESIDE_PIN", ENG_PIN)
        assert main(["deploy", str(line["path"]), "v2", "--user", "Erin"]) == 2
    err = capsys.readouterr().err
    assert "deploy gate refuses v2" in err and f"image {line['faint']} (scratch)" in err
    assert "v1 stays in production" in err
    with Project.open(line["path"]) as project:
        assert project.production_model().version == "v1"
        gate = project.model("v2").report["deploy_gate"]
        assert not gate["passed"] and gate["candidate_missed"] == 1 and gate["production_missed"] == 0
        assert [r["image_id"] for r in gate["regressions"]] == [line["faint"]]
        refused = audit.entries(project, action=audit.GATE_REFUSED)
        assert len(refused) == 1 and refused[0].actor == "Erin" and refused[0].what["passed"] is False
        assert json.loads((project.model("v2").path / "model.json").read_text())["report"]["deploy_gate"] == gate


def test_an_engineers_written_override_deploys_and_is_audited(line: dict, capsys, monkeypatch):
    with Project.open(line["path"]) as project:
        _version(project, "v2", 0.7)
    _staff(line["path"])
    reason = "faint scratch 0.6 accepted by QA (deviation 2024-117), v2 halves false rejects"
    monkeypatch.setenv("LINESIDE_PIN", OP_PIN)
    assert main(["deploy", str(line["path"]), "v2", "--user", "Olaf", "--override-reason", reason]) == 2
    assert "needs an engineer" in capsys.readouterr().err
    monkeypatch.setenv("LINESIDE_PIN", ENG_PIN)
    assert main(["deploy", str(line["path"]), "v2", "--user", "Erin", "--override-reason", "ok"]) == 2
    assert "written reason of at least" in capsys.readouterr().err
    assert main(["deploy", str(line["path"]), "v2", "--user", "Erin", "--override-reason", reason]) == 0
    out = capsys.readouterr().out
    assert f"overridden by Erin: {reason}" in out and "v2 is now in production; v1 was retired" in out
    with Project.open(line["path"]) as project:
        assert project.production_model().version == "v2"
        gate = project.model("v2").report["deploy_gate"]
        assert not gate["passed"] and gate["override"]["by"] == "Erin" and gate["override"]["reason"] == reason
        (override,) = audit.entries(project, action=audit.GATE_OVERRIDE)
        assert override.actor == "Erin" and override.what["reason"] == reason
        deploy = audit.entries(project, action=audit.DEPLOY)[-1]
        assert deploy.actor == "Erin" and deploy.what["gate"]["overridden"] is True
        assert json.loads((project.model("v2").path / "model.json").read_text())["report"]["deploy_gate"] == gate
        assert audit.verify(project).intact


def test_gate_refuses_more_golden_ok_rejects(line: dict):
    with Project.open(line["path"]) as project:
        _version(project, "v2", 0.15)  # catches both scratches but rejects both OK parts (0.2)
        with pytest.raises(GateRefusedError, match="rejects 2 golden OK parts where v1 rejects 0") as refused:
            project.deploy("v2")
        assert refused.value.result["candidate_missed"] == 0
        assert project.production_model().version == "v1"


def test_gate_passes_a_candidate_at_least_as_good(line: dict):
    with Project.open(line["path"]) as project:
        _version(project, "v2", 0.55)  # catches both scratches, passes both OK parts, like v1
        project.deploy("v2")
        gate = project.model("v2").report["deploy_gate"]
        assert gate["passed"] and gate["n_golden"] == 4 and gate["reasons"] == [] and gate["override"] is None
        assert {p["image_id"]: p["candidate_fails"] for p in gate["parts"]} == {
            line["ok"][0]: False, line["ok"][1]: False, line["faint"]: True, line["clear"]: True}
        # A rollback to v1 is gated too, and audited as a rollback.
        project.deploy("v1")
        assert audit.entries(project, action=audit.ROLLBACK)[-1].what["version"] == "v1"


def test_operators_cannot_change_the_golden_set(line: dict):
    _staff(line["path"])
    with Project.open(line["path"]) as project:
        with pytest.raises(PermissionDeniedError):
            golden.unmark_golden(project, [line["faint"]], actor="Olaf")
        assert golden.unmark_golden(project, [line["faint"]], actor="Erin") == [line["faint"]]
        assert project.image(line["faint"]).split is None


def test_cli_golden_propose_and_list(tmp_path: Path, capsys):
    path = tmp_path / "p"
    with Project.create(path) as project:
        for i in range(3):
            _part(project, 60 + i, "ok", i)
            _part(project, 180 + i, "scratch", i)
    assert main(["golden", str(path), "propose", "4", "--dry-run"]) == 0
    assert "4 parts proposed (nothing changed" in capsys.readouterr().out
    assert main(["golden", str(path), "propose", "4"]) == 0
    assert "4 parts added to the golden set (2 ok, 2 scratch)" in capsys.readouterr().out
    assert main(["golden", str(path), "list"]) == 0
    assert "4 golden parts" in capsys.readouterr().out
