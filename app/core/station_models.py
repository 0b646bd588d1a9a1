"""A plant station's own copies of the models its line runs.

The project's `models/` folder sits on a network share; a station that loaded its model
from there would stop when the share goes away, and could load a file that changed
after the deploy. So a station copies the deployed version into its own folder first:

    <station folder>/models/<version>.partial   the copy being made
    <station folder>/models/<version>           a checked copy (model.onnx has the deployed hash)
    <station folder>/current.json               the copy it runs, with its threshold and settings

A copy whose model.onnx does not have the hash recorded at the deploy is refused
(ModelRefused) and removed. current.json lets a restarted station judge parts with the
same model, the same threshold and the same precision and threads, before (or without)
reaching the project. The last KEEP_VERSIONS copies stay (a roll-back needs no copy).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from app.core.atomic import write_text
from app.core.errors import LinesideError
from app.core.records import ModelVersion
from app.core.runtime import INT8_FILENAME, Inspector, file_sha256, inspector_for_model

MODEL_FILE = "model.onnx"
COPIED_FILES = (MODEL_FILE, INT8_FILENAME)  # what the runtime reads from a model folder
KEEP_VERSIONS = 3
PARTIAL_SUFFIX = ".partial"
_SAFE_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,49}")


class ModelRefused(LinesideError):
    """The copy of a deployed model is not the file that was deployed."""


@dataclass(frozen=True)
class LocalModel:
    """A checked local copy and how to load it."""

    version: str
    sha256: str
    threshold: float
    precision: str
    threads: int
    folder: Path
    lanes: int = 1

    def model_version(self) -> ModelVersion:
        return ModelVersion(self.version, "production", datetime.now(timezone.utc), self.folder, self.threshold,
                            {}, {})  # fmt: skip


class StationModels:
    """The model copies in a station's *folder*."""

    def __init__(self, folder: Path | str) -> None:
        self.folder = Path(folder)
        self.models_dir = self.folder / "models"
        self.current_file = self.folder / "current.json"

    def fetch(self, source: Path, version: str, sha256: str) -> Path:
        """The checked local copy of *version* (copied from *source*, the model folder on
        the share, unless a checked copy is here already). ModelRefused on a hash mismatch,
        LinesideError when the share cannot be read."""
        if not _SAFE_VERSION.fullmatch(version):
            raise ModelRefused(f"model version {version!r} is not a name a station copies into a folder.")
        local = self.models_dir / version
        if (local / MODEL_FILE).is_file() and file_sha256(local / MODEL_FILE) == sha256:
            os.utime(local)  # used again: the newest for prune()
            return local
        partial = self.models_dir / (version + PARTIAL_SUFFIX)
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        try:
            for name in COPIED_FILES:
                if name == MODEL_FILE or (source / name).is_file():
                    _copy_synced(source / name, partial / name)
            got = file_sha256(partial / MODEL_FILE)
            if got != sha256:
                raise ModelRefused(
                    f"the copy of model {version} has the hash {got[:12]}..., not {sha256[:12]}... as deployed: "
                    f"{source / MODEL_FILE} changed after the deploy (or the copy was damaged). Deploy it again "
                    "if the new file is meant.")
            shutil.rmtree(local, ignore_errors=True)
            os.replace(partial, local)
        except OSError as exc:
            raise LinesideError(f"model {version} cannot be copied from {source}: {exc.strerror or exc}.") from exc
        finally:
            shutil.rmtree(partial, ignore_errors=True)
        return local

    def load(self, model: LocalModel) -> Inspector:
        """An Inspector on the local copy, loaded the way the project loads its models."""
        return inspector_for_model(model.model_version(), model.precision, model.threads, model.lanes)

    def remember(self, model: LocalModel) -> None:
        """Record *model* as the one this station runs (current.json)."""
        data = asdict(model)
        data["folder"] = model.folder.name  # relative: the station folder may move
        write_text(self.current_file, json.dumps(data, indent=2) + "\n")

    def current(self) -> LocalModel | None:
        """The copy this station ran last, if it is still here and unchanged."""
        try:
            data = json.loads(self.current_file.read_text(encoding="utf-8"))
            model = LocalModel(str(data["version"]), str(data["sha256"]), float(data["threshold"]),
                               str(data["precision"]), int(data["threads"]), self.models_dir / data["folder"],
                               int(data.get("lanes", 1)))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        path = model.folder / MODEL_FILE
        if not path.is_file() or file_sha256(path) != model.sha256:
            return None
        return model

    def prune(self, keep: list[str], keep_versions: int = KEEP_VERSIONS) -> list[str]:
        """Delete the copies beyond the *keep_versions* newest (never those in *keep*)
        and leftover partial copies; the versions deleted."""
        if not self.models_dir.is_dir():
            return []
        copies = []
        for path in self.models_dir.iterdir():
            if path.name.endswith(PARTIAL_SUFFIX):
                shutil.rmtree(path, ignore_errors=True)
            elif path.is_dir():
                copies.append(path)
        copies.sort(key=lambda p: p.stat().st_mtime, reverse=True)  # newest first
        kept = sum(1 for p in copies if p.name in keep)
        deleted = []
        for path in copies:
            if path.name in keep:
                continue
            if kept < keep_versions:
                kept += 1
                continue
            shutil.rmtree(path, ignore_errors=True)
            deleted.append(path.name)
        return deleted


def _copy_synced(source: Path, target: Path) -> None:
    """Copy and flush to disk: a copy the station relies on after a power cut."""
    shutil.copyfile(source, target)
    with open(target, "rb+") as handle:
        os.fsync(handle.fileno())
