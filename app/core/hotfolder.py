"""A hot folder: image files dropped into a folder by another machine (a camera PC, a
PLC, a vision box), each picked up once it is completely written.

`HotFolder` is the one definition of when such a file is ready; the desktop app reads
it as a frame source (`HotFolderSource`) and `lineside inspect --watch` polls it.

- A file is handed out once its size, modification time and inode have held still
  for `stable_polls` polls (an empty file, usually one being created, for
  `empty_polls`): a writer that pauses between chunks changes the mtime even when a
  poll catches the same size.
- A file the reader cannot decode is handed out again when it changes (the writer
  stalled longer than the polls and went on). Only once it has sat unreadable and
  unchanged for `settle_s` is it given up (`rejected`); if it changes even after
  that, it is handed out again.
- Each version of a file is handed out once: a name written again after it was read
  (the camera reuses file names) is a new part.
- Files already there when watching starts are not handed out (delivered before).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from app.core.errors import BadImageError, printable
from app.core.frames import Frame, SourceError
from app.core.imageio import is_image_file, part_note, read_image

log = logging.getLogger(__name__)

# A non-empty file is ready when its signature did not change over this many polls.
STABLE_POLLS = 2
# An empty file is usually one being created; it is handed out (to be reported) only
# once it stays empty this long.
EMPTY_FILE_POLLS = 10
# An unreadable file is given up once it has sat unchanged this many seconds.
SETTLE_S = 3.0

Signature = tuple[int, int, int]  # (size, mtime_ns, inode)


class HotFolder:
    """New (and rewritten) image files in *folder*, each version handed out once.

    Call poll() every so often; for a file that turns out unreadable call
    unreadable(path), which says whether that is final. No thread, no sleeping.
    """

    def __init__(
        self,
        folder: Path | str,
        stable_polls: int = STABLE_POLLS,
        empty_polls: int = EMPTY_FILE_POLLS,
        settle_s: float = SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise SourceError(f"{printable(self.folder)}: the hot folder does not exist (or is not reachable).")
        self.stable_polls, self.empty_polls, self.settle_s = stable_polls, empty_polls, settle_s
        self._clock = clock
        self.rejected: list[Path] = []  # files given up as unreadable
        self._handed: dict[str, Signature] = {}  # name -> the version handed out (or there at the start)
        self._watching: dict[str, tuple[Signature, int]] = {}  # name -> (signature, polls unchanged)
        self._broken: dict[str, tuple[Signature, float]] = {}  # name -> (unreadable version, since)
        self._handed = {name: sig for name, (_, sig) in self._scan().items()}

    def _scan(self) -> dict[str, tuple[float, Signature]]:
        """name -> (mtime, signature) of the image files in the folder.

        OSError when the folder itself cannot be listed (gone, unplugged share).
        """
        found = {}
        with os.scandir(self.folder) as entries:
            for entry in entries:
                try:
                    if not (is_image_file(Path(entry.name)) and entry.is_file()):
                        continue
                    st = entry.stat()
                except OSError:  # removed between listing and stat, or a dangling link
                    continue
                found[entry.name] = (st.st_mtime, (st.st_size, st.st_mtime_ns, st.st_ino))
        return found

    def poll(self) -> list[Path]:
        """Files ready to read, oldest first; each version of a file only once."""
        found = self._scan()
        for table in (self._handed, self._watching, self._broken):
            for name in [n for n in table if n not in found]:
                del table[name]  # removed: a file written later under its name is new
        now = self._clock()
        ready = []
        for _, name in sorted((mtime, name) for name, (mtime, _) in found.items()):
            signature = found[name][1]
            if self._handed.get(name) == signature:
                continue
            previous = self._watching.get(name)
            unchanged = previous[1] + 1 if previous is not None and previous[0] == signature else 0
            self._watching[name] = (signature, unchanged)
            if unchanged < (self.stable_polls if signature[0] > 0 else self.empty_polls):
                continue
            broken = self._broken.get(name)
            if broken is not None and broken[0] == signature and now - broken[1] < self.settle_s:
                continue  # tried at this version already: wait for it to change or settle
            del self._watching[name]
            self._handed[name] = signature
            ready.append(self.folder / name)
        return ready

    def unreadable(self, path: Path) -> bool:
        """*path* (handed out by poll) could not be read. True when that is final: it
        sat unchanged for settle_s and is in `rejected`; else it is handed out again
        once it changes or has settled."""
        name = path.name
        signature = self._handed.get(name)
        if signature is None:
            return False  # gone meanwhile: nothing to retry
        now = self._clock()
        broken = self._broken.get(name)
        if broken is not None and broken[0] == signature and now - broken[1] >= self.settle_s:
            del self._broken[name]
            self.rejected.append(path)
            return True  # stays handed out: not again unless it changes
        if broken is None or broken[0] != signature:
            self._broken[name] = (signature, now)
        del self._handed[name]
        return False


class HotFolderSource:
    """The hot folder as a frame source of the desktop app (see HotFolder).

    A file that does not decode is waited for while it changes and skipped (in
    `rejected`) once it has sat unreadable for *settle_s*. Files already there when the
    source opens are not frames.

    For the command line (`lineside inspect --watch`), which reports every file:
    *per_file* names each frame by its file's (printable) path and hands out a file
    given up as unreadable as a frame with `error` set (the line session reports it
    through on_part_failed); *on_note*(path, note) hears the first remark about a
    file's pixel values instead of the log.
    """

    none_means_lost = False

    def __init__(self, folder: Path | str, poll_s: float = 0.2, settle_s: float = SETTLE_S,
                 per_file: bool = False, on_note: Callable[[Path, str], None] | None = None) -> None:
        self.folder = Path(folder)
        self.poll_s = poll_s
        self.settle_s = settle_s
        self.per_file = per_file
        self.on_note = on_note
        self.name = f"Folder {self.folder.name}"
        self._hot: HotFolder | None = None
        self._ready: list[Path] = []
        self._count = 0
        self._noted = False
        self._rejected: list[Path] = []

    @property
    def rejected(self) -> list[Path]:
        """Files that were stable but could not be read as images."""
        return self._hot.rejected if self._hot is not None else self._rejected

    def open(self) -> None:
        """Start watching: files there now are not parts. Already open (opened by hand,
        to watch from that moment on): nothing changes."""
        if self._hot is not None:
            return
        self._hot = HotFolder(self.folder, settle_s=self.settle_s)
        self._ready = []

    def read(self) -> Frame | None:
        if self._hot is None:
            self.open()
        if not self._ready:
            # OSError when the folder goes away: the capture thread counts that as a lost source.
            self._ready = self._hot.poll()
        while self._ready:
            path = self._ready.pop(0)
            notes: list[str] = []
            try:
                image = read_image(path, notes)
            except BadImageError as exc:
                if self._hot.unreadable(path):
                    if self.per_file:
                        self._count += 1
                        reason = str(exc).removeprefix(f"{path}: ")
                        return Frame(np.zeros((0, 0, 3), np.uint8), self._count, time.time(), printable(path),
                                     path=path, error=reason)
                    log.warning("hot folder: skipping %s", printable(exc))
                continue
            notes += [n for n in (part_note(image),) if n]
            if notes and not self._noted:  # once per source, not for every part
                self._noted = True
                if self.on_note is not None:
                    self.on_note(path, notes[0])
                else:
                    log.warning("hot folder %s: %s has %s", printable(self.folder), printable(path.name), notes[0])
            self._count += 1
            return Frame(image, self._count, time.time(), printable(path) if self.per_file else self.name, path=path)
        time.sleep(self.poll_s)
        return None

    def close(self) -> None:
        if self._hot is not None:
            self._rejected = self._hot.rejected
        self._hot = None
        self._ready = []
