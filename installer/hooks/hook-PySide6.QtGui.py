# PySide6.QtGui as PyInstaller's own hook collects it, less Qt's GTK 3 platform theme
# plugin (PySide6/Qt/plugins/platformthemes/libqgtk3.so). Local hooks (hookspath) take
# precedence over PyInstaller's.
#
# Why: libqgtk3.so links GTK 3. On a build PC with GTK 3 installed PyInstaller follows
# that link and bundles libgtk-3.so.0, libgdk-3.so.0 and their kin, which in turn need
# cairo, pango, atk... that spec_common leaves to the system and the .deb does not
# depend on: make_deb.sh's library check fails the build (and a bundled GTK would clash
# with the system's). Lineside uses Qt's Fusion style and Qt's own dialogs; nothing asks
# for the GTK theme. Dropping the plugin here, before the analysis, means its
# dependencies are never looked at, rather than collected and then trimmed.
# spec_common.build() checks afterwards that no GTK library was collected.
from PyInstaller.utils.hooks.qt import add_qt6_dependencies

EXCLUDED_PLUGINS = ("libqgtk3", "qgtk3")  # file name stems: Linux, and any other platform


def _excluded(source: str) -> bool:
    name = source.replace("\\", "/").rsplit("/", 1)[-1]
    return name.split(".", 1)[0] in EXCLUDED_PLUGINS


hiddenimports, binaries, datas = add_qt6_dependencies(__file__)
binaries = [entry for entry in binaries if not _excluded(entry[0])]
