"""The app as people see it: tools/gui_walkthrough.py on a private Xvfb screen (xcb, a
window manager, real input events), from opening a project to exporting the CSV."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli.gui import missing_xcb_libraries

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("start-page", "capture-live", "labeled", "train-result", "deploy-question", "inspect-live",
         "inspect-review", "wrong-dialog", "back-to-live", "exported", "models")


def _why_not() -> str | None:
    if not sys.platform.startswith("linux"):
        return "the walkthrough runs on Linux (Xvfb)"
    if shutil.which("Xvfb") is None:
        return "Xvfb is not installed (apt-get install xvfb openbox xdotool)"
    missing = missing_xcb_libraries()
    if missing:
        return f"Qt's xcb plugin lacks {', '.join(missing)} (see the README's system packages line)"
    if importlib.util.find_spec("torch") is None:
        return "training needs torch (pip install -e '.[train]')"
    return None


@pytest.mark.gui
@pytest.mark.slow
def test_walkthrough_on_a_real_x_display(tmp_path):
    reason = _why_not()
    if reason:
        pytest.skip(reason)
    out = tmp_path / "shots"
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY", "WAYLAND_DISPLAY")}
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "gui_walkthrough.py"), "--xvfb", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=560,
    )
    log = result.stdout[-6000:] + result.stderr[-6000:]
    assert result.returncode == 0, log
    names = {p.stem.split("-", 1)[1] for p in out.glob("*.png")}
    assert set(STEPS) <= names, (sorted(names), log)
    assert "failed" not in names
    assert (out / "inspections.csv").stat().st_size > 0
