"""The look: a clean, high-contrast light theme with large type and glove-sized controls.

Light rather than dark: line-side screens sit under bright hall lighting, where dark
themes turn into mirrors. Colours carry meaning only where the line needs it (pass,
fail, alarm), and every clickable thing is at least TOUCH px tall.
"""

from __future__ import annotations

from PySide6.QtGui import QColor, QFont, QPalette
from PySide6.QtWidgets import QApplication

TOUCH = 48  # minimum height of anything clickable, in px
BASE_POINT_SIZE = 13

INK = "#111418"
MUTED = "#4a5360"
PAPER = "#ffffff"
PANEL = "#f1f3f6"
LINE = "#c5ccd6"
ACCENT = "#0b57d0"
ACCENT_DARK = "#083f99"
PASS = "#137333"
FAIL = "#c5221f"
WARN = "#b06000"
ALARM_BG = "#c5221f"

STYLESHEET = f"""
QWidget {{ color: {INK}; }}
QMainWindow, QDialog {{ background: {PAPER}; }}
QPushButton, QToolButton {{
    min-height: {TOUCH}px; padding: 0 18px; border: 2px solid {LINE}; border-radius: 8px;
    background: {PANEL}; font-weight: 600;
}}
QPushButton:hover, QToolButton:hover {{ border-color: {ACCENT}; }}
QPushButton:pressed, QToolButton:pressed {{ background: #dde3ea; }}
QPushButton:checked, QToolButton:checked {{ background: {ACCENT}; color: white; border-color: {ACCENT_DARK}; }}
QPushButton:disabled, QToolButton:disabled {{ color: #9aa3ad; border-color: #e0e4ea; }}
QPushButton:focus, QToolButton:focus {{ border-color: {ACCENT}; }}
QPushButton[primary="true"] {{ background: {ACCENT}; color: white; border-color: {ACCENT_DARK}; }}
QPushButton[primary="true"]:hover {{ background: {ACCENT_DARK}; }}
/* The primary rule outranks :disabled above; without this a disabled Retrain stays blue. */
QPushButton[primary="true"]:disabled {{ background: {PANEL}; color: #9aa3ad; border-color: #e0e4ea; }}
QComboBox, QSpinBox, QDoubleSpinBox, QLineEdit, QKeySequenceEdit {{
    min-height: {TOUCH - 8}px; padding: 0 10px; border: 2px solid {LINE}; border-radius: 6px; background: white;
}}
QSpinBox::up-button, QSpinBox::down-button, QDoubleSpinBox::up-button, QDoubleSpinBox::down-button {{
    width: 28px;
}}
QComboBox::drop-down {{ width: 32px; }}
QCheckBox {{ min-height: {TOUCH}px; spacing: 10px; }}
QCheckBox::indicator {{ width: 28px; height: 28px; }}
QComboBox:focus, QSpinBox:focus, QDoubleSpinBox:focus, QLineEdit:focus {{ border-color: {ACCENT}; }}
QComboBox QAbstractItemView {{ min-height: {TOUCH}px; }}
/* Five workspaces side by side on a 1024 px screen: 120 px each at the least, still glove-sized. */
QTabBar::tab {{
    min-height: {TOUCH + 8}px; min-width: 120px; padding: 0 20px; font-size: 15pt; font-weight: 600;
    background: {PANEL}; border: 2px solid {LINE}; border-bottom: none; margin-right: 4px;
    border-top-left-radius: 8px; border-top-right-radius: 8px; color: {MUTED};
}}
QTabBar::tab:selected {{ background: white; color: {INK}; border-color: {ACCENT}; border-top: 5px solid {ACCENT}; }}
QTabWidget::pane {{ border-top: 2px solid {ACCENT}; }}
QStatusBar {{ background: {PANEL}; border-top: 1px solid {LINE}; min-height: 36px; }}
QStatusBar QLabel {{ padding: 0 12px; font-size: 12pt; }}
/* Who is at the station: the status bar of a 768 px screen leaves it ~30 px, lower than
   the glove-sized rest, so it is wide instead (and the Trust menu does the same). */
QStatusBar QPushButton {{ min-height: 24px; min-width: 120px; padding: 0 14px; font-size: 12pt; border-radius: 6px; }}
QPushButton[danger="true"] {{ background: {FAIL}; color: white; border-color: #8c1816; }}
QPushButton[danger="true"]:disabled {{ background: {PANEL}; color: #9aa3ad; border-color: #e0e4ea; }}
QListView, QListWidget {{ border: 1px solid {LINE}; background: white; }}
QListView::item:selected, QListWidget::item:selected {{ background: #d3e3fd; color: {INK}; border: 3px solid {ACCENT}; }}
QGroupBox {{ font-weight: 700; border: 1px solid {LINE}; border-radius: 8px; margin-top: 14px; padding-top: 10px; }}
QGroupBox::title {{ subcontrol-origin: margin; left: 10px; padding: 0 4px; }}
QScrollBar:vertical {{ width: 20px; }}
QScrollBar:horizontal {{ height: 20px; }}
QLabel[role="title"] {{ font-size: 26pt; font-weight: 700; }}
QLabel[role="subtitle"] {{ font-size: 14pt; color: {MUTED}; }}
QLabel[role="hint"] {{ color: {MUTED}; }}
QFrame[role="alarm"] {{ background: {ALARM_BG}; border-radius: 6px; }}
QFrame[role="alarm"] QLabel {{ color: white; font-size: 16pt; font-weight: 700; }}
"""


def apply_style(app: QApplication) -> None:
    app.setStyle("Fusion")  # the same look on every platform, fully styleable
    font = QFont(app.font())
    font.setPointSize(BASE_POINT_SIZE)
    app.setFont(font)
    palette = QPalette()
    palette.setColor(QPalette.ColorRole.Window, QColor(PAPER))
    palette.setColor(QPalette.ColorRole.WindowText, QColor(INK))
    palette.setColor(QPalette.ColorRole.Base, QColor("white"))
    palette.setColor(QPalette.ColorRole.AlternateBase, QColor(PANEL))
    palette.setColor(QPalette.ColorRole.Text, QColor(INK))
    palette.setColor(QPalette.ColorRole.Button, QColor(PANEL))
    palette.setColor(QPalette.ColorRole.ButtonText, QColor(INK))
    palette.setColor(QPalette.ColorRole.Highlight, QColor(ACCENT))
    palette.setColor(QPalette.ColorRole.HighlightedText, QColor("white"))
    palette.setColor(QPalette.ColorRole.ToolTipBase, QColor(INK))
    palette.setColor(QPalette.ColorRole.ToolTipText, QColor("white"))
    app.setPalette(palette)
    app.setStyleSheet(STYLESHEET)


def readable_text_on(color: str) -> str:
    """Black or white, whichever reads better on *color* (class colours are user-picked)."""
    c = QColor(color)
    luminance = 0.299 * c.red() + 0.587 * c.green() + 0.114 * c.blue()
    return INK if luminance > 150 else "white"
