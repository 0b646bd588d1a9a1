"""`lineside inspect` and `lineside evaluate` on a temp project with a fixture model."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.cli.inspect import HotFolder
from app.core.imageio import encode_png
from app.core.project import Project
from tests.onnx_fixtures import write_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def _png(path: Path, bgr: tuple[int, int, int], size: tuple[int, int] = (48, 64)) -> Path:
    image = np.empty((*size, 3), np.uint8)
    image[:] = bgr
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))
    return path


def _make_project(root: Path, deploy: bool = True) -> Path:
    path = root / "project"
    with Project.create(path) as project:
        folder = path / "models" / "v1"
        write_model(folder / "model.onnx", threshold=0.5, version="v1")
        project.register_model("v1", folder, threshold=0.5, metrics={}, report={})
        if deploy:
            project.deploy("v1")
    return path


@pytest.fixture()
def project_path(tmp_path: Path) -> Path:
    return _make_project(tmp_path)


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_inspect_files_and_folders_prints_and_records(project_path, tmp_path, capsys):
    dark = _png(tmp_path / "parts" / "a_dark.png", (10, 10, 10))
    blue = _png(tmp_path / "parts" / "sub" / "b_blue.png", (250, 220, 60))
    green = _png(tmp_path / "green.png", (100, 250, 100))
    (tmp_path / "parts" / "notes.txt").write_text("not a part")

    assert main(["inspect", str(project_path), str(tmp_path / "parts"), str(green)]) == 0
    out = _lines(capsys.readouterr().out)
    assert len(out) == 3
    label, cls, score, ms, unit, path = out[0].split()
    assert (label, cls, path) == ("PASS", "-", str(dark))
    assert score.startswith("score=") and 0 < float(score[6:]) < 0.5 and float(ms) > 0 and unit == "ms"
    assert out[1].split()[:2] == ["FAIL", "scratch"] and out[1].endswith(str(blue))
    assert out[2].split()[:2] == ["FAIL", "spot"] and out[2].endswith(str(green))

    with Project.open(project_path) as project:
        log = list(reversed(project.inspections()))
    assert [row["verdict"] for row in log] == ["PASS", "FAIL", "FAIL"]
    assert [row["defect_class"] for row in log] == [None, "scratch", "spot"]
    assert log[0]["image_sha"] == hashlib.sha256(dark.read_bytes()).hexdigest()
    assert log[1]["source"] == str(blue) and log[1]["model_version"] == "v1"
    assert log[0]["image_id"] is None  # not an image of the project


def test_inspect_links_images_the_project_already_has(project_path, tmp_path, capsys):
    part = _png(tmp_path / "known.png", (10, 10, 10))
    with Project.open(project_path) as project:
        record, _ = project.add_image_file(part)
    assert main(["inspect", str(project_path), str(part)]) == 0
    with Project.open(project_path) as project:
        assert project.inspections()[0]["image_id"] == record.id


def test_bad_files_are_reported_and_the_run_goes_on(project_path, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n half a picture")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    good = _png(tmp_path / "good.png", (5, 5, 5))
    missing = tmp_path / "missing.png"

    code = main(["inspect", str(project_path), str(broken), str(empty), str(missing), str(good)])
    assert code == 2
    out = _lines(capsys.readouterr().out)
    assert out[0].startswith(f"ERROR {broken}: ") and "not a readable image" in out[0]
    assert out[1].startswith(f"ERROR {empty}: ") and "empty" in out[1]
    assert out[2].startswith(f"ERROR {missing}: ")
    assert out[3].startswith("PASS") and out[3].endswith(str(good))
    with Project.open(project_path) as project:
        assert len(project.inspections()) == 1


def test_inspect_needs_a_project_and_a_production_model(tmp_path, capsys):
    part = _png(tmp_path / "p.png", (5, 5, 5))
    assert main(["inspect", str(tmp_path / "nowhere"), str(part)]) == 2
    assert "not a Lineside project" in capsys.readouterr().err

    path = _make_project(tmp_path / "undeployed", deploy=False)
    assert main(["inspect", str(path), str(part)]) == 2
    assert "lineside: no production model: deploy one with `lineside deploy" in capsys.readouterr().err
    assert main(["inspect", str(path), str(part), "--model", "v1"]) == 0
    assert capsys.readouterr().out.startswith("PASS")
    assert main(["inspect", str(path), str(part), "--model", "v9"]) == 2
    assert "v9" in capsys.readouterr().err
    assert main(["inspect", str(path)]) == 2
    assert "nothing to inspect" in capsys.readouterr().err


def test_a_damaged_model_file_is_a_clear_error(project_path, tmp_path, capsys):
    (project_path / "models" / "v1" / "model.onnx").write_bytes(b"\x00" * 100)
    assert main(["inspect", str(project_path), str(_png(tmp_path / "p.png", (5, 5, 5)))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lineside: ") and "model.onnx" in err


def test_hot_folder_hands_out_a_file_only_once_its_size_is_stable(tmp_path):
    folder = tmp_path / "hot"
    folder.mkdir()
    _png(folder / "old.png", (1, 1, 1))  # there before watching started: left alone
    hot = HotFolder(folder)
    data = _png(tmp_path / "part.png", (9, 9, 9)).read_bytes()
    target = folder / "new.png"
    target.write_bytes(data[:20])  # the camera is still writing
    assert hot.poll() == []
    with open(target, "ab") as fh:
        fh.write(data[20:40])
    assert hot.poll() == []  # it grew: start counting again
    with open(target, "ab") as fh:
        fh.write(data[40:])
    assert hot.poll() == [] and hot.poll() == []
    assert hot.poll() == [target]  # unchanged for two polls
    assert hot.poll() == []  # handed out once
    (folder / "ignored.txt").write_text("x")
    (folder / "empty.png").write_bytes(b"")
    results = [hot.poll() for _ in range(12)]
    assert [r for r in results if r] == [[folder / "empty.png"]]  # empty files wait longer


def test_watch_inspects_new_files_until_max_files(project_path, tmp_path):
    folder = tmp_path / "hot"
    folder.mkdir()
    command = [
        sys.executable, "-m", "app", "inspect", str(project_path),
        "--watch", str(folder), "--max-files", "2", "--poll-interval", "0.05",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "watching" in process.stderr.readline()
        _png(folder / "1.png", (10, 10, 10))
        time.sleep(0.3)
        broken = folder / "2.png"
        broken.write_bytes(b"garbage that stays garbage")
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    lines = _lines(out)
    assert lines[0].startswith("PASS") and lines[0].endswith("1.png")
    assert lines[1].startswith(f"ERROR {broken}")
    assert process.returncode == 2, err
    assert "1 part inspected: 1 PASS, 0 FAIL, 1 unreadable" in err


def test_inspect_path_never_imports_torch(project_path, tmp_path):
    part = _png(tmp_path / "p.png", (200, 200, 200))
    code = (
        "import sys\n"
        "from app.cli import main\n"
        f"rc = main(['inspect', {str(project_path)!r}, {str(part)!r}])\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "sys.exit(rc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("FAIL")


def _dataset(root: Path) -> Path:
    for i in range(3):
        _png(root / "good" / f"g{i}.png", (10 + 5 * i, 10, 10))
    _png(root / "scratch" / "s0.png", (250, 220, 60))
    _png(root / "scratch" / "s1.png", (240, 200, 50))
    _png(root / "spot" / "p0.png", (100, 250, 100))
    (root / "spot" / "bad.png").write_bytes(b"nope")
    return root


def _with_masks(root: Path) -> Path:
    # Each defect's mask covers the whole part: every defect pixel is brighter than every
    # pixel of the dark OK parts (the model's heatmap is brightness), so both pixel
    # figures are perfect.
    _png(root / "masks" / "scratch" / "s0.png", (255, 255, 255))
    _png(root / "masks" / "spot" / "p0.png", (255, 255, 255))
    return root


def test_evaluate_json(project_path, tmp_path, capsys):
    data = _with_masks(_dataset(tmp_path / "data"))
    assert main(["evaluate", str(project_path), str(data), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("auroc", "catch_at_1pct_false_reject", "catch_rate", "false_reject_rate", "threshold",
                "per_class", "latency_ms_p50", "n_images", "mode", "pixel_auroc", "pro",
                "catch_rate_ci", "false_reject_rate_ci", "n_masks"):  # fmt: skip
        assert key in result
    assert result["n_images"] == 6 and result["auroc"] == 1.0 and result["catch_rate"] == 1.0
    assert result["per_class"]["spot"]["classified_as"] == {"spot": 1}
    assert result["model_version"] == "v1" and len(result["skipped"]) == 1
    assert result["mode"] == "supervised"
    # 3 of 3 defects caught, 0 of 3 OK parts rejected: exact intervals reach 1 and 0.
    low, high = result["catch_rate_ci"]
    assert high == 1.0 and low == pytest.approx(0.025 ** (1 / 3))
    low, high = result["false_reject_rate_ci"]
    assert low == 0.0 and high == pytest.approx(1 - 0.025 ** (1 / 3))
    assert result["n_masks"] == 2 and result["pixel_auroc"] == 1.0 and result["pro"] == 1.0


def test_evaluate_report(project_path, tmp_path, capsys):
    assert main(["evaluate", str(project_path), str(_with_masks(_dataset(tmp_path / "data")))]) == 0
    report = _lines(capsys.readouterr().out)
    assert "Model v1" in report[0] and "6 images (3 OK, 3 defective)" in report[0]
    # The line's figures lead, then AUROC, then the best case, labelled as such.
    low = 0.025 ** (1 / 3) * 100  # Clopper-Pearson for 3 of 3: the 2.5 % quantile of Beta(3, 1)
    assert report[1].startswith(
        f"  at the stored threshold 0.500: caught 100.0% (95% CI {low:.1f}-100.0%) of 3 defective"
    )
    assert report[1].endswith(f"false reject 0.0% (95% CI 0.0-{100 - low:.1f}%) of 3 OK")
    assert report[2] == "  AUROC                        1.000"
    assert report[3] == "  best case (threshold picked on these images): catch at 1% false reject 100.0%"
    assert report[4].split() == ["pixel", "AUROC", "1.000", "PRO", "(to", "30%", "FPR)", "1.000", "(2", "masks)"]
    assert report[5].split() == ["mode", "supervised"]
    text = "\n".join(report)
    assert "scratch" in text and "skipped" in text and "bad.png" in text


def test_evaluate_report_without_masks_has_no_pixel_line(project_path, tmp_path, capsys):
    assert main(["evaluate", str(project_path), str(_dataset(tmp_path / "data"))]) == 0
    report = capsys.readouterr().out
    assert "pixel AUROC" not in report and "PRO" not in report
    assert "at the stored threshold" in report and "mode" in report


def test_evaluate_missing_folder(project_path, tmp_path, capsys):
    assert main(["evaluate", str(project_path), str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
