"""Trigger-to-result-valid latency of the station, PLC over loopback.

For each protocol (Modbus TCP, OPC UA), 1 and 2 views of the simulated line, and 10
and 20 parts/s and flat out: `lineside run PROJECT --source sim [--source sim] --plc
...` runs as its own process; `lineside plc-sim`'s loop (app.cli.plc_sim.play) plays
the PLC with the handshake on: it triggers, polls for ResultValid, acknowledges. The
latency runs from just before the trigger write to the poll that sees ResultValid (so
it includes the part's capture, inspection, commit and one protocol round trip).

    python benchmarks/line.py                 # about 3 minutes
    python benchmarks/line.py --quick         # checks the script works
    python benchmarks/line.py --project DIR   # a real project (its production model)

Without --project, a temporary project with the tiny fixture model of the tests
(tests/onnx_fixtures.py, under a millisecond per part) is used: the figures are then
the station's own overhead (simulated part drawn at the trigger, commit, protocol),
not a network's inference time. Results go to benchmarks/results/line.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.cli.plc_sim import ModbusPlc, OpcUaPlc, play  # noqa: E402
from benchmarks import machine  # noqa: E402

RATES = (10.0, 20.0, 0.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fixture_project(folder: Path) -> Path:
    from app.core.project import Project
    from tests.onnx_fixtures import write_model

    with Project.create(folder) as project:
        model = project.models_dir / "v1"
        write_model(model / "model.onnx", version="v1", threshold=0.3)
        project.register_model("v1", model, 0.3, {}, {})
        project.deploy("v1")
    return folder


def wait_port(port: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"the station did not listen on {port} within {timeout:.0f} s")


def measure(project: Path, protocol: str, views: int, rate: float, count: int, home: Path) -> dict:
    port = free_port()
    plc_url = f"modbus://127.0.0.1:{port}" if protocol == "modbus" else f"opcua://127.0.0.1:{port}"
    command = [sys.executable, "-c", "from app.cli import main; raise SystemExit(main())", "run", str(project),
               "--plc", plc_url, "--no-keep", "--quiet"]
    for _ in range(views):
        command += ["--source", "sim"]
    env = dict(os.environ, LINESIDE_HOME=str(home))
    station = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_port(port)
        plc = ModbusPlc("127.0.0.1", port) if protocol == "modbus" else OpcUaPlc(
            f"opc.tcp://127.0.0.1:{port}/lineside/")
        figures = asyncio.run(play(plc, rate, count, handshake=True))
    finally:
        station.send_signal(signal.SIGTERM)
        _, err = station.communicate(timeout=60)
    stages = dict(re.findall(r"(capture|inspect|commit|total) ([\d.]+/[\d.]+)", err))
    figures.update(protocol=protocol, views=views, stages=stages)
    return figures


def _gib(value: float | None) -> str:
    return "?" if value is None else f"{value:.1f}"


def report(rows: list[dict], project_note: str, started_load: str, args: argparse.Namespace) -> str:
    lines = [
        "# Station latency: PLC trigger to ResultValid over loopback",
        "",
        f"Command: `{machine.command_line('benchmarks/line.py' + (' --quick' if args.quick else ''))}`",
        f"Machine: {machine.cpu_model()}, {os.cpu_count()} logical CPUs, {_gib(machine.ram_gib())} GiB RAM, "
        f"{machine.os_name()}; load average at start {started_load}, at end {machine.load_average()}.",
        f"Model: {project_note}.",
        "",
        "The station (`lineside run --source sim ... --plc ...`) and the PLC simulator (`lineside plc-sim`'s",
        "loop, handshake on, polling every 0.5 ms) run as two processes on the same machine, so they share",
        "its cores. Latency = trigger write to the poll that sees ResultValid (after the commit).",
        "Station stages are the station's own p50/p99 in ms (capture = drawing the simulated part(s) at the",
        "trigger; commit = queue + SQLite commit with fsync).",
        "A missed trigger is one the station could not take (busy): at a fixed rate that happens",
        "whenever one cycle overruns the trigger period; flat out the PLC waits for Ready.",
        "",
        "| Protocol | Views | Rate | Triggers | Results | Missed | Parts/s | p50 ms | p99 ms | max ms "
        "| capture p50/p99 | inspect p50/p99 | commit p50/p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rate = "flat out" if not r["rate_hz"] else f"{r['rate_hz']:g}/s"
        s = r["stages"]
        lines.append(
            f"| {r['protocol']} | {r['views']} | {rate} | {r['triggers']} | {r['results']} | {r['missed']} "
            f"| {r['parts_per_s']} | {r.get('latency_ms_p50', '-')} | {r.get('latency_ms_p99', '-')} "
            f"| {r.get('latency_ms_max', '-')} | {s.get('capture', '-')} | {s.get('inspect', '-')} "
            f"| {s.get('commit', '-')} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--project", type=Path, help="a project with a production model (default: fixture model)")
    parser.add_argument("--count", type=int, default=200, help="triggers per combination")
    parser.add_argument("--quick", action="store_true", help="20 triggers, Modbus, 1 view: checks the script")
    parser.add_argument("--protocols", default="modbus,opcua")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "line.md")
    args = parser.parse_args()
    started_load = machine.load_average()
    with tempfile.TemporaryDirectory(prefix="lineside-line-bench-") as tmp:
        tmp = Path(tmp)
        if args.project:
            project, note = args.project, f"production model of {args.project}"
        else:
            project = fixture_project(tmp / "project")
            note = "the tiny fixture model of the tests (tests/onnx_fixtures.py), 64 px input"
        protocols = ["modbus"] if args.quick else args.protocols.split(",")
        view_counts = (1,) if args.quick else (1, 2)
        count = 20 if args.quick else args.count
        rows = []
        for protocol in protocols:
            for views in view_counts:
                for rate in RATES:
                    figures = measure(project, protocol, views, rate, count, tmp / "home")
                    rows.append(figures)
                    print(figures, flush=True)
    text = report(rows, note, started_load, args)
    if not args.quick:
        args.out.write_text(text, encoding="utf-8")
        print(f"written to {args.out}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
