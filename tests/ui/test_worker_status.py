"""The training server's presence on screen: the Train tab's status line and the main
window's "Training on: …", driven by clicks with the stylesheet on. The worker's part
is played through train_jobs' presence API, which is all a worker writes while it waits."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from app.core import train_jobs
from app.ui.train.train_target import ON_SERVER, ON_THIS_PC, ServerStatus, status_text, target_text
from tests.ui.test_train_server import EVENT_WAIT_MS, choose

NOW = datetime(2024, 5, 6, 12, 0, tzinfo=timezone.utc)


def test_the_status_line_and_bar_follow_the_choice_and_the_server(qtbot, main_window):
    window = main_window(size=(1024, 768))
    project = window.context.project
    local = window.device_label.text()
    assert local.startswith("Training on: ") and "server" not in local
    train_jobs.worker_alive(project, "gpu-1", train_jobs.IDLE, "cuda")
    window.show_workspace("train")
    train = window._training()

    choose(qtbot, train.target_box, ON_SERVER)
    qtbot.waitUntil(lambda: "is waiting for jobs" in train.server_status.text(), timeout=EVENT_WAIT_MS)
    assert "<b>gpu-1</b> is waiting for jobs (seen just now, cuda)" in train.server_status.text()
    assert window.device_label.text() == "Training on: server gpu-1"

    choose(qtbot, train.target_box, ON_THIS_PC)
    assert window.device_label.text() == local

    choose(qtbot, train.target_box, ON_SERVER)
    qtbot.waitUntil(lambda: window.device_label.text() == "Training on: server gpu-1", timeout=EVENT_WAIT_MS)
    window.show_workspace("inspect")  # the status bar is on screen on every tab: it still follows
    train_jobs.worker_gone(project, "gpu-1")
    train.server_status.refresh()
    qtbot.waitUntil(lambda: window.device_label.text() == "Training on: server (none online)", timeout=EVENT_WAIT_MS)
    assert "No training server online: the last one, <b>gpu-1</b>" in train.server_status.text()


def _presence(name: str, state: str, seen: datetime, online: bool, gpus: int | None = None):
    return train_jobs.WorkerPresence(name, "host", "cuda" if gpus else "cpu", gpus, state, seen, 1, online)


def test_the_server_line_names_the_waiting_server_or_the_last_one_seen():
    idle = _presence("gpu-1", train_jobs.IDLE, NOW - timedelta(seconds=12), True, gpus=2)
    waiting = status_text(ServerStatus(0, [], None, [idle]), "/p", NOW)
    assert waiting == "Training server <b>gpu-1</b> is waiting for jobs (seen 12 s ago, cuda, 2 GPUs); no job waiting."
    gone = _presence("gpu-1", train_jobs.IDLE, NOW - timedelta(hours=3), False)
    offline = status_text(ServerStatus(1, [], None, [gone]), "/plant/line3", NOW)
    assert offline == ("No training server online: the last one, <b>gpu-1</b>, was seen 3 h ago; 1 job waiting. "
                       "Start it again on that PC with:<br><tt>lineside worker /plant/line3</tt>")
    assert target_text(ServerStatus(0, [], None, [idle])) == "server gpu-1"
    assert target_text(ServerStatus(0, [], None, [gone])) == "server (none online)"
    assert target_text(None) == "server"
