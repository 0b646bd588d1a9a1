"""Simulated plant writers and readers on one PostgreSQL project, as separate processes.

Shared by tests/test_many_writers.py (are the guarantees kept with many writers at once?)
and benchmarks/plant.py (how fast?). Each role runs in a process of its own, started as

    python -m benchmarks.plant_load station PROJECT --name S --journal FILE --go FILE ...
    python -m benchmarks.plant_load labeler PROJECT --author A --journal FILE --go FILE ...
    python -m benchmarks.plant_load reader  PROJECT --journal FILE --go FILE ...

from the repository root. A role opens the project, writes a "ready" line to its
journal and waits for the go file (JSON: {"deadline": epoch seconds}), so that every
process writes during the same window however long each took to start; it stops
starting calls at the deadline and finishes the one in flight.

The journal (JSON lines, flushed after every line) is what the process was told by
the store. A line is written only after the call returned, so it is a record of what
was acknowledged; a station also writes a "send" line before each call, so that a
station killed mid-call knows, when started again, which batch to send again (the way
a station forwarder resends the batch its outbox has not seen acknowledged).

Clock: time.monotonic() is CLOCK_MONOTONIC on Linux, one clock for all processes of
the machine, so "acknowledged before sent" can be compared across processes.

Also here: a throwaway PostgreSQL server for the benchmark (`postgres_server`), built
from the non-fixture helpers of tests/plant_fixtures.py but with settings of its own.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

GO_POLL_S = 0.005
VERDICT_WEIGHTS = {"ok": 0.40, "scratch": 0.25, "dent": 0.25, None: 0.10}  # None: the label is cleared
DEFECT_CLASSES = ("scratch", "dent")


# -- journals ----------------------------------------------------------------------


class Journal:
    """Append-only JSON lines, flushed per line: what survives the process."""

    def __init__(self, path: Path) -> None:
        cut_off = path.is_file() and path.stat().st_size > 0 and not path.read_bytes().endswith(b"\n")
        self._file = open(path, "a", encoding="utf-8")
        if cut_off:  # a killed process's half line must not swallow the next one
            self._file.write("\n")

    def write(self, **entry) -> None:
        self._file.write(json.dumps(entry) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_journal(path: Path) -> list[dict]:
    """The complete lines of a journal (a line cut off by a kill is left out)."""
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:
            pass  # the last line of a killed process may be half written
    return entries


def wait_for_go(go: Path) -> float:
    """Blocks until the go file exists; the deadline (epoch seconds) it holds."""
    while True:
        try:
            return float(json.loads(go.read_text(encoding="utf-8"))["deadline"])
        except (OSError, ValueError, KeyError):
            time.sleep(GO_POLL_S)  # not there yet, or being written


# -- station: result batches ---------------------------------------------------------


def result_uid(station: str, seq: int, index: int) -> str:
    """The id a station gives result *index* of its batch *seq*: random-looking like a
    UUID (the index sees inserts all over, not only at its right edge) but derivable, so
    a restarted station sends the same ids again and a check can recompute them."""
    return hashlib.sha256(f"{station}:{seq}:{index}".encode()).hexdigest()[:32]


def batch_uids(station: str, seq: int, n: int) -> list[str]:
    return [result_uid(station, seq, i) for i in range(n)]


def station_results(station: str, seq: int, n: int) -> list[dict]:
    """Batch *seq* of *station*: *n* results with the columns record_results takes."""
    at = datetime.now(timezone.utc)
    rows = []
    for i, uid in enumerate(batch_uids(station, seq, n)):
        fail = (seq * 31 + i) % 50 == 0  # about 2 % FAIL, like a good line
        rows.append({"at": at, "model_version": "v1", "image_sha": None, "source": f"{station}/cam1",
                     "verdict": "FAIL" if fail else "PASS", "score": 0.9 if fail else 0.05,
                     "defect_class": "scratch" if fail else None, "latency_ms": 4.0,
                     "station": station, "result_uid": uid})
    return rows


def _unacknowledged_send(entries: list[dict]) -> dict | None:
    """The last batch sent but not acknowledged (the process was killed in the call)."""
    acked = {e["seq"] for e in entries if e["kind"] == "ack"}
    sends = [e for e in entries if e["kind"] == "send"]
    return sends[-1] if sends and sends[-1]["seq"] not in acked else None


def run_station(project_dir: Path, name: str, journal_path: Path, go: Path, batch_min: int, batch_max: int,
                interval_s: float, seed: int, writer: str = "record_results") -> int:
    """Send result batches with Project.record_results until the deadline.

    Flat out (interval 0): the next batch as soon as the last is acknowledged. Paced:
    one batch every *interval_s* (a forwarder flushing its outbox on a timer), on a fixed
    schedule, so a slow call is not hidden by the next one starting later.
    *writer* other than record_results: a prototype from benchmarks/plant.py (measuring only).
    """
    from app.core.project import Project

    earlier = read_journal(journal_path)
    journal = Journal(journal_path)
    rng = random.Random(f"{seed}-{len(earlier)}")
    with Project.open(project_dir) as project:
        send = _writer(project, writer)
        project.inspections(limit=1)  # connected and warm before the clock starts
        journal.write(kind="ready", pid=os.getpid())
        deadline = wait_for_go(go)
        pending = _unacknowledged_send(earlier)
        seq = max((e["seq"] for e in earlier if e["kind"] in ("send", "ack")), default=-1) + 1
        next_at = time.monotonic()
        # A batch not acknowledged is sent again even after the deadline: an outbox drains.
        while pending is not None or time.time() < deadline:
            if pending is not None:  # resend after a restart or an error: same ids, stored once
                this_seq, n, resend = pending["seq"], pending["n"], True
                pending = None
            else:
                this_seq, n, resend = seq, rng.randint(batch_min, batch_max), False
                seq += 1
                journal.write(kind="send", seq=this_seq, n=n)
            rows = station_results(name, this_seq, n)
            sent, cpu = time.monotonic(), time.process_time()
            try:
                new = send(rows)
            except Exception as exc:  # noqa: BLE001 - the journal says what the store answered
                journal.write(kind="error", seq=this_seq, n=n, error=f"{type(exc).__name__}: {exc}")
                pending = {"seq": this_seq, "n": n}  # as a forwarder would: try the batch again
                time.sleep(0.1)
                continue
            acked, cpu = time.monotonic(), time.process_time() - cpu
            journal.write(kind="ack", seq=this_seq, n=n, new=new, resend=resend, sent=sent, acked=acked, cpu=cpu)
            if interval_s > 0:
                next_at += interval_s
                time.sleep(max(0.0, next_at - time.monotonic()))
    journal.write(kind="done")
    journal.close()
    return 0


def _writer(project, name: str):
    if name == "record_results":
        return project.record_results
    from benchmarks import plant  # the prototypes live beside the benchmark that measures them

    return getattr(plant, name)(project)


# -- labeler -------------------------------------------------------------------------


def slot_image(seed: int, slot: int, images: list[int]) -> int:
    """The image every labeler labels in time slot *slot* (the same for all of them)."""
    return images[random.Random(f"{seed}-slot-{slot}").randrange(len(images))]


def run_labeler(project_dir: Path, author: str, journal_path: Path, go: Path, images: list[int],
                slot_s: float, seed: int) -> int:
    """Label the shared images until the deadline, with Project.set_label.

    Time is cut into slots of *slot_s*; in each, every labeler labels the slot's image
    (slot_image: the same for all labelers), a few milliseconds apart, so two people
    often label the same image at nearly the same moment. A labeler that falls behind
    skips to the current slot.
    """
    import numpy as np

    from app.core.project import Project

    journal = Journal(journal_path)
    rng = random.Random(f"{seed}-{author}")
    verdicts, weights = list(VERDICT_WEIGHTS), list(VERDICT_WEIGHTS.values())
    with Project.open(project_dir) as project:
        sizes = {image_id: (project.image(image_id).height, project.image(image_id).width) for image_id in images}
        journal.write(kind="ready", pid=os.getpid())
        deadline = wait_for_go(go)
        start, slot = time.monotonic(), 0
        while time.time() < deadline:
            time.sleep(max(0.0, start + slot * slot_s + rng.uniform(0, 0.005) - time.monotonic()))
            image_id = slot_image(seed, slot, images)
            verdict = rng.choices(verdicts, weights)[0]
            mask = None
            if verdict in DEFECT_CLASSES:
                h, w = sizes[image_id]
                mask = np.zeros((h, w), np.uint8)
                y, x = rng.randrange(h - 8), rng.randrange(w - 8)
                mask[y:y + 8, x:x + 8] = 255
            sent = time.monotonic()
            try:
                label = project.set_label(image_id, verdict, mask=mask, author=author)
            except Exception as exc:  # noqa: BLE001 - the journal says what the store answered
                journal.write(kind="error", image=image_id, verdict=verdict, error=f"{type(exc).__name__}: {exc}")
            else:
                acked = time.monotonic()
                journal.write(kind="label", id=label.id, image=label.image_id, verdict=label.verdict,
                              author=label.author, sent=sent, acked=acked)
            slot = max(slot + 1, int((time.monotonic() - start) / slot_s))
    journal.write(kind="done")
    journal.close()
    return 0


# -- reader: what the trainer reads --------------------------------------------------


def run_reader(project_dir: Path, journal_path: Path, go: Path, images: int, verdicts: list[str]) -> int:
    """Read the labeled set the way training does (training/pipeline.py: label_counts,
    labeled_fingerprint, labeled) over and over until the deadline; a line for every
    state that cannot be (and every exception), and a summary at the end.

    Cannot be: a labeled pair whose label is not its image's, or is cleared, or has a
    verdict no labeler writes; counts that do not add up to the images; the number of
    stored results going down.
    """
    import sqlalchemy as sa

    from app.core import db
    from app.core.project import Project

    journal = Journal(journal_path)
    allowed = set(verdicts)
    reads, broken, last_results, results_read_at = 0, 0, 0, 0.0

    def bad(what: str) -> None:
        nonlocal broken
        broken += 1
        journal.write(kind="broken", read=reads, what=what)

    with Project.open(project_dir) as project:
        journal.write(kind="ready", pid=os.getpid())
        deadline = wait_for_go(go)
        while time.time() < deadline:
            reads += 1
            try:
                counts = project.label_counts()
                if any(n < 0 for n in counts.values()) or sum(counts.values()) != images:
                    bad(f"label_counts {counts} do not add up to {images} images")
                project.labeled_fingerprint()
                for record, label in project.labeled():
                    if label.image_id != record.id or label.verdict is None or label.verdict not in allowed:
                        bad(f"labeled() paired image {record.id} with label {label}")
                if time.monotonic() - results_read_at > 1.0:  # counting many rows: once a second
                    with project._read() as conn:
                        stored = conn.scalar(sa.select(sa.func.count()).select_from(db.inspections))
                    if stored < last_results:
                        bad(f"stored results went down from {last_results} to {stored}")
                    last_results, results_read_at = stored, time.monotonic()
            except Exception:  # noqa: BLE001 - a reader must never fail on a state the writers leave
                bad(traceback.format_exc())
    journal.write(kind="summary", reads=reads, broken=broken)
    journal.close()
    return 0


# -- starting the processes ------------------------------------------------------------


@dataclass
class Fleet:
    """The role processes of one run, their journals, and the go file."""

    folder: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    argv: dict[str, list[str]] = field(default_factory=dict)

    @property
    def go(self) -> Path:
        return self.folder / "go.json"

    def journal(self, name: str) -> Path:
        return self.folder / f"{name}.jsonl"

    def start(self, name: str, role: str, project: Path, *options: str) -> None:
        argv = [sys.executable, "-m", "benchmarks.plant_load", role, str(project),
                "--journal", str(self.journal(name)), "--go", str(self.go), *options]
        self.argv[name] = argv
        self.processes[name] = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                                stderr=open(self.folder / f"{name}.stderr", "ab"))

    def restart(self, name: str) -> None:
        self.processes[name] = subprocess.Popen(self.argv[name], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                                stderr=open(self.folder / f"{name}.stderr", "ab"))

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        end = time.monotonic() + timeout_s
        waiting = set(self.processes)
        while waiting:
            for name in list(waiting):
                if any(e["kind"] == "ready" for e in read_journal(self.journal(name))):
                    waiting.discard(name)
                elif self.processes[name].poll() is not None:
                    raise RuntimeError(f"{name} exited before it was ready:\n{self.stderr(name)}")
            if time.monotonic() > end:
                raise TimeoutError(f"not ready after {timeout_s:.0f} s: {sorted(waiting)}")
            time.sleep(0.05)

    def start_writing(self, duration_s: float) -> float:
        """Every process starts now and stops starting calls after *duration_s*; the deadline."""
        deadline = time.time() + duration_s
        partial = self.go.with_suffix(".tmp")
        partial.write_text(json.dumps({"deadline": deadline}), encoding="utf-8")
        partial.replace(self.go)  # whole or not at all: a process must never read half of it
        return deadline

    def wait_all(self, timeout_s: float) -> dict[str, int]:
        """Exit status of every process; the ones still running after *timeout_s* are killed (-9)."""
        end = time.monotonic() + timeout_s
        codes = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                codes[name] = process.wait()
        return codes

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()

    def stderr(self, name: str) -> str:
        path = self.folder / f"{name}.stderr"
        return path.read_text(errors="replace")[-3000:] if path.is_file() else ""


# -- a PostgreSQL server for the benchmark ---------------------------------------------


# The server's settings that decide how fast and how safely a commit is; shown in the results.
REPORTED_SETTINGS = ("fsync", "synchronous_commit", "wal_sync_method", "full_page_writes", "commit_delay",
                     "shared_buffers", "max_connections", "wal_buffers", "max_wal_size")


@contextlib.contextmanager
def postgres_server(fsync: bool = True, max_connections: int = 100, base_dir: Path | None = None) -> Iterator:
    """A throwaway PostgreSQL server (tests/plant_fixtures.PostgresServer), stopped and
    removed at the end. Unlike the test fixture's, durable by default: fsync on, and
    otherwise the server's default settings (initdb's --no-sync only skips syncing
    initdb's own files once)."""
    from tests.plant_fixtures import SUPERUSER, PostgresServer, _as_server_user, _bin_dir, _free_port

    bin_dir = _bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (no initdb/pg_ctl; on Debian: apt-get install postgresql)")
    runner = _as_server_user()
    if runner is None:
        raise RuntimeError("running as root, and no runuser with a postgres or nobody user to run initdb as")
    prefix, user = runner
    base = Path(tempfile.mkdtemp(prefix="lineside-pg-", dir=base_dir))
    if user is not None:
        shutil.chown(base, user)
    data, log = base / "data", base / "server.log"
    pg_ctl = [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data)]

    def run(argv: list[str], what: str) -> None:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise RuntimeError(f"{what} failed ({' '.join(argv)}):\n{result.stdout}{result.stderr}{tail}")

    try:
        run([*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER, "--auth=trust",
             "-E", "UTF8", "--locale=C", "--no-sync"], "initdb")
        port = _free_port()
        options = (f"-k {base} -c listen_addresses=127.0.0.1 -p {port} -c fsync={'on' if fsync else 'off'} "
                   f"-c max_connections={max_connections}")
        run([*pg_ctl, "-l", str(log), "-w", "-t", "60", "-o", options, "start"], "starting the server")
        yield PostgresServer(port, base)
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*pg_ctl, "-m", "fast", "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


def server_settings(server) -> dict[str, str]:
    with server.admin() as conn:
        return {name: conn.execute(f"SHOW {name}").fetchone()[0] for name in REPORTED_SETTINGS}


# -- the command line of the role processes ----------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    roles = parser.add_subparsers(dest="role", required=True)
    for role in ("station", "labeler", "reader"):
        sub = roles.add_parser(role)
        sub.add_argument("project", type=Path)
        sub.add_argument("--journal", type=Path, required=True)
        sub.add_argument("--go", type=Path, required=True)
        sub.add_argument("--seed", type=int, default=1)
        if role == "station":
            sub.add_argument("--name", required=True)
            sub.add_argument("--batch-min", type=int, default=1)
            sub.add_argument("--batch-max", type=int, default=100)
            sub.add_argument("--interval", type=float, default=0.0, help="seconds between batches; 0: flat out")
            sub.add_argument("--writer", default="record_results")
        elif role == "labeler":
            sub.add_argument("--author", required=True)
            sub.add_argument("--images", required=True, help="image ids, comma-separated")
            sub.add_argument("--slot", type=float, default=0.1)
        else:
            sub.add_argument("--images", type=int, required=True, help="how many images the project has")
    args = parser.parse_args(argv)
    if args.role == "station":
        return run_station(args.project, args.name, args.journal, args.go, args.batch_min, args.batch_max,
                           args.interval, args.seed, args.writer)
    if args.role == "labeler":
        return run_labeler(args.project, args.author, args.journal, args.go,
                           [int(i) for i in args.images.split(",")], args.slot, args.seed)
    return run_reader(args.project, args.journal, args.go, args.images, ["ok", *DEFECT_CLASSES])


if __name__ == "__main__":
    sys.exit(main())
