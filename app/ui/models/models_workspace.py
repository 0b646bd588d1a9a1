"""Models: every trained version, how good it was, what it learned from, and deployment.

Deploying and rolling back both go through one confirmation and the deploy gate
(model_actions), because either changes what the line does with the next part. Once a
project has roles, their buttons are greyed out for anyone the core would refuse.
"""

from __future__ import annotations

from datetime import datetime

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QScrollArea,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.core.operating_point import threshold_text
from app.core.records import ModelVersion
from app.ui.shared.review_parts import ReviewPartsStrip
from app.ui.shared.style import PASS
from app.ui.shared.table_models import ListTableModel
from app.ui.train.train_summary import operating_point_text, percent, with_interval
from app.ui.trust.gate_dialog import GoldenSetStrip
from app.ui.trust.model_actions import confirm_and_deploy
from app.ui.trust.people_dialogs import refuse_tooltip

# The last column shows how many images a version learned from; their classes are in
# its tooltip and the details (with six classes they pushed the table off a 1024 px screen).
COLUMNS = ("Version", "Status", "Mode", "Trained", "Threshold", "Defects caught", "Good rejected", "AUROC",
           "Images")
IMAGES_COLUMN, TRAINED_COLUMN = COLUMNS.index("Images"), COLUMNS.index("Trained")
STATUS_TEXT = {"production": "In production", "candidate": "Candidate", "retired": "Retired"}


def _count(value: object, split: str) -> int | None:
    """A per-class count: {"train": n, "val": m} from the trainer, or a plain number."""
    if isinstance(value, dict):
        return value.get(split)
    return value if split == "train" and isinstance(value, int) else None


def training_size_text(report: dict, split: str = "train") -> str:
    """"59 (ok 32, scratch 9)": images the model learned from (or was checked on), per class."""
    per_class = report.get("per_class") or {}
    total = report.get("n_train" if split == "train" else "n_val")
    text = str(total) if total is not None else "–"
    if isinstance(per_class, dict):
        counts = [(name, _count(v, split)) for name, v in per_class.items()]
        counts = [f"{name} {n}" for name, n in counts if n is not None]
        if counts:
            text += " (" + ", ".join(counts) + ")"
    return text


def trained_text(created_at: datetime, now: datetime | None = None) -> str:
    """"14:05" for today's versions (several a day are told apart by the time), the date
    for older ones (the cell's tooltip has both): short enough that the table fits a
    1024 px screen."""
    local, today = created_at.astimezone(), (now or datetime.now().astimezone()).astimezone().date()
    return f"{local:%H:%M}" if local.date() == today else f"{local:%Y-%m-%d}"


def _count_text(n) -> str:
    return str(n) if isinstance(n, int) else "–"


def speed_text(m: ModelVersion, settings: dict) -> str:
    """Float or INT8 at the line, and the speed this PC measured (`lineside bench`)."""
    import json

    try:
        int8 = json.loads((m.path / "model.json").read_text()).get("int8")
    except (OSError, ValueError):
        int8 = None
    parts = []
    if int8:
        ms = int8.get("latency_1_thread_ms") or {}
        expected = int8.get("expected_disagreement")
        rechecked = int8.get("recheck_share") is not None
        expected_text = "" if expected is None or rechecked else f", expected to differ on {expected:.1%} at the line"
        parts.append(f"INT8 version passed its gate (verdicts agree on {int8.get('agreement', 0):.1%} of "
                     f"held-out parts{expected_text}, AUROC {int8.get('auroc_int8', float('nan')):.3f}); one part "
                     f"{ms.get('int8', float('nan')):.1f} ms vs {ms.get('float', float('nan')):.1f} ms float.")
        if rechecked:
            alone = "" if expected is None else f"INT8 alone would be expected to change {expected:.1%} of verdicts, "
            parts.append(f"Parts near the threshold ({int8['recheck_share']:.1%} of held-out parts) are re-checked "
                         f"by the float model: {alone}with the re-check "
                         f"{int8.get('expected_disagreement_rechecked', 0):.2%}.")
    bench = settings.get("bench") or {}
    if bench.get("model") == m.version and settings.get("parts_per_second"):
        lanes = int(settings.get("lanes") or 1)
        how = f"{lanes} lanes of 1 thread" if lanes > 1 else f"{settings.get('threads', 1)} thread(s)"
        views = int(bench.get("views") or 1)
        per = "parts" if views == 1 else f"parts of {views} views"
        parts.append(f"At the line: {settings.get('precision', 'float')}, {how}, "
                     f"about {settings['parts_per_second']:.0f} {per} per second on this PC (lineside bench).")
    elif not int8:
        parts.append("At the line: float (no INT8 version; `lineside quantize` makes one if it passes its gate).")
    return " ".join(parts)


def changes_text(report: dict) -> str:
    changes = report.get("changes")
    if not changes:
        return ""
    if isinstance(changes, (list, tuple)):
        return "\n".join(f"• {c}" for c in changes)
    if isinstance(changes, dict):
        return "\n".join(f"• {k}: {v}" for k, v in changes.items())
    return str(changes)


def rollback_target(models: list[ModelVersion]) -> ModelVersion | None:
    """The version to go back to: the newest retired one older than production."""
    production = next((m for m in models if m.status == "production"), None)
    retired = [m for m in models if m.status == "retired"]  # models() is newest first
    if production is not None:
        older = [m for m in retired if m.created_at < production.created_at]
        if older:
            return older[0]
    return retired[0] if retired else None


class ModelsTableModel(ListTableModel):
    columns = COLUMNS
    header_tips = {
        "Defects caught": "Share of held-out defective parts caught at the stored threshold; 95 % interval in brackets",
        "Good rejected": "Share of held-out OK parts rejected at the stored threshold; 95 % interval in brackets",
        "Images": "How many images the version learned from (their classes in each cell's tooltip)",
    }

    @property
    def versions(self) -> list[ModelVersion]:
        return self.rows

    def cell(self, m: ModelVersion, column: int, role: Qt.ItemDataRole):
        if role == Qt.ItemDataRole.DisplayRole:
            auroc = m.metrics.get("auroc")
            return (
                m.version,
                STATUS_TEXT.get(m.status, m.status),
                m.metrics.get("mode", "supervised"),
                trained_text(m.created_at),
                threshold_text(m.threshold),
                # At the stored threshold, with 95 % intervals: what the line gets. The
                # brackets drop their '%' for room at 1024 px (the header tooltip says what they are).
                with_interval(m.metrics.get("catch_rate"), m.metrics.get("catch_rate_ci"), unit_in_brackets=False),
                with_interval(m.metrics.get("false_reject_rate"), m.metrics.get("false_reject_rate_ci"),
                              unit_in_brackets=False),
                f"{auroc:.3f}" if isinstance(auroc, (int, float)) else "–",
                _count_text(m.report.get("n_train")),
            )[column]
        if role == Qt.ItemDataRole.ToolTipRole and column == IMAGES_COLUMN:
            return f"Trained on {training_size_text(m.report)} images"
        if role == Qt.ItemDataRole.ToolTipRole and column == TRAINED_COLUMN:
            return f"{m.created_at.astimezone():%Y-%m-%d %H:%M}"
        if m.status == "production":
            # Bold where the eye looks for it: a whole bold row no longer fit a 1024 px screen.
            if role == Qt.ItemDataRole.FontRole and column <= 1:
                font = QFont()
                font.setBold(True)
                return font
            if role == Qt.ItemDataRole.ForegroundRole and column == 1:
                return QColor(PASS)
        return None


class ModelsWorkspace(QWidget):
    review_image_requested = Signal(int)  # an image id to show where it is labeled

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        root = QVBoxLayout(self)
        title = QLabel("Models")
        title.setStyleSheet("font-size: 24pt; font-weight: bold;")
        root.addWidget(title)
        self.summary = QLabel()
        self.summary.setStyleSheet("font-size: 15pt;")
        root.addWidget(self.summary)

        self.table_model = ModelsTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(44)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        # Tab (and Ctrl+Tab) moved the selected row, and with it the version "Set as
        # production" deploys, without a word: Tab now leaves the table as elsewhere.
        self.table.setTabKeyNavigation(False)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        root.addWidget(self.table, 1)

        self.details = QLabel()
        self.details.setWordWrap(True)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.details.setStyleSheet("font-size: 13pt;")
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # The held-out OK parts that place the selected version's threshold, one click from
        # their labels, at the end of the details.
        self.review_strip = ReviewPartsStrip()
        self.review_strip.review_requested.connect(self.review_image_requested)
        details_page = QWidget()
        page_layout = QVBoxLayout(details_page)
        page_layout.setContentsMargins(0, 0, 0, 0)
        page_layout.addWidget(self.details)
        page_layout.addWidget(self.review_strip)
        page_layout.addStretch(1)
        # A model's details (mode reason, INT8 gate, changes) outgrow a 1024 x 768 screen:
        # they scroll instead of being cut off.
        self.details_scroll = QScrollArea()
        self.details_scroll.setWidgetResizable(True)
        self.details_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.details_scroll.setWidget(details_page)
        root.addWidget(self.details_scroll, 2)
        self.golden_strip = GoldenSetStrip(context)
        root.addWidget(self.golden_strip)

        buttons = QHBoxLayout()
        self.deploy_button = QPushButton("Set as production")
        self.deploy_button.setProperty("primary", True)
        self.rollback_button = QPushButton("Roll back")
        for b in (self.deploy_button, self.rollback_button):
            b.setMinimumSize(240, 56)
            buttons.addWidget(b)
        buttons.addStretch(1)
        self.report_button = QPushButton("Report…")
        self.report_button.setMinimumHeight(56)
        self.report_button.setToolTip("The selected version's model report, to read or export as PDF.")
        buttons.addWidget(self.report_button)
        root.addLayout(buttons)
        self.report_dialog = None
        self.gate_dialog = None

        self.deploy_button.clicked.connect(lambda: self.deploy_selected())
        self.rollback_button.clicked.connect(lambda: self.roll_back())
        self.report_button.clicked.connect(lambda: self.open_report())
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)
        context.project_changed.connect(lambda _p: self.refresh())
        context.models_changed.connect(self.refresh)
        context.access_changed.connect(self._selection_changed)
        context.golden_changed.connect(self.golden_strip.refresh)
        self.refresh()

    def selected(self) -> ModelVersion | None:
        rows = self.table.selectionModel().selectedRows()
        return self.table_model.versions[rows[0].row()] if rows else None

    def select_version(self, version: str) -> None:
        for row, m in enumerate(self.table_model.versions):
            if m.version == version:
                self.table.selectRow(row)
                return

    def refresh(self) -> None:
        project = self.context.project
        previous = self.selected()
        versions = project.models() if project is not None else []
        self.table_model.set_rows(versions)
        production = next((m for m in versions if m.status == "production"), None)
        if project is None:
            self.summary.setText("Open a project to see its models.")
        elif not versions:
            self.summary.setText("No models yet. Train one in Train.")
        else:
            self.summary.setText(
                f"{len(versions)} version{'' if len(versions) == 1 else 's'}. In production: {production.version if production else 'none'}."
            )
        if previous is not None:
            self.select_version(previous.version)
        elif versions:
            self.table.selectRow(0)
        self._selection_changed()
        self.golden_strip.refresh()

    def _selection_changed(self, *_args) -> None:
        m = self.selected()
        if m is None or m.status == "production":
            refuse_tooltip(self.deploy_button, "Select a version that is not in production.")
        else:
            refuse_tooltip(self.deploy_button, self.context.refusal("rollback" if m.status == "retired" else "deploy"))
        # The button names the version it deploys: what the table shows selected is what goes.
        self.deploy_button.setText(f"Set {m.version} as production" if m is not None else "Set as production")
        target = rollback_target(self.table_model.versions)
        refuse_tooltip(self.rollback_button, self.context.refusal("rollback") if target else "No earlier version.")
        self.rollback_button.setText(f"Roll back to {target.version}" if target else "Roll back")
        self.report_button.setEnabled(m is not None)
        self.review_strip.show_parts(m.metrics.get("highest_ok_parts") if m is not None else [])
        if m is None:
            self.details.setText("")
            return
        lines = [f"<b>{m.version}</b> — {STATUS_TEXT.get(m.status, m.status)}, trained on {training_size_text(m.report)} images."]
        point = operating_point_text(m.metrics)
        if point:
            lines.append(point)
        project = self.context.project
        if project is not None:
            settings = {k: project.get_setting(k) for k in ("bench", "precision", "threads", "lanes", "parts_per_second")}
            lines.append(speed_text(m, settings))
        if m.report.get("tiling"):
            tiling = m.report["tiling"]
            lines.append(f"Large parts are judged in {tiling['tile']}-px tiles at {tiling['scale']:.0%} of full "
                         "resolution; the heatmap is stitched over the whole part.")
        if m.report.get("mode") == "good-only" and m.metrics.get("n_ok_heldout") is not None:
            n_defects = m.metrics.get("n_defect_heldout") or 0
            lines.append(f"Checked on {m.metrics['n_ok_heldout']} OK parts, each scored out-of-fold by a bank "
                         "without it, " + (f"and {n_defects} labeled defects it never saw." if n_defects else
                                           "and no labeled defects yet to measure its catch on."))
        elif m.report.get("n_val") is not None:
            lines.append(f"Checked on {training_size_text(m.report, 'val')} validation images.")
        for key, text in (("device", "Device"), ("elapsed_s", "Training time (s)"), ("epochs_run", "Epochs")):
            if m.report.get(key) is not None:
                lines.append(f"{text}: {m.report[key]}")
        base = m.report.get("baseline_on_same_val") or {}
        if isinstance(base.get("catch_at_1pct_false_reject"), (int, float)):
            mine = m.metrics.get("catch_at_1pct_false_reject")
            lines.append(f"Best case at 1 % false reject on validation (threshold picked on those parts): this model "
                         f"catches {mine:.0%} of defects; a simple method ({base.get('method')}) catches "
                         f"{base['catch_at_1pct_false_reject']:.0%}." if isinstance(mine, (int, float)) else "")
        changes = changes_text(m.report)
        if changes:
            lines.append("<b>What changed since the previous version:</b><br>" + changes.replace("\n", "<br>"))
        self.details.setText("<br>".join(lines))

    def deploy_selected(self) -> bool:
        m = self.selected()
        if m is None or m.status == "production":
            return False
        return confirm_and_deploy(self, self.context, m.version, what="Deploy")

    def open_report(self):
        """The selected version's report, window-modal without a nested event loop."""
        from app.ui.models.report_view import ReportDialog

        m = self.selected()
        if m is None:
            return None
        self.report_dialog = ReportDialog(self.context, m.version, self)
        self.report_dialog.open()
        return self.report_dialog

    def roll_back(self) -> bool:
        target = rollback_target(self.table_model.versions)
        if target is None:
            return False
        return confirm_and_deploy(self, self.context, target.version, what="Roll back to")
