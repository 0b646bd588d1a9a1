"""The data and model-management commands of `lineside`, run through app.cli.main."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest

from app.cli import main
from app.core import atomic
from app.core.project import OK, Project
from tests.onnx_fixtures import write_model
from tests.store_fixtures import defect_mask, part_image, write_image


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def project_dir(tmp_path: Path, capsys) -> Path:
    code, out, _ = run(capsys, "new", tmp_path / "proj", "--name", "Press 4")
    assert code == 0 and "Press 4" in out
    return tmp_path / "proj"


def _register(project_dir: Path, version: str, metrics: dict, report: dict) -> bytes:
    folder = project_dir / "models" / version
    folder.mkdir(parents=True)
    # A real (tiny) model: deploy runs it before putting it into production.
    data = write_model(folder / "model.onnx", version=version).read_bytes()
    with Project.open(project_dir) as project:
        project.register_model(version, folder, 0.42, metrics, report)
    return data


def test_new_refuses_an_existing_project(project_dir: Path, capsys):
    assert Project.is_project(project_dir)
    code, _, err = run(capsys, "new", project_dir)
    assert code == 2 and err.startswith("lineside: ") and "already a Lineside project" in err


def test_import_lists_skipped_files_and_summarises(project_dir: Path, tmp_path: Path, capsys):
    source = tmp_path / "src"
    write_image(source / "OK" / "a.png", part_image(1))
    write_image(source / "OK" / "b.png", part_image(2))
    write_image(source / "crack" / "c.png", part_image(3, defect=True))
    write_image(source / "masks" / "crack" / "c.png", defect_mask())
    (source / "OK" / "copy.png").write_bytes((source / "OK" / "a.png").read_bytes())
    (source / "crack" / "zero.png").write_bytes(b"")
    (source / "crack" / "bad.jpg").write_bytes(b"GIF89a? no")

    code, out, err = run(capsys, "import", project_dir, source)
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0] == f"skipped {source / 'crack' / 'bad.jpg'}: not a readable image (corrupt or unsupported format)."
    assert lines[1] == f"skipped {source / 'crack' / 'zero.png'}: the file is empty (0 bytes)."
    assert lines[2].startswith("imported 3 new images (1 duplicates, 2 skipped) as class-folders")
    with Project.open(project_dir) as project:
        assert project.label_counts() == {OK: 2, "crack": 1, "unlabeled": 0}

    code, out, _ = run(capsys, "import", project_dir, source)
    assert code == 0 and "imported 0 new images (4 duplicates, 2 skipped)" in out


def test_import_errors_exit_2(project_dir: Path, tmp_path: Path, capsys):
    code, out, err = run(capsys, "import", project_dir, tmp_path / "no-such-folder")
    assert code == 2 and out == "" and "no-such-folder" in err and err.startswith("lineside: ")
    code, _, err = run(capsys, "import", tmp_path / "not-a-project", tmp_path)
    assert code == 2 and "is not a Lineside project" in err


def test_export_data_writes_class_folders(project_dir: Path, tmp_path: Path, capsys):
    with Project.open(project_dir) as project:
        for seed, verdict in ((1, OK), (2, OK), (3, "dent")):
            record, _ = project.add_image_array(part_image(seed))
            project.set_label(record.id, verdict, mask=defect_mask() if verdict != OK else None)
    code, out, _ = run(capsys, "export-data", project_dir, tmp_path / "out")
    assert code == 0 and out.strip() == f"exported 3 images (1 masks) to {tmp_path / 'out'}: dent 1, ok 2"
    assert len(list((tmp_path / "out" / "ok").glob("*.png"))) == 2
    assert len(list((tmp_path / "out" / "masks" / "dent").glob("*.png"))) == 1
    code, _, err = run(capsys, "export-data", project_dir, tmp_path / "out")
    assert code == 2 and "not empty" in err


def test_models_table(project_dir: Path, capsys):
    code, out, _ = run(capsys, "models", project_dir)
    assert code == 0 and out.strip() == "no trained models yet"
    _register(project_dir, "v1", {"auroc": 0.9731, "catch_rate": 0.95, "false_reject_rate": 0.02}, {"n_train": 40})
    _register(project_dir, "v2", {"accuracy": 0.5}, {})
    code, out, _ = run(capsys, "models", project_dir)
    header, newest, oldest = out.strip().splitlines()
    assert header.split() == ["version", "status", "created", "threshold", "AUROC", "catch", "rate",
                              "false", "rejects", "train", "images"]  # fmt: skip
    assert newest.split()[:2] == ["v2", "candidate"] and newest.split()[4:] == ["0.420", "-", "-", "-", "-"]
    assert oldest.split()[4:] == ["0.420", "0.973", "95.0%", "2.0%", "40"]


def test_deploy_reports_production_and_retired(project_dir: Path, capsys):
    _register(project_dir, "v1", {}, {})
    _register(project_dir, "v2", {}, {})
    assert run(capsys, "deploy", project_dir, "v1")[1].strip() == "v1 is now in production"
    assert run(capsys, "deploy", project_dir, "v2")[1].strip() == "v2 is now in production; v1 was retired"
    assert run(capsys, "deploy", project_dir, "v2")[1].strip() == "v2 was already in production"
    code, _, err = run(capsys, "deploy", project_dir, "v7")
    assert code == 2 and "'v7'" in err and "v1, v2" in err
    with Project.open(project_dir) as project:
        assert [(m.version, m.status) for m in project.models()] == [("v2", "production"), ("v1", "retired")]


def test_export_picks_production_then_newest(project_dir: Path, tmp_path: Path, capsys):
    code, _, err = run(capsys, "export", project_dir, tmp_path / "m.onnx")
    assert code == 2 and "no trained models" in err and not (tmp_path / "m.onnx").exists()
    v1 = _register(project_dir, "v1", {}, {})
    v2 = _register(project_dir, "v2", {}, {})
    code, out, _ = run(capsys, "export", project_dir, tmp_path / "m.onnx")
    assert code == 0 and "v2 (candidate)" in out and (tmp_path / "m.onnx").read_bytes() == v2
    run(capsys, "deploy", project_dir, "v1")
    code, out, _ = run(capsys, "export", project_dir, tmp_path / "m.onnx")
    assert "v1 (production)" in out and (tmp_path / "m.onnx").read_bytes() == v1
    code, _, _ = run(capsys, "export", project_dir, tmp_path / "sub" / "x.onnx", "--model", "v2")
    assert code == 0 and (tmp_path / "sub" / "x.onnx").read_bytes() == v2
    code, _, err = run(capsys, "export", project_dir, tmp_path / "y.onnx", "--model", "v5")
    assert code == 2 and "'v5'" in err


def test_export_on_full_disk_keeps_the_old_file(project_dir: Path, tmp_path: Path, capsys, monkeypatch):
    _register(project_dir, "v1", {}, {})
    out_file = tmp_path / "line.onnx"
    out_file.write_bytes(b"the model the line runs today")

    def no_space(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half a mod")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.shutil, "copyfile", no_space)
    code, _, err = run(capsys, "export", project_dir, out_file)
    assert code == 2 and "disk is full" in err and str(out_file) in err
    assert out_file.read_bytes() == b"the model the line runs today"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
