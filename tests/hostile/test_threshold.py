"""The stored threshold and what the line does with it agree, part for part.

It used to sit one float step above the top validation OK score as PyTorch computed
it; ONNX Runtime scored that part 3e-8 higher, so it failed at the line about half the
time, and a model that reported 0 % false reject rejected 20 % of the same parts.
"""

from __future__ import annotations

import numpy as np
import pytest

from app.core.project import Project
from app.core.runtime import load_inspector_for_project
from tests.training_fixtures import make_tiny_project
from training import pipeline


@pytest.mark.slow
def test_the_line_rejects_exactly_the_held_out_ok_parts_the_model_reported(tmp_path):
    project_dir = make_tiny_project(tmp_path / "tiny")
    model = pipeline.train_project(project_dir, epochs=1)
    with Project.open(project_dir) as project:
        project.deploy(model.version)
        inspector, _ = load_inspector_for_project(project)
        ok_val = [project.load_image(r.id) for r, label in project.labeled(split="val") if label.verdict == "ok"]
    scores = np.array([inspector.inspect(image).score for image in ok_val])
    rejected = float(np.mean(scores >= model.threshold))
    assert len(ok_val) == model.metrics["n_ok_heldout"]
    assert rejected == model.metrics["false_reject_on_heldout"]
    # No held-out OK part sits within float noise of the threshold.
    assert np.min(np.abs(scores - model.threshold)) > 1e-6
