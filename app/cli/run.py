"""`lineside run`: the unattended station. `lineside plc-user`: add an OPC UA user.

    lineside run PROJECT --source camera:0 [--source folder:DIR | sim ...]
                 [--plc modbus://127.0.0.1:5020 [--modbus-base N] | opcua://127.0.0.1:4840]
                 [--max-parts N] [--rate HZ] [--home DIR]
                 [--station NAME --line LINE [--station-dir DIR]]
    lineside run @FILE          # the arguments from a file (the Windows start-up task's way)

One LineSession (app.core.line_session), headless: several --source are the views of
one part (up to 4; the part FAILs if any view fails). With --plc the PLC triggers
(app.core.plc); without, the station runs free (every file of a hot folder, every part
of the simulated line, or the camera's newest frame at --rate). A lost camera is
reconnected with back-off. SIGTERM or Ctrl+C stops it cleanly: the part in hand is
finished and every result is committed before the process exits, so no acknowledged
result is lost (and none that was judged, unless the disk refuses it). Each
acknowledged result is printed as one line (`--quiet`: none); the log goes to the
rotating log file (`lineside-station.log` in the log folder).

With --station the process is one station of a plant (app.core.station_agent): it runs
the model deployed to its line from a checked copy in its own folder, switches to a
newly deployed one between two parts, reports to the plant view, and keeps its results
in a local outbox until the plant database takes them, so it keeps judging while the
database or the share is away.

@FILE reads arguments from FILE (see `read_args_file`): a Windows scheduled task cannot
set environment variables or be edited as comfortably as a systemd environment file,
so the installer's start-up task runs `lineside-cli.exe run @station.args` and the
station is configured in that file (installer/README.md).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from app.cli.signals import SignalStop
from app.core.errors import LinesideError, printable

log = logging.getLogger("lineside.station")

LOG_NAME = "lineside-station"


def register(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser(
        "run",
        help="run the station unattended (cameras, hot folder or simulated line; optional PLC)",
        description="Run the inspection station headless until SIGTERM / Ctrl+C (or --max-parts). "
        "Each --source is one view of the part (camera:N, folder:DIR or sim); with --plc the PLC "
        "triggers over Modbus TCP or OPC UA (see docs/plc.md). @FILE reads arguments from FILE: "
        "one per line, or '--option value'; lines starting with # are comments.",
    )
    _expand_args_files(run)
    run.add_argument("project", type=Path, help="the project folder")
    run.add_argument("--source", action="append", metavar="SPEC", required=True,
                     help="camera:N, folder:DIR or sim[:SEED]; repeat for more views of one part (up to 4)")
    run.add_argument("--plc", metavar="URL",
                     help="modbus://HOST:PORT or opcua://HOST:PORT[/PATH] (opc.tcp:// too); HOST 127.0.0.1 "
                          "unless the PLC is on another machine (docs/plc.md: who can connect)")
    run.add_argument("--max-parts", type=int, metavar="N", help="stop after N parts")
    run.add_argument("--rate", type=float, metavar="HZ",
                     help="free-run: parts per second of the simulated line (0: flat out), or how often a "
                          "camera frame is judged")
    run.add_argument("--model", metavar="VERSION", help="a model version instead of the production model")
    run.add_argument("--threads", type=int, metavar="N", help="CPU threads for the model (default: the project's)")
    run.add_argument("--home", type=Path, metavar="DIR",
                     help="the data folder (logs, OPC UA certificates) for this run, as LINESIDE_HOME; "
                          "for a service account that has no profile of its own")
    plc = run.add_argument_group("PLC")
    plc.add_argument("--handshake", action="store_true",
                     help="start with the result handshake on (the PLC can switch it with HandshakeEnable)")
    plc.add_argument("--trigger-enabled", action="store_true",
                     help="accept triggers before the PLC sets TriggerEnable")
    plc.add_argument("--ack-timeout", type=float, default=5.0, metavar="S",
                     help="handshake: error 7 when a result is not acknowledged in S seconds (default 5)")
    plc.add_argument("--buffer", type=int, default=16, metavar="N", help="handshake: results buffered (default 16)")
    plc.add_argument("--modbus-base", type=int, metavar="N",
                     help="Modbus: the whole map (coils, inputs, registers) starts at address N instead of 0, "
                          "e.g. 1 for a PLC that counts from 1 (docs/plc.md)")
    plc.add_argument("--opcua-secure", action="store_true",
                     help="OPC UA: Basic256Sha256 SignAndEncrypt only, self-signed certificate in the data folder")
    plc.add_argument("--opcua-users", type=Path, metavar="FILE",
                     help="OPC UA: users file (lineside plc-user); anonymous clients are then refused")
    plc.add_argument("--opcua-allow-insecure", action="store_true",
                     help="OPC UA: allow an unencrypted endpoint on a non-loopback address")
    keep = run.add_argument_group("image retention")
    keep.add_argument("--keep-dir", type=Path, metavar="DIR", help="where kept images go (default PROJECT/retained)")
    keep.add_argument("--keep-pass-every", type=int, default=100, metavar="N",
                      help="keep one PASS image in N (0: none; every FAIL image is kept); default 100")
    keep.add_argument("--keep-quota-mb", type=float, default=2048, metavar="MB",
                      help="disk quota for kept images; oldest PASS images go first (default 2048)")
    keep.add_argument("--no-keep", action="store_true", help="keep no images")
    run.add_argument("--commit-interval", type=float, default=0.0, metavar="S",
                     help="wait up to S seconds to batch results into one commit (default 0: group commit)")
    run.add_argument("--quiet", action="store_true", help="print no line per result")
    plant = run.add_argument_group("plant station")
    plant.add_argument("--station", metavar="NAME",
                       help="run as plant station NAME (needs --line): the line's deployed model from a checked "
                            "local copy, switched between two parts when a new one is deployed; heartbeats for "
                            "the plant view; results kept in a local outbox while the database is away")
    plant.add_argument("--line", metavar="LINE", help="the production line the station belongs to (with --station)")
    plant.add_argument("--station-dir", type=Path, metavar="DIR",
                       help="the station's own folder: model copies, outbox, kept images (default: the data "
                            "folder's stations/NAME)")
    run.set_defaults(handler=run_station)

    user = subparsers.add_parser(
        "plc-user",
        help="add or change a user in an OPC UA users file",
        description="Add NAME to the OPC UA users file FILE (created if missing) with a password read "
        "from the terminal (or from stdin when it is not a terminal). Stored as a PBKDF2 hash.",
    )
    user.add_argument("file", type=Path)
    user.add_argument("name")
    user.set_defaults(handler=run_plc_user)


def read_args_file(path: Path) -> list[str]:
    """The arguments in an arguments file (`lineside run @FILE`).

    One argument per line, or `--option value` on one line (split at the first blank:
    the value may hold spaces, a folder path say); `--option=value` works too. Blank
    lines and lines starting with # are skipped; a value in double quotes loses them.
    UTF-8 (with or without BOM) or UTF-16 with BOM: what Notepad and the installer
    write. Arguments read from a file are not expanded again.
    """
    data = path.read_bytes()
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    text = data.decode("utf-16" if utf16 else "utf-8-sig")
    out: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        option = re.fullmatch(r"(-[^\s=]+)(=|\s+)(.*)", line)
        if option is None:  # a flag, or the project folder (spaces and all)
            out.append(_unquote(line))
        elif option.group(2) == "=":
            out.append(f"{option.group(1)}={_unquote(option.group(3))}")
        else:
            out += [option.group(1), _unquote(option.group(3))]
    return out


def _unquote(value: str) -> str:
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def _expand_args_files(parser: argparse.ArgumentParser) -> None:
    """Let *parser* take @FILE arguments, read by read_args_file (argparse's own
    fromfile_prefix_chars reads the locale's code page and knows no comments)."""
    parse = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        if args is not None:
            expanded: list[str] = []
            for arg in args:
                if not (arg.startswith("@") and len(arg) > 1):
                    expanded.append(arg)
                    continue
                path = Path(arg[1:]).expanduser()
                try:
                    expanded += read_args_file(path)
                except OSError as exc:
                    parser.error(f"cannot read the arguments file {printable(path)}: {exc.strerror or exc}")
                except UnicodeDecodeError:
                    parser.error(f"{printable(path)}: an arguments file is UTF-8 or UTF-16 text")
            args = expanded
        return parse(args, namespace)

    parser.parse_known_args = parse_known_args


def parse_plc_url(url: str) -> tuple[str, str, int, str]:
    """(kind, host, port, opc.tcp url) from modbus://HOST:PORT, opcua://... or opc.tcp://..."""
    parsed = urlparse(url)
    scheme = parsed.scheme.lower()
    if scheme not in ("modbus", "opcua", "opc.tcp") or not parsed.hostname:
        raise LinesideError(f"--plc {url}: expected modbus://HOST:PORT or opcua://HOST:PORT.")
    try:
        port = parsed.port
    except ValueError:
        raise LinesideError(f"--plc {url}: the port is not a number.") from None
    if scheme == "modbus":
        from app.core.plc.modbus_server import DEFAULT_PORT

        return "modbus", parsed.hostname, port or DEFAULT_PORT, ""
    port = port or 4840
    path = parsed.path if parsed.path not in ("", "/") else "/lineside/"
    return "opcua", parsed.hostname, port, f"opc.tcp://{parsed.hostname}:{port}{path}"


class _Printer:
    """Prints each acknowledged result (a LineListener, duck-typed: see _listener)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def on_committed(self, results) -> None:
        if self.quiet:
            return
        for r in results:
            ident = r.inspection_id if r.inspection_id is not None else r.seq
            cls = r.defect_class or "-"
            print(f"{ident} {r.label} {cls} score={r.score:.3f} {r.timing.get('total', 0):.1f} ms "
                  f"{printable(r.source)}", flush=True)

    def on_error(self, code: int, message: str) -> None:
        print(f"lineside: error {code}: {printable(message)}", file=sys.stderr, flush=True)

    def on_state(self, state: str) -> None:
        log.info("state: %s", state)

    def on_drift(self, status: dict) -> None:
        if status.get("drifting"):
            print(f"lineside: WARNING the line drifts from the training images: {status['message']}",
                  file=sys.stderr, flush=True)


def _listener(printer: _Printer):
    from app.core.line_session import CallbackListener

    return CallbackListener(on_committed=printer.on_committed, on_error=printer.on_error,
                            on_state=printer.on_state, on_drift=printer.on_drift)


def check_args(args: argparse.Namespace) -> tuple[str, str, int, str] | None:
    """The PLC to serve (parse_plc_url), after the checks that need nothing opened."""
    if len(args.source) > 4:
        raise LinesideError("at most 4 views (--source) per part.")
    if args.rate is not None and args.rate < 0:
        raise LinesideError("--rate is parts per second: 0 (flat out) or more.")
    plc = parse_plc_url(args.plc) if args.plc else None
    if args.station is not None:
        if not (args.line or "").strip():
            raise LinesideError("--station needs --line LINE: the line whose model the station runs.")
        if args.model:
            raise LinesideError("--model does not go with --station: a station runs the model deployed to its "
                                "line (lineside deploy).")
    elif args.line or args.station_dir:
        raise LinesideError("--line and --station-dir go with --station NAME.")
    if args.modbus_base is not None:
        from app.core.plc.modbus_server import MAX_BASE

        if plc is None or plc[0] != "modbus":
            raise LinesideError("--modbus-base applies to a Modbus PLC only (--plc modbus://HOST:PORT).")
        if not 0 <= args.modbus_base <= MAX_BASE:
            raise LinesideError(f"--modbus-base is an address from 0 to {MAX_BASE}, not {args.modbus_base}.")
    return plc


def make_sources(args: argparse.Namespace) -> list:
    from app.core.line_sources import make_source

    return [make_source(spec, rate_hz=args.rate, seed=i) for i, spec in enumerate(args.source)]


def make_session(args: argparse.Namespace, project, sources: list, listeners=(), *, sink=None,
                 model: str | None = None, keep_dir: Path | None = None):
    """The station's LineSession from `lineside run` arguments. benchmarks/soak.py builds
    its session here too, so the soak runs exactly what the station runs. A plant station
    passes its local model's Inspector as *project*, its version as *model*, its outbox as
    *sink* and its own folder for kept images as *keep_dir* (not the share)."""
    from app.core.image_retention import ImageRetention
    from app.core.line_session import LineSession

    retention = None
    if not args.no_keep:
        folder = args.keep_dir or keep_dir or project.path / "retained"
        retention = ImageRetention(folder, pass_every=args.keep_pass_every,
                                   quota_bytes=int(args.keep_quota_mb * 1024 * 1024))
    return LineSession(project, sources, [_listener(_Printer(args.quiet)), *listeners], retention=retention,
                       triggered=args.plc is not None, model=model or args.model, threads=args.threads,
                       rate_hz=args.rate, max_parts=args.max_parts,
                       commit_interval_s=args.commit_interval, sink=sink)  # fmt: skip


def station_dir(args: argparse.Namespace) -> Path:
    """--station-dir, else the data folder's stations/NAME."""
    if args.station_dir is not None:
        return args.station_dir.expanduser()
    from app.core.userdirs import data_dir

    return data_dir() / "stations" / re.sub(r"[^\w.-]", "_", args.station.strip())


def _say(text: str) -> None:
    print(f"lineside: {printable(text)}", file=sys.stderr, flush=True)


def run_station(args: argparse.Namespace) -> int:
    from app.core.project import Project
    from app.core.userdirs import HOME_ENV, setup_logging

    plc = check_args(args)
    if args.home is not None:
        os.environ[HOME_ENV] = str(args.home.expanduser().resolve())  # read by the logging and OPC UA setup
    log_path = setup_logging(LOG_NAME)
    sources = make_sources(args)
    stop = threading.Event()
    # SIGTERM, Ctrl+C, and Ctrl+Break in a Windows console (SIGTERM does not reach a Windows process).
    stopper = SignalStop(stop, on_signal=lambda signum: log.info("signal %d: stopping", signum)).start()
    agent = project = None
    servers: list = []
    link = None
    session = None
    try:
        if args.station is not None:
            from app.core.station_agent import StationAgent

            folder = station_dir(args)
            agent = StationAgent(args.project, args.station.strip(), args.line.strip(), folder, threads=args.threads,
                                 on_message=_say)  # fmt: skip
            inspector, model = agent.prepare()  # the line's model, or the local copy while offline
            session = make_session(args, inspector, sources, sink=agent.outbox, model=model.version,
                                   keep_dir=folder / "retained")  # fmt: skip
            where = f"station {agent.name} on line {agent.line} running"
        else:
            project = Project.open(args.project)
            session = make_session(args, project, sources)
            where = "station running"
        if plc is not None:
            link, servers = _start_plc(args, plc, session)
        session.start()
        if agent is not None:
            agent.start(session)
        names = ", ".join(session.views)
        mode = f"PLC {args.plc}" if plc else "free-run"
        if args.modbus_base:
            mode += f" (address base {args.modbus_base})"
        print(f"lineside: {where}: model {session.model_version}, views {names}, {mode}; "
              f"log {log_path} (Ctrl+C or SIGTERM stops)", file=sys.stderr, flush=True)
        log.info("%s: project %s, model %s, views %s, %s", where, args.project, session.model_version, names, mode)
        while not stop.wait(0.2):
            if session.wait(0):
                break
    finally:
        if session is not None:
            session.stop()  # finishes the part in hand and commits every result
        for server in servers:
            server.stop()
        if link is not None:
            link.close()
        left = agent.stop() if agent is not None else 0  # sends what the outbox holds, if it can
        if project is not None:
            project.close()
        stopper.stop()
    c = session.counters
    yield_ = f"{c.yield_:.1%}" if c.yield_ is not None else "n/a"
    summary = (f"{c.parts} parts: {c.passed} PASS, {c.failed} FAIL (yield {yield_}), {c.missed} missed triggers, "
               f"{c.errors} errors; {session.committed} results saved")
    timing = session.timing()
    if timing:
        summary += "; ms p50/p99 " + ", ".join(
            f"{stage} {t['p50']:.1f}/{t['p99']:.1f}" for stage, t in timing.items())
    print(f"lineside: {summary}", file=sys.stderr, flush=True)
    log.info("station stopped: %s", summary)
    if agent is not None:
        # One line a supervisor (or a test) can read: acknowledged = committed to the outbox.
        report = (f"station {agent.name}: {c.parts} parts judged, {session.committed} committed, "
                  f"{agent.outbox.sent} sent, {left} waiting in the outbox")
        print(f"lineside: {report}", file=sys.stderr, flush=True)
        log.info("%s", report)
    return 0


def _start_plc(args: argparse.Namespace, plc: tuple[str, str, int, str], session) -> tuple:
    from app.core.plc.link import PlcLink

    kind, host, port, url = plc
    link = PlcLink(buffer_size=args.buffer, ack_timeout_s=args.ack_timeout, trigger_enable=args.trigger_enabled,
                   handshake=args.handshake).attach(session)
    try:
        if kind == "modbus":
            from app.core.plc.modbus_server import ModbusServer

            server = ModbusServer(link, host, port, base=args.modbus_base or 0).start()
        else:
            from app.core.plc.opcua_server import OpcUaServer, read_users

            users = read_users(args.opcua_users) if args.opcua_users else None
            server = OpcUaServer(link, url, secure=args.opcua_secure, users=users,
                                 allow_insecure=args.opcua_allow_insecure).start()
    except ImportError as exc:
        link.close()
        raise LinesideError(f"the PLC interface is not installed ({exc.name}); install the extra: "
                            "pip install 'lineside[plc]'.") from exc
    except BaseException:
        link.close()
        raise
    return link, [server]


def run_plc_user(args: argparse.Namespace) -> int:
    import getpass

    from app.core.plc.opcua_server import hash_password

    if ":" in args.name or not args.name.strip():
        raise LinesideError("a user name must not be empty or hold ':'.")
    if sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            raise LinesideError("the two passwords differ; nothing was changed.")
    else:
        password = sys.stdin.readline().rstrip("\n")
    if len(password) < 8:
        raise LinesideError("use a password of at least 8 characters.")
    lines = []
    if args.file.exists():
        lines = [ln for ln in args.file.read_text(encoding="utf-8").splitlines()
                 if ln.partition(":")[0].strip() != args.name]  # fmt: skip
    lines.append(f"{args.name}:{hash_password(password)}")
    args.file.parent.mkdir(parents=True, exist_ok=True)
    args.file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        args.file.chmod(0o600)
    except OSError:
        pass
    print(f"{args.name} can now connect to the station's OPC UA server (users file {args.file}).")
    return 0
