"""Shared by the hostile-user tests: run the CLI, and take stock of a project.

Every hostile test checks two things: the user gets a clear message (no traceback),
and nothing the project had saved before was lost or changed. `snapshot` is the
"before and after" of the second check.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from app.cli import main
from app.core.project import Project
from tests.onnx_fixtures import write_model
from tests.store_fixtures import part_image, write_image

ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """`lineside ARGV...` in this process: (exit code, stdout, stderr)."""
    code = main([os.fsdecode(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_cli_process(*argv, timeout: float = 120) -> subprocess.CompletedProcess:
    """`python -m app ARGV...` as a child with strict UTF-8 output, as in a terminal."""
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "LC_ALL": "C.UTF-8"}
    return subprocess.run([sys.executable, "-m", "app", *map(os.fsdecode, argv)], cwd=ROOT, env=env,
                          capture_output=True, timeout=timeout)


def file_sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def snapshot(project_dir: Path) -> dict:
    """Everything a user saved in a project, in a form to compare before and after."""
    with Project.open(project_dir) as project:
        labeled = {record.sha256: label.verdict for record, label in project.labeled()}
        return {
            "images": sorted((r.sha256, r.filename, r.split, file_sha(r.path)) for r in project.images()),
            "labels": labeled,
            "label_counts": project.label_counts(),
            "models": [(m.version, m.status, file_sha(m.onnx_path)) for m in project.models()],
            "inspections": len(project.inspections()),
            "settings_name": project.name,
        }


def make_project(root: Path, n_ok: int = 3, n_defect: int = 2, deploy: bool = True) -> Path:
    """A project with labeled images and (deploy=True) a production model v1."""
    path = root / "project"
    with Project.create(path, name="Line 3") as project:
        parts = [(f"ok{i}.png", part_image(i), "ok") for i in range(n_ok)]
        parts += [(f"scratch{i}.png", part_image(100 + i, defect=True), "scratch") for i in range(n_defect)]
        for name, image, verdict in parts:
            write_image(root / "in" / name, image)
            record, _ = project.add_image_file(root / "in" / name)
            project.set_label(record.id, verdict)
        if deploy:
            folder = project.models_dir / "v1"
            write_model(folder / "model.onnx", version="v1")
            project.register_model("v1", folder, 0.5, {"auroc": 0.9}, {"n_train": 5})
            project.deploy("v1")
    return path
