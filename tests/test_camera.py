"""Frame sources, the frame queue and the self-reconnecting capture thread."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.camera import (
    CaptureThread,
    Frame,
    FrameQueue,
    HotFolderSource,
    SourceError,
    probe_cameras,
)
from app.core.imageio import encode_png


def _frame(i: int) -> Frame:
    return Frame(np.full((4, 4, 3), i, np.uint8), i, time.time(), "test")


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_frame_queue_drops_the_oldest_when_full():
    queue = FrameQueue(maxsize=3)
    for i in range(5):
        queue.put(_frame(i))
    assert len(queue) == 3
    assert queue.dropped == 2
    latest = queue.get_latest()
    assert latest is not None and latest.index == 4
    # Frames 2 and 3 were older than the one handed out: skipped, not shown.
    assert queue.skipped == 2
    assert queue.get_latest() is None


def test_frame_queue_get_latest_waits_up_to_timeout():
    queue = FrameQueue()
    t0 = time.monotonic()
    assert queue.get_latest(timeout=0.1) is None
    assert time.monotonic() - t0 >= 0.09
    threading.Timer(0.05, queue.put, args=(_frame(7),)).start()
    frame = queue.get_latest(timeout=2)
    assert frame is not None and frame.index == 7


class FlakySource:
    """A camera that delivers frames, then vanishes (read returns None), then comes back."""

    none_means_lost = True

    def __init__(self) -> None:
        self.name = "Flaky"
        self.unplugged = threading.Event()
        self.opens = 0
        self.count = 0

    def open(self) -> None:
        if self.unplugged.is_set():
            raise OSError("device not found")
        self.opens += 1

    def read(self) -> Frame | None:
        time.sleep(0.005)
        if self.unplugged.is_set():
            return None
        self.count += 1
        return Frame(np.zeros((8, 8, 3), np.uint8), self.count, time.time(), self.name)

    def close(self) -> None:
        pass


def test_capture_thread_reports_loss_and_reconnects():
    source = FlakySource()
    queue = FrameQueue()
    states: list[str] = []
    thread = CaptureThread(source, queue, on_state=states.append, max_failures=3, backoff_s=(0.02, 0.1))
    thread.start()
    try:
        assert _wait_for(lambda: queue.put_count > 3)
        assert states[0] == "connected: Flaky"
        source.unplugged.set()
        assert _wait_for(lambda: states[-1] == "lost: Flaky — reconnecting")
        assert thread.is_alive()
        source.unplugged.clear()
        assert _wait_for(lambda: states[-1] == "connected: Flaky")
        before = queue.put_count
        assert _wait_for(lambda: queue.put_count > before)
        assert source.opens >= 2
    finally:
        thread.stop()
    assert not thread.is_alive()
    assert states[-1] == "stopped"


def test_capture_thread_stops_promptly_while_reconnecting():
    source = FlakySource()
    source.unplugged.set()
    states: list[str] = []
    thread = CaptureThread(source, FrameQueue(), on_state=states.append, backoff_s=(5.0, 5.0))
    thread.start()
    assert _wait_for(lambda: states and states[-1].startswith("lost"))
    t0 = time.monotonic()
    thread.stop()
    assert time.monotonic() - t0 < 1.0
    assert states[-1] == "stopped"


def _png(value: int) -> bytes:
    image = np.full((32, 48, 3), value, np.uint8)
    cv2.circle(image, (24, 16), 8, (0, 0, 255), -1)
    return encode_png(image)


def test_hot_folder_waits_for_a_half_written_file(tmp_path: Path):
    (tmp_path / "old.png").write_bytes(_png(10))  # there before: not a new frame
    source = HotFolderSource(tmp_path, poll_s=0.05)
    source.open()
    assert source.read() is None

    data = _png(200)
    target = tmp_path / "part.png"
    with open(target, "wb") as fh:
        fh.write(data[: len(data) // 2])
        fh.flush()
        # Half the file is on disk: several polls must not produce a (broken) frame.
        for _ in range(4):
            assert source.read() is None
        fh.write(data[len(data) // 2 :])
    frame = None
    for _ in range(10):
        frame = source.read()
        if frame is not None:
            break
    assert frame is not None
    assert frame.path == target
    assert frame.image.shape == (32, 48, 3)
    assert int(frame.image[0, 0, 0]) == 200
    assert source.rejected == []
    # Read once only.
    assert all(source.read() is None for _ in range(3))


def test_hot_folder_skips_a_corrupt_file_and_goes_on(tmp_path: Path):
    source = HotFolderSource(tmp_path, poll_s=0.01, settle_s=0.05)
    source.open()
    (tmp_path / "a_broken.png").write_bytes(b"not an image at all")
    frames = [source.read() for _ in range(12)]
    assert all(f is None for f in frames)
    assert source.rejected == [tmp_path / "a_broken.png"]
    (tmp_path / "b_good.png").write_bytes(_png(50))
    frames = [source.read() for _ in range(4)]
    assert [f.path.name for f in frames if f is not None] == ["b_good.png"]


def test_hot_folder_missing_folder_is_a_clear_error(tmp_path: Path):
    with pytest.raises(SourceError, match="does not exist"):
        HotFolderSource(tmp_path / "nope").open()


def test_hot_folder_in_capture_thread_is_not_lost_when_idle(tmp_path: Path):
    states: list[str] = []
    queue = FrameQueue()
    class CountingFolder(HotFolderSource):
        reads = 0

        def read(self):
            CountingFolder.reads += 1
            return super().read()

    thread = CaptureThread(CountingFolder(tmp_path, poll_s=0.02), queue, on_state=states.append, max_failures=2)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while CountingFolder.reads < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert CountingFolder.reads >= 10  # many empty polls: waiting for files is not a lost camera
        assert states == [f"connected: Folder {tmp_path.name}"]
        (tmp_path / "x.png").write_bytes(_png(90))
        frame = queue.get_latest(timeout=3)
        assert frame is not None and frame.path.name == "x.png"
    finally:
        thread.stop()


def test_probe_cameras_returns_within_its_deadline():
    t0 = time.monotonic()
    found = probe_cameras(max_index=2, timeout_s=2.0)
    assert time.monotonic() - t0 < 3.0
    assert isinstance(found, list) and all(isinstance(i, int) for i in found)


def test_simulated_camera_paces_frames_and_knows_the_truth():
    pytest.importorskip("app.core.synthetic")
    from app.core.camera import SimulatedCamera

    camera = SimulatedCamera(seed=1, defect_rate=0.5, fps=50)
    camera.open()
    try:
        t0 = time.monotonic()
        frames = [camera.read() for _ in range(6)]
        elapsed = time.monotonic() - t0
    finally:
        camera.close()
    assert elapsed >= 5 / 50 * 0.9
    assert all(f is not None and f.image.dtype == np.uint8 and f.image.ndim == 3 for f in frames)
    assert [f.index for f in frames] == list(range(1, 7))
    assert all(f.truth is not None for f in frames)
