"""Trigger-to-result-valid latency of the station, PLC over loopback.

For each protocol (Modbus TCP, OPC UA), 1 and 2 views of the simulated line, and 10
and 20 parts/s and flat out: `lineside run PROJECT --source sim [--source sim] --plc
...` runs as its own process; `lineside plc-sim`'s loop (app.cli.plc_sim.play) plays
the PLC with the handshake on: it triggers, polls for ResultValid, acknowledges. The
latency runs from just before the trigger write to the poll that sees ResultValid (so
it includes the part's capture, inspection, commit and one protocol round trip).

    python benchmarks/line.py                 # about 4 minutes
    python benchmarks/line.py --quick         # checks the script works
    python benchmarks/line.py --project DIR   # a real project (its production model)
    python benchmarks/line.py --hot-folder-only   # only the hot folder rows (below)

Hot folder: `lineside run PROJECT --source folder:DIR` as its own process; the benchmark
writes one PNG of the simulated line into DIR every 0.1 s (10 parts/s, one view) under
its final name, as a camera does, and reads the station's result lines. The latency runs
from the file being closed to the station's line for it, which is printed after the
commit: file fully written -> verdict recorded. `--hot-folder-only` rewrites only that
section of the results file, so rows measured with another model are kept.

Without --project, a temporary project with the tiny fixture model of the tests
(tests/onnx_fixtures.py, under a millisecond per part) is used: the figures are then
the station's own overhead (simulated part drawn at the trigger, commit, protocol),
not a network's inference time. Results go to benchmarks/results/line.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from app.cli.plc_sim import ModbusPlc, OpcUaPlc, play  # noqa: E402
from benchmarks import machine  # noqa: E402

RATES = (10.0, 20.0, 0.0)
HOT_FOLDER_RATE = 10.0
HOT_FOLDER_WARMUP = 3  # files judged before the measurement (model warm, folder watched)
HOT_FOLDER_HEADING = "## Hot folder: file fully written to verdict recorded"


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


def measure_hot_folder(project: Path, rate: float, count: int, home: Path) -> dict:
    import numpy as np

    from app.core.imageio import encode_png
    from app.core.synthetic import PartStream

    folder = Path(tempfile.mkdtemp(prefix="hot-", dir=home.parent))
    stream = PartStream(0, 0.3, 256)  # what `--source sim` draws, as PNG files
    files = [encode_png(stream.next_frame()[0]) for _ in range(HOT_FOLDER_WARMUP + count)]
    command = [sys.executable, "-c", "from app.cli import main; raise SystemExit(main())", "run", str(project),
               "--source", f"folder:{folder}", "--no-keep"]
    env = dict(os.environ, LINESIDE_HOME=str(home), PYTHONUNBUFFERED="1")
    station = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    arrived: queue.Queue[float] = queue.Queue()  # when each result line was read
    err: list[str] = []
    running = threading.Event()

    def read_results() -> None:
        for line in station.stdout:
            if line.strip():
                arrived.put(time.perf_counter())

    def read_log() -> None:
        for line in station.stderr:
            err.append(line)
            if "station running" in line:
                running.set()

    readers = [threading.Thread(target=f, daemon=True) for f in (read_results, read_log)]
    for reader in readers:
        reader.start()
    written: list[float] = []
    done: list[float] = []
    try:
        if not running.wait(60):
            raise RuntimeError("the station did not start within 60 s:\n" + "".join(err))
        time.sleep(0.5)  # files there when the folder is first polled count as delivered before
        for i in range(HOT_FOLDER_WARMUP):
            (folder / f"warmup_{i}.png").write_bytes(files[i])
            arrived.get(timeout=30)
        next_at = time.perf_counter()
        for i in range(count):
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            (folder / f"part_{i:05d}.png").write_bytes(files[HOT_FOLDER_WARMUP + i])  # open, write, close
            written.append(time.perf_counter())
            next_at += 1.0 / rate
        for _ in range(count):
            try:
                done.append(arrived.get(timeout=30))
            except queue.Empty:
                break
    finally:
        station.send_signal(signal.SIGTERM)
        station.wait(timeout=60)
        for reader in readers:
            reader.join(10)
    # One view, files judged and committed in the order written: the i-th line is the i-th file.
    latencies = [(d - w) * 1000.0 for w, d in zip(written, done)]
    figures = {"source": "hot folder", "views": 1, "rate_hz": rate, "files": count, "results": len(done),
               "stages": dict(re.findall(r"(capture|inspect|commit|total) ([\d.]+/[\d.]+)", "".join(err)))}
    if latencies:
        p50, p99 = np.percentile(latencies, [50, 99])
        figures.update(latency_ms_p50=round(float(p50), 2), latency_ms_p99=round(float(p99), 2),
                       latency_ms_max=round(max(latencies), 2))
    return figures


def hot_folder_section(rows: list[dict], project_note: str, started_load: str, command: str) -> str:
    lines = [
        HOT_FOLDER_HEADING,
        "",
        f"Command: `{command}`",
        f"Machine: {machine.cpu_model()}, {os.cpu_count()} logical CPUs, {_gib(machine.ram_gib())} GiB RAM, "
        f"{machine.os_name()}; load average at start {started_load}, at end {machine.load_average()}.",
        f"Model: {project_note}.",
        "",
        "`lineside run PROJECT --source folder:DIR --no-keep` runs as its own process; the benchmark writes",
        "a 256 px PNG of the simulated line into DIR at the rate given, each straight under its final name",
        "(open, write, close), as a camera does, and reads the station's result lines. Latency = the file",
        "closed to the station's line for it, printed after the commit. A file is taken once it has held",
        "still for two polls 50 ms apart (a writer may pause between chunks), so 100 to 150 ms of every",
        "figure is the hot folder making sure the file is complete; reading and decoding the file follow on",
        "the capture thread. Station stages are the station's own p50/p99 in ms from the moment it takes",
        "the decoded image (so capture is about 0) to the commit.",
        "",
        "| Source | Views | Rate | Files | Results | p50 ms | p99 ms | max ms "
        "| capture p50/p99 | inspect p50/p99 | commit p50/p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        s = r["stages"]
        lines.append(
            f"| {r['source']} | {r['views']} | {r['rate_hz']:g}/s | {r['files']} | {r['results']} "
            f"| {r.get('latency_ms_p50', '-')} | {r.get('latency_ms_p99', '-')} | {r.get('latency_ms_max', '-')} "
            f"| {s.get('capture', '-')} | {s.get('inspect', '-')} | {s.get('commit', '-')} |")
    return "\n".join(lines) + "\n"


def with_hot_folder_section(text: str, section: str) -> str:
    """*text* (a results file) with its hot folder section replaced, or added at the end."""
    kept = text.split(HOT_FOLDER_HEADING)[0].rstrip("\n")
    return (kept + "\n\n" if kept else "") + section


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
    parser.add_argument("--hot-folder-only", action="store_true",
                        help="only the hot folder rows; the rest of the results file is kept")
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
        for protocol in [] if args.hot_folder_only else protocols:
            for views in view_counts:
                for rate in RATES:
                    figures = measure(project, protocol, views, rate, count, tmp / "home")
                    rows.append(figures)
                    print(figures, flush=True)
        hot_started_load = machine.load_average()
        hot = measure_hot_folder(project, HOT_FOLDER_RATE, count, tmp / "home")
        print(hot, flush=True)
    section = hot_folder_section([hot], note, hot_started_load, machine.command_line("benchmarks/line.py"))
    if args.hot_folder_only:
        previous = args.out.read_text(encoding="utf-8") if args.out.exists() else ""
        text = with_hot_folder_section(previous, section)
    else:
        text = with_hot_folder_section(report(rows, note, started_load, args), section)
    if not args.quick:
        args.out.write_text(text, encoding="utf-8")
        print(f"written to {args.out}")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
