"""The golden set and the deploy gate.

The golden set is a handful of labeled parts an engineer trusts completely: a balanced
mix of OK parts and each defect class. They live in a split of their own, "golden",
which `assign_splits` never touches (it only gives a split to images without one) and
the trainer never reads (it trains on split "train" and measures on "val"), so no model
ever learns from them.

Before a model goes into production, the deploy gate runs it and the production model
(each at its own stored threshold, as the line would) on every golden part. It refuses
when the newcomer misses a golden defect that production catches, or rejects more
golden OK parts than production does. An engineer may deploy anyway with a written
reason. The result goes into the model's report (the database and model.json) and, with
any override, into the audit trail.
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import sqlalchemy as sa

from app.core import audit, db, people
from app.core.errors import LinesideError
from app.core.project_models import merge_into_report
from app.core.records import OK

if TYPE_CHECKING:
    from app.core.project import Project
    from app.core.records import ModelVersion

GOLDEN = "golden"
# Splits a golden part may come from: never "train" (a model has learned from it).
ELIGIBLE_SPLITS = (None, "test", "val")  # in the order propose() prefers them
MIN_REASON_CHARS = 10


class GateRefusedError(LinesideError):
    """The deploy gate found the candidate worse than production on the golden set."""

    def __init__(self, message: str, result: dict) -> None:
        super().__init__(message)
        self.result = result


def golden_parts(project: "Project") -> list:
    """(record, label) of every golden part with a current label, by image id."""
    return project.labeled(split=GOLDEN)


def _set_split(conn: sa.Connection, image_ids: list[int], split: str | None) -> None:
    conn.execute(db.images.update().where(db.images.c.id.in_(image_ids)).values(split=split))


def mark_golden(project: "Project", image_ids: list[int], actor=None) -> list[int]:
    """Put labeled, never-trained-on images into the golden set; returns the ids added."""
    ids = list(dict.fromkeys(int(i) for i in image_ids))
    if not ids:
        raise LinesideError("Name at least one image to add to the golden set.")
    with project._write() as conn:
        by = people.require(project, actor, "golden", conn)
        added, what = [], []
        for image_id in ids:
            record = project.image(image_id)  # a clear error for an unknown id
            label = project.label(image_id)
            if label is None:
                raise LinesideError(f"Image {image_id} ({record.filename}) has no label; label it before making it golden.")
            if record.split == GOLDEN:
                continue
            if record.split == "train":
                raise LinesideError(
                    f"Image {image_id} ({record.filename}) is in the training split: the models have learned "
                    "from it, so it cannot judge them. Choose parts from validation or not yet split.")
            added.append(image_id)
            what.append({"image_id": image_id, "sha256": record.sha256, "verdict": label.verdict,
                         "from_split": record.split})
        if added:
            _set_split(conn, added, GOLDEN)
            audit.append(conn, audit.GOLDEN_ADD, _name(by, actor), {"parts": what})
        return added


def unmark_golden(project: "Project", image_ids: list[int], actor=None) -> list[int]:
    """Take images out of the golden set (they get no split; the next training assigns one)."""
    ids = [int(i) for i in image_ids]
    with project._write() as conn:
        by = people.require(project, actor, "golden", conn)
        removed = [i for i in ids if project.image(i).split == GOLDEN]
        if removed:
            _set_split(conn, removed, None)
            audit.append(conn, audit.GOLDEN_REMOVE, _name(by, actor), {"image_ids": removed})
        return removed


def propose(project: "Project", n: int) -> list[int]:
    """Up to *n* image ids for a balanced golden set: OK and each defect class in turn.

    From labeled images not in the training split and not golden yet; within a class,
    parts without a split first, then test, then validation (so validation moves least),
    each in sha256 order, so the same project gives the same proposal on any PC.
    """
    if n < 1:
        raise LinesideError("Propose at least one part.")
    by_class: dict[str, list] = {}
    for record, label in project.labeled():
        if record.split in ELIGIBLE_SPLITS:
            by_class.setdefault(label.verdict, []).append(record)
    for records in by_class.values():
        records.sort(key=lambda r: (ELIGIBLE_SPLITS.index(r.split), r.sha256))
    order = sorted(by_class, key=lambda v: (v != OK, v))
    chosen: list[int] = []
    depth = 0
    while len(chosen) < n and any(depth < len(by_class[v]) for v in order):
        for verdict in order:
            if depth < len(by_class[verdict]) and len(chosen) < n:
                chosen.append(by_class[verdict][depth].id)
        depth += 1
    return chosen


def _name(by, actor) -> str:
    if by is not None:
        return by.name
    return actor.name if isinstance(actor, people.Person) else str(actor or "")


# -- the deploy gate -----------------------------------------------------------------------


def _scores(model: "ModelVersion", images: list) -> list[float]:
    from app.core.runtime import Inspector  # ONNX Runtime only where a gate runs

    inspector = Inspector(model.onnx_path, threads=os.cpu_count() or 1, threshold=model.threshold)
    scores: list[float] = []
    for i in range(0, len(images), 8):
        scores += [float(v.score) for v in inspector.inspect_batch(images[i:i + 8])]
    return scores


def run_gate(project: "Project", candidate: "ModelVersion", production: "ModelVersion | None" = None) -> dict:
    """Candidate and production on the golden set; "passed" False when the candidate is
    worse on it (a golden defect production catches and it misses, or more golden OK
    parts rejected). With no golden parts or no production model the gate passes and
    says why."""
    if production is None:
        production = project.production_model()
    if production is not None and production.version == candidate.version:
        production = None
    parts = golden_parts(project)
    result: dict = {
        "checked_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "candidate": candidate.version, "candidate_threshold": candidate.threshold,
        "production": production.version if production else None,
        "production_threshold": production.threshold if production else None,
        "n_golden": len(parts), "n_ok": sum(label.verdict == OK for _, label in parts),
        "n_defect": sum(label.verdict != OK for _, label in parts),
        "passed": True, "reasons": [], "regressions": [], "parts": [], "override": None,
    }
    if not parts:
        result["note"] = "no golden parts: nothing to check (mark some with `lineside golden PROJECT propose N`)"
        return result
    images = [project.load_image(record.id) for record, _ in parts]
    cand = _scores(candidate, images)
    prod = _scores(production, images) if production is not None else None
    cand_fr = prod_fr = 0
    cand_missed = prod_missed = 0
    for i, (record, label) in enumerate(parts):
        defect = label.verdict != OK
        c_fail = cand[i] >= candidate.threshold
        p_fail = prod[i] >= production.threshold if prod is not None else None
        row = {"image_id": record.id, "sha256": record.sha256, "verdict": label.verdict,
               "candidate_score": round(cand[i], 6), "candidate_fails": bool(c_fail)}
        if prod is not None:
            row.update(production_score=round(prod[i], 6), production_fails=bool(p_fail))
        result["parts"].append(row)
        if defect:
            cand_missed += not c_fail
            prod_missed += bool(prod is not None and not p_fail)
            if not c_fail and p_fail:
                result["regressions"].append({**row, "kind": "missed defect production catches"})
        else:
            cand_fr += bool(c_fail)
            prod_fr += bool(p_fail)
            if c_fail and prod is not None and not p_fail:
                result["regressions"].append({**row, "kind": "rejects an OK part production passes"})
    result.update(candidate_missed=cand_missed, candidate_false_rejects=cand_fr)
    if prod is None:
        result["note"] = "no production model to compare with: the figures are the candidate's alone"
        return result
    result.update(production_missed=prod_missed, production_false_rejects=prod_fr)
    missed = [r for r in result["regressions"] if r["verdict"] != OK]
    if missed:
        names = ", ".join(f"image {r['image_id']} ({r['verdict']})" for r in missed)
        result["reasons"].append(
            f"misses {len(missed)} golden defective part{'s' if len(missed) > 1 else ''} that "
            f"{production.version} catches: {names}")
    if cand_fr > prod_fr:
        result["reasons"].append(
            f"rejects {cand_fr} golden OK part{'s' if cand_fr != 1 else ''} where {production.version} "
            f"rejects {prod_fr}")
    result["passed"] = not result["reasons"]
    return result


def _store_in_report(project: "Project", conn: sa.Connection, model: "ModelVersion", gate: dict) -> None:
    merge_into_report(conn, model, {"deploy_gate": gate})


def deploy_gate(project: "Project", model: "ModelVersion", actor=None, override_reason: str | None = None) -> dict | None:
    """Check who deploys and run the gate, before a deploy switches anything.

    Returns the gate result (stored in the model's report and audited) when the deploy
    may go ahead; PermissionDeniedError for someone not allowed; GateRefusedError when
    the gate refuses and there is no override. None when *model* already is production.
    """
    action = "rollback" if model.status == "retired" else "deploy"
    by = people.require(project, actor, action)
    if model.status == "production":
        return None
    reason = (override_reason or "").strip()
    if override_reason is not None:
        people.require(project, actor, "override_gate")
        if len(reason) < MIN_REASON_CHARS:
            raise LinesideError(
                f"An override needs a written reason of at least {MIN_REASON_CHARS} characters "
                "(what was checked, and why the deploy is safe); nothing was deployed.")
    gate = run_gate(project, model)
    who = _name(by, actor)
    summary = {k: gate.get(k) for k in ("candidate", "production", "n_golden", "passed", "reasons")}
    if not gate["passed"] and not reason:
        with project._write() as conn:
            _store_in_report(project, conn, model, gate)
            audit.append(conn, audit.GATE_REFUSED, who, summary)
        stays = f"{gate['production']} stays in production"
        raise GateRefusedError(
            f"The deploy gate refuses {model.version}: on the golden set it {'; it '.join(gate['reasons'])}. "
            f"{stays}. Retrain, or an engineer may deploy anyway with a written reason "
            "(lineside deploy ... --override-reason TEXT).", gate)
    if not gate["passed"]:
        gate["override"] = {"by": who, "reason": reason,
                            "at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    with project._write() as conn:
        _store_in_report(project, conn, model, gate)
        audit.append(conn, audit.GATE, who, summary)
        if gate["override"]:
            audit.append(conn, audit.GATE_OVERRIDE, who, {**summary, "reason": reason})
    return gate


def record_deploy(conn: sa.Connection, model: "ModelVersion", previous: "ModelVersion | None", gate: dict | None,
                  actor=None) -> None:
    """The audit entry of a deploy or rollback, inside the transaction that switches status."""
    if gate is None and model.status == "production":
        return  # it already was in production: nothing changed
    action = audit.ROLLBACK if model.status == "retired" else audit.DEPLOY
    audit.append(conn, action, _name(None, actor), {
        "version": model.version, "retired": previous.version if previous and previous.version != model.version
        else None, "threshold": model.threshold,
        "gate": None if gate is None else {"passed": gate["passed"], "n_golden": gate["n_golden"],
                                           "overridden": bool(gate.get("override"))}})
