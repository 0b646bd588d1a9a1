"""Roles: operators and engineers with scrypt-hashed PINs, enforced in the core."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.cli import main
from app.core import audit, people
from app.core.errors import LinesideError
from app.core.people import PermissionDeniedError
from app.core.project import Project
from tests.onnx_fixtures import write_model

ENG_PIN, OP_PIN = "739146", "582013"


def _project(root: Path) -> Path:
    path = root / "proj"
    with Project.create(path) as project:
        for version in ("v1", "v2"):
            write_model(path / "models" / version / "model.onnx", version=version)
            project.register_model(version, path / "models" / version, 0.5, {}, {})
        project.deploy("v1")
    return path


@pytest.fixture
def staffed(tmp_path: Path, monkeypatch) -> Path:
    """A project with engineer Erin and operator Olaf, added through the CLI."""
    path = _project(tmp_path)
    monkeypatch.delenv("LINESIDE_USER", raising=False)
    monkeypatch.setenv("LINESIDE_PIN", ENG_PIN)  # the first engineer's own PIN: nobody to sign in yet
    assert main(["people", str(path), "add", "Erin", "--role", "engineer"]) == 0
    monkeypatch.setenv("LINESIDE_NEW_PIN", OP_PIN)  # Erin signs in with LINESIDE_PIN, Olaf gets this one
    assert main(["people", str(path), "--user", "Erin", "add", "Olaf", "--role", "operator"]) == 0
    monkeypatch.delenv("LINESIDE_NEW_PIN")
    return path


def test_without_people_everything_works_as_before(tmp_path: Path, capsys):
    path = _project(tmp_path)
    with Project.open(path) as project:
        assert not people.roles_enabled(project)
        assert people.roles_mark(project) == people.NO_ROLES_MARK
        assert people.require(project, None, "deploy") is None
    assert main(["deploy", str(path), "v2"]) == 0
    assert "v2 is now in production" in capsys.readouterr().out
    assert main(["people", str(path), "list"]) == 0
    assert "no roles set up" in capsys.readouterr().out


def test_an_operator_cannot_deploy_from_the_cli(staffed: Path, monkeypatch, capsys):
    monkeypatch.setenv("LINESIDE_PIN", OP_PIN)
    assert main(["deploy", str(staffed), "v2", "--user", "Olaf"]) == 2
    err = capsys.readouterr().err
    assert "Deploying a model needs an engineer; Olaf is an operator" in err
    with Project.open(staffed) as project:
        assert project.production_model().version == "v1"
        sign_in = audit.entries(project, action=audit.SIGN_IN)[-1]
        assert sign_in.actor == "Olaf" and not audit.entries(project, action=audit.DEPLOY)[1:]


def test_nobody_signed_in_cannot_deploy_once_roles_exist(staffed: Path, capsys):
    assert main(["deploy", str(staffed), "v2"]) == 2
    assert "nobody is signed in" in capsys.readouterr().err
    with Project.open(staffed) as project:
        with pytest.raises(PermissionDeniedError):
            project.deploy("v2")  # the core refuses too, whatever the front end
        assert project.production_model().version == "v1"


def test_an_engineer_deploys_and_the_deploy_names_them(staffed: Path, monkeypatch, capsys):
    monkeypatch.setenv("LINESIDE_PIN", ENG_PIN)
    assert main(["deploy", str(staffed), "v2", "--user", "erin"]) == 0  # names are case-insensitive
    assert "v2 is now in production; v1 was retired" in capsys.readouterr().out
    with Project.open(staffed) as project:
        deploy = audit.entries(project, action=audit.DEPLOY)[-1]
        assert deploy.actor == "Erin" and deploy.what["version"] == "v2"
        assert audit.verify(project).intact


def test_a_wrong_pin_is_refused_and_audited(staffed: Path, monkeypatch, capsys):
    monkeypatch.setenv("LINESIDE_PIN", "000000")
    assert main(["deploy", str(staffed), "v2", "--user", "Erin"]) == 2
    assert "Wrong name or PIN" in capsys.readouterr().err
    with Project.open(staffed) as project:
        failed = audit.entries(project, action=audit.SIGN_IN_FAILED)
        assert [e.actor for e in failed] == ["Erin"]
        assert project.production_model().version == "v1"
        with pytest.raises(PermissionDeniedError):
            people.sign_in(project, "nobody", ENG_PIN)


def test_pins_are_not_stored_in_clear(staffed: Path):
    with Project.open(staffed) as project:
        with project._read() as conn:
            rows = conn.exec_driver_sql("SELECT name, pin_hash, salt, kdf FROM people").all()
    files = [p for p in staffed.iterdir() if p.name.startswith("project.db")]
    data = b"".join(p.read_bytes() for p in files)
    for pin in (ENG_PIN, OP_PIN):
        assert pin.encode() not in data and pin.encode("utf-16-le") not in data
    assert all(kdf == "scrypt:n=16384,r=8,p=1" and len(salt) == 32 and len(h) == 64 for _, h, salt, kdf in rows)
    assert len({salt for _, _, salt, _ in rows}) == len(rows)


def test_same_pin_gives_different_hashes(tmp_path: Path):
    with Project.create(tmp_path / "p") as project:
        people.add_person(project, "A", "operator", "1111")
        people.add_person(project, "B", "operator", "1111")
        with project._read() as conn:
            hashes = [h for (h,) in conn.exec_driver_sql("SELECT pin_hash FROM people")]
        assert hashes[0] != hashes[1]
        assert not people.roles_enabled(project)  # operators alone switch nothing on
        assert people.sign_in(project, "a", "1111").name == "A"


def test_operator_rights_and_engineer_rights(staffed: Path):
    with Project.open(staffed) as project:
        olaf = people.sign_in(project, "Olaf", OP_PIN)
        erin = people.sign_in(project, "Erin", ENG_PIN)
        for action in ("inspect", "capture", "label", "mark_wrong"):
            assert people.require(project, olaf, action).name == "Olaf"
        for action in ("deploy", "rollback", "set_threshold", "set_target", "delete_image", "delete_label",
                       "edit_classes", "manage_people", "golden", "override_gate"):
            with pytest.raises(PermissionDeniedError, match="needs an engineer"):
                people.require(project, olaf, action)
            assert people.require(project, erin, action).role == "engineer"
        with pytest.raises(PermissionDeniedError):
            people.set_false_reject_target(project, 0.02, olaf)
        with pytest.raises(PermissionDeniedError):
            people.set_model_threshold(project, "v2", 0.6, olaf)
        with pytest.raises(PermissionDeniedError):
            people.add_person(project, "Mallory", "engineer", "9999", olaf)
        people.set_false_reject_target(project, 0.02, erin)
        people.set_model_threshold(project, "v2", 0.6, erin)
        assert project.get_setting("false_reject_target") == 0.02 and project.model("v2").threshold == 0.6
        changes = [(e.action, e.actor, e.what) for e in audit.entries(project)[-2:]]
        assert changes == [(audit.TARGET, "Erin", {"from": None, "to": 0.02}),
                           (audit.THRESHOLD, "Erin", {"version": "v2", "from": 0.5, "to": 0.6})]


def test_role_changes_take_effect_at_once_and_keep_an_engineer(staffed: Path):
    with Project.open(staffed) as project:
        erin = people.sign_in(project, "Erin", ENG_PIN)
        with pytest.raises(LinesideError, match="last engineer"):
            people.set_role(project, "Erin", "operator", erin)
        with pytest.raises(LinesideError, match="last engineer"):
            people.remove_person(project, "Erin", erin)
        people.set_role(project, "Olaf", "engineer", erin)
        olaf = people.Person("Olaf", "operator")  # an old sign-in that still says operator
        assert people.require(project, olaf, "deploy").role == "engineer"
        people.set_role(project, "Erin", "operator", olaf)
        with pytest.raises(PermissionDeniedError):
            people.require(project, erin, "deploy")  # her sign-in said engineer; the project says no more
        people.remove_person(project, "Erin", olaf)
        with pytest.raises(PermissionDeniedError):
            people.sign_in(project, "Erin", ENG_PIN)
        assert [(e.action, e.what) for e in audit.entries(project, action=audit.ROLE_CHANGE)] == [
            (audit.ROLE_CHANGE, {"name": "Olaf", "from": "operator", "to": "engineer"}),
            (audit.ROLE_CHANGE, {"name": "Erin", "from": "engineer", "to": "operator"})]


def test_cli_people_list_shows_roles_not_pins(staffed: Path, capsys):
    assert main(["people", str(staffed), "list"]) == 0
    out = capsys.readouterr().out
    assert "roles enforced (2 people)" in out and "Erin" in out and "operator" in out
    assert ENG_PIN not in out and OP_PIN not in out
