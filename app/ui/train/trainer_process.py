"""The trainer as a child process, seen from the GUI as a QObject with signals.

Training runs in its own process (torch never loads into the app, and a crash in the
trainer cannot take the window down). The child prints one JSON object per line on
stdout; this class turns those lines into signals. Output arrives in arbitrary chunks,
so partial lines are buffered, and anything that is not a JSON object (a warning from a
library, a stray print) is passed on as plain log text rather than breaking the run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from PySide6.QtCore import QObject, QProcess, QTimer

from app.ui.train.trainer_signals import TrainerSignals

# How long the trainer gets to stop cleanly at the next batch after SIGTERM before it
# is killed. A batch on a slow CPU takes a few seconds; export must not be cut short.
CANCEL_GRACE_MS = 15_000
EXIT_CANCELLED = 3
STDERR_TAIL_CHARS = 4000


# Training yields the CPU to the window: on a two-core line PC an equal-priority trainer
# makes every click wait. The trainer still gets every cycle the GUI does not use.
TRAINER_NICE = 10  # added to the app's own niceness
_BELOW_NORMAL_PRIORITY_CLASS = 0x00004000  # Windows process creation flag


def _start_below_normal_priority(process: QProcess) -> None:
    if os.name == "nt":
        modifier = getattr(process, "setCreateProcessArgumentsModifier", None)
        if modifier is not None:

            def lower(args) -> None:
                args.flags |= _BELOW_NORMAL_PRIORITY_CLASS

            modifier(lower)
        return

    def renice() -> None:
        # Done as soon as the child exists, before torch starts its worker threads,
        # which inherit the value (on Linux niceness is per thread).
        try:
            ours = os.getpriority(os.PRIO_PROCESS, 0)
            os.setpriority(os.PRIO_PROCESS, int(process.processId()), min(19, ours + TRAINER_NICE))
        except (OSError, ValueError):
            pass

    process.started.connect(renice)


class TrainerProcess(TrainerSignals):
    """Runs one training at a time on this PC and reports its events (TrainerSignals)."""

    def __init__(self, parent: QObject | None = None, cancel_grace_ms: int = CANCEL_GRACE_MS) -> None:
        super().__init__(parent)
        self._process: QProcess | None = None
        self._stdout_buffer = ""
        self._stderr_tail = ""
        self._cancel_requested = False
        self._cancel_grace_ms = cancel_grace_ms
        self._kill_timer = QTimer(self)
        self._kill_timer.setSingleShot(True)
        self._kill_timer.timeout.connect(self._kill)

    # -- control ---------------------------------------------------------------------

    def is_running(self) -> bool:
        return self._process is not None and self._process.state() != QProcess.ProcessState.NotRunning

    def start(
        self,
        project_dir: Path | str,
        epochs: int | None = None,
        time_budget_s: float | None = None,
        device: str = "auto",
        command: Sequence[str] | None = None,
    ) -> None:
        """Start training *project_dir*. *command* replaces the real trainer's argv."""
        if self.is_running():
            raise RuntimeError("A training is already running.")
        if command is None:
            from app.core.trainer_command import trainer_command

            args = [str(project_dir), "--progress", "json", "--device", device]
            if epochs is not None:
                args += ["--epochs", str(int(epochs))]
            if time_budget_s is not None:
                args += ["--time-budget", str(float(time_budget_s))]
            command = trainer_command(*args)
        self._stdout_buffer = ""
        self._stderr_tail = ""
        self._new_run()
        self._cancel_requested = False
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.SeparateChannels)
        process.readyReadStandardOutput.connect(self._read_stdout)
        process.readyReadStandardError.connect(self._read_stderr)
        process.finished.connect(self._on_finished)
        process.errorOccurred.connect(self._on_error)
        self._process = process
        _start_below_normal_priority(process)
        process.start(command[0], list(command[1:]))

    def cancel(self) -> None:
        """Ask the trainer to stop at the next batch; kill it if it does not in time."""
        if not self.is_running() or self._cancel_requested:
            return
        self._cancel_requested = True
        assert self._process is not None
        self._process.terminate()
        self._kill_timer.start(self._cancel_grace_ms)

    def wait_stopped(self, timeout_ms: int = 30_000) -> bool:
        """Block until the child is gone (for shutdown and tests). Kills it if needed."""
        if self._process is None:
            return True
        if self.is_running() and not self._process.waitForFinished(timeout_ms):
            self._process.kill()
            self._process.waitForFinished(5000)
        return not self.is_running()

    def pid(self) -> int | None:
        return int(self._process.processId()) if self.is_running() else None

    # -- output parsing --------------------------------------------------------------

    def _read_stdout(self) -> None:
        if self._process is None:
            return
        chunk = bytes(self._process.readAllStandardOutput().data()).decode("utf-8", "replace")
        self._stdout_buffer += chunk
        *lines, self._stdout_buffer = self._stdout_buffer.split("\n")
        for line in lines:
            self._handle_line(line.strip())

    def _read_stderr(self) -> None:
        if self._process is None:
            return
        text = bytes(self._process.readAllStandardError().data()).decode("utf-8", "replace")
        self._stderr_tail = (self._stderr_tail + text)[-STDERR_TAIL_CHARS:]
        for line in text.splitlines():
            if line.strip():
                self.log_line.emit(line)

    def _handle_line(self, line: str) -> None:
        if not line:
            return
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if not isinstance(event, dict) or "event" not in event:
            self.log_line.emit(line)
            return
        kind = event["event"]
        if self.emit_progress_event(event):
            return
        if kind == "done":
            self._report(lambda: self.done.emit(event))
        elif kind == "error":
            self._report(lambda: self.failed.emit(str(event.get("message") or "The training failed.")))
        elif kind == "cancelled":
            self._report(self.cancelled.emit)
        else:
            self.log_line.emit(line)

    # -- end of the child ------------------------------------------------------------

    def _on_finished(self, exit_code: int, exit_status: QProcess.ExitStatus) -> None:
        self._kill_timer.stop()
        self._read_stdout()
        if self._stdout_buffer.strip():  # a last line without a newline
            self._handle_line(self._stdout_buffer.strip())
            self._stdout_buffer = ""
        if self._cancel_requested or exit_code == EXIT_CANCELLED:
            self._report(self.cancelled.emit)
        elif exit_status == QProcess.ExitStatus.CrashExit:
            self._report(lambda: self.failed.emit(self._failure_text("The trainer stopped unexpectedly.")))
        elif exit_code != 0:
            self._report(lambda: self.failed.emit(self._failure_text(f"The trainer exited with code {exit_code}.")))
        else:
            self._report(lambda: self.failed.emit(self._failure_text("The trainer ended without a result.")))
        code = exit_code if exit_status == QProcess.ExitStatus.NormalExit else -1
        self.finished.emit(code)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._report(lambda: self.failed.emit("The trainer could not be started (is the training part installed?)."))
            self.finished.emit(-1)

    def _failure_text(self, headline: str) -> str:
        tail = self._stderr_tail.strip().splitlines()[-6:]
        return headline + ("\n" + "\n".join(tail) if tail else "")

    def _kill(self) -> None:
        if self.is_running():
            assert self._process is not None
            self._process.kill()
