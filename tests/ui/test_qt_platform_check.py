"""Before Qt starts on X11, `lineside` checks the system libraries of Qt's xcb plugin and
prints the exact `apt install` line (the README's) instead of Qt's abort."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from app.cli import gui
from app.cli.gui import APT_INSTALL_LINE, XCB_LIBRARIES, check_qt_platform, xcb_help_message, xcb_will_be_used

ROOT = Path(__file__).resolve().parents[2]


def test_missing_libraries_are_named_with_the_apt_line():
    missing = {"libxcb-cursor.so.0", "libxcb-icccm.so.4"}
    message = check_qt_platform({"DISPLAY": ":0"}, loads=lambda name: name not in missing)
    assert message is not None
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4" in message
    assert f"    {APT_INSTALL_LINE}\n" in message + "\n"
    assert APT_INSTALL_LINE.startswith("sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 ")


def test_a_missing_desktop_library_is_added_to_the_line():
    message = xcb_help_message(["libGL.so.1"])
    assert f"{APT_INSTALL_LINE} libgl1" in message


def test_nothing_is_said_when_everything_loads_or_xcb_is_not_used():
    assert check_qt_platform({"DISPLAY": ":0"}, loads=lambda name: True) is None
    never = lambda name: False  # noqa: E731
    assert check_qt_platform({}, loads=never) is None  # no X display
    assert check_qt_platform({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, loads=never) is None
    assert check_qt_platform({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, loads=never) is not None


def test_which_sessions_use_xcb():
    assert xcb_will_be_used({"DISPLAY": ":0"}, platform="linux")
    assert not xcb_will_be_used({"DISPLAY": ":0"}, platform="win32")
    kde_wayland = {"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland", "XDG_CURRENT_DESKTOP": "KDE"}
    assert not xcb_will_be_used(kde_wayland, platform="linux")
    gnome_wayland = {**kde_wayland, "XDG_CURRENT_DESKTOP": "ubuntu:GNOME"}
    assert xcb_will_be_used(gnome_wayland, platform="linux")  # Qt runs on XWayland there
    assert xcb_will_be_used({"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb:nomitshm"}, platform="linux")


def test_the_readme_quick_start_has_the_same_line_above_its_shell_block():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    before_block = quick_start.split("```sh", 1)[0]
    assert f"`{APT_INSTALL_LINE}`" in before_block


def test_the_probe_is_real_and_cheap():
    import time

    start = time.perf_counter()
    missing = gui.missing_xcb_libraries()
    assert time.perf_counter() - start < 1.0
    assert set(missing) <= set(XCB_LIBRARIES) | set(gui.OTHER_LIBRARIES)


def test_the_table_covers_what_the_installed_plugin_links_against():
    pytest.importorskip("PySide6")
    import PySide6

    tool = shutil.which("objdump") or shutil.which("readelf")
    qt = Path(PySide6.__file__).parent / "Qt"
    plugin = qt / "plugins" / "platforms" / "libqxcb.so"
    if tool is None or not plugin.is_file():
        pytest.skip("needs objdump or readelf and PySide6's libqxcb.so (Linux)")
    needed: set[str] = set()
    for binary in (plugin, *sorted((qt / "lib").glob("libQt6XcbQpa.so*"))[:1]):
        args = [tool, "-p", str(binary)] if tool.endswith("objdump") else [tool, "-d", str(binary)]
        output = subprocess.run(args, capture_output=True, text=True, check=True).stdout
        needed |= set(re.findall(r"NEEDED\s+(?:Shared library: \[)?([\w.+-]+)", output))
    system = {n for n in needed if not n.startswith("libQt6") and n not in
              {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libpthread.so.0", "libdl.so.2"}}
    assert system, "no NEEDED entries read"
    assert system <= set(XCB_LIBRARIES) | set(gui.OTHER_LIBRARIES), system - set(XCB_LIBRARIES) - set(gui.OTHER_LIBRARIES)
