"""`kill -9` in the middle of writing: an import, a labeling session, a training.

Afterwards the project opens, `PRAGMA integrity_check` says ok, everything that was
acknowledged before the kill is there (images and labels from before, every label the
labeling child printed), every image row has its file, and the production model still
serves. A few fixed random points here; `benchmarks/crash.py` runs 50 of each.
"""

from __future__ import annotations

import hashlib
import math
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from app.core.project import Project
from app.core.runtime import Inspector
from tests.hostile.helpers import ROOT, make_project, run_cli, snapshot
from tests.store_fixtures import part_image, write_image

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


def _kill_after(command: list[str], delay: float, wait_for: str | None = None,
                start_timeout: float = 120.0) -> tuple[bool, str]:
    """SIGKILL the child *delay* seconds after it starts, or after it has printed
    *wait_for* (a kill in the middle of the work however fast or busy the machine is).
    Returns (killed, what it printed)."""
    with tempfile.TemporaryDirectory() as folder:
        log = Path(folder) / "out.txt"
        with log.open("wb") as out:  # the child's own file offset; we read through another
            child = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + start_timeout
        while wait_for is not None and wait_for not in log.read_text("utf-8", "replace") \
                and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            child.wait(timeout=delay)
            killed = False
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGKILL)
            child.wait()
            killed = True
        return killed, log.read_text("utf-8", "replace")


def _integrity(project_dir: Path) -> str:
    conn = sqlite3.connect(project_dir / "project.db")
    try:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        conn.close()


def _every_row_has_its_file(project_dir: Path) -> None:
    with Project.open(project_dir) as project:
        for record in project.images():
            assert hashlib.sha256(record.path.read_bytes()).hexdigest() == record.sha256
        for record, label in project.labeled():
            assert label.mask_path is None or label.mask_path.is_file()


def _production_serves(project_dir: Path, version: str = "v1") -> None:
    with Project.open(project_dir) as project:
        model = project.production_model()
    assert model is not None and model.version == version
    verdict = Inspector(model.onnx_path, threshold=model.threshold).inspect(np.full((64, 64, 3), 90, np.uint8))
    assert math.isfinite(verdict.score)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_import_killed_at_a_random_point(tmp_path: Path, capsys, seed: int):
    source = tmp_path / "src"
    for i in range(250):
        write_image(source / "good" / f"g{i:03d}.png", part_image(1000 + i, size=(96, 128)))
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    delay = random.Random(seed).uniform(0.8, 2.5)  # python starts in ~0.5 s; the import takes longer

    killed, _ = _kill_after([sys.executable, "-m", "app", "import", str(project_dir), str(source)], delay)

    assert _integrity(project_dir) == "ok"
    after = snapshot(project_dir)  # it opens
    assert set(before["images"]) <= set(after["images"])
    assert all(after["labels"][sha] == verdict for sha, verdict in before["labels"].items())
    _every_row_has_its_file(project_dir)
    _production_serves(project_dir)
    # Whatever the kill left, running the import again completes it.
    code, out, err = run_cli(capsys, "import", project_dir, source)
    assert code == 0 and err == ""
    assert len(snapshot(project_dir)["images"]) == len(before["images"]) + 250
    assert killed or "imported 0 new images" in out  # a kill after the end changes nothing


LABEL_CHILD = r"""
import sys
import numpy as np
from app.core.project import Project
with Project.open(sys.argv[1]) as project:
    records = project.images()
    for round_ in range(1000):
        for record in records:
            verdict = ("ok", "scratch", "dent")[(record.id + round_) % 3]
            mask = None
            if verdict != "ok":
                mask = np.zeros((record.height, record.width), np.uint8)
                mask[(round_ % record.height):, : 1 + record.id % record.width] = 255
            label = project.set_label(record.id, verdict, mask=mask, author="kill-test")
            print(label.id, record.id, label.verdict, flush=True)
"""


@pytest.mark.parametrize("delay", [0.05, 0.4, 1.1])
def test_labeling_killed_keeps_every_acknowledged_label(tmp_path: Path, delay: float):
    project_dir = make_project(tmp_path, n_ok=10, n_defect=10)
    before = snapshot(project_dir)

    killed, out = _kill_after([sys.executable, "-c", LABEL_CHILD, str(project_dir)], delay, wait_for="\n")

    assert killed
    acknowledged = [line.split() for line in out.splitlines() if len(line.split()) == 3]
    assert len(acknowledged) > 0  # the child got to work before the kill
    assert _integrity(project_dir) == "ok"
    with Project.open(project_dir) as project:
        rows = {label.id: (label.image_id, label.verdict)
                for record in project.images() for label in project.label_history(record.id)}
    for label_id, image_id, verdict in acknowledged:
        assert rows[int(label_id)] == (int(image_id), verdict)
    after = snapshot(project_dir)
    assert after["images"] == before["images"]
    _every_row_has_its_file(project_dir)
    _production_serves(project_dir)


@pytest.mark.slow
def test_training_killed_leaves_the_production_model_serving(tmp_path: Path, capsys):
    from tests.training_fixtures import make_tiny_project

    project_dir = make_tiny_project(tmp_path / "tiny")
    train = [sys.executable, "-m", "app", "train", str(project_dir), "--epochs", "1", "--device", "cpu"]
    subprocess.run(train, cwd=ROOT, check=True, capture_output=True, timeout=600)
    assert run_cli(capsys, "deploy", project_dir, "v1")[0] == 0
    before = snapshot(project_dir)
    started = time.monotonic()

    # Killed while it prepares and caches, and in the middle of its first epoch.
    long_train = train[:-4] + ["--epochs", "40", "--device", "cpu", "--progress", "json"]
    for moment in ('"phase": "prepare"', '"phase": "train"'):
        killed, _ = _kill_after(long_train, 0.0, wait_for=moment)
        assert killed, f"training finished before it was killed at {moment}"
        assert _integrity(project_dir) == "ok"
        _production_serves(project_dir)
        after = snapshot(project_dir)
        assert (after["images"], after["labels"]) == (before["images"], before["labels"])
        assert [m for m in after["models"] if m[0] == "v1"] == [m for m in before["models"] if m[0] == "v1"]
    code, out, err = run_cli(capsys, "inspect", project_dir, _a_part(tmp_path))
    assert code == 0 and out.startswith(("PASS", "FAIL")) and "(model v1)" in err
    assert time.monotonic() - started < 300


def _a_part(tmp_path: Path) -> Path:
    path = tmp_path / "part.png"
    write_image(path, part_image(1500))
    return path
