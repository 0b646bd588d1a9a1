"""Which system libraries a frozen Lineside folder still needs, and from which packages.

PyInstaller bundles most shared libraries, but leaves out the ones that must come from
the host (glibc, GL/EGL drivers, and whatever is not on the build machine, such as some
xcb helpers the Qt xcb plugin loads). Those have to be in the .deb's Depends line.

    python installer/linux/system_libs.py ONEDIR [--depends "libfoo1, libbar2"]

Prints each needed soname with the Debian package that owns it on this machine. With
--depends, exits 1 when a needed library's package is not in that list; a library not
installed on this machine is flagged for a check by hand.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

# The C library and the loader come with every system; Depends names libc6 by version.
ALWAYS_THERE = re.compile(r"^(libc|libm|libdl|libpthread|librt|libutil|ld-linux.*|libresolv|libanl)\.so")


def _is_elf(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"\x7fELF"
    except OSError:
        return False


def needed_sonames(path: Path) -> set[str]:
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=False).stdout
    return set(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out))


def bundle_needs(onedir: Path) -> dict[str, set[str]]:
    """{soname needed from the system: {bundled files needing it}}."""
    files = [p for p in onedir.rglob("*") if p.is_file() and not p.is_symlink() and _is_elf(p)]
    bundled = {p.name for p in onedir.rglob("*")}
    needs: dict[str, set[str]] = {}
    for path in files:
        for soname in needed_sonames(path):
            if soname in bundled or ALWAYS_THERE.match(soname):
                continue
            needs.setdefault(soname, set()).add(str(path.relative_to(onedir)))
    return needs


def max_glibc(onedir: Path) -> str:
    """The newest GLIBC symbol version any bundled file asks for (the libc6 floor)."""
    best = (0, 0)
    for path in onedir.rglob("*"):
        if not (path.is_file() and not path.is_symlink() and _is_elf(path)):
            continue
        out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True, check=False).stdout
        for major, minor in re.findall(r"GLIBC_(\d+)\.(\d+)", out):
            best = max(best, (int(major), int(minor)))
    return f"{best[0]}.{best[1]}"


def owning_package(soname: str) -> str | None:
    result = subprocess.run(["dpkg", "-S", f"*/{soname}"], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        return None
    package = result.stdout.splitlines()[0].split(":", 1)[0]
    return package.split(",")[0].strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onedir", type=Path)
    parser.add_argument("--depends", help="the Depends line to check against")
    args = parser.parse_args(argv)
    declared = {
        re.split(r"[\s(]", alternative.strip())[0]
        for clause in (args.depends or "").split(",")
        for alternative in clause.split("|")
        if alternative.strip()
    }
    problems = 0
    for soname, users in sorted(bundle_needs(args.onedir).items()):
        package = owning_package(soname)
        example = sorted(users)[0]
        status = ""
        if args.depends is not None:
            if package is None:
                status = "  (not installed here: check by hand)"
            elif package not in declared:
                status, problems = "  <- MISSING from Depends", problems + 1
        print(f"{soname:32} {package or '?':24} (e.g. {example}){status}")
    print(f"newest glibc symbol needed: GLIBC_{max_glibc(args.onedir)}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
