"""Soak: the station headless on the simulated line, flat out, for many parts.

What runs is `lineside run PROJECT --source sim --rate 0 --no-keep --quiet --max-parts N`,
parsed by the real command line and built by the same code (app.cli.run.make_session),
in this process so that its memory can be read: resident memory (RSS, /proc/self/status)
and results committed are sampled every --every parts. At the end: parts, duration,
parts/s, RSS after warm-up, at the end and at its peak, growth, results in the store vs
parts judged (lost), and the machine's load average.

    python benchmarks/soak.py                  # 1,000,000 parts: hours on a 2-core PC
    python benchmarks/soak.py --parts 50000    # about 10 minutes on 2 shared cores
    python benchmarks/soak.py --project DIR    # a project's production model (adds N rows to its log)
    python benchmarks/soak.py --size 96        # smaller simulated parts: about 20 minutes for 1,000,000

Drawing a 256 px simulated part costs more than judging it with the tiny model, so --size
mostly sets how long the soak takes; the station's loop, queue, store and log are the same.

Without --project, a temporary project with the tiny fixture model of the tests
(tests/onnx_fixtures.py) is used: the figures are then the station's own work (the
simulated part drawn, inspected, committed), not a network's inference time. Results
go to benchmarks/results/soak.md. RSS is read on Linux only (elsewhere: n/a).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402


def memory_mib() -> tuple[float | None, float | None]:
    """(resident now, resident peak) of this process in MiB; None where unknown."""
    found: dict[str, float] = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) / 1024  # the file counts kB
    except (OSError, ValueError, IndexError):
        pass
    return found.get("VmRSS"), found.get("VmHWM")


def stored_results(project: Path) -> int:
    """Rows in the project's inspection log, read beside the session (SQLite projects)."""
    from app.core.project import DB_NAME

    with sqlite3.connect(f"file:{project / DB_NAME}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0]


def run_soak(project: Path, parts: int, every: int = 5000, warmup: int = 2000, size: int | None = None,
             on_sample: Callable[[dict], None] | None = None) -> dict:
    """Runs the station on *project* for *parts* parts; the figures as a dict.

    *size*: the simulated part's side in pixels (default: what `--source sim` draws);
    the CI test draws smaller parts to be quick. Samples are taken at *warmup* parts
    (the baseline: model loaded, caches and the store's first pages in memory) and
    then every *every* parts.
    """
    from app.cli import build_parser
    from app.cli.run import check_args, make_session, make_sources
    from app.core.project import Project

    args = build_parser().parse_args(["run", str(project), "--source", "sim", "--rate", "0", "--no-keep",
                                      "--quiet", "--max-parts", str(parts)])  # fmt: skip
    check_args(args)
    sources = make_sources(args)
    if size is not None:
        for source in sources:
            source.size = size
    before = stored_results(project)
    samples: list[dict] = []
    with Project.open(project) as store:
        session = make_session(args, store, sources)
        started = time.perf_counter()
        session.start()
        next_at = min(warmup, parts)
        while True:
            finished = session.wait(0.2)
            # Committed first: a part is counted when judged and committed after, so read in
            # this order the sample can never show more committed than judged (read the
            # other way round, parts judged and committed in between made it look so).
            committed = session.committed
            judged = session.counters.parts
            if judged >= next_at or finished:
                rss, _ = memory_mib()
                sample = {"parts": judged, "committed": committed,
                          "s": round(time.perf_counter() - started, 1), "rss_mib": rss}  # fmt: skip
                samples.append(sample)
                if on_sample is not None:
                    on_sample(sample)
                next_at = (judged // every + 1) * every
            if finished:
                break
        session.stop()  # commits what is still queued, as `lineside run` does on SIGTERM
        duration = time.perf_counter() - started
        counters, committed = session.counters, session.committed
    rss_end, rss_peak = memory_mib()
    stored = stored_results(project) - before
    warm = samples[0]["rss_mib"]
    return {
        "parts": counters.parts, "errors": counters.errors, "missed": counters.missed,
        "dropped": counters.dropped, "committed": committed, "stored": stored,
        "lost": counters.parts - stored, "duration_s": duration, "parts_per_s": counters.parts / duration,
        "warmup_parts": samples[0]["parts"], "rss_warm_mib": warm, "rss_end_mib": rss_end,
        "rss_peak_mib": rss_peak, "growth_mib": None if warm is None or rss_end is None else rss_end - warm,
        "samples": samples,
    }  # fmt: skip


def fixture_project(folder: Path) -> Path:
    from benchmarks.line import fixture_project as make

    return make(folder)


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def report(figures: dict, model_note: str, load_start: str, load_end: str, size: int = 256) -> str:
    f = figures
    growth = "n/a" if f["growth_mib"] is None else f"{f['growth_mib']:+.1f}"
    lines = [
        "# Soak: the station flat out on the simulated line",
        "",
        f"Command: `{machine.command_line('benchmarks/soak.py')}`",
        f"Machine: {machine.cpu_model()}, {os.cpu_count()} logical CPUs, {_mib(machine.ram_gib())} GiB RAM, "
        f"{machine.os_name()}; load average (1, 5, 15 min) at start {load_start}, at end {load_end}.",
        f"Model: {model_note}.",
        "",
        "What runs: `lineside run PROJECT --source sim --rate 0 --no-keep --quiet --max-parts N`, parsed",
        "by the real command line and built by its code (app.cli.run.make_session), in the benchmark's",
        "process so that its memory can be read. Flat out: the simulated line draws the next part",
        f"({size} px) as soon as the station is ready; every part is judged and committed (group commit,",
        "SQLite WAL, synchronous=FULL). RSS: /proc/self/status (VmRSS; peak VmHWM, which includes",
        "start-up). Warm-up: the first sample, once the model is loaded and the first parts are stored.",
        "Lost: parts judged minus rows in the store after the clean stop.",
        "",
        "| Parts | Duration | Parts/s | RSS after warm-up (MiB) | RSS at end (MiB) | RSS peak (MiB) "
        "| Growth (MiB) | Judged | Committed | In the store | Lost | Errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        f"| {f['parts']:,} | {f['duration_s'] / 60:.1f} min | {f['parts_per_s']:.1f} "
        f"| {_mib(f['rss_warm_mib'])} (at {f['warmup_parts']:,} parts) | {_mib(f['rss_end_mib'])} "
        f"| {_mib(f['rss_peak_mib'])} | {growth} | {f['parts']:,} | {f['committed']:,} | {f['stored']:,} "
        f"| {f['lost']} | {f['errors']} |",
        "",
        "Samples (RSS while running):",
        "",
        "| Parts | Committed | Seconds | RSS (MiB) |",
        "|---|---|---|---|",
    ]
    samples = f["samples"]
    step = max(1, len(samples) // 20)  # about 20 rows, the first and the last always
    shown = samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else [])
    lines += [f"| {s['parts']:,} | {s['committed']:,} | {s['s']} | {_mib(s['rss_mib'])} |" for s in shown]
    lines += ["", "The full soak is `python benchmarks/soak.py` (1,000,000 parts)."]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", type=int, default=1_000_000)
    parser.add_argument("--every", type=int, default=5000, help="sample every N parts (default 5000)")
    parser.add_argument("--warmup", type=int, default=2000, help="the baseline sample after N parts (default 2000)")
    parser.add_argument("--size", type=int, default=None,
                        help="side of the simulated part in pixels (default: what --source sim draws, 256)")
    parser.add_argument("--project", type=Path, help="a SQLite project with a production model (default: fixture)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.md")
    args = parser.parse_args()
    load_start = machine.load_average()

    def show(sample: dict) -> None:
        print(f"{sample['parts']:>9,} parts  {sample['committed']:>9,} committed  {sample['s']:>8} s  "
              f"RSS {_mib(sample['rss_mib'])} MiB", flush=True)

    with tempfile.TemporaryDirectory(prefix="lineside-soak-") as tmp:
        if args.project:
            project, note = args.project.resolve(), f"the production model of {args.project.name}"
        else:
            project = fixture_project(Path(tmp) / "project")
            note = "the tiny fixture model of the tests (tests/onnx_fixtures.py), 64 px input"
        figures = run_soak(project, args.parts, args.every, args.warmup, size=args.size, on_sample=show)
    text = report(figures, note, load_start, machine.load_average(), args.size or 256)
    args.out.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.out}")
    return 0 if figures["lost"] == 0 and figures["errors"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
