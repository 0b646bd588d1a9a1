"""Defect classes and labels of a project (part of the Project facade).

Labels are append-only: setting, clearing and undoing each add a row, so the history of
every image can be shown and audited, and nothing an inspector did is ever overwritten.
The current label of an image is its newest row.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from app.core import atomic, audit, db
from app.core.errors import LinesideError
from app.core.imageio import encode_png, read_mask
from app.core.records import OK, DefectClass, ImageRecord, Label

# Distinct, readable on gray parts; green is left for OK.
_PALETTE = (
    "#e6194b", "#f58231", "#4363d8", "#911eb4", "#ffe119",
    "#42d4f4", "#f032e6", "#9a6324", "#800000", "#000075",
)  # fmt: skip
# Folder names that hold good parts, as datasets and line cameras name them (any case;
# spaces and hyphens read as underscores). Never a defect class name: it would read as
# OK on re-import. "nok" (not OK) is a defect.
OK_CLASS_NAMES = frozenset({"ok", "good", "pass", "normal", "no_defect", "nodefect", "non_defective",
                            "defect_free"})
_SEPARATORS = re.compile(r"[\s\-]+")


def means_ok(name: str) -> bool:
    """True for a folder or class name that stands for good parts ("good", "OK", "Normal",
    "defect-free", ...)."""
    return _SEPARATORS.sub("_", (name or "").strip().lower()) in OK_CLASS_NAMES
# A class name becomes a folder name on export, on any operating system.
_FORBIDDEN_CHARS = re.compile(r'[<>:"/\\|?*\x00-\x1f]')
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
# Splits the trainer never learns from: "test" (a dataset's own held-out images, such as
# MVTec AD's test folder) and "golden" (the parts every candidate is judged on before a
# deploy, app/core/golden.py). Their labels stay in the project for evaluation.
HELD_OUT_SPLITS = ("test", "golden")


def current_labels() -> sa.Subquery:
    """The newest label row of every image that has one (verdict NULL = cleared)."""
    newest = (
        sa.select(db.labels.c.image_id, sa.func.max(db.labels.c.id).label("label_id"))
        .group_by(db.labels.c.image_id)
        .subquery("newest")
    )
    return sa.select(db.labels).join(newest, db.labels.c.id == newest.c.label_id).subquery("current")


def check_class_name(name: str) -> str:
    """The cleaned class name, or a LinesideError saying what is wrong with it."""
    name = (name or "").strip()
    if not name:
        raise LinesideError("A defect class needs a name.")
    if means_ok(name) or name.lower() == "masks":  # "masks" would clash with the export's masks/ folder
        raise LinesideError(f"'{name}' cannot be a defect class name (it is reserved for good parts or masks).")
    if _FORBIDDEN_CHARS.search(name) or name.startswith("."):
        raise LinesideError(f"'{name}' cannot be a defect class name: leave out / \\ : * ? \" < > | and a leading dot.")
    return name


def _spare_color(used: set[str]) -> str:
    for color in _PALETTE:
        if color not in used:
            return color
    # Past the palette: walk the hue circle by the golden ratio for well-spread colours.
    hue = (len(used) * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.9)
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


class LabelStoreMixin:
    """Classes and labels; mixed into Project (uses its _read/_write and path)."""

    path: Path

    # -- classes -------------------------------------------------------------------

    def classes(self) -> list[DefectClass]:
        table = db.classes
        with self._read() as conn:
            rows = conn.execute(
                sa.select(table.c.name, table.c.color, table.c.shortcut).order_by(
                    table.c.shortcut.is_(None), table.c.shortcut, table.c.id
                )
            ).all()
        return [DefectClass(name, color, key) for name, color, key in rows]

    def add_class(self, name: str, color: str | None = None) -> DefectClass:
        """Add a defect class, or return the existing one of that name (any case)."""
        name = check_class_name(name)
        if color is not None and not _COLOR.match(color):
            raise LinesideError(f"'{color}' is not a colour; use the form #rrggbb.")
        with self._write() as conn:
            existing = [DefectClass(*row) for row in conn.execute(
                sa.select(db.classes.c.name, db.classes.c.color, db.classes.c.shortcut)
            )]  # fmt: skip
            for cls in existing:
                if cls.name.lower() == name.lower():
                    return cls
            used_keys = {cls.key for cls in existing}
            key = next((k for k in range(1, 10) if k not in used_keys), None)
            color = (color or _spare_color({cls.color for cls in existing})).lower()
            conn.execute(db.classes.insert().values(name=name, color=color, shortcut=key))
            return DefectClass(name, color, key)

    @staticmethod
    def _normal_verdict(verdict: str) -> str:
        verdict = verdict.strip()
        return OK if verdict.lower() == OK else verdict

    # -- labels --------------------------------------------------------------------

    def _label(self, row: sa.RowMapping) -> Label:
        mask = row["mask_path"]
        return Label(
            id=row["id"],
            image_id=row["image_id"],
            verdict=row["verdict"],
            mask_path=self.path / mask if mask else None,
            author=row["author"],
            created_at=row["created_at"],
        )

    def write_mask_file(self, mask: np.ndarray) -> str | None:
        """Store a 2-D mask (nonzero = defect) by content; its path relative to the project.

        None when nothing is painted. Touches no database: a bulk import writes masks
        from worker threads, and set_label then finds the same mask already stored.
        """
        if not mask.any():
            return None  # a defect without a marked region
        png = encode_png(np.where(mask > 0, 255, 0).astype(np.uint8))
        sha = hashlib.sha256(png).hexdigest()
        rel = f"masks/{sha[:2]}/{sha}.png"
        if not (self.path / rel).is_file():
            atomic.write_bytes(self.path / rel, png)
        return rel

    def _store_mask(self, mask: np.ndarray, image: ImageRecord) -> str | None:
        mask = np.asarray(mask)
        if mask.ndim == 3:
            mask = mask.any(axis=2)
        if mask.ndim != 2 or mask.shape != (image.height, image.width):
            raise LinesideError(
                f"The mask is {mask.shape[1] if mask.ndim > 1 else '?'}x{mask.shape[0]} but the image "
                f"{image.filename} is {image.width}x{image.height}; paint the mask on the image itself."
            )
        return self.write_mask_file(mask)

    def _append_label(self, conn: sa.Connection, image_id: int, verdict: str | None,
                      mask_rel: str | None, author: str, undoes: int | None = None) -> int:  # fmt: skip
        return conn.execute(
            db.labels.insert().values(
                image_id=image_id,
                verdict=verdict,
                mask_path=mask_rel,
                author=author or "",
                created_at=datetime.now(timezone.utc),
                undoes=undoes,
            )
        ).inserted_primary_key[0]

    def set_label(
        self, image_id: int, verdict: str | None, mask: np.ndarray | None = None, author: str = ""
    ) -> Label:
        """Label an image OK, with a defect class (added if new), or clear it (None).

        The mask (HxW, nonzero = defect) must match the image size; it is ignored for OK.
        The mask file is on disk before the label row commits, and the row has
        committed when this returns.
        """
        image = self.image(image_id)
        with self._write() as conn:
            if verdict is not None:
                verdict = self._normal_verdict(verdict)
                if verdict != OK:
                    verdict = self.add_class(verdict).name
            mask_rel = None
            if mask is not None and verdict not in (None, OK):
                mask_rel = self._store_mask(mask, image)
            label_id = self._append_label(conn, image_id, verdict, mask_rel, author)
            audit.label_changed(conn, label_id)
            row = conn.execute(sa.select(db.labels).where(db.labels.c.id == label_id)).mappings().one()
        return self._label(row)

    def _history_rows(self, conn: sa.Connection, image_id: int) -> list[sa.RowMapping]:
        query = sa.select(db.labels).where(db.labels.c.image_id == image_id).order_by(db.labels.c.id)
        return list(conn.execute(query).mappings().all())

    def label(self, image_id: int) -> Label | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(db.labels).where(db.labels.c.image_id == image_id).order_by(db.labels.c.id.desc()).limit(1)
            ).mappings().first()
        if row is None or row["verdict"] is None:
            return None
        return self._label(row)

    def label_history(self, image_id: int) -> list[Label]:
        with self._read() as conn:
            return [self._label(row) for row in self._history_rows(conn, image_id)]

    def undo_label(self, image_id: int, author: str | None = None) -> Label | None:
        """Go back to the label before the last change, by appending a copy of it.

        Repeated undos walk further back: rows that were themselves undone are skipped.
        *author* defaults to the author of the label being restored.
        """
        with self._write() as conn:
            changes: list[sa.RowMapping] = []
            for row in self._history_rows(conn, image_id):
                if row["undoes"] is None:
                    changes.append(row)
                else:
                    changes = [c for c in changes if c["id"] != row["undoes"]]
            if not changes:
                return self.label(image_id)  # nothing to undo
            undone = changes.pop()
            before = changes[-1] if changes else None
            label_id = self._append_label(
                conn,
                image_id,
                before["verdict"] if before else None,
                before["mask_path"] if before else None,
                author if author is not None else (before["author"] if before else undone["author"]),
                undoes=undone["id"],
            )
            audit.label_changed(conn, label_id)
            return self.label(image_id)

    def load_mask(self, label: Label) -> np.ndarray | None:
        """The label's defect mask as uint8 0/255, or None when it has none."""
        return None if label.mask_path is None else read_mask(label.mask_path)

    def labeled(self, split: str | None = None) -> list[tuple[ImageRecord, Label]]:
        """Images whose current label is set (not cleared), ordered by image id."""
        current = current_labels()
        query = (
            sa.select(db.images)
            .join(current, current.c.image_id == db.images.c.id)
            .where(current.c.verdict.is_not(None))
            .order_by(db.images.c.id)
        )
        if split is not None:
            query = query.where(db.images.c.split == split)
        with self._read() as conn:
            records = self._records(conn, query)
            label_rows = conn.execute(sa.select(current).where(current.c.verdict.is_not(None))).mappings()
            by_image = {row["image_id"]: self._label(row) for row in label_rows}
        return [(record, by_image[record.id]) for record in records]

    def labeled_fingerprint(self) -> str:
        """SHA-256 over every labeled image and its current verdict (held-out splits aside).

        The trainer stores it with each model; the app compares it before a retrain, so
        retraining on unchanged data is never a surprise duplicate."""
        import hashlib

        rows = sorted(f"{record.sha256}:{label.verdict}" for record, label in self.labeled()
                      if record.split not in HELD_OUT_SPLITS)
        return hashlib.sha256("\n".join(rows).encode()).hexdigest()

    def label_counts(self, for_training: bool = False) -> dict[str, int]:
        """Verdict -> number of images currently labeled so, plus "unlabeled".

        *for_training*: only images a training may use (not in HELD_OUT_SPLITS)."""
        current = current_labels()
        images = db.images
        usable = sa.or_(images.c.split.is_(None), images.c.split.not_in(HELD_OUT_SPLITS))
        with self._read() as conn:
            query = (sa.select(current.c.verdict, sa.func.count())
                     .join(images, images.c.id == current.c.image_id)
                     .where(current.c.verdict.is_not(None)))
            total_query = sa.select(sa.func.count()).select_from(images)
            if for_training:
                query, total_query = query.where(usable), total_query.where(usable)
            counts = dict(conn.execute(query.group_by(current.c.verdict)).all())
            total = conn.scalar(total_query)
        counts["unlabeled"] = total - sum(counts.values())
        return counts
