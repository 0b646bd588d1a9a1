"""The views of a part at this station: what each one is, kept in the project.

A station may look at one part from up to four positions (top, side...). Each view is
a frame source (the simulated line, a camera by index, or a hot folder); one trigger
captures them all and the part FAILs if any view fails (app.core.line_session). The
list is a project setting, so the station opens with the views it was set up with.

View 1 is also the workspace's "Source" picker: with one view the Inspect workspace
looks and behaves as it always did (a camera index from the Capture settings, a hot
folder asked for at Start), unless the views dialog gave view 1 its own index or folder.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from app.core.line_session import MAX_VIEWS

VIEWS_SETTING = "inspect/views"
KINDS = (("simulated", "Simulated line"), ("camera", "Camera"), ("folder", "Hot folder…"))
KIND_KEYS = tuple(key for key, _text in KINDS)


@dataclass(frozen=True)
class ViewSpec:
    """One view: its name on the screen and where its frames come from."""

    name: str
    kind: str = "simulated"  # one of KIND_KEYS
    camera: int | None = None  # camera index; None: view 1 takes the Capture camera's index
    folder: str = ""  # hot folder; "": asked for at Start

    def describe(self) -> str:
        """Where the frames come from, in a few words (the views dialog, the log)."""
        if self.kind == "camera":
            return "Camera" if self.camera is None else f"Camera {self.camera}"
        if self.kind == "folder":
            return f"Folder {Path(self.folder).name}" if self.folder else "Hot folder (asked at Start)"
        return "Simulated line"


def default_name(index: int) -> str:
    return f"View {index + 1}"


def _spec_from(raw: Any, index: int) -> ViewSpec | None:
    """A ViewSpec from what the setting held; None for anything unusable (hand-edited, older)."""
    if not isinstance(raw, dict):
        return None
    kind = raw.get("kind") if raw.get("kind") in KIND_KEYS else "simulated"
    name = str(raw.get("name") or "").strip() or default_name(index)
    camera = raw.get("camera")
    camera = int(camera) if isinstance(camera, (int, float)) and not isinstance(camera, bool) and camera >= 0 else None
    folder = raw.get("folder") if isinstance(raw.get("folder"), str) else ""
    return ViewSpec(name[:40], kind, camera, folder)


def load_views(project) -> list[ViewSpec]:
    """The project's views (at least one, at most MAX_VIEWS)."""
    raw = project.get_setting(VIEWS_SETTING) if project is not None else None
    views = [s for i, item in enumerate(raw if isinstance(raw, list) else []) if (s := _spec_from(item, i))]
    return views[:MAX_VIEWS] or [ViewSpec(default_name(0))]


def save_views(project, views: list[ViewSpec]) -> None:
    if project is not None:
        project.set_setting(VIEWS_SETTING, [asdict(v) for v in views[:MAX_VIEWS]])


def with_first_kind(views: list[ViewSpec], kind: str) -> list[ViewSpec]:
    """The views with view 1's source kind set (the workspace's Source picker)."""
    return [replace(views[0], kind=kind), *views[1:]]


def duplicate_sources(views: list[ViewSpec]) -> str | None:
    """Why these views cannot run together (two views on one camera or folder), or None."""
    seen: dict[tuple, str] = {}
    for view in views:
        key = None
        if view.kind == "camera" and view.camera is not None:
            key = ("camera", view.camera)
        elif view.kind == "folder" and view.folder:
            key = ("folder", str(Path(view.folder)))
        if key is not None:
            if key in seen:
                return f"{seen[key]} and {view.name} use the same {view.describe().lower()}."
            seen[key] = view.name
    return None


def make_view_source(spec: ViewSpec, index: int, seed: int | None = None):
    """The frame source of view *index* (2.. of the part); a hot folder is opened here so
    that files from now on are parts. Raises LinesideError when it cannot be used."""
    from app.core.camera import HotFolderSource, OpenCVCamera, SimulatedCamera
    from app.core.errors import LinesideError

    if spec.kind == "camera":
        source = OpenCVCamera(spec.camera if spec.camera is not None else index)
    elif spec.kind == "folder":
        if not spec.folder or not Path(spec.folder).is_dir():
            raise LinesideError(f"{spec.name}: choose its hot folder in Views… ({spec.folder or 'none set'}).")
        source = HotFolderSource(Path(spec.folder))
        source.open()
    else:
        base = int(time.time()) % 10_000 if seed is None else seed
        source = SimulatedCamera(seed=base + 7919 * index)  # each view its own parts
        source.name = f"Simulated line {index + 1}"
    return source
