"""Inspect workspace: the production model judges simulated parts off the GUI thread."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from app.ui.inspect.inspect_log import InspectionCounters, InspectionRecord
from app.ui.inspect.inspect_panels import CorrectionDialog
from app.ui.inspect.inspect_view import overlay_heatmap
from app.ui.inspect.inspect_workspace import InspectWorkspace
from tests.ui.workspace_fixtures import (  # noqa: F401  (fixtures)
    answer_yes,
    app_context,
    project,
    register_fixture_model,
)


@pytest.fixture
def workspace(qtbot, app_context, project):
    register_fixture_model(project)
    app_context._set_project(project) if not hasattr(app_context, "set_project") else app_context.set_project(project)
    ws = InspectWorkspace(app_context)
    qtbot.addWidget(ws)
    ws.resize(1280, 800)
    ws.show()
    yield ws
    ws.shutdown()
    assert not ws.is_running()


def test_simulated_line_verdicts_counters_and_database(qtbot, workspace, project):
    assert workspace.start("simulated")
    qtbot.waitUntil(lambda: workspace.counters.parts >= 12, timeout=20_000)
    workspace.stop()
    c = workspace.counters
    assert c.parts == len(workspace.session) == c.passed + c.failed
    assert c.parts == workspace.table_model.rowCount()
    assert workspace.banner.headline in ("PASS", "FAIL")
    assert workspace.image_view.image() is not None and not workspace.image_view.image().isNull()
    logged = project.inspections()
    assert len(logged) == c.parts  # every verdict is in the project's log
    assert sum(1 for row in logged if row["verdict"] == "PASS") == c.passed
    assert {row["model_version"] for row in logged} == {"v1"}
    assert all(r.truth in ("ok", "scratch", "spot", "chip") for r in workspace.session)


# QKeySequenceEdit finishes editing on its own 1-s timer after the key. A full suite
# run on a loaded 2-core machine once timed out at 3 s in the wait below (the cause was
# not reproduced alone or beside three busy loops); 10 s costs nothing when it passes.
KEY_EDIT_WAIT_MS = 10_000


def test_trigger_key_field_refuses_a_key_inspect_already_uses(qtbot, workspace):
    qtbot.waitExposed(workspace)  # the clicks below go to a window that is on screen
    for key, text in ((Qt.Key.Key_W, "W"), (Qt.Key.Key_H, "H"), (Qt.Key.Key_Escape, "Esc")):
        QTest.mouseClick(workspace.key_edit, Qt.MouseButton.LeftButton)
        QTest.keyClick(workspace.key_edit, key)
        qtbot.waitUntil(lambda: workspace.notice.isVisible() and text in workspace.notice.text(),
                        timeout=KEY_EDIT_WAIT_MS)
        assert "stays on Space" in workspace.notice.text()
        assert workspace._trigger_shortcuts[0].key().toString() == "Space"
        assert workspace.key_edit.keySequence().toString() == "Space"
        assert workspace._wrong_shortcut.key().toString() == "W"  # W still flags a wrong verdict
        workspace.notice.show_notice("")
    QTest.mouseClick(workspace.key_edit, Qt.MouseButton.LeftButton)
    QTest.keyClick(workspace.key_edit, Qt.Key.Key_F8)
    qtbot.waitUntil(lambda: workspace._trigger_shortcuts[0].key().toString() == "F8", timeout=KEY_EDIT_WAIT_MS)
    assert not workspace.notice.isVisible()


def test_trigger_key_inspects_exactly_one_part(qtbot, workspace, project):
    workspace.mode_combo.setCurrentIndex(1)  # "On trigger key"
    assert not workspace.continuous()
    assert workspace.start("simulated")
    # Frames flow, but nothing is inspected without a trigger.
    qtbot.waitUntil(lambda: workspace.context.frames.put_count >= 10, timeout=20_000)
    assert workspace.counters.parts == 0
    qtbot.keyClick(workspace.image_view, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: workspace.counters.parts == 1, timeout=10_000)
    seen = workspace.context.frames.put_count
    qtbot.waitUntil(lambda: workspace.context.frames.put_count >= seen + 10, timeout=20_000)
    assert workspace.counters.parts == 1  # ten more frames, still one part: one trigger, one part
    workspace.trigger_button.click()
    qtbot.waitUntil(lambda: workspace.counters.parts == 2, timeout=10_000)
    workspace.stop()
    assert len(project.inspections()) == 2


def test_wrong_verdict_goes_back_to_labeling(qtbot, workspace, project):
    assert workspace.start("simulated")
    qtbot.waitUntil(lambda: workspace.latest is not None, timeout=20_000)
    workspace.stop()
    before = len(project.images())
    with qtbot.waitSignal(workspace.context.labels_changed, timeout=5000) as blocker:
        image_id = workspace.correct_current("scratch")
    assert blocker.args == [image_id]
    assert len(project.images()) == before + 1
    record = project.image(image_id)
    assert record.source == "line"
    assert project.label(image_id).verdict == "scratch"
    assert np.array_equal(project.load_image(image_id), workspace.latest.image)


def test_correction_dialog_offers_ok_and_every_class(qtbot, project):
    project.add_class("scratch")
    project.add_class("dent")
    dialog = CorrectionDialog(project.classes(), "PASS")
    qtbot.addWidget(dialog)
    assert set(dialog.buttons) == {"ok", "scratch", "dent"}
    dialog.buttons["dent"].click()
    assert dialog.choice == "dent"
    assert dialog.result() == CorrectionDialog.DialogCode.Accepted


def test_export_log_to_csv(qtbot, workspace, tmp_path):
    assert workspace.start("simulated")
    qtbot.waitUntil(lambda: workspace.counters.parts >= 5, timeout=20_000)
    workspace.stop()
    out = workspace.export_log(tmp_path / "log" / "inspections.csv")
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == workspace.counters.parts
    assert {r["verdict"] for r in rows} <= {"PASS", "FAIL"}
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def test_no_production_model_says_what_to_do(qtbot, app_context, project):
    register_fixture_model(project, deploy=False)
    app_context._set_project(project)
    ws = InspectWorkspace(app_context)
    qtbot.addWidget(ws)
    assert ws._stack.currentWidget() is ws.no_model
    assert not ws.start("simulated")
    with qtbot.waitSignal(ws.navigate_requested, timeout=1000) as blocker:
        ws.no_model.findChildren(type(ws.start_button))[0].click()
    assert blocker.args == ["train"]
    project.deploy("v1")
    app_context.models_changed.emit()
    assert ws._stack.currentIndex() == 1


def test_counters_and_overlay_units():
    c = InspectionCounters()
    for label, cls in (("PASS", None), ("FAIL", "scratch"), ("FAIL", "scratch"), ("FAIL", "spot")):
        c.add(InspectionRecord(0.0, 1, "t", label, cls, 0.5, 4.0, "v1"))
    assert (c.parts, c.passed, c.failed, c.yield_percent) == (4, 1, 3, 25.0)
    assert c.failed_by_class == {"scratch": 2, "spot": 1}
    image = np.full((300, 500, 3), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[0, 0] = 1.0
    out = overlay_heatmap(image, heat, max_side=250)
    assert out.shape == (150, 250, 3)
    assert np.array_equal(out[-1, -1], image[0, 0])  # no heat: the part is untouched
    assert not np.array_equal(out[0, 0], image[0, 0])


def _inspect_with_reference(qtbot, app_context, project, reference_images, until) -> InspectWorkspace:
    """Inspect the simulated line with a model whose drift reference is *reference_images*."""
    from app.core.monitoring import build_reference, image_stats

    reference = build_reference([image_stats(im) for im in reference_images], [])  # looks only, no scores
    register_fixture_model(project, reference=reference)
    app_context._set_project(project)
    ws = InspectWorkspace(app_context)
    qtbot.addWidget(ws)
    ws.show()
    assert ws.start("simulated")
    try:
        qtbot.waitUntil(lambda: until(ws), timeout=30_000)
    finally:
        ws.stop()
    return ws


def test_drift_banner_when_the_line_looks_different(qtbot, app_context, project):
    from app.core.synthetic import generate_part

    rng = np.random.default_rng(0)
    # The "training" images were much darker than the simulated line: drift.
    dark = [(generate_part(rng, None, size=128)[0] * 0.3).astype(np.uint8) for _ in range(20)]
    ws = _inspect_with_reference(qtbot, app_context, project, dark, lambda w: w.notice.isVisible())
    text = ws.notice.text()
    # What to do first, and the evidence: which way, against what training had.
    assert "check the lighting, or retrain on parts taken under the new light" in text.lower()
    assert "images brighter than" in text and "brightness" in text and "training" in text
    assert ws.counters.parts >= 30  # the monitor waits for enough parts before it warns


def test_no_drift_banner_on_the_training_look(qtbot, app_context, project):
    from app.core.synthetic import PartStream

    stream = PartStream(seed=1)
    same_look = [stream.next_frame()[0] for _ in range(40)]
    ws = _inspect_with_reference(qtbot, app_context, project, same_look, lambda w: w.counters.parts >= 40)
    assert not ws.notice.isVisible(), ws.notice.text()


def test_navigate_from_inspect_to_train_in_the_main_window(qtbot, main_window):
    window = main_window()
    window.show_workspace("inspect")
    inspect = window.tabs.currentWidget()
    assert isinstance(inspect, InspectWorkspace)
    inspect.no_model.findChildren(type(inspect.start_button))[0].click()
    assert window.tabs.tabText(window.tabs.currentIndex()) == "Train"


def test_hot_folder_files_are_inspected_with_their_names(qtbot, workspace, project, tmp_path):
    import cv2

    from app.core.synthetic import generate_part

    folder = tmp_path / "drop"
    folder.mkdir()
    assert workspace.start("folder", hot_folder=folder)
    rng = np.random.default_rng(4)
    for i in range(3):
        cv2.imwrite(str(folder / f"part_{i}.png"), generate_part(rng, None, size=128)[0])
        qtbot.waitUntil(lambda n=i: workspace.counters.parts >= n + 1, timeout=20_000)
    workspace.stop()
    assert sorted(Path(r.file).name for r in workspace.session) == ["part_0.png", "part_1.png", "part_2.png"]
    assert len(project.inspections()) == 3
