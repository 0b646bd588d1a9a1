"""Atomic file writes: temp file in the same folder, fsync, rename.

A reader (or a power cut) sees the old file or the new one, never half of one. A full
disk raises DiskFullError and leaves the previous file untouched.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from app.core.errors import DiskFullError, LinesideError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates files readable by their owner only; a project folder is copied between
# PCs and users, and an exported model is handed on: give files the usual permissions.
FILE_MODE = 0o666 & ~_current_umask()


def _fsync_dir(folder: Path) -> None:
    # The rename is only durable once the folder entry is on disk. Windows cannot
    # open folders for fsync; NTFS journals the rename itself.
    if os.name == "nt":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _check_replaceable(target: Path) -> None:
    # The rename would put a file where a folder, a device (/dev/full, a disk) or a
    # pipe is: as root that even replaces the device node. Only a file is replaced.
    if target.exists() and not target.is_file():
        kind = "a folder" if target.is_dir() else "not a regular file (a device, pipe or socket)"
        raise LinesideError(f"{target} already exists and is {kind}; it was left as it is. "
                            "Give the name of a file to write, e.g. line3.onnx.")


@contextmanager
def atomic_path(target: Path | str) -> Iterator[Path]:
    """Yield a temp path beside *target*; on success it replaces *target* atomically.

    The caller writes the temp path with any library (ONNX, torch, cv2). On any
    exception the temp file is removed and *target* is left as it was.
    """
    target = Path(target)
    _check_replaceable(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if _is_disk_full(exc):
            raise DiskFullError(
                f"The disk is full while writing {target}. Nothing was changed; "
                "free some space and try again."
            ) from exc
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes(target: Path | str, data: bytes) -> None:
    with atomic_path(target) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)


def write_text(target: Path | str, text: str) -> None:
    write_bytes(target, text.encode("utf-8"))


def copy_file(source: Path | str, target: Path | str) -> None:
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
