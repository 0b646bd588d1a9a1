"""Writing a project's current labels back out as plain class folders.

The result is the class-folder layout the importer reads (`ok/`, one folder per defect
class, `masks/<class>/<stem>.png`), so an export can be opened by any tool, handed to
another site, or imported into another project with the same labels. Images keep their
original bytes; names get the first 8 hex digits of the content hash in front, so two
parts both called `img001.png` do not overwrite each other.
"""

from __future__ import annotations

from pathlib import Path

from app.core.atomic import copy_file
from app.core.errors import LinesideError
from app.core.project import Project
from app.core.records import OK

MASKS_FOLDER = "masks"


def export_data(project: Project, dest: Path | str) -> dict[str, int]:
    """Export every currently labeled image into *dest* (new or empty folder).

    Returns the number of images written per folder (`ok` and each class) and, under
    "masks", the number of masks.
    """
    dest = Path(dest).expanduser().absolute()
    if dest.exists() and not dest.is_dir():
        raise LinesideError(f"{dest} already exists and is not a folder; it was left as it is. "
                            "Export into a new or empty folder.")
    if dest.exists() and any(dest.iterdir()):
        raise LinesideError(f"{dest} already exists and is not empty; export into a new or empty folder.")
    if dest == project.path or project.path in dest.parents:
        raise LinesideError(f"{dest} is inside the project folder; export to a folder outside it.")
    counts: dict[str, int] = {}
    masks = 0
    try:
        dest.mkdir(parents=True, exist_ok=True)
        for record, label in project.labeled():
            folder = OK if label.verdict == OK else label.verdict
            stem = f"{record.sha256[:8]}_{Path(record.filename).stem}"
            copy_file(record.path, dest / folder / f"{stem}{record.path.suffix}")
            counts[folder] = counts.get(folder, 0) + 1
            if label.mask_path is not None:
                copy_file(label.mask_path, dest / MASKS_FOLDER / folder / f"{stem}.png")
                masks += 1
    except OSError as exc:  # a full disk arrives as DiskFullError from copy_file
        raise LinesideError(f"{exc.filename or dest}: cannot export ({exc.strerror or exc}).") from exc
    counts[MASKS_FOLDER] = masks
    return counts
