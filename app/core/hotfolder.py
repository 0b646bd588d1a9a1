"""A hot folder as a frame source: image files dropped by another machine."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from app.core.errors import BadImageError
from app.core.frames import Frame, SourceError
from app.core.imageio import is_image_file, read_image

log = logging.getLogger(__name__)


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
