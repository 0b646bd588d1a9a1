"""Which images of judged parts a station keeps on disk, under a quota
(`lineside run --keep`); a listener of the line session (app/core/line_session.py)."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from app.core.errors import LinesideError
from app.core.line_session import LineListener, PartResult

log = logging.getLogger(__name__)


class ImageRetention(LineListener):
    """Keeps every FAIL image and one PASS image in *pass_every* under *quota_bytes*.

    Files go to `<folder>/<YYYY-MM-DD>/<inspection id>_<PASS|FAIL>_v<view>_<sha256>.png`
    (sha256 of the PNG file: the project finds the same bytes by it). When the folder is
    over quota, the oldest PASS images go first, then the oldest FAIL images; an image
    that is labeled in the project (its bytes were added and labeled, e.g. by "this
    verdict is wrong") is never deleted. Writing runs on its own thread; when the line
    outruns the disk, PASS samples are skipped before FAIL images (counted in `skipped`).
    """

    MAX_WAITING = 64

    def __init__(self, folder: Path | str, pass_every: int = 100, quota_bytes: int = 2 << 30) -> None:
        self.folder = Path(folder)
        self.pass_every = max(0, int(pass_every))
        self.quota_bytes = int(quota_bytes)
        self.kept = 0
        self.deleted = 0
        self.skipped = 0
        self._passes = 0
        self._project = None
        self._files: list[tuple[str, Path, int, bool]] = []  # (name, path, size, is_fail), oldest first
        self._total = 0
        self._waiting: deque[PartResult] = deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def start(self, project: Any = None) -> None:
        self._project = project
        self.folder.mkdir(parents=True, exist_ok=True)
        self._scan()
        self._thread = threading.Thread(target=self._loop, name="lineside-retention", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def wants(self, result: PartResult) -> bool:
        """Whether this part's images are kept (called once per part, in order)."""
        if not result.passed:
            return True
        if self.pass_every <= 0:
            return False
        self._passes += 1
        return self._passes % self.pass_every == 1 or self.pass_every == 1

    def on_committed(self, results: list[PartResult]) -> None:
        with self._cond:
            for result in results:
                if result.images is None:
                    continue
                if len(self._waiting) >= self.MAX_WAITING:
                    drop = next((r for r in self._waiting if r.passed), None)
                    if drop is None and result.passed:
                        self.skipped += 1
                        continue
                    if drop is not None:
                        self._waiting.remove(drop)
                    else:
                        drop = self._waiting.popleft()
                    self.skipped += 1
                    log.warning("retention: the disk is slower than the line; part %s not kept", drop.seq)
                self._waiting.append(result)
            self._cond.notify_all()

    @property
    def total_bytes(self) -> int:
        return self._total

    def _scan(self) -> None:
        files = []
        for path in self.folder.glob("*/*.png"):
            try:
                size = path.stat().st_size
            except OSError:
                continue
            files.append((path.parent.name + "/" + path.name, path, size, "_FAIL_" in path.name))
        files.sort()
        self._files = files
        self._total = sum(f[2] for f in files)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._waiting and not self._stop:
                    self._cond.wait(0.5)
                if not self._waiting and self._stop:
                    return
                result = self._waiting.popleft()
            try:
                self._keep(result)
            except Exception:
                log.exception("retention: part %s could not be kept", result.seq)

    def _keep(self, result: PartResult) -> None:
        from app.core.atomic import write_bytes
        from app.core.imageio import encode_png

        day = time.strftime("%Y-%m-%d", time.localtime(result.at))
        for view, image in enumerate(result.images or []):
            data = encode_png(image)
            sha = hashlib.sha256(data).hexdigest()
            ident = result.inspection_id if result.inspection_id is not None else result.seq
            name = f"{day}/{ident:010d}_{result.label}_v{view + 1}_{sha}.png"
            path = self.folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(path, data)
            self._files.append((name, path, len(data), not result.passed))
            self._total += len(data)
            self.kept += 1
        self._enforce_quota()

    def _labeled(self, path: Path) -> bool:
        if self._project is None:
            return False
        sha = path.stem.rsplit("_", 1)[-1]
        try:
            image = self._project.find_image(sha)
            return image is not None and self._project.label(image.id) is not None
        except LinesideError:
            return True  # cannot tell: keep it

    def _enforce_quota(self) -> None:
        if self._total <= self.quota_bytes:
            return
        for fails in (False, True):  # PASS images first, then FAIL
            index = 0
            while self._total > self.quota_bytes and index < len(self._files):
                name, path, size, is_fail = self._files[index]
                if is_fail != fails or self._labeled(path):
                    index += 1
                    continue
                try:
                    path.unlink()
                except FileNotFoundError:
                    pass
                except OSError as exc:
                    log.warning("retention: cannot delete %s: %s", path, exc)
                    index += 1
                    continue
                del self._files[index]
                self._total -= size
                self.deleted += 1
        if self._total > self.quota_bytes:
            log.warning("retention: %d MB kept, over the quota of %d MB: only labeled images are left",
                        self._total >> 20, self.quota_bytes >> 20)
