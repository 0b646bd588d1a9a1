"""Capture from the simulated line and a hot folder; a camera that disappears."""

from __future__ import annotations

import threading
import time

import numpy as np
from PySide6.QtCore import Qt

from app.core.camera import Frame, HotFolderSource, SimulatedCamera
from app.core.imageio import encode_png
from app.core.synthetic import DEFECT_KINDS


def _wait_for_frame(qtbot, workspace) -> None:
    qtbot.waitUntil(lambda: workspace.last_frame is not None, timeout=5000)


def test_space_captures_the_live_frame_into_the_project(main_window, qtbot):
    window = main_window()
    workspace = window.capture
    project = window.context.project
    window.context.start_source(SimulatedCamera(seed=4, fps=30))
    _wait_for_frame(qtbot, workspace)
    qtbot.waitUntil(lambda: window.camera_label.text() == "Camera: connected: Simulated line", timeout=3000)

    workspace.setFocus()
    on_screen = workspace.last_frame.image.copy()  # the frame shown when the key goes down
    qtbot.keyClick(workspace, Qt.Key.Key_Space)
    qtbot.waitUntil(lambda: len(project.images()) == 1, timeout=5000)
    record = project.images()[0]
    assert record.source == "camera"
    assert record.tags["camera"] == "Simulated line"
    assert record.tags["simulated_truth"] in ("ok", *DEFECT_KINDS)
    # The new image is selected for labeling at once: a key labels it.
    qtbot.waitUntil(lambda: workspace.labeling.image_id == record.id, timeout=3000)
    qtbot.keyClick(workspace, Qt.Key.Key_0)
    assert project.label(record.id).verdict == "ok"

    # The saved pixels are the frame that was on screen, exactly.
    saved = project.load_image(record.id)
    assert np.array_equal(saved, on_screen)


def test_roi_is_applied_to_saved_frames_and_the_key_is_configurable(main_window, qtbot):
    window = main_window()
    workspace = window.capture
    project = window.context.project
    window.context.start_source(SimulatedCamera(seed=5, fps=30))
    _wait_for_frame(qtbot, workspace)

    # Draw the ROI on the live view with the mouse.
    workspace.roi_button.setChecked(True)
    live = workspace.live
    rect = live._frame_rect()
    scale = rect.width() / 256

    def at(x, y):
        from PySide6.QtCore import QPoint

        return QPoint(round(rect.x() + x * scale), round(rect.y() + y * scale))

    qtbot.mousePress(live, Qt.MouseButton.LeftButton, pos=at(40, 50))
    qtbot.mouseMove(live, at(100, 120))
    qtbot.mouseRelease(live, Qt.MouseButton.LeftButton, pos=at(200, 170))
    roi = project.get_setting("roi")
    assert roi is not None
    assert abs(roi[0] - 40) <= 2 and abs(roi[1] - 50) <= 2
    assert abs(roi[2] - 160) <= 3 and abs(roi[3] - 120) <= 3
    assert not workspace.roi_button.isChecked()

    # A foot pedal sending Page Down.
    workspace.set_capture_key("PgDown")
    assert window.context.settings.value("capture/key") == "PgDown"
    assert "PgDown" in workspace.capture_button.text()
    workspace.setFocus()
    qtbot.keyClick(workspace, Qt.Key.Key_Space)  # no longer the capture key
    qtbot.keyClick(workspace, Qt.Key.Key_PageDown)
    qtbot.waitUntil(lambda: len(project.images()) >= 1, timeout=5000)
    assert len(project.images()) == 1  # the PgDown frame only: Space, pressed first, saved nothing
    record = project.images()[0]
    assert (record.width, record.height) == (roi[2], roi[3])
    assert record.tags["roi"] == ",".join(str(v) for v in roi)


def _png(value: int) -> bytes:
    image = np.full((60, 80, 3), value, np.uint8)
    image[20:40, 30:50] = (0, 0, 255)
    return encode_png(image)


def test_hot_folder_half_written_file_is_waited_for(main_window, qtbot, tmp_path):
    window = main_window()
    workspace = window.capture
    folder = tmp_path / "drop"
    folder.mkdir()
    class CountingFolder(HotFolderSource):
        reads = 0

        def read(self):
            CountingFolder.reads += 1
            return super().read()

    window.context.start_source(CountingFolder(folder, poll_s=0.05))
    qtbot.waitUntil(lambda: window.context.camera_status.startswith("connected"), timeout=3000)

    data = _png(180)
    target = folder / "part-001.png"
    with open(target, "wb") as fh:
        fh.write(data[:40])
        fh.flush()
        polled = CountingFolder.reads
        qtbot.waitUntil(lambda: CountingFolder.reads >= polled + 10, timeout=10_000)  # ten polls, half a file
        assert workspace.last_frame is None
        fh.write(data[40:])
    _wait_for_frame(qtbot, workspace)
    frame = workspace.last_frame
    assert frame.path == target
    assert frame.image.shape == (60, 80, 3) and int(frame.image[0, 0, 0]) == 180
    assert window.context.frame_source.rejected == []
    assert not workspace.alarm.isVisible()

    workspace.capture()
    project = window.context.project
    qtbot.waitUntil(lambda: len(project.images()) == 1, timeout=5000)
    assert project.images()[0].tags["camera"] == "Folder drop"


class UnpluggableCamera:
    """A fake camera the test can unplug and plug back in."""

    none_means_lost = True

    def __init__(self) -> None:
        self.name = "Bench camera"
        self.plugged = threading.Event()
        self.plugged.set()
        self.count = 0

    def open(self) -> None:
        if not self.plugged.is_set():
            raise OSError("no such device")

    def read(self) -> Frame | None:
        time.sleep(0.01)
        if not self.plugged.is_set():
            return None
        self.count += 1
        return Frame(np.full((48, 64, 3), 90, np.uint8), self.count, time.time(), self.name)

    def close(self) -> None:
        pass


def test_a_camera_that_disappears_raises_the_alarm_and_comes_back(main_window, qtbot):
    window = main_window()
    workspace = window.capture
    camera = UnpluggableCamera()
    window.context.start_source(camera)
    _wait_for_frame(qtbot, workspace)
    assert workspace.alarm.isHidden()

    camera.plugged.clear()
    qtbot.waitUntil(lambda: workspace.alarm.isVisible(), timeout=5000)
    assert "Bench camera" in workspace.alarm_text.text()
    assert "reconnecting" in workspace.alarm_text.text()
    assert window.camera_label.text() == "Camera: lost: Bench camera — reconnecting"
    assert "c5221f" in window.camera_label.styleSheet()  # red
    grabbed = workspace.grab()  # the banner is really painted
    assert not grabbed.isNull()

    frames_before = camera.count
    camera.plugged.set()
    qtbot.waitUntil(lambda: not workspace.alarm.isVisible(), timeout=10000)
    qtbot.waitUntil(lambda: camera.count > frames_before, timeout=5000)
    assert window.camera_label.text() == "Camera: connected: Bench camera"

    window.context.stop_source()
    assert window.camera_label.text() == "Camera: stopped"
    assert workspace.camera_panel.start_button.text() == "Start"
