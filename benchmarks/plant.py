"""Plant store: how fast stations can store results on one PostgreSQL project.

Starts its own throwaway PostgreSQL server (initdb in a temporary folder, a free port
on 127.0.0.1; fsync on and otherwise the server's defaults, listed in the results),
and for 1, 4 and 16 simulated stations (one process each, benchmarks/plant_load.py)
measures result writes with `Project.record_results`, the call a station's forwarder
makes. Each run has a project database of its own, holding --stored-before (200,000)
results of an earlier shift, analyzed, as a project that has been running does:

  flat out  every station sends batches of --batch (100, a forwarder's batch) results, the next as soon as
            the last is acknowledged: a forwarder emptying a backlog (the most the
            store takes);
  paced     every station sends what 20 parts/s leave in its outbox every 100 ms
            (batches of 2): the line running normally; the latency a station sees.

Then one station flat out on a new project (a table the planner has no statistics of
yet, as in a project's first minute or so, before autovacuum first analyzes it; kept so
for the run by turning autovacuum off for the table).

Reported per run: results per second in total and per station (results acknowledged
inside the --seconds window), and the commit latency of a call (p50, p99, max; the
time record_results takes, client CPU share beside it). Targets (the issue): >= 2,000
results/s in total with 16 stations, p99 commit <= 50 ms.

Last, the roll-out (benchmarks/plant_rollout.py): 20 real stations (`lineside run
--station`, one process each) judging simulated parts; the time from a deploy to every
station running the new model. Target: <= 5 s.

    python benchmarks/plant.py                              # about 6 minutes on 2 cores
    python benchmarks/plant.py --seconds 5 --stations 1 4   # a quick look
    python benchmarks/plant.py --writers record_results values_returning unnest_arrays copy_merge

The last (about 7 minutes) also runs the prototypes below, each with 16 stations flat
out and paced and on a new table: other ways record_results could store a batch,
measured before record_results was changed (the results name the writer of every row;
record_results now stores a batch the way unnest_arrays does).
Results go to benchmarks/results/plant.md.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import machine  # noqa: E402
from benchmarks.plant_load import Fleet, postgres_server, read_journal, server_settings  # noqa: E402
from tests.plant_fixtures import SUPERUSER  # noqa: E402
from app.core.outbox import BATCH_ROWS  # noqa: E402

TARGET_RESULTS_PER_S = 2000  # in total, 16 stations
TARGET_P99_MS = 50.0
RESULTS_FILE = REPO_ROOT / "benchmarks" / "results" / "plant.md"


# -- prototypes of record_results (measured, not used by Lineside) ---------------------


def _checked_rows(results: list[dict]) -> list[dict]:
    """record_results' checks and column mapping, so a prototype differs only in how it writes."""
    from app.core import db

    rows = []
    for r in results:
        if r["verdict"] not in ("PASS", "FAIL") or not r.get("result_uid"):
            raise ValueError(f"not a station result: {r!r}")
        rows.append({c.name: r.get(c.name) for c in db.inspections.columns if c.name != "id"})
    return rows


def values_returning(project):
    """One INSERT ... VALUES (...), (...) ON CONFLICT DO NOTHING RETURNING per batch
    (SQLAlchemy's insertmanyvalues), counting the rows it returns: no count query
    first, and the count is right even when two connections send one batch at once."""
    from sqlalchemy.dialects.postgresql import insert

    from app.core import db

    statement = insert(db.inspections).on_conflict_do_nothing(index_elements=["result_uid"]).returning(
        db.inspections.c.id)

    def write(results: list[dict]) -> int:
        rows = _checked_rows(results)
        with project._write(lock=False) as conn:
            return len(conn.execute(statement, rows).all())

    return write


def copy_merge(project):
    """COPY the batch into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO
    NOTHING from it: the fewest bytes and statements per row psycopg can send."""
    import sqlalchemy as sa

    from app.core import db

    columns = [c.name for c in db.inspections.columns if c.name != "id"]
    names = ", ".join(columns)

    def write(results: list[dict]) -> int:
        rows = _checked_rows(results)
        for row in rows:  # the column holds UTC without an offset (db.UTCDateTime); COPY skips that type
            row["at"] = row["at"].astimezone(timezone.utc).replace(tzinfo=None)
        with project._write(lock=False) as conn:
            conn.exec_driver_sql("CREATE TEMP TABLE IF NOT EXISTS incoming_results "
                                 "(LIKE inspections INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            cursor = conn.connection.driver_connection.cursor()
            with cursor.copy(f"COPY incoming_results ({names}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[c] for c in columns])
            return conn.execute(sa.text(f"INSERT INTO inspections ({names}) SELECT {names} FROM incoming_results "
                                        "ON CONFLICT (result_uid) DO NOTHING")).rowcount

    return write


def unnest_arrays(project):
    """One INSERT ... SELECT FROM unnest(one array a column) ON CONFLICT DO NOTHING: one
    statement of 11 parameters whatever the batch size (parsed and planned the same every
    time), and its row count is the number of new results."""
    from app.core import db

    columns = [c for c in db.inspections.columns if c.name != "id"]
    arrays = ", ".join(f"%({c.name})s::{c.type.compile(dialect=project._engine.dialect)}[]" for c in columns)
    sql = (f"INSERT INTO inspections ({', '.join(c.name for c in columns)}) SELECT * FROM unnest({arrays}) "
           "ON CONFLICT (result_uid) DO NOTHING")

    def write(results: list[dict]) -> int:
        rows = _checked_rows(results)
        for row in rows:  # the column holds UTC without an offset (db.UTCDateTime)
            row["at"] = row["at"].astimezone(timezone.utc).replace(tzinfo=None)
        with project._write(lock=False) as conn:
            return conn.exec_driver_sql(sql, {c.name: [row[c.name] for row in rows] for c in columns}).rowcount

    return write


# -- one run: N stations for a while ---------------------------------------------------


@dataclass
class Run:
    writer: str
    mode: str  # "flat out", "paced" or "2,000/s in total"
    stations: int
    batch: int
    interval_s: float
    seconds: float
    stored_before: int  # results in the table before the run, analyzed; 0: a new table, never analyzed
    results: int = 0
    calls: int = 0
    per_station: tuple[float, float] = (0.0, 0.0)  # slowest and fastest station, results/s
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    cpu_share: float = 0.0  # of the call's time, the station's own CPU (the rest: waiting on the server)
    errors: int = 0
    load: str = ""  # the machine's 1-minute load average at the end of the run
    waits: Counter = field(default_factory=Counter)  # samples of the stations' server backends in a call
    lock_events: Counter = field(default_factory=Counter)

    @property
    def per_s(self) -> float:
        return self.results / self.seconds


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by the nearest-rank rule: a value that was measured."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(q * len(ordered) + 0.5)) - 1))]


class WaitSampler(threading.Thread):
    """Samples what the stations' server backends are doing while inside a call
    (pg_stat_activity every SAMPLE_S): on a CPU, waiting for a lock (the advisory write
    lock would show as Lock), for the WAL on disk (IO), or for the station to send its
    next statement (in a transaction, idle: the station process was not on a CPU)."""

    SAMPLE_S = 0.02

    def __init__(self, server, database: str) -> None:
        super().__init__(daemon=True)
        self.server, self.database = server, database
        self.counts: Counter = Counter()
        self.lock_events: Counter = Counter()  # which lock: "advisory" is the plant-wide write lock
        self.stopping = threading.Event()

    def run(self) -> None:
        with self.server.admin() as conn:
            while not self.stopping.is_set():
                for state, wait_type, wait_event in conn.execute(
                        "SELECT state, wait_event_type, wait_event FROM pg_stat_activity WHERE datname = %s "
                        "AND application_name = 'lineside' AND state <> 'idle'", (self.database,)):
                    if state.startswith("idle in transaction") or wait_type == "Client":
                        self.counts["station"] += 1
                    else:
                        self.counts[wait_type or "CPU"] += 1
                    if wait_type == "Lock":
                        self.lock_events[wait_event] += 1
                time.sleep(self.SAMPLE_S)


def prepare_results_table(server, database: str, count: int) -> None:
    """*count* results of an earlier shift, and the table analyzed: a project that has been
    running (PostgreSQL's autovacuum analyzes a table within a minute or so of it filling).
    0: a new table, and autovacuum kept off it for the run, so that it stays a table the
    planner knows nothing about, as it is until autovacuum first gets to it (when that is
    depends on autovacuum_naptime and how many databases the server has: a run left to
    chance would measure that)."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=server.port, user=SUPERUSER, dbname=database,
                         autocommit=True) as conn:
        if not count:
            conn.execute("ALTER TABLE inspections SET (autovacuum_enabled = off)")
            return
        conn.execute(
            "INSERT INTO inspections (at, model_version, source, verdict, score, latency_ms, station, result_uid) "
            "SELECT (now() AT TIME ZONE 'UTC') - make_interval(secs => i * 0.05), 'v0', 'earlier/cam1', 'PASS', "
            "0.05, 4.0, 'earlier', md5('earlier:' || i) FROM generate_series(1, %s) AS i", (count,))
        conn.execute("ANALYZE inspections")


def measure_writes(server, run: Run, work: Path) -> Run:
    """Run *run*'s stations on a new project database; fills in its figures."""
    from app.core.project import Project

    folder = Path(tempfile.mkdtemp(prefix=f"{run.stations}-", dir=work))
    project_dir = folder / "plant"
    database = server.new_database()
    Project.create(project_dir, database=server.url(database)).close()
    prepare_results_table(server, database, run.stored_before)
    fleet = Fleet(folder)
    sampler = WaitSampler(server, database)
    try:
        for n in range(run.stations):
            fleet.start(f"station-{n}", "station", project_dir, "--name", f"station-{n}", "--seed", str(n),
                        "--batch-min", str(run.batch), "--batch-max", str(run.batch),
                        "--interval", str(run.interval_s), "--writer", run.writer)
        fleet.wait_ready()
        started = time.monotonic()
        fleet.start_writing(run.seconds)
        sampler.start()
        codes = fleet.wait_all(timeout_s=run.seconds + 120)
    finally:
        sampler.stopping.set()
        fleet.stop_all()
    sampler.join()
    run.waits, run.lock_events = sampler.counts, sampler.lock_events
    run.load = machine.load_average().split(",")[0]
    if any(codes.values()):
        raise RuntimeError("a station failed:\n" + "\n".join(fleet.stderr(n) for n, c in codes.items() if c))
    window_end = started + run.seconds
    latencies, per_station, busy, cpu = [], [], 0.0, 0.0
    for n in range(run.stations):
        entries = read_journal(fleet.journal(f"station-{n}"))
        run.errors += sum(1 for e in entries if e["kind"] == "error")
        acks = [e for e in entries if e["kind"] == "ack" and e["acked"] <= window_end]
        per_station.append(sum(e["n"] for e in acks) / run.seconds)
        run.calls += len(acks)
        # A station's first call also compiles the statement and warms its connection:
        # once a start, not what a running station waits for.
        steady = acks[1:]
        latencies += [(e["acked"] - e["sent"]) * 1000 for e in steady]
        busy += sum(e["acked"] - e["sent"] for e in steady)
        cpu += sum(e["cpu"] for e in steady)
    run.results = round(sum(per_station) * run.seconds)
    run.per_station = (min(per_station), max(per_station))
    if latencies:
        run.p50_ms, run.p99_ms, run.max_ms = statistics.median(latencies), percentile(latencies, 0.99), max(latencies)
    run.cpu_share = cpu / busy if busy else 0.0
    return run


# -- the results -----------------------------------------------------------------------


WAIT_KINDS = ("CPU", "IO", "LWLock", "Lock", "station")


def _row(run: Run) -> str:
    slowest, fastest = run.per_station
    mode = run.mode if run.stored_before else f"{run.mode}, new table"
    return (f"| {run.writer} | {mode} | {run.stations} | {run.batch} | {run.per_s:,.0f} | "
            f"{run.per_s / run.stations:,.0f} ({slowest:,.0f}-{fastest:,.0f}) | {run.calls:,} | "
            f"{run.p50_ms:.1f} | {run.p99_ms:.1f} | {run.max_ms:.0f} | {run.cpu_share:.0%} | {run.errors} | {run.load} |")


def _wait_row(run: Run) -> str:
    total = sum(run.waits.values()) or 1
    other = total - sum(run.waits[kind] for kind in WAIT_KINDS)
    shares = " | ".join(f"{run.waits[kind] / total:.0%}" for kind in WAIT_KINDS)
    mode = run.mode if run.stored_before else f"{run.mode}, new table"
    return f"| {run.writer} | {mode} | {run.stations} | {sum(run.waits.values()):,} | {shares} | {other / total:.0%} |"


def fsync_ms(folder: Path, writes: int = 200) -> float:
    """Median time of an 8 kB write and fdatasync in *folder*, what a commit waits for at
    least once (a virtual disk with a write-back cache answers far sooner than a disk)."""
    path = folder / "fsync-probe"
    times = []
    with open(path, "wb", buffering=0) as file:
        for _ in range(writes):
            start = time.perf_counter()
            file.write(b"\0" * 8192)
            (os.fdatasync if hasattr(os, "fdatasync") else os.fsync)(file.fileno())
            times.append((time.perf_counter() - start) * 1000)
    path.unlink()
    return statistics.median(times)


def targets(runs: list[Run]) -> list[str]:
    lines = []
    for run in runs:
        if run.stations != 16 or run.writer != "record_results" or not run.stored_before:
            continue
        if run.mode != "paced":
            met = "met" if run.per_s >= TARGET_RESULTS_PER_S else "MISSED"
            lines.append(f"- {run.per_s:,.0f} results/s in total with 16 stations {run.mode} "
                         f"(target >= {TARGET_RESULTS_PER_S:,}): **{met}**.")
        met = "met" if run.p99_ms <= TARGET_P99_MS else "MISSED"
        lines.append(f"- p99 commit {run.p99_ms:.1f} ms with 16 stations {run.mode} "
                     f"(batches of {run.batch}; target <= {TARGET_P99_MS:.0f} ms): **{met}**.")
        if run.mode == "flat out" and run.per_s:
            # Little's law: with every station's batch in flight at once, a call lasts about
            # as long as the store takes to write all of them.
            lines.append(f"  Flat out, {run.stations} x {run.batch} results are in flight at once; at "
                         f"{run.per_s:,.0f} results/s that is {run.stations * run.batch / run.per_s * 1000:.0f} ms "
                         "a call (the p50 above): the batch size sets the latency of a station emptying a "
                         "backlog, not the store.")
    return lines


def _lock_lines(runs: list[Run]) -> list[str]:
    seen = [run for run in runs if run.lock_events]
    if not seen:
        return ["No sample found a backend waiting for a lock (the advisory write lock included).", ""]
    return ["Lock waits, by lock (`advisory`: the plant-wide write lock; `extend`: growing the table's file):", "",
            *(f"- {run.writer}, {run.mode}, {run.stations} stations: "
              + ", ".join(f"{event} {n}" for event, n in run.lock_events.most_common()) for run in seen), ""]


def report(runs: list[Run], settings: dict[str, str], filesystem: str, settings_fsync_ms: float,
           load_at_start: str, sections: list[str]) -> str:
    stored = max(run.stored_before for run in runs)
    lines = [
        "# Plant store: result writes on PostgreSQL",
        "",
        "Simulated stations (one process each, `benchmarks/plant_load.py`) store result batches with",
        "`Project.record_results` on one plant project, as a station's forwarder does. Each run has",
        "a project database of its own on a throwaway PostgreSQL server on the same machine (TCP over",
        f"127.0.0.1), holding {stored:,} results stored before and analyzed (a project that has been",
        "running), except \"new table\": a new project whose results table the planner has no",
        "statistics of yet, as in its first minute or so, until autovacuum first analyzes it (kept",
        "so for the run: autovacuum off for that table).",
        "Flat out: batches one after the other, as fast as they are acknowledged. Paced:",
        "a batch every 100 ms with what 20 parts/s leave (2 results). 2,000/s in total: the most",
        "stations together at the issue's target rate, each sending its share every 100 ms (the",
        "targets' own scenario: >= 2,000 results/s with 16 stations, p99 commit <= 50 ms). Results/s: results acknowledged",
        "inside the window, in total and per station (slowest-fastest). Commit latency: the time of",
        "one record_results call (one transaction, one commit), each station's first call left out",
        "(it compiles the statement and warms the connection once). CPU: the share of that time",
        "the station process itself was on a CPU (the rest it waited for the server, or for a core).",
        "Writers other than record_results are prototypes in `benchmarks/plant.py` (its docstring).",
        "",
        "Load: the machine's 1-minute load average at the end of the run (2 cores: above 2, processes",
        "wait for a core).",
        "",
        "| Writer | Mode | Stations | Batch | Results/s | Per station | Calls | p50 ms | p99 ms | Max ms | CPU | Errors | Load |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(_row(run) for run in runs),
        "",
        *(targets(runs) + [""] if targets(runs) else []),
        "## Where a call waits on the server",
        "",
        f"The stations' server backends, sampled every {WaitSampler.SAMPLE_S * 1000:.0f} ms while inside a call",
        "(pg_stat_activity): running or waiting for a core (CPU), waiting for the disk (IO: the WAL",
        "flush of a commit), for an internal lock (LWLock), for a lock (Lock: the advisory write",
        "lock, another transaction's row, extending the table), or, in the middle of the",
        "transaction, for the station to send its next statement (station: the station process",
        "was busy or waiting for a core).",
        "",
        "| Writer | Mode | Stations | Samples | " + " | ".join(WAIT_KINDS) + " | other |",
        "|---|---|---|---|" + "---|" * len(WAIT_KINDS) + "---|",
        *(_wait_row(run) for run in runs),
        "",
        *_lock_lines(runs),
        "## The server",
        "",
        f"PostgreSQL {settings.pop('server_version', '?')}, its data folder on {filesystem}, started by the benchmark "
        "with `fsync` on; everything else at the server's defaults:",
        "",
        *(f"- `{name}` = {value}" for name, value in settings.items()),
        f"- an 8 kB write and fdatasync in the data folder took {settings_fsync_ms:.2f} ms (median of 200): "
        "what this disk answers a flush in; a commit waits for at least one",
        "",
        *sections,
        "## Machine",
        "",
        *machine.machine_lines("benchmarks/plant.py", ("sqlalchemy", "psycopg"), load_at_start),
        "",
    ]
    return "\n".join(lines)


def filesystem_of(path: Path) -> str:
    """The file system type and device *path* lies on (Linux; "unknown" elsewhere)."""
    best, found = "", "unknown"
    try:
        for line in Path("/proc/mounts").read_text().splitlines():
            device, mount, kind = line.split()[:3]
            if str(path).startswith(mount) and len(mount) > len(best):
                best, found = mount, f"{kind} ({device})"
    except OSError:
        pass
    return found


def _have_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=20.0, help="writing time of each run")
    parser.add_argument("--batch", type=int, default=BATCH_ROWS,
                        help=f"results a call, flat out (default {BATCH_ROWS}, what a station's forwarder sends)")
    parser.add_argument("--rollout-stations", type=int, default=20,
                        help="real stations for the roll-out measurement (0: skip it)")
    parser.add_argument("--rollout-rounds", type=int, default=3, help="deploys timed in the roll-out")
    parser.add_argument("--rate", type=float, default=20.0, help="parts/s of a station, paced")
    parser.add_argument("--flush", type=float, default=0.1, help="seconds between a paced station's batches")
    parser.add_argument("--stored-before", type=int, default=200_000,
                        help="results in the table before each run (analyzed): a project that has been running")
    parser.add_argument("--writers", nargs="+", default=["record_results"],
                        help="record_results, and prototypes to compare with the most stations")
    parser.add_argument("--no-write", action="store_true", help=f"print only, leave {RESULTS_FILE.name} as it is")
    args = parser.parse_args(argv)

    load_at_start = machine.load_average()
    paced_batch = max(1, round(args.rate * args.flush))
    modes = (("flat out", args.batch, 0.0), ("paced", paced_batch, args.flush))
    runs = [Run("record_results", mode, n, batch, interval, args.seconds, args.stored_before)
            for n in args.stations for mode, batch, interval in modes]
    # The two targets at once: the most stations together storing 2,000 results/s
    # (each sending what its share leaves every --flush seconds), and its p99 commit.
    most = max(args.stations)
    target_batch = math.ceil(TARGET_RESULTS_PER_S / most * args.flush)
    runs.append(Run("record_results", "2,000/s in total", most, target_batch, args.flush, args.seconds,
                    args.stored_before))
    runs += [Run(writer, mode, max(args.stations), batch, interval, args.seconds, args.stored_before)
             for writer in args.writers if writer != "record_results" for mode, batch, interval in modes]
    # One station flat out on a table nobody has analyzed yet: a new project's first minute.
    runs += [Run(writer, "flat out", 1, args.batch, 0.0, args.seconds, 0) for writer in args.writers]
    with tempfile.TemporaryDirectory(prefix="lineside-plant-bench-") as work, postgres_server() as server:
        settings = server_settings(server)
        with server.admin() as conn:
            settings = {"server_version": conn.execute("SHOW server_version").fetchone()[0], **settings}
        filesystem, flush_ms = filesystem_of(server.base), fsync_ms(server.base)
        for run in runs:
            measure_writes(server, run, Path(work))
            print(_row(run), flush=True)
        sections: list[str] = []
        if args.rollout_stations > 0:
            from benchmarks import plant_rollout

            # The tests' tiny model (the roll-out's own cost), then the shipped network
            # where torch is here to build it (copy, hash and load of 14 MB on every station).
            # With the network, 20 stations judging 5 parts/s each would need about 1.7 of
            # this machine's 2 cores before any roll-out (a real station has a PC of its
            # own), so there each judges 1 part/s: together about a third of the machine.
            for network in (False, True)[: 2 if _have_torch() else 1]:
                rollout_load = machine.load_average()
                figures = plant_rollout.measure_rollout(
                    server.url(server.new_database()), Path(work) / f"rollout-{int(network)}",
                    args.rollout_stations, args.rollout_rounds, rate=1.0 if network else 5.0, network=network)
                sections.append(plant_rollout.report(figures, rollout_load, machine.load_average(),
                                                     machine.command_line("benchmarks/plant.py")))
    text = report(runs, settings, filesystem, flush_ms, load_at_start, sections)
    print("\n".join(targets(runs)))
    if not args.no_write:
        RESULTS_FILE.write_text(text, encoding="utf-8")
        print(f"written to {RESULTS_FILE.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
