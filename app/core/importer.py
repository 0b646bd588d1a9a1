"""Importing labeled image folders into a project.

Two layouts are understood:

* class folders: every sub-folder is a class; `good`, `ok` or `pass` (any case) holds
  good parts, any other folder a defect class of that name. Optional defect masks sit
  in a top-level `masks/<class>/<image stem>.png` tree. A source whose class folders
  are inside an `images/` folder (with `masks/` beside it) is read the same way.
  Images lying directly in the source folder are imported without a label.
* MVTec AD: `train/good`, `test/<class>` (`test/good` is OK) and
  `ground_truth/<class>/<stem>_mask.png`; recognised by `train/good` plus `test/`.

One bad file never stops an import: it is reported in `skipped` with the reason and the
import goes on. Files are stored by content, so importing the same folder twice adds
nothing; an image already in the project keeps the label it has, unless it has none.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from app.core.errors import BadImageError, LinesideError
from app.core.imageio import is_image_file, read_mask
from app.core.project import Project, read_source_file
from app.core.project_labels import check_class_name
from app.core.records import OK, PreparedImage

OK_FOLDER_NAMES = {"good", "ok", "pass"}
# One commit per batch: an import of thousands of images takes seconds, and a failure
# (a full disk) loses at most the batch in progress, never what was committed before.
BATCH_SIZE = 100
# Files are decoded and written (each fsynced) on a few threads: the waits for the disk
# overlap, which makes a large import several times faster than one file at a time.
PREPARE_THREADS = 4


@dataclass
class ImportReport:
    layout: str  # 'class-folders' | 'mvtec'
    added: int = 0
    duplicates: int = 0
    labeled: int = 0
    masks: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


@dataclass(frozen=True)
class _Item:
    path: Path
    verdict: str | None
    tags: dict[str, str]
    mask_path: Path | None  # where a mask would be; it may not exist


def _subfolders(folder: Path, report: ImportReport) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        report.skipped.append((str(folder), f"folder cannot be read ({exc.strerror or exc})"))
        return []


def _image_files(folder: Path, report: ImportReport, recursive: bool = True) -> list[Path]:
    """Image files under *folder*, sorted; other files are ignored without a word."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder, onerror=lambda exc: _unreadable(exc, report)):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [Path(root) / name for name in files if is_image_file(Path(name))]
    return sorted(found)


def _unreadable(exc: OSError, report: ImportReport) -> None:
    report.skipped.append((str(exc.filename), f"folder cannot be read ({exc.strerror or exc})"))


def _folder_verdict(folder: Path, report: ImportReport) -> tuple[bool, str | None]:
    """(usable, verdict) for a class folder."""
    if folder.name.lower() in OK_FOLDER_NAMES:
        return True, OK
    try:
        return True, check_class_name(folder.name)
    except LinesideError as exc:
        report.skipped.append((str(folder), str(exc)))
        return False, None


def is_mvtec(source: Path) -> bool:
    return (source / "train" / "good").is_dir() and (source / "test").is_dir()


def _class_folder_items(source: Path, report: ImportReport) -> Iterator[_Item]:
    class_root = source
    nested = source / "images"
    if nested.is_dir() and _subfolders(nested, report) and not _image_files(nested, report, recursive=False):
        class_root = nested
    masks_root = source / "masks"
    for path in _image_files(source, report, recursive=False):
        yield _Item(path, None, {"import_folder": source.name}, None)
    for folder in _subfolders(class_root, report):
        if class_root == source and folder.name.lower() == "masks":
            continue  # the mask tree, not a class
        usable, verdict = _folder_verdict(folder, report)
        if not usable:
            continue
        for path in _image_files(folder, report):
            yield _Item(path, verdict, {"import_folder": folder.name}, masks_root / folder.name / f"{path.stem}.png")


def _mvtec_items(source: Path, report: ImportReport) -> Iterator[_Item]:
    for path in _image_files(source / "train" / "good", report):
        yield _Item(path, OK, {"import_folder": "good", "mvtec_split": "train"}, None)
    for folder in _subfolders(source / "test", report):
        usable, verdict = _folder_verdict(folder, report)
        if not usable:
            continue
        masks = source / "ground_truth" / folder.name
        for path in _image_files(folder, report):
            tags = {"import_folder": folder.name, "mvtec_split": "test"}
            yield _Item(path, verdict, tags, masks / f"{path.stem}_mask.png")


def _reason(exc: BadImageError, path: Path) -> str:
    # The store's message starts with the file name; the report gives it separately.
    message = str(exc)
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _read_matching_mask(item: _Item, width: int, height: int, problems: list[tuple[str, str]]):
    if item.verdict in (None, OK) or item.mask_path is None or not item.mask_path.is_file():
        return None
    try:
        mask = read_mask(item.mask_path)
    except BadImageError as exc:
        problems.append((str(item.mask_path), f"{_reason(exc, item.mask_path)}; image imported without mask"))
        return None
    if mask.shape != (height, width):
        problems.append((
            str(item.mask_path),
            f"mask is {mask.shape[1]}x{mask.shape[0]} but the image is {width}x{height}; "
            "image imported without mask",
        ))  # fmt: skip
        return None
    return mask


@dataclass
class _Prepared:
    item: _Item
    image: PreparedImage | None = None
    captured_at: datetime | None = None
    mask: np.ndarray | None = None
    problems: list[tuple[str, str]] = field(default_factory=list)


def _prepare(project: Project, item: _Item) -> _Prepared:
    """Read, decode and store one file and its mask; runs on a worker thread."""
    result = _Prepared(item)
    try:
        data, result.captured_at = read_source_file(item.path)
        result.image = project.prepare_image(data, item.path.name)
    except BadImageError as exc:
        result.problems.append((str(item.path), _reason(exc, item.path)))
        return result
    result.mask = _read_matching_mask(item, result.image.width, result.image.height, result.problems)
    if result.mask is not None:
        project.write_mask_file(result.mask)
    return result


def _record(project: Project, prepared: _Prepared, report: ImportReport) -> None:
    report.skipped += prepared.problems
    item = prepared.item
    if prepared.image is None:
        return
    record, new = project.add_prepared_image(prepared.image, "import", item.tags, prepared.captured_at)
    if new:
        report.added += 1
    else:
        report.duplicates += 1
        if project.label(record.id) is not None:
            return  # what someone already decided about this image stands
    if item.verdict is None:
        return
    label = project.set_label(record.id, item.verdict, mask=prepared.mask, author="import")
    report.labeled += 1
    report.masks += label.mask_path is not None


def _check_source(source: Path) -> None:
    if not source.is_dir():
        raise LinesideError(f"{source}: the folder does not exist or is not a folder.")
    if not os.access(source, os.R_OK | os.X_OK):
        raise LinesideError(f"{source}: the folder cannot be read (no permission).")
    try:
        next(source.iterdir(), None)
    except OSError as exc:
        raise LinesideError(f"{source}: the folder cannot be read ({exc.strerror or exc}).") from exc


def labeled_files(source: Path | str) -> tuple[list[tuple[str, Path]], list[tuple[str, str]]]:
    """(verdict, image path) for every labeled image under *source*, read exactly as
    `import` reads it (class folders, images/<class>, MVTec AD), and what was skipped."""
    source = Path(source).expanduser().absolute()
    _check_source(source)
    report = ImportReport(layout="mvtec" if is_mvtec(source) else "class-folders")
    items = (_mvtec_items if report.layout == "mvtec" else _class_folder_items)(source, report)
    return [(item.verdict, item.path) for item in items if item.verdict is not None], report.skipped


def import_folder(
    project: Project, source: Path | str, on_progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Import every image under *source*; on_progress(done, total) is called per file."""
    source = Path(source).expanduser().absolute()
    _check_source(source)
    layout = "mvtec" if is_mvtec(source) else "class-folders"
    report = ImportReport(layout=layout)
    items = list((_mvtec_items if layout == "mvtec" else _class_folder_items)(source, report))
    pool = ThreadPoolExecutor(max_workers=PREPARE_THREADS)
    try:
        # Workers run ahead preparing files while this thread records them in batches.
        futures = [pool.submit(_prepare, project, item) for item in items]
        for start in range(0, len(futures), BATCH_SIZE):
            with project.transaction():
                for done, future in enumerate(futures[start : start + BATCH_SIZE], start + 1):
                    _record(project, future.result(), report)
                    if on_progress is not None:
                        on_progress(done, len(items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return report
