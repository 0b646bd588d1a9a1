"""The PLC handshake, independent of the wire: a LineSession output and trigger source.

The Modbus and OPC UA servers only translate: a PLC write becomes `set_inputs`, a PLC
read is `outputs()`. Everything about edges, the result buffer, acknowledge timeouts
and the heartbeat lives here, once. docs/plc.md has the timing diagram.

- Trigger (rising edge): refused and counted as missed when TriggerEnable is 0 or (with
  the handshake) the result buffer is full; otherwise passed to the session, which
  refuses it while busy. Accepted: TriggerAck = 1 until the PLC clears Trigger.
- Results reach the PLC only once committed (`on_committed`): ResultValid is never
  set for a result a crash could still lose.
- Handshake off: the newest committed result is shown; ResultValid drops at the next
  accepted trigger and rises with its result.
- Handshake on: results queue in a buffer (at most `buffer_size` counting parts still
  being judged); the oldest is shown with ResultValid = 1 until ResultAck rises; then
  ResultValid = 0, and the next is shown once the PLC has cleared ResultAck. A result
  not acknowledged within `ack_timeout_s` raises error 7 and stays valid.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import deque
from typing import Any, Callable

from app.core.errors import LinesideError
from app.core.line_session import LineListener, PartResult
from app.core.plc.signals import (
    INPUT_BITS,
    INPUTS,
    OUTPUTS,
    ErrorCode,
    unpack_bits,
)

log = logging.getLogger(__name__)

DEFAULT_BUFFER = 16
DEFAULT_ACK_TIMEOUT_S = 5.0
DEFAULT_HEARTBEAT_S = 0.5
_VERSION = re.compile(r"^v(\d+)$")


def model_number(version: str | None) -> int:
    match = _VERSION.match(version or "")
    return int(match.group(1)) if match else 0


class PlcLink(LineListener):
    """The station's side of the PLC handshake for one LineSession."""

    def __init__(
        self,
        *,
        buffer_size: int = DEFAULT_BUFFER,
        ack_timeout_s: float = DEFAULT_ACK_TIMEOUT_S,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        trigger_enable: bool = False,
        handshake: bool = False,
    ) -> None:
        self.buffer_size = max(1, int(buffer_size))
        self.ack_timeout_s = float(ack_timeout_s)
        self.heartbeat_s = float(heartbeat_s)
        self.session: Any = None
        self._lock = threading.RLock()
        self._inputs = {s.name: 0 for s in INPUTS}
        self._inputs["trigger_enable"] = int(trigger_enable)
        self._inputs["handshake"] = int(handshake)
        self._out = {s.name: 0 for s in OUTPUTS}
        self._buffer: deque[PartResult] = deque()
        self._uncommitted = 0  # judged, not yet committed
        self._presented_at = 0.0
        self._ack_late = False
        self._watchers: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.acknowledged = 0  # results the PLC acknowledged (handshake on)

    # -- wiring --------------------------------------------------------------------------

    def attach(self, session: Any) -> "PlcLink":
        """Listen to *session* and start the heartbeat. Call before session.start()."""
        self.session = session
        session.add_output(self)
        self._thread = threading.Thread(target=self._beat, name="lineside-plc-heartbeat", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def subscribe(self, watcher: Callable[[], None]) -> None:
        """*watcher*() is called (on any thread, quickly) after the outputs changed."""
        self._watchers.append(watcher)

    def _changed(self) -> None:
        for watcher in list(self._watchers):
            try:
                watcher()
            except Exception:
                log.exception("PLC output watcher failed")

    # -- the PLC's view -------------------------------------------------------------------

    def inputs(self) -> dict[str, int]:
        with self._lock:
            return dict(self._inputs)

    def outputs(self) -> dict[str, int]:
        """Every output signal's current value (signals.OUTPUTS names)."""
        session = self.session
        with self._lock:
            out = dict(self._out)
            handshake = bool(self._inputs["handshake"])
            room = not handshake or self._in_flight() < self.buffer_size
            out["trigger_enabled"] = self._inputs["trigger_enable"]
            out["handshake_on"] = int(handshake)
            out["buffered"] = len(self._buffer)
        if session is not None:
            counters = session.counters
            out["busy"] = int(session.busy)
            out["running"] = int(session.running)
            out["ready"] = int(session.ready and bool(out["trigger_enabled"]) and room)
            out["missed_triggers"] = counters.missed
            out["parts"], out["pass_count"], out["fail_count"] = counters.parts, counters.passed, counters.failed
            out["model_number_active"] = model_number(session.model_version)
            out["trigger_count"] = session.triggers & 0xFFFF
            drift = session.drift
            out["drift"] = int(bool(drift and drift.get("drifting")))
        out["error"] = int(out["error_code"] != 0)
        return out

    def _in_flight(self) -> int:
        busy = 1 if self.session is not None and self.session.busy else 0
        return len(self._buffer) + self._uncommitted + busy

    def set_control_word(self, word: int, model: int | None = None) -> None:
        """The control word (bits of signals.INPUT_BITS) and, if given, the model number."""
        changes: dict[str, int] = unpack_bits(word, INPUT_BITS)
        if model is not None:
            changes["model_number"] = int(model)
        self.set_inputs(changes)

    def set_inputs(self, changes: dict[str, Any]) -> None:
        """The PLC wrote these inputs (names of signals.INPUTS); act on the edges."""
        with self._lock:
            old = dict(self._inputs)
            for name, value in changes.items():
                if name not in self._inputs:
                    raise KeyError(f"not a PLC input: {name}")
                self._inputs[name] = int(value) if name == "model_number" else int(bool(value))
            new = self._inputs

            def rising(name: str) -> bool:
                return bool(new[name]) and not old[name]

            def falling(name: str) -> bool:
                return not new[name] and bool(old[name])

            if rising("handshake") or falling("handshake"):
                self._handshake_changed(bool(new["handshake"]))
            if rising("trigger"):
                self._trigger()
            elif falling("trigger"):
                self._out["trigger_ack"] = 0
            if rising("result_ack"):
                self._acknowledge()
            elif falling("result_ack") and new["handshake"] and not self._out["result_valid"] and self._buffer:
                self._present(self._buffer[0])
            if rising("reset_counters") and self.session is not None:
                self.session.reset_counters()
            if rising("select_model"):
                self._out["model_selected"] = 0
                self._select_model(new["model_number"])
            elif falling("select_model"):
                self._out["model_selected"] = 0
        self._changed()

    # -- the handshake ---------------------------------------------------------------------

    def _trigger(self) -> None:
        session = self.session
        if session is None:
            return
        if not self._inputs["trigger_enable"]:
            session.refuse_trigger(ErrorCode.TRIGGER_DISABLED)
            return
        if self._inputs["handshake"] and self._in_flight() >= self.buffer_size:
            session.refuse_trigger(ErrorCode.RESULT_BUFFER_FULL,
                                   f"{self.buffer_size} results wait for ResultAck; trigger missed")
            return
        if session.trigger() is None:
            return  # missed while busy: the session counted and reported it
        self._out["trigger_ack"] = 1
        self._out["error_code"] = 0  # a new cycle; a still-late acknowledge raises it again
        self._ack_late = False
        if not self._inputs["handshake"]:
            self._out["result_valid"] = self._out["passed"] = self._out["failed"] = 0

    def _acknowledge(self) -> None:
        if not self._inputs["handshake"] or not self._out["result_valid"] or not self._buffer:
            return
        self._buffer.popleft()
        self.acknowledged += 1
        self._out["result_valid"] = self._out["passed"] = self._out["failed"] = 0
        if self._ack_late:
            self._ack_late = False
            if self._out["error_code"] == ErrorCode.ACK_TIMEOUT:
                self._out["error_code"] = 0

    def _present(self, result: PartResult) -> None:
        inspection_id = result.inspection_id if result.inspection_id is not None else result.seq
        self._out.update(
            result_valid=1,
            passed=int(result.passed),
            failed=int(not result.passed),
            class_code=result.class_code,
            score=result.score_scaled,
            inspection_id=inspection_id,
            result_trigger=(result.trigger or 0) & 0xFFFF,
        )
        self._presented_at = time.monotonic()

    def _handshake_changed(self, on: bool) -> None:
        if not on and self._buffer:
            latest = self._buffer[-1]
            self._buffer.clear()
            self._present(latest)

    def _select_model(self, number: int) -> None:
        session = self.session
        if session is None:
            return
        version = f"v{number}" if number else None

        def load() -> None:
            try:
                session.select_model(version)
            except LinesideError as exc:
                with self._lock:
                    self._out["error_code"] = ErrorCode.UNKNOWN_MODEL
                log.warning("PLC select model %s refused: %s", number, exc)
            else:
                with self._lock:
                    self._out["model_selected"] = int(bool(self._inputs["select_model"]))
            self._changed()

        threading.Thread(target=load, name="lineside-plc-select-model", daemon=True).start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            session = self.session
            with self._lock:
                if session is not None and session.alive:
                    self._out["heartbeat"] ^= 1
                    self._out["heartbeat_count"] = (self._out["heartbeat_count"] + 1) & 0xFFFF
                late = (self._inputs["handshake"] and self._out["result_valid"] and not self._ack_late
                        and time.monotonic() - self._presented_at > self.ack_timeout_s)  # fmt: skip
                if late:
                    self._ack_late = True
                    self._out["error_code"] = ErrorCode.ACK_TIMEOUT
                    log.warning("PLC: result %s not acknowledged within %.1f s",
                                self._out["inspection_id"], self.ack_timeout_s)
            self._changed()

    # -- LineListener ----------------------------------------------------------------------

    def on_result(self, result: PartResult) -> None:
        with self._lock:
            self._uncommitted += 1
        self._changed()

    def on_committed(self, results: list[PartResult]) -> None:
        with self._lock:
            self._uncommitted = max(0, self._uncommitted - len(results))
            if self._inputs["handshake"]:
                self._buffer.extend(results)
                if not self._out["result_valid"] and not self._inputs["result_ack"]:
                    self._present(self._buffer[0])
            else:
                self._present(results[-1])
        self._changed()

    def on_error(self, code: int, message: str) -> None:
        with self._lock:
            self._out["error_code"] = int(code)
        self._changed()

    def on_counters_reset(self) -> None:
        self._changed()

    def on_state(self, state: str) -> None:
        self._changed()
