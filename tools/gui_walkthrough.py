"""Walk through the desktop app as a person at the line would, on a real X display.

Runs the real app in this process on Qt's xcb platform (a private Xvfb screen of
1024 x 768 with the openbox window manager when available, or the $DISPLAY given) and
drives it with real mouse and key events on the real widgets: open a tiny generated
project, capture a frame from the simulated camera, label it, retrain (1 epoch),
deploy, inspect the simulated line, review a past part, mark it wrong, export the CSV.
A screenshot of the whole screen (dialogs included) is saved after every step.

Exit status: 0 when every step did what it should and no exception reached Qt's event
loop; 1 otherwise (the exceptions and the failed step are printed); 2 when the X display
or Qt's xcb libraries are missing (nothing was tried).

    python tools/gui_walkthrough.py [--out DIR] [--xvfb | --display :N] [--epochs 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

SCREEN = (1024, 768)
TRAIN_TIMEOUT_S = 420


class StepFailed(Exception):
    pass


# -- the X display --------------------------------------------------------------------


def start_xvfb(size: tuple[int, int] = SCREEN) -> tuple[subprocess.Popen, str]:
    """A private Xvfb server on a free display number (Xvfb picks it: -displayfd)."""
    read_end, write_end = os.pipe()
    server = subprocess.Popen(
        ["Xvfb", "-displayfd", str(write_end), "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp", "-noreset"],
        pass_fds=(write_end,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_end)
    number = b""
    deadline = time.monotonic() + 20
    with os.fdopen(read_end, "rb") as pipe:
        while time.monotonic() < deadline and not number.endswith(b"\n"):
            chunk = pipe.read(1)
            if not chunk:
                break
            number += chunk
    if not number.strip():
        server.kill()
        raise StepFailed("Xvfb did not start")
    return server, f":{number.strip().decode()}"


def start_window_manager(display: str) -> subprocess.Popen | None:
    if shutil.which("openbox") is None:
        return None
    env = {**os.environ, "DISPLAY": display}
    return subprocess.Popen(["openbox", "--sm-disable"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- the tiny project -------------------------------------------------------------------


def make_tiny_project(path: Path) -> Path:
    """Generated washers imported from class folders; a 96-px network trains in seconds."""
    from app.core.importer import import_folder
    from app.core.project import Project
    from app.core.synthetic import write_demo_dataset

    source = path.parent / f"{path.name}-source"
    write_demo_dataset(source, 14, 6, seed=3)
    with Project.create(path, name="Walkthrough line") as project:
        project.set_setting("input_size", 96)
        project.set_setting("tiling", False)
        import_folder(project, source)
    return path


# -- driving the app ---------------------------------------------------------------------


class Walk:
    def __init__(self, app, window, out: Path) -> None:
        self.app, self.window, self.out = app, window, out
        self.shots: list[Path] = []
        self.notes: list[str] = []
        self.stuck = False  # set by the watchdog: every wait gives up

    def pump(self, seconds: float = 0.05) -> None:
        deadline = time.monotonic() + seconds
        while True:
            self.app.processEvents()
            if time.monotonic() >= deadline:
                return
            time.sleep(0.01)

    def wait_until(self, condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.stuck:
                raise StepFailed(f"the walkthrough ran out of time waiting for: {what}")
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out after {timeout:.0f} s waiting for: {what}")
            self.pump(0.05)

    def shot(self, name: str) -> Path:
        """The whole screen as a person sees it (window manager, dialogs and all)."""
        self.pump(0.3)
        path = self.out / f"{len(self.shots) + 1:02d}-{name}.png"
        pixmap = self.app.primaryScreen().grabWindow(0)
        if pixmap.isNull():  # no root window to grab (e.g. offscreen): the window alone
            pixmap = self.window.grab()
        pixmap.save(str(path))
        self.shots.append(path)
        print(f"  screenshot {path.name}", flush=True)
        return path

    def note(self, text: str) -> None:
        self.notes.append(text)
        print(f"  {text}", flush=True)

    def click(self, widget, pos=None) -> None:
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest

        if not (widget.isVisible() and widget.isEnabled()):
            raise StepFailed(f"cannot click {describe(widget)}: visible={widget.isVisible()} enabled={widget.isEnabled()}")
        self.check_on_screen(widget)
        if pos is None:
            QTest.mouseClick(widget, Qt.MouseButton.LeftButton)
        else:
            QTest.mouseClick(widget, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, pos)
        self.pump()

    def key(self, key, modifier=None) -> None:
        """A key pressed on whatever has the keyboard focus, as a person would."""
        from PySide6.QtCore import Qt
        from PySide6.QtTest import QTest
        from PySide6.QtWidgets import QApplication

        target = QApplication.focusWidget() or self.window
        QTest.keyClick(target, key, modifier or Qt.KeyboardModifier.NoModifier)
        self.pump()

    def check_on_screen(self, widget) -> None:
        """A control a person must use has to lie inside the window's visible area."""
        from PySide6.QtCore import QPoint, QRect

        top = widget.window()
        rect = QRect(widget.mapTo(top, QPoint(0, 0)), widget.size())
        if not top.rect().contains(rect.center()):
            raise StepFailed(f"{describe(widget)} lies outside the window ({rect} in {top.rect()})")

    def answer_dialog(self, kind, choose, shot_name: str | None = None) -> list:
        """When a modal *kind* dialog comes up: screenshot it, then choose(dialog) -> a
        button to click. Returns a list that gets the dialog once it was answered."""
        from PySide6.QtCore import Qt, QTimer
        from PySide6.QtTest import QTest
        from PySide6.QtWidgets import QApplication

        answered: list = []
        deadline = time.monotonic() + 20

        def attempt() -> None:
            dialog = QApplication.activeModalWidget()
            if not isinstance(dialog, kind) or not dialog.isVisible():
                if time.monotonic() < deadline:
                    QTimer.singleShot(50, attempt)
                return
            if shot_name:
                self.shot(shot_name)
            button = choose(dialog)
            QTest.mouseClick(button, Qt.MouseButton.LeftButton)
            answered.append(dialog)

        QTimer.singleShot(0, attempt)
        return answered


def describe(widget) -> str:
    text = widget.text() if hasattr(widget, "text") and callable(widget.text) else ""
    return f"{type(widget).__name__} {text!r}".strip()


def run_walkthrough(walk: Walk, project_path: Path, epochs: int) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from app.ui.inspect.inspect_panels import CorrectionDialog

    window, app = walk.window, walk.app
    context = window.context
    CTRL = Qt.KeyboardModifier.ControlModifier

    print("step: start page", flush=True)
    walk.wait_until(lambda: window.isVisible() and window.isActiveWindow(), 10, "the window shown and active")
    walk.note(f"window {window.width()} x {window.height()} on a {SCREEN[0]} x {SCREEN[1]} screen")
    walk.shot("start-page")

    print("step: open the project", flush=True)
    # The folder chooser is the platform's; the walk answers it (a person would pick the folder).
    QFileDialog.getExistingDirectory = staticmethod(lambda *a, **k: str(project_path))
    walk.click(window.start_page.open_button)
    walk.wait_until(lambda: context.project is not None, 20, "the project open")
    walk.wait_until(lambda: window.tabs.isVisible(), 5, "the workspaces shown")
    walk.shot("project-open")

    print("step: capture a frame from the simulated camera", flush=True)
    walk.key(Qt.Key.Key_1, CTRL)
    capture = window.capture
    walk.wait_until(lambda: window.tabs.currentWidget() is capture, 5, "Capture & Label shown")
    panel = capture.camera_panel
    if panel.source_box.currentData() != "sim":
        raise StepFailed(f"the camera source is {panel.source_box.currentText()!r}, not the simulated line")
    walk.click(panel.start_button)
    walk.wait_until(lambda: capture.last_frame is not None, 15, "a live frame")
    walk.pump(1.0)
    walk.shot("capture-live")
    before = {r.id for r in context.project.images()}
    capture.setFocus()  # as after a click into the workspace
    walk.key(Qt.Key.Key_Space)
    walk.wait_until(lambda: len(context.project.images()) == len(before) + 1, 10, "the captured frame in the project")
    new_id = next(r.id for r in context.project.images() if r.id not in before)
    walk.wait_until(lambda: capture.labeling.image_id == new_id, 10, "the captured frame selected for labeling")
    walk.shot("captured")

    print("step: label it", flush=True)
    classes = context.project.classes()
    first = next((c for c in classes if str(getattr(c, "key", "")) == "1"), classes[0])
    walk.key(Qt.Key.Key_1)
    walk.wait_until(lambda: (lb := context.project.label(new_id)) is not None and lb.verdict == first.name, 5,
                    f"the frame labeled {first.name!r} by key 1")
    walk.note(f"captured image {new_id} labeled {first.name!r} with key 1")
    walk.shot("labeled")
    walk.click(panel.start_button)  # stop the camera
    walk.wait_until(lambda: context.capture_thread is None, 10, "the camera stopped")

    print("step: retrain", flush=True)
    walk.key(Qt.Key.Key_2, CTRL)
    train = window.workspaces[1]
    walk.wait_until(lambda: window.tabs.currentWidget() is train, 5, "Train shown")
    if epochs:
        train.scroll.ensureWidgetVisible(train.epochs_spin)
        walk.click(train.epochs_spin)
        walk.key(Qt.Key.Key_A, CTRL)
        for char in str(epochs):
            walk.key(getattr(Qt.Key, f"Key_{char}"))
        walk.key(Qt.Key.Key_Tab)
        if train.epochs_spin.value() != epochs:
            raise StepFailed(f"typed {epochs} epochs, the field says {train.epochs_spin.value()}")
    train.scroll.ensureWidgetVisible(train.retrain_button)
    walk.click(train.retrain_button)
    walk.wait_until(lambda: train.trainer.is_running(), 10, "the trainer running")
    walk.wait_until(lambda: bool(train.loss_chart.points("training")) or not train.trainer.is_running(), 120,
                    "the first loss point")
    walk.shot("train-running")
    started = time.monotonic()
    walk.wait_until(lambda: not train.trainer.is_running(), TRAIN_TIMEOUT_S, "the training finished")
    if not train.summary.version:
        raise StepFailed(f"the training ended without a candidate: {train.phase_label.text()}")
    walk.note(f"trained candidate {train.summary.version} ({time.monotonic() - started:.0f} s after the first loss point)")
    train.scroll.ensureWidgetVisible(train.summary.deploy_button)
    walk.shot("train-result")

    print("step: deploy", flush=True)
    answered = walk.answer_dialog(
        QMessageBox, lambda box: box.button(QMessageBox.StandardButton.Yes), shot_name="deploy-question"
    )
    walk.click(train.summary.deploy_button)
    walk.wait_until(lambda: bool(answered), 20, "the deploy question answered")
    model = context.project.production_model()
    if model is None or model.version != train.summary.version:
        raise StepFailed(f"{train.summary.version} is not in production after Deploy")
    walk.note(f"{model.version} deployed")
    walk.shot("deployed")

    print("step: inspect the simulated line", flush=True)
    walk.key(Qt.Key.Key_3, CTRL)
    inspect = window.workspaces[2]
    walk.wait_until(lambda: window.tabs.currentWidget() is inspect, 5, "Inspect shown")
    if inspect.source_combo.currentData() != "simulated":
        raise StepFailed(f"Inspect's source is {inspect.source_combo.currentText()!r}")
    walk.click(inspect.start_button)
    walk.wait_until(lambda: inspect.counters.parts >= 25 and inspect.latest is not None, 60, "25 parts inspected")
    walk.shot("inspect-live")

    print("step: review a past part", flush=True)
    table, model_rows = inspect.table, inspect.table_model
    row = min(4, model_rows.rowCount() - 1)
    index = model_rows.index(row, 1)
    table.scrollTo(index)
    walk.pump()
    walk.click(table.viewport(), table.visualRect(index).center())
    reviewed = inspect.reviewing
    if reviewed is None:
        raise StepFailed("clicking a row of the log did not open that part")
    if inspect.image_view.image() is None:
        raise StepFailed("the reviewed part shows no image")
    parts_then = inspect.counters.parts
    walk.wait_until(lambda: inspect.counters.parts >= parts_then + 10, 30, "the line going on while reviewing")
    if inspect.reviewing is not reviewed or inspect.banner.headline != reviewed.label:
        raise StepFailed("the review did not stay on the selected part while the line ran")
    walk.note(f"reviewing {inspect.review_bar.label.text()!r}; the line counted {inspect.counters.parts} parts meanwhile")
    walk.shot("inspect-review")
    walk.key(Qt.Key.Key_Down)
    if inspect.reviewing is reviewed:
        raise StepFailed("Down in the log did not move to the next part")
    walk.key(Qt.Key.Key_Up)
    if inspect.reviewing is not reviewed:
        raise StepFailed("Up in the log did not come back to the part")

    print("step: mark it wrong", flush=True)
    images_before = len(context.project.images())
    right = "ok" if reviewed.label == "FAIL" else first.name
    answered = walk.answer_dialog(CorrectionDialog, lambda d: d.buttons[right], shot_name="wrong-dialog")
    walk.key(Qt.Key.Key_W)
    walk.wait_until(lambda: bool(answered), 20, "the correction dialog answered")
    walk.wait_until(lambda: len(context.project.images()) == images_before + 1, 10, "the corrected part saved")
    stored = context.project.images()[-1]
    if context.project.label(stored.id).verdict != right:
        raise StepFailed(f"the corrected part is labeled {context.project.label(stored.id).verdict!r}, not {right!r}")
    walk.note(f"marked the {reviewed.label} part wrong: saved as image {stored.id} labeled {right!r}")
    walk.shot("marked-wrong")
    walk.key(Qt.Key.Key_Escape)
    if inspect.reviewing is not None:
        raise StepFailed("Esc did not go back to live")
    walk.pump(0.5)
    walk.shot("back-to-live")
    walk.click(inspect.start_button)  # Stop
    walk.wait_until(lambda: not inspect.is_running(), 15, "the inspection stopped")

    print("step: export the CSV", flush=True)
    target = walk.out / "inspections.csv"
    QFileDialog.getSaveFileName = staticmethod(lambda *a, **k: (str(target), "CSV files (*.csv)"))
    walk.click(inspect.export_button)
    walk.wait_until(target.exists, 10, "the CSV written")
    rows = list(csv.DictReader(target.open(encoding="utf-8")))
    if len(rows) != inspect.counters.parts:
        raise StepFailed(f"the CSV has {len(rows)} rows for {inspect.counters.parts} parts")
    walk.note(f"exported {len(rows)} rows to {target.name}")
    walk.shot("exported")

    print("step: models", flush=True)
    walk.key(Qt.Key.Key_4, CTRL)
    walk.wait_until(lambda: window.tabs.currentIndex() == 3, 5, "Models shown")
    walk.shot("models")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lineside-walkthrough")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=480, help="give up (exit 1) after this many seconds")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--xvfb", action="store_true", help="run on a private Xvfb screen (default without $DISPLAY)")
    where.add_argument("--display", help="an X display to use, e.g. :0")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)

    helpers: list[subprocess.Popen] = []
    if args.display:
        os.environ["DISPLAY"] = args.display
    elif args.xvfb or not os.environ.get("DISPLAY"):
        if shutil.which("Xvfb") is None:
            print("gui_walkthrough: no X display and no Xvfb (apt-get install xvfb openbox)", file=sys.stderr)
            return 2
        server, display = start_xvfb()
        helpers.append(server)
        os.environ["DISPLAY"] = display
        wm = start_window_manager(display)
        if wm is not None:
            helpers.append(wm)
    os.environ["QT_QPA_PLATFORM"] = "xcb"
    try:
        return _run(args, helpers)
    finally:
        for helper in reversed(helpers):
            helper.terminate()
            try:
                helper.wait(5)
            except subprocess.TimeoutExpired:
                helper.kill()


def _run(args, helpers) -> int:
    from app.cli.gui import check_qt_platform

    problem = check_qt_platform()
    if problem:
        print(problem, file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="lineside-walk-"))
    os.environ["LINESIDE_HOME"] = str(work / "home")
    print(f"display {os.environ['DISPLAY']}, window manager: {'openbox' if len(helpers) > 1 else 'none'}; work in {work}")
    project_path = make_tiny_project(work / "line")

    errors: list[str] = []

    def hook(exc_type, value, tb) -> None:
        text = "".join(traceback.format_exception(exc_type, value, tb))
        errors.append(text)
        sys.stderr.write(f"UNCAUGHT EXCEPTION in the event loop:\n{text}")

    sys.excepthook = hook
    threading.excepthook = lambda a: hook(a.exc_type, a.exc_value, a.exc_traceback)

    from PySide6.QtCore import QSettings

    from app.ui.app import create_application
    from app.ui.context import AppContext
    from app.ui.main_window import MainWindow

    app = create_application([sys.argv[0]])
    if app.platformName() != "xcb":
        print(f"gui_walkthrough: Qt runs on {app.platformName()!r}, not xcb", file=sys.stderr)
        return 2
    context = AppContext(QSettings(str(work / "settings.ini"), QSettings.Format.IniFormat))
    window = MainWindow(context)
    window.resize(*SCREEN)
    window.move(0, 0)
    window.showMaximized()  # as at the line; a window manager gives it the screen
    window.activateWindow()
    walk = Walk(app, window, args.out)

    def stuck() -> None:  # runs inside any nested event loop too, e.g. a dialog nobody answers
        from PySide6.QtWidgets import QApplication

        walk.stuck = True
        errors.append(f"the walkthrough did not finish within {args.timeout:.0f} s")
        walk.shot("stuck")
        dialog = QApplication.activeModalWidget()
        if dialog is not None:
            dialog.close()

    from PySide6.QtCore import QTimer

    watchdog = QTimer()
    watchdog.setSingleShot(True)
    watchdog.timeout.connect(stuck)
    watchdog.start(int(args.timeout * 1000))
    failure = None
    try:
        run_walkthrough(walk, project_path, args.epochs)
    except StepFailed as exc:
        failure = str(exc)
    except Exception:  # noqa: BLE001  (a bug in the walk or the app: report it, with the screen)
        failure = traceback.format_exc()
    watchdog.stop()
    if failure:
        walk.shot("failed")
    window.close()  # stops the camera, the inspection and any training, as the X does
    walk.pump(0.5)
    print(f"\n{len(walk.shots)} screenshots in {args.out}")
    if failure:
        print(f"WALKTHROUGH FAILED: {failure}", file=sys.stderr)
    if errors:
        print(f"WALKTHROUGH FAILED: {len(errors)} uncaught exception(s) in the event loop", file=sys.stderr)
    return 1 if failure or errors else 0


if __name__ == "__main__":
    sys.exit(main())
