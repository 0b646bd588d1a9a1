"""The installer keeps GTK out of the bundle: Qt's GTK 3 theme plugin is dropped by the
local PySide6.QtGui hook before PyInstaller's analysis (which would otherwise follow it
to libgtk-3.so.0), and spec_common stops a build whose binaries still hold GTK.

PyInstaller itself is not needed: its hook helper and build classes are stubbed, so
the filtering is tested on a list of what the real helper returns on Linux.
"""

from __future__ import annotations

import runpy
import sys
import types
from pathlib import Path

import pytest

INSTALLER = Path(__file__).resolve().parents[1] / "installer"
QT = "PySide6/Qt/plugins"
COLLECTED = [  # (source, destination folder) as add_qt6_dependencies returns them
    (f"/venv/site-packages/{QT}/platformthemes/libqgtk3.so", f"{QT}/platformthemes"),
    (f"/venv/site-packages/{QT}/platformthemes/libqxdgdesktopportal.so", f"{QT}/platformthemes"),
    (f"/venv/site-packages/{QT}/platforms/libqxcb.so", f"{QT}/platforms"),
    (f"/venv/site-packages/{QT}/imageformats/libqjpeg.so", f"{QT}/imageformats"),
]


def _stub(monkeypatch, name: str, **attrs) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    monkeypatch.setitem(sys.modules, name, module)


def test_the_qtgui_hook_drops_only_the_gtk_theme_plugin(monkeypatch):
    for name in ("PyInstaller", "PyInstaller.utils", "PyInstaller.utils.hooks"):
        _stub(monkeypatch, name)
    _stub(monkeypatch, "PyInstaller.utils.hooks.qt",
          add_qt6_dependencies=lambda hook_file: (["PySide6.QtCore"], list(COLLECTED), [("qt.conf", ".")]))
    hook = runpy.run_path(str(INSTALLER / "hooks" / "hook-PySide6.QtGui.py"))
    assert hook["binaries"] == COLLECTED[1:]
    assert hook["hiddenimports"] == ["PySide6.QtCore"] and hook["datas"] == [("qt.conf", ".")]


def test_a_build_with_gtk_in_its_binaries_is_stopped(monkeypatch):
    for name in ("PyInstaller", "PyInstaller.building", "PyInstaller.utils"):
        _stub(monkeypatch, name)
    _stub(monkeypatch, "PyInstaller.building.build_main", COLLECT=None, EXE=None, PYZ=None, Analysis=None)
    _stub(monkeypatch, "PyInstaller.utils.hooks", collect_submodules=lambda *a, **k: [])
    monkeypatch.syspath_prepend(str(INSTALLER))
    monkeypatch.delitem(sys.modules, "spec_common", raising=False)
    import spec_common

    clean = [("libQt6Gui.so.6", "/x/libQt6Gui.so.6", "BINARY"), ("cv2/cv2.abi3.so", "/x/cv2.so", "BINARY")]
    spec_common.check_no_gtk(clean)  # nothing to say
    leaked = clean + [("libgtk-3.so.0", "/usr/lib/libgtk-3.so.0", "BINARY"),
                      ("libgdk-3.so.0", "/usr/lib/libgdk-3.so.0", "BINARY")]  # fmt: skip
    collected = r"GTK libraries were collected into the bundle \(libgdk-3.so.0, libgtk-3.so.0\)"
    with pytest.raises(SystemExit, match=collected):
        spec_common.check_no_gtk(leaked)
    assert spec_common.forbidden([(f"{QT}/platformthemes/libqgtk3.so", "", "BINARY")]) == [
        f"{QT}/platformthemes/libqgtk3.so"]  # fmt: skip
    monkeypatch.delitem(sys.modules, "spec_common", raising=False)
