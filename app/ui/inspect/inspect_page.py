"""The Inspect workspace's widgets: the source, mode and trigger controls, the verdict
banner over the views, the log and counters, and the workspace's shortcuts with the
trigger key behind them. InspectWorkspace gives them their behaviour.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QKeySequenceEdit,
    QLabel,
    QPushButton,
    QSplitter,
    QStackedLayout,
    QVBoxLayout,
    QWidget,
)

from app.ui.inspect.inspect_controls import HeatmapControls, ResultsPanel
from app.ui.inspect.inspect_panels import NoModelPanel
from app.ui.inspect.inspect_review import ReviewBar
from app.ui.inspect.inspect_station import StationSetup
from app.ui.inspect.inspect_view import ImageView
from app.ui.inspect.verdict_banner import NoticeBanner, VerdictBanner
from app.ui.inspect.view_grid import ViewGrid
from app.ui.shared.keys import WINDOW_KEYS

SOURCES = (("simulated", "Simulated line"), ("camera", "Camera"), ("folder", "Hot folder…"))
TRIGGER_KEY_SETTING = "inspect/trigger_key"
IDLE_IMAGE_TEXT = "Press Start to inspect parts."


class InspectPage(QWidget):
    """The widgets, laid out; the *context*'s settings remember the trigger key."""

    def __init__(self, context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context = context
        self._build()

    # -- layout ----------------------------------------------------------------------

    def _build(self) -> None:
        self._stack = QStackedLayout(self)
        self.no_model = NoModelPanel()
        self._stack.addWidget(self.no_model)
        line = QWidget()
        self._stack.addWidget(line)
        root = QVBoxLayout(line)

        # Two rows of controls: in one row they need more than a 1024 px screen has.
        self.source_combo = QComboBox()
        for key, text in SOURCES:
            self.source_combo.addItem(text, key)
        self.mode_combo = QComboBox()
        self.mode_combo.addItem("Continuous", True)
        self.mode_combo.addItem("On trigger key", False)
        self.start_button = QPushButton("&Start")
        self.start_button.setProperty("primary", True)
        self.start_button.setMinimumWidth(140)
        self.trigger_button = QPushButton("&Inspect now")
        self.key_edit = QKeySequenceEdit(QKeySequence(self._trigger_key()))
        self.key_edit.setMaximumWidth(140)
        self.key_edit.setToolTip("The key that triggers one inspection")
        self.station = StationSetup(self.context, self)
        first, second = QHBoxLayout(), QHBoxLayout()
        for widget in (QLabel("Source"), self.source_combo, self.station.views_button, QLabel("Mode"), self.mode_combo,
                       self.start_button):
            first.addWidget(widget)
        first.addStretch(1)
        self.model_label = QLabel("")
        self.model_label.setStyleSheet("font-size: 13pt;")
        first.addWidget(self.model_label)
        first.addWidget(self.station.plc_button)
        for widget in (self.trigger_button, QLabel("Key"), self.key_edit):
            second.addWidget(widget)
        second.addSpacing(16)
        self.heatmap_controls = HeatmapControls(self.context.settings)
        second.addWidget(self.heatmap_controls, 1)
        root.addLayout(first)
        root.addLayout(second)

        self.notice = NoticeBanner()
        root.addWidget(self.notice)

        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        self.review_bar = ReviewBar()
        left_layout.addWidget(self.review_bar)
        self.banner = VerdictBanner()
        self.banner.setMinimumHeight(150)
        left_layout.addWidget(self.banner)
        self.image_view = ImageView(IDLE_IMAGE_TEXT)  # view 1's; the grid adds the others beside it
        self.view_grid = ViewGrid(self.image_view)
        left_layout.addWidget(self.view_grid, 1)
        # Hidden unless a PLC is configured. Under the views, not beside the log: views of a
        # square part leave black bars there anyway, and the log needs its rows.
        left_layout.addWidget(self.station.plc_panel)
        splitter.addWidget(left)

        self.results = ResultsPanel()
        # The names tests and the window use, kept from before the panel was split out.
        self.counters_panel, self.table_model, self.table = self.results.counters_panel, self.results.table_model, self.results.table
        self.wrong_button, self.export_button = self.results.wrong_button, self.results.export_button
        self.reset_button = self.results.reset_button
        splitter.addWidget(self.results)
        # Even halves: the part is about square, so the left half is mostly black bars
        # anyway, and the log and counters on the right need the width.
        splitter.setStretchFactor(0, 1)
        splitter.setStretchFactor(1, 1)
        root.addWidget(splitter, 1)

        # Trigger keys work anywhere in the workspace; Enter too, except in the log (it opens the part there).
        self._trigger_shortcuts = [QShortcut(QKeySequence(self._trigger_key()), self), QShortcut(QKeySequence("Return"), self)]
        self._heat_shortcut = QShortcut(QKeySequence("H"), self)
        self._wrong_shortcut = QShortcut(QKeySequence("W"), self)
        self._back_shortcut = QShortcut(QKeySequence("Esc"), self)
        for shortcut in (*self._trigger_shortcuts, self._heat_shortcut, self._wrong_shortcut, self._back_shortcut):
            shortcut.setContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)

    # -- the trigger key -------------------------------------------------------------

    def _trigger_key(self) -> str:
        return str(self.context.settings.value(TRIGGER_KEY_SETTING, "Space"))

    def reserved_keys(self) -> set[str]:
        """Keys something else in Inspect or the window answers to (W, H, Esc, Enter, Ctrl+1..4)."""
        own = [self._trigger_shortcuts[1], self._heat_shortcut, self._wrong_shortcut, self._back_shortcut]
        return {k for k in {s.key().toString() for s in own} | set(WINDOW_KEYS) if k}

    def set_trigger_key(self, text: str) -> bool:
        """Bind the trigger to *text*; refuses (False, with a visible reason) a key in use:
        W as the trigger key would inspect a part instead of flagging a wrong verdict."""
        sequence = QKeySequence(text)
        if sequence.isEmpty():
            return False
        key = sequence.toString()
        if key in self.reserved_keys():
            self.notice.show_notice(f"{key} already has a job in Inspect, so it cannot trigger. "
                                    f"The trigger stays on {self._trigger_key()}.")
            self.key_edit.setKeySequence(QKeySequence(self._trigger_key()))
            return False
        self.context.settings.setValue(TRIGGER_KEY_SETTING, key)
        self._trigger_shortcuts[0].setKey(sequence)
        return True

    def _store_trigger_key(self) -> None:
        seq = self.key_edit.keySequence()
        # The field reports "finished" again when a refused key is put back: not a change.
        if not seq.isEmpty() and seq.toString() != self._trigger_key():
            self.set_trigger_key(seq.toString())
