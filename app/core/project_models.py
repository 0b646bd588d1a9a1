"""Model versions and the inspection log of a project (part of the Project facade).

The trainer writes `models/<version>/model.onnx` and its report; the store only
registers the folder and tracks which version is in production. At most one version is
in production; deploying another retires it in the same transaction, so the line never
sees zero or two production models.
"""

from __future__ import annotations

import json
import math
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from app.core import audit, db
from app.core.atomic import write_text
from app.core.errors import BadImageError, LinesideError, ModelFileError
from app.core.imageio import read_image
from app.core.records import ModelVersion

_VERSION = re.compile(r"^v(\d+)$")
VERDICTS = ("PASS", "FAIL")
# A deploy runs the model on this many of the project's images before switching.
DEPLOY_CHECK_IMAGES = 4


class ModelStoreMixin:
    """Model versions and inspections; mixed into Project (uses _read/_write and path)."""

    path: Path
    models_dir: Path

    # -- model versions ------------------------------------------------------------

    def _model(self, row: sa.RowMapping) -> ModelVersion:
        folder = Path(row["folder"])
        return ModelVersion(
            version=row["version"],
            status=row["status"],
            created_at=row["created_at"],
            path=folder if folder.is_absolute() else self.path / folder,
            threshold=float(row["threshold"]),
            metrics=dict(row["metrics"] or {}),
            report=dict(row["report"] or {}),
        )

    def next_version(self) -> str:
        """The next free 'vN'. Folders left by an interrupted training count as taken."""
        with self._read() as conn:
            taken = [v for (v,) in conn.execute(sa.select(db.model_versions.c.version))]
        if self.models_dir.is_dir():
            taken += [p.name for p in self.models_dir.iterdir()]
        numbers = [int(m.group(1)) for m in map(_VERSION.match, taken) if m]
        return f"v{max(numbers, default=0) + 1}"

    def models(self) -> list[ModelVersion]:
        """All registered versions, newest first."""
        with self._read() as conn:
            rows = conn.execute(sa.select(db.model_versions).order_by(db.model_versions.c.id.desc())).mappings()
            return [self._model(row) for row in rows]

    def model(self, version: str) -> ModelVersion:
        with self._read() as conn:
            row = conn.execute(
                sa.select(db.model_versions).where(db.model_versions.c.version == version)
            ).mappings().first()
        if row is None:
            known = [m.version for m in reversed(self.models())]
            which = f"it has {', '.join(known)}" if known else "it has no trained models yet"
            raise LinesideError(f"There is no model version '{version}' in the project {self.path}; {which}.")
        return self._model(row)

    def production_model(self) -> ModelVersion | None:
        with self._read() as conn:
            row = conn.execute(
                sa.select(db.model_versions).where(db.model_versions.c.status == "production")
            ).mappings().first()
        return None if row is None else self._model(row)

    def register_model(
        self, version: str, folder: Path, threshold: float, metrics: dict, report: dict
    ) -> ModelVersion:
        """Register a trained model folder (it must hold model.onnx) as a candidate."""
        folder = Path(folder).absolute()
        if not (folder / "model.onnx").is_file():
            raise ModelFileError(f"{folder} holds no model.onnx; the training did not finish. Train again.")
        try:
            stored = folder.relative_to(self.path).as_posix()  # the project folder may move
        except ValueError:
            stored = str(folder)
        with self._write() as conn:
            clash = conn.scalar(sa.select(sa.func.count()).where(db.model_versions.c.version == version))
            if clash:
                raise LinesideError(f"Model version '{version}' is already registered in {self.path}.")
            conn.execute(
                db.model_versions.insert().values(
                    version=version,
                    status="candidate",
                    created_at=datetime.now(timezone.utc),
                    folder=stored,
                    threshold=float(threshold),
                    metrics=metrics,
                    report=report,
                )
            )
            return self.model(version)

    def add_to_report(self, version: str, changes: dict) -> ModelVersion:
        """Merge *changes* into a registered model's report, in the store and in its
        model.json; a key set to None is removed. For what is measured after the model
        was handed over (its learning curve)."""
        model = self.model(version)
        with self._write() as conn:
            merge_into_report(conn, model, changes)
        return self.model(version)

    def _set_status(self, conn: sa.Connection, status: str, *where: sa.ColumnElement[bool]) -> None:
        conn.execute(db.model_versions.update().where(*where).values(status=status))

    def deploy(self, version: str, actor=None, override_reason: str | None = None) -> ModelVersion:
        """Make *version* the production model; the previous one becomes 'retired'.

        The model is first loaded and run on a few of the project's images: a damaged
        file must be refused here, while the line still runs the old model, not found
        out at the first part after the switch. Then the deploy gate (app/core/golden.py)
        checks *actor* may deploy (once roles are set up: an engineer, app/core/people.py)
        and judges the model beside production on the golden set; *override_reason*
        is an engineer's written reason to deploy when the gate refuses. The switch is
        appended to the audit trail in the same transaction.
        """
        from app.core import golden, stations
        from app.core.runtime import file_sha256

        table = db.model_versions
        model = self.model(version)  # a clear error for an unknown version
        if not model.onnx_path.is_file():
            raise ModelFileError(f"{model.onnx_path} is missing; model {version} cannot go into production.")
        self._check_model_runs(model)
        gate = golden.deploy_gate(self, model, actor, override_reason)
        previous = self.production_model()
        sha = file_sha256(model.onnx_path)  # what every plant station checks its copy against
        with self._write() as conn:
            self._set_status(conn, "retired", table.c.status == "production", table.c.version != version)
            self._set_status(conn, "production", table.c.version == version)
            stations.record_line_model(conn, stations.DEFAULT_LINE, version, sha, golden._name(None, actor))
            golden.record_deploy(conn, model, previous, gate, actor)
            return self.model(version)

    def _check_model_runs(self, model: ModelVersion) -> None:
        """ModelFileError unless *model* loads and gives finite verdicts on sample parts."""
        from app.core.runtime import Inspector  # ONNX Runtime is loaded only to deploy

        try:
            if not math.isfinite(model.threshold):
                raise ModelFileError(f"its threshold is {model.threshold}, not a number.")
            inspector = Inspector(model.onnx_path, threshold=model.threshold)
            for image in self._deploy_check_images():
                verdict = inspector.inspect(image)
                if not all(map(math.isfinite, [verdict.score, *verdict.class_probs.values()])):
                    raise ModelFileError(f"it gives a score of {verdict.score} (not a finite number) on a test part.")
        except (LinesideError, ValueError, IndexError) as exc:  # numpy errors: outputs of the wrong shape
            current = self.production_model()
            stays = f"{current.version} stays in production" if current else "Nothing was deployed"
            raise ModelFileError(
                f"Model {model.version} cannot go into production: {exc} {stays}. "
                f"Train the model again, or deploy another version."
            ) from exc

    def _deploy_check_images(self) -> list[np.ndarray]:
        """Up to DEPLOY_CHECK_IMAGES of the project's images; a gray frame if none can be read."""
        with self._read() as conn:
            records = self._records(conn, self._image_query().limit(DEPLOY_CHECK_IMAGES))
        images = []
        for record in records:
            try:
                images.append(read_image(record.path))
            except BadImageError:
                continue  # a missing image file is not the model's fault
        return images or [np.full((224, 224, 3), 128, np.uint8)]

    def retire(self, version: str, actor=None) -> None:
        from app.core import people

        with self._write() as conn:
            by = people.require(self, actor, "retire", conn)
            model = self.model(version)
            self._set_status(conn, "retired", db.model_versions.c.version == version)
            audit.append(conn, audit.RETIRE, by.name if by else getattr(actor, "name", actor),
                         {"version": version, "was": model.status})

    # -- inspections ---------------------------------------------------------------

    def record_inspection(
        self,
        model_version: str | None,
        verdict: str,
        score: float,
        defect_class: str | None,
        latency_ms: float,
        source: str,
        image_id: int | None = None,
        image_sha: str | None = None,
    ) -> int:
        """Log one line-side verdict; returns its id. Safe to call from a worker thread."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be PASS or FAIL, not {verdict!r}")
        with self._write() as conn:
            return conn.execute(
                db.inspections.insert().values(
                    at=datetime.now(timezone.utc),
                    model_version=model_version,
                    image_id=image_id,
                    image_sha=image_sha,
                    source=source,
                    verdict=verdict,
                    score=float(score),
                    defect_class=defect_class,
                    latency_ms=float(latency_ms),
                )
            ).inserted_primary_key[0]

    def record_results(self, results: list[dict]) -> int:
        """Store a batch of a plant station's results in one commit; returns how many were new.

        Each dict has the inspections columns (at, model_version, image_sha, source,
        verdict, score, defect_class, latency_ms, station, result_uid; image_id optional).
        A result whose result_uid is already stored is skipped, so a batch sent again
        after a connection dropped before the commit was acknowledged is stored once.
        No plant-wide write lock: results need no single order across stations.
        """
        if not results:
            return 0
        rows = []
        for r in results:
            if r["verdict"] not in VERDICTS:
                raise ValueError(f"verdict must be PASS or FAIL, not {r['verdict']!r}")
            if not r.get("result_uid"):
                raise ValueError("a station's result needs its result_uid")
            rows.append({"at": r["at"], "model_version": r.get("model_version"), "image_id": r.get("image_id"),
                         "image_sha": r.get("image_sha"), "source": str(r.get("source") or "")[:200],
                         "verdict": r["verdict"], "score": float(r["score"]), "defect_class": r.get("defect_class"),
                         "latency_ms": float(r.get("latency_ms") or 0.0), "station": r.get("station"),
                         "result_uid": r["result_uid"]})  # fmt: skip
        table = db.inspections
        with self._write(lock=False) as conn:
            if conn.dialect.name == "postgresql":
                return _insert_new_results_postgresql(conn, rows)
            from sqlalchemy.dialects.sqlite import insert

            statement = insert(table).on_conflict_do_nothing(index_elements=["result_uid"])
            before = conn.scalar(sa.select(sa.func.count()).where(table.c.result_uid.in_([r["result_uid"] for r in rows])))
            conn.execute(statement, rows)
            return len(rows) - int(before or 0)

    def inspections(self, limit: int | None = None, model_version: str | None = None) -> list[dict]:
        """Logged verdicts, newest first, as plain dicts (keys: the table's columns)."""
        query = sa.select(db.inspections).order_by(db.inspections.c.id.desc())
        if model_version is not None:
            query = query.where(db.inspections.c.model_version == model_version)
        if limit is not None:
            query = query.limit(limit)
        with self._read() as conn:
            return [dict(row) for row in conn.execute(query).mappings()]


def _insert_new_results_postgresql(conn: sa.Connection, rows: list[dict]) -> int:
    """One INSERT ... SELECT FROM unnest(column arrays) ON CONFLICT DO NOTHING; the rows it inserted.

    One statement whatever the batch size, and the count comes from the insert itself:
    a separate "which of these are known" query was both slower (a prepared generic plan
    scans a new, not yet analysed table for every call) and wrong when two connections
    sent the same batch at once (benchmarks/plant.py measured both).
    """
    from sqlalchemy.dialects import postgresql as pg

    columns = [c for c in db.inspections.columns if c.name != "id"]
    incoming = sa.func.unnest(*[sa.bindparam(c.name, type_=pg.ARRAY(c.type)) for c in columns]).table_valued(
        *[c.name for c in columns]).render_derived(name="incoming")  # fmt: skip
    statement = (
        pg.insert(db.inspections)
        .from_select([c.name for c in columns], sa.select(*[incoming.c[c.name] for c in columns]))
        .on_conflict_do_nothing(index_elements=["result_uid"])
        .execution_options(preserve_rowcount=True)  # SQLAlchemy reports -1 for it otherwise
    )
    return conn.execute(statement, {c.name: [r[c.name] for r in rows] for c in columns}).rowcount


def merge_into_report(conn: sa.Connection, model: ModelVersion, changes: dict) -> None:
    """Merge *changes* into *model*'s stored report and its model.json, inside the caller's
    write transaction: two writers (a deploy gate, a trainer adding its learning curve)
    take turns, and neither loses the other's keys."""
    table = db.model_versions

    def merged(report: dict) -> dict:
        report = {**report, **changes}
        return {k: v for k, v in report.items() if not (k in changes and v is None)}

    report = dict(conn.scalar(sa.select(table.c.report).where(table.c.version == model.version)) or {})
    conn.execute(table.update().where(table.c.version == model.version).values(report=merged(report)))
    path = model.path / "model.json"
    if path.is_file():
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return  # a damaged model.json is not ours to repair; the store holds the report
        stored["report"] = merged(stored.get("report") or {})
        write_text(path, json.dumps(stored, indent=2, default=float))
