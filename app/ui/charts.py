"""A small line chart drawn with QPainter, for live training curves.

A charting library would be a large dependency for two curves; this draws axes, a few
grid lines, the series and a legend, and redraws only when a point is added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget


@dataclass
class Series:
    name: str
    color: QColor
    points: list[tuple[float, float]] = field(default_factory=list)
    dashed: bool = False


def _nice_range(low: float, high: float) -> tuple[float, float]:
    if high - low < 1e-9:
        pad = abs(high) * 0.1 or 0.5
        return low - pad, high + pad
    pad = (high - low) * 0.08
    return low - pad, high + pad


class LineChart(QWidget):
    """Plots named series of (x, y) points; the axes follow the data."""

    MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 34, 30

    def __init__(
        self,
        title: str,
        x_label: str = "",
        y_range: tuple[float, float] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._title = title
        self._x_label = x_label
        self._fixed_y = y_range
        self._series: dict[str, Series] = {}
        self.setMinimumSize(280, 180)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAccessibleName(title)

    def add_series(self, name: str, color: str, dashed: bool = False) -> None:
        self._series[name] = Series(name, QColor(color), dashed=dashed)

    def add_point(self, name: str, x: float, y: float) -> None:
        if y is None or x is None:
            return
        self._series[name].points.append((float(x), float(y)))
        self.update()

    def points(self, name: str) -> list[tuple[float, float]]:
        return list(self._series[name].points)

    def clear(self) -> None:
        for series in self._series.values():
            series.points.clear()
        self.update()

    # -- drawing -------------------------------------------------------------------

    def _data_bounds(self) -> tuple[float, float, float, float] | None:
        pts = [p for s in self._series.values() for p in s.points]
        if not pts:
            return None
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        x0, x1 = min(0.0, min(xs)), max(xs)  # curves start at the origin of training
        if x1 - x0 < 1e-9:
            x1 = x0 + 1
        y0, y1 = self._fixed_y if self._fixed_y else _nice_range(min(ys), max(ys))
        return x0, x1, y0, y1

    def paintEvent(self, event) -> None:  # noqa: N802 (Qt naming)
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.fillRect(self.rect(), self.palette().base())
        text_color = self.palette().text().color()
        plot = QRectF(
            self.MARGIN_LEFT,
            self.MARGIN_TOP,
            max(10, self.width() - self.MARGIN_LEFT - self.MARGIN_RIGHT),
            max(10, self.height() - self.MARGIN_TOP - self.MARGIN_BOTTOM),
        )
        title_font = QFont(self.font())
        title_font.setBold(True)
        painter.setFont(title_font)
        painter.setPen(text_color)
        painter.drawText(QRectF(8, 4, self.width() - 16, 26), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, self._title)
        painter.setFont(self.font())
        self._draw_legend(painter, text_color)

        bounds = self._data_bounds()
        grid_pen = QPen(QColor(text_color.red(), text_color.green(), text_color.blue(), 50))
        painter.setPen(grid_pen)
        painter.drawRect(plot)
        if bounds is None:
            painter.setPen(text_color)
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "No data yet")
            painter.end()
            return
        x0, x1, y0, y1 = bounds

        def to_screen(x: float, y: float) -> QPointF:
            px = plot.left() + (x - x0) / (x1 - x0) * plot.width()
            py = plot.bottom() - (y - y0) / (y1 - y0) * plot.height()
            return QPointF(px, min(plot.bottom(), max(plot.top(), py)))

        for i in range(5):  # horizontal grid lines with their values
            y = y0 + (y1 - y0) * i / 4
            p = to_screen(x0, y)
            painter.setPen(grid_pen)
            painter.drawLine(QPointF(plot.left(), p.y()), QPointF(plot.right(), p.y()))
            painter.setPen(text_color)
            painter.drawText(QRectF(0, p.y() - 10, self.MARGIN_LEFT - 6, 20), Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, f"{y:.2f}")
        painter.drawText(
            QRectF(plot.left(), plot.bottom() + 4, plot.width(), 22),
            Qt.AlignmentFlag.AlignCenter,
            f"{self._x_label}  {x0:g} – {x1:g}".strip(),
        )
        for series in self._series.values():
            if not series.points:
                continue
            pen = QPen(series.color, 2.5)
            if series.dashed:
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            path = QPainterPath(to_screen(*series.points[0]))
            for pt in series.points[1:]:
                path.lineTo(to_screen(*pt))
            painter.drawPath(path)
            if len(series.points) <= 40:  # dots make sparse per-epoch values readable
                painter.setBrush(series.color)
                for pt in series.points:
                    painter.drawEllipse(to_screen(*pt), 3.5, 3.5)
                painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.end()

    def _draw_legend(self, painter: QPainter, text_color: QColor) -> None:
        x = self.width() - 8
        metrics = painter.fontMetrics()
        for series in reversed(list(self._series.values())):
            w = metrics.horizontalAdvance(series.name)
            x -= w
            painter.setPen(text_color)
            painter.drawText(QRectF(x, 4, w, 26), Qt.AlignmentFlag.AlignVCenter, series.name)
            x -= 22
            pen = QPen(series.color, 3)
            if series.dashed:
                pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.drawLine(QPointF(x, 17), QPointF(x + 16, 17))
            x -= 14
