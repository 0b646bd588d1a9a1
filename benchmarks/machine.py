"""What a benchmark ran on, as markdown bullet lines for a results file.

Figures without the machine, the load on it and the exact command are not comparable
from one run to the next, so every results file carries them.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import datetime
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024**2  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))} ({platform.platform()})"
    except OSError:
        pass
    return platform.platform()


def load_average() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):  # not on Windows
        return "n/a"


def command_line(script: str) -> str:
    """The command as typed from the repository root (no paths of this machine: an
    absolute path argument is written as DIR)."""
    return " ".join(["python", script, *("DIR" if os.path.isabs(a) else shlex.quote(a) for a in sys.argv[1:])])


def versions(*modules: str) -> str:
    parts = [f"Python {platform.python_version()}"]
    for name in modules:
        try:
            module = __import__(name)
            parts.append(f"{name} {getattr(module, '__version__', '?')}")
        except ImportError:
            parts.append(f"{name} not installed")
    return ", ".join(parts)


def machine_lines(script: str, modules: tuple[str, ...], load_at_start: str | None = None) -> list[str]:
    ram = ram_gib()
    lines = [
        f"- Date: {datetime.now().isoformat(timespec='seconds')}",
        f"- Command: `{command_line(script)}`",
        f"- CPU: {cpu_model()}, {os.cpu_count()} logical cores",
        f"- RAM: {ram:.1f} GiB" if ram is not None else "- RAM: unknown",
        f"- OS: {os_name()}",
        f"- Software: {versions(*modules)}",
    ]
    if load_at_start is not None:
        lines.append(f"- Load average (1, 5, 15 min) at start: {load_at_start}; at end: {load_average()}")
    return lines
