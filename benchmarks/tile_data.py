"""The magnetic-tile dataset as the benchmark uses it: its fixed split, subsets, a project.

The dataset (Huang, Qiu and Yuan, "Surface defect saliency of magnetic tile", The Visual
Computer, 2020) lies beside the repository, never inside it: images are read where they
are and stored only in a temporary project, as an inspector's import would store them.
"""

from __future__ import annotations

import csv
import math
import random
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from app.core.imageio import read_mask
from app.core.project import Project
from app.core.records import OK

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "magnetic-tile"
GOOD_CLASS = "good"
CITATION = (
    'Y. Huang, C. Qiu and K. Yuan, "Surface defect saliency of magnetic tile", '
    "The Visual Computer 36, 85-96 (2020)"
)
# Commit batches when importing: a transaction per image would dominate on a slow disk.
IMPORT_BATCH = 100


class DatasetMissing(Exception):
    """The dataset folder or its split file is not where it should be."""


@dataclass(frozen=True)
class Item:
    path: Path  # the image file
    label: str  # the dataset's class name ("good" for OK parts)
    split: str  # train | val | test

    @property
    def verdict(self) -> str:
        """The label as Lineside stores it: "ok" for good parts, else the class name."""
        return OK if self.label == GOOD_CLASS else self.label

    def mask_path(self, root: Path) -> Path:
        return root / "masks" / self.path.parent.name / f"{self.path.stem}.png"


def read_split(root: Path) -> list[Item]:
    """Every row of split.csv (path,label,split), with the image path made absolute."""
    split_file = root / "split.csv"
    if not root.is_dir() or not split_file.is_file():
        raise DatasetMissing(
            f"The magnetic-tile dataset was not found at {root} (expected images/<class>/*.jpg, "
            "masks/<class>/*.png and split.csv there). Put it there or pass --dataset PATH."
        )
    with split_file.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    items = [Item(root / row["path"], row["label"], row["split"]) for row in rows]
    missing = [item.path for item in items if not item.path.is_file()]
    if missing:
        raise DatasetMissing(f"{len(missing)} images listed in {split_file} are missing, e.g. {missing[0]}.")
    return items


def file_hash(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def without_leaks(test: list[Item], seen: list[Item]) -> tuple[list[Item], list[Item]]:
    """(test items, leaked ones): a test image with the same bytes as a training or
    validation image measures memory, not detection, so it is left out (and counted)."""
    known = {file_hash(item.path) for item in seen}
    kept = [item for item in test if file_hash(item.path) not in known]
    return kept, [item for item in test if item not in kept]


def in_split(items: list[Item], *splits: str) -> list[Item]:
    return [item for item in items if item.split in splits]


def by_class(items: list[Item]) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = defaultdict(list)
    for item in items:
        groups[item.label].append(item)
    return dict(sorted(groups.items()))


def stratified_fraction(items: list[Item], fraction: float, seed: int) -> list[Item]:
    """About *fraction* of each class (at least one image), the same on every run."""
    return stratified_counts(items, {label: max(1, math.ceil(fraction * len(group)))
                                     for label, group in by_class(items).items()}, seed)


def stratified_counts(items: list[Item], counts: dict[str, int], seed: int) -> list[Item]:
    """*counts[label]* images of each class (all of them if it has fewer), seeded."""
    rng = random.Random(seed)
    chosen: list[Item] = []
    for label, group in by_class(items).items():
        group = sorted(group, key=lambda item: item.path.name)
        chosen += rng.sample(group, min(len(group), counts.get(label, 0)))
    return sorted(chosen, key=lambda item: (item.label, item.path.name))


def class_counts(items: list[Item]) -> dict[str, int]:
    return {label: len(group) for label, group in by_class(items).items()}


def build_project(folder: Path, root: Path, items: list[Item],
                  on_progress: Callable[[int, int], None] = lambda done, total: None,
                  keep_splits: bool = True) -> Path:
    """A new project at *folder* holding *items*, labeled and masked.

    With *keep_splits* the dataset's train/val splits are set before any training (the
    trainer only assigns a split to images that have none); without, the trainer
    divides the items into train and val by its own rule, as it would on a line.
    """
    project = Project.create(folder, name="benchmark")
    try:
        for start in range(0, len(items), IMPORT_BATCH):
            with project.transaction():
                for done, item in enumerate(items[start:start + IMPORT_BATCH], start + 1):
                    record, new = project.add_image_file(item.path)
                    if not new:
                        # Some published datasets hold the same file twice under two names
                        # (kolektorsdd: 16 pairs). Stored once, as an import would.
                        continue
                    mask = None
                    if item.verdict != OK and item.mask_path(root).is_file():
                        mask = read_mask(item.mask_path(root), (record.height, record.width))
                    project.set_label(record.id, item.verdict, mask=mask, author="benchmark")
                    if keep_splits:
                        project.set_split(record.id, item.split)
                    on_progress(done, len(items))
    finally:
        project.close()
    return folder
