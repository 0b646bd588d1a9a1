"""Roll-out: from a deploy to every station of a line running the new model.

Starts a throwaway PostgreSQL server (benchmarks/plant_load.postgres_server, fsync on),
creates a plant project with model versions, and starts N real stations: each is
`lineside run PROJECT --station sN --line L --source sim --rate R --no-keep --quiet`, its
own process with its own station folder, judging simulated parts at R parts/s. Once
every station has reported the first version in its heartbeat, the benchmark deploys
the next version (`Project.deploy`, as `lineside deploy` does) and times:

  running    from the start of the deploy call (an engineer pressing Deploy) to each
             station's first heartbeat naming the new version and its hash (the station
             writes it at once after the swap, with its own clock: the same machine's);
             the last station's is the roll-out time, what the Plant tab shows
  first part the capture time of each station's first part judged by the new version
             (a part waiting in a busy station's queue can be captured before the swap)

then deploys again, --rounds times. The deploy call itself (the model run on a few
project images, the deploy gate, the commit) is part of the time and also shown apart.

The models are the tests' tiny ONNX fixture (tests/onnx_fixtures.py), so the figures are
the roll-out's own cost (poll, copy from the share, hash check, load, swap, heartbeat),
or with --network the shipped EfficientNet-Lite0 at 288 px (about 14 MB to copy, hash
and load on every station at once). The share is a local folder.

    python benchmarks/plant_rollout.py                    # 20 stations, 3 deploys
    python benchmarks/plant_rollout.py --stations 5 --rounds 1
    python benchmarks/plant_rollout.py --network           # the shipped network
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402

LINE = "Line A"
TARGET_S = 5.0  # the target for 20 stations


def network_onnx(version: str, size: int = 288) -> bytes:
    """The shipped network's ONNX file: EfficientNet-Lite0 with its ImageNet weights at
    *size* px and an untrained head (a roll-out copies, hashes and loads the same bytes
    whatever the training did)."""
    from training.export import onnx_bytes
    from training.network import HEATMAP_STRIDE, InspectionNet, load_pretrained_backbone

    net = InspectionNet(1, load_pretrained_backbone()).eval()
    metadata = {"format": 1, "class_names": ["ok", "defect"], "input_size": size, "heatmap_stride": HEATMAP_STRIDE,
                "threshold": 0.5, "version": version, "mode": "supervised", "tiling": None}
    return onnx_bytes(net, size, metadata)


def _add_model(project, version: str, threshold: float, network: bool) -> None:
    """A tiny fixture model, or the shipped network (*network*)."""
    folder = project.models_dir / version
    if network:
        folder.mkdir(parents=True)
        (folder / "model.onnx").write_bytes(network_onnx(version))
        threshold = 0.5
    else:
        from tests.onnx_fixtures import write_model

        write_model(folder / "model.onnx", version=version, threshold=threshold)
    project.register_model(version, folder, threshold, {}, {})


def _start_station(project_dir: Path, name: str, rate: float, work: Path) -> subprocess.Popen:
    argv = [sys.executable, "-m", "app", "run", str(project_dir), "--source", "sim", "--rate", str(rate),
            "--no-keep", "--quiet", "--station", name, "--line", LINE, "--station-dir", str(work / name)]
    env = dict(os.environ, LINESIDE_HOME=str(work / "home"))
    log = open(work / f"{name}.log", "w")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _wait(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.02)


def _first_results(project, version: str) -> dict[str, float]:
    """Per station, the time of its first stored result judged by *version* (epoch seconds)."""
    import sqlalchemy as sa

    from app.core import db

    table = db.inspections
    query = (sa.select(table.c.station, sa.func.min(table.c.at))
             .where(table.c.model_version == version).group_by(table.c.station))
    with project._read() as conn:
        return {station: at.timestamp() for station, at in conn.execute(query)}


def measure_rollout(database_url: str, work: Path, stations: int = 20, rounds: int = 3, rate: float = 5.0,
                    on_line=print, network: bool = False) -> dict:
    """Starts *stations* real stations on a new plant project at *database_url* and deploys
    *rounds* new versions; the figures as a dict."""
    from app.core import stations as plant_stations
    from app.core.project import Project

    project_dir = work / "share" / "plant"
    project = Project.create(project_dir, database=database_url)
    versions = [f"v{i + 1}" for i in range(rounds + 1)]
    for i, version in enumerate(versions):
        _add_model(project, version, 0.30 + 0.01 * i, network)
    project.deploy(versions[0])
    procs = []
    try:
        started = time.monotonic()
        for i in range(stations):
            procs.append(_start_station(project_dir, f"s{i + 1:02d}", rate, work))
        names = {f"s{i + 1:02d}" for i in range(stations)}

        def running(version: str) -> dict[str, float]:
            """Stations whose heartbeat names *version* with its hash: when each wrote it."""
            target = plant_stations.target(project, LINE)
            return {s.name: s.last_seen.timestamp() for s in plant_stations.stations(project, LINE)
                    if s.state == "running" and s.model_version == version and s.model_sha == target.sha256}

        _wait(lambda: running(versions[0]).keys() >= names, 300, f"{stations} stations running {versions[0]}")
        on_line(f"{stations} stations running {versions[0]} after {time.monotonic() - started:.1f} s")
        rows = []
        for version in versions[1:]:
            time.sleep(3.0)  # every station judging, heartbeats settled
            t0 = time.time()
            project.deploy(version)
            deployed = time.time()
            switched: dict[str, float] = {}

            def all_switched() -> bool:
                for name, at in running(version).items():
                    switched.setdefault(name, at)  # its first heartbeat naming the new model
                return switched.keys() >= names

            _wait(all_switched, 60, f"every station running {version}")
            _wait(lambda: _first_results(project, version).keys() >= names, 60, f"results judged by {version}")
            firsts = _first_results(project, version)
            running_s = sorted(at - t0 for at in switched.values())
            row = {"version": version, "deploy_call_s": deployed - t0, "first_s": running_s[0],
                   "median_s": running_s[len(running_s) // 2], "all_s": running_s[-1],
                   "last_first_part_s": max(firsts[n] for n in names) - t0}
            rows.append(row)
            on_line(f"{version}: deploy call {row['deploy_call_s']:.2f} s; every station running it "
                    f"{row['all_s']:.2f} s after the deploy began (first {row['first_s']:.2f} s, median "
                    f"{row['median_s']:.2f} s); the last station's first part with it captured at "
                    f"{row['last_first_part_s']:.2f} s")
        stored = len(project.inspections())
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
        project.close()
    size = (project_dir / "models" / versions[0] / "model.onnx").stat().st_size
    model = (f"EfficientNet-Lite0 at 288 px, the network the trainer ships ({size / 1e6:.1f} MB)" if network
             else f"the tiny fixture model of the tests ({size / 1e3:.0f} kB)")
    return {"stations": stations, "rate": rate, "rounds": rows, "stored_results": stored, "model": model}


def report(figures: dict, load_start: str, load_end: str, command: str) -> str:
    lines = [
        "## Roll-out: deploy to every station running the new model",
        "",
        f"Command: `{command}`",
        f"Machine: {machine.cpu_model()}, {os.cpu_count()} logical CPUs; load average (1, 5, 15 min) at start "
        f"{load_start}, at end {load_end}.",
        "",
        f"{figures['stations']} real stations (`lineside run --station ... --line ... --source sim --rate "
        f"{figures['rate']:g}`), each its own process, all on this machine with the database server, judging "
        f"simulated parts while the deploys happen (all {figures['stations']} share this machine's 2 cores, where "
        "each station at the line has a PC of its own). Model: " + figures["model"] + " (what a roll-out costs: poll "
        "every 0.5 s, copy from the share, SHA-256 check, load, swap between two parts, heartbeat). Times from the "
        "start of the deploy call (`Project.deploy`: the model run on a few images, the gate, the commit) to "
        "each station's first heartbeat naming the new model, written at once after its swap. Last column: "
        "the capture time of the last station's first part judged by the new model.",
        "",
        "| Deploy | Deploy call (s) | First station running it (s) | Median (s) | Every station running it (s) "
        "| Target (every station, <= 5 s) | Last station's first part with it (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in figures["rounds"]:
        verdict = "met" if row["all_s"] <= TARGET_S else "missed"
        lines.append(f"| {row['version']} | {row['deploy_call_s']:.2f} | {row['first_s']:.2f} "
                     f"| {row['median_s']:.2f} | {row['all_s']:.2f} | {verdict} | {row['last_first_part_s']:.2f} |")
    lines += ["", f"Results stored during the run: {figures['stored_results']:,}.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.plant_load import postgres_server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stations", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3, help="deploys to time (default 3)")
    parser.add_argument("--rate", type=float, default=5.0, help="parts/s each station judges (default 5)")
    parser.add_argument("--network", action="store_true",
                        help="deploy the shipped network (EfficientNet-Lite0, 288 px; needs torch to build it) "
                        "instead of the tests' tiny model")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "lineside-plant-rollout.md",
                        help="where the roll-out section goes alone (benchmarks/plant.py puts it in plant.md)")
    args = parser.parse_args(argv)
    load_start = machine.load_average()
    with tempfile.TemporaryDirectory(prefix="lineside-rollout-") as tmp, \
            postgres_server(max_connections=200) as server:
        url = server.url(server.new_database())
        figures = measure_rollout(url, Path(tmp), args.stations, args.rounds, args.rate, network=args.network)
    text = report(figures, load_start, machine.load_average(), machine.command_line("benchmarks/plant_rollout.py"))
    args.out.write_text("# Plant roll-out\n\n" + text, encoding="utf-8")
    print(text)
    print(f"written to {args.out}")
    return 0 if all(r["all_s"] <= TARGET_S for r in figures["rounds"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
