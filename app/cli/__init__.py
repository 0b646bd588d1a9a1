"""The `lineside` command.

Each group of sub-commands lives in its own module with a `register(subparsers)`
function. Handlers import heavy things (torch, Qt) inside the handler, so that
`lineside inspect` on a station never loads torch.
"""

from __future__ import annotations

import argparse
import sys

from app.core.errors import LinesideError
from app.core.trainer_command import trainer_command  # noqa: F401  (kept for callers of app.cli)

COMMAND_MODULES = ("app.cli.data", "app.cli.models", "app.cli.inspect", "app.cli.train", "app.cli.speed",
                   "app.cli.trust", "app.cli.plant_view", "app.cli.run", "app.cli.plc_sim", "app.cli.plant",
                   "app.cli.worker")


def build_parser() -> argparse.ArgumentParser:
    import importlib

    parser = argparse.ArgumentParser(
        prog="lineside",
        description="Quality inspection at the production line. With no command, opens the desktop app.",
    )
    parser.add_argument("--demo", action="store_true", help="open the desktop app on the generated demo project")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a module not written yet, or an edition without it
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from app.cli.gui import run_gui  # Qt is imported only when the app opens

            return run_gui(demo=args.demo)
        return int(args.handler(args) or 0)
    except LinesideError as exc:
        print(f"lineside: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
