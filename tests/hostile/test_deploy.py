"""`lineside deploy` runs the model before it goes to the line.

A damaged models/vN/model.onnx (a copy cut short, a disk error, a stray file) used to
become production and fail at the first part. Now deploy loads it and judges a few of
the project's images first; a model that fails, or gives no finite score, is refused
and the production model stays.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from app.core.errors import ModelFileError
from app.core.project import Project
from tests.hostile.helpers import file_sha, run_cli, snapshot
from tests.hostile.helpers import make_project as _make_project
from tests.onnx_fixtures import build_model, write_model


def _nan_model(path: Path) -> None:
    """A model that loads and obeys the contract, but scores every part NaN."""
    model = build_model(version="v2")
    graph = model.graph
    for node in graph.node:
        node.output[:] = ["score_raw" if name == "score" else name for name in node.output]
    graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
    graph.node.append(helper.make_node("Mul", ["score_raw", "nan"], ["score"]))
    onnx.save(model, str(path))


def _damage(path: Path, how: str) -> None:
    good = path.read_bytes()
    if how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "garbage":
        path.write_bytes(b"this is the shift report, saved under the wrong name\n" * 20)
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "nan":
        _nan_model(path)


@pytest.fixture
def project_with_candidate(tmp_path: Path) -> Path:
    """Production v1 (a working model) and candidate v2."""
    project_dir = _make_project(tmp_path)
    with Project.open(project_dir) as project:
        folder = project.models_dir / "v2"
        write_model(folder / "model.onnx", version="v2")
        project.register_model("v2", folder, 0.5, {}, {})
    return project_dir


@pytest.mark.parametrize("how", ["truncated", "garbage", "empty", "nan"])
def test_deploying_a_broken_model_is_refused_and_production_stays(project_with_candidate: Path, capsys, how):
    onnx_path = project_with_candidate / "models" / "v2" / "model.onnx"
    _damage(onnx_path, how)
    before = snapshot(project_with_candidate)

    code, out, err = run_cli(capsys, "deploy", project_with_candidate, "v2")

    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith("lineside: Model v2 cannot go into production: ")
    assert "v1 stays in production" in err
    assert snapshot(project_with_candidate) == before
    with Project.open(project_with_candidate) as project:
        assert project.production_model().version == "v1"
        assert project.model("v2").status == "candidate"


def test_a_broken_model_is_refused_in_a_project_without_images(tmp_path: Path):
    # No images to try it on: a blank frame is judged instead.
    with Project.create(tmp_path / "empty") as project:
        folder = project.models_dir / "v1"
        write_model(folder / "model.onnx", version="v1")
        project.register_model("v1", folder, 0.5, {}, {})
        _damage(folder / "model.onnx", "nan")
        refused = r"Model v1 cannot go into production: .*(NaN|not a finite number).*Nothing was deployed"
        with pytest.raises(ModelFileError, match=refused):
            project.deploy("v1")
        assert project.production_model() is None and project.model("v1").status == "candidate"


def test_a_working_model_still_deploys(project_with_candidate: Path, capsys):
    v2_sha = file_sha(project_with_candidate / "models" / "v2" / "model.onnx")
    code, out, err = run_cli(capsys, "deploy", project_with_candidate, "v2")
    assert (code, err) == (0, "") and out.strip().splitlines()[-1] == "v2 is now in production; v1 was retired"
    assert file_sha(project_with_candidate / "models" / "v2" / "model.onnx") == v2_sha


def test_a_model_scoring_nan_at_inspect_time_stops_with_a_message_and_records_nothing(
        project_with_candidate: Path, tmp_path: Path, capsys):
    _nan_model(project_with_candidate / "models" / "v2" / "model.onnx")
    part = tmp_path / "in" / "ok0.png"
    before = snapshot(project_with_candidate)

    code, out, err = run_cli(capsys, "inspect", project_with_candidate, part, "--model", "v2")

    assert code == 2 and "Traceback" not in err
    assert "invalid score" in err and "NaN" in err
    assert not out.startswith(("PASS", "FAIL"))  # no verdict from a score that is not a number
    assert snapshot(project_with_candidate)["inspections"] == before["inspections"]
