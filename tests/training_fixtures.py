"""A tiny generated project that the real trainer can fit in seconds."""

from __future__ import annotations

from pathlib import Path

from app.core.importer import import_folder
from app.core.project import Project
from app.core.synthetic import write_demo_dataset

TINY_INPUT_SIZE = 96  # 6x6 heatmap: small enough to train in seconds on two cores


def make_tiny_project(path: Path, n_ok: int = 14, n_per_defect: int = 6, seed: int = 3) -> Path:
    source = path.parent / f"{path.name}-source"
    write_demo_dataset(source, n_ok, n_per_defect, seed=seed)
    with Project.create(path, name="tiny") as project:
        project.set_setting("input_size", TINY_INPUT_SIZE)
        # At a 96-px input the 256-px parts would be tiled; these tests are about the
        # whole-part path (tests/test_tiled_training.py trains a tiled model).
        project.set_setting("tiling", False)
        import_folder(project, source)
    return path
