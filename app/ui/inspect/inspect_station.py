"""How this station is set up for Inspect: its views and its PLC, kept in the project.

The workspace owns the line; this object owns the "Views…" and "PLC…" buttons, their
dialogs, the settings behind them and the PLC signal panel, and makes the frame
sources of views 2..4 when the line starts. Dialogs open window-modal without a
nested event loop (QDialog.open), so the line's results keep arriving behind them.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QPushButton, QWidget

from app.ui.inspect.inspect_plc import PlcConfig, load_plc, save_plc
from app.ui.inspect.inspect_views import ViewSpec, load_views, make_view_source, save_views, with_first_kind
from app.ui.inspect.inspect_views_dialog import ViewsDialog
from app.ui.inspect.plc_panel import PlcPanel
from app.ui.inspect.plc_settings import PlcSettingsDialog


class StationSetup(QObject):
    views_changed = Signal()  # the list of views (names, count) changed
    plc_changed = Signal()

    def __init__(self, context, parent: QWidget) -> None:
        super().__init__(parent)
        self.context = context
        self._parent = parent
        self.views: list[ViewSpec] = load_views(None)
        self.plc = PlcConfig()
        self.views_button = QPushButton("&Views…")
        self.views_button.setToolTip("Up to 4 views of one part: cameras, hot folders or the simulated line")
        self.plc_button = QPushButton("P&LC…")
        self.plc_button.setToolTip("A PLC triggers the line and reads the verdicts (Modbus TCP or OPC UA)")
        self.plc_panel = PlcPanel()
        self.views_dialog: ViewsDialog | None = None
        self.plc_dialog: PlcSettingsDialog | None = None
        self.views_button.clicked.connect(lambda: self.open_views_dialog())
        self.plc_button.clicked.connect(lambda: self.open_plc_dialog())

    @property
    def names(self) -> list[str]:
        return [view.name for view in self.views]

    def load(self, project) -> None:
        """Read the project's views and PLC (None: the defaults: one view, no PLC)."""
        self.views = load_views(project)
        self.plc = load_plc(project)
        self._show()

    def _show(self) -> None:
        # Short, fixed texts: the first row of controls must fit 1024 px; the grid shows
        # how many views there are and the signal panel which PLC.
        self.plc_panel.set_config(self.plc)
        self.views_changed.emit()
        self.plc_changed.emit()

    def set_first_kind(self, kind: str) -> None:
        """The Source picker changed view 1's source; the station keeps it."""
        if self.views[0].kind != kind:
            self.views = with_first_kind(self.views, kind)
            save_views(self.context.project, self.views)

    def set_running(self, running: bool) -> None:
        # What a running line uses cannot change under it: both apply from the next Start.
        self.views_button.setEnabled(not running)
        self.plc_button.setEnabled(not running)

    # -- dialogs -------------------------------------------------------------------------

    def open_views_dialog(self) -> ViewsDialog:
        dialog = ViewsDialog(self.views, self._parent)
        dialog.accepted.connect(lambda: self._views_chosen(dialog.views()))
        dialog.finished.connect(dialog.deleteLater)
        self.views_dialog = dialog
        dialog.open()
        return dialog

    def _views_chosen(self, views: list[ViewSpec]) -> None:
        self.views = views
        save_views(self.context.project, views)
        self._show()

    def open_plc_dialog(self) -> PlcSettingsDialog:
        dialog = PlcSettingsDialog(self.plc, self._parent)
        dialog.accepted.connect(lambda: self._plc_chosen(dialog.config()))
        dialog.finished.connect(dialog.deleteLater)
        self.plc_dialog = dialog
        dialog.open()
        return dialog

    def _plc_chosen(self, config: PlcConfig) -> None:
        self.plc = config
        save_plc(self.context.project, config)
        self._show()

    # -- the line ------------------------------------------------------------------------

    def extra_sources(self, seed: int | None = None) -> list:
        """Frame sources of views 2.. (LinesideError if one cannot be used; those made are closed)."""
        made = []
        try:
            for index, spec in enumerate(self.views[1:], start=1):
                made.append(make_view_source(spec, index, seed))
        except Exception:
            close_sources(made)
            raise
        return made


def close_sources(sources: list) -> None:
    """Close sources the line never took (a hot folder was opened to start watching)."""
    for source in sources:
        try:
            source.close()
        except Exception:  # closing an unused source must not hide why the start failed
            pass
