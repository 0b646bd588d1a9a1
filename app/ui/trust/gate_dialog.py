"""The deploy gate and the golden set in the app (the rules are in app/core/golden.py).

- GateRefusedDialog: the gate refused a candidate; says what it missed or rejected
  against production, and lets an engineer deploy anyway with a written reason.
- GoldenSetStrip: a line in Models saying what the golden set is, and offering the
  balanced set the core proposes while there is none.
- GoldenButton: marks the image on the label canvas golden, or takes it out again.
"""

from __future__ import annotations

from collections import Counter

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QDialog,
    QFrame,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.core import golden
from app.core.errors import LinesideError
from app.core.operating_point import threshold_text
from app.ui.shared.style import FAIL, WARN
from app.ui.trust.people_dialogs import refuse_tooltip, say

PER_CLASS = 4  # golden parts proposed per class (OK and each defect class)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def figures_text(result: dict) -> str:
    """"Golden set: 4 parts (2 OK, 2 defective). v2 misses 1 defect ...; v1 misses ..."."""
    cand, prod = result["candidate"], result.get("production")
    text = (f"Golden set: {_plural(result['n_golden'], 'part')} ({result['n_ok']} OK, {result['n_defect']} "
            f"defective). {cand} misses {_plural(result.get('candidate_missed', 0), 'defect')} and rejects "
            f"{_plural(result.get('candidate_false_rejects', 0), 'OK part')}")
    if prod:
        text += (f"; {prod} misses {result.get('production_missed', 0)} and rejects "
                 f"{result.get('production_false_rejects', 0)}")
    return text + "."


class GateRefusedDialog(QDialog):
    """Why the gate refused, and "Deploy anyway…" for an engineer with a reason."""

    def __init__(self, context, version: str, result: dict, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context, self.version, self.result = context, version, result
        self.deployed = False
        production = result.get("production") or "the production model"
        self.setWindowTitle(f"The deploy gate refuses {version}")
        self.resize(900, 600)
        layout = QVBoxLayout(self)
        headline = QLabel(f"The deploy gate refuses {version}. {production} stays in production.")
        headline.setWordWrap(True)
        headline.setStyleSheet(f"color: {FAIL}; font-size: 17pt; font-weight: 700;")
        layout.addWidget(headline)
        self.reasons = QLabel("<br>".join(f"• On the golden set, {version} {r}." for r in result.get("reasons", [])))
        self.reasons.setWordWrap(True)
        layout.addWidget(self.reasons)
        self.figures = QLabel(figures_text(result))
        self.figures.setWordWrap(True)
        self.figures.setProperty("role", "hint")
        layout.addWidget(self.figures)
        self.table = self._regressions_table(result)
        layout.addWidget(self.table, 1)

        self.override_box = QFrame()
        box = QVBoxLayout(self.override_box)
        box.setContentsMargins(0, 0, 0, 0)
        ask = QLabel(f"Why is it safe to deploy {version} anyway? What was checked? (At least "
                     f"{golden.MIN_REASON_CHARS} characters; the reason and your name go into the audit trail.)")
        ask.setWordWrap(True)
        box.addWidget(ask)
        self.reason_edit = QPlainTextEdit()
        self.reason_edit.setPlaceholderText("e.g. the faint scratch on part 12 is below the customer's limit; "
                                            "confirmed with quality")
        self.reason_edit.setFixedHeight(90)
        box.addWidget(self.reason_edit)
        self.confirm_button = QPushButton(f"Deploy {version} anyway")
        self.confirm_button.setProperty("danger", True)
        box.addWidget(self.confirm_button)
        self.override_box.hide()
        layout.addWidget(self.override_box)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        layout.addWidget(self.message)

        buttons = QHBoxLayout()
        self.keep_button = QPushButton(f"Keep {result.get('production') or 'things as they are'}")
        self.keep_button.setProperty("primary", True)
        self.override_button = QPushButton("Deploy anyway…")
        for button in (self.keep_button, self.override_button, self.confirm_button):
            button.setAutoDefault(False)
        buttons.addWidget(self.override_button)
        buttons.addStretch(1)
        buttons.addWidget(self.keep_button)
        layout.addLayout(buttons)
        self.keep_button.clicked.connect(lambda: self.reject())
        self.override_button.clicked.connect(lambda: self.show_override())
        self.confirm_button.clicked.connect(lambda: self.deploy_anyway())
        refuse_tooltip(self.override_button, context.refusal("override_gate"),
                       "An engineer may deploy despite the gate, with a written reason.")

    @staticmethod
    def _regressions_table(result: dict) -> QTableWidget:
        """The golden parts that got worse; each score with the threshold it FAILs at, since
        two versions may score a part alike and differ only in where they draw the line."""
        rows = result.get("regressions", [])
        table = QTableWidget(len(rows), 5)
        headers = []
        for key in ("candidate", "production"):
            threshold = result.get(f"{key}_threshold")
            limit = f" (FAIL ≥ {threshold_text(threshold, 4)})" if isinstance(threshold, (int, float)) else ""
            headers.append(f"{result.get(key) or key} score{limit}")
        table.setHorizontalHeaderLabels(["Image", "Label", "What happened", *headers])
        table.verticalHeader().hide()
        table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        table.horizontalHeader().setStretchLastSection(True)
        for row, part in enumerate(rows):
            values = (f"#{part['image_id']}", part["verdict"], part.get("kind", ""),
                      f"{part.get('candidate_score', float('nan')):.4f}",
                      f"{part.get('production_score', float('nan')):.4f}")
            for column, value in enumerate(values):
                table.setItem(row, column, QTableWidgetItem(value))
        table.setVisible(bool(rows))
        return table

    def show_override(self) -> None:
        self.override_box.show()
        self.override_button.hide()  # its job is done; the red button below is the one that deploys
        self.reason_edit.setFocus()

    def deploy_anyway(self) -> bool:
        reason = self.reason_edit.toPlainText().strip()
        if not reason:
            say(self.message, f"Write down why deploying {self.version} is safe; nothing was deployed.", ok=False)
            return False
        project = self.context.project
        try:  # the core checks the role and the reason again, runs the gate and audits the override
            project.deploy(self.version, actor=self.context.person, override_reason=reason)
        except LinesideError as exc:
            say(self.message, str(exc), ok=False)
            return False
        self.deployed = True
        self.context.models_changed.emit()
        self.context.status_message.emit(f"{self.version} is now the production model (gate overridden).")
        self.accept()
        return True


def golden_size(project) -> int:
    return max(2 * PER_CLASS, min(40, PER_CLASS * (1 + len(project.classes()))))


def count_text(project, image_ids: list[int]) -> str:
    verdicts = {record.id: label.verdict for record, label in project.labeled()}
    counts = Counter(verdicts.get(i, "?") for i in image_ids)
    return ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: (kv[0] != "ok", kv[0])))


class GoldenSetStrip(QFrame):
    """What the golden set is; while there is none, the core's balanced proposal."""

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self.proposal: list[int] = []
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self.mark_button = QPushButton("Make them golden")
        self.mark_button.clicked.connect(lambda: self.mark_proposal())
        layout.addWidget(self.mark_button)

    def refresh(self) -> None:
        project = self.context.project
        self.proposal = []
        self.setVisible(project is not None)
        if project is None:
            return
        parts = golden.golden_parts(project)
        if parts:
            ids = [record.id for record, _ in parts]
            self.label.setText(f"Golden set: {_plural(len(ids), 'part')} ({count_text(project, ids)}), never trained "
                               "on. Every deploy is checked on them first.")
            self.label.setStyleSheet("")
            self.mark_button.hide()
            return
        self.proposal = golden.propose(project, golden_size(project))
        self.label.setStyleSheet(f"color: {WARN}; font-weight: 700;")
        if not self.proposal:
            self.label.setText("No golden set yet: label parts outside the training split to make one.")
            self.mark_button.hide()
            return
        self.label.setText(f"No golden set yet, so deploys are not checked on trusted parts. Proposed: "
                           f"{_plural(len(self.proposal), 'labeled part')} never trained on "
                           f"({count_text(project, self.proposal)}).")
        self.mark_button.setText(f"Make these {len(self.proposal)} golden")
        self.mark_button.show()
        refuse_tooltip(self.mark_button, self.context.refusal("golden"),
                       "They move into a split of their own that no training ever reads.")

    def mark_proposal(self) -> bool:
        project = self.context.project
        if project is None or not self.proposal:
            return False
        try:
            added = golden.mark_golden(project, self.proposal, self.context.person)
        except LinesideError as exc:
            self.context.status_message.emit(str(exc))
            return False
        self.context.status_message.emit(f"{_plural(len(added), 'part')} added to the golden set.")
        self.context.golden_changed.emit()
        return True


class GoldenButton(QPushButton):
    """Checked while the image shown is golden; a click marks or unmarks it."""

    message = Signal(str, bool)  # text, ok

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__("Golden part", parent)
        self.context = context
        self.image_id: int | None = None
        self.setCheckable(True)
        self.clicked.connect(lambda checked: self.toggle_golden(checked))

    def show_image(self, image_id: int | None) -> None:
        project = self.context.project
        self.image_id = image_id
        record = project.image(image_id) if project is not None and image_id is not None else None
        self.setChecked(record is not None and record.split == golden.GOLDEN)
        if record is None:
            refuse_tooltip(self, "Choose an image first.")
        elif project.label(image_id) is None:
            refuse_tooltip(self, "Label the part first: a golden part needs a label everyone trusts.")
        elif record.split == "train":
            refuse_tooltip(self, "This part is in the training split: the models learned from it, so it "
                                 "cannot judge them.")
        else:
            refuse_tooltip(self, self.context.refusal("golden"),
                           "Golden parts are never trained on; every deploy is checked on them.")

    def toggle_golden(self, make_golden: bool) -> bool:
        project, image_id = self.context.project, self.image_id
        if project is None or image_id is None:
            return False
        try:
            if make_golden:
                golden.mark_golden(project, [image_id], self.context.person)
            else:
                golden.unmark_golden(project, [image_id], self.context.person)
        except LinesideError as exc:
            self.show_image(image_id)  # back to what is true
            self.message.emit(f"NOT changed: {exc}", False)
            return False
        self.message.emit(f"#{image_id} is {'now in' if make_golden else 'out of'} the golden set ✓", True)
        self.context.golden_changed.emit()
        return True
