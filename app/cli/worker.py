"""`lineside worker`, `lineside retrain --on-server`, `lineside jobs`: a training server.

A worker takes retrain jobs from the project's queue (app/core/train_jobs.py) one at a
time and runs the real trainer on them, in this process or, with --processes N, as N
processes under torchrun (training/distributed.py). Anyone who can open the project
queues one and follows it in the lines `lineside train` prints. The queue is in the
project database: the worker opens no port, and who may reach the queue is the
database's business (docs/adr/0011).

Requesting and watching need no trainer: a station edition (no torch, no app.cli.train)
queues and follows retrains; only the worker needs the trainer installed.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from app.cli.signals import SignalStop
from app.core import train_jobs
from app.core.errors import LinesideError

# A progress event per training step would be a database write per step: at most one
# every this many seconds, besides each phase's first and last (and every other kind).
PROGRESS_INTERVAL_S = 0.5
EXIT_FAILED, EXIT_CANCELLED = 1, 3  # 3 as `lineside train` exits when cancelled


def register(sub) -> None:
    w = sub.add_parser(
        "worker", help="run queued retrains of a project, one at a time (a training server)",
        description="Take the project's queued training jobs one at a time and run the trainer on each, writing "
        "its progress into the job. Stop it with Ctrl+C or SIGTERM: a running job goes back to the queue.")
    w.add_argument("project", type=Path)
    w.add_argument("--once", action="store_true", help="run at most one job, then exit")
    w.add_argument("--poll", type=_seconds, default=5.0, metavar="SECONDS",
                   help="how often to look for a new job (default 5)")
    w.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                   help="where to train jobs that leave the device to the server (default auto)")
    w.add_argument("--processes", type=_processes, default=1, metavar="N",
                   help="train each job on N processes with DistributedDataParallel, e.g. one per GPU (default 1)")
    w.add_argument("--name", default=f"{socket.gethostname()}:{os.getpid()}",
                   help="this worker's name in the jobs (default HOST:PID)")
    w.add_argument("--heartbeat", type=_seconds, default=train_jobs.HEARTBEAT_S, metavar="SECONDS",
                   help=f"how often a running job says it is alive (default {train_jobs.HEARTBEAT_S:g})")
    w.add_argument("--stale-after", type=_seconds, default=train_jobs.STALE_AFTER_S, metavar="SECONDS",
                   help="a running job not heard of for this long is put back in the queue "
                        f"(default {train_jobs.STALE_AFTER_S:g})")
    w.set_defaults(handler=run_worker)

    r = sub.add_parser(
        "retrain", help="ask a training server to retrain the project (--on-server), and follow it",
        description="Queue a retrain of PROJECT for a training server ('lineside worker PROJECT' runs it) and print "
        "its progress as 'lineside train' does. Ctrl+C stops watching; the job goes on.")
    r.add_argument("project", type=Path)
    r.add_argument("--on-server", action="store_true", help="queue it for a training server (required)")
    r.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    # Checked by train_jobs.check_options, the one place the desktop app's requests pass too.
    r.add_argument("--epochs", type=int, default=None)
    r.add_argument("--time-budget", type=float, default=None, metavar="SECONDS")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--mode", choices=list(train_jobs.MODES), default="auto")
    r.add_argument("--false-reject-target", type=float, default=None, metavar="RATE")
    r.add_argument("--by", default=None, metavar="NAME", help="who asks for it (default: the login name)")
    r.add_argument("--no-wait", action="store_true", help="queue it and return at once")
    r.set_defaults(handler=run_retrain)

    j = sub.add_parser("jobs", help="list a project's training jobs; watch or cancel one")
    j.add_argument("project", type=Path)
    action = j.add_mutually_exclusive_group()
    action.add_argument("--watch", type=int, metavar="ID", help="print the job's progress until it ends")
    action.add_argument("--cancel", type=int, metavar="ID", help="cancel a queued job, or stop a running one")
    j.set_defaults(handler=run_jobs)


def _processes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: the number of processes must be 1 or more")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number of seconds") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text}: a number of seconds above 0, e.g. 5")
    return value


def _import_trainer():
    try:
        from training import pipeline
    except ImportError as exc:
        raise LinesideError(
            "Training is not installed in this edition of Lineside, so it cannot be a training server (a station "
            "can still queue retrains with 'lineside retrain --on-server'). Run the worker on a workstation "
            "edition, or install the 'train' extra.") from exc
    return pipeline


# -- the worker --------------------------------------------------------------------


class EventRecorder:
    """The trainer's on_event for a job: writes the events into it, progress throttled."""

    def __init__(self, project, job_id: int, echo: Callable[[dict], None] = lambda e: None,
                 min_interval_s: float = PROGRESS_INTERVAL_S):
        self.project, self.job_id, self.echo, self.min_interval_s = project, job_id, echo, min_interval_s
        self._last, self._phase = float("-inf"), None

    def __call__(self, event: dict) -> None:
        self.echo(event)
        if event.get("event") == "progress":
            now = time.monotonic()
            edge = event.get("phase") != self._phase or event.get("step") in (0, event.get("steps"))
            if not edge and now - self._last < self.min_interval_s:
                return
            self._last, self._phase = now, event.get("phase")
        try:
            train_jobs.append_event(self.project, self.job_id, event)
        except LinesideError as exc:
            # The training goes on: the job's state at the end still says how it went.
            print(f"lineside worker: WARNING job {self.job_id}: a progress event was not saved ({exc})",
                  file=sys.stderr, flush=True)


class _Heartbeat:
    """Says the job's worker is alive every few seconds, and hears of a cancel."""

    def __init__(self, project, job_id: int, worker: str, every_s: float):
        self.project, self.job_id, self.worker, self.every_s = project, job_id, worker, every_s
        self.cancel, self.lost, self._done = threading.Event(), threading.Event(), threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def __enter__(self) -> "_Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                status = train_jobs.heartbeat(self.project, self.job_id, self.worker)
            except LinesideError as exc:  # the server away for a moment: try again next beat
                print(f"lineside worker: WARNING job {self.job_id}: no heartbeat ({exc})", file=sys.stderr, flush=True)
                continue
            if status == train_jobs.CANCEL:
                self.cancel.set()
            elif status == train_jobs.LOST:
                self.lost.set()


class _Presence:
    """Says the worker is there every PRESENCE_S, idle or busy, so the desktop app can
    tell an idle training server from none (train_jobs.workers); a clean exit says it
    has stopped. A write that fails is tried again at the next beat: presence is a
    courtesy to the app and must never stop the worker."""

    def __init__(self, project, worker: str, device: str, log: Callable[[str], None] = print):
        self.project, self.worker, self.log = project, worker, log
        self.every_s = train_jobs.PRESENCE_S  # read here, not at import: tests shorten it
        self.device, self.gpus = _hardware(device)
        self.state = train_jobs.IDLE
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"presence-{worker}", daemon=True)

    def __enter__(self) -> "_Presence":
        self.say(train_jobs.IDLE)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._done.set()
        self._thread.join()
        try:
            train_jobs.worker_gone(self.project, self.worker)
        except LinesideError as exc:
            self.log(f"WARNING this worker's exit was not recorded ({exc}); it shows offline in a minute")

    def say(self, state: str) -> None:
        self.state = state
        try:
            train_jobs.worker_alive(self.project, self.worker, state, self.device, self.gpus)
        except LinesideError as exc:
            self.log(f"WARNING the worker's presence was not recorded ({exc})")

    def _run(self) -> None:
        while not self._done.wait(self.every_s):
            self.say(self.state)


def _hardware(device: str) -> tuple[str, int | None]:
    """What the worker trains on when a job leaves it the choice: ("cpu", None) or
    ("cuda", GPUs). torch only where a GPU may be used (the worker has the trainer)."""
    if device == "cpu":
        return "cpu", None
    try:
        import torch
    except ImportError:
        return "cpu", None
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return ("cuda", count) if count else ("cpu", None)


def _train_here(folder: Path, options: dict, device: str, on_event, should_stop) -> str:
    pipeline = _import_trainer()
    model = pipeline.train_project(folder, epochs=options["epochs"], time_budget_s=options["time_budget_s"],
                                   device=device, seed=options["seed"], mode=options["mode"],
                                   false_reject_target=options["false_reject_target"], on_event=on_event,
                                   should_stop=should_stop)
    return model.version


def _train_on_processes(folder: Path, options: dict, device: str, processes: int, on_event, should_stop) -> str:
    """The job under torchrun on *processes* processes; rank 0's JSON events are read
    from its output as the desktop app reads `lineside train --progress json`."""
    from training.loop import Cancelled

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
               "-m", "training.distributed", str(folder), "--progress", "json", "--device", device,
               "--mode", options["mode"], "--seed", str(options["seed"])]
    for flag, key in (("--epochs", "epochs"), ("--time-budget", "time_budget_s"),
                      ("--false-reject-target", "false_reject_target")):
        if options[key] is not None:
            command += [flag, str(options[key])]
    # A session of its own: a Ctrl+C at the worker's terminal reaches the worker, which
    # decides; a cancel is a SIGTERM to torchrun, which passes it on to the ranks.
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, start_new_session=True)
    finished = threading.Event()

    def stop_when_asked() -> None:
        while not finished.wait(0.2):
            if should_stop():
                child.send_signal(signal.SIGTERM)
                return

    threading.Thread(target=stop_when_asked, daemon=True).start()
    last = None
    try:
        for line in child.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                print(line, end="", file=sys.stderr)  # not an event: the worker's log
                continue
            if isinstance(event, dict) and event.get("event") in ("done", "cancelled", "error"):
                last = event
            if isinstance(event, dict) and event.get("event") not in ("cancelled", "error"):
                on_event(event)  # the worker records those two itself, with its own words
        code = child.wait()
    finally:
        finished.set()
    if last and last["event"] == "done":
        return last["version"]
    if last and last["event"] == "cancelled":
        raise Cancelled()
    if last and last["event"] == "error":
        raise LinesideError(last["message"])
    raise LinesideError(f"The distributed trainer ({processes} processes under torchrun) ended with exit code "
                        f"{code} and no result; the worker's log shows why.")


def _cancelled() -> type[BaseException]:
    """training.loop.Cancelled; a class nothing raises where the trainer is not installed
    (the job then fails with the trainer's "not installed" message)."""
    try:
        from training.loop import Cancelled
    except ImportError:
        return type("NeverRaised", (Exception,), {})
    return Cancelled


def run_job(project, job: train_jobs.Job, worker: str, device: str = "auto", processes: int = 1,
            shutdown: threading.Event | None = None, heartbeat_s: float = train_jobs.HEARTBEAT_S,
            echo: Callable[[dict], None] = lambda e: None) -> train_jobs.Job | None:
    """Run one claimed job to its end; the job as it ended (None: it was taken from
    this worker meanwhile, and is left to whoever has it now)."""
    shutdown = shutdown or threading.Event()
    options = job.options
    device = options["device"] if options["device"] != "auto" else device
    recorder = EventRecorder(project, job.id, echo)

    def record(event: dict) -> None:
        recorder(event)
        if event.get("event") == "done":  # the model is saved: the job's result, whatever follows
            try:
                train_jobs.record_result(project, job.id, worker, event["version"])
            except LinesideError as exc:
                print(f"lineside worker: WARNING job {job.id}: its result was not noted early ({exc})",
                      file=sys.stderr, flush=True)

    with _Heartbeat(project, job.id, worker, heartbeat_s) as beat:
        def should_stop() -> bool:
            return beat.cancel.is_set() or beat.lost.is_set() or shutdown.is_set()

        try:
            if processes > 1:
                version = _train_on_processes(project.path, options, device, processes, record, should_stop)
            else:
                version = _train_here(project.path, options, device, record, should_stop)
        except _cancelled():
            if beat.lost.is_set():
                return None
            if beat.cancel.is_set():
                record({"event": "cancelled"})
                return train_jobs.finish(project, job.id, worker, train_jobs.CANCELLED, error="cancelled on request")
            reason = (f"worker {worker} was stopped before the job finished; the job went back to the queue and "
                      "starts over on the next worker")
            record({"event": "error", "message": reason})
            return train_jobs.release(project, job.id, worker, reason)
        except LinesideError as exc:  # bad input: too few labels, no GPU, the disk full...
            record({"event": "error", "message": str(exc)})
            return train_jobs.finish(project, job.id, worker, train_jobs.FAILED, error=str(exc))
        except Exception as exc:  # a bug: the job says so, the worker goes on with the next one
            traceback.print_exc()
            message = (f"The trainer failed unexpectedly ({type(exc).__name__}: {exc}). The log of worker {worker} "
                       "has the details.")
            record({"event": "error", "message": message})
            return train_jobs.finish(project, job.id, worker, train_jobs.FAILED, error=message)
    return train_jobs.finish(project, job.id, worker, train_jobs.DONE, result_version=version)


def serve(project, worker: str, *, device: str = "auto", processes: int = 1, once: bool = False,
          poll_s: float = 5.0, heartbeat_s: float = train_jobs.HEARTBEAT_S,
          stale_after_s: float = train_jobs.STALE_AFTER_S, shutdown: threading.Event | None = None,
          echo: Callable[[dict], None] = lambda e: None, log: Callable[[str], None] = print) -> list:
    """Take and run jobs until *shutdown* is set (or, with *once*, after one); the jobs as they ended."""
    shutdown = shutdown or threading.Event()
    with _Presence(project, worker, device, log=log) as presence:
        return _serve(project, worker, presence, device=device, processes=processes, once=once, poll_s=poll_s,
                      heartbeat_s=heartbeat_s, stale_after_s=stale_after_s, shutdown=shutdown, echo=echo, log=log)


def _serve(project, worker: str, presence: _Presence, *, device: str, processes: int, once: bool, poll_s: float,
           heartbeat_s: float, stale_after_s: float, shutdown: threading.Event, echo: Callable[[dict], None],
           log: Callable[[str], None]) -> list:
    ended = []
    while not shutdown.is_set():
        try:
            for job in train_jobs.recover_stale(project, stale_after_s):
                log(f"job {job.id}: {job.error} (now {job.state})")
            job = train_jobs.claim_next(project, worker)
        except LinesideError as exc:
            if once:
                raise
            log(f"WARNING {exc}")  # the server away for a while: a worker waits for it
            shutdown.wait(poll_s)
            continue
        if job is None:
            if once:
                log("no training job is waiting")
                break
            shutdown.wait(poll_s)
            continue
        log(f"job {job.id}: started for {job.requested_by} ({_describe(job.options)})")
        presence.say(train_jobs.BUSY)
        try:
            result = run_job(project, job, worker, device, processes, shutdown, heartbeat_s, echo)
        except LinesideError as exc:  # the database went away just as the job ended
            if once:
                raise
            log(f"WARNING job {job.id}: how it ended was not saved ({exc}); it goes back to the queue once stale")
            continue
        finally:
            presence.say(train_jobs.IDLE)
        log(f"job {job.id}: " + (_outcome(result) if result else "taken over by another worker; this run was dropped"))
        ended.append(result)
        if once:
            break
    return ended


def _describe(options: dict) -> str:
    shown = {k: v for k, v in options.items() if v is not None and v != train_jobs.DEFAULT_OPTIONS.get(k)}
    return ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in shown.items()) or "default options"


def _outcome(job: train_jobs.Job) -> str:
    if job.state == train_jobs.DONE:
        return f"done: new candidate {job.result_version}"
    return f"{job.state}" + (f": {job.error}" if job.error else "")


def run_worker(args) -> int:
    from app.cli.train_events import text_event
    from app.core.project import Project

    _import_trainer()  # before any job is taken: a worker that cannot train must not fail them all
    shutdown = threading.Event()
    with SignalStop(shutdown), Project.open(args.project) as project:
        print(f"worker {args.name} serves {project.path}" + (f" on {args.processes} processes" if args.processes > 1
                                                             else ""), flush=True)
        serve(project, args.name, device=args.device, processes=args.processes, once=args.once, poll_s=args.poll,
              heartbeat_s=args.heartbeat, stale_after_s=args.stale_after, shutdown=shutdown, echo=text_event,
              log=lambda line: print(line, flush=True))
    if shutdown.is_set():
        print(f"worker {args.name} stopped", flush=True)
    return 0


# -- asking for a retrain, following it -----------------------------------------------


def _print_event(event: dict) -> None:
    from app.cli.train_events import text_event

    kind = event.get("event")
    if kind == "error":
        print(f"error: {event.get('message')}", flush=True)
    elif kind == "cancelled":
        print("training cancelled; nothing was saved", flush=True)
    else:
        text_event(event)


def _follow(project, job: train_jobs.Job) -> int:
    if job.state == train_jobs.QUEUED:
        print(f"job {job.id} is waiting for a worker ('lineside worker {project.path}' runs the queue)", flush=True)
    try:
        ended = train_jobs.watch(project, job.id, _print_event)
    except KeyboardInterrupt:
        print(f"\nstopped watching; job {job.id} goes on. Watch it again with: lineside jobs {project.path} --watch "
              f"{job.id}; cancel it with: lineside jobs {project.path} --cancel {job.id}", flush=True)
        return 130
    if ended.state == train_jobs.DONE:
        return 0
    print(f"job {ended.id} {_outcome(ended)}", file=sys.stderr, flush=True)
    return EXIT_CANCELLED if ended.state == train_jobs.CANCELLED else EXIT_FAILED


def run_retrain(args) -> int:
    from app.core.project import Project

    if not args.on_server:
        raise LinesideError("'lineside retrain' queues a retrain for a training server: add --on-server. "
                            f"To train on this PC, use: lineside train {args.project}")
    options = {"mode": args.mode, "epochs": args.epochs, "false_reject_target": args.false_reject_target,
               "device": args.device, "seed": args.seed, "time_budget_s": args.time_budget}
    with Project.open(args.project) as project:
        job = train_jobs.request_retrain(project, options, args.by or getpass.getuser())
        print(f"queued training job {job.id} for {job.requested_by} ({_describe(job.options)})", flush=True)
        if args.no_wait:
            return 0
        return _follow(project, job)


def _when(value) -> str:
    return "-" if value is None else value.astimezone().strftime("%Y-%m-%d %H:%M")


def run_jobs(args) -> int:
    from app.cli.models import format_table
    from app.core.project import Project

    with Project.open(args.project) as project:
        if args.cancel is not None:
            job = train_jobs.request_cancel(project, args.cancel)
            if job.state == train_jobs.RUNNING:
                print(f"job {job.id}: asked worker {job.worker} to stop it; it does within a training step or two")
            else:
                print(f"job {job.id}: {_outcome(job)}")
            return 0
        if args.watch is not None:
            return _follow(project, train_jobs.job(project, args.watch))
        listed = train_jobs.jobs(project)
    if not listed:
        print("no training jobs yet; queue one with: lineside retrain PROJECT --on-server")
        return 0
    rows = [[str(j.id), j.state + (" (cancel asked)" if j.cancel_requested and not j.finished else ""),
             j.requested_by, _when(j.requested_at), j.worker or "-",
             j.result_version or ((j.error or "")[:60] or "-")] for j in listed]
    print(format_table(["id", "state", "asked by", "asked at", "worker", "result"], rows))
    return 0
