"""Pieces of the Inspect workspace's line view: the results panel and the heatmap controls."""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
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

from app.ui.inspect.inspect_log import ResultsTableModel
from app.ui.inspect.inspect_panels import CountersPanel
from app.ui.inspect.inspect_view import HEAT_ALPHA

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


class ResultsTable(QTableView):
    """The log. Up/Down move through past parts; Enter opens the selected part and Esc
    goes back to live here, not as the workspace's trigger key (Enter inspects elsewhere)."""

    open_requested = Signal()
    back_requested = Signal()
    OWN_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)

    def event(self, event) -> bool:  # noqa: D401
        if event.type() == QEvent.Type.ShortcutOverride and event.key() in self.OWN_KEYS and not (
            event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        ):
            event.accept()  # the key comes to keyPressEvent, not to a shortcut
            return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.open_requested.emit()
            return
        if event.key() == Qt.Key.Key_Escape:
            self.back_requested.emit()
            return
        super().keyPressEvent(event)


class ResultsPanel(QWidget):
    """Counters, the log table and the buttons under it."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.counters_panel = CountersPanel()
        layout.addWidget(self.counters_panel)
        self.table_model = ResultsTableModel(self)
        self.table = ResultsTable()
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
        self.table.setSelectionMode(QTableView.SelectionMode.SingleSelection)
        self.table.setToolTip("Click a part, or Up/Down, to review it; Esc goes back to live")
        self.table.setMinimumWidth(200)
        layout.addWidget(self.table, 1)
        # Two rows: three wide buttons in one row do not fit beside the image at 1024 px.
        self.wrong_button = QPushButton("This verdict is &wrong (W)")
        self.wrong_button.setEnabled(False)
        self.export_button = QPushButton("&Export CSV")
        self.reset_button = QPushButton("&Reset counters")
        layout.addWidget(self.wrong_button)
        row = QHBoxLayout()
        row.addWidget(self.export_button)
        row.addWidget(self.reset_button)
        layout.addLayout(row)
