"""`lineside train` and `lineside demo` refuse nonsense before anything starts.

No training runs here: every case is refused by argparse (exit 2 with a usage line) or
by the demo's own checks, before torch is even imported.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from app.core.project import Project
from tests.hostile.helpers import make_project, run_cli, snapshot


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs: 0: the number of epochs must be 1 or more"),
        (["--epochs", "-3"], "--epochs: -3: the number of epochs must be 1 or more"),
        (["--epochs", "two"], "--epochs: 'two' is not a whole number"),
        (["--seed", "-1"], "--seed: -1: the seed must be a whole number from 0 to 4294967295"),
        (["--seed", str(2**32)], "the seed must be a whole number from 0 to 4294967295"),
        (["--time-budget", "nan"], "--time-budget: nan: the time budget must be a number of seconds above 0"),
        (["--time-budget", "inf"], "--time-budget: inf: the time budget must be a number of seconds above 0"),
        (["--time-budget", "-5"], "--time-budget: -5: the time budget must be a number of seconds above 0"),
        (["--time-budget", "0"], "the time budget must be a number of seconds above 0"),
        (["--time-budget", "soon"], "--time-budget: 'soon' is not a number of seconds"),
    ],
)
def test_train_refuses_bad_numbers(tmp_path: Path, capsys, args: list[str], message: str):
    project_dir = make_project(tmp_path, deploy=False)
    before = snapshot(project_dir)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "train", project_dir, *args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert message in err and "Traceback" not in err
    assert snapshot(project_dir) == before
    assert not any(p.name.startswith((".partial", "v")) for p in (project_dir / "models").iterdir())


def test_demo_epochs_are_checked_too(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(capsys, "demo", tmp_path / "demo", "--epochs", "0")
    assert exit_info.value.code == 2
    assert "the number of epochs must be 1 or more" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_demo_into_a_regular_file_is_refused(tmp_path: Path, capsys):
    afile = tmp_path / "notes.txt"
    afile.write_text("shift handover notes")
    code, out, err = run_cli(capsys, "demo", afile)
    assert code == 2 and out == ""
    assert err.startswith("lineside: ") and f"{afile} is a file, not a folder" in err and "Traceback" not in err
    assert afile.read_text() == "shift handover notes"


@pytest.mark.parametrize("deployed", [True, False])
def test_demo_into_a_real_project_is_refused(tmp_path: Path, capsys, deployed: bool):
    # With a production model the demo used to go straight to writing simulated
    # inspections into the project; without one it would have started over in it.
    project_dir = make_project(tmp_path, deploy=deployed)
    before = snapshot(project_dir)
    code, out, err = run_cli(capsys, "demo", project_dir)
    assert code == 2 and out == ""
    assert (f"{project_dir} is a Lineside project that is not a demo project; the demo would write "
            "simulated inspections into it") in err
    assert snapshot(project_dir) == before
    with Project.open(project_dir) as project:
        assert project.inspections() == []
        assert (project.production_model() is not None) == deployed
