"""The PASS / FAIL banner, readable from two metres, and the amber notice strip.

The banner's text scales with its height rather than a fixed point size, so the word
stays as large as the space the layout gives it on any screen.
"""

from __future__ import annotations

from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter
from PySide6.QtWidgets import QLabel, QSizePolicy, QWidget

from app.ui.shared.style import FAIL, PASS, WARN

IDLE_COLOR = "#5f6b7a"


class VerdictBanner(QWidget):
    """A coloured block with PASS or FAIL (and the defect class) in huge letters."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._headline = "READY"
        self._detail = "Waiting for the first part"
        self._color = QColor(IDLE_COLOR)
        self.setMinimumHeight(150)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setAccessibleName("Verdict")

    @property
    def headline(self) -> str:
        return self._headline

    @property
    def detail(self) -> str:
        return self._detail

    def show_verdict(self, passed: bool, defect_class: str | None = None, score: float | None = None) -> None:
        self._headline = "PASS" if passed else "FAIL"
        self._color = QColor(PASS if passed else FAIL)
        detail = "" if passed else (defect_class or "defect").upper()
        if score is not None:
            detail = f"{detail}   score {score:.2f}".strip()
        self._detail = detail
        self.setAccessibleDescription(f"{self._headline} {self._detail}")
        self.update()

    def show_idle(self, headline: str = "READY", detail: str = "Waiting for the first part") -> None:
        self._headline, self._detail, self._color = headline, detail, QColor(IDLE_COLOR)
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setBrush(self._color)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.drawRoundedRect(QRectF(self.rect()), 14, 14)
        painter.setPen(QColor("white"))
        h = self.height()
        big = QFont(self.font())
        big.setBold(True)
        big.setPixelSize(max(24, int(h * (0.62 if self._detail else 0.75))))
        painter.setFont(big)
        head_rect = QRectF(0, 0, self.width(), h * (0.72 if self._detail else 1.0))
        painter.drawText(head_rect, Qt.AlignmentFlag.AlignCenter, self._headline)
        if self._detail:
            small = QFont(self.font())
            small.setBold(True)
            small.setPixelSize(max(14, int(h * 0.16)))
            painter.setFont(small)
            painter.drawText(QRectF(0, h * 0.70, self.width(), h * 0.28), Qt.AlignmentFlag.AlignCenter, self._detail)
        painter.end()


class NoticeBanner(QLabel):
    """A strip for warnings that must not be missed (drift, camera lost); hidden when empty."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.setMinimumHeight(48)
        self.setStyleSheet(
            f"background: {WARN}; color: white; font-size: 15pt; font-weight: bold; padding: 8px 16px; border-radius: 8px;"
        )
        self.hide()

    def show_notice(self, text: str) -> None:
        self.setText(text)
        self.setVisible(bool(text))


__all__ = ["VerdictBanner", "NoticeBanner"]
