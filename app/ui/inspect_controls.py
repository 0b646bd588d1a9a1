"""Pieces of the Inspect workspace's line view: the results panel and the heatmap controls."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSlider,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.ui.inspect_log import ResultsTableModel
from app.ui.inspect_panels import CountersPanel
from app.ui.inspect_view import HEAT_ALPHA

HEAT_ON_SETTING = "inspect/heatmap_on"
HEAT_OPACITY_SETTING = "inspect/heatmap_opacity"  # percent


class HeatmapControls(QWidget):
    """On/off (key H) and opacity of the heatmap over the part; remembered in QSettings.

    Some inspectors want to see the bare part to judge a surface, others want the
    evidence loud: both are one key or one drag away, and stay as they were left.
    """

    changed = Signal(float)  # the opacity to blend with; 0 when off

    def __init__(self, settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.settings = settings
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.toggle_box = QCheckBox("Heatmap (H)")
        self.toggle_box.setChecked(str(settings.value(HEAT_ON_SETTING, "true")).lower() == "true")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setSingleStep(5)
        self.slider.setPageStep(10)
        self.slider.setValue(int(settings.value(HEAT_OPACITY_SETTING, round(HEAT_ALPHA * 100))))
        self.slider.setMinimumWidth(120)
        self.slider.setToolTip("How strongly the heatmap covers the part")
        self.slider.setAccessibleName("Heatmap opacity")
        self.value_label = QLabel()
        self.value_label.setMinimumWidth(56)
        layout.addWidget(self.toggle_box)
        layout.addWidget(QLabel("Opacity"))
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.value_label)
        self.toggle_box.toggled.connect(lambda _on: self._changed())
        self.slider.valueChanged.connect(lambda _v: self._changed())
        self._show_value()

    def alpha(self) -> float:
        return self.slider.value() / 100.0 if self.toggle_box.isChecked() else 0.0

    def toggle(self) -> None:
        self.toggle_box.toggle()

    def _show_value(self) -> None:
        self.value_label.setText(f"{self.slider.value()} %")
        self.slider.setEnabled(self.toggle_box.isChecked())

    def _changed(self) -> None:
        self._show_value()
        self.settings.setValue(HEAT_ON_SETTING, "true" if self.toggle_box.isChecked() else "false")
        self.settings.setValue(HEAT_OPACITY_SETTING, self.slider.value())
        self.changed.emit(self.alpha())


class ResultsPanel(QWidget):
    """Counters, the log table and the buttons under it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.counters_panel = CountersPanel()
        layout.addWidget(self.counters_panel)
        self.table_model = ResultsTableModel(self)
        self.table = QTableView()
        self.table.setModel(self.table_model)
        self.table.verticalHeader().hide()
        self.table.setTabKeyNavigation(False)  # Tab leaves the table, to the buttons below
        header = self.table.horizontalHeader()
        # Fixed widths: sizing columns to their contents re-measures every row on each
        # refresh, which at full line speed costs the GUI thread more than anything else.
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        for column, width in enumerate((88, 72, 90, 66, 84, 120)):
            header.resizeSection(column, width)
        header.setStretchLastSection(True)
        self.table.verticalHeader().setDefaultSectionSize(30)
        self.table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setMinimumWidth(200)
        layout.addWidget(self.table, 1)
        # Two rows: three wide buttons in one row do not fit beside the image at 1024 px.
        self.wrong_button = QPushButton("This verdict is &wrong")
        self.wrong_button.setEnabled(False)
        self.export_button = QPushButton("&Export CSV")
        self.reset_button = QPushButton("&Reset counters")
        layout.addWidget(self.wrong_button)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.reset_button)
        layout.addLayout(row)
