"""`lineside train` as the desktop app runs it: a child process speaking JSON lines."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from app.cli import main
from app.core.project import Project
from app.core.trainer_command import trainer_command
from tests.training_fixtures import make_tiny_project

ROOT = Path(__file__).resolve().parents[1]


def test_train_on_a_folder_that_is_not_a_project_exits_non_zero(tmp_path, capsys):
    assert main(["train", str(tmp_path)]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_train_with_too_few_images_says_which_class_and_how_many(tmp_path, capsys):
    project_dir = make_tiny_project(tmp_path / "p", n_ok=6, n_per_defect=6)
    assert main(["train", str(project_dir), "--progress", "json"]) == 2
    captured = capsys.readouterr()
    assert "ok: 6 labeled images, at least 10 needed" in captured.err
    error = json.loads(captured.out.strip().splitlines()[-1])
    assert error["event"] == "error" and "at least 10 needed" in error["message"]


def _start(project_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(trainer_command(str(project_dir), "--progress", "json", *extra), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_json_progress_from_start_to_done(tmp_path):
    project_dir = make_tiny_project(tmp_path / "p")
    child = _start(project_dir, "--epochs", "2")
    out, err = child.communicate(timeout=600)
    assert child.returncode == 0, err
    events = [json.loads(line) for line in out.splitlines()]  # every line is one JSON object
    kinds = [e["event"] for e in events]
    assert "start" in kinds and kinds[-1] == "curve"  # the learning curve follows the saved model
    assert any(e.get("phase") == "train" and "eta_s" in e and "loss" in e for e in events)
    epochs = [e for e in events if e["event"] == "epoch"]
    assert epochs and all(k in epochs[0] for k in ("val_auroc", "val_catch_rate", "val_loss", "eta_s"))
    done = next(e for e in events if e["event"] == "done")
    assert done["version"] == "v1" and 0 <= done["metrics"]["catch_rate"] <= 1
    assert done["baseline"]["method"]  # the simpler method, judged on the same parts
    with Project.open(project_dir) as project:
        assert project.model("v1").status == "candidate"


def test_sigterm_cancels_cleanly(tmp_path):
    project_dir = make_tiny_project(tmp_path / "p")
    child = _start(project_dir, "--epochs", "50")
    assert child.stdout is not None
    for line in child.stdout:  # wait until backprop is under way
        if json.loads(line).get("phase") == "train":
            break
    child.send_signal(signal.SIGTERM)
    rest, _ = child.communicate(timeout=120)
    assert child.returncode == 3
    assert json.loads(rest.strip().splitlines()[-1]) == {"event": "cancelled"}
    with Project.open(project_dir) as project:
        assert project.models() == []
    models = project_dir / "models"
    assert not models.exists() or not any(models.iterdir())


def test_the_done_line_names_the_ok_parts_that_placed_the_threshold(capsys):
    from app.cli.train_events import text_event

    text_event({"event": "done", "version": "v3", "elapsed_s": 95.0, "device": "cpu (2 cores)", "mode": "supervised",
                "operating_point": "catch 100.0% ...", "metrics": {
                    "auroc": 0.99, "threshold": 0.9176, "n_ok_heldout": 109, "false_reject_target": 0.01,
                    "highest_ok_parts": [{"image_id": 7, "filename": "kos21_Part5.jpg", "score": 0.772}]}})
    out = capsys.readouterr().out
    assert "at the stored threshold 0.9176" in out
    assert "so that one part decides it" in out
    assert "Highest-scoring held-out OK parts: kos21_Part5.jpg (0.772). They place the threshold" in out


def test_the_start_line_says_what_a_good_only_model_is_checked_on(capsys):
    from app.cli.train_events import text_event

    start = {"event": "start", "device": "CPU (2 cores)", "n_train": 666, "n_val": 0, "classes": ["ok"],
             "mode": "good-only", "mode_reason": "good-only (asked for)", "shortfalls": []}
    text_event(start)
    out = capsys.readouterr().out
    assert "666 images (every OK part in the bank, each also scored out-of-fold for the threshold" in out
    assert "0 validation" not in out
    text_event({**start, "mode": "supervised", "n_train": 585, "n_val": 355, "classes": ["ok", "crack"]})
    assert "585 train / 355 validation images, classes ok, crack" in capsys.readouterr().out
