"""Charts of the model report (app/core/report.py), drawn with OpenCV so the page needs
no plotting library, and embedded as PNG data URIs so it is one self-contained file:
bars, histograms, ROC curves, lines, intervals, a confusion matrix and part thumbnails
with their heatmaps."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import cv2
import numpy as np

from app.core.errors import LinesideError
from app.core.operating_point import threshold_text

# BGR colours of the charts
_INK, _GRID, _WHITE = (40, 40, 40), (225, 225, 225), (255, 255, 255)
_BLUE, _ORANGE, _GREEN, _RED, _GRAY = (180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (150, 150, 150)
_SERIES = (_BLUE, _ORANGE, _GREEN, _RED, (189, 103, 148), (75, 86, 140))


def png_data_uri(image: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise LinesideError("A chart of the report could not be encoded as PNG.")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def _text(img: np.ndarray, text: str, org: tuple[int, int], scale: float = 0.5, color=_INK,
          anchor: str = "left") -> None:
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x, y = org
    if anchor == "center":
        x -= w // 2
    elif anchor == "right":
        x -= w
    cv2.putText(img, text, (int(x), int(y + h // 2)), cv2.FONT_HERSHEY_SIMPLEX, scale, color, 1, cv2.LINE_AA)


def nice_ticks(lo: float, hi: float, n: int = 5, integer: bool = False) -> np.ndarray:
    """Round tick values (1, 2 or 5 times a power of ten) covering [lo, hi]."""
    span = max(hi - lo, 1e-9)
    raw = span / max(1, n - 1)
    power = 10 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    if integer:
        step = max(1.0, float(np.ceil(step)))
    start = np.floor(lo / step) * step
    return np.round(np.arange(start, hi + step * 0.999, step), 10)


@dataclass
class _Axes:
    """A plot area on a white canvas, mapping data (x, y) to pixels."""

    width: int = 900
    height: int = 380
    x_range: tuple[float, float] = (0.0, 1.0)
    y_range: tuple[float, float] = (0.0, 1.0)
    left: int = 70
    right: int = 20
    top: int = 50
    bottom: int = 60
    canvas: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.canvas = np.full((self.height, self.width, 3), 255, np.uint8)

    def px(self, x: float, y: float) -> tuple[int, int]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        fx = (x - x0) / ((x1 - x0) or 1.0)
        fy = (y - y0) / ((y1 - y0) or 1.0)
        return (int(round(self.left + fx * (self.width - self.left - self.right))),
                int(round(self.height - self.bottom - fy * (self.height - self.top - self.bottom))))

    def frame(self, title: str, x_label: str, y_label: str, x_ticks, y_ticks, fmt_x="{:g}", fmt_y="{:g}") -> None:
        img = self.canvas
        for y in y_ticks:
            a, b = self.px(self.x_range[0], y), self.px(self.x_range[1], y)
            cv2.line(img, a, b, _GRID, 1)
            _text(img, fmt_y.format(y), (a[0] - 8, a[1]), 0.42, anchor="right")
        for x in x_ticks:
            a = self.px(x, self.y_range[0])
            cv2.line(img, a, (a[0], a[1] + 5), _INK, 1)
            _text(img, fmt_x.format(x), (a[0], a[1] + 18), 0.42, anchor="center")
        cv2.line(img, self.px(self.x_range[0], self.y_range[0]), self.px(self.x_range[1], self.y_range[0]), _INK, 1)
        cv2.line(img, self.px(self.x_range[0], self.y_range[0]), self.px(self.x_range[0], self.y_range[1]), _INK, 1)
        _text(img, title, (8, 14), 0.55)
        _text(img, x_label, ((self.left + self.width - self.right) // 2, self.height - 18), 0.45, anchor="center")
        _text(img, y_label, (8, self.top - 16), 0.45, _GRAY)

    def legend(self, items: list[tuple[str, tuple[int, int, int]]], lower_right: bool = False) -> None:
        """Names and colours: in a row at the top right, or stacked in the plot's lower right."""
        if lower_right:
            widest = max(cv2.getTextSize(n, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0] for n, _ in items)
            x = self.width - self.right - widest - 34
            y = self.height - self.bottom - 14 - 20 * len(items)
            cv2.rectangle(self.canvas, (x - 6, y - 8), (self.width - self.right - 4, y + 20 * len(items) - 4),
                          _WHITE, -1)
            for i, (name, color) in enumerate(items):
                cv2.rectangle(self.canvas, (x, y + 20 * i - 6), (x + 14, y + 20 * i + 6), color, -1)
                _text(self.canvas, name, (x + 20, y + 20 * i), 0.45)
            return
        x = self.width - self.right - 10
        for name, color in reversed(items):
            (w, _), _ = cv2.getTextSize(name, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
            x -= w + 26
            cv2.rectangle(self.canvas, (x, 10), (x + 14, 22), color, -1)
            _text(self.canvas, name, (x + 18, 16), 0.45)


def bar_chart(categories: list[str], series: dict[str, list[float]], title: str, y_label: str,
              percent: bool = False, y_max: float | None = None) -> np.ndarray:
    """Grouped vertical bars: one group per category, one bar per series."""
    values = [v for vs in series.values() for v in vs if v is not None]
    ticks = nice_ticks(0, y_max if y_max is not None else max(values + [1e-9]) * 1.12)
    top = float(ticks[-1])
    ax = _Axes(x_range=(0, max(1, len(categories))), y_range=(0, top), bottom=80 if len(categories) > 6 else 60)
    ax.frame(title, "", y_label, [], ticks, fmt_y="{:.0%}" if percent else "{:g}")
    n = max(1, len(series))
    group = (ax.width - ax.left - ax.right) / max(1, len(categories))
    bar = max(2, min(90, int(group * 0.8 / n)))
    for i, name in enumerate(categories):
        x0 = ax.px(i + 0.5, 0)[0] - (bar * n) // 2
        for j, (_, vs) in enumerate(series.items()):
            v = vs[i]
            if v is None:
                continue
            left = x0 + j * bar
            cv2.rectangle(ax.canvas, (left, ax.px(0, v)[1]), (left + bar - 2, ax.px(0, 0)[1]), _SERIES[j % 6], -1)
            label = f"{v:.0%}" if percent else f"{v:.3g}"
            if bar >= 28:
                _text(ax.canvas, label, (left + bar // 2, ax.px(0, v)[1] - 9), 0.38, anchor="center")
        room = max(8, int(group / 9))  # characters that fit under one group
        short = name if len(name) <= room else name[:room - 1] + "."
        _text(ax.canvas, short, (ax.px(i + 0.5, 0)[0], ax.px(0, 0)[1] + 16 + (12 * (i % 2) if len(categories) > 6
                                                                             else 0)), 0.42, anchor="center")
    if len(series) > 1:
        ax.legend([(name, _SERIES[j % 6]) for j, name in enumerate(series)])
    return ax.canvas


def histogram_chart(ok_scores: np.ndarray, defect_scores: np.ndarray, threshold: float, title: str) -> np.ndarray:
    """Score histograms of OK and defective parts, on a logit-spaced axis, with the threshold."""
    bins = np.linspace(0, 1, 41)
    h_ok = np.histogram(np.clip(ok_scores, 0, 1), bins)[0]
    h_def = np.histogram(np.clip(defect_scores, 0, 1), bins)[0]
    y_ticks = nice_ticks(0, max(1, int(np.ceil(max(h_ok.max(initial=0), h_def.max(initial=0)) * 1.12))),
                         integer=True)
    ax = _Axes(y_range=(0, float(y_ticks[-1])))
    ax.frame(title, "score (0 = looks OK, 1 = looks defective)", "parts", np.linspace(0, 1, 11),
             y_ticks, fmt_x="{:.1f}", fmt_y="{:.0f}")
    overlay = ax.canvas.copy()
    for counts, color in ((h_ok, _GREEN), (h_def, _RED)):
        for k, c in enumerate(counts):
            if c:
                cv2.rectangle(overlay, ax.px(bins[k], c), ax.px(bins[k + 1], 0), color, -1)
    cv2.addWeighted(overlay, 0.55, ax.canvas, 0.45, 0, ax.canvas)
    x = ax.px(threshold, 0)[0]
    cv2.line(ax.canvas, (x, ax.top), (x, ax.px(0, 0)[1]), _INK, 2)
    _text(ax.canvas, f"threshold {threshold_text(threshold)}", (x + 6, ax.top + 8), 0.45)
    ax.legend([(f"OK ({len(ok_scores)})", _GREEN), (f"defective ({len(defect_scores)})", _RED)])
    return ax.canvas


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false reject rate, catch rate) over all thresholds, highest score first."""
    labels = np.asarray(labels, bool)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    s, y = np.asarray(scores, np.float64)[order], labels[order]
    distinct = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    tps, fps = np.cumsum(y)[distinct], np.cumsum(~y)[distinct]
    tpr = np.r_[0, tps] / max(1, y.sum())
    fpr = np.r_[0, fps] / max(1, (~y).sum())
    return fpr, tpr


def roc_chart(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str,
              point: tuple[float, float] | None = None) -> np.ndarray:
    ax = _Axes(width=620, height=460, left=70)
    ticks = np.linspace(0, 1, 6)
    ax.frame(title, "false-reject rate (OK parts failed)", "catch rate", ticks, ticks, "{:.0%}", "{:.0%}")
    cv2.line(ax.canvas, ax.px(0, 0), ax.px(1, 1), _GRID, 1, cv2.LINE_AA)
    for j, (name, (fpr, tpr)) in enumerate(curves.items()):
        pts = np.array([ax.px(a, b) for a, b in zip(fpr, tpr)], np.int32)
        # The first curve (the model of the report) thickest: one drawn over it still shows it.
        cv2.polylines(ax.canvas, [pts], False, _SERIES[j % 6], 5 if j == 0 else 2, cv2.LINE_AA)
    if point is not None:
        cv2.circle(ax.canvas, ax.px(*point), 6, _INK, 2, cv2.LINE_AA)
        _text(ax.canvas, "stored threshold", (ax.px(*point)[0] + 10, ax.px(*point)[1] + 12), 0.42)
    ax.legend([(name, _SERIES[j % 6]) for j, name in enumerate(curves)], lower_right=True)
    return ax.canvas


def line_chart(x: list[float], series: dict[str, list[float]], title: str, x_label: str, y_label: str,
               percent: bool = False, integer_x: bool = False, x_format: str = "{:g}") -> np.ndarray:
    values = [v for vs in series.values() for v in vs if v is not None and np.isfinite(v)]
    y_ticks = nice_ticks(min(values + [0.0]), max(values + [1e-9]) * 1.05)
    x_ticks = nice_ticks(min(x), max(x), n=min(8, max(2, len(x))), integer=integer_x)
    x_ticks = x_ticks[(x_ticks >= min(x)) & (x_ticks <= max(x) + 1e-9)]
    ax = _Axes(x_range=(min(x), max(x) if max(x) > min(x) else min(x) + 1),
               y_range=(float(y_ticks[0]), float(y_ticks[-1])))
    ax.frame(title, x_label, y_label, x_ticks, y_ticks, fmt_x=x_format, fmt_y="{:.0%}" if percent else "{:g}")
    for j, (name, vs) in enumerate(series.items()):
        pts = np.array([ax.px(a, b) for a, b in zip(x, vs) if b is not None and np.isfinite(b)], np.int32)
        if len(pts):
            cv2.polylines(ax.canvas, [pts], False, _SERIES[j % 6], 2, cv2.LINE_AA)
            for p in pts:
                cv2.circle(ax.canvas, tuple(int(v) for v in p), 3, _SERIES[j % 6], -1, cv2.LINE_AA)
    ax.legend([(name, _SERIES[j % 6]) for j, name in enumerate(series)])
    return ax.canvas


def interval_chart(rows: list[tuple[str, float, list[float] | None, float | None]], title: str) -> np.ndarray:
    """Horizontal rates with their 95 % intervals; (name, rate, [low, high], target line)."""
    ax = _Axes(height=70 + 60 * len(rows), left=150, y_range=(0, len(rows)), bottom=50)
    ticks = np.linspace(0, 1, 11)
    ax.frame(title, "rate", "", ticks, [], "{:.0%}")
    for i, (name, rate, ci, target) in enumerate(rows):
        y = ax.px(0, len(rows) - i - 0.5)[1]
        _text(ax.canvas, name, (ax.left - 10, y), 0.45, anchor="right")
        if ci:
            cv2.line(ax.canvas, (ax.px(ci[0], 0)[0], y), (ax.px(ci[1], 0)[0], y), _SERIES[i % 6], 3)
            for end in ci:
                cv2.line(ax.canvas, (ax.px(end, 0)[0], y - 8), (ax.px(end, 0)[0], y + 8), _SERIES[i % 6], 2)
        cv2.circle(ax.canvas, (ax.px(rate, 0)[0], y), 6, _SERIES[i % 6], -1, cv2.LINE_AA)
        label = f"{rate:.1%}" + (f" ({ci[0]:.1%}-{ci[1]:.1%})" if ci else "")
        middle = (ci[0] + ci[1]) / 2 if ci else rate  # centred on the interval: clear of the names
        _text(ax.canvas, label, (ax.px(middle, 0)[0], y - 18), 0.42, anchor="center")
        if target is not None:
            x = ax.px(target, 0)[0]
            cv2.line(ax.canvas, (x, y - 16), (x, y + 16), _INK, 1)
            _text(ax.canvas, f"target {target:.1%}", (x, y + 26), 0.38, anchor="center")
    return ax.canvas


def matrix_chart(matrix: np.ndarray, rows: list[str], cols: list[str], title: str) -> np.ndarray:
    """A confusion matrix: counts with each row shaded by its share."""
    cell_w, cell_h, left, top = 130, 44, 170, 70
    h, w = top + cell_h * len(rows) + 20, left + cell_w * len(cols) + 20
    img = np.full((h, w, 3), 255, np.uint8)
    _text(img, title, (10, 16), 0.55)
    _text(img, "model says ->", (left, 44), 0.42, _GRAY)
    for j, col in enumerate(cols):
        _text(img, col[:16], (left + j * cell_w + cell_w // 2, top - 10), 0.45, anchor="center")
    for i, row in enumerate(rows):
        total = max(1, int(matrix[i].sum()))
        _text(img, row[:18], (left - 10, top + i * cell_h + cell_h // 2), 0.45, anchor="right")
        for j in range(len(cols)):
            share = matrix[i, j] / total
            shade = tuple(int(255 - share * (255 - c)) for c in _BLUE)
            x0, y0 = left + j * cell_w, top + i * cell_h
            cv2.rectangle(img, (x0, y0), (x0 + cell_w - 2, y0 + cell_h - 2), shade, -1)
            ink = _WHITE if share > 0.55 else _INK
            _text(img, f"{int(matrix[i, j])}  ({share:.0%})", (x0 + cell_w // 2, y0 + cell_h // 2), 0.45, ink, "center")
    return img


def thumbnail(image: np.ndarray, heat: np.ndarray | None, side: int = 180) -> np.ndarray:
    """The part small, with the model's heatmap over it (red = where it sees a defect)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.dtype != np.uint8:
        image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    scale = side / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    small = cv2.resize(image[:, :, :3], size, interpolation=cv2.INTER_AREA)
    if heat is not None:
        heat = cv2.resize(np.clip(np.asarray(heat, np.float32), 0, 1), size, interpolation=cv2.INTER_LINEAR)
        colored = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        alpha = (0.55 * heat)[:, :, None]
        small = (small * (1 - alpha) + colored * alpha).astype(np.uint8)
    return small
