"""Review at the line: the images of the last parts, and the strip shown while reviewing.

The project's inspection log keeps every verdict but no pixels (a shift of a 5-megapixel
camera would fill a disk). So the newest parts' images are kept here, in memory, keyed
by their inspection id: at most MAX_PARTS parts and MAX_BYTES bytes, oldest out first.
A row of the log whose image has gone says so ("image not kept").
"""

from __future__ import annotations

import threading
from pathlib import Path
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QWidget

from app.ui.inspect.inspect_log import InspectionRecord, _time_text

MAX_PARTS = 500
MAX_BYTES = 512 * 1024 * 1024  # a 5-megapixel camera keeps its last ~30 parts


@dataclass(frozen=True)
class RetainedPart:
    """One part's pixels: the frame as captured and its heatmap at display size.

    A part seen by several views keeps the first view here and the others in *others*,
    so everything that knows one view (review, corrections) reads it unchanged.
    """

    image: np.ndarray  # BGR, as captured (what "this verdict is wrong" stores)
    base: np.ndarray  # the image at display size (the same array when it is small)
    heat: np.ndarray  # uint8 0..255 heatmap at the size of *base*
    others: tuple["RetainedPart", ...] = ()  # views 2.. of the part

    @property
    def nbytes(self) -> int:
        extra = 0 if self.base is self.image else self.base.nbytes
        return self.image.nbytes + extra + self.heat.nbytes + sum(o.nbytes for o in self.others)

    @property
    def view_count(self) -> int:
        return 1 + len(self.others)

    def view(self, index: int) -> "RetainedPart":
        """View *index* (0 = this one) of the part."""
        return self if index == 0 else self.others[index - 1]

    def heat01(self) -> np.ndarray:
        return self.heat.astype(np.float32) / 255.0


def retain(image: np.ndarray, base: np.ndarray, heat01: np.ndarray) -> RetainedPart:
    """A RetainedPart from display layers (heat 0..1 float) at a quarter of the memory."""
    heat = np.clip(np.rint(np.asarray(heat01, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return RetainedPart(image, base, heat)


class PartRing:
    """The newest parts' images, bounded by count and bytes; thread-safe.

    The inspection thread puts, the GUI thread gets.
    """

    def __init__(self, max_parts: int = MAX_PARTS, max_bytes: int = MAX_BYTES) -> None:
        self.max_parts, self.max_bytes = max_parts, max_bytes
        self._parts: OrderedDict[int, RetainedPart] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, key: int, part: RetainedPart) -> None:
        with self._lock:
            old = self._parts.pop(key, None)
            if old is not None:
                self._bytes -= old.nbytes
            self._parts[key] = part
            self._bytes += part.nbytes
            # The newest part always stays, even alone over the byte budget.
            while len(self._parts) > 1 and (len(self._parts) > self.max_parts or self._bytes > self.max_bytes):
                _key, gone = self._parts.popitem(last=False)
                self._bytes -= gone.nbytes

    def get(self, key: int | None) -> RetainedPart | None:
        if key is None:
            return None
        with self._lock:
            return self._parts.get(key)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._parts

    def __len__(self) -> int:
        with self._lock:
            return len(self._parts)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._parts.clear()
            self._bytes = 0


def image_not_kept_text(max_parts: int = MAX_PARTS) -> str:
    return (
        "Image not kept.\nOnly the newest parts' images stay in memory "
        f"(up to {max_parts}); the verdict and score are still in the log."
    )


def review_text(record: InspectionRecord) -> str:
    """What the strip says about the part under review."""
    verdict = record.label if record.label == "PASS" else f"FAIL ({record.defect_class or 'defect'})"
    where = Path(record.file).name if record.file else f"frame {record.frame_index}"
    return f"Reviewing {_time_text(record.at)}, {where}: {verdict}, score {record.score:.3f}, model {record.model_version}"


class ReviewBar(QFrame):
    """Shown above the banner while a past part is on screen: which part, and the way back."""

    back_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("reviewBar")
        self.setStyleSheet(
            "#reviewBar { background: #1f4e79; border-radius: 8px; }"
            " #reviewBar QLabel { color: white; font-size: 13pt; font-weight: bold; }"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(12, 6, 6, 6)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setMinimumWidth(120)
        layout.addWidget(self.label, 1)
        self.back_button = QPushButton("Back to live (Esc)")
        self.back_button.setToolTip("Show the newest part again; the line kept running meanwhile")
        self.back_button.clicked.connect(lambda: self.back_requested.emit())
        layout.addWidget(self.back_button)
        self.hide()

    def show_record(self, record: InspectionRecord, kept: bool) -> None:
        text = review_text(record)
        self.label.setText(text if kept else f"{text} (image not kept)")
        self.show()
