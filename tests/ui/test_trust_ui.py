"""Trust in the desktop app: sign-in and roles, the deploy gate, the audit view, the report.

Everything goes through the real window and real clicks; the core (app/core/people.py,
golden.py, audit.py) decides, and these tests check that the app says what it decided.

The fixture model scores a part by its mean brightness (tests/onnx_fixtures.py), so a
uniform gray part of brightness b scores b/255 under every version; versions differ
only in their stored threshold, which decides PASS or FAIL.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QFileDialog, QMessageBox

from app.core import audit, golden, people
from app.core.people import PermissionDeniedError
from app.core.project import Project
from tests.test_golden import _part, _version, make_golden_line
from tests.ui.workspace_fixtures import answer_yes, register_fixture_model  # noqa: F401

ENG_PIN, OP_PIN = "246810", "135790"


def click(widget) -> None:
    assert widget.isVisible(), f"{widget.text() if hasattr(widget, 'text') else widget} is not on screen"
    QTest.mouseClick(widget, Qt.MouseButton.LeftButton)


@pytest.fixture
def line(tmp_path: Path) -> dict:
    """The golden line of tests/test_golden.py (v1, threshold 0.5, in production) plus v2
    (0.7), a candidate that misses the faint golden scratch (0.6) v1 catches."""
    made = make_golden_line(tmp_path / "line")
    with Project.open(made["path"]) as project:
        _version(project, "v2", 0.7)
    return made


def staff(project: Project) -> None:
    people.add_person(project, "Erin", "engineer", ENG_PIN)
    people.add_person(project, "Olaf", "operator", OP_PIN, actor="Erin")


def models_tab(window):
    window.show_workspace("models")
    return window.workspaces[3]


def sign_in_by_dialog(window, name: str, pin: str):
    click(window.access.button)
    dialog = window.access.sign_in_dialog
    assert dialog.isVisible()
    dialog.name_box.setEditText(name)
    QTest.keyClicks(dialog.pin_edit, pin)
    assert dialog.pin_edit.echoMode() == dialog.pin_edit.EchoMode.Password  # the PIN never shows
    click(dialog.sign_in_button)
    return dialog


def test_without_roles_deploy_works_as_before(main_window, answer_yes):
    window = main_window()
    project = window.context.project
    register_fixture_model(project, "v1", deploy=False)
    window.context.models_changed.emit()
    assert window.access.button.text() == "No roles set up"
    assert people.NO_ROLES_MARK in window.access.button.toolTip()
    models = models_tab(window)
    assert models.deploy_button.isEnabled()
    click(models.deploy_button)
    assert project.production_model().version == "v1"
    assert answer_yes == []  # no warning came up
    deployed = audit.entries(project, action=audit.DEPLOY)
    assert [e.what["version"] for e in deployed] == ["v1"] and deployed[0].actor == ""


def test_people_are_set_up_in_the_app_and_an_operator_cannot_deploy(main_window, answer_yes):
    window = main_window()
    project, context = window.context.project, window.context
    register_fixture_model(project, "v1", deploy=False)
    context.models_changed.emit()
    # No roles yet: the station button opens the People dialog to add the first engineer.
    click(window.access.button)
    dialog = window.access.people_dialog
    assert dialog.isVisible() and "No roles set up" in dialog.mark.text()
    dialog.name_edit.setText("Erin")
    dialog.role_box.setCurrentText("engineer")
    QTest.keyClicks(dialog.pin_edit, ENG_PIN)
    QTest.keyClicks(dialog.pin_again, "999999")
    click(dialog.add_button)
    assert "two PINs differ" in dialog.message.text() and not people.people(project)
    dialog.pin_again.setText(ENG_PIN)
    click(dialog.add_button)
    assert people.roles_enabled(project) and context.person.name == "Erin"  # signed in with the PIN just set
    assert window.access.button.text() == "Erin · engineer"
    dialog.name_edit.setText("Olaf")
    dialog.role_box.setCurrentText("operator")
    dialog.pin_edit.setText(OP_PIN)
    dialog.pin_again.setText(OP_PIN)
    click(dialog.add_button)
    assert [(p.name, p.role) for p in people.people(project)] == [("Erin", "engineer"), ("Olaf", "operator")]
    assert [e.what["name"] for e in audit.entries(project, action=audit.PERSON_ADDED)] == ["Erin", "Olaf"]
    click(dialog.close_button)

    sign_in_by_dialog(window, "Olaf", OP_PIN)
    assert context.person.name == "Olaf" and window.access.button.text() == "Olaf · operator"
    models = models_tab(window)
    models.select_version("v1")
    assert not models.deploy_button.isEnabled()
    assert "needs an engineer" in models.deploy_button.toolTip()
    QTest.mouseClick(models.deploy_button, Qt.MouseButton.LeftButton)
    assert project.production_model() is None
    # Around the greyed-out button (a stale window, a shortcut): the core refuses, the app says so.
    assert not models.deploy_selected()
    assert project.production_model() is None
    assert any("needs an engineer" in w for w in answer_yes)
    with pytest.raises(PermissionDeniedError):
        project.deploy("v1", actor=context.person)
    # An operator may not manage people either.
    window.access.actions["people"].trigger()
    assert not dialog.add_button.isEnabled() and "needs an engineer" in dialog.add_button.toolTip()
    # Erin takes over the station and deploys.
    click(dialog.close_button)
    sign_in_by_dialog(window, "Erin", ENG_PIN)
    assert models.deploy_button.isEnabled()
    click(models.deploy_button)
    assert project.production_model().version == "v1"
    assert audit.entries(project, action=audit.DEPLOY)[-1].actor == "Erin"


def test_wrong_pin_is_refused_clearly_and_records_nothing_secret(main_window):
    window = main_window()
    project, context = window.context.project, window.context
    staff(project)
    context.people_changed()
    assert window.access.button.text().startswith("Nobody signed in")
    dialog = sign_in_by_dialog(window, "Erin", "000000")
    assert dialog.isVisible() and context.person is None
    assert "Wrong name or PIN" in dialog.message.text() and dialog.pin_edit.text() == ""
    click(dialog.sign_in_button)  # an empty PIN: asked for, not tried
    assert dialog.message.text() == "Type your PIN."
    failed = audit.entries(project, action=audit.SIGN_IN_FAILED)
    assert len(failed) == 1 and failed[0].actor == "Erin" and "000000" not in json.dumps(failed[0].what)
    QTest.keyClicks(dialog.pin_edit, ENG_PIN)
    click(dialog.sign_in_button)
    assert not dialog.isVisible() and context.person.name == "Erin"
    assert [e.actor for e in audit.entries(project, action=audit.SIGN_IN)] == ["Erin"]
    # Switching person: sign out from the same dialog; the station is nobody's again.
    click(window.access.button)
    click(dialog.sign_out_button)
    assert context.person is None and window.access.button.text().startswith("Nobody signed in")
    assert [e.actor for e in audit.entries(project, action=audit.SIGN_OUT)] == ["Erin"]


def test_people_dialog_changes_roles_pins_and_removes(main_window, monkeypatch):
    window = main_window()
    project, context = window.context.project, window.context
    staff(project)
    context.sign_in("Erin", ENG_PIN)
    dialog = window.access.open_people()
    dialog.select("Olaf")
    dialog.role_box.setCurrentText("engineer")
    click(dialog.role_button)
    assert "Olaf is now engineer" in dialog.message.text()
    dialog.select("Olaf")
    dialog.pin_edit.setText("11112222")
    dialog.pin_again.setText("11112222")
    click(dialog.pin_button)
    assert people.sign_in(project, "Olaf", "11112222").name == "Olaf"
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    dialog.select("Erin")
    click(dialog.remove_button)  # Erin removes herself: allowed, Olaf is an engineer too
    assert [p.name for p in people.people(project)] == ["Olaf"]
    assert context.person is None  # removed: signed out at once
    assert window.access.button.text().startswith("Nobody signed in")


def test_gate_refuses_and_an_engineer_overrides_with_a_reason(main_window, line, answer_yes):
    window = main_window(project_path=line["path"])
    project, context = window.context.project, window.context
    staff(project)
    context.people_changed()
    sign_in_by_dialog(window, "Erin", ENG_PIN)
    models = models_tab(window)
    models.select_version("v2")
    assert "Golden set: 4 parts" in models.golden_strip.label.text()
    click(models.deploy_button)
    assert project.production_model().version == "v1"
    gate = models.gate_dialog
    assert gate is not None and gate.isVisible()
    assert f"misses 1 golden defective part that v1 catches: image {line['faint']} (scratch)" in gate.reasons.text()
    assert "v2 misses 1 defect" in gate.figures.text() and "v1 misses 0" in gate.figures.text()
    assert gate.table.rowCount() == 1 and gate.table.item(0, 0).text() == f"#{line['faint']}"
    assert not gate.override_box.isVisible()
    click(gate.override_button)
    assert gate.override_box.isVisible()
    click(gate.confirm_button)  # no reason
    assert "Write down why" in gate.message.text() and project.production_model().version == "v1"
    gate.reason_edit.setPlainText("ok")  # too short: the core says how long
    click(gate.confirm_button)
    assert "at least 10 characters" in gate.message.text() and project.production_model().version == "v1"
    reason = "faint scratch 0.6 accepted by QA (deviation 117)"
    gate.reason_edit.setPlainText(reason)
    click(gate.confirm_button)
    assert gate.deployed and not gate.isVisible()
    assert project.production_model().version == "v2"
    refused = audit.entries(project, action=audit.GATE_REFUSED)
    override = audit.entries(project, action=audit.GATE_OVERRIDE)
    assert len(refused) == 1 and refused[0].actor == "Erin"
    assert len(override) == 1 and override[0].actor == "Erin" and override[0].what["reason"] == reason
    assert audit.entries(project, action=audit.DEPLOY)[-1].what["gate"]["overridden"] is True
    assert models.table_model.versions[0].status == "production"  # the table followed


def test_an_operator_cannot_override_the_gate(main_window, line):
    window = main_window(project_path=line["path"])
    project, context = window.context.project, window.context
    staff(project)
    context.sign_in("Olaf", OP_PIN)
    from app.ui.trust.model_actions import show_gate_refusal

    # The dialog as an engineer's refused deploy left it, now in an operator's hands.
    result = golden.run_gate(project, project.model("v2"))
    dialog = show_gate_refusal(models_tab(window), context, "v2", result)
    assert not dialog.override_button.isEnabled() and "needs an engineer" in dialog.override_button.toolTip()
    dialog.show_override()
    dialog.reason_edit.setPlainText("I think it is fine really")
    click(dialog.confirm_button)
    assert "needs an engineer" in dialog.message.text() and project.production_model().version == "v1"


def test_golden_set_from_the_label_workspace_and_the_models_offer(main_window, tmp_path):
    path = tmp_path / "fresh"
    with Project.create(path) as project:
        ids = [_part(project, 50 + i, "ok", i) for i in range(5)]
        ids += [_part(project, 200 + i, "dent", i) for i in range(5)]
        project.set_split(ids[0], "train")
        register_fixture_model(project, "v1")
    window = main_window(project_path=path)
    project, context = window.context.project, window.context
    models = models_tab(window)
    strip = models.golden_strip
    assert "No golden set yet" in strip.label.text() and strip.mark_button.isVisible()
    proposal = strip.proposal
    assert set(proposal) <= set(ids[1:]) and len(proposal) == 8
    click(strip.mark_button)
    assert len(golden.golden_parts(project)) == 8 and "Golden set: 8 parts (4 ok, 4 dent)" in strip.label.text()

    window.show_workspace("capture")
    labeling = window.capture.labeling
    outside = next(i for i in ids[1:] if i not in proposal)
    labeling.select(outside)
    button = labeling.golden_button
    assert button.isEnabled() and not button.isChecked()
    click(button)
    assert project.image(outside).split == golden.GOLDEN and button.isChecked()
    assert "★" in labeling.filmstrip._caption(outside) and "golden set" in labeling.saved.text()
    click(button)
    assert project.image(outside).split is None
    labeling.select(ids[0])  # in the training split: cannot judge the models
    assert not button.isEnabled() and "training split" in button.toolTip()
    # With roles, an operator can neither mark golden parts nor add classes.
    staff(project)
    context.sign_in("Olaf", OP_PIN)
    labeling.select(outside)
    assert not button.isEnabled() and "needs an engineer" in button.toolTip()
    assert not labeling.class_buttons["+"].isEnabled()
    assert labeling.author_edit.text() == "Olaf" and labeling.author_edit.isReadOnly()


def _sql(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path / "project.db")
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


def test_audit_view_lists_filters_and_flags_an_edited_row(main_window, line):
    window = main_window(project_path=line["path"])
    project = window.context.project
    staff(project)
    window.access.actions["audit"].trigger()
    view = window.access.audit_dialog
    assert view.isVisible() and view.banner.intact is True
    assert "audit trail intact" in view.banner.label.text()
    everything = audit.entries(project)
    assert view.table_model.rowCount() == len(everything) > 5
    assert view.shown_entries()[0].id == everything[-1].id  # newest first
    view.set_action(audit.PERSON_ADDED)
    assert [e.what["name"] for e in view.shown_entries()] == ["Olaf", "Erin"]
    view.set_action("")
    QTest.keyClicks(view.search_edit, "scratch")
    assert view.shown_entries() and all("scratch" in json.dumps(e.what) for e in view.shown_entries())
    view.search_edit.clear()
    label_entry = audit.entries(project, action=audit.LABEL)[1]
    # Someone with a plain SQL tool changes who labeled a part.
    _sql(line["path"], "DROP TRIGGER audit_log_no_update",
         f"UPDATE audit_log SET actor = 'mallory' WHERE id = {label_entry.id}")
    click(view.refresh_button)
    assert view.banner.intact is False and view.banner.property("role") == "alarm"
    assert f"AUDIT TRAIL BROKEN at entry {label_entry.id}" in view.banner.label.text()
    assert audit.verify(project).describe() in view.banner.label.text()


def test_report_view_opens_for_a_trained_model_and_exports_a_pdf(main_window, line, qtbot, monkeypatch, tmp_path):
    window = main_window(project_path=line["path"])
    models = models_tab(window)
    models.select_version("v1")
    click(models.report_button)
    report = models.report_dialog
    assert report.isVisible() and not report.pdf_button.isEnabled()
    qtbot.waitUntil(lambda: report.ready, timeout=30000)
    text = report.browser.toPlainText()
    assert "v1" in text and len(text) > 200
    out = tmp_path / "out" / "v1-report"
    out.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(out), "PDF (*.pdf)")))
    click(report.pdf_button)
    pdf = out.with_name("v1-report.pdf")
    assert pdf.read_bytes()[:5] == b"%PDF-" and "Saved v1-report.pdf" in report.status.text()
    click(report.close_button)
    assert not report.isVisible()
