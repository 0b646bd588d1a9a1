"""Audit sampling: PASS parts picked by their inspection id go to the labeling queue, and
the report counts the ones people found defective (escapes). Real store, real line
session, the tiny ONNX fixture model (score = mean brightness)."""

from __future__ import annotations

import numpy as np
import pytest

from app.core import report as report_mod
from app.core.audit_sampling import SOURCE, TAG_INSPECTION, TAG_MODEL, AuditSampler, escapes
from app.core.monitoring import should_sample
from app.core.project import Project
from app.core.imageio import encode_png
from app.core.line_session import CallbackListener, LineSession
from app.core.line_sources import FileListSource
from tests.test_line_session import DARK, add_model


@pytest.fixture
def project(tmp_path):
    proj = Project.create(tmp_path / "project")
    add_model(proj)
    yield proj
    proj.close()


def _dark_parts(folder, n: int) -> list:
    """*n* different dark parts as files (each PASSes: score = brightness ~0.12)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        image = DARK.copy()
        image[i // 64, i % 64] = 60  # one pixel apart: every part is its own image
        paths.append(folder / f"part{i:03d}.png")
        paths[-1].write_bytes(encode_png(image))
    return paths


def _run(project, parts: int, outputs=()) -> LineSession:
    paths = _dark_parts(project.path.parent / f"parts-{parts}", parts)
    with LineSession(project, [FileListSource(paths)], list(outputs), max_parts=parts) as session:
        assert session.wait(60)
    return session


def test_sampled_pass_parts_join_the_labeling_queue_tagged_with_model_and_id(project):
    project.set_setting("audit_sample_rate", "1/4")
    _run(project, 40)  # every part PASSes (dark)
    ids = [row["id"] for row in project.inspections()]
    sampled = [r for r in project.images() if TAG_INSPECTION in r.tags]
    assert sampled and all(r.source == SOURCE and r.tags[TAG_MODEL] == "v1" for r in sampled)
    picked = sorted(int(r.tags[TAG_INSPECTION]) for r in sampled)
    # Exactly the parts the deterministic rule picks, nothing else, each once.
    assert picked == sorted(i for i in range(1, 41) if should_sample(i, 0.25)) == sorted(set(picked))
    assert set(picked) <= set(ids) and len(ids) == 40
    assert all(project.label(r.id) is None for r in sampled)  # waiting for a person


def test_no_sampling_when_the_rate_is_zero(project):
    project.set_setting("audit_sample_rate", 0)
    assert AuditSampler.for_project(project) is None
    _run(project, 10)
    assert not [r for r in project.images() if TAG_INSPECTION in r.tags]


def test_escapes_are_sampled_pass_parts_people_labeled_defective_and_the_report_says_so(project):
    project.add_class("scratch")
    project.set_setting("audit_sample_rate", 1.0)
    _run(project, 5)
    sampled = [r for r in project.images() if TAG_INSPECTION in r.tags]
    assert len(sampled) == 5
    project.set_label(sampled[0].id, "ok", author="ann")
    project.set_label(sampled[1].id, "scratch", author="ann")
    found = escapes(project, "v1")
    assert (found["sampled"], found["labeled"], found["escapes"]) == (5, 2, 1)
    assert found["escape_ids"] == [sampled[1].id]
    assert escapes(project, "v2")["sampled"] == 0
    html = report_mod.build_report(project, "v1", measure_now=False)
    section = html[html.index("<h2>Audit sampling"):]
    assert "5 PASS parts sampled" in section and "2 labeled" in section and "1 was defective" in section


def test_sampling_keeps_no_image_it_does_not_need(project):
    """Images of PASS parts travel to the commit for the sampler, and are dropped after it."""
    project.set_setting("audit_sample_rate", "1/1000")
    seen = []
    listener = CallbackListener(on_committed=lambda batch: seen.extend(r.images for r in batch))
    _run(project, 10, [listener])
    assert len(seen) == 10 and all(images is None for images in seen)
