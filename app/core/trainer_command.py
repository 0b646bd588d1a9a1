"""The command line that starts the trainer (or another `lineside` command) as a child process.

A frozen app has no Python interpreter beside it: sys.executable is the app itself,
which dispatches on its first argument, so the same call works in both cases.
"""

from __future__ import annotations

import sys


def lineside_command(*args: str) -> list[str]:
    if getattr(sys, "frozen", False):
        return [sys.executable, *args]
    return [sys.executable, "-m", "app", *args]


def trainer_command(*args: str) -> list[str]:
    return lineside_command("train", *args)
