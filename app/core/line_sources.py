"""Frame sources a line session takes besides cameras and hot folders: the simulated
line (demo, tests, soak) and a list of image files (`lineside inspect`); and
`make_source`, which turns a `--source` spec into any of them.

A source has open() / read() -> Frame | None / close(), a `name`, and
`none_means_lost`: True where a read() that returns None means a frame was missed (a
camera), False where every frame is a part and None only means "nothing yet" (files).
A source with snap() can be triggered directly: the part is made on the trigger.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from app.core.errors import LinesideError, printable
from app.core.frames import Frame

log = logging.getLogger(__name__)


class SimulatedLineSource:
    """The simulated line (app.core.synthetic.PartStream) for a session.

    Free-run: a part every 1/rate s (paced like a conveyor). Triggered: a part the
    moment the trigger comes (a camera with a hardware trigger, zero exposure time).
    """

    none_means_lost = True

    def __init__(self, seed: int = 0, defect_rate: float = 0.3, rate_hz: float = 5.0, size: int = 256) -> None:
        self.seed, self.defect_rate, self.rate_hz, self.size = seed, defect_rate, float(rate_hz), size
        self.name = "Simulated line" if seed == 0 else f"Simulated line {seed}"
        self._stream = None
        self._count = 0
        self._next_at = 0.0
        self._lock = threading.Lock()

    def open(self) -> None:
        from app.core.synthetic import PartStream

        with self._lock:
            self._stream = PartStream(self.seed, self.defect_rate, self.size)
        self._next_at = time.monotonic()

    def snap(self) -> Frame:
        if self._stream is None:
            self.open()
        with self._lock:
            image, truth = self._stream.next_frame()
            self._count += 1
            return Frame(image, self._count, time.time(), self.name, truth=truth)

    def read(self) -> Frame | None:
        if self.rate_hz > 0:
            delay = self._next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self._next_at = max(self._next_at + 1.0 / self.rate_hz, time.monotonic())
        return self.snap()

    def close(self) -> None:
        self._stream = None


class FileListSource:
    """Image files given up front (`lineside inspect PATH...`), one part each, in order.

    Every file is a part (nothing is dropped); a file that cannot be read becomes a frame
    with `error` set, which the session reports through on_part_failed. Frames are named
    by the file's path (printable: any bytes in a name). When the list is done read()
    returns None; give the session max_parts=len(paths) to end with the last file.
    *on_note*(path, note) hears the first remark about a file's pixel values
    (e.g. 12-bit data in 16-bit files), once per source.
    """

    none_means_lost = False

    def __init__(self, paths: Iterable[Path | str], on_note: Callable[[Path, str], None] | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.name = "Files"
        self.on_note = on_note
        self._next = 0
        self._noted = False

    def open(self) -> None:
        pass

    def read(self) -> Frame | None:
        from app.core.imageio import decode_image, part_note, read_file

        if self._next >= len(self.paths):
            time.sleep(0.05)  # done: the capture thread idles until the session ends
            return None
        path = self.paths[self._next]
        self._next += 1
        shown = printable(path)
        notes: list[str] = []
        try:
            image = decode_image(read_file(path), str(path), notes)
        except LinesideError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            return Frame(np.zeros((0, 0, 3), np.uint8), self._next, time.time(), shown, path=path, error=reason)
        notes += [n for n in (part_note(image),) if n]
        if notes and not self._noted:  # once: every part of a camera would repeat it
            self._noted = True
            if self.on_note is not None:
                self.on_note(path, notes[0])
            else:
                log.warning("%s has %s", shown, notes[0])
        return Frame(image, self._next, time.time(), shown, path=path)

    def close(self) -> None:
        pass


def make_source(spec: str, rate_hz: float | None = None, seed: int | None = None):
    """A frame source from a spec: "camera:N", "folder:DIR" or "sim[:SEED]"."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "camera":
        from app.core.camera import OpenCVCamera

        try:
            return OpenCVCamera(int(arg))
        except ValueError:
            raise LinesideError(f"--source {spec}: the camera is a number, e.g. camera:0.") from None
    if kind == "folder":
        from app.core.hotfolder import HotFolderSource

        if not arg:
            raise LinesideError(f"--source {spec}: name the folder, e.g. folder:/data/incoming.")
        folder = Path(arg).expanduser()
        if not folder.is_dir():
            raise LinesideError(f"--source {printable(spec)}: {printable(folder)} is not a folder.")
        return HotFolderSource(folder, poll_s=0.05)
    if kind == "sim":
        try:
            sim_seed = int(arg) if arg else (seed or 0)
        except ValueError:
            raise LinesideError(f"--source {spec}: the simulated line takes a number (its seed), e.g. sim:3.") from None
        # rate 0: flat out, the next part as soon as the station is ready (soak, benchmarks)
        return SimulatedLineSource(seed=sim_seed, rate_hz=5.0 if rate_hz is None else rate_hz)
    raise LinesideError(f"--source {printable(spec)}: expected camera:N, folder:DIR or sim.")
