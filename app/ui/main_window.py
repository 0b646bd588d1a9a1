"""The main window: the start page, then five workspaces in a big tab bar.

Capture & Label, Train, Inspect, Models, and Plant (every station of the project; a
single-PC project shows how a station joins). A workspace is told when it is shown or
hidden (activate/deactivate) so it can stop timers and workers it does not need. The
status bar shows who is at the station (app/ui/trust/station_access.py), the camera state,
the model at the line and the training device; the Trust menu signs people in and out,
manages people and shows the audit trail.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QProcess, QSettings, Qt
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QMessageBox, QStackedWidget, QTabWidget, QWidget

from app.core.errors import LinesideError
from app.ui.capture.capture_workspace import CaptureWorkspace
from app.ui.context import AppContext
from app.ui.shared.style import FAIL, PASS, WARN
from app.ui.shared.workers import run_in_background, wait_for_background_work
from app.ui.start_page import StartPage
from app.ui.trust.station_access import StationAccess
from app.ui.window_dialogs import CANCEL, KEEP, STAY, ShortcutsOverlay, ask_close_during_training

log = logging.getLogger(__name__)

# (tab title, module, class) of the workspaces after Capture & Label.
OTHER_WORKSPACES = [
    ("Train", "app.ui.train.train_workspace", "TrainWorkspace"),
    ("Inspect", "app.ui.inspect.inspect_workspace", "InspectWorkspace"),
    ("Models", "app.ui.models.models_workspace", "ModelsWorkspace"),
    ("Plant", "app.ui.plant.plant_workspace", "PlantWorkspace"),
]
STATUS_MESSAGE_MS = 8000
APP_TITLE = "Lineside"


def window_title(project_name: str | None) -> str:
    """"line 3 — Lineside". Ending with the application's display name matters: Qt
    appends that name to any title that does not end with it, which turned
    "Lineside — line 3" into "Lineside — line 3 — Lineside"."""
    return f"{project_name} — {APP_TITLE}" if project_name else APP_TITLE


def _load_workspace(title: str, module_name: str, class_name: str, context: AppContext) -> QWidget:
    """The workspace, or a plain placeholder while its module is not there."""
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        placeholder = QLabel(f"{title} is not available in this build.")
        placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)
        placeholder.setProperty("role", "subtitle")
        return placeholder
    return getattr(module, class_name)(context)


class MainWindow(QMainWindow):
    def __init__(
        self,
        context: AppContext | None = None,
        demo_path: Path | None = None,
        prepare_demo: Callable[[Path], object] | None = None,
        demo_command: list[str] | None = None,
    ) -> None:
        """The demo project at *demo_path* is built when missing by *demo_command* (a child
        process: it trains, which never happens in the app's process) or else by
        *prepare_demo(demo_path)* in a background task."""
        super().__init__()
        self.context = context or AppContext(QSettings())
        self.demo_path, self.prepare_demo, self.demo_command = demo_path, prepare_demo, demo_command
        self._demo_process: QProcess | None = None
        self._demo_log: list[str] = []
        self._demo_start_camera = True
        self.setWindowTitle(APP_TITLE)
        self.resize(1500, 950)
        self._closed = False
        self._close_after_training = False
        self.shortcuts_overlay: ShortcutsOverlay | None = None

        self.stack = QStackedWidget()
        self.setCentralWidget(self.stack)
        self.start_page = StartPage()
        self.start_page.demo_button.setVisible(demo_path is not None)
        self.stack.addWidget(self.start_page)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.capture = CaptureWorkspace(self.context)
        self.tabs.addTab(self.capture, "Capture && Label")
        self.workspaces: list[QWidget] = [self.capture]
        for title, module_name, class_name in OTHER_WORKSPACES:
            widget = _load_workspace(title, module_name, class_name, self.context)
            self.tabs.addTab(widget, title)
            self.workspaces.append(widget)
            navigate = getattr(widget, "navigate_requested", None)
            if navigate is not None:
                navigate.connect(self.show_workspace)
            review = getattr(widget, "review_image_requested", None)
            if review is not None:
                review.connect(self.review_image)
        self.stack.addWidget(self.tabs)
        self._active: QWidget | None = None
        self.tabs.currentChanged.connect(self._tab_changed)

        self._build_status_bar()
        self._build_menu()
        self.start_page.open_requested.connect(self.open_project)
        self.start_page.create_requested.connect(self.create_project)
        self.start_page.demo_requested.connect(self.open_demo)
        self.context.project_changed.connect(self._project_changed)
        self.context.models_changed.connect(self._update_model_status)
        self.context.camera_state.connect(self._update_camera_status)
        self.context.status_message.connect(lambda text: self.statusBar().showMessage(text, STATUS_MESSAGE_MS))
        self.context.training_device_changed.connect(self._update_device_status)
        self._project_changed(self.context.project)

    # -- chrome -----------------------------------------------------------------------

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.access = StationAccess(self, self.context)
        bar.addPermanentWidget(self.access.button)
        self.camera_label = QLabel("Camera: stopped")
        self.model_label = QLabel("Model at the line: none")
        self.device_label = QLabel("")
        for label in (self.camera_label, self.model_label, self.device_label):
            bar.addPermanentWidget(label)
        self._training_target = ""  # "" trains on this PC; else the Train tab's "server gpu-1"
        for widget in self.workspaces:
            target = getattr(widget, "training_target_changed", None)
            if target is not None:
                target.connect(self._update_training_target)
        self._update_device_status(self.context.training_device())

    def _build_menu(self) -> None:
        menu = self.menuBar().addMenu("&Project")
        for text, shortcut, slot in (
            ("Start page…", "Ctrl+Shift+O", self.show_start_page),
            ("Close project", "Ctrl+W", self.close_project),
            ("Quit", "Ctrl+Q", self.close),
        ):
            action = QAction(text, self)
            action.setShortcut(QKeySequence(shortcut))
            action.triggered.connect(lambda _checked=False, slot=slot: slot())
            menu.addAction(action)
        self.addActions(menu.actions())
        # Ctrl+1..5: the workspaces by position, the same keys in every tab.
        view = self.menuBar().addMenu("&View")
        for index in range(self.tabs.count()):
            action = QAction(self.tabs.tabText(index), self)
            action.setShortcut(QKeySequence(f"Ctrl+{index + 1}"))
            action.triggered.connect(lambda _checked=False, i=index: self.show_workspace_at(i))
            view.addAction(action)
        self.addActions(view.actions())
        self.access.add_menu(self.menuBar())
        help_menu = self.menuBar().addMenu("&Help")
        keys = QAction("Keyboard shortcuts", self)
        keys.setShortcut(QKeySequence("F1"))
        keys.triggered.connect(lambda: self.toggle_shortcuts())
        help_menu.addAction(keys)
        self.addAction(keys)

    def toggle_shortcuts(self) -> None:
        """The F1 overlay: every key, by workspace. F1 again (or Esc) closes it."""
        overlay = self.shortcuts_overlay
        if overlay is not None and overlay.isVisible():
            overlay.accept()
            return
        if overlay is None:
            overlay = self.shortcuts_overlay = ShortcutsOverlay(self)
        overlay.show()
        overlay.raise_()
        overlay.activateWindow()

    def _update_camera_status(self, state: str) -> None:
        color = FAIL if state.startswith("lost") else (PASS if state.startswith("connected") else "")
        self.camera_label.setText(f"Camera: {state}")
        self.camera_label.setStyleSheet(f"color: {color}; font-weight: 700;" if color else "")

    def _update_model_status(self) -> None:
        project = self.context.project
        model = project.production_model() if project is not None else None
        self.model_label.setText(f"Model at the line: {model.version}" if model else "Model at the line: none")
        self.model_label.setStyleSheet("" if model else f"color: {WARN};")

    def _update_device_status(self, device: str) -> None:
        self._local_device = device
        self.device_label.setText(f"Training on: {self._training_target or device}")

    def _update_training_target(self, target: str) -> None:
        self._training_target = target
        self._update_device_status(self._local_device)

    # -- workspaces ---------------------------------------------------------------------

    def show_workspace(self, name: str) -> None:
        for index in range(self.tabs.count()):
            if self.tabs.tabText(index).replace("&&", "&").lower().startswith(str(name).lower()):
                self.tabs.setCurrentIndex(index)
                return

    def review_image(self, image_id: int) -> None:
        """Show one image in Capture & Label, where its label can be changed."""
        self.tabs.setCurrentWidget(self.capture)
        self.capture.labeling.show_image(image_id)

    def show_workspace_at(self, index: int) -> None:
        if self.stack.currentWidget() is self.tabs and 0 <= index < self.tabs.count():
            self.tabs.setCurrentIndex(index)

    def _tab_changed(self, index: int) -> None:
        new = self.tabs.widget(index) if self.stack.currentWidget() is self.tabs else None
        if new is self._active:
            return
        for widget, method in ((self._active, "deactivate"), (new, "activate")):
            call = getattr(widget, method, None)
            if callable(call):
                call()
        self._active = new

    def _project_changed(self, project) -> None:
        if project is None:
            self.show_start_page()
            self.setWindowTitle(window_title(None))
        else:
            self.setWindowTitle(window_title(project.name))
            self.stack.setCurrentWidget(self.tabs)
            self._tab_changed(self.tabs.currentIndex())
        self._update_model_status()

    def show_start_page(self) -> None:
        self.start_page.set_recent(self.context.recent_projects())
        self.stack.setCurrentWidget(self.start_page)
        self._tab_changed(-1)

    # -- opening projects -------------------------------------------------------------------

    def _guarded(self, action, what: str) -> bool:
        try:
            action()
            return True
        except LinesideError as exc:
            QMessageBox.warning(self, f"Cannot {what}", str(exc))
            return False

    def open_project(self, path: str) -> bool:
        ok = self._guarded(lambda: self.context.open_project(path), "open the project")
        if not ok and path in self.context.recent_projects() and not Path(path).exists():
            self.context.forget_recent(path)
            self.start_page.set_recent(self.context.recent_projects())
        return ok

    def create_project(self, path: str) -> bool:
        return self._guarded(lambda: self.context.create_project(path), "create the project")

    def close_project(self) -> None:
        self.context.close_project()

    def open_demo(self, start_camera: bool = True) -> None:
        """Open the demo project; on first use it is built (and trained) first, by
        *demo_command* in a child process or by *prepare_demo* in a background task."""
        if self.demo_path is None or self._demo_process is not None:
            return
        self._demo_start_camera = start_camera
        self.start_page.set_busy("Preparing the demo project (first time only: generating parts and training)…")
        if self.demo_command:
            process = QProcess(self)
            process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
            process.readyReadStandardOutput.connect(self._demo_output)
            process.finished.connect(self._demo_finished)
            self._demo_process, self._demo_log = process, []
            process.start(self.demo_command[0], self.demo_command[1:])
            return
        prepare = self.prepare_demo or (lambda _p: None)

        def failed(exc: Exception) -> None:
            self.start_page.set_busy("")
            QMessageBox.warning(self, "Cannot prepare the demo project", str(exc))

        run_in_background(lambda: prepare(self.demo_path), lambda _r: self._open_built_demo(), failed, owner=self)

    def _demo_output(self) -> None:
        process = self._demo_process
        if process is None:
            return
        text = bytes(process.readAllStandardOutput().data()).decode("utf-8", "replace")
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        self._demo_log = (self._demo_log + lines)[-20:]
        if lines:
            self.start_page.set_busy(f"Preparing the demo project: {lines[-1]}")

    def _demo_finished(self, exit_code: int, _status=None) -> None:
        process, self._demo_process = self._demo_process, None
        if process is not None:
            process.deleteLater()
        self.start_page.set_busy("")
        if self._closed:
            return
        if exit_code != 0:
            detail = "\n".join(self._demo_log[-6:]) or f"exit code {exit_code}"
            QMessageBox.warning(self, "Cannot prepare the demo project", detail)
            return
        self._open_built_demo()

    def _open_built_demo(self) -> None:
        self.start_page.set_busy("")
        if self.open_project(str(self.demo_path)) and self._demo_start_camera:
            self.capture.camera_panel.select_source("sim")
            self.capture.camera_panel.start_button.click()

    # -- closing ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop every camera thread, worker and child process; idempotent."""
        if self._closed:
            return
        self._closed = True
        for widget in self.workspaces:
            for method in ("deactivate", "shutdown"):
                call = getattr(widget, method, None)
                if callable(call):
                    try:
                        call()
                    except Exception:  # closing must finish even if one workspace fails
                        log.exception("%s.%s failed", type(widget).__name__, method)
        process, self._demo_process = self._demo_process, None
        if process is not None:  # closing while the demo is built: stop the child too
            process.kill()
            process.waitForFinished(5000)
        self.context.shutdown()
        wait_for_background_work(15000)

    def _training(self) -> QWidget | None:
        return next((w for w in self.workspaces if callable(getattr(w, "is_busy", None))), None)

    def closeEvent(self, event: QCloseEvent) -> None:
        train = self._training()
        if not self._closed and not self._close_after_training and train is not None and train.is_busy():
            choice = ask_close_during_training(self)
            if choice == STAY:
                event.ignore()
                return
            if choice == KEEP:
                event.ignore()
                self._finish_training_in_background(train)
                return
            assert choice == CANCEL  # shutdown() cancels the training and waits for it
        self.shutdown()
        super().closeEvent(event)

    def _finish_training_in_background(self, train) -> None:
        """Hide the window, stop the camera and inspection, close when the trainer ends."""
        self._close_after_training = True
        for widget in self.workspaces:
            if widget is not train:
                for method in ("deactivate", "shutdown"):
                    call = getattr(widget, method, None)
                    if callable(call):
                        call()
        self.context.stop_source()
        train.trainer.finished.connect(lambda _code: self._close_after_background_training())
        self.hide()

    def _close_after_background_training(self) -> None:
        self.close()
        # Closing a hidden window does not count as closing the last window in Qt: the
        # application would run on with nothing on screen.
        visible = [w for w in QApplication.topLevelWidgets() if w.isVisible()]
        if not visible and QApplication.quitOnLastWindowClosed():
            self.quit_application()

    @staticmethod
    def quit_application() -> None:
        QApplication.quit()  # a method of its own: tests replace it (quit ends every later event loop)
