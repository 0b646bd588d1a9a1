"""The inspection session's results: counters, the scrolling log table, CSV export.

Results arrive in batches from the inspection thread; the table model keeps only the
newest rows so the view stays fast after a shift of parts, while the session list keeps
every record (a few hundred bytes each) for the CSV export.
"""

from __future__ import annotations

import csv
import io
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QModelIndex, Qt
from PySide6.QtGui import QColor

from app.core.atomic import write_text
from app.ui.shared.style import FAIL, PASS
from app.ui.shared.table_models import ListTableModel

MAX_TABLE_ROWS = 500


@dataclass(frozen=True)
class ViewOutcome:
    """One view's verdict of a part seen by several views (its tag on the screen)."""

    name: str  # the view's name, as the inspector gave it ("View 2", "Side")
    label: str  # "PASS" or "FAIL"
    defect_class: str | None
    score: float


@dataclass(frozen=True)
class InspectionRecord:
    """One verdict, as logged (no pixels)."""

    at: float  # time.time() of the capture
    frame_index: int
    source: str
    label: str  # "PASS" or "FAIL"
    defect_class: str | None
    score: float
    latency_ms: float
    model_version: str
    truth: str | None = None  # known ground truth (simulated line)
    file: str | None = None  # the hot-folder file
    inspection_id: int | None = None  # its row in the project's inspection log (the key of its kept image)
    views: tuple[ViewOutcome, ...] = ()  # one per view when a part is seen by several; () for one view

    @property
    def failed_views(self) -> tuple[str, ...]:
        """The names of the views that failed the part (empty for one view)."""
        return tuple(v.name for v in self.views if v.label != "PASS")


@dataclass
class InspectionCounters:
    parts: int = 0
    passed: int = 0
    failed_by_class: Counter = field(default_factory=Counter)
    latency_total_ms: float = 0.0
    last_latency_ms: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failed_by_class.values())

    @property
    def yield_percent(self) -> float | None:
        return 100.0 * self.passed / self.parts if self.parts else None

    @property
    def mean_latency_ms(self) -> float | None:
        return self.latency_total_ms / self.parts if self.parts else None

    def add(self, record: InspectionRecord) -> None:
        self.parts += 1
        if record.label == "PASS":
            self.passed += 1
        else:
            self.failed_by_class[record.defect_class or "defect"] += 1
        self.latency_total_ms += record.latency_ms
        self.last_latency_ms = record.latency_ms


COLUMNS = ("Time", "Verdict", "Defect", "Score", "Latency", "Source", "Model")
CSV_HEADER = ("time", "verdict", "defect_class", "score", "latency_ms", "source", "frame", "file", "truth", "model_version",
              "failed_views")


def latency_text(ms: float) -> str:
    return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"


def _time_text(at: float) -> str:
    return datetime.fromtimestamp(at).strftime("%H:%M:%S")


class ResultsTableModel(ListTableModel):
    """Newest first; at most MAX_TABLE_ROWS rows."""

    columns = COLUMNS

    def cell(self, rec: InspectionRecord, col: int, role: Qt.ItemDataRole):
        if role == Qt.ItemDataRole.DisplayRole:
            return (
                _time_text(rec.at),
                rec.label,
                rec.defect_class or "",
                f"{rec.score:.3f}",
                latency_text(rec.latency_ms),
                Path(rec.file).name if rec.file else rec.source,
                rec.model_version,
            )[col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 1:
            return QColor(PASS if rec.label == "PASS" else FAIL)
        return None

    def add_records(self, records: list[InspectionRecord]) -> None:
        """New rows on top, the oldest beyond MAX_TABLE_ROWS out: one insert and at most
        one removal per batch, so the selected row (a part under review) stays selected."""
        if not records:
            return
        new = list(reversed(records))[:MAX_TABLE_ROWS]
        self.beginInsertRows(QModelIndex(), 0, len(new) - 1)
        self.rows[0:0] = new
        self.endInsertRows()
        if len(self.rows) > MAX_TABLE_ROWS:
            self.beginRemoveRows(QModelIndex(), MAX_TABLE_ROWS, len(self.rows) - 1)
            del self.rows[MAX_TABLE_ROWS:]
            self.endRemoveRows()

    def row_of(self, record: InspectionRecord) -> int | None:
        """The row showing *record* (the very object), or None when it has scrolled out."""
        return next((row for row, rec in enumerate(self.rows) if rec is record), None)

    def clear(self) -> None:
        self.set_rows([])

    def record(self, row: int) -> InspectionRecord:
        return self.rows[row]


def records_to_csv(records: list[InspectionRecord]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for r in records:
        writer.writerow(
            (
                datetime.fromtimestamp(r.at).isoformat(timespec="milliseconds"),
                r.label,
                r.defect_class or "",
                f"{r.score:.5f}",
                f"{r.latency_ms:.2f}",
                r.source,
                r.frame_index,
                r.file or "",
                r.truth or "",
                r.model_version,
                " + ".join(r.failed_views),
            )
        )
    return out.getvalue()


def export_csv(path: Path | str, records: list[InspectionRecord]) -> None:
    """Write the log to *path* atomically (a reader never sees half a file)."""
    write_text(path, records_to_csv(records))


def record_of(result, names: list[str]) -> InspectionRecord:
    """The log's record of a judged part (app.core.line_session.PartResult): one view as
    it always was; several views as the part (its verdict, worst class, highest score)
    with each view's own outcome under *names*."""
    path = next((p for p in result.paths if p is not None), None) if result.paths else None
    verdict = result.verdicts[0]
    common = dict(at=result.at, frame_index=result.seq, model_version=result.model_version or "",
                  file=str(path) if path is not None else None)
    if len(result.verdicts) == 1:
        return InspectionRecord(
            source=result.sources[0], label=verdict.label, defect_class=verdict.defect_class,
            score=float(verdict.score), latency_ms=float(verdict.latency_ms),
            truth=result.truths[0] if result.truths else None, **common,
        )  # fmt: skip
    views = tuple(ViewOutcome(name, v.label, v.defect_class, float(v.score)) for name, v in zip(names, result.verdicts))
    return InspectionRecord(
        source=result.source, label=result.label, defect_class=result.defect_class, score=float(result.score),
        latency_ms=max(float(v.latency_ms) for v in result.verdicts), truth=result.truth, views=views, **common,
    )  # fmt: skip
