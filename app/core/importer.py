"""Importing labeled image folders into a project.

Four layouts are understood:

* class folders: every sub-folder is a class; `good`, `ok`, `pass`, `normal`,
  `defect-free` and the like (any case; `project_labels.OK_CLASS_NAMES`) hold good
  parts, any other folder a defect class of that name. Optional defect masks sit in a
  top-level `masks/<class>/<image stem>.png` tree (also `<stem>_mask`, `_label` or
  `_gt`, and .bmp or .tif). A source whose class folders are
  inside an `images/` folder (with `masks/` beside it; either in any case) is read the
  same way.
  Images lying directly in the source folder are imported without a label.
* MVTec AD: `train/good`, `test/<class>` (`test/good` is OK) and
  `ground_truth/<class>/<stem>_mask.png`; recognised by `train/good` plus `test/`.
  The test images go into the project's test split: labeled, kept for evaluation,
  never trained on (the dataset's authors held them out; so does the trainer). Its
  `test/` folder read on its own (`lineside evaluate PROJECT DATASET/test`) is a class
  folder whose masks are the dataset's ground_truth/.
* mask pairs: each image with its mask beside it (`<stem>_GT.png`, `<stem>_label.bmp`,
  `<stem>_mask.png`), as KolektorSDD and KolektorSDD2 ship; recognised when at least
  half the images have one. The mask labels the part: painted means class `defect`,
  empty means OK.
* another Lineside project (a folder with project.db): opened read-only, its images
  come over with their current labels, masks, splits, tags and original names.

One bad file never stops an import: it is reported in `skipped` with the reason and the
import goes on. Files are stored by content, so importing the same folder twice adds
nothing; an image already in the project keeps the label it has, unless it has none.

Labels are never guessed: the same picture under two different labels in one import,
or an import label that contradicts the project's, is a *conflict*. It is reported by
name; the image is stored once, and the import gives it no label of its own.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from app.core.errors import BadImageError, LinesideError, printable
from app.core.imageio import is_image_file, read_file, read_mask
from app.core.project import Project, read_source_file
from app.core.project_labels import HELD_OUT_SPLITS, check_class_name, means_ok
from app.core.records import OK, PreparedImage

# One commit per batch: an import of thousands of images takes seconds, and a failure
# (a full disk) loses at most the batch in progress, never what was committed before.
BATCH_SIZE = 100
# Files are decoded and written (each fsynced) on a few threads: the waits for the disk
# overlap, which makes a large import several times faster than one file at a time.
PREPARE_THREADS = 4


@dataclass
class ImportConflict:
    """One image whose labels disagree: in the import itself, or with the project."""

    sources: list[tuple[str, str]]  # (path in the import, the label it gives)
    project_label: str | None = None  # the image's current label in the project, if any

    def describe(self) -> str:
        said = " and ".join(f"{path} says '{verdict}'" for path, verdict in self.sources)
        if self.project_label is not None:
            return (f"{said}, but the project labels this image '{self.project_label}'; "
                    "the project's label was kept. Relabel it by hand if the import is right.")
        return (f"{said}: the same image with different labels. It was stored once without a label; "
                "label it by hand.")


@dataclass
class ImportReport:
    layout: str  # 'class-folders' | 'mvtec' | 'mask-pairs' | 'lineside-project'
    added: int = 0
    duplicates: int = 0
    labeled: int = 0
    masks: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    conflicts: list[ImportConflict] = field(default_factory=list)
    # Said once per import, not per file: e.g. 12-bit camera data in 16-bit files.
    warnings: list[str] = field(default_factory=list)
    # New images put in a held-out split (MVTec AD's test folder; another project's test
    # and golden parts): kept for evaluation, never trained on.
    held_out: int = 0


@dataclass(frozen=True)
class _Item:
    path: Path
    verdict: str | None
    tags: dict[str, str]
    mask_path: Path | None  # where a mask would be; it may not exist
    # Set when the item comes from another project, whose files are named by hash.
    filename: str | None = None
    captured_at: datetime | None = None
    split: str | None = None


def _loops_back(path: Path, folder: Path) -> bool:
    """True for a link in *folder* to *folder* itself or a folder above it: read as a
    class folder it would bring in every image of the source a second time."""
    if not path.is_symlink():
        return False
    try:
        target, here = path.resolve(strict=True), folder.resolve(strict=True)
    except (OSError, RuntimeError):
        return True
    return target == here or target in here.parents


def _subfolders(folder: Path, report: ImportReport) -> list[Path]:
    try:
        found = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        report.skipped.append((str(folder), f"folder cannot be read ({exc.strerror or exc})"))
        return []
    loops = [p for p in found if _loops_back(p, folder)]
    report.skipped += [(str(p), "a link back to a folder above it (a loop); not followed") for p in loops]
    return [p for p in found if p not in loops]


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
    if means_ok(folder.name):
        return True, OK
    if printable(folder.name) != folder.name:
        # Bytes that are not UTF-8 cannot be a class name shown in the app and exported.
        report.skipped.append((str(folder), "the folder name is not valid text (UTF-8); rename the folder "
                               "to the defect class name and import again"))
        return False, None
    try:
        return True, check_class_name(folder.name)
    except LinesideError as exc:
        report.skipped.append((str(folder), str(exc)))
        return False, None


def is_mvtec(source: Path) -> bool:
    return (source / "train" / "good").is_dir() and (source / "test").is_dir()


def _child_folder(source: Path, name: str) -> Path:
    """source/name, or the sub-folder whose name is *name* in another case ("Images",
    "Masks": datasets written on Windows); source/name when there is neither."""
    exact = source / name
    if exact.is_dir():
        return exact
    try:
        return next((p for p in sorted(source.iterdir()) if p.name.lower() == name and p.is_dir()), exact)
    except OSError:
        return exact


def _class_folder_items(source: Path, report: ImportReport) -> Iterator[_Item]:
    class_root = source
    nested = _child_folder(source, "images")
    if nested.is_dir() and _subfolders(nested, report) and not _image_files(nested, report, recursive=False):
        class_root = nested
    masks_root = _child_folder(source, "masks")
    # An MVTec AD test folder on its own: its masks are in the dataset's ground_truth/.
    mvtec_test = not masks_root.is_dir() and source.name == "test" and is_mvtec(source.parent)
    for path in _image_files(source, report, recursive=False):
        yield _Item(path, None, {"import_folder": source.name}, None)
    for folder in _subfolders(class_root, report):
        if class_root == source and folder.name.lower() == "masks":
            continue  # the mask tree, not a class
        usable, verdict = _folder_verdict(folder, report)
        if not usable:
            continue
        masks = (source.parent / "ground_truth" if mvtec_test else masks_root) / folder.name
        names = _file_names(masks) if verdict != OK else {}
        for path in _image_files(folder, report):
            yield _Item(path, verdict, {"import_folder": folder.name}, _mask_file(masks, path.stem, names))


# How mask files are named beside their image's stem, most expected first: the same
# stem, or the stem with a suffix some datasets use ("_mask" in MVTec AD, "_label").
_MASK_SUFFIXES = ("", "_mask", "_label", "_gt")
_MASK_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff")  # lossless: a JPEG mask's noise would paint


def _file_names(folder: Path) -> dict[str, str]:
    """Lower-case name -> name of the files in *folder* (empty when it cannot be listed)."""
    try:
        return {p.name.lower(): p.name for p in folder.iterdir()}
    except OSError:
        return {}


def _mask_file(masks: Path, stem: str, names: dict[str, str]) -> Path:
    """The mask of the image *stem* in *masks*: <stem>.png, or another usual name for it
    (MVTec AD's <stem>_mask.png), or a folder <stem>/ of masks to be joined (MVTec LOCO
    paints each defect region in a file of its own); <stem>.png (which may not exist)
    when there is none."""
    for suffix in _MASK_SUFFIXES:
        for ext in _MASK_EXTENSIONS:
            found = names.get(f"{stem}{suffix}{ext}".lower())
            if found is not None:
                return masks / found
    folder = names.get(stem.lower())
    if folder is not None and (masks / folder).is_dir():
        return masks / folder
    return masks / f"{stem}.png"


# OK parts of an MVTec-style dataset that a model may learn from: train/good, and MVTec
# LOCO's validation/good (good parts its authors set aside for choosing a threshold; the
# trainer makes its own validation split).
_MVTEC_TRAINING_FOLDERS = ("train", "validation")


def _mvtec_items(source: Path, report: ImportReport) -> Iterator[_Item]:
    for split in _MVTEC_TRAINING_FOLDERS:
        if split != "train" and not (source / split / "good").is_dir():
            continue  # only MVTec LOCO has it
        for path in _image_files(source / split / "good", report):
            yield _Item(path, OK, {"import_folder": "good", "mvtec_split": split}, None)
    for folder in _subfolders(source / "test", report):
        usable, verdict = _folder_verdict(folder, report)
        if not usable:
            continue
        masks = source / "ground_truth" / folder.name
        names = _file_names(masks) if verdict != OK else {}
        for path in _image_files(folder, report):
            tags = {"import_folder": folder.name, "mvtec_split": "test"}
            # The dataset's own held-out images stay held out: a model trained on them
            # would be measured on parts it has seen.
            yield _Item(path, verdict, tags, _mask_file(masks, path.stem, names), split="test")


def _project_items(source: Path, report: ImportReport) -> Iterator[_Item]:
    """Every image of another project, with its current label, mask and split.

    The files are read from that project's folder as they are; it is opened read-only,
    so importing from it changes nothing there.
    """
    with Project.open(source, read_only=True) as other:
        labels = {record.id: label for record, label in other.labeled()}
        name = other.name
        records = other.images()
    for record in records:
        label = labels.get(record.id)
        yield _Item(
            record.path,
            None if label is None else label.verdict,
            {**record.tags, "import_project": name},
            None if label is None else label.mask_path,
            filename=record.filename,
            captured_at=record.captured_at,
            split=record.split,
        )


def _layout(source: Path) -> str:
    if Project.is_project(source):
        return "lineside-project"
    if is_mvtec(source):
        return "mvtec"
    return "mask-pairs" if _mask_pairs(source, ImportReport(layout="")) is not None else "class-folders"


def _items(source: Path, report: ImportReport) -> Iterator[_Item]:
    readers = {"lineside-project": _project_items, "mvtec": _mvtec_items, "class-folders": _class_folder_items,
               "mask-pairs": _mask_pair_items}
    return readers[report.layout](source, report)


# A mask file beside its image: <stem>_GT.png (KolektorSDD2), <stem>_label.bmp
# (KolektorSDD), <stem>_mask.png. Any case, lossless formats only. Or the image's own
# stem in a lossless format beside a JPEG (magnetic tile as its authors ship it:
# exp1_num_4.jpg and exp1_num_4.png): a JPEG is never a mask, so the other one is.
_PAIRED_MASK = re.compile(r"^(?P<stem>.+)_(gt|label|mask)$", re.IGNORECASE)
_LOSSY = (".jpg", ".jpeg")
# The class of a part whose paired mask paints something: the layout names no classes.
PAIRED_DEFECT_CLASS = "defect"


def _mask_pairs(source: Path, report: ImportReport) -> tuple[list[Path], dict[Path, Path]] | None:
    """(images, image -> its mask in the same folder) when at least half of the images
    under *source* have a mask beside them, else None (not this layout)."""
    images, masks, by_stem = [], {}, {}
    for path in _image_files(source, report):
        named = _PAIRED_MASK.match(path.stem)
        if named and path.suffix.lower() in _MASK_EXTENSIONS:
            masks[(path.parent, named["stem"].lower())] = path
        else:
            by_stem.setdefault((path.parent, path.stem.lower()), []).append(path)
    for key, group in by_stem.items():
        lossless = [p for p in group if p.suffix.lower() in _MASK_EXTENSIONS]
        lossy = [p for p in group if p.suffix.lower() in _LOSSY]
        if key not in masks and len(lossless) == 1 and lossy and len(lossy) + 1 == len(group):
            masks[key] = lossless[0]
            images += lossy
        else:
            images += group
    images.sort()
    pairs = {image: masks[(image.parent, image.stem.lower())] for image in images
             if (image.parent, image.stem.lower()) in masks}
    if not images or 2 * len(pairs) < len(images):
        return None
    return images, pairs


def _mask_pair_items(source: Path, report: ImportReport) -> Iterator[_Item]:
    """Images with a mask beside them, labeled by it: a mask that paints anything makes
    the part defective (class "defect"), an empty one OK. An image without a mask is
    OK when its folder's name says so, else unlabeled.

    An empty mask in a folder where most masks paint a defect is doubted, not taken for
    an OK part: magnetic tile ships four of its 'uneven' tiles with empty masks, and one
    defective part labeled OK among the held-out OK parts moves the threshold. Such
    images are left unlabeled, and the report says so."""
    found = _mask_pairs(source, report)
    images, pairs = found if found is not None else ([], {})
    painted: dict[Path, bool | None] = {}
    for path in images:
        mask_path = pairs.get(path)
        if mask_path is None:
            continue
        try:
            painted[path] = bool(read_mask(mask_path).any())
        except BadImageError as exc:
            report.skipped.append((str(mask_path), f"{_reason(exc, mask_path)}; image imported without a label"))
            painted[path] = None
    masks_in, painted_in = Counter(), Counter()
    for path, state in painted.items():
        masks_in[path.parent] += state is not None
        painted_in[path.parent] += bool(state)
    doubted = []
    for path in images:
        tags = {"import_folder": path.parent.name}
        state = painted.get(path, "no mask")
        if state == "no mask":
            yield _Item(path, OK if means_ok(path.parent.name) else None, tags, None)
        elif state is None:
            yield _Item(path, None, tags, None)
        elif state:
            yield _Item(path, PAIRED_DEFECT_CLASS, tags, pairs[path])
        elif 2 * painted_in[path.parent] > masks_in[path.parent] and not means_ok(path.parent.name):
            doubted.append(path)
            yield _Item(path, None, tags, None)
        else:
            yield _Item(path, OK, tags, None)
    if doubted:
        report.warnings.append(
            f"{len(doubted)} image{'' if len(doubted) == 1 else 's'} (the first: {doubted[0]}) "
            f"{'has an empty mask' if len(doubted) == 1 else 'have empty masks'} in a folder where most masks "
            "paint a defect: left unlabeled rather than taken for OK parts. Label them OK, or paint the defect.")


def _file_sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(read_file(path)).hexdigest()
    except BadImageError:
        return None  # the import itself reports it


def _size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _conflicting(items: list[_Item], pool: ThreadPoolExecutor) -> dict[str, list[_Item]]:
    """sha256 -> the items that give the same bytes different labels.

    Known before anything is recorded, so neither label is stored first and then
    taken back. Only files whose size matches a file with another label are hashed.
    """
    labeled = [item for item in items if item.verdict is not None]
    verdicts_by_size: dict[int, set[str]] = {}
    sizes = list(pool.map(lambda item: _size(item.path), labeled))
    for item, size in zip(labeled, sizes):
        verdicts_by_size.setdefault(size, set()).add(item.verdict)
    suspects = [item for item, size in zip(labeled, sizes) if size is not None and len(verdicts_by_size[size]) > 1]
    by_sha: dict[str, list[_Item]] = {}
    for item, sha in zip(suspects, pool.map(lambda item: _file_sha(item.path), suspects)):
        if sha is not None:
            by_sha.setdefault(sha, []).append(item)
    return {sha: group for sha, group in by_sha.items() if len({item.verdict for item in group}) > 1}


def _reason(exc: BadImageError, path: Path) -> str:
    # The store's message starts with the file name; the report gives it separately.
    message = str(exc)
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _existing_mask(item: _Item) -> Path | None:
    """The item's mask file when there is one; OK and unlabeled parts never have one."""
    if item.verdict in (None, OK) or item.mask_path is None or not (
            item.mask_path.is_file() or item.mask_path.is_dir()):
        return None
    return item.mask_path


def _read_matching_mask(item: _Item, width: int, height: int, problems: list[tuple[str, str]]):
    if _existing_mask(item) is None:
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
    notes: list[str] = field(default_factory=list)  # imageio.range_note remarks


def _prepare(project: Project, item: _Item) -> _Prepared:
    """Read, decode and store one file and its mask; runs on a worker thread."""
    result = _Prepared(item)
    try:
        data, result.captured_at = read_source_file(item.path)
        result.captured_at = item.captured_at or result.captured_at
        result.image = project.prepare_image(data, item.filename or item.path.name, result.notes)
    except BadImageError as exc:
        result.problems.append((str(item.path), _reason(exc, item.path)))
        return result
    result.mask = _read_matching_mask(item, result.image.width, result.image.height, result.problems)
    if result.mask is not None:
        project.write_mask_file(result.mask)
    return result


def _shown(item: _Item) -> str:
    # An image from another project lives under its hash there; its name says more.
    return str(item.path) if item.filename is None else f"{item.filename} ({item.path})"


class _Recorder:
    """Records prepared files one by one, keeping the report and the conflicts."""

    def __init__(self, project: Project, report: ImportReport, conflicting: dict[str, list[_Item]]) -> None:
        self.project = project
        self.report = report
        self.conflicting = conflicting  # sha256 -> items labeling the same bytes differently
        self.conflicts: dict[str, ImportConflict] = {}  # sha256 -> its one entry in the report
        self.noted: dict[str, list[str]] = {}  # range note -> the files it applies to

    def record(self, prepared: _Prepared) -> None:
        report, item = self.report, prepared.item
        report.skipped += prepared.problems
        for note in prepared.notes:
            self.noted.setdefault(note, []).append(_shown(item))
        if prepared.image is None:
            return
        record, new = self.project.add_prepared_image(prepared.image, "import", item.tags, prepared.captured_at)
        if new:
            report.added += 1
            if item.split is not None:
                self.project.set_split(record.id, item.split)  # splits never move: only a new image gets one
                report.held_out += item.split in HELD_OUT_SPLITS
        else:
            report.duplicates += 1
        current = self.project.label(record.id)
        if record.sha256 in self.conflicting:
            # Every copy stays unlabeled; the one entry names them all.
            sources = [(_shown(other), other.verdict) for other in self.conflicting[record.sha256]]
            self._conflict(record.sha256, current, sources)
        elif current is not None:
            # What someone already decided about this image stands; a disagreement is shown.
            if item.verdict is not None and current.verdict != item.verdict:
                self._conflict(record.sha256, current, [(_shown(item), item.verdict)])
        elif item.verdict is not None:
            label = self.project.set_label(record.id, item.verdict, mask=prepared.mask, author="import")
            report.labeled += 1
            report.masks += label.mask_path is not None

    def warnings(self) -> list[str]:
        """One line per kind of note, naming the first file and how many there are."""
        return [f"{len(paths)} image{'' if len(paths) == 1 else 's'} (the first: {paths[0]}) "
                f"{'has' if len(paths) == 1 else 'have'} {note}." for note, paths in self.noted.items()]

    def _conflict(self, sha: str, current, sources: list[tuple[str, str]]) -> None:
        entry = self.conflicts.get(sha)
        if entry is None:
            entry = self.conflicts[sha] = ImportConflict([], None if current is None else current.verdict)
            self.report.conflicts.append(entry)
        entry.sources += [source for source in sources if source not in entry.sources]


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
    `import` reads it (class folders, images/<class>, MVTec AD, a project), and what was skipped."""
    files, skipped = labeled_files_with_masks(source)
    return [(verdict, path) for verdict, path, _ in files], skipped


def labeled_files_with_masks(
    source: Path | str,
) -> tuple[list[tuple[str, Path, Path | None]], list[tuple[str, str]]]:
    """As labeled_files, with the defect mask `import` would attach to each image:
    (verdict, image path, mask path or None). The mask path is given only when the file
    exists (masks/<class>/<stem>.png, MVTec's ground_truth/<class>/<stem>_mask.png, or
    another usual name: `_mask_file`);
    OK parts never have one. The mask itself is not read here."""
    source = Path(source).expanduser().absolute()
    _check_source(source)
    report = ImportReport(layout=_layout(source))
    items = _items(source, report)
    files = [(item.verdict, item.path, _existing_mask(item)) for item in items if item.verdict is not None]
    return files, _printable_pairs(report.skipped)


def _check_not_itself(project: Project, source: Path) -> None:
    if source == project.path or project.path in source.parents:
        raise LinesideError(
            f"{source} is the project {project.path} itself (or a folder inside it); its images are "
            "already in the project. Import from a folder outside the project."
        )


def _printable_pairs(pairs: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(printable(a), printable(b)) for a, b in pairs]


def _make_printable(report: ImportReport) -> ImportReport:
    # Names that are not valid UTF-8 would make printing the report crash.
    report.skipped = _printable_pairs(report.skipped)
    for conflict in report.conflicts:
        conflict.sources = _printable_pairs(conflict.sources)
    report.warnings = [printable(w) for w in report.warnings]
    return report


def import_folder(
    project: Project, source: Path | str, on_progress: Callable[[int, int], None] | None = None
) -> ImportReport:
    """Import every image under *source*; on_progress(done, total) is called per file."""
    source = Path(source).expanduser().absolute()
    _check_source(source)
    _check_not_itself(project, source)
    report = ImportReport(layout=_layout(source))
    items = list(_items(source, report))
    pool = ThreadPoolExecutor(max_workers=PREPARE_THREADS)
    try:
        recorder = _Recorder(project, report, _conflicting(items, pool))
        # Workers run ahead preparing files while this thread records them in batches.
        futures = [pool.submit(_prepare, project, item) for item in items]
        for start in range(0, len(futures), BATCH_SIZE):
            with project.transaction():
                for done, future in enumerate(futures[start : start + BATCH_SIZE], start + 1):
                    recorder.record(future.result())
                    if on_progress is not None:
                        on_progress(done, len(items))
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    report.warnings += recorder.warnings()
    return _make_printable(report)
