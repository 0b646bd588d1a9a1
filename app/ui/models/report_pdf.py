"""The model report (app/core/report.py) printed to PDF with Qt: QTextDocument + QPdfWriter.

QTextDocument does not read `data:` image URLs by itself, so each embedded chart is
handed to the document as a resource under a short name first. Works without a display:
from the command line a QApplication is made on the offscreen platform.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

from app.core.atomic import atomic_path

_DATA_URI = re.compile(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"')
PAGE_MARGIN_MM = 15
RESOLUTION_DPI = 150


def _application():
    # A full QApplication, not a bare QGuiApplication: Qt allows one application object
    # per process, and the same process may open windows afterwards (the app, the tests).
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    if app is None:
        if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
            os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        app = QApplication(["lineside-report"])
    return app


def html_document(html: str):
    """A QTextDocument of the report with its charts loaded as image resources."""
    from PySide6.QtCore import QUrl
    from PySide6.QtGui import QImage, QTextDocument

    _application()
    doc = QTextDocument()
    images: list[tuple[str, QImage]] = []

    def to_resource(match: re.Match) -> str:
        image = QImage.fromData(base64.b64decode(match.group(1)), "PNG")
        name = f"chart{len(images)}.png"
        images.append((name, image))
        return f'src="{name}"'

    body = _DATA_URI.sub(to_resource, html)
    for name, image in images:
        doc.addResource(QTextDocument.ResourceType.ImageResource, QUrl(name), image)
    doc.setHtml(body)
    return doc


def html_to_pdf(html: str, out: Path | str) -> int:
    """Write *html* as an A4 PDF to *out* (atomically); returns the number of pages."""
    from PySide6.QtCore import QMarginsF, QSizeF
    from PySide6.QtGui import QPageLayout, QPageSize, QPdfWriter

    doc = html_document(html)
    out = Path(out)
    with atomic_path(out) as tmp:
        writer = QPdfWriter(str(tmp))
        writer.setResolution(RESOLUTION_DPI)
        writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
        writer.setPageMargins(QMarginsF(PAGE_MARGIN_MM, PAGE_MARGIN_MM, PAGE_MARGIN_MM, PAGE_MARGIN_MM),
                              QPageLayout.Unit.Millimeter)
        writer.setTitle(_title(html))
        writer.setCreator("Lineside")
        # Lay the document out on the printable page, in the writer's device pixels.
        layout = writer.pageLayout().paintRectPixels(RESOLUTION_DPI)
        doc.setPageSize(QSizeF(layout.width(), layout.height()))
        doc.print_(writer)
        pages = doc.pageCount()
        del writer  # the file is complete only once the writer is gone
    return pages


def _title(html: str) -> str:
    match = re.search(r"<title>(.*?)</title>", html, re.S)
    return match.group(1) if match else "Lineside model report"
