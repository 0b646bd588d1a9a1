"""The model report (app/core/report.py) in a window, and printed to PDF.

The report measures the model again on its validation parts, which takes a few
seconds on a big project, so it is built in a background task while the window says
what it is doing. The page is shown with the same QTextDocument the PDF is printed
from (app/ui/models/report_pdf.py), so what is on screen is what goes on paper.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app.core.errors import LinesideError
from app.ui.shared.workers import run_in_background
from app.ui.trust.people_dialogs import say


def build_html(project, version: str) -> str:
    from app.core.report import build_report

    return build_report(project, version)


class ReportDialog(QDialog):
    def __init__(self, context, version: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.context, self.version = context, version
        self.html: str | None = None
        self.setWindowTitle(f"Model report: {version}")
        self.resize(980, 700)
        layout = QVBoxLayout(self)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.browser = QTextBrowser()
        self.browser.setOpenExternalLinks(False)
        layout.addWidget(self.browser, 1)
        buttons = QHBoxLayout()
        self.pdf_button = QPushButton("Export PDF…")
        self.pdf_button.setProperty("primary", True)
        self.close_button = QPushButton("Close")
        for button in (self.pdf_button, self.close_button):
            button.setAutoDefault(False)
        buttons.addStretch(1)
        buttons.addWidget(self.pdf_button)
        buttons.addWidget(self.close_button)
        layout.addLayout(buttons)
        self.pdf_button.clicked.connect(lambda: self.export_pdf())
        self.close_button.clicked.connect(lambda: self.accept())
        self.load()

    @property
    def ready(self) -> bool:
        return self.html is not None

    def load(self) -> None:
        project = self.context.project
        self.html = None
        self.pdf_button.setEnabled(False)
        if project is None:
            say(self.status, "Open a project first.", ok=False)
            return
        self.status.setText(f"Measuring {self.version} again on its validation parts for the report…")
        self.status.setStyleSheet("")
        self.setCursor(Qt.CursorShape.BusyCursor)
        run_in_background(lambda: build_html(project, self.version), self._show, self._failed, owner=self)

    def _show(self, html: str) -> None:
        from app.ui.models.report_pdf import html_document

        self.unsetCursor()
        self.html = html
        document = html_document(html)  # charts become resources: QTextBrowser cannot read data: URLs
        document.setParent(self.browser)
        self.browser.setDocument(document)
        self.status.setText(f"Report of {self.version}: every figure says where it comes from.")
        self.pdf_button.setEnabled(True)

    def _failed(self, exc: Exception) -> None:
        self.unsetCursor()
        say(self.status, f"The report of {self.version} could not be made: {exc}", ok=False)

    def export_pdf(self, path: str | Path | None = None) -> Path | None:
        """Write the report as PDF to *path*, or where the person chooses."""
        if self.html is None:
            return None
        if path is None:
            default = str(Path.home() / f"lineside-report-{self.version}.pdf")
            path, _ = QFileDialog.getSaveFileName(self, "Export the report as PDF", default, "PDF (*.pdf)")
            if not path:
                return None
        path = Path(path)
        if path.suffix.lower() != ".pdf":
            path = path.with_name(path.name + ".pdf")
        from app.ui.models.report_pdf import html_to_pdf

        try:
            pages = html_to_pdf(self.html, path)
        except (OSError, LinesideError) as exc:  # a read-only folder, a full disk, a USB stick pulled out
            say(self.status, f"The PDF could not be written to {path}: {exc}", ok=False)
            return None
        say(self.status, f"Saved {path.name} ({pages} pages) in {path.parent}.", ok=True)
        self.context.status_message.emit(f"Report of {self.version} saved as {path}.")
        return path
