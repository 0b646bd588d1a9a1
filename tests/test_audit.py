"""The audit trail: every change appended with who, when and what, in a hash chain that
shows an edited, inserted or deleted row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from app.cli import main
from app.core import audit, db
from app.core.project import Project
from tests.onnx_fixtures import write_model
from tests.store_fixtures import encoded, part_image


def _project(root: Path) -> Path:
    """A project with labels, an undo, two models, a deploy, a redeploy (retiring v1) and a retire."""
    path = root / "proj"
    with Project.create(path) as project:
        for seed in range(3):
            record, _ = project.add_image_bytes(encoded(part_image(seed)), f"p{seed}.png")
            project.set_label(record.id, "ok" if seed else "scratch", author="ann")
        project.set_label(1, "dent", author="bob")
        project.undo_label(1, author="bob")
        for version in ("v1", "v2"):
            write_model(path / "models" / version / "model.onnx", version=version)
            project.register_model(version, path / "models" / version, 0.5, {}, {})
        project.deploy("v1")
        project.deploy("v2")
        project.retire("v1")
    return path


def _sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path / "proj" / "project.db" if (path / "proj").is_dir() else path / "project.db")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def test_every_change_is_appended_with_who_and_what(tmp_path: Path):
    path = _project(tmp_path)
    with Project.open(path) as project:
        entries = audit.entries(project)
    actions = [e.action for e in entries]
    assert actions == ["label"] * 4 + ["label_undo", "deploy_gate", "deploy", "deploy_gate", "deploy", "retire"]
    relabel = entries[3]
    assert relabel.actor == "bob" and relabel.what["from"] == "scratch" and relabel.what["to"] == "dent"
    assert len(relabel.what["image_sha256"]) == 64
    undo = entries[4]
    assert undo.actor == "bob" and undo.what["from"] == "dent" and undo.what["to"] == "scratch"
    assert undo.what["undoes"] == relabel.what["label_id"]
    assert entries[6].what["version"] == "v1" and entries[6].what["retired"] is None
    assert entries[8].what == {"version": "v2", "retired": "v1", "threshold": 0.5,
                               "gate": {"passed": True, "n_golden": 0, "overridden": False}}
    assert entries[9].what == {"version": "v1", "was": "retired"}
    # the chain: each row links to the hash of the one before
    assert entries[0].prev_hash == audit.GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(entries, entries[1:]))
    assert entries[0].when.tzinfo is not None


def test_cli_verify_passes_on_an_untouched_project(tmp_path: Path, capsys):
    path = _project(tmp_path)
    assert main(["audit", str(path), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "audit trail intact: 10 entries, head " in out
    assert "label_undo" in out and "bob" in out
    assert main(["audit", str(path), "--json", "--limit", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["action"] for line in lines] == ["deploy", "retire"]


def test_plain_sql_cannot_update_or_delete_audit_rows(tmp_path: Path):
    path = _project(tmp_path)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _sql(path, "UPDATE audit_log SET actor = 'mallory' WHERE id = 3")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        _sql(path, "DELETE FROM audit_log WHERE id = 3")


def test_cli_verify_fails_loudly_after_one_row_is_edited_with_plain_sql(tmp_path: Path, capsys):
    path = _project(tmp_path)
    # A tamperer who knows SQL drops the trigger first, then rewrites who relabeled image 1.
    _sql(path, "DROP TRIGGER audit_log_no_update",
         "UPDATE audit_log SET actor = 'mallory' WHERE id = 4")
    assert main(["audit", str(path), "--verify"]) == audit_exit()
    err = capsys.readouterr().err
    assert "AUDIT TRAIL BROKEN at entry 4" in err and "edited" in err


def audit_exit() -> int:
    from app.cli.trust import BROKEN_EXIT

    assert BROKEN_EXIT != 0
    return BROKEN_EXIT


def test_rewriting_a_row_and_its_hash_breaks_the_next_link(tmp_path: Path):
    path = _project(tmp_path)
    with Project.open(path) as project:
        row = audit.entries(project)[2]
    what = json.loads(json.dumps(row.what))
    what["to"] = "scratch"
    what_json = audit.canonical_json(what)
    forged = audit.entry_hash(row.id, row.at, row.actor, row.action, what_json, row.prev_hash)
    _sql(path, "DROP TRIGGER audit_log_no_update",
         f"UPDATE audit_log SET what = '{what_json}', hash = '{forged}' WHERE id = {row.id}")
    with Project.open(path) as project:
        result = audit.verify(project)
    assert not result.intact and result.broken_id == row.id + 1 and "link" in result.reason


def test_deleting_a_row_in_the_middle_is_found(tmp_path: Path):
    path = _project(tmp_path)
    _sql(path, "DROP TRIGGER audit_log_no_delete", "DELETE FROM audit_log WHERE id = 5")
    with Project.open(path) as project:
        result = audit.verify(project)
    assert not result.intact and result.broken_id == 6 and "missing" in result.reason


def test_a_change_that_fails_leaves_no_audit_entry(tmp_path: Path):
    path = _project(tmp_path)
    with Project.open(path) as project:
        before = audit.verify(project)
        with pytest.raises(RuntimeError):
            with project.transaction():
                project.set_label(2, "dent", author="carl")
                raise RuntimeError("power cut")
        after = audit.verify(project)
        assert project.label(2).verdict == "ok"
    assert after.intact and after.n == before.n and after.head == before.head


def test_version_2_project_is_migrated_and_audited(tmp_path: Path):
    path = _project(tmp_path)
    # Back to what a version-2 Lineside wrote: no people, no audit trail.
    _sql(path, "DROP TABLE audit_log", "DROP TABLE people", "DROP TABLE train_job_events", "DROP TABLE train_jobs",
         "DROP TABLE stations", "DROP TABLE line_models", "DROP INDEX ix_inspections_result_uid",
         "DROP INDEX ix_inspections_station_at", "ALTER TABLE inspections DROP COLUMN result_uid",
         "ALTER TABLE inspections DROP COLUMN station", "UPDATE schema_version SET version = 2")
    with Project.open(path) as project:
        with project._read() as conn:
            assert conn.scalar(db.schema_version.select()) == db.SCHEMA_VERSION
        assert audit.entries(project) == [] and audit.verify(project).intact
        assert project.label(1).verdict == "scratch" and project.production_model().version == "v2"
        project.set_label(1, "dent", author="dora")
        (entry,) = audit.entries(project)
        assert entry.actor == "dora" and entry.prev_hash == audit.GENESIS
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # the triggers came with the migration
        _sql(path, "DELETE FROM audit_log")
