"""Run slow work (file scanning, image decoding, inference, probing) off the GUI thread.

`run_in_background(fn, on_done, on_error)` runs fn() on a thread pool and delivers the
result (or the exception) back on the GUI thread. The result handler is dropped when its
owner widget has been deleted meanwhile, so a closed workspace is never called back.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

log = logging.getLogger(__name__)

_pool: QThreadPool | None = None


def pool() -> QThreadPool:
    global _pool
    if _pool is None:
        _pool = QThreadPool()
        _pool.setMaxThreadCount(2)  # the line PC also runs the camera and inference
        _pool.setExpiryTimeout(2000)
    return _pool


def wait_for_background_work(timeout_ms: int = 10000) -> bool:
    """Block until every background task has finished (at shutdown and in tests)."""
    return _pool.waitForDone(timeout_ms) if _pool is not None else True


class _Relay(QObject):
    done = Signal(object)
    failed = Signal(object)


class _Task(QRunnable):
    def __init__(self, fn: Callable[[], Any], relay: _Relay) -> None:
        super().__init__()
        self.fn = fn
        self.relay = relay
        self.setAutoDelete(True)

    def run(self) -> None:
        try:
            result = self.fn()
        except Exception as exc:  # delivered to on_error on the GUI thread
            log.debug("background task failed", exc_info=True)
            self._emit(self.relay.failed, exc)
            return
        self._emit(self.relay.done, result)

    @staticmethod
    def _emit(signal, value: object) -> None:
        try:
            signal.emit(value)
        except RuntimeError:  # the owner (and with it the relay) was deleted meanwhile
            pass


def run_in_background(
    fn: Callable[[], Any],
    on_done: Callable[[Any], None] | None = None,
    on_error: Callable[[Exception], None] | None = None,
    owner: QObject | None = None,
) -> None:
    """Run fn() in the pool; call on_done(result) / on_error(exc) on the GUI thread.

    With *owner*, the relay is a child of it: deleting the owner disconnects the
    callbacks, so a task that outlives its widget finishes silently.
    """
    relay = _Relay(owner)
    # The relay lives in the GUI thread: signals emitted from the pool are queued.
    if on_done is not None:
        relay.done.connect(on_done)
    if on_error is not None:
        relay.failed.connect(on_error)
    else:
        relay.failed.connect(lambda exc: log.error("background task failed: %s", exc))
    relay.done.connect(relay.deleteLater)
    relay.failed.connect(relay.deleteLater)
    if owner is None:
        _keep.add(relay)
        relay.destroyed.connect(lambda *_: _keep.discard(relay))
    pool().start(_Task(fn, relay))


_keep: set[_Relay] = set()  # parentless relays must outlive their task
