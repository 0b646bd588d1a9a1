"""Models workspace: the versions table, deploy with confirmation, roll back."""

from __future__ import annotations

import pytest
from PySide6.QtWidgets import QMessageBox

from datetime import datetime, timedelta, timezone

from PySide6.QtCore import Qt

from app.ui.models.models_workspace import (
    ModelsWorkspace,
    changes_text,
    rollback_target,
    trained_text,
    training_size_text,
)
from tests.onnx_fixtures import write_model
from tests.ui.workspace_fixtures import answer_yes, app_context, project, register_fixture_model  # noqa: F401


@pytest.fixture
def models_ws(qtbot, app_context, project):
    for version in ("v1", "v2", "v3"):
        register_fixture_model(project, version, deploy=False)
    project.deploy("v1")
    project.deploy("v2")  # v1 retired, v2 production, v3 candidate
    app_context._set_project(project)
    ws = ModelsWorkspace(app_context)
    qtbot.addWidget(ws)
    return ws


def test_table_lists_versions_with_metrics_and_data(models_ws):
    model = models_ws.table_model
    assert [m.version for m in model.versions] == ["v3", "v2", "v1"]
    texts = [[model.index(r, c).data() for c in range(model.columnCount())] for r in range(model.rowCount())]
    assert texts[1][:2] == ["v2", "In production"]
    assert texts[0][1] == "Candidate" and texts[2][1] == "Retired"
    assert texts[0][2] == "supervised"
    # The line's figures at the stored threshold lead, each with its 95 % interval.
    assert texts[0][5] == "80.0 % (60.0-90.0)" and texts[0][6] == "5.0 % (1.0-10.0)"
    assert "95 % interval" in model.headerData(5, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert texts[0][4] == "0.450" and texts[0][7] == "0.900"
    assert texts[0][3] == f"{model.versions[0].created_at.astimezone():%H:%M}"  # registered just now
    assert texts[0][8] == "40"  # the classes are in the tooltip and the details
    assert model.index(0, 8).data(Qt.ItemDataRole.ToolTipRole) == "Trained on 40 (ok 30, scratch 10) images"
    details = models_ws.details.text()
    assert "first model" in details and "20 validation OK parts" in details


def test_deploy_selected_asks_first(models_ws, project, monkeypatch, qtbot):
    models_ws.select_version("v3")
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Cancel))
    assert not models_ws.deploy_selected()
    assert project.production_model().version == "v2"
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    with qtbot.waitSignal(models_ws.context.models_changed, timeout=1000):
        models_ws.deploy_button.click()
    assert project.production_model().version == "v3"
    assert models_ws.table_model.versions[0].status == "production"
    assert not models_ws.deploy_button.isEnabled()  # v3 is still selected and now in production


def test_roll_back_to_previous_retired(models_ws, project, answer_yes):
    assert models_ws.rollback_button.text() == "Roll back to v1"
    assert models_ws.roll_back()
    assert project.production_model().version == "v1"
    assert {m.version: m.status for m in project.models()} == {"v3": "candidate", "v2": "retired", "v1": "production"}


def test_trained_shows_the_time_for_today_and_the_date_before():
    now = datetime(2026, 12, 1, 15, 0).astimezone()
    assert trained_text(now - timedelta(hours=2), now) == f"{now - timedelta(hours=2):%H:%M}"
    assert trained_text(now - timedelta(days=3), now) == f"{now - timedelta(days=3):%Y-%m-%d}"
    utc = datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)  # as the store gives it
    assert trained_text(utc, now) == f"{utc.astimezone():%Y-%m-%d}"


def test_the_table_fits_a_1024_px_screen_with_six_classes(main_window, qtbot):
    """Every column of a supervised six-class model is visible at 1024 x 768 with the
    app's stylesheet: no cut-off header and no sideways scrolling."""
    window = main_window(size=(1024, 768))
    project = window.context.project
    per_class = {name: {"train": n, "val": n // 4} for name, n in
                 [("ok", 367), ("blowhole", 65), ("break", 47), ("crack", 32), ("fray", 17), ("uneven", 57)]}
    register_fixture_model(project, "v1", deploy=False)
    project.register_model("v2", project.models_dir / "v1", 0.41, {  # the widest figures there are
        "mode": "supervised", "auroc": 0.9856, "catch_rate": 1.0, "catch_rate_ci": [0.815, 1.0],
        "false_reject_rate": 0.016, "false_reject_rate_ci": [0.0, 0.06], "threshold": 0.41},
        {"n_train": 1585, "per_class": per_class})
    project.deploy("v2")  # its row is the one in bold
    window.context.models_changed.emit()
    window.show_workspace("models")
    models = next(w for w in window.workspaces if isinstance(w, ModelsWorkspace))
    qtbot.waitUntil(lambda: models.table.isVisible())
    table, header = models.table, models.table.horizontalHeader()
    qtbot.waitUntil(lambda: header.length() > 0)
    assert header.length() <= table.viewport().width()
    assert not table.horizontalScrollBar().isVisible()
    for column in range(header.count()):
        assert header.sectionSize(column) >= header.sectionSizeFromContents(column).width(), column


def test_report_texts():
    assert training_size_text({}) == "–"
    assert training_size_text({"n_train": 5, "per_class": {"ok": 3, "dent": 2}}) == "5 (ok 3, dent 2)"
    report = {"n_train": 5, "n_val": 2, "per_class": {"ok": {"train": 3, "val": 1}, "dent": {"train": 2, "val": 1}}}
    assert training_size_text(report) == "5 (ok 3, dent 2)"
    assert training_size_text(report, "val") == "2 (ok 1, dent 1)"
    assert changes_text({"changes": ["+3 dent"]}) == "• +3 dent"
    assert changes_text({"changes": {"dent": "+3"}}) == "• dent: +3"
    assert rollback_target([]) is None


def test_details_say_float_or_int8_and_the_measured_speed(models_ws, project):
    import json

    models_ws.select_version("v3")
    assert "At the line: float" in models_ws.details.text()
    folder = project.model("v3").path
    stored = {"int8": {"agreement": 1.0, "auroc_int8": 0.95, "latency_1_thread_ms": {"int8": 4.0, "float": 6.5}}}
    (folder / "model.json").write_text(json.dumps(stored))
    project.set_setting("precision", "int8")
    project.set_setting("threads", 2)
    project.set_setting("parts_per_second", 240.0)
    project.set_setting("bench", {"model": "v3"})
    models_ws.refresh()
    models_ws.select_version("v3")
    text = models_ws.details.text()
    assert "INT8 version passed its gate" in text and "4.0 ms vs 6.5 ms" in text
    assert "int8, 2 thread(s), about 240 parts per second" in text
    assert "re-checked" not in text  # a file quantised before the float re-check existed
    stored["int8"].update(recheck_share=0.034, expected_disagreement_rechecked=0.0004)
    (folder / "model.json").write_text(json.dumps(stored))
    models_ws.refresh()
    models_ws.select_version("v3")
    assert ("Parts near the threshold (3.4% of held-out parts) are re-checked by the float model: "
            "with the re-check 0.04%.") in models_ws.details.text()
    stored["int8"].update(expected_disagreement=0.002)
    (folder / "model.json").write_text(json.dumps(stored))
    models_ws.refresh()
    models_ws.select_version("v3")
    assert ("re-checked by the float model: INT8 alone would be expected to change 0.2% of verdicts, with the "
            "re-check 0.04%.") in models_ws.details.text()
    # A two-view station whose bench chose lanes.
    project.set_setting("lanes", 2)
    project.set_setting("parts_per_second", 120.0)
    project.set_setting("bench", {"model": "v3", "views": 2})
    models_ws.refresh()
    models_ws.select_version("v3")
    assert "int8, 2 lanes of 1 thread, about 120 parts of 2 views per second" in models_ws.details.text()


def test_long_details_scroll_on_a_line_side_screen(models_ws, qtbot):
    """At 1024 x 768 a model's details (mode reason, INT8 gate, changes) outgrow their
    space: they scroll to the last line instead of being cut off."""
    models_ws.resize(1024, 640)
    models_ws.show()
    qtbot.waitExposed(models_ws)
    models_ws.details.setText("<br>".join(f"line {i} of a long mode reason" for i in range(60)))
    qtbot.wait(50)
    scroll = models_ws.details_scroll
    assert scroll.widget().isAncestorOf(models_ws.details)
    bar = scroll.verticalScrollBar()
    assert bar.maximum() > 0
    bar.setValue(bar.maximum())
    last_line_bottom = models_ws.details.geometry().bottom() - bar.value()
    assert last_line_bottom <= scroll.viewport().height() + 1  # the end of the text is reachable


def _models_showing(window, highest: list[dict]) -> ModelsWorkspace:
    """The Models workspace with one registered v1 selected whose metrics name *highest*
    as the held-out OK parts that placed its threshold."""
    project = window.context.project
    folder = project.models_dir / "v1"
    folder.mkdir(parents=True)
    write_model(folder / "model.onnx", version="v1", threshold=0.5)
    project.register_model("v1", folder, 0.5, {"catch_rate": 0.9, "false_reject_rate": 0.01, "threshold": 0.5,
                                                "highest_ok_parts": highest}, {"n_train": 3})
    window.context.models_changed.emit()
    models = next(w for w in window.workspaces if isinstance(w, ModelsWorkspace))
    window.show_workspace("models")
    models.table.selectRow(0)
    return models


def test_check_in_models_opens_a_part_that_placed_the_threshold(main_window, qtbot):
    # Long after the Train summary is gone, the selected version still names the held-out
    # OK parts that placed its threshold, and Check opens one in Capture & Label.
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from tests.ui.workspace_fixtures import add_labeled_parts

    window = main_window()
    project = window.context.project
    add_labeled_parts(project, n_ok=3, per_defect={})
    records = [r for r, _ in project.labeled()]
    models = _models_showing(window, [
        {"image_id": records[2].id, "filename": "line2-cam1-000481.png", "score": 0.61, "rejected": True},
        {"image_id": records[0].id, "filename": "line2-cam1-000107.png", "score": 0.33, "rejected": False}])
    buttons = models.review_strip.buttons
    assert [b.text() for b in buttons] == ["Check line2-cam1-000481.png", "Check line2-cam1-000107.png"]
    assert "line2-cam1-000481.png (0.610)" in models.details.text()
    qtbot.waitUntil(buttons[0].isVisible)
    models.details_scroll.ensureWidgetVisible(buttons[0])  # at the end of the details
    QTest.mouseClick(buttons[0], Qt.MouseButton.LeftButton)
    assert window.tabs.currentWidget() is window.capture
    assert window.capture.labeling.image_id == records[2].id


def test_compare_in_models_opens_the_defective_part_a_threshold_placing_ok_part_looks_like(main_window, qtbot):
    # The trainer names the labeled defective part a threshold-placing OK part looks most
    # like (often the same part imaged twice); Compare opens that part where it is labeled.
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    from tests.ui.workspace_fixtures import add_labeled_parts

    window = main_window()
    project = window.context.project
    add_labeled_parts(project, n_ok=2, per_defect={"scratch": 1})
    ok = [r for r, label in project.labeled() if label.verdict == "ok"]
    defect = next(r for r, label in project.labeled() if label.verdict == "scratch")
    models = _models_showing(window, [
        {"image_id": ok[0].id, "filename": "exp5_num_117030.jpg", "score": 0.999, "rejected": True,
         "looks_like": {"image_id": defect.id, "filename": "exp4_num_116999.jpg", "verdict": "scratch",
                        "similarity": 0.98}},
        {"image_id": ok[1].id, "filename": "exp3_num_283229.jpg", "score": 0.68, "rejected": False}])
    assert [b.text() for b in models.review_strip.buttons] == ["Check exp5_num_117030.jpg", "Check exp3_num_283229.jpg"]
    assert [b.text() for b in models.review_strip.lookalike_buttons] == ["Compare exp4_num_116999.jpg"]
    assert "exp5_num_117030.jpg (0.999, looks most like exp4_num_116999.jpg, labeled scratch)" in models.details.text()
    compare = models.review_strip.lookalike_buttons[0]
    assert compare.toolTip().startswith("exp4_num_116999.jpg, labeled scratch: the labeled part exp5_num_117030.jpg")
    qtbot.waitUntil(compare.isVisible)
    models.details_scroll.ensureWidgetVisible(compare)
    QTest.mouseClick(compare, Qt.MouseButton.LeftButton)
    assert window.tabs.currentWidget() is window.capture
    assert window.capture.labeling.image_id == defect.id


def test_a_good_only_model_says_what_it_was_checked_on(qtbot, app_context, project):
    """A good-only model holds no validation split of OK parts: the details say what its
    figures rest on (every OK part out-of-fold, the labeled defects), not "0 validation"."""
    folder = project.models_dir / "v1"
    folder.mkdir(parents=True)
    write_model(folder / "model.onnx", version="v1", threshold=0.97)
    project.register_model(
        "v1", folder, 0.97,
        {"mode": "good-only", "auroc": None, "catch_rate": None, "false_reject_rate": 0.009,
         "false_reject_rate_ci": [0.003, 0.017], "threshold": 0.97, "n_ok_heldout": 666, "n_defect_heldout": 0,
         "threshold_source": "666 OK parts, each scored out-of-fold by a bank without it",
         "false_reject_target": 0.01},
        {"mode": "good-only", "n_train": 666, "n_val": 0, "per_class": {"ok": {"train": 666, "val": 0}}},
    )
    app_context._set_project(project)
    ws = ModelsWorkspace(app_context)
    qtbot.addWidget(ws)
    ws.select_version("v1")
    details = ws.details.text()
    assert ("Checked on 666 OK parts, each scored out-of-fold by a bank without it, and no labeled defects yet"
            in details)
    assert "validation images" not in details
