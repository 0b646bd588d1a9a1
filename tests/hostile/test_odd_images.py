"""Image files as they come from real cameras and USB sticks: odd depths, channels and
formats, wrong extensions, files cut short, files that are not images at all.

Every readable kind is imported byte for byte and judged like any other part; every
unreadable kind is skipped (import) or reported as one ERROR line (inspect) with the
file's name and a reason, while the rest of the batch goes through. OpenCV's own log
lines ("[ERROR:0] ... imdecode_", "libpng error") must not reach the terminal: the
output is captured at the file-descriptor level (capfd) to see them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from app.core.importer import import_folder
from app.core.project import OK, Project
from tests.hostile.helpers import file_sha, make_project, run_cli, snapshot
from tests.store_fixtures import encoded, part_image

NOISE = ("Traceback", "[ERROR", "[ WARN", "libpng", "libjpeg", "TIFF")


def _enc(suffix: str, image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(suffix, image)
    assert ok
    return buf.tobytes()


def _part16() -> np.ndarray:
    return part_image(7).astype(np.uint16) * 257  # the full 16-bit range


# name -> (file name, bytes, (height, width)) of a file Lineside must read.
READABLE: dict[str, Callable[[], tuple[str, bytes, tuple[int, int]]]] = {
    "png-16bit": lambda: ("p16.png", _enc(".png", _part16()), (48, 64)),
    "png-gray-16bit": lambda: ("g16.png", _enc(".png", _part16()[:, :, 0]), (48, 64)),
    "png-bgra": lambda: ("bgra.png", _enc(".png", cv2.cvtColor(part_image(8), cv2.COLOR_BGR2BGRA)), (48, 64)),
    "png-gray": lambda: ("gray.png", _enc(".png", part_image(9)[:, :, 0]), (48, 64)),
    "jpeg-gray": lambda: ("gray.jpg", _enc(".jpg", part_image(10)[:, :, 0]), (48, 64)),
    "tiff": lambda: ("part.tif", _enc(".tif", part_image(11)), (48, 64)),
    "tiff-16bit": lambda: ("part16.tiff", _enc(".tif", _part16()), (48, 64)),
    "tiff-float32": lambda: ("float.tif", _enc(".tif", part_image(12).astype(np.float32) / 255), (48, 64)),
    "bmp": lambda: ("part.bmp", _enc(".bmp", part_image(13)), (48, 64)),
    "webp": lambda: ("part.webp", _enc(".webp", part_image(14)), (48, 64)),
    "pgm": lambda: ("part.pgm", _enc(".pgm", part_image(15)[:, :, 0]), (48, 64)),
    "png-named-jpg": lambda: ("really-a-png.jpg", _enc(".png", part_image(16)), (48, 64)),
    "jpeg-named-png": lambda: ("really-a-jpeg.png", _enc(".jpg", part_image(17)), (48, 64)),
    "1x1": lambda: ("dot.png", _enc(".png", np.full((1, 1, 3), 90, np.uint8)), (1, 1)),
    "blank-black": lambda: ("black.png", _enc(".png", np.zeros((48, 64, 3), np.uint8)), (48, 64)),
    "blank-white": lambda: ("white.png", _enc(".png", np.full((48, 64, 3), 255, np.uint8)), (48, 64)),
}


def _cut(suffix: str) -> bytes:
    data = _enc(suffix, part_image(30, size=(96, 128)))
    return data[: len(data) // 2]


# name -> (file name, bytes, what the reason says) of a file Lineside must refuse.
CUT = "not a readable image (the {} file is cut short, it has no end marker: it is still being written"
UNREADABLE: dict[str, Callable[[], tuple[str, bytes, str]]] = {
    "jpeg-cut-half-way": lambda: ("cut.jpg", _cut(".jpg"), CUT.format("JPEG")),
    "png-cut-half-way": lambda: ("cut.png", _cut(".png"), CUT.format("PNG")),
    "tiff-cut-half-way": lambda: ("cut.tif", _cut(".tif"), "not a readable image"),
    "webp-cut-half-way": lambda: ("cut.webp", _cut(".webp"), "not a readable image"),
    "png-header-only": lambda: ("header.png", _enc(".png", part_image(31))[:33], CUT.format("PNG")),
    "zero-bytes": lambda: ("empty.png", b"", "the file is empty (0 bytes)"),
    "random-bytes": lambda: ("noise.png", np.random.default_rng(5).bytes(5000), "not a readable image"),
    "text-named-png": lambda: ("notes.png", b"shift 3: camera 2 refocused\n" * 40, "not a readable image"),
}


def _clean(err: str) -> None:
    for noise in NOISE:
        assert noise not in err, err


@pytest.mark.parametrize("kind", sorted(READABLE))
def test_odd_but_readable_file_is_imported_byte_for_byte(tmp_path: Path, capfd, kind: str):
    name, data, (height, width) = READABLE[kind]()
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    (tmp_path / "src" / "good").mkdir(parents=True)
    (tmp_path / "src" / "good" / name).write_bytes(data)

    code, out, err = run_cli(capfd, "import", project_dir, tmp_path / "src")

    assert code == 0 and err == "", err
    assert "imported 1 new images (0 duplicates, 0 skipped)" in out and "1 labeled" in out
    with Project.open(project_dir) as project:
        (record,) = [r for r in project.images() if r.filename == name]
        assert file_sha(record.path) == file_sha(tmp_path / "src" / "good" / name)  # stored as it came
        assert (record.height, record.width) == (height, width)
        image = project.load_image(record.id)
        assert image.dtype == np.uint8 and image.shape == (height, width, 3)
        assert project.label(record.id).verdict == OK
    after = snapshot(project_dir)
    assert set(before["images"]) < set(after["images"]) and len(after["images"]) == len(before["images"]) + 1


@pytest.mark.parametrize("kind", sorted(READABLE))
def test_odd_but_readable_file_is_judged(tmp_path: Path, capfd, kind: str):
    name, data, _ = READABLE[kind]()
    project_dir = make_project(tmp_path)
    part = tmp_path / name
    part.write_bytes(data)
    inspections_before = snapshot(project_dir)["inspections"]

    code, out, err = run_cli(capfd, "inspect", project_dir, part)

    assert code == 0, err
    _clean(err)
    (line,) = out.splitlines()
    match = re.match(r"^(PASS|FAIL)  \S+  score=(\S+)  [\d.]+ ms  (.*)$", line)
    assert match and match.group(3) == str(part), line
    assert math.isfinite(float(match.group(2)))
    assert "1 part inspected" in err
    assert snapshot(project_dir)["inspections"] == inspections_before + 1


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_file_is_skipped_by_name_and_the_batch_goes_on(tmp_path: Path, capfd, kind: str):
    name, data, reason = UNREADABLE[kind]()
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    good = tmp_path / "src" / "good"
    good.mkdir(parents=True)
    (good / "fine.png").write_bytes(encoded(part_image(40)))
    (good / name).write_bytes(data)

    code, out, err = run_cli(capfd, "import", project_dir, tmp_path / "src")

    assert code == 0 and err == "", err  # no OpenCV lines on stderr either
    assert f"skipped {good / name}: {reason}" in out
    assert "imported 1 new images (0 duplicates, 1 skipped)" in out
    after = snapshot(project_dir)
    assert set(before["images"]) < set(after["images"]) and len(after["images"]) == len(before["images"]) + 1
    assert {sha: v for sha, v in after["labels"].items() if sha in before["labels"]} == before["labels"]
    with Project.open(project_dir) as project:
        assert name not in {r.filename for r in project.images()}
    assert not list((project_dir / "images").rglob("*.tmp"))


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_file_is_one_error_line_on_inspect(tmp_path: Path, capfd, kind: str):
    name, data, reason = UNREADABLE[kind]()
    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    bad, fine = tmp_path / name, tmp_path / "zz-fine.png"
    bad.write_bytes(data)
    fine.write_bytes(encoded(part_image(41)))

    code, out, err = run_cli(capfd, "inspect", project_dir, bad, fine)

    assert code == 2
    _clean(err)
    lines = out.splitlines()
    assert lines[0].startswith(f"ERROR {bad}: {reason}")
    assert lines[1].startswith(("PASS", "FAIL")) and lines[1].endswith(str(fine))
    assert "1 part inspected" in err and "1 unreadable" in err
    assert snapshot(project_dir)["inspections"] == before["inspections"] + 1  # only the readable part


# -- 12-bit camera data in 16-bit files ----------------------------------------------

def _twelve_bit(seed: int) -> bytes:
    return _enc(".png", (part_image(seed).astype(np.uint16) * 16))  # 0..4080: the low 12 bits


def test_12_bit_data_in_16_bit_files_is_imported_with_one_warning(tmp_path: Path, capfd):
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)
    good = tmp_path / "src" / "good"
    good.mkdir(parents=True)
    for i in range(3):
        (good / f"cam{i}.png").write_bytes(_twelve_bit(60 + i))
    (good / "normal.png").write_bytes(_enc(".png", _part16()))

    code, out, err = run_cli(capfd, "import", project_dir, tmp_path / "src")

    assert code == 0 and "imported 4 new images" in out
    warnings = [line for line in err.splitlines() if line]
    assert warnings == [warnings[0]] and len(warnings) == 1  # once for the source, not per file
    assert warnings[0].startswith(f"lineside: WARNING 3 images (the first: {good / 'cam0.png'}) have 16-bit pixels")
    assert "lowest 12 bits" in warnings[0] and "far from the brightness range a model is trained on" in warnings[0]
    assert len(snapshot(project_dir)["images"]) == len(before["images"]) + 4


def test_12_bit_data_is_judged_with_one_warning(tmp_path: Path, capfd):
    project_dir = make_project(tmp_path)
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"cam{i}.png")
        parts[-1].write_bytes(_twelve_bit(70 + i))

    code, out, err = run_cli(capfd, "inspect", project_dir, *parts)

    assert code == 0
    assert len(out.splitlines()) == 3 and all(line.startswith(("PASS", "FAIL")) for line in out.splitlines())
    assert err.count("WARNING") == 1 and f"{parts[0]} has 16-bit pixels that use only the lowest 12 bits" in err
    assert "3 parts inspected" in err


def test_12_bit_data_from_the_hot_folder_is_logged_once(tmp_path: Path, caplog):
    from app.core.hotfolder import HotFolderSource

    source = HotFolderSource(tmp_path, poll_s=0.01)
    source.open()
    for i in range(3):
        (tmp_path / f"cam{i}.png").write_bytes(_twelve_bit(80 + i))
    frames = []
    with caplog.at_level("WARNING", logger="app.core.hotfolder"):
        for _ in range(200):
            frame = source.read()
            frames += [frame] if frame is not None else []
            if len(frames) == 3:
                break
    assert [f.path.name for f in frames] == ["cam0.png", "cam1.png", "cam2.png"]
    assert all(f.image.dtype == np.uint8 and f.image.shape == (48, 64, 3) for f in frames)
    notes = [r.getMessage() for r in caplog.records if "12 bits" in r.getMessage()]
    assert len(notes) == 1


# -- a 50-megapixel part ------------------------------------------------------------

BIG_SCRIPT = r"""
import resource, sys, time
from pathlib import Path
import cv2, numpy as np
from app.cli import main
project, folder = sys.argv[1], Path(sys.argv[2])
h, w = 5800, 8640  # 50.1 megapixels
image = np.full((h, w, 3), 140, np.uint8)
cv2.circle(image, (w // 2, h // 2), h // 3, (210, 210, 210), -1)
(folder / "good").mkdir(parents=True)
ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
(folder / "good" / "huge.jpg").write_bytes(buf.tobytes())
del image, buf
t0 = time.monotonic()
rc_import = main(["import", project, str(folder)])
rc_inspect = main(["inspect", project, str(folder / "good" / "huge.jpg")])
elapsed = time.monotonic() - t0
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(f"RESULT {rc_import} {rc_inspect} {elapsed:.2f} {peak_mb:.0f}", file=sys.stderr)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="ru_maxrss is read on POSIX")
def test_a_50_megapixel_part_is_imported_and_judged_in_bounded_memory(tmp_path: Path):
    import subprocess
    import sys

    from tests.hostile.helpers import ROOT

    project_dir = make_project(tmp_path)
    before = snapshot(project_dir)
    done = subprocess.run([sys.executable, "-c", BIG_SCRIPT, str(project_dir), str(tmp_path / "big")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    rc_import, rc_inspect, elapsed, peak_mb = done.stderr.strip().splitlines()[-1].split()[1:]
    assert (rc_import, rc_inspect) == ("0", "0"), done.stderr
    assert "imported 1 new images" in done.stdout
    assert re.search(r"^(PASS|FAIL)  .*huge\.jpg$", done.stdout, re.M)
    # 50 Mpx as BGR is 150 MB; a copy or two at a time is fine, one per thread or a
    # float32 copy of the full image is not.
    assert float(peak_mb) < 1500, f"peak memory {peak_mb} MB"
    assert float(elapsed) < 10, f"import + inspect took {elapsed} s"
    after = snapshot(project_dir)
    assert set(before["images"]) < set(after["images"])
    with Project.open(project_dir) as project:
        (record,) = [r for r in project.images() if r.filename == "huge.jpg"]
        assert (record.width, record.height) == (8640, 5800)


def test_import_folder_reports_every_kind_in_one_batch(tmp_path: Path):
    """All the odd files together: the readable ones in, each unreadable one named."""
    project_dir = make_project(tmp_path, deploy=False)
    good = tmp_path / "src" / "good"
    good.mkdir(parents=True)
    for kind, make in READABLE.items():
        name, data, _ = make()
        (good / f"{kind}-{name}").write_bytes(data)
    for kind, make in UNREADABLE.items():
        name, data, _ = make()
        (good / f"{kind}-{name}").write_bytes(data)
    with Project.open(project_dir) as project:
        report = import_folder(project, tmp_path / "src")
    assert report.added == len(READABLE) and report.labeled == len(READABLE)
    assert sorted(Path(path).name for path, _ in report.skipped) == sorted(
        f"{kind}-{make()[0]}" for kind, make in UNREADABLE.items())  # fmt: skip


@pytest.mark.parametrize("kind, says", [("1x1", "only 1 x 1 pixels"), ("blank-black", "the same value (0)"),
                                        ("blank-white", "the same value (255)")])
def test_a_tiny_or_blank_part_is_judged_with_one_warning(tmp_path: Path, capfd, kind: str, says: str):
    name, data, _ = READABLE[kind]()
    project_dir = make_project(tmp_path)
    parts = []
    for i in range(3):  # one source, three such parts: warned once, every part judged
        part = tmp_path / f"{i}-{name}"
        part.write_bytes(data)
        parts.append(part)

    code, out, err = run_cli(capfd, "inspect", project_dir, *parts)

    assert code == 0 and len(out.splitlines()) == 3
    assert err.count("WARNING") == 1 and says in err and str(parts[0]) in err
