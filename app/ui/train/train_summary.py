"""The card shown when a training ends: is the candidate better than what runs now?

Both models are scored on the same validation images by the trainer; this card only
lays those figures side by side, says what data is missing, and offers Deploy.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from app.core.operating_point import highest_ok_text, single_part_note, threshold_text
from app.ui.shared.review_parts import ReviewPartsStrip


def percent(value: object) -> str:
    return f"{float(value) * 100:.1f} %" if isinstance(value, (int, float)) else "–"


def with_interval(value: object, interval: object, unit_in_brackets: bool = True) -> str:
    """"81.4 % (73.1-87.9 %)": a rate and its 95 % interval, as every headline shows it;
    "81.4 % (73.1-87.9)" without *unit_in_brackets* (a table short of room)."""
    if not isinstance(value, (int, float)):
        return "–"
    if isinstance(interval, (list, tuple)) and len(interval) == 2 and all(isinstance(v, (int, float)) for v in interval):
        unit = " %" if unit_in_brackets else ""
        return f"{value * 100:.1f} % ({interval[0] * 100:.1f}-{interval[1] * 100:.1f}{unit})"
    return percent(value)


def operating_point_text(metrics: dict) -> str:
    """Where the line's figures come from, in one sentence people can check."""
    parts = []
    if metrics.get("mode"):
        parts.append(f"Mode: {metrics.get('mode_reason') or metrics['mode']}.")
    threshold = metrics.get("threshold")
    if isinstance(threshold, (int, float)):
        source = metrics.get("threshold_source")
        target = metrics.get("false_reject_target")
        parts.append(f"Threshold {threshold_text(threshold)}, set "
                     + (f"for {target * 100:.1f} % false reject " if isinstance(target, (int, float)) else "")
                     + (f"on {source}" if source else "on validation parts")
                     + "; rates in brackets are 95 % intervals.")
        n_ok = metrics.get("n_ok_heldout")
        if isinstance(n_ok, int) and isinstance(target, (int, float)) and (note := single_part_note(n_ok, target)):
            parts.append(note)
    if highest := highest_ok_text(metrics.get("highest_ok_parts") or []):
        parts.append(highest)
    best = metrics.get("catch_at_1pct_false_reject")
    if isinstance(best, (int, float)):
        parts.append(f"Best case (threshold picked on these same parts): {percent(best)} caught at 1 % false reject.")
    return " ".join(parts)


def duration(seconds: object) -> str:
    if not isinstance(seconds, (int, float)):
        return "–"
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"


def device_text(device: object) -> str:
    """"cpu (2 cores)" -> "CPU (2 cores)": the trainer's device name as people write it."""
    first, _, rest = str(device or "?").partition(" ")
    return f"{first.upper()} {rest}".strip()


class TrainSummaryCard(QFrame):
    """Candidate vs production on catch rate and false rejects, plus Deploy."""

    deploy_requested = Signal(str)  # the candidate version
    review_requested = Signal(int)  # an image id: show it where it is labeled

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("trainSummary")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#trainSummary { border: 2px solid palette(mid); border-radius: 10px; } QLabel { font-size: 14pt; }")
        self._version: str | None = None
        layout = QVBoxLayout(self)
        self.headline = QLabel()
        self.headline.setStyleSheet("font-size: 22pt; font-weight: bold;")
        self.headline.setWordWrap(True)
        layout.addWidget(self.headline)

        self.table = QGridLayout()
        self.table.setHorizontalSpacing(32)
        self.cells: dict[tuple[str, str], QLabel] = {}
        for col, text in enumerate(("", "New model", "In production")):
            head = QLabel(text)
            head.setStyleSheet("font-weight: bold;")
            self.table.addWidget(head, 0, col)
        rows = (("catch", "Defects caught"), ("false_reject", "Good parts rejected"), ("auroc", "AUROC"))
        for row, (key, text) in enumerate(rows, start=1):
            self.table.addWidget(QLabel(text), row, 0)
            for col, which in enumerate(("candidate", "production"), start=1):
                cell = QLabel("–")
                cell.setStyleSheet("font-size: 16pt;")
                self.cells[(key, which)] = cell
                self.table.addWidget(cell, row, col)
        layout.addLayout(self.table)

        self.details = QLabel()
        self.details.setWordWrap(True)
        layout.addWidget(self.details)
        # The OK parts that place the threshold, one click from their label.
        self.review_strip = ReviewPartsStrip()
        self.review_strip.review_requested.connect(self.review_requested)
        layout.addWidget(self.review_strip)
        self.shortfalls = QLabel()
        self.shortfalls.setWordWrap(True)
        self.shortfalls.setStyleSheet("color: #b35c00; font-weight: bold;")
        layout.addWidget(self.shortfalls)

        buttons = QHBoxLayout()
        self.deploy_button = QPushButton("Deploy to the line")
        self.deploy_button.setMinimumHeight(56)
        self.deploy_button.setStyleSheet("font-size: 15pt; font-weight: bold; padding: 0 24px;")
        self.deploy_button.clicked.connect(lambda: self._version and self.deploy_requested.emit(self._version))
        buttons.addWidget(self.deploy_button)
        buttons.addStretch(1)
        layout.addLayout(buttons)

    @property
    def version(self) -> str | None:
        return self._version

    def show_result(self, event: dict) -> None:
        """Fill the card from the trainer's `done` event."""
        self._version = str(event.get("version") or "") or None
        metrics = event.get("metrics") or {}
        production = event.get("production") or None
        # The line's figures: at the threshold the model stores, with their intervals.
        self.cells[("catch", "candidate")].setText(
            with_interval(metrics.get("catch_rate"), metrics.get("catch_rate_ci"))
            if metrics.get("catch_rate") is not None else "no defects to measure")
        self.cells[("false_reject", "candidate")].setText(
            with_interval(metrics.get("false_reject_rate"), metrics.get("false_reject_rate_ci")))
        self.cells[("auroc", "candidate")].setText(
            f"{metrics['auroc']:.3f}" if isinstance(metrics.get("auroc"), (int, float)) else "–"
        )
        if production:
            self.cells[("catch", "production")].setText(f"{percent(production.get('catch_rate'))} ({production.get('version', '')})")
            self.cells[("false_reject", "production")].setText(percent(production.get("false_reject_rate")))
            auroc = production.get("auroc")
            self.cells[("auroc", "production")].setText(f"{auroc:.3f}" if isinstance(auroc, (int, float)) else "–")
        else:
            for key in ("catch", "false_reject", "auroc"):
                self.cells[(key, "production")].setText("none yet" if key == "catch" else "–")
        self.headline.setText(self._verdict_text(metrics, production))
        device = device_text(event.get("device"))
        baseline = event.get("baseline") or {}
        yardstick = ""
        if isinstance(baseline.get("catch_at_1pct_false_reject"), (int, float)):
            # The honest yardstick: what an afternoon of image statistics would catch.
            yardstick = (f"\nA simple method ({baseline.get('method', 'image statistics')}) on the same parts "
                         f"catches {percent(baseline['catch_at_1pct_false_reject'])} at 1 % false reject "
                         f"(AUROC {baseline.get('auroc', float('nan')):.3f}).")
        changes = [str(c) for c in event.get("changes") or []]
        self.details.setText(
            f"Trained in {duration(event.get('elapsed_s'))} on {device}. "
            + operating_point_text({**metrics, "mode": event.get("mode"), "mode_reason": event.get("mode_reason")})
            + yardstick
            + (f"\nSince the last version: {'; '.join(changes)}." if changes else "")
        )
        self.review_strip.show_parts(metrics.get("highest_ok_parts") or [])
        shortfalls = [str(s) for s in event.get("shortfalls") or []]
        self.shortfalls.setText("About the labeled data:\n• " + "\n• ".join(shortfalls) if shortfalls else "")
        self.shortfalls.setVisible(bool(shortfalls))
        self.set_deployed(False)

    def set_deployed(self, deployed: bool) -> None:
        self.deploy_button.setEnabled(bool(self._version) and not deployed)
        self.deploy_button.setText(f"{self._version} is in production" if deployed else f"Deploy {self._version or ''} to the line")

    def _verdict_text(self, metrics: dict, production: dict | None) -> str:
        name = self._version or "The new model"
        if not production:
            return f"{name} is ready. No model is in production yet."
        catch_new, catch_old = metrics.get("catch_rate"), production.get("catch_rate")
        fr_new, fr_old = metrics.get("false_reject_rate"), production.get("false_reject_rate")
        if not all(isinstance(v, (int, float)) for v in (catch_new, catch_old, fr_new, fr_old)):
            return f"{name} is ready."
        if catch_new >= catch_old and fr_new <= fr_old:
            return f"{name} is at least as good as {production.get('version')} on both counts."
        if catch_new < catch_old and fr_new > fr_old:
            return f"{name} is worse than {production.get('version')}: keep the current model."
        return f"{name} trades off against {production.get('version')}: compare before deploying."


__all__ = ["TrainSummaryCard", "percent", "with_interval", "operating_point_text", "duration", "device_text"]
