"""A damaged project.db or model file: a clear message, and nothing written over it.

project.db is damaged in the ways disks and copies damage files: overwritten with
random bytes, cut short (half, only the header), emptied, or the pages of some tables
overwritten while the rest of the file is fine. Each command must say "damaged" (or "empty"), print no
traceback and leave the file, and every image of the project, byte for byte as it was:
the user's next step is a rescue from a backup, not a repair we attempted.

A damaged page deep in the file used to surface only when a command read it, as a
sqlalchemy DatabaseError traceback; an empty project.db was silently turned into a new,
empty database.
"""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from tests.hostile.helpers import file_sha, make_project, run_cli
from tests.store_fixtures import part_image, write_image


def _damage(data: bytes, how: str) -> bytes:
    if how == "random-bytes":
        return np.random.default_rng(11).bytes(len(data))
    if how == "cut-in-half":
        return data[: len(data) // 2]
    if how == "header-only":
        return data[:100]
    if how == "zero-bytes":
        return b""
    raise AssertionError(how)


def _damage_pages_of(db_path: Path, tables: tuple[str, ...]) -> bytes:
    """Overwrite the root pages of *tables* (and their indexes) in place: the rest of
    the file, the schema and the other tables stay readable."""
    with sqlite3.connect(db_path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = [page for (page,) in conn.execute(
            f"SELECT rootpage FROM sqlite_master WHERE tbl_name IN ({','.join('?' * len(tables))})", tables)]
    conn.close()
    data = bytearray(db_path.read_bytes())
    noise = np.random.default_rng(12)
    for page in roots:
        data[(page - 1) * page_size : page * page_size] = noise.bytes(page_size)
    return bytes(data)


@pytest.fixture
def big_project(tmp_path: Path) -> Path:
    # Enough rows that the middle pages of project.db hold images and labels.
    return make_project(tmp_path, n_ok=30, n_defect=30)


def _images_state(project_dir: Path) -> dict[str, str]:
    return {str(p.relative_to(project_dir)): file_sha(p) for p in (project_dir / "images").rglob("*") if p.is_file()}


def _run(capsys, project_dir: Path, tmp_path: Path, command: str):
    if command == "models":
        return run_cli(capsys, "models", project_dir)
    if command == "import":
        write_image(tmp_path / "more" / "good" / "n.png", part_image(401))
        return run_cli(capsys, "import", project_dir, tmp_path / "more")
    part = tmp_path / "part.png"
    write_image(part, part_image(402))
    return run_cli(capsys, "inspect", project_dir, part)


CASES = [(how, command) for how in ("random-bytes", "cut-in-half", "header-only", "zero-bytes")
         for command in ("models", "import", "inspect")]  # fmt: skip
# The pages of the images and labels tables damaged: what reads them fails.
CASES += [("image-pages", "import"), ("image-pages", "inspect")]


@pytest.mark.parametrize(("how", "command"), CASES)
def test_a_damaged_project_db_is_reported_and_left_alone(big_project: Path, tmp_path: Path, capsys, how, command):
    db_path = big_project / "project.db"
    if how == "image-pages":
        damaged = _damage_pages_of(db_path, ("images", "labels"))
    else:
        damaged = _damage(db_path.read_bytes(), how)
    db_path.write_bytes(damaged)
    images_before = _images_state(big_project)

    code, out, err = _run(capsys, big_project, tmp_path, command)

    assert code == 2 and "Traceback" not in err
    assert out == ""  # a verdict is printed only once it is saved: none could be
    if (how, command) == ("image-pages", "inspect"):
        # The part is judged; recording it is what fails, and the run says so.
        assert "1 of 1 parts were judged but could not be saved" in err and f"{db_path} is " in err
    else:
        assert err.startswith(f"lineside: {db_path} is ")
    expected = "is empty (0 bytes)" if how == "zero-bytes" else "is damaged"
    assert expected in err and "Restore the project folder from a backup" in err
    assert "read-only" not in err and "busy" not in err
    assert db_path.read_bytes() == damaged  # not repaired, not replaced, not emptied
    images_after = _images_state(big_project)
    # An import stores a file before its row; a file with no row is never a loss.
    assert {k: v for k, v in images_after.items() if k in images_before} == images_before


def test_damaged_image_pages_still_let_the_models_be_listed(big_project: Path, tmp_path: Path, capsys):
    db_path = big_project / "project.db"
    damaged = _damage_pages_of(db_path, ("images", "labels"))
    db_path.write_bytes(damaged)
    code, out, err = run_cli(capsys, "models", big_project)
    assert code == 0 and err == "" and re.search(r"^v1 +production", out, re.M)
    assert db_path.read_bytes() == damaged


# -- the model file at inspect time ------------------------------------------------------

@pytest.mark.parametrize("how", ["missing", "truncated", "garbage", "a-folder", "empty"])
def test_a_damaged_production_model_at_inspect_time_is_a_clear_error(tmp_path: Path, capsys, how: str):
    project_dir = make_project(tmp_path)
    onnx_path = project_dir / "models" / "v1" / "model.onnx"
    good = onnx_path.read_bytes()
    if how == "missing":
        onnx_path.unlink()
    elif how == "truncated":
        onnx_path.write_bytes(good[: len(good) // 2])
    elif how == "garbage":
        onnx_path.write_bytes(os.urandom(len(good)))
    elif how == "a-folder":
        onnx_path.unlink()
        onnx_path.mkdir()
    else:
        onnx_path.write_bytes(b"")
    part = tmp_path / "part.png"
    write_image(part, part_image(403))

    code, out, err = run_cli(capsys, "inspect", project_dir, part)

    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"lineside: {onnx_path}") and err.count("\n") == 1
    reason = {"missing": "model file not found", "a-folder": "model file not found",
              "empty": "the model file is empty (0 bytes)"}.get(how, "not a readable ONNX model")  # fmt: skip
    assert reason in err
    code, out, err = run_cli(capsys, "models", project_dir)  # the project itself is fine
    assert code == 0 and re.search(r"^v1 +production", out, re.M)
