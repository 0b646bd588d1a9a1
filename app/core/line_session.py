"""The station at the line: one definition of sources -> inspection -> verdict ->
result record -> outputs, for the desktop app, `lineside run`, `lineside inspect` and
the demo alike. Qt-free and torch-free: plain threads.

    session = LineSession(project, [make_source("camera:0")], outputs=[my_listener])  # app.core.line_sources
    session.start()
    session.trigger()            # or free-run: every frame / every file / every part
    ...
    session.stop()               # finishes the part in hand, commits everything

Threads
-------
- one capture thread per view (`app.core.camera.CaptureThread`: reconnects a lost
  camera with a growing back-off);
- the inspection thread: takes one frame per view (one trigger captures all views),
  runs the model on all of them in one batch, makes the part's verdict (it FAILs if any
  view fails), updates counters and drift, calls `on_result` and queues the result;
- the writer thread: records results in the project in batched transactions
  (group commit) and then calls `on_committed`;
- the retention thread (`app.core.image_retention.ImageRetention`): writes kept
  images, enforces the quota.

Acknowledged
------------
A result is *acknowledged* when the transaction holding it has committed (SQLite,
WAL, synchronous=FULL: it is on disk). Only acknowledged results reach
`on_committed`, which is what the PLC link listens to: the PLC's result-valid bit is
set only after the commit, so a crash never loses a result the PLC has seen. What a
crash can lose is the results not yet committed: the batch being written and the ones
queued behind it, none of which any PLC or log consumer has been told about. A plant
station's session commits into the station's local outbox instead (`sink`,
app/core/outbox.py), the same way.

Batching is group commit: the writer takes everything queued (at most `max_batch`
results) and commits it in one transaction, then the next lot. With the default
`commit_interval_s=0` a result waits only for the commit before it (one fsync, a few
ms), and under load batches grow by themselves; with `commit_interval_s > 0` the
writer also waits up to that long for more results before committing (fewer fsyncs,
e.g. 0.25 s for a GUI-only line) — the bounded delay the PLC then sees on every part.
The writer queue is bounded (`max_queued`); when it is full the inspection thread
waits, the station stays busy, and triggers are counted as missed, never dropped
silently.

Busy
----
The session is *busy* from an accepted trigger until that part's verdict is made
(capture + inspection). A trigger while busy is counted as missed
(`counters.missed`) and reported to every listener (`on_trigger(n, False)` and
`on_error(TRIGGER_WHILE_BUSY)`). Committing runs in parallel with the next part.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence

import numpy as np

from app.core.errors import LinesideError, printable
from app.core.frames import Frame
from app.core.line_views import LineView
from app.core.plc.signals import ErrorCode

if TYPE_CHECKING:
    from app.core.image_retention import ImageRetention
    from app.core.project import Project
    from app.core.runtime import Inspector, Verdict

log = logging.getLogger(__name__)

MAX_VIEWS = 4
DEFAULT_MAX_BATCH = 50
DEFAULT_MAX_QUEUED = 64  # results waiting for the writer (they hold their images)
DEFAULT_SNAP_TIMEOUT_S = 2.0
STORE_RETRY_S = 1.0
TIMING_WINDOW = 2000
OTHER_CLASS_CODE = 255  # a defect class the model's class list does not name ("defect")
STAGES = ("capture", "inspect", "commit", "total")


# -- results and counters ------------------------------------------------------------


@dataclass
class PartResult:
    """One part: the verdict of all its views, and where it stands."""

    seq: int  # running number of the part in this session (1, 2, ...)
    trigger: int | None  # the trigger number that took it (None in free-run)
    at: float  # time.time() of the first view's frame
    sources: list[str]
    verdicts: list["Verdict"]  # one per view
    passed: bool
    score: float  # the highest view score
    defect_class: str | None  # of the failing view with the highest score; None when PASS
    class_code: int  # 0 = PASS, else the class's index in the model (OTHER_CLASS_CODE if unnamed)
    model_version: str | None
    truths: list[str | None] = field(default_factory=list)  # simulated line only
    paths: list[Path | None] = field(default_factory=list)  # hot folder only
    images: list[np.ndarray] | None = None  # the frames; dropped after on_result unless retained
    timing: dict[str, float] = field(default_factory=dict)  # ms per stage (STAGES)
    inspection_id: int | None = None  # the store's id, set by the commit (acknowledged)
    retained: bool = False  # image retention keeps this part's images
    image_sha: str | None = None
    started: float = 0.0  # perf_counter at the trigger (or at the frame's arrival)
    result_uid: str | None = None  # a plant station's id of the result (set by its outbox)

    @property
    def label(self) -> str:
        return "PASS" if self.passed else "FAIL"

    @property
    def source(self) -> str:
        return " + ".join(self.sources)

    @property
    def truth(self) -> str | None:
        """The part's truth on the simulated line: the first defect of any view, else ok."""
        known = [t for t in self.truths if t is not None]
        if not known:
            return None
        return next((t for t in known if t != "ok"), "ok")

    @property
    def score_scaled(self) -> int:
        """The score as an integer 0..10000 (what the PLC reads)."""
        return max(0, min(10000, int(round(self.score * 10000))))


@dataclass(frozen=True)
class Counters:
    parts: int = 0
    passed: int = 0
    failed: int = 0
    per_class: dict[str, int] = field(default_factory=dict)  # FAIL parts per defect class
    missed: int = 0  # triggers that could not be taken (busy, disabled, buffer full)
    errors: int = 0  # parts that could not be inspected (no image, bad frame)
    dropped: int = 0  # free-run frames pushed out before they were inspected

    @property
    def yield_(self) -> float | None:
        return None if self.parts == 0 else self.passed / self.parts


class LineListener:
    """What a view of the line (GUI, results log, PLC, image retention) can hear.

    Methods are called on the session's threads and must return quickly; an exception
    in one is logged and does not stop the line. Override what you need.
    """

    def on_state(self, state: str) -> None:
        """"starting", "ready", "stopped", or a source's state ("lost: Camera 0 — reconnecting")."""

    def on_trigger(self, number: int, accepted: bool) -> None:
        """A trigger arrived: taken (*number* is its trigger number) or missed."""

    def on_frame(self, view: int, frame: Frame) -> None:
        """A view captured a frame (every frame, judged or not: a live preview).
        Called on the capture thread at the camera's rate: hand it on, do not work here."""

    def on_result(self, result: PartResult) -> None:
        """A part was judged (not yet committed: show it, do not promise it)."""

    def on_committed(self, results: list[PartResult]) -> None:
        """These results are in the store (acknowledged), in order."""

    def on_error(self, code: int, message: str) -> None:
        """Something went wrong (ErrorCode); the line keeps going if it can."""

    def on_part_failed(self, frames: list[Frame], message: str) -> None:
        """A part was taken but could not be judged: a view's file could not be read
        (`frame.error` says why, `frame.path` names it) or the model failed on it. It has
        no result and is counted in `errors`. Called on the inspection thread, in order
        with on_result (followed by on_error)."""

    def on_model(self, version: str | None) -> None:
        """The model judging parts changed (start, select_model)."""

    def on_counters_reset(self) -> None:
        """reset_counters() was called."""

    def on_drift(self, status: dict) -> None:
        """The drift monitor's status changed (monitoring.DriftMonitor.status())."""


class CallbackListener(LineListener):
    """A listener from plain callables: CallbackListener(on_committed=fn, ...)."""

    def __init__(self, **callbacks: Callable[..., None]) -> None:
        for name, fn in callbacks.items():
            if not hasattr(LineListener, name):
                raise TypeError(f"LineListener has no {name}")
            setattr(self, name, fn)


# -- the session ---------------------------------------------------------------------


@dataclass
class _Job:
    trigger: int
    at: float  # time.time()
    started: float  # perf_counter


class LineSession:
    """Sources -> inspection -> verdict -> record -> outputs, with counters, drift and timing.

    *project*: a Project (results are recorded in it; `select_model` works), a project
    folder (opened here, closed by stop()), or an Inspector (nothing is recorded;
    results are acknowledged as soon as they are judged).
    *sources*: 1..4 frame sources, the views of one part (`make_source`).
    *outputs*: LineListener objects (add more with add_output before start()).
    *triggered*: parts are taken only on trigger() (a PLC, a button); otherwise free-run.
    *retention*: an ImageRetention (which images to keep, under which quota).
    *max_parts*: stop by itself after that many parts, judged or failed (wait() returns then).
    *sink*: where results are committed instead of the project (an object with
    `commit(results)`, e.g. a plant station's local outbox, app/core/outbox.py); a result
    is acknowledged once `commit` returned. With an Inspector as *project*, *model* names
    its version.
    set_triggered() switches between triggered and free-run while running.
    """

    def __init__(
        self,
        project: "Project | Path | str | Inspector",
        sources: Sequence[Any],
        outputs: Iterable[LineListener] = (),
        *,
        retention: "ImageRetention | None" = None,
        triggered: bool = False,
        model: str | None = None,
        threads: int | None = None,
        rate_hz: float | None = None,
        max_parts: int | None = None,
        commit_interval_s: float = 0.0,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_queued: int = DEFAULT_MAX_QUEUED,
        snap_timeout_s: float = DEFAULT_SNAP_TIMEOUT_S,
        sink: Any = None,
    ) -> None:
        sources = list(sources)
        if not 1 <= len(sources) <= MAX_VIEWS:
            raise LinesideError(f"a part is seen by 1 to {MAX_VIEWS} views; {len(sources)} sources were given.")
        from app.core.runtime import Inspector

        self._own_project = False
        self._inspector: Inspector | None = None
        self.project: Project | None = None
        if isinstance(project, Inspector):
            self._inspector = project
        elif isinstance(project, (str, Path)):
            from app.core.project import Project

            self.project = Project.open(project)
            self._own_project = True
        else:
            self.project = project
        self.sources = sources
        self.triggered = triggered
        self.retention = retention
        self._wanted_model, self._threads = model, threads
        self.rate_hz = rate_hz
        self.max_parts = max_parts
        self.commit_interval_s = max(0.0, float(commit_interval_s))
        self.max_batch = max(1, int(max_batch))
        self.max_queued = max(1, int(max_queued))
        self.snap_timeout_s = snap_timeout_s
        self.sink = sink
        self._listeners: list[LineListener] = list(outputs)
        if retention is not None:
            self._listeners.append(retention)
        from app.core.audit_sampling import AuditSampler

        # PASS parts a person re-checks; called by the writer before the outputs hear of a
        # commit (see _publish), not an output itself.
        self.audit_sampler = AuditSampler.for_project(self.project)
        self.model_version: str | None = None
        self.model_sha: str | None = None  # given by use_model (a plant station checks it)
        self.class_names: list[str] = []
        self._drift = None
        self._drift_state: tuple | None = None
        self._views: list[LineView] = []
        self._lock = threading.RLock()
        self._counts = Counters()
        self._per_class: dict[str, int] = {}
        self._timing: dict[str, deque[float]] = {s: deque(maxlen=TIMING_WINDOW) for s in STAGES}
        self._jobs: deque[_Job] = deque()
        self._job_ready = threading.Condition(self._lock)
        self._busy = False
        self._triggers = 0
        self._seq = 0
        self._failed_parts = 0  # parts taken that could not be judged (on_part_failed)
        self._mode_changed = threading.Event()
        self._queue: deque[PartResult] = deque()
        self._queue_cond = threading.Condition()
        self._stopping = threading.Event()
        self._done = threading.Event()  # the inspection thread ended
        self._finished = threading.Event()  # everything committed after stop
        self._started = False
        self._inspect_thread: threading.Thread | None = None
        self._writer_thread: threading.Thread | None = None
        self._next_part_at = 0.0
        self.committed = 0  # results acknowledged so far
        self.state = "created"

    # -- outputs ---------------------------------------------------------------------

    def add_output(self, listener: LineListener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def _emit(self, method: str, *args: Any) -> None:
        for listener in list(self._listeners):
            try:
                getattr(listener, method)(*args)
            except Exception:
                log.exception("line output %s.%s failed", type(listener).__name__, method)

    def _set_state(self, state: str) -> None:
        self.state = state
        self._emit("on_state", state)

    def _error_out(self, code: ErrorCode, message: str) -> None:
        log.warning("line: %s (error %d)", message, int(code))
        self._emit("on_error", int(code), message)

    # -- control -----------------------------------------------------------------------

    def start(self) -> None:
        """Load the model, open the views, start the threads. LinesideError if the model
        cannot be loaded (sources that cannot open yet are retried in the background)."""
        if self._started:
            raise LinesideError("this line session was started already.")
        self._started = True
        self._set_state("starting")
        self._load(self._wanted_model)
        if self.retention is not None:
            self.retention.start(self.project)
        self._views = [LineView(s, i, self.triggered, self._view_state, self._frame)
                       for i, s in enumerate(self.sources)]  # fmt: skip
        for view in self._views:
            view.start()
        self._writer_thread = threading.Thread(target=self._writer_loop, name="lineside-line-writer", daemon=True)
        self._inspect_thread = threading.Thread(target=self._inspect_loop, name="lineside-line", daemon=True)
        self._writer_thread.start()
        self._inspect_thread.start()
        self._set_state("ready")

    def trigger(self) -> int | None:
        """Take the next part: its trigger number, or None when the trigger is missed
        (the station is busy, or not running). Never blocks."""
        with self._lock:
            refused = not self.running or self._busy or bool(self._jobs)
            if not refused:
                self._triggers += 1
                number = self._triggers
                self._busy = True
                self._jobs.append(_Job(number, time.time(), time.perf_counter()))
                self._job_ready.notify_all()
        if refused:  # listeners are never called under the session's lock
            self._miss(ErrorCode.TRIGGER_WHILE_BUSY if self.running else ErrorCode.NOT_READY)
            return None
        self._emit("on_trigger", number, True)
        return number

    def set_triggered(self, triggered: bool) -> None:
        """Switch between triggered and free-run without a new session. Takes effect
        between two parts: the part in hand is finished first; a trigger not yet taken
        when switching to free-run lapses (it is not counted as missed)."""
        triggered = bool(triggered)
        with self._lock:
            if triggered == self.triggered:
                return
            self.triggered = triggered
            self._job_ready.notify_all()
        self._mode_changed.set()

    def refuse_trigger(self, code: ErrorCode, message: str | None = None) -> None:
        """Count a trigger that an output could not pass on (trigger disabled, result
        buffer full) as missed, and report it."""
        self._miss(code, message)

    def _miss(self, code: ErrorCode, message: str | None = None) -> None:
        with self._lock:
            self._counts = _replace(self._counts, missed=self._counts.missed + 1)
            missed = self._counts.missed
        self._emit("on_trigger", 0, False)
        self._error_out(code, message or f"{ErrorCode(code).describe()}; {missed} missed so far")

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking parts, finish the one in hand, commit every result, close.

        Idempotent. After it returns, every result that reached on_result is in the store
        (unless the store itself failed, which was reported through on_error)."""
        if not self._started:
            if self._own_project and self.project is not None:
                self.project.close()
            return
        self._stopping.set()
        with self._lock:
            self._job_ready.notify_all()
        for view in self._views:
            view.stop()
        if self._inspect_thread is not None:
            self._inspect_thread.join(timeout)
        with self._queue_cond:
            self._queue_cond.notify_all()
        if self._writer_thread is not None:
            self._writer_thread.join(timeout)
        if self.retention is not None:
            self.retention.stop(timeout)
        if not self._finished.is_set():
            self._finished.set()
            if self._own_project and self.project is not None:
                self.project.close()
            self._set_state("stopped")

    def wait(self, timeout: float | None = None) -> bool:
        """Until the session ended by itself (max_parts) or was stopped; True if it did."""
        return self._done.wait(timeout)

    def __enter__(self) -> "LineSession":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._started and not self._stopping.is_set() and not self._done.is_set()

    @property
    def alive(self) -> bool:
        """The inspection thread runs (what a PLC heartbeat stands for)."""
        return self._inspect_thread is not None and self._inspect_thread.is_alive() and not self._stopping.is_set()

    @property
    def busy(self) -> bool:
        return self._busy

    @property
    def ready(self) -> bool:
        """Running, a model loaded, every view delivering, not busy: a trigger now is taken."""
        return (self.running and self._inspector is not None and not self._busy
                and all(v.connected for v in self._views))  # fmt: skip

    @property
    def triggers(self) -> int:
        """Triggers accepted so far."""
        return self._triggers

    @property
    def views(self) -> list[str]:
        return [getattr(s, "name", str(s)) for s in self.sources]

    @property
    def counters(self) -> Counters:
        with self._lock:
            dropped = sum(v.dropped for v in self._views)
            return _replace(self._counts, per_class=dict(self._per_class), dropped=dropped)

    def reset_counters(self) -> None:
        with self._lock:
            self._counts = Counters()
            self._per_class = {}
            for view in self._views:
                view.queue.dropped = 0
        self._emit("on_counters_reset")

    def timing(self) -> dict[str, dict[str, float]]:
        """Per stage (capture, inspect, commit, total): p50, p99, max in ms and n, over
        the last TIMING_WINDOW parts."""
        with self._lock:
            stages = {name: list(values) for name, values in self._timing.items()}
        out = {}
        for name, values in stages.items():
            if values:
                p50, p99 = np.percentile(values, [50, 99])
                out[name] = {"p50": float(p50), "p99": float(p99), "max": float(max(values)), "n": len(values)}
        return out

    @property
    def drift(self) -> dict | None:
        return None if self._drift is None else self._drift.status()

    def select_model(self, version: str | None) -> str:
        """Judge the next parts with *version* (None: the production model); the model is
        loaded first, so a bad version leaves the current one in place (LinesideError)."""
        if self.project is None:
            raise LinesideError("this line session has no project to choose a model from.")
        self._load(version)
        return self.model_version or ""

    def _load(self, version: str | None) -> None:
        from app.core.runtime import load_inspector_for_project

        if self.project is None:
            inspector = self._inspector
            name = version or self.model_version or inspector.info.version
        else:
            try:
                inspector, model = load_inspector_for_project(self.project, version, threads=self._threads)
            except LinesideError as exc:
                self._error_out(ErrorCode.MODEL_NOT_AVAILABLE, str(exc))
                raise
            name = model.version
        inspector.warmup()
        self._swap(inspector, name)

    def use_model(self, inspector: "Inspector", version: str, sha: str | None = None) -> None:
        """Judge the next parts with *inspector*, loaded by the caller off the inspection
        thread (a plant station's checked local copy of its line's model, *sha* its file's
        hash). The part in hand finishes with the model it started with."""
        inspector.warmup()
        self._swap(inspector, version, sha)

    def _swap(self, inspector: "Inspector", name: str, sha: str | None = None) -> None:
        from app.core.monitoring import DriftMonitor

        reference = inspector.info.reference
        with self._lock:  # swapped between two parts: _judge takes the model once per part
            self._inspector, self.model_version, self.model_sha = inspector, name, sha
            self.class_names = list(inspector.info.class_names)
            self._drift = DriftMonitor(reference) if reference else None
            self._drift_state = None
        log.info("line: model %s judges the parts (classes %s)", name, ", ".join(self.class_names))
        self._emit("on_model", name)

    def class_code(self, defect_class: str | None) -> int:
        """0 for PASS, else the class's index in the model's class list (the code a PLC reads)."""
        return _class_code(self.class_names, defect_class)

    def _frame(self, view: int, frame: Frame) -> None:
        self._emit("on_frame", view, frame)

    def _view_state(self, state: str) -> None:
        if state.startswith("lost"):
            self._error_out(ErrorCode.SOURCE_LOST, state)
        self._emit("on_state", state)

    # -- the inspection thread -----------------------------------------------------------

    def _inspect_loop(self) -> None:
        try:
            while not self._stopping.is_set():
                if self.max_parts is not None and self._seq + self._failed_parts >= self.max_parts:
                    break
                if self._mode_changed.is_set():
                    self._apply_mode()
                if self.triggered:
                    self._take_triggered()
                else:
                    self._take_free_run()
        except Exception:  # a bug: say so, and let wait() return
            log.exception("the line's inspection thread failed")
            self._error_out(ErrorCode.INSPECTION_FAILED, "the inspection thread failed (see the log)")
        finally:
            with self._lock:
                self._busy = False
                self._jobs.clear()
            with self._queue_cond:
                self._queue_cond.notify_all()
            self._done.set()

    def _apply_mode(self) -> None:
        """On the inspection thread, between parts: views whose kind differs in the new
        mode (the simulated line: made on the trigger, or a paced conveyor) are rebuilt."""
        self._mode_changed.clear()
        with self._lock:
            triggered = self.triggered
            if not triggered:
                self._jobs.clear()
                self._busy = False
        for i, view in enumerate(list(self._views)):
            if (view.direct, view.every) == LineView.kind(view.source, triggered):
                continue
            view.stop()
            fresh = LineView(view.source, i, triggered, self._view_state, self._frame)
            with self._lock:
                self._views[i] = fresh
            fresh.start()

    def _take_triggered(self) -> None:
        with self._lock:
            if not self._jobs:
                self._job_ready.wait(0.1)
            if not self._jobs:
                return
            job = self._jobs[0]
        frames = []
        for view in self._views:
            frame = view.snap(job.at, self.snap_timeout_s, self._stopping)
            if frame is None:
                break
            frames.append(frame)
        if len(frames) < len(self._views):
            missing = self._views[len(frames)].name
            with self._lock:
                self._jobs.popleft()
                self._busy = False
                self._counts = _replace(self._counts, errors=self._counts.errors + 1)
            if not self._stopping.is_set():
                self._error_out(ErrorCode.NO_IMAGE, f"no image from {missing} for trigger {job.trigger}")
            return
        self._judge(frames, job.trigger, job.started, self._done_with_job)

    def _done_with_job(self) -> None:
        """The triggered part is judged: not busy any more (before its result is queued,
        so no listener ever sees its result while the station still says busy)."""
        with self._lock:
            if self._jobs:
                self._jobs.popleft()
            self._busy = False

    def _take_free_run(self) -> None:
        frames: list[Frame] = []
        started = None
        for view in self._views:
            while not self._stopping.is_set() and not self._mode_changed.is_set():
                frame = view.next(0.1)
                if frame is not None:
                    if started is None:
                        started = time.perf_counter()
                    frames.append(frame)
                    break
            if self._stopping.is_set() or self._mode_changed.is_set():
                return  # a frame taken for a part not completed is dropped
        # A camera delivers as fast as it can; --rate paces how often a part is judged.
        if self.rate_hz and any(not v.every for v in self._views):
            delay = self._next_part_at - time.monotonic()
            if delay > 0:
                self._stopping.wait(delay)
            self._next_part_at = max(self._next_part_at + 1.0 / self.rate_hz, time.monotonic())
        self._judge(frames, None, started or time.perf_counter())

    def _judge(self, frames: list[Frame], trigger: int | None, started: float,
               judged_cb: Callable[[], None] | None = None) -> None:
        with self._lock:  # one model for every view of the part, even if it is swapped meanwhile
            inspector, version, class_names = self._inspector, self.model_version, self.class_names
        captured = time.perf_counter()
        unreadable = next((f for f in frames if f.error is not None), None)
        if unreadable is not None:
            where = printable(unreadable.path) if unreadable.path is not None else unreadable.source
            return self._part_failed(frames, f"{where}: {unreadable.error}", judged_cb)
        try:
            verdicts = inspector.inspect_batch([f.image for f in frames])
        except Exception as exc:
            log.exception("inspection failed")
            message = str(exc) if isinstance(exc, LinesideError) else f"a part could not be inspected ({exc})"
            return self._part_failed(frames, message, judged_cb)
        judged = time.perf_counter()
        failing = [(v.score, i) for i, v in enumerate(verdicts) if not v.passed]
        passed = not failing
        worst = max(failing)[1] if failing else max(range(len(verdicts)), key=lambda i: verdicts[i].score)
        defect = None if passed else verdicts[worst].defect_class
        with self._lock:
            self._seq += 1
            seq = self._seq
        code = _class_code(class_names, defect)
        result = PartResult(
            seq=seq, trigger=trigger, at=frames[0].at, sources=[f.source for f in frames],
            verdicts=verdicts, passed=passed, score=float(max(v.score for v in verdicts)),
            defect_class=defect, class_code=code, model_version=version,
            truths=[f.truth for f in frames], paths=[f.path for f in frames],
            images=[f.image for f in frames], started=started,
            timing={"capture": (captured - started) * 1000.0, "inspect": (judged - captured) * 1000.0},
        )  # fmt: skip
        self._count(result)
        self._update_drift(frames, verdicts)
        self._emit("on_result", result)
        result.retained = self.retention is not None and self.retention.wants(result)
        # Images travel to the commit only where something after it needs them: retention,
        # or audit sampling (here by the inspection id the commit gives; a plant station's
        # outbox by the result_uid its `keeps` gives).
        if not result.retained and not any(
            keeper is not None and hasattr(keeper, "keeps") and keeper.keeps(result)
            for keeper in (self.audit_sampler, self.sink)
        ):
            result.images = None
        self._enqueue(result, judged_cb)

    def _part_failed(self, frames: list[Frame], message: str, judged_cb: Callable[[], None] | None) -> None:
        with self._lock:
            self._counts = _replace(self._counts, errors=self._counts.errors + 1)
            self._failed_parts += 1
        if judged_cb is not None:
            judged_cb()
        self._emit("on_part_failed", frames, message)
        self._error_out(ErrorCode.INSPECTION_FAILED, message)

    def _count(self, result: PartResult) -> None:
        with self._lock:
            c = self._counts
            if result.passed:
                self._counts = _replace(c, parts=c.parts + 1, passed=c.passed + 1)
            else:
                self._counts = _replace(c, parts=c.parts + 1, failed=c.failed + 1)
                name = result.defect_class or "defect"
                self._per_class[name] = self._per_class.get(name, 0) + 1

    def _update_drift(self, frames: list[Frame], verdicts: list["Verdict"]) -> None:
        if self._drift is None:
            return
        from app.core.monitoring import image_stats

        for frame, verdict in zip(frames, verdicts):
            self._drift.update(image_stats(frame.image), float(verdict.score))
        status = self._drift.status()
        key = (status["drifting"], status["message"])
        if key != self._drift_state:
            self._drift_state = key
            self._emit("on_drift", status)

    def _enqueue(self, result: PartResult, judged_cb: Callable[[], None] | None = None) -> None:
        with self._queue_cond:
            # Full: the writer is behind (a slow disk). Waiting keeps the station busy,
            # so triggers are counted as missed rather than results lost.
            self._queue_cond.wait_for(lambda: len(self._queue) < self.max_queued or not self._writer_alive())
            if judged_cb is not None:
                judged_cb()
            self._queue.append(result)
            self._queue_cond.notify_all()

    def _writer_alive(self) -> bool:
        return self._writer_thread is not None and self._writer_thread.is_alive()

    # -- the writer thread ---------------------------------------------------------------

    def _writer_loop(self) -> None:
        failures = 0
        while True:
            with self._queue_cond:
                while not self._queue and not self._done.is_set():
                    self._queue_cond.wait(0.1)
                if not self._queue and self._done.is_set():
                    return
                if self.commit_interval_s > 0 and not self._done.is_set():
                    deadline = time.monotonic() + self.commit_interval_s
                    while len(self._queue) < self.max_batch and not self._done.is_set():
                        left = deadline - time.monotonic()
                        if left <= 0:
                            break
                        self._queue_cond.wait(left)
                batch = [self._queue[i] for i in range(min(self.max_batch, len(self._queue)))]
            try:
                self._commit(batch)
            except LinesideError as exc:  # full disk, locked database: keep them, retry
                failures += 1
                for result in batch:
                    result.inspection_id = None
                self._error_out(ErrorCode.STORE_FAILED, f"{len(batch)} results not saved yet, retrying: {exc}")
                if self._stopping.is_set() and failures >= 3:
                    log.error("line: stopping with %d results that could not be saved", len(self._queue))
                    return
                time.sleep(STORE_RETRY_S)
                continue
            failures = 0
            with self._queue_cond:
                for _ in batch:
                    self._queue.popleft()
                self._queue_cond.notify_all()
            self._publish(batch)

    def _commit(self, batch: list[PartResult]) -> None:
        if self.project is None and self.sink is None:
            return
        for result in batch:
            if result.image_sha is None:
                result.image_sha = _image_sha(result)
        if self.sink is not None:
            self.sink.commit(batch)
            return
        with self.project.transaction():
            for result in batch:
                known = self.project.find_image(result.image_sha) if result.paths and result.paths[0] else None
                result.inspection_id = int(self.project.record_inspection(
                    result.model_version, result.label, result.score, result.defect_class,
                    result.timing.get("inspect", 0.0), result.source[:200],
                    image_id=None if known is None else known.id, image_sha=result.image_sha,
                ))  # fmt: skip

    def _publish(self, batch: list[PartResult]) -> None:
        now = time.perf_counter()
        with self._lock:
            for result in batch:
                done_ms = (now - result.started) * 1000.0
                result.timing["commit"] = done_ms - result.timing["capture"] - result.timing["inspect"]
                result.timing["total"] = done_ms
                for stage in STAGES:
                    self._timing[stage].append(result.timing[stage])
            self.committed += len(batch)
        if self.audit_sampler is not None:
            self.audit_sampler.on_committed(batch)
        for result in batch:
            if not result.retained:
                result.images = None  # kept only for audit sampling, which has had them
        self._emit("on_committed", batch)


def _class_code(class_names: list[str], defect_class: str | None) -> int:
    if defect_class is None:
        return 0
    try:
        return class_names.index(defect_class)
    except ValueError:
        return OTHER_CLASS_CODE


def _image_sha(result: PartResult) -> str:
    """The first view's file bytes (hot folder: finds a labeled copy) or pixels."""
    path = result.paths[0] if result.paths else None
    if path is not None:
        try:
            return hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError:
            pass
    image = result.images[0] if result.images else None
    if image is None:
        return hashlib.sha256(f"{result.at}:{result.seq}".encode()).hexdigest()
    return hashlib.sha256(np.ascontiguousarray(image).tobytes()).hexdigest()


def _replace(counters: Counters, **changes: Any) -> Counters:
    from dataclasses import replace

    return replace(counters, **changes)
