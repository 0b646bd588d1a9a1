"""A plant station's link to its project: model following, heartbeats, result forwarding.

    agent = StationAgent(project_folder, "press-3", "line-1", station_folder)
    inspector, model = agent.prepare()           # the line's model, from a checked local copy
    session = LineSession(inspector, sources, model=model.version, sink=agent.outbox)
    session.start(); agent.start(session)
    ...
    session.stop(); agent.stop()                 # every acknowledged result goes, if it can

The session judges parts with a local copy and commits results into the station's
outbox (app/core/outbox.py), so neither the database nor the share is on the line's
path. Three threads of the agent do the rest, each surviving the database or the share
going away and carrying on when they return:

- following: about every poll_s seconds asks which model the line should run
  (stations.target). When that changes, it copies the model into the station's folder,
  checks its hash (app/core/station_models.py), loads it and hands it to the session,
  which switches between two parts; the inspection thread never waits for a load. A
  refused copy leaves the running model in place, is reported in the heartbeat's
  message and is tried again after REFUSED_RETRY_S;
- heartbeat: every heartbeat_s the station's row (stations.heartbeat): state, model
  and hash it runs, parts and FAILs today, results waiting, drift warning, last problem;
- the outbox's forwarder: sends the waiting results (Project.record_results), then the
  audit samples (the project's `audit_sample_rate`, read when the agent connects).

When the project cannot be opened at the start but the station has run a model before,
it starts with that copy (current.json) and connects later.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from app.core import audit_sampling, stations
from app.core.errors import LinesideError
from app.core.monitoring import audit_sample_rate
from app.core.outbox import MAX_ROWS, Outbox
from app.core.station_models import LocalModel, StationModels

if TYPE_CHECKING:
    from app.core.line_session import LineSession
    from app.core.project import Project
    from app.core.runtime import Inspector

log = logging.getLogger(__name__)

POLL_S = 0.5
REFUSED_RETRY_S = 15.0  # a refused model is copied again after this (the share may be fixed)
RECONNECT_MAX_S = 5.0
OUTBOX_NAME = "outbox.db"


class StationAgent:
    """*project*: an open Project (the caller closes it) or the project folder (opened here
    when reachable, closed by stop()). *folder*: the station's own folder (outbox, models).
    *on_message*(text) hears what an operator should know (database lost and back, a
    refused model, a full outbox)."""

    def __init__(self, project: "Project | Path | str", name: str, line: str, folder: Path | str, *,
                 threads: int | None = None, poll_s: float = POLL_S, heartbeat_s: float = stations.HEARTBEAT_S,
                 drain_s: float = 10.0, max_outbox_rows: int = MAX_ROWS,
                 on_message: Callable[[str], None] | None = None) -> None:  # fmt: skip
        self.name, self.line = name, line
        self.folder = Path(folder)
        self.threads = threads
        self.poll_s, self.heartbeat_s, self.drain_s = poll_s, heartbeat_s, drain_s
        self.on_message = on_message
        self.models = StationModels(self.folder)
        self.outbox = Outbox(self.folder / OUTBOX_NAME, name, max_rows=max_outbox_rows, on_alarm=self._say)
        if isinstance(project, (str, Path)):
            self.project: Project | None = None
            self._project_folder: Path | None = Path(project)
        else:
            self.project, self._project_folder = project, None
        self.running: LocalModel | None = None
        self.message: str | None = None  # the last problem, for the heartbeat
        self.online: bool | None = None
        self.offline_because = ""  # why the project could not be reached, last time it could not
        self.session: LineSession | None = None
        self._registered = False
        self._today: tuple[str, int, int] = ("", 0, 0)  # (day, parts, fails) the counts of the day start from
        self._refused: tuple[tuple[str, str], float] | None = None  # ((version, sha), retry at)
        self._follow_failed: str | None = None
        self._next_connect = 0.0
        self._connect_failures = 0
        self._stop = threading.Event()
        self._beat_now = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- start and stop ----------------------------------------------------------------

    def prepare(self) -> tuple["Inspector", LocalModel]:
        """The model to start with: the line's deployed model (copied and checked), else
        the local copy the station ran last; LinesideError when there is neither."""
        self._connect()
        problem = None
        if self.project is not None:
            try:
                target = stations.target(self.project, self.line)
                if target is None:
                    raise LinesideError(f"line {self.line!r} has no model to run: deploy one first")
                model = self._fetch(target)
                inspector = self.models.load(model)
                self._now_running(model)
                return inspector, model
            except Exception as exc:  # the share away, a refused copy, the server gone meanwhile
                if not isinstance(exc, LinesideError):
                    log.warning("station %s: the line's model could not be fetched", self.name, exc_info=True)
                problem = str(exc)
        local = self.models.current()
        if local is None:
            why = problem or f"the project cannot be reached ({self.offline_because})"
            raise LinesideError(f"Station {self.name} has no model to run: {why}; and no checked local copy "
                                f"in {self.models.models_dir} from an earlier run.")
        inspector = self.models.load(local)
        self.running = local
        self._problem(f"started with its local copy of model {local.version}: "
                      f"{problem or 'the project cannot be reached: ' + self.offline_because}")
        return inspector, local

    def attach(self, session: "LineSession") -> None:
        """The session whose model it switches and whose counts it reports (start() does it)."""
        self.session = session

    def start(self, session: "LineSession") -> None:
        """Follow the line's model, beat, forward results (call after session.start())."""
        self.attach(session)
        self.outbox.start(self._send, self._send_sample)
        for target, name in ((self._follow_loop, "follow"), (self._heartbeat_loop, "heartbeat")):
            thread = threading.Thread(target=target, name=f"lineside-station-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._beat_now.set()

    def stop(self) -> int:
        """Send the waiting results (up to drain_s), say "stopped", close; how many are left
        in the outbox (they go at the next start)."""
        self._stop.set()
        self._beat_now.set()
        for thread in self._threads:
            thread.join(30.0)
        left = self.outbox.stop(self.drain_s)
        if self.session is not None:
            self.beat("stopped")
        if self._project_folder is not None and self.project is not None:
            self.project.close()
        return left

    # -- the project -------------------------------------------------------------------

    def _connect(self) -> None:
        """Open the project (if given as a folder) and register; a failure is retried later."""
        if self.project is None and self._project_folder is not None:
            from app.core.project import Project

            try:
                self.project = Project.open(self._project_folder)
                self._connect_failures = 0
            except Exception as exc:  # the share or the server away: retried with back-off
                self._connect_failures += 1
                delay = min(RECONNECT_MAX_S, 0.5 * 2 ** min(self._connect_failures, 4))
                self._next_connect = time.monotonic() + delay
                self._set_online(False, str(exc))
                return
        if self.project is not None and not self._registered:
            try:
                self._register()
            except Exception as exc:
                self._set_online(False, str(exc))

    def _register(self) -> None:
        stations.register(self.project, self.name, self.line)
        self.outbox.sample_rate = audit_sample_rate(self.project)
        day = time.strftime("%Y-%m-%d")
        before = next((s for s in stations.stations(self.project, self.line) if s.name == self.name), None)
        parts = self.session.counters if self.session is not None else None
        done, fails = (parts.parts, parts.failed) if parts is not None else (0, 0)
        if before is not None and before.day == day:  # restarted today: its counts go on
            done, fails = done - before.parts_today, fails - before.fails_today
        self._today = (day, done, fails)
        self._registered = True
        self._set_online(True)
        self._beat_now.set()

    def _send(self, rows: list[dict]) -> None:
        if self.project is None:
            raise LinesideError("the project is not reachable yet")
        self.project.record_results(rows)

    def _send_sample(self, image, result_uid: str, model_version: str) -> None:
        if self.project is None:
            raise LinesideError("the project is not reachable yet")
        # A resend after a lost answer finds the image by its content hash: stored once.
        self.project.add_image_array(image, source=audit_sampling.SOURCE,
                                     tags=audit_sampling.sample_tags(result_uid, model_version))

    def _set_online(self, online: bool, why: str = "") -> None:
        if not online:
            self.offline_because = why.strip().splitlines()[0] if why.strip() else "no answer"
        if online == self.online:
            return
        was, self.online = self.online, online
        if not online:
            self._say(f"station {self.name}: the project cannot be reached ({self.offline_because}); "
                      "the station keeps judging and keeps its results until it is back.")
        elif was is False:
            waiting = self.outbox.pending()
            self._say(f"station {self.name}: the project is reachable again; {waiting} "
                      f"result{'' if waiting == 1 else 's'} to send.")

    def _say(self, text: str) -> None:
        log.warning("%s", text)
        if self.on_message is not None:
            try:
                self.on_message(text)
            except Exception:
                log.exception("station message output failed")

    def _problem(self, text: str | None) -> None:
        if text is not None and text != self.message:
            self._say(f"station {self.name}: {text}")
        self.message = text

    # -- following the line's model --------------------------------------------------------

    def _follow_loop(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.check_model()
                self._follow_failed = None
            except Exception as exc:  # the database or share away; or a bug, which must not stop the line
                # Said once per cause; whether the project is reachable is the heartbeat's to say.
                text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                if text != self._follow_failed:
                    self._follow_failed = text
                    known = isinstance(exc, (LinesideError, OSError)) or type(exc).__module__.startswith("sqlalchemy")
                    log.log(logging.WARNING if known else logging.ERROR, "station %s: cannot check the line's "
                            "model: %s", self.name, text, exc_info=not known)  # fmt: skip

    def check_model(self) -> None:
        """Ask once which model the line should run and switch to it if it differs from
        the one running (the following thread calls it every poll_s)."""
        if self.project is None or not self._registered:
            if time.monotonic() < self._next_connect:
                return
            self._connect()
            if self.project is None or not self._registered:
                return
        target = stations.target(self.project, self.line)
        self._set_online(True)
        if target is None or self.session is None:
            return
        wanted = (target.version, target.sha256)
        running = self.running
        if running is not None and wanted == (running.version, running.sha256):
            if self.project.model(target.version).threshold == running.threshold:
                self._refused = None
                self._problem(None)  # runs what the line should: an earlier problem is over
                return
        if self._refused is not None and self._refused[0] == wanted and time.monotonic() < self._refused[1]:
            return
        try:
            model = self._fetch(target)
            inspector = self.models.load(model)
        except LinesideError as exc:
            self._refused = (wanted, time.monotonic() + REFUSED_RETRY_S)
            keeps = f"{running.version} keeps judging" if running is not None else "no model judges"
            self._problem(f"model {target.version} not loaded, {keeps}: {exc}")
            self._beat_now.set()
            return
        self.session.use_model(inspector, model.version, model.sha256)  # between two parts
        self._now_running(model)
        self._refused = None
        self._problem(None)
        log.info("station %s: model %s (sha256 %s) judges the parts", self.name, model.version, model.sha256)
        self._beat_now.set()

    def _fetch(self, target: stations.LineTarget) -> LocalModel:
        """The checked local copy of *target* and how the project loads it."""
        from app.core.runtime import runtime_settings

        model = self.project.model(target.version)
        precision, threads, lanes = runtime_settings(self.project, self.threads)
        folder = self.models.fetch(model.path, target.version, target.sha256)
        return LocalModel(target.version, target.sha256, model.threshold, precision, threads, folder, lanes)

    def _now_running(self, model: LocalModel) -> None:
        self.running = model
        try:
            self.models.remember(model)
            self.models.prune(keep=[model.version])
        except (OSError, LinesideError) as exc:  # the station's own disk: worth saying, not stopping for
            self._problem(f"cannot record the model it runs in {self.folder}: {exc}")

    # -- heartbeats ----------------------------------------------------------------------

    def _message(self) -> str | None:
        """The heartbeat's message: the model's problem and an outbox over its cap."""
        parts = [self.message] if self.message else []
        if self.outbox.over_capacity:
            parts.append(f"{self.outbox.pending()} results wait in the outbox, more than {self.outbox.max_rows}")
        return "; ".join(parts) or None

    def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            self._beat_now.wait(self.heartbeat_s)
            self._beat_now.clear()
            if self._stop.is_set():
                return
            session = self.session
            self.beat("running" if session is not None and session.running else "stopped")

    def beat(self, state: str = "running") -> None:
        """Write the station's row now (the heartbeat thread does every heartbeat_s)."""
        if self.project is None or not self._registered or self.session is None:
            return
        counters = self.session.counters
        day, base_parts, base_fails = self._today
        today = time.strftime("%Y-%m-%d")
        if today != day:  # local midnight: the counts start again
            day, base_parts, base_fails = self._today = (today, counters.parts, counters.failed)
        drift = self.session.drift
        running = self.running
        try:
            stations.heartbeat(
                self.project, self.name, state=state,
                model_version=running.version if running else None, model_sha=running.sha256 if running else None,
                day=day, parts_today=counters.parts - base_parts, fails_today=counters.failed - base_fails,
                buffered=self.outbox.pending(), drift=drift["message"] if drift and drift.get("drifting") else None,
                message=self._message())  # fmt: skip
        except Exception as exc:
            self._set_online(False, str(exc))
            return
        self._set_online(True)
