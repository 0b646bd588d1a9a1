"""Save a screenshot of every workspace of the desktop app into docs/screenshots/.

Builds a demo project of generated parts in a temporary folder, opens the main window
offscreen, trains a model with the real trainer (a short run), deploys it, inspects
parts from the simulated line, reviews a past part, shows simulated plant stations, and
grabs each screen on the way, at two window sizes: 1920 x 1080 as NAME.png (the names
the README uses) and the 1024 x 768 of a line-side PC as NAME-1024.png. The trust dialogs (model report, deploy
gate refusing, audit trail) are grabbed at their own size, over the 1024 x 768 window.

    python tools/screenshots.py [--out docs/screenshots] [--epochs 2] [--no-train]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

SIZES = ((1920, 1080, ""), (1024, 768, "-1024"))  # (width, height, file name suffix)


def build_demo_project(path: Path, n_ok: int = 120, n_per_defect: int = 30):  # as `lineside demo`
    """A project of generated washers, labeled, with defect masks."""
    import numpy as np

    from app.core.project import Project
    from app.core.synthetic import DEFECT_KINDS, generate_part

    project = Project.create(path, name="Demo line")
    rng = np.random.default_rng(7)
    for defect in (None, *DEFECT_KINDS):
        for _ in range(n_ok if defect is None else n_per_defect):
            image, mask = generate_part(rng, defect)
            record, _ = project.add_image_array(image, source="demo")
            project.set_label(record.id, defect or "ok", mask=mask if defect else None, author="demo")
    for _ in range(6):  # a few parts still waiting for a label
        project.add_image_array(generate_part(rng, None)[0], source="demo")
    return project


def pump(app, seconds: float, until=None) -> bool:
    """Run the event loop for up to *seconds*, or until *until()* is true."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        app.processEvents()
        if until is not None and until():
            return True
        time.sleep(0.02)
    app.processEvents()
    return until is None


def stage_worse_candidate(project) -> str | None:
    """A copy of the production model with its threshold raised just above the weakest
    golden defect it catches: a candidate the deploy gate must refuse. Staged for the
    screenshot only, in the throw-away demo project; the real trainer never does this."""
    import shutil

    from app.core import golden

    production = project.production_model()
    if production is None or not golden.golden_parts(project):
        return None
    result = golden.run_gate(project, production, production=None)
    caught = [part["candidate_score"] for part in result["parts"]
              if part["verdict"] != "ok" and part["candidate_fails"]]
    # Just above the weakest golden defect production catches: the candidate misses it.
    if not caught or min(caught) >= 0.9999:
        return None
    version = f"v{len(project.models()) + 1}"
    folder = project.models_dir / version
    shutil.copytree(production.path, folder)
    project.register_model(version, folder, min(caught) + 1e-4, production.metrics, production.report)
    return version


def trust_scenes(app, window, out: Path) -> None:
    """People, the golden set, a refused deploy, the audit trail and the model report."""
    from app.core import people

    context, models = window.context, window.workspaces[3]
    project = context.project

    def grab(widget, name: str) -> None:
        pump(app, 0.5)
        path = out / f"{name}.png"
        widget.grab().save(str(path))
        print(f"saved {path} ({widget.width()} x {widget.height()})")

    window.resize(*SIZES[1][:2])
    people.add_person(project, "Erin", "engineer", "246810")
    context.sign_in("Erin", "246810")
    window.show_workspace("models")
    pump(app, 0.5)
    if models.golden_strip.mark_button.isVisible():
        models.golden_strip.mark_button.click()  # the balanced set the app offers
    candidate = stage_worse_candidate(project)
    if candidate is not None:
        context.models_changed.emit()
        models.select_version(candidate)
        models.deploy_button.click()
        if models.gate_dialog is not None:
            grab(models.gate_dialog, "deploy-gate")
            models.gate_dialog.reject()
    production = project.production_model()
    if production is not None:
        models.select_version(production.version)
        report = models.open_report()
        pump(app, 120, until=lambda: report.ready)
        grab(report, "model-report")
        report.accept()
    audit = window.access.open_audit()
    grab(audit, "audit-trail")
    audit.accept()
    window.resize(*SIZES[0][:2])


def plant_scene(app, window, shot) -> None:
    """Plant: six simulated stations on three lines (one warns of drift, one went quiet,
    one is stopped), line B pinned to a newer version and rolling out. The stations are
    staged by calling the heartbeat `lineside run --station` sends; an engineer signed in
    (trust_scenes) pins line B, overriding the gate for the screenshot's sake."""
    from datetime import timedelta

    from app.core import stations
    from app.core.errors import LinesideError
    from app.core.runtime import file_sha256

    context, plant = window.context, window.workspaces[4]
    project = context.project
    production = project.production_model()
    if production is None or not hasattr(plant, "snapshot"):
        return
    newer = next((m.version for m in project.models() if m.status == "candidate"), production.version)
    reason = "staged for the documentation screenshots only" if newer != production.version else None
    try:
        stations.deploy_to_line(project, "Line B", newer, context.person, reason)
    except LinesideError as exc:
        print(f"line B keeps {production.version}: {exc}")
        newer = production.version
    files = {v: file_sha256(project.model(v).onnx_path) for v in {production.version, newer}}
    sims = [("A1", "Line A", production.version, 1486, None), ("A2", "Line A", production.version, 1328, "drift"),
            ("A3", "Line A", production.version, 512, "quiet"), ("B1", "Line B", newer, 910, None),
            ("B2", "Line B", production.version, 876, None), ("C1", "Line C", production.version, 0, "stopped")]
    real_clock = stations._now
    for name, line, version, parts, trouble in sims:
        stations.register(project, name, line, host=f"ws-{name.lower()}.plant.local")
        if trouble == "quiet":  # its last heartbeat three minutes ago
            stations._now = lambda: real_clock() - timedelta(minutes=3)
        try:
            stations.heartbeat(project, name, state="stopped" if trouble == "stopped" else "running",
                               model_version=version, model_sha=files[version], parts_today=parts,
                               fails_today=parts // 60, buffered=37 if trouble == "quiet" else 0,
                               drift="brightness +14% since training" if trouble == "drift" else None,
                               message="database unreachable: results kept in the outbox" if trouble == "quiet"
                               else None)  # fmt: skip
        finally:
            stations._now = real_clock
    window.show_workspace("plant")
    pump(app, 6, until=lambda: plant.snapshot is not None and len(plant.snapshot.overview.rows) == len(sims))
    shot("plant")


def station_scene(app, context, inspect, shot) -> None:
    """Inspect at a station: two views of each part, triggered by a PLC over Modbus TCP on
    this PC (the PLC simulator plays the PLC), the live signal panel under the views."""
    import asyncio
    import socket
    import threading

    from app.cli.plc_sim import ModbusPlc, play
    from app.ui.inspect.inspect_plc import PLC_SETTING
    from app.ui.inspect.inspect_views import VIEWS_SETTING

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    project = context.project
    project.set_setting(VIEWS_SETTING, [{"name": "Top", "kind": "simulated"}, {"name": "Side", "kind": "simulated"}])
    project.set_setting(PLC_SETTING, {"protocol": "modbus", "host": "127.0.0.1", "port": port, "base": 0,
                                      "handshake": True, "trigger_enabled": True, "users_file": ""})
    inspect.station.load(project)
    if not inspect.start("simulated"):
        return
    pump(app, 10, until=lambda: inspect.worker is not None)
    pump(app, 3)  # the server listens once the line has started
    plc = threading.Thread(target=lambda: asyncio.run(play(ModbusPlc("127.0.0.1", port), 4.0, 30, True, 5.0)),
                           daemon=True)
    plc.start()
    pump(app, 30, until=lambda: inspect.counters.parts >= 12 and inspect.banner.headline == "FAIL")
    shot("inspect-station")
    plc.join(timeout=15)
    inspect.stop()
    project.set_setting(VIEWS_SETTING, None)
    project.set_setting(PLC_SETTING, None)
    inspect.station.load(project)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "screenshots")
    parser.add_argument("--epochs", type=int, default=0, help="0 = the trainer's own choice (early stopping)")
    parser.add_argument("--no-train", action="store_true", help="skip training (Train and Inspect show their empty states)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    work = Path(tempfile.mkdtemp(prefix="lineside-screens-"))
    os.environ["LINESIDE_HOME"] = str(work / "home")  # keep the user's own settings out of it

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QMessageBox

    from app.ui.app import create_application
    from app.ui.context import AppContext
    from app.ui.main_window import MainWindow

    app = create_application([])
    # The screenshots must not wait for a person: confirmations answer Yes.
    QMessageBox.question = staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes)
    context = AppContext(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(context, demo_path=work / "demo-project")  # as the app: the demo is offered
    window.resize(*SIZES[0][:2])
    window.show()
    pump(app, 0.5)

    def shot(name: str, prepare=None) -> None:
        for width, height, suffix in SIZES:
            window.resize(width, height)
            pump(app, 0.4)
            if prepare is not None:  # e.g. scroll to what the shot is about, at this size
                prepare()
                pump(app, 0.2)
            path = args.out / f"{name}{suffix}.png"
            window.grab().save(str(path))
            print(f"saved {path} ({width} x {height})")
        window.resize(*SIZES[0][:2])

    shot("start-page")
    project_path = work / "demo"
    build_demo_project(project_path).close()
    context.open_project(project_path)
    window.show_workspace("capture")
    labeling = window.capture.labeling
    defects = [r.id for r in context.project.images() if (lb := context.project.label(r.id)) and lb.verdict not in (None, "ok")]
    if defects:
        labeling.select(defects[0])  # a labeled defect shows its painted region
    window.capture.camera_panel.select_source("sim")
    window.capture.camera_panel.start_button.click()
    pump(app, 15, until=lambda: not labeling.filmstrip._pending_thumbs and bool(labeling.filmstrip._thumbs))
    pump(app, 1.5)  # a few live frames
    shot("capture-label")
    window.capture.camera_panel.start_button.click()  # stop the camera again

    train = window.workspaces[1]
    window.show_workspace("train")
    shot("train-before")
    if not args.no_train and hasattr(train, "trainer"):
        train.epochs_spin.setValue(args.epochs)
        train.retrain_button.click()
        pump(app, 30, until=lambda: bool(train.loss_chart.points("training")))
        shot("train-running")
        pump(app, 1200, until=lambda: not train.trainer.is_running())
        # The result card (figures, the OK parts that place the threshold, Deploy) ends the page.
        bar = train.scroll.verticalScrollBar()
        shot("train-result", prepare=lambda: bar.setValue(bar.maximum()))
        if train.summary.version:
            train.summary.deploy_button.click()

    inspect = window.workspaces[2]
    window.show_workspace("inspect")
    if hasattr(inspect, "start") and inspect.start("simulated"):
        # A failed part says more about the screen than a pass does.
        pump(app, 20, until=lambda: inspect.counters.parts >= 20 and inspect.banner.headline == "FAIL")
        shot("inspect")
        # Review at the line: a past part from the log while the line keeps counting.
        rows = inspect.table_model.rows
        past = next((r for r in rows[3:] if r.label == "FAIL"), rows[min(3, len(rows) - 1)] if rows else None)
        if past is not None:
            inspect.review(past)
            pump(app, 1.0)
            shot("inspect-review")
        inspect.stop()
    else:
        shot("inspect")

    if hasattr(inspect, "station") and context.project.production_model() is not None:
        station_scene(app, context, inspect, shot)

    window.show_workspace("models")
    shot("models")
    trust_scenes(app, window, args.out)
    plant_scene(app, window, shot)
    window.close()
    app.processEvents()
    return 0


if __name__ == "__main__":
    sys.exit(main())
