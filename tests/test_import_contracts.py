"""The architecture rules of docs/adr/0001, checked on every test run."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_contracts_hold():
    # lint-imports reads .importlinter: app.core imports neither Qt nor torch nor the
    # trainer; training never imports Qt; the UI never imports torch or the trainer;
    # app.cli sits above app.ui, both above app.core (the UI never imports the CLI);
    # inside app.ui the workspaces are layered (capture | inspect | models > train > trust
    # > shared) and none of them imports the window shell.
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--config", str(ROOT / ".importlinter"), "--no-cache"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "6 kept, 0 broken" in result.stdout


def test_core_import_loads_neither_qt_nor_torch():
    code = (
        "import sys, app.core.project, app.core.runtime, app.core.importer, app.core.monitoring, "
        "app.core.evaluation, app.core.camera, app.cli;"
        "bad = [m for m in ('torch', 'PySide6', 'training') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
