"""The installer keeps GTK out of the bundle: Qt's GTK 3 theme plugin is dropped by the
local PySide6.QtGui hook before PyInstaller's analysis (which would otherwise follow it
to libgtk-3.so.0), and spec_common stops a build whose binaries still hold GTK.

PyInstaller itself is not needed: its hook helper and build classes are stubbed, so
the filtering is tested on a list of what the real helper returns on Linux.

The Windows installer's start-up task (installer/windows): its XML as the installer
renders it, the placeholders the NSIS script fills, the task's removal on uninstall,
the example arguments file as a `lineside run` command, and (with makensis) the script.
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


# -- the Windows start-up task (installer/windows) -----------------------------------------

WINDOWS = INSTALLER / "windows"
TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
# What the installer fills in on a PC; "&" and a non-ASCII letter, which folder names may hold.
PLACEHOLDER_VALUES = {
    "LINESIDE_CLI": r"C:\Program Files\Lineside & Co\lineside-cli.exe",
    "STATION_ARGS": r"C:\ProgramData\Lineside\station.args",
    "STATION_HOME": r"C:\ProgramData\Lineside\Prüfstand",
}


def _nsis_script() -> str:
    return (WINDOWS / "lineside.nsi").read_text(encoding="utf-8")


def _placeholders(text: str) -> set[str]:
    import re

    return set(re.findall(r"\{\{(\w+)\}\}", text))


def _render_task_xml(template: str) -> bytes:
    """What the installer's RenderTemplate writes: UTF-16 LE with a BOM, a declaration,
    the placeholders replaced (XML-escaped)."""
    from xml.sax.saxutils import escape

    for name, value in PLACEHOLDER_VALUES.items():
        template = template.replace("{{%s}}" % name, escape(value))
    return b"\xff\xfe" + ('<?xml version="1.0" encoding="UTF-16"?>\r\n' + template).encode("utf-16-le")


def test_the_station_task_xml_is_well_formed_and_runs_lineside_run():
    import xml.etree.ElementTree as ET

    raw = (WINDOWS / "lineside-station-task.xml").read_bytes()
    template = raw.decode("ascii")  # the installer reads the template as plain ASCII lines
    assert max(len(line) for line in template.splitlines()) < 1000  # under NSIS's string length
    assert _placeholders(template) == set(PLACEHOLDER_VALUES)
    task = ET.fromstring(_render_task_xml(template))
    assert task.tag == "{%s}Task" % TASK_NS["t"]
    command = task.find("t:Actions/t:Exec/t:Command", TASK_NS).text
    arguments = task.find("t:Actions/t:Exec/t:Arguments", TASK_NS).text
    assert command == f'"{PLACEHOLDER_VALUES["LINESIDE_CLI"]}"'  # the "&" came through escaped and back
    assert arguments.split()[0] == "run" and f'@"{PLACEHOLDER_VALUES["STATION_ARGS"]}"' in arguments
    assert task.find("t:Actions/t:Exec/t:WorkingDirectory", TASK_NS).text == PLACEHOLDER_VALUES["STATION_HOME"]
    # At system start-up, restarted when it stops, never stopped for running long.
    assert task.find("t:Triggers/t:BootTrigger", TASK_NS) is not None
    assert task.find("t:Triggers/t:TimeTrigger/t:Repetition/t:Interval", TASK_NS).text == "PT1M"
    settings = task.find("t:Settings", TASK_NS)
    assert settings.find("t:MultipleInstancesPolicy", TASK_NS).text == "IgnoreNew"  # never two stations
    assert settings.find("t:ExecutionTimeLimit", TASK_NS).text == "PT0S"
    assert 1 <= int(settings.find("t:RestartOnFailure/t:Count", TASK_NS).text) <= 255  # the schema's range
    assert task.find("t:Principals/t:Principal/t:UserId", TASK_NS).text == "S-1-5-18"  # SYSTEM unless /RU says


def test_the_installer_fills_every_placeholder_and_removes_the_task_on_uninstall():
    script = _nsis_script()
    for name in ("lineside-station-task.xml", "station.args"):
        assert f'File "{name}"' in script and (WINDOWS / name).is_file()
    filled = _placeholders(script)
    for name in ("lineside-station-task.xml", "station.args"):
        assert _placeholders((WINDOWS / name).read_text(encoding="ascii")) <= filled
    install, uninstall = script.split('Section "Uninstall"')
    assert '/Create /F /TN "${STATION_TASK}" /XML' in install and "/RU \"$StationUser\"" in install
    assert 'Section /o "Start the station with Windows" SecStation' in install  # optional, off by default
    uninstall = uninstall.split("SectionEnd")[0]
    delete_task = uninstall.index('/Delete /TN "${STATION_TASK}" /F')
    assert uninstall.index('/End /TN "${STATION_TASK}"') < delete_task  # ended before it goes
    assert delete_task < uninstall.index('Delete "$INSTDIR\\lineside-cli.exe"')  # before its program goes


def test_the_example_arguments_file_becomes_a_lineside_run_command(tmp_path):
    from app.cli import build_parser
    from app.cli.run import read_args_file

    example = (WINDOWS / "station.args").read_text(encoding="ascii")
    example = example.replace("{{STATION_HOME}}", PLACEHOLDER_VALUES["STATION_HOME"])
    untouched = tmp_path / "untouched.args"
    untouched.write_bytes(b"\xff\xfe" + example.encode("utf-16-le"))  # as the installer writes it
    assert read_args_file(untouched) == ["--home", PLACEHOLDER_VALUES["STATION_HOME"]]
    # An admin uncomments the project and a camera, and adds a view with a space in its folder.
    edited = example.replace("#C:\\Lineside", "C:\\Lineside").replace("#--source camera:0", "--source camera:0")
    edited += '--source "folder:D:\\camera 2"\n'
    path = tmp_path / "station.args"
    path.write_text(edited, encoding="utf-8-sig")  # Notepad's UTF-8
    args = build_parser().parse_args(["run", f"@{path}", "--quiet"])
    assert str(args.project) == r"C:\Lineside\projects\washers"
    assert args.source == ["camera:0", r"folder:D:\camera 2"]
    assert str(args.home) == PLACEHOLDER_VALUES["STATION_HOME"] and args.quiet


@pytest.mark.skipif(not __import__("shutil").which("makensis"), reason="makensis (NSIS) is not installed")
def test_the_nsis_script_compiles(tmp_path):
    import subprocess

    payload = tmp_path / "dist"
    payload.mkdir()
    for name in ("Lineside.exe", "lineside-cli.exe"):
        (payload / name).write_bytes(b"MZ")
    out = tmp_path / "Lineside-station-0.0.0-setup.exe"
    done = subprocess.run(["makensis", "-V2", "-WX", "-DEDITION=station", f"-DSOURCE_DIR={payload}",
                           f"-DOUT_FILE={out}", str(WINDOWS / "lineside.nsi")],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.stat().st_size > 0
