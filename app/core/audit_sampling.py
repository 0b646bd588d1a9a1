"""Audit sampling: a share of the parts the line PASSed goes to a person to confirm.

A model's catch rate was measured on labeled parts; what it misses on the line (an
*escape*) is only found if someone looks at parts it passed. Every committed PASS part
whose inspection id `monitoring.should_sample` picks (the project setting
`audit_sample_rate`, default 1 in 200, deterministic per id) is added to the project as
an unlabeled image, tagged with the model version and the inspection id, so it shows
up in Capture & Label's queue. Once people have labeled them, `escapes()` says how many
sampled PASS parts were in fact defective: the model report shows it.

A plant station samples too, off the line's path: its outbox picks PASS parts by
result_uid (`monitoring.should_sample_uid`), keeps their images beside the results and
its forwarder adds them later with the same tags (`sample_tags`; app/core/outbox.py).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from app.core.monitoring import audit_sample_rate, should_sample
from app.core.records import OK

if TYPE_CHECKING:
    from app.core.line_session import PartResult
    from app.core.project import Project

log = logging.getLogger(__name__)
SOURCE = "audit sample"  # the images' source: the labeling queue's filter shows it
TAG_INSPECTION, TAG_MODEL = "audit_inspection", "audit_model"


def sample_tags(inspection: object, model_version: str | None) -> dict[str, str]:
    """A sample's tags: the inspection (id, or a plant station's result_uid) and the model."""
    return {TAG_INSPECTION: str(inspection), TAG_MODEL: str(model_version or "")}


class AuditSampler:
    """Adds the sampled PASS parts of a running line to the project. The line session calls
    it on the writer thread right after a commit: a sample always has its inspection row."""

    def __init__(self, project: "Project", rate: float) -> None:
        self.project, self.rate = project, rate
        self.sampled = 0

    @classmethod
    def for_project(cls, project: "Project | None") -> "AuditSampler | None":
        if project is None:
            return None
        rate = audit_sample_rate(project)
        return cls(project, rate) if rate > 0 else None

    def keeps(self, result: "PartResult") -> bool:
        """Whether the part's images must be kept until its commit (its id decides)."""
        return result.passed

    def on_committed(self, results: list["PartResult"]) -> None:
        for result in results:
            if not result.passed or result.inspection_id is None or not result.images:
                continue
            if not should_sample(result.inspection_id, self.rate):
                continue
            try:
                for image in result.images:
                    self.project.add_image_array(image, source=SOURCE,
                                                 tags=sample_tags(result.inspection_id, result.model_version))
                self.sampled += 1
            except Exception:  # a full disk must not stop the line: the sample is lost, not the result
                log.exception("audit sampling: part %s could not be added to the labeling queue",
                              result.inspection_id)


def escapes(project: "Project", version: str | None = None) -> dict:
    """Sampled PASS parts (of *version*, or all): how many, how many labeled, how many
    labeled defective (escapes), and the escapes' image ids."""
    sampled = [r for r in project.images() if TAG_INSPECTION in r.tags
               and (version is None or r.tags.get(TAG_MODEL) == version)]
    labeled, escaped = 0, []
    for record in sampled:
        label = project.label(record.id)
        if label is None or label.verdict in (None, "unlabeled"):
            continue
        labeled += 1
        if label.verdict != OK:
            escaped.append(record.id)
    return {"sampled": len(sampled), "labeled": labeled, "escapes": len(escaped), "escape_ids": escaped,
            "rate": audit_sample_rate(project)}
