"""Frame sources (OpenCV camera, simulated line, hot folder) and the capture thread.

Qt-free on purpose: plain threads, so the line-side CLI and the desktop app share one
capture path. The capture thread only ever *puts* into a bounded FrameQueue; whoever
shows or inspects frames takes the newest one and never waits for the camera, so a slow
consumer costs dropped frames, never a frozen screen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import cv2
import numpy as np

from app.core.errors import BadImageError, LinesideError
from app.core.imageio import is_image_file, read_image, to_bgr8

log = logging.getLogger(__name__)


class SourceError(LinesideError):
    """A frame source cannot be opened (no camera at that index, folder missing)."""


@dataclass
class Frame:
    image: np.ndarray  # uint8 HxWx3 BGR
    index: int  # running number within the source
    at: float  # time.time() when captured
    source: str  # the source's name, e.g. "Camera 0"
    truth: str | None = None  # known ground truth (simulated line only)
    path: Path | None = None  # the file it came from (hot folder only)


class FrameSource(Protocol):
    name: str
    # False for sources where "no frame right now" is normal (a hot folder waiting
    # for the next file); True where it means the device stopped delivering.
    none_means_lost: bool

    def open(self) -> None: ...

    def read(self) -> Frame | None: ...

    def close(self) -> None: ...


class FrameQueue:
    """A bounded queue of frames that drops the OLDEST frame when full.

    The newest frame is what the line needs to see; an old one is worthless.
    """

    def __init__(self, maxsize: int = 4) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self.put_count = 0
        self.dropped = 0  # pushed out because the queue was full
        self.skipped = 0  # discarded by get_latest() in favour of a newer frame

    def put(self, frame: Frame) -> None:
        with self._cond:
            if len(self._frames) >= self.maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self.put_count += 1
            self._cond.notify_all()

    def get_latest(self, timeout: float = 0) -> Frame | None:
        """The newest frame (older ones are discarded), or None if none came in *timeout* s."""
        with self._cond:
            if not self._frames and timeout > 0:
                self._cond.wait_for(lambda: bool(self._frames), timeout)
            if not self._frames:
                return None
            frame = self._frames.pop()
            self.skipped += len(self._frames)
            self._frames.clear()
            return frame

    def clear(self) -> None:
        with self._cond:
            self._frames.clear()

    def __len__(self) -> int:
        with self._cond:
            return len(self._frames)


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


class HotFolderSource:
    """New image files dropped into a folder by another machine (a PLC, a vision box).

    A file is read only once its size is unchanged across two polls, so a file that is
    still being copied is waited for, never read half-written; one that does not decode
    is retried until it has sat unchanged for *settle_s*, then skipped (in `rejected`).
    Files already there when the source opens are not frames.
    """

    none_means_lost = False

    def __init__(self, folder: Path | str, poll_s: float = 0.2, settle_s: float = 3.0) -> None:
        self.folder = Path(folder)
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.name = f"Folder {self.folder.name}"
        self._seen: set[Path] = set()
        self._sizes: dict[Path, tuple[int, int]] = {}
        self._broken: dict[Path, tuple[tuple[int, int], float]] = {}
        self._count = 0
        self.rejected: list[Path] = []  # files that were stable but not images

    def open(self) -> None:
        if not self.folder.is_dir():
            raise SourceError(f"{self.folder}: the hot folder does not exist (or is not reachable).")
        self._seen = {p for p in self.folder.iterdir() if is_image_file(p)}
        self._sizes.clear()

    def _stable_files(self) -> list[Path]:
        # iterdir() raises OSError when the folder goes away: the capture thread counts
        # that as a lost source. Size *and* mtime must hold still: a writer that pauses
        # between chunks changes the mtime even when a poll catches the same size.
        stats: list[tuple[float, str, Path, tuple[int, int]]] = []
        for path in self.folder.iterdir():
            if path in self._seen or not is_image_file(path):
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                continue
            stats.append((st.st_mtime, path.name, path, (st.st_size, st.st_mtime_ns)))
        ready = []
        for _, _, path, signature in sorted(stats):
            previous = self._sizes.get(path)
            self._sizes[path] = signature
            if signature[0] > 0 and previous == signature:
                ready.append(path)
        return ready

    def _undecodable(self, path: Path, exc: BadImageError) -> None:
        # A writer that stalls longer than two polls leaves a stable but truncated file.
        # Retry it while it keeps changing; give up only once it has sat unreadable and
        # unchanged for settle_s.
        signature = self._sizes[path]
        now = time.monotonic()
        known = self._broken.get(path)
        if known is None or known[0] != signature:
            self._broken[path] = (signature, now)
        elif now - known[1] >= self.settle_s:
            log.warning("hot folder: skipping %s", exc)
            self._seen.add(path)
            self._broken.pop(path)
            self.rejected.append(path)

    def read(self) -> Frame | None:
        for path in self._stable_files():
            known = self._broken.get(path)
            if known is not None and known[0] == self._sizes[path] and time.monotonic() - known[1] < self.settle_s:
                continue  # tried at this size already; wait for it to change or settle
            try:
                image = read_image(path)
            except BadImageError as exc:
                self._undecodable(path, exc)
                continue
            self._seen.add(path)
            self._sizes.pop(path, None)
            self._broken.pop(path, None)
            self._count += 1
            return Frame(image, self._count, time.time(), self.name, path=path)
        time.sleep(self.poll_s)
        return None

    def close(self) -> None:
        self._sizes.clear()
        self._broken.clear()


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
