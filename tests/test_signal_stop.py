"""SIGTERM / Ctrl+C stop the worker, the station and the trainer through app.cli.signals.

The hazard it removes: a handler that calls `Event.set()` while the main thread is
inside `Event.wait()` holding the event's lock waits for itself forever."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from app.cli.signals import SignalStop

posix_only = pytest.mark.skipif(os.name != "posix", reason="sends POSIX signals to this process")


def test_a_signal_arriving_while_the_main_thread_holds_the_events_lock_does_not_hang():
    stop = threading.Event()
    seen: list[int] = []
    with SignalStop(stop, [signal.SIGTERM], on_signal=seen.append) as stopper:
        # Run the handler exactly where the hazard is: inside Event.wait's critical
        # section (a private lock of threading.Event, named here only to reach that spot).
        with stop._cond:
            stopper._handler(signal.SIGTERM, None)  # would never return if it took the lock
            assert not stop.is_set()  # the helper thread waits for the lock, not the main thread
        assert stop.wait(10), "the stop was never delivered"
    assert seen == [signal.SIGTERM]


@posix_only
def test_a_real_sigterm_sets_the_event_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    stop = threading.Event()
    with SignalStop(stop, [signal.SIGTERM]):
        assert signal.getsignal(signal.SIGTERM) is not before
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(10)
    assert signal.getsignal(signal.SIGTERM) is before


@posix_only
def test_a_flood_of_signals_during_tight_waits_always_stops():
    for _ in range(200):
        stop = threading.Event()
        with SignalStop(stop, [signal.SIGUSR1]):
            sender = threading.Timer(0.0005, os.kill, (os.getpid(), signal.SIGUSR1))
            sender.start()
            for _ in range(200_000):
                if stop.wait(0.0001):
                    break
            sender.join()
            assert stop.is_set()


def test_outside_the_main_thread_it_installs_nothing():
    before = signal.getsignal(signal.SIGINT)
    result = {}

    def run():
        with SignalStop(threading.Event()):
            result["handler"] = signal.getsignal(signal.SIGINT)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert result["handler"] is before
