"""The plain records the project store hands out (frozen: a snapshot, not a live row)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

OK = "ok"  # the verdict of a good part


@dataclass(frozen=True)
class ImageRecord:
    id: int
    sha256: str
    path: Path  # absolute
    filename: str
    source: str
    captured_at: datetime
    width: int
    height: int
    tags: dict[str, str] = field(default_factory=dict)
    split: str | None = None


@dataclass(frozen=True)
class PreparedImage:
    """An image file already stored by content but not yet recorded in the database."""

    sha256: str
    rel_path: str  # relative to the project folder
    filename: str
    width: int
    height: int


@dataclass(frozen=True)
class Label:
    id: int
    image_id: int
    verdict: str | None  # OK, a class name, or None when the label was cleared
    mask_path: Path | None
    author: str
    created_at: datetime


@dataclass(frozen=True)
class DefectClass:
    name: str
    color: str  # "#rrggbb"
    key: int | None  # keyboard shortcut 1-9


@dataclass(frozen=True)
class ModelVersion:
    version: str
    status: str  # candidate | production | retired
    created_at: datetime
    path: Path  # the model folder; the ONNX file is path / "model.onnx"
    threshold: float
    metrics: dict
    report: dict

    @property
    def onnx_path(self) -> Path:
        return self.path / "model.onnx"
