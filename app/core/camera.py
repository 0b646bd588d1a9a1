"""Frame sources (OpenCV camera, simulated line, hot folder) and the capture thread.

Qt-free on purpose: plain threads, so the line-side CLI and the desktop app share one
capture path. Frames and the FrameQueue live in app.core.frames, the hot folder in
app.core.hotfolder; everything is importable from here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Callable

import cv2

from app.core.frames import Frame, FrameQueue, FrameSource, SourceError
from app.core.hotfolder import HotFolderSource
from app.core.imageio import to_bgr8

log = logging.getLogger(__name__)

__all__ = [
    "CaptureThread", "Frame", "FrameQueue", "FrameSource", "HotFolderSource",
    "OpenCVCamera", "SimulatedCamera", "SourceError", "probe_cameras",
]  # fmt: skip


class OpenCVCamera:
    """A camera through cv2.VideoCapture. Exposure and gain are set only where supported."""

    none_means_lost = True

    def __init__(
        self,
        index: int,
        width: int | None = None,
        height: int | None = None,
        exposure: float | None = None,
        gain: float | None = None,
    ) -> None:
        self.index = index
        self.width, self.height = width, height
        self.exposure, self.gain = exposure, gain
        self.name = f"Camera {index}"
        self.supported: dict[str, bool] = {}
        self._cap: cv2.VideoCapture | None = None
        self._count = 0

    def open(self) -> None:
        cap = cv2.VideoCapture(self.index)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"{self.name}: no camera answers at this index. Check the cable and try again.")
        self._cap = cap
        self._apply(cv2.CAP_PROP_FRAME_WIDTH, "width", self.width)
        self._apply(cv2.CAP_PROP_FRAME_HEIGHT, "height", self.height)
        self._apply(cv2.CAP_PROP_EXPOSURE, "exposure", self.exposure)
        self._apply(cv2.CAP_PROP_GAIN, "gain", self.gain)

    def _apply(self, prop: int, key: str, value: float | None) -> None:
        # Drivers return False for properties they do not have; remember it so the
        # UI can grey the control out instead of pretending.
        if value is None or self._cap is None:
            return
        self.supported[key] = bool(self._cap.set(prop, float(value)))

    def set_property(self, key: str, value: float) -> bool:
        props = {"exposure": cv2.CAP_PROP_EXPOSURE, "gain": cv2.CAP_PROP_GAIN}
        setattr(self, key, value)
        self._apply(props[key], key, value)
        return self.supported.get(key, False)

    def read(self) -> Frame | None:
        if self._cap is None:
            return None
        ok, image = self._cap.read()
        if not ok or image is None:
            return None
        self._count += 1
        return Frame(to_bgr8(image), self._count, time.time(), self.name)

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


class SimulatedCamera:
    """A synthetic production line: parts with and without defects, at *fps*."""

    none_means_lost = True

    def __init__(self, seed: int = 0, defect_rate: float = 0.3, fps: float = 15) -> None:
        self.seed, self.defect_rate, self.fps = seed, defect_rate, fps
        self.name = "Simulated line"
        self._stream = None
        self._count = 0
        self._next_at = 0.0

    def open(self) -> None:
        from app.core.synthetic import PartStream  # only the simulator needs it

        self._stream = PartStream(self.seed, self.defect_rate)
        self._next_at = time.monotonic()

    def read(self) -> Frame | None:
        if self._stream is None:
            return None
        # Pace like a real camera: read() blocks until the next frame is due.
        delay = self._next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        self._next_at = max(self._next_at + 1.0 / self.fps, time.monotonic())
        image, truth = self._stream.next_frame()
        self._count += 1
        return Frame(to_bgr8(image), self._count, time.time(), self.name, truth=truth)

    def close(self) -> None:
        self._stream = None


def probe_cameras(max_index: int = 4, timeout_s: float = 2.0) -> list[int]:
    """Indexes 0..max_index-1 where a camera opens and delivers a frame.

    Each probe runs in a daemon thread with a deadline: some drivers hang on an index
    with nothing behind it, and a hung driver must not hang the app.
    """
    found: list[int] = []
    lock = threading.Lock()
    try:  # an empty index is normal here, not worth a warning per index
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    except AttributeError:
        pass

    def probe(index: int) -> None:
        cap = cv2.VideoCapture(index)
        try:
            if cap.isOpened() and cap.read()[0]:
                with lock:
                    found.append(index)
        finally:
            cap.release()

    deadline = time.monotonic() + timeout_s
    for index in range(max_index):
        worker = threading.Thread(target=probe, args=(index,), name=f"lineside-probe-{index}", daemon=True)
        worker.start()
        worker.join(max(0.0, deadline - time.monotonic()))
        if time.monotonic() >= deadline:
            break
    with lock:
        return sorted(found)


StateCallback = Callable[[str], None]


class CaptureThread(threading.Thread):
    """Reads a source into a FrameQueue; reconnects by itself when the source is lost.

    States reported through *on_state*: "connected: <name>", "lost: <name> — reconnecting",
    "stopped". A source is lost when open() fails, or read() raises or returns None
    *max_failures* times in a row (None only counts where it means loss).
    """

    def __init__(
        self,
        source: FrameSource,
        queue: FrameQueue,
        on_state: StateCallback | None = None,
        max_failures: int = 5,
        backoff_s: tuple[float, float] = (0.2, 5.0),
        on_frame: Callable[[Frame], None] | None = None,
    ) -> None:
        super().__init__(name=f"lineside-capture-{source.name}", daemon=True)
        self.source = source
        self.queue = queue
        self.on_state = on_state
        self.on_frame = on_frame
        self.max_failures = max_failures
        self.backoff_min, self.backoff_max = backoff_s
        self.state = ""
        self.reconnects = 0
        self._stop_event = threading.Event()
        self._calls: deque[Callable[[], None]] = deque()

    def call_soon(self, fn: Callable[[], None]) -> None:
        """Run fn() on the capture thread between two reads (camera settings: drivers
        are not safe to configure from another thread while a read is in progress)."""
        self._calls.append(fn)

    def _run_calls(self) -> None:
        while self._calls:
            fn = self._calls.popleft()
            try:
                fn()
            except Exception:
                log.exception("camera setting failed")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop_event.set()
        if self.is_alive() and threading.current_thread() is not self:
            self.join(timeout)

    @property
    def stopping(self) -> bool:
        return self._stop_event.is_set()

    def _report(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if self.on_state is not None:
            try:
                self.on_state(state)
            except Exception:  # a broken listener must not kill the capture
                log.exception("camera state listener failed")

    def _connect(self) -> bool:
        """Open the source, retrying with growing waits; False if stopped meanwhile."""
        wait = self.backoff_min
        while not self._stop_event.is_set():
            try:
                self.source.open()
                self._report(f"connected: {self.source.name}")
                return True
            except Exception as exc:
                log.warning("cannot open %s: %s", self.source.name, exc)
                self._report(f"lost: {self.source.name} — reconnecting")
                self._close_quietly()
                if self._stop_event.wait(wait):
                    return False
                wait = min(wait * 2, self.backoff_max)
                self.reconnects += 1
        return False

    def _close_quietly(self) -> None:
        try:
            self.source.close()
        except Exception:
            log.exception("closing %s failed", self.source.name)

    def run(self) -> None:
        try:
            if not self._connect():
                return
            failures = 0
            while not self._stop_event.is_set():
                self._run_calls()
                try:
                    frame = self.source.read()
                    failed = frame is None and self.source.none_means_lost
                except Exception as exc:
                    log.warning("%s: read failed: %s", self.source.name, exc)
                    frame, failed = None, True
                if frame is not None:
                    failures = 0
                    self._report(f"connected: {self.source.name}")
                    self.queue.put(frame)
                    if self.on_frame is not None:
                        self.on_frame(frame)
                    continue
                if not failed:
                    continue
                failures += 1
                if failures < self.max_failures:
                    self._stop_event.wait(0.02)
                    continue
                self._report(f"lost: {self.source.name} — reconnecting")
                self._close_quietly()
                failures = 0
                if self._stop_event.wait(self.backoff_min) or not self._connect():
                    return
        finally:
            self._close_quietly()
            self._report("stopped")
