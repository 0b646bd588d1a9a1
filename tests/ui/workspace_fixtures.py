"""Fixtures for the Train, Inspect and Models workspace tests.

Each test gets a real AppContext on isolated settings and a real project on disk; at
teardown no thread the test started may still be running.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from app.core.project import Project
from app.core.synthetic import generate_part
from tests.onnx_fixtures import write_model


@pytest.fixture
def app_context(qapp, tmp_path):
    """A real AppContext on its own settings file; shut down (and checked) after the test."""
    from app.ui.context import AppContext

    before = set(threading.enumerate())
    settings = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    context = AppContext(settings)
    yield context
    context.shutdown()
    leaked = [t for t in threading.enumerate() if t not in before and t.is_alive() and not t.daemon]
    assert not leaked, f"threads left running: {leaked}"


def add_labeled_parts(project: Project, n_ok: int, per_defect: dict[str, int], seed: int = 0) -> None:
    """Generated washers, labeled OK or with their defect (and its mask)."""
    rng = np.random.default_rng(seed)
    for defect, n in [(None, n_ok), *per_defect.items()]:
        for _ in range(n):
            image, mask = generate_part(rng, defect, size=128)
            record, _ = project.add_image_array(image, source="test")
            project.set_label(record.id, defect or "ok", mask=mask if defect else None, author="test")


def register_fixture_model(project: Project, version: str = "v1", deploy: bool = True, **kwargs) -> None:
    """A small ONNX model obeying the model contract (see tests/onnx_fixtures.py)."""
    folder = project.models_dir / version
    folder.mkdir(parents=True, exist_ok=True)
    kwargs.setdefault("threshold", 0.45)
    write_model(folder / "model.onnx", version=version, **kwargs)
    project.register_model(
        version,
        folder,
        kwargs["threshold"],
        {"auroc": 0.9, "catch_rate": 0.8, "catch_rate_ci": [0.6, 0.9], "false_reject_rate": 0.05,
         "false_reject_rate_ci": [0.01, 0.1], "mode": "supervised", "threshold": kwargs["threshold"],
         "threshold_source": "20 validation OK parts", "false_reject_target": 0.05},
        {"n_train": 40, "per_class": {"ok": 30, "scratch": 10}, "changes": ["first model"]},
    )
    if deploy:
        project.deploy(version)


@pytest.fixture
def project(tmp_path):
    proj = Project.create(tmp_path / "project")
    yield proj
    proj.close()


@pytest.fixture
def answer_yes(monkeypatch):
    """Confirmation dialogs answer Yes (they are modal and would block the test)."""
    monkeypatch.setattr(QMessageBox, "question", staticmethod(lambda *a, **k: QMessageBox.StandardButton.Yes))
    warnings: list[str] = []
    monkeypatch.setattr(QMessageBox, "warning", staticmethod(lambda _p, title, text, *a, **k: warnings.append(f"{title}: {text}")))
    return warnings


def shown(qtbot, widget, width: int = 1024, height: int = 700):
    """A workspace on screen at a shop-PC size, exposed, owned by the test."""
    qtbot.addWidget(widget)
    widget.resize(width, height)
    widget.show()
    qtbot.waitExposed(widget)
    return widget
