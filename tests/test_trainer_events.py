"""The trainer's progress protocol, defined once (app/core/trainer_events.py), held by
the real trainer and by the tests' stand-in, so a fake cannot promise the GUI a key the
product never sends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main as cli
from app.core.trainer_events import problems
from tests.training_fixtures import make_spot_project, make_tiny_project

FAKE = Path(__file__).parent / "ui" / "fake_trainer.py"


def test_problems_names_missing_unexpected_and_unknown():
    assert problems({"event": "cancelled"}) == []
    assert problems({"event": "epoch"})  # every required key missing
    extra = {"event": "epoch", "epoch": 1, "epochs": 2, "train_loss": 0.1, "val_loss": 0.2, "val_auroc": 0.9,
             "val_catch_rate": 0.8, "eta_s": 1.0, "val_false_reject_rate": 0.1}
    assert problems(extra) == ["epoch: unexpected 'val_false_reject_rate'"]
    assert problems({"event": "progress", "phase": "dance", "step": 1, "steps": 2, "eta_s": None}) == [
        "progress: unknown phase 'dance'"]
    assert problems({"event": "party"}) == ["unknown event kind 'party'"]
    assert problems("text") != []


@pytest.mark.parametrize("mode", ["ok", "error"])
def test_the_stand_in_trainer_sends_only_what_the_protocol_allows(mode):
    out = subprocess.run([sys.executable, str(FAKE), mode, "0"], capture_output=True, text=True, timeout=60).stdout
    events = []
    for line in out.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue  # the stand-in also writes noise on purpose
    assert {e["event"] for e in events} >= {"start", "progress", "epoch"}
    assert [p for e in events for p in problems(e)] == []


@pytest.mark.slow
def test_the_real_trainer_keeps_the_protocol_and_learns(tmp_path, capsys):
    project = make_spot_project(tmp_path / "spots")
    assert cli(["train", str(project), "--epochs", "4", "--progress", "json"]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [p for e in events for p in problems(e)] == []
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "curve" and "epoch" in kinds and "start" in kinds
    # Training learns: the exported model tells pitted parts from OK ones on validation
    # parts it never trained on, far better than chance (0.5).
    done = next(e for e in events if e["event"] == "done")
    assert done["metrics"]["auroc"] >= 0.75


def test_an_error_reaches_the_reader_as_an_error_event(tmp_path, capsys):
    project = make_tiny_project(tmp_path / "tiny", n_ok=4, n_per_defect=1)
    assert cli(["train", str(project), "--progress", "json"]) == 2
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert events and events[-1]["event"] == "error" and problems(events[-1]) == []
