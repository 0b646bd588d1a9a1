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


def make_spot_project(path: Path, n_ok: int = 30, n_defect: int = 16, seed: int = 7) -> Path:
    """Parts a few epochs can learn: brushed texture, and on defective parts a dark pit
    (with its painted mask). For checking that training learns, not how well."""
    import cv2
    import numpy as np

    from app.core.imageio import encode_png

    rng = np.random.default_rng(seed)
    source = path.parent / f"{path.name}-source"
    for kind, n in (("good", n_ok), ("pit", n_defect)):
        for i in range(n):
            texture = cv2.GaussianBlur(rng.normal(128, 14, (96, 96)).astype(np.float32), (0, 0), 1.0)
            mask = np.zeros((96, 96), np.uint8)
            if kind == "pit":
                y, x = (int(v) for v in rng.integers(16, 80, 2))
                cv2.circle(texture, (x, y), 6, 40.0, -1)
                cv2.circle(mask, (x, y), 7, 255, -1)
                (source / "masks" / kind).mkdir(parents=True, exist_ok=True)
                (source / "masks" / kind / f"{i}.png").write_bytes(encode_png(mask))
            (source / kind).mkdir(parents=True, exist_ok=True)
            image = cv2.cvtColor(np.clip(texture, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)
            (source / kind / f"{i}.png").write_bytes(encode_png(image))
    with Project.create(path, name="spots") as project:
        project.set_setting("input_size", TINY_INPUT_SIZE)
        import_folder(project, source)
    return path
