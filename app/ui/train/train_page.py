"""The Train workspace's widgets: what to train on, Retrain and Cancel, the progress,
the curves and the result card. TrainWorkspace gives them their behaviour.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app.ui.train.charts import LineChart
from app.ui.train.train_summary import TrainSummaryCard
from app.ui.train.train_target import ServerStatusLabel, TrainTargetBox

BIG_BUTTON_STYLE = "font-size: 20pt; font-weight: bold; padding: 0 32px;"


class TrainPage(QWidget):
    """The widgets, laid out; *settings* remembers where each project trains."""

    def __init__(self, settings: QSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._build(settings)

    # -- layout ----------------------------------------------------------------------

    def _build(self, settings: QSettings) -> None:
        # Everything scrolls as one page: with the result card up, the curves and the
        # card need more height than a 768 px screen gives.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        outer.addWidget(self.scroll)
        page = QWidget()
        self.scroll.setWidget(page)
        root = QVBoxLayout(page)
        root.setSpacing(14)
        title = QLabel("Train")
        title.setStyleSheet("font-size: 24pt; font-weight: bold;")
        root.addWidget(title)

        self.data_label = QLabel()
        self.data_label.setWordWrap(True)
        self.data_label.setStyleSheet("font-size: 14pt;")
        self.data_label.setTextFormat(Qt.TextFormat.RichText)
        root.addWidget(self.data_label)

        controls = QHBoxLayout()
        self.retrain_button = QPushButton("Retrain")
        self.retrain_button.setMinimumHeight(80)
        self.retrain_button.setStyleSheet(BIG_BUTTON_STYLE)
        self.retrain_button.setProperty("primary", True)
        self.retrain_button.setShortcut("Ctrl+R")
        self.retrain_button.setToolTip("Train a new model on all labeled images (Ctrl+R)")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setMinimumHeight(80)
        self.cancel_button.setStyleSheet(BIG_BUTTON_STYLE)
        self.cancel_button.setEnabled(False)
        self.cancel_button.setShortcut("Esc")
        self.cancel_button.setToolTip("Stop the training (Esc); nothing is saved")
        controls.addWidget(self.retrain_button, 2)
        controls.addWidget(self.cancel_button, 1)
        options = QVBoxLayout()
        where = QHBoxLayout()
        self.target_box = TrainTargetBox(settings)
        self.target_box.setMinimumHeight(48)
        where_label = QLabel("Train")
        where_label.setBuddy(self.target_box)
        where.addWidget(where_label)
        where.addWidget(self.target_box, 1)
        options.addLayout(where)
        self.epochs_spin = self._spin(options, "Epochs (0 = automatic)", 0, 500, 0)
        self.budget_spin = self._spin(options, "Time limit, minutes (0 = none)", 0, 24 * 60, 0)
        controls.addLayout(options, 1)
        root.addLayout(controls)
        self.server_status = ServerStatusLabel()
        self.server_status.hide()
        root.addWidget(self.server_status)

        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 1000)
        self.progress_bar.setMinimumHeight(40)
        self.progress_bar.setStyleSheet("font-size: 14pt;")
        self.progress_bar.setTextVisible(True)
        self.progress_bar.setFormat("")
        root.addWidget(self.progress_bar)
        status_row = QHBoxLayout()
        self.phase_label = QLabel("Not started.")
        self.phase_label.setWordWrap(True)
        self.phase_label.setStyleSheet("font-size: 14pt;")
        self.eta_label = QLabel("")
        self.eta_label.setStyleSheet("font-size: 14pt; font-weight: bold;")
        status_row.addWidget(self.phase_label, 1)
        status_row.addWidget(self.eta_label)
        root.addLayout(status_row)

        charts = QHBoxLayout()
        self.loss_chart = LineChart("Loss", x_label="epoch", integer_x=True, y_from_zero=True)
        self.loss_chart.add_series("training", "#1f77b4")
        self.loss_chart.add_series("validation", "#d62728", dashed=True)
        self.quality_chart = LineChart("Validation", x_label="epoch", y_range=(0.0, 1.02), integer_x=True)
        self.quality_chart.add_series("AUROC", "#2ca02c")
        # The training's yardstick: caught at 1 % false reject on the validation parts.
        self.quality_chart.add_series("caught at 1 % false reject", "#9467bd")
        charts.addWidget(self.loss_chart)
        charts.addWidget(self.quality_chart)
        root.addLayout(charts, 1)

        self.summary = TrainSummaryCard()
        self.summary.hide()
        root.addWidget(self.summary)

    def _spin(self, layout: QVBoxLayout, text: str, low: int, high: int, value: int) -> QSpinBox:
        row = QHBoxLayout()
        label = QLabel(text)
        spin = QSpinBox()
        spin.setRange(low, high)
        spin.setValue(value)
        spin.setMinimumHeight(48)
        spin.setMinimumWidth(130)
        label.setBuddy(spin)
        row.addWidget(label, 1)
        row.addWidget(spin)
        layout.addLayout(row)
        return spin

    def _reset_view(self, bar_text: str, status: str, keep_summary: bool = False) -> None:
        """Clear the progress; *keep_summary* leaves the last candidate's card (and its
        Deploy button) up: a new run, or a cancelled one, has not replaced it."""
        self.loss_chart.clear()
        self.quality_chart.clear()
        if not keep_summary:
            self.summary.hide()
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat(bar_text)
        self.phase_label.setText(status)
        self.eta_label.setText("")
