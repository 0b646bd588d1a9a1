"""An asyncio server on a thread of its own: start, wait until it listens, stop.

Both PLC servers (pymodbus, asyncua) are asyncio libraries; the line session is
threads. Each server runs its own event loop on a daemon thread, and start() returns
only once the server listens, or raises with the reason (a port in use, say).
"""

from __future__ import annotations

import asyncio
import logging
import threading

from app.core.errors import LinesideError

log = logging.getLogger(__name__)


class LoopThreadServer:
    """Subclasses implement `_serve()` (set up and listen) and `_shutdown()` coroutines."""

    name = "server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server = None
        self._started = threading.Event()
        self._failure: BaseException | None = None

    async def _serve(self) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        raise NotImplementedError

    def _start_thread(self, timeout: float, where: str) -> None:
        """Start the loop thread; raise LinesideError if the server does not listen."""
        self._thread = threading.Thread(target=self._run, name=f"lineside-{self.name}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise LinesideError(f"the {self.name} server on {where} did not start in {timeout:.0f} s.")
        if self._failure is not None:
            raise LinesideError(f"the {self.name} server cannot listen on {where} "
                                f"({self._failure}); is the port in use?") from self._failure

    def stop(self, timeout: float = 5.0) -> None:
        loop = self._loop
        if loop is not None and self._server is not None and loop.is_running():
            future = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            try:
                future.result(timeout)
            except Exception:
                log.exception("%s server shutdown", self.name)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start()
            self._failure = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.close()
