"""Many writers at once on one PostgreSQL project (a plant store), against a real server.

8 station processes send result batches with `Project.record_results` (one of them is
killed now and then and started again, and resends the batch it had not seen
acknowledged, as a station forwarder does), 2 labeling processes label the same images
with `Project.set_label`, often the same image within milliseconds, and a reader reads
the labeled set the way training does, all at once for DURATION_S. Each process keeps a
journal of what the store acknowledged (benchmarks/plant_load.py). Afterwards:

- results: every acknowledged result is stored exactly once, under its station; nothing
  is stored that no station sent; each station's rows are exactly its acknowledged
  batches (the processes stop cleanly, and the killed one resends its batch in flight,
  so nothing is left unacknowledged); a resent batch was stored whole or not at all;
- labels: every acknowledged label is a row with its image, verdict and author, and the
  rows are exactly the acknowledged labels (complete histories, nothing unacknowledged
  or lost); a label acknowledged before another was sent for the same image is older
  in its history; the current label of every image is its newest acknowledged one; the
  audit trail is intact, with one entry per label;
- the reader never saw a broken state, and no writer got an error.

Speed is benchmarks/plant.py's to report. DURATION_S (LINESIDE_MANY_WRITERS_S) may be
shortened to try a change locally; the issue asks for 60 s.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import sqlalchemy as sa

from app.core import audit, db
from app.core.project import Project
from tests.plant_fixtures import plant_url, postgres_server  # noqa: F401
from tests.store_fixtures import part_image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.plant_load import (  # noqa: E402
    DEFECT_CLASSES,
    Fleet,
    batch_uids,
    read_journal,
    station_results,
)

DURATION_S = float(os.environ.get("LINESIDE_MANY_WRITERS_S", "60"))
STATIONS = 8
LABELERS = ("ann", "bob")
IMAGES = 12
# 1 to 50 results a call, a call every 50 ms (back to back when behind): up to
# 500 results/s a station, 25 times a line's 20 parts/s, so the stations' writes overlap
# the labels all the time, and two shared cores still give the labelers and the reader a turn.
BATCH_MAX, STATION_INTERVAL_S = 50, 0.05
LABEL_SLOT_S = 0.1  # both labelers label the slot's image every 100 ms
KILLED_STATION = "station-0"
KILLS = 3  # at 1/4, 2/4 and 3/4 of the run
# Starting 11 Python processes that import the store takes a while on two busy cores.
READY_TIMEOUT_S = 240


def make_plant_project(folder: Path, url: str) -> list[int]:
    """A plant project with IMAGES unlabeled images and the defect classes; their ids."""
    with Project.create(folder, database=url) as project:
        for name in DEFECT_CLASSES:
            project.add_class(name)
        return [project.add_image_array(part_image(seed), source="import")[0].id for seed in range(IMAGES)]


def wait_writing(fleet: Fleet, name: str, starts: int) -> None:
    """Until the station, started *starts* times, has had a batch acknowledged since its
    last start: a kill then lands in a station that is writing, not in one starting up."""
    end = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < end:
        kinds = [e["kind"] for e in read_journal(fleet.journal(name))]
        if kinds.count("ready") >= starts and "ack" in kinds[len(kinds) - kinds[::-1].index("ready"):]:
            return
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not write again after its restart:\n{fleet.stderr(name)}")


def run_fleet(folder: Path, project_dir: Path, images: list[int]) -> tuple[Fleet, dict[str, int]]:
    fleet = Fleet(folder)
    try:
        for n in range(STATIONS):
            fleet.start(f"station-{n}", "station", project_dir, "--name", f"station-{n}", "--seed", str(n),
                        "--batch-min", "1", "--batch-max", str(BATCH_MAX), "--interval", str(STATION_INTERVAL_S))
        for author in LABELERS:
            fleet.start(f"labeler-{author}", "labeler", project_dir, "--author", author, "--seed", "7",
                        "--images", ",".join(map(str, images)), "--slot", str(LABEL_SLOT_S))
        fleet.start("reader", "reader", project_dir, "--images", str(len(images)))
        fleet.wait_ready(READY_TIMEOUT_S)
        deadline = fleet.start_writing(DURATION_S)
        for kill in range(1, KILLS + 1):
            time.sleep(max(0.0, deadline - DURATION_S * (1 - kill / (KILLS + 1)) - time.time()))
            wait_writing(fleet, KILLED_STATION, starts=kill)
            fleet.processes[KILLED_STATION].kill()  # SIGKILL: wherever it is, mid-call or not
            fleet.processes[KILLED_STATION].wait()
            fleet.restart(KILLED_STATION)
        codes = fleet.wait_all(timeout_s=max(0.0, deadline - time.time()) + READY_TIMEOUT_S)
    finally:
        fleet.stop_all()
    return fleet, codes


def check_results(fleet: Fleet, stored: list[tuple[str, str]]) -> int:
    """Every acknowledged result stored exactly once, and nothing else; the row count."""
    uid_counts = Counter(uid for _, uid in stored)
    twice = [uid for uid, n in uid_counts.items() if n > 1]
    assert not twice, f"{len(twice)} result_uids stored more than once, e.g. {twice[:3]}"
    by_station: dict[str, set[str]] = defaultdict(set)
    for station, uid in stored:
        by_station[station].add(uid)
    assert set(by_station) <= {f"station-{n}" for n in range(STATIONS)}, sorted(by_station)

    for n in range(STATIONS):
        name = f"station-{n}"
        entries = read_journal(fleet.journal(name))
        errors = [e for e in entries if e["kind"] == "error"]
        assert not errors, f"{name} got errors from record_results: {errors[:3]}"
        acks = [e for e in entries if e["kind"] == "ack"]
        assert acks, f"{name} had no batch acknowledged in {DURATION_S:.0f} s:\n{fleet.stderr(name)}"
        acked_seqs = Counter(e["seq"] for e in acks)
        assert max(acked_seqs.values()) == 1, f"{name} acknowledged a batch twice"
        sent = {e["seq"]: e["n"] for e in entries if e["kind"] == "send"}
        assert set(sent) == set(acked_seqs), f"{name}: batches sent and never acknowledged: {set(sent) - set(acked_seqs)}"
        acknowledged = {uid for seq, n in sent.items() for uid in batch_uids(name, seq, n)}
        missing = acknowledged - by_station[name]
        assert not missing, f"{name}: {len(missing)} acknowledged results are not stored"
        extra = by_station[name] - acknowledged
        assert not extra, f"{name}: {len(extra)} results stored that it never had acknowledged"
        for ack in acks:
            # One transaction a batch: all of it new, or (sent again) all of it stored already.
            assert ack["new"] in ((0, ack["n"]) if ack["resend"] else (ack["n"],)), ack
        if name == KILLED_STATION:
            restarts = sum(1 for e in entries if e["kind"] == "ready") - 1
            assert restarts == KILLS, f"{name} started {restarts} times again, not {KILLS}"
    return len(stored)


def check_labels(fleet: Fleet, project: Project, images: list[int]) -> dict:
    """Every acknowledged label in its image's history, histories complete and ordered."""
    acked: list[dict] = []
    for author in LABELERS:
        entries = read_journal(fleet.journal(f"labeler-{author}"))
        errors = [e for e in entries if e["kind"] == "error"]
        assert not errors, f"labeler {author} got errors: {errors[:3]}"
        acked += [e for e in entries if e["kind"] == "label"]
    assert len({e["author"] for e in acked}) == len(LABELERS), "a labeler had no label acknowledged"

    with project.snapshot() as conn:
        rows = {row["id"]: row for row in conn.execute(sa.select(db.labels)).mappings()}
    assert len(acked) == len({e["id"] for e in acked}), "two acknowledged labels with one row id"
    for e in acked:
        row = rows.get(e["id"])
        assert row is not None, f"acknowledged label {e} is not stored"
        assert (row["image_id"], row["verdict"], row["author"]) == (e["image"], e["verdict"], e["author"]), (row, e)
    assert set(rows) == {e["id"] for e in acked}, "label rows that no labeler had acknowledged"

    by_image: dict[int, list[dict]] = defaultdict(list)
    for e in sorted(acked, key=lambda e: e["id"]):
        by_image[e["image"]].append(e)
    overlapping = 0
    for image_id in images:
        labels = by_image.get(image_id, [])
        history = project.label_history(image_id)
        assert [label.id for label in history] == [e["id"] for e in labels], f"image {image_id}: history incomplete"
        # Acknowledged before the other was sent: the other must come later in the history.
        earliest_ack_after = float("inf")
        for e in reversed(labels):
            assert e["sent"] <= earliest_ack_after, (
                f"image {image_id}: label {e['id']} is newer than one acknowledged before it was sent")
            earliest_ack_after = min(earliest_ack_after, e["acked"])
        current = project.label(image_id)
        newest = labels[-1] if labels else None
        expected = None if newest is None or newest["verdict"] is None else newest["id"]
        assert (current.id if current else None) == expected, f"image {image_id}: current label is not the newest"
        overlapping += sum(1 for a, b in zip(labels, labels[1:])
                           if a["author"] != b["author"] and b["sent"] < a["acked"])
    labeled = {record.id: label.id for record, label in project.labeled()}
    assert labeled == {i: by_image[i][-1]["id"] for i in images
                       if by_image.get(i) and by_image[i][-1]["verdict"] is not None}

    check = audit.verify(project)
    assert check.intact, check.describe()
    label_entries = [e for e in audit.entries(project) if e.action == audit.LABEL]
    assert len(label_entries) == len(rows), "not one audit entry per label"
    return {"labels": len(acked), "overlapping": overlapping}


def test_many_writers_keep_every_acknowledged_write(plant_url: str, tmp_path: Path):
    project_dir = tmp_path / "plant"
    images = make_plant_project(project_dir, plant_url)
    run_folder = tmp_path / "run"
    run_folder.mkdir()

    started = time.monotonic()
    fleet, codes = run_fleet(run_folder, project_dir, images)
    assert codes == dict.fromkeys(fleet.processes, 0), {n: fleet.stderr(n) for n, c in codes.items() if c}

    with Project.open(project_dir) as project:
        with project.snapshot() as conn:
            stored = [tuple(row) for row in conn.execute(sa.select(db.inspections.c.station,
                                                                   db.inspections.c.result_uid))]
        results = check_results(fleet, stored)
        labels = check_labels(fleet, project, images)

    summaries = [e for e in read_journal(fleet.journal("reader")) if e["kind"] in ("broken", "summary")]
    broken = [e["what"] for e in summaries if e["kind"] == "broken"]
    assert not broken, f"the reader saw {len(broken)} broken states, first:\n{broken[0]}"
    reads = summaries[-1]["reads"]
    assert reads >= 10, f"the reader read only {reads} times"
    # Both people labeled the same image at once (one sent before the other's was
    # acknowledged) often enough that the run says something about it.
    assert labels["overlapping"] >= 10, labels
    print(f"\n{DURATION_S:.0f} s of writing ({time.monotonic() - started:.0f} s with start and stop): "
          f"{results} results from {STATIONS} stations, {labels['labels']} labels "
          f"({labels['overlapping']} sent while the other person's was in flight on the same image), "
          f"{reads} reads of the labeled set")


def test_a_batch_sent_again_adds_nothing(plant_url: str, tmp_path: Path):
    make_plant_project(tmp_path / "plant", plant_url)
    first, overlap = station_results("s1", 0, 50), station_results("s1", 1, 50)
    with Project.open(tmp_path / "plant") as project:
        assert project.record_results(first) == 50
        assert project.record_results(first) == 0  # the acknowledgement was lost: sent again
        assert project.record_results(first[25:] + overlap) == 50  # a batch of old and new
        with project._read() as conn:
            stored = Counter(uid for (uid,) in conn.execute(sa.select(db.inspections.c.result_uid)))
    assert stored == Counter(batch_uids("s1", 0, 50) + batch_uids("s1", 1, 50))


def test_one_batch_from_two_connections_at_once_is_stored_once(plant_url: str, tmp_path: Path):
    """A forwarder that timed out and resent while its first call was still committing."""
    make_plant_project(tmp_path / "plant", plant_url)
    batch = station_results("s1", 0, 200)
    senders = [Project.open(tmp_path / "plant") for _ in range(2)]
    start, errors = threading.Barrier(len(senders)), []

    def send(project: Project) -> None:
        start.wait()
        try:
            project.record_results(batch)
        except Exception as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(project,)) for project in senders]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        with senders[0]._read() as conn:
            stored = Counter(uid for (uid,) in conn.execute(sa.select(db.inspections.c.result_uid)))
    finally:
        for project in senders:
            project.close()
    assert stored == Counter(batch_uids("s1", 0, 200))


def test_the_labeled_set_is_read_at_one_moment(plant_url: str, tmp_path: Path):
    """Training reads the labeled set (Project.labeled: images, then their labels) while an
    inspector clears a label in between: the read must see the project at one moment,
    before or after the clear, as SQLite's read transaction does; never an image whose
    label has gone by the time its label is read."""
    images = make_plant_project(tmp_path / "plant", plant_url)
    with Project.open(tmp_path / "plant") as trainer, Project.open(tmp_path / "plant") as inspector:
        inspector.set_label(images[0], "ok", author="ann")
        assert [record.id for record, _ in trainer.labeled()] == [images[0]]
        armed = True

        @sa.event.listens_for(trainer._engine, "after_cursor_execute")
        def clear_after_the_first_read(conn, cursor, statement, parameters, context, executemany):
            nonlocal armed
            if armed and "FROM images" in statement:
                armed = False
                inspector.set_label(images[0], None, author="bob")  # committed before the next statement

        labeled = trainer.labeled()
        assert not armed, "the label was not cleared during the read"
        assert [(record.id, label.verdict) for record, label in labeled] in ([(images[0], "ok")], [])
        assert trainer.labeled() == []
