"""Frames and the bounded queue between a capture thread and whoever shows them.

The capture thread only ever *puts*; the GUI or the inspection worker takes the newest
frame and never waits for the camera, so a slow consumer costs dropped frames, never a
frozen screen.
"""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from app.core.errors import LinesideError


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
    error: str | None = None  # why there is no image (a file that could not be read); image is then empty


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
