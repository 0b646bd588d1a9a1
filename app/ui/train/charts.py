"""A small line chart drawn with QPainter, for live training curves.

A charting library would be a large dependency for two curves; this draws axes, a few
grid lines, the series and a legend, and redraws only when a point is added.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen
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


def _tick_text(x: float) -> str:
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.2g}"


class LineChart(QWidget):
    """Plots named series of (x, y) points; the axes follow the data."""

    MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 34, 30

    def __init__(
        self,
        title: str,
        x_label: str = "",
        y_range: tuple[float, float] | None = None,
        parent: QWidget | None = None,
        integer_x: bool = False,
        y_from_zero: bool = False,
    ) -> None:
        """*integer_x*: x counts whole things (epochs): the axis ends on a whole number
        and its ticks are whole numbers. *y_from_zero*: a quantity that is never
        negative (a loss) is drawn from 0, so the curve's height means something."""
        super().__init__(parent)
        self._title = title
        self._x_label = x_label
        self._fixed_y = y_range
        self._integer_x = integer_x
        self._y_from_zero = y_from_zero
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
        if self._integer_x:
            x0, x1 = math.floor(x0), math.ceil(x1)
        if x1 - x0 < 1e-9:
            x1 = x0 + 1
        if self._fixed_y:
            y0, y1 = self._fixed_y
        elif self._y_from_zero and min(ys) >= 0:
            y0, y1 = 0.0, (max(ys) * 1.08 if max(ys) > 0 else 1.0)
        else:
            y0, y1 = _nice_range(min(ys), max(ys))
        return x0, x1, y0, y1

    def bounds(self) -> tuple[float, float, float, float] | None:
        """(x0, x1, y0, y1) of the axes as drawn, None before the first point."""
        return self._data_bounds()

    def x_ticks(self) -> list[float]:
        """The values written under the x axis: at most 8, whole numbers for integer_x."""
        bounds = self._data_bounds()
        if bounds is None:
            return []
        x0, x1 = bounds[:2]
        if self._integer_x:
            step = max(1, math.ceil((x1 - x0) / 8))
            return [float(v) for v in range(int(x0), int(x1) + 1, step)]
        return [x0 + (x1 - x0) * i / 4 for i in range(5)]

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
        for x in self.x_ticks():  # tick values under the axis, the axis name at its left
            p = to_screen(x, y0)
            painter.drawLine(QPointF(p.x(), plot.bottom()), QPointF(p.x(), plot.bottom() + 4))
            painter.drawText(QRectF(p.x() - 30, plot.bottom() + 4, 60, 22), Qt.AlignmentFlag.AlignCenter, _tick_text(x))
        if self._x_label:  # left of the first tick; smaller type rather than cut off
            room = self.MARGIN_LEFT - 12
            label_font = QFont(self.font())
            while label_font.pointSizeF() > 7 and QFontMetrics(label_font).horizontalAdvance(self._x_label) > room:
                label_font.setPointSizeF(label_font.pointSizeF() - 0.5)
            painter.setFont(label_font)
            painter.drawText(
                QRectF(0, plot.bottom() + 4, room + 2, 22),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                QFontMetrics(label_font).elidedText(self._x_label, Qt.TextElideMode.ElideRight, room + 2),
            )
            painter.setFont(self.font())
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
