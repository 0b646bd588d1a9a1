"""Entry point of the frozen Lineside app, both editions.

One executable is the desktop app (no arguments), the command line (`lineside inspect
...`) and the trainer child process (`Lineside train PROJECT --progress json`, started
by the app through app.cli.trainer_command). Everything is routed to app.cli.main.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def _give_missing_streams_a_sink() -> None:
    # A windowed Windows executable started from Explorer has no stdout/stderr
    # (sys.stdout is None); the first print or warning would raise. Started by the app
    # as the trainer child, it does get pipes, and those are kept.
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, "w", encoding="utf-8"))


def _log_name(argv: list[str]) -> str:
    # One log file per kind of process: two processes rotating one file collide on Windows.
    if not argv or argv[0].startswith("-"):
        return "lineside"
    return "lineside-trainer" if argv[0] == "train" else "lineside-cli"


def main() -> int:
    multiprocessing.freeze_support()  # a spawned worker re-enters this executable
    _give_missing_streams_a_sink()
    argv = sys.argv[1:]
    from app.cli import main as cli_main

    try:
        return cli_main(argv)
    except Exception:
        # A windowed app has no console to show a traceback: keep it in the log folder.
        import logging

        from app.core.userdirs import setup_logging

        path = setup_logging(_log_name(argv))
        logging.getLogger("lineside").exception("unhandled error")
        print(f"lineside: unexpected error; details in {path}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
