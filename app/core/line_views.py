"""The views of a line session: one camera position of the part each, with its capture
thread and the queue its frames wait in (app/core/line_session.py takes one frame per
view for each part).

A camera's frames go through `app.core.frames.FrameQueue` (bounded, the oldest frame
dropped: the newest frame is the part in front of the camera). Sources where every
frame is a part (a hot folder, the simulated conveyor) go through `PartFifo` instead,
in arrival order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable

from app.core.frames import Frame, FrameQueue
from app.core.line_sources import SimulatedLineSource


class PartFifo:
    """Frames in arrival order (a hot folder: every file is a part).

    blocking=True: put() waits while full (files stay on disk until there is room);
    blocking=False: the oldest frame is pushed out (a conveyor does not wait).
    """

    def __init__(self, maxsize: int, blocking: bool) -> None:
        self.maxsize, self.blocking = maxsize, blocking
        self._frames: deque[Frame] = deque()
        self._cond = threading.Condition()
        self.closed = False
        self.dropped = 0

    def put(self, frame: Frame) -> None:
        with self._cond:
            if self.blocking:
                self._cond.wait_for(lambda: len(self._frames) < self.maxsize or self.closed)
                if self.closed:
                    return
            elif len(self._frames) >= self.maxsize:
                self._frames.popleft()
                self.dropped += 1
            self._frames.append(frame)
            self._cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        with self._cond:
            if not self._frames and timeout > 0:
                self._cond.wait_for(lambda: bool(self._frames) or self.closed, timeout)
            if not self._frames:
                return None
            frame = self._frames.popleft()
            self._cond.notify_all()
            return frame

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class LineView:
    """One camera position of the part: a source, its capture thread and its queue."""

    def __init__(self, source: Any, index: int, triggered: bool, on_state: Callable[[str], None],
                 on_frame: Callable[[int, Frame], None] | None = None) -> None:
        from app.core.camera import CaptureThread

        self.source, self.index = source, index
        self.name = getattr(source, "name", f"view {index + 1}")
        # direct: the simulated line's part is made on the trigger; every: each frame is a part.
        self.direct, self.every = self.kind(source, triggered)
        self.state = ""
        self._on_state = on_state
        if self.every:
            # A hot folder waits on disk; the simulated conveyor does not wait, unless it
            # has no pace of its own (rate 0: the next part when the station is ready).
            blocking = not getattr(source, "none_means_lost", True) or (
                isinstance(source, SimulatedLineSource) and source.rate_hz <= 0)
            self.queue: Any = PartFifo(16, blocking=blocking)
        else:
            self.queue = FrameQueue(maxsize=2)
        self._on_frame = on_frame
        frame_cb = None if on_frame is None else (lambda frame: on_frame(index, frame))
        self.capture = None if self.direct else CaptureThread(source, self.queue, on_state=self._state,
                                                              on_frame=frame_cb)

    @staticmethod
    def kind(source: Any, triggered: bool) -> tuple[bool, bool]:
        """(direct, every) of a view of *source* in that mode."""
        direct = triggered and hasattr(source, "snap")
        every = not getattr(source, "none_means_lost", True) or (
            not triggered and isinstance(source, SimulatedLineSource))
        return direct, every

    def _state(self, state: str) -> None:
        self.state = state
        self._on_state(state)

    @property
    def connected(self) -> bool:
        return self.direct or self.state.startswith("connected")

    def start(self) -> None:
        if self.direct:
            self.source.open()
            self._state(f"connected: {self.name}")
        else:
            self.capture.start()

    def stop(self) -> None:
        if isinstance(self.queue, PartFifo):
            self.queue.close()
        if self.capture is not None:
            self.capture.stop()
        elif self.direct:
            self.source.close()

    @property
    def dropped(self) -> int:
        """Parts pushed out unjudged (a camera's skipped frames are not parts)."""
        return self.queue.dropped if isinstance(self.queue, PartFifo) else 0

    def next(self, timeout: float) -> Frame | None:
        """Free-run: the next part (folder, simulated line) or the newest frame (camera)."""
        if isinstance(self.queue, PartFifo):
            return self.queue.get(timeout)
        return self.queue.get_latest(timeout)

    def snap(self, after: float, timeout: float, stopping: threading.Event) -> Frame | None:
        """Triggered: the simulated part made now; the next file; or the first camera
        frame captured at or after *after* (time.time())."""
        if self.direct:
            frame = self.source.snap()
            if self._on_frame is not None:
                self._on_frame(self.index, frame)
            return frame
        deadline = time.monotonic() + timeout
        while not stopping.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            frame = self.next(min(left, 0.1))
            if frame is None:
                continue
            if isinstance(self.queue, PartFifo) or frame.at >= after:
                return frame
        return None
