"""Ctrl+C / SIGTERM turned into a `threading.Event` safely.

A Python signal handler runs in the main thread between two bytecodes, so it can run
while the main thread is inside `Event.wait()` holding the event's internal lock. A
handler that calls `event.set()` then waits for that lock forever: the worker or the
station hangs on SIGTERM (seen about once in a few thousand signals). The handler here
only sends a byte over a local socket pair, which takes no lock; a small thread reads it
and sets the event. A socket pair, not a pipe: a pipe cannot be made non-blocking on
Windows before Python 3.12, and a handler must never block. (On Windows Python makes
the pair over 127.0.0.1: a listening socket exists only while the pair is made, on the
loopback interface, for that one connection.)
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Callable, Iterable


def stop_signals() -> list[int]:
    """SIGTERM and SIGINT, and Ctrl+Break on Windows (SIGTERM does not reach a Windows process)."""
    return [signal.SIGTERM, signal.SIGINT] + [s for s in [getattr(signal, "SIGBREAK", None)] if s]


class SignalStop:
    """While entered, the given signals set *event*; *on_signal(signum)* runs on a helper thread.

    Only the main thread may install signal handlers; anywhere else this does nothing
    (a command run from a test's thread is stopped through its event instead)."""

    def __init__(self, event: threading.Event, signals: Iterable[int] | None = None,
                 on_signal: Callable[[int], None] = lambda signum: None):
        self.event, self.on_signal = event, on_signal
        self.signals = list(signals) if signals is not None else stop_signals()
        self._previous: dict[int, object] = {}
        self._read: socket.socket | None = None
        self._write: socket.socket | None = None
        self._watcher: threading.Thread | None = None

    def __enter__(self) -> "SignalStop":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "SignalStop":
        if threading.current_thread() is not threading.main_thread():
            return self
        self._read, self._write = socket.socketpair()
        self._write.setblocking(False)  # a flood of signals must never block the handler
        self._watcher = threading.Thread(target=self._watch, name="signal-stop", daemon=True)
        self._watcher.start()
        self._previous = {sig: signal.signal(sig, self._handler) for sig in self.signals}
        return self

    def stop(self) -> None:
        """The handlers that were there before come back."""
        if self._watcher is None:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._write.close()  # the watcher reads end-of-file and ends
        self._watcher.join()
        self._read.close()
        self._watcher = None

    def _handler(self, signum: int, _frame) -> None:
        try:
            self._write.send(bytes([signum & 0xFF]))
        except OSError:  # the buffer is full: a stop is already on its way
            pass

    def _watch(self) -> None:
        while True:
            try:
                data = self._read.recv(64)
            except OSError:
                return
            if not data:
                return
            self.event.set()
            for signum in data:
                self.on_signal(signum)
