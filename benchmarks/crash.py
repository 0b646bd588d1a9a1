"""Crash consistency: SIGKILL the programs that write a project, at random points, and
check what survives.

Three writers, each killed `--kills` times (default 50) after a random delay:
  import  `lineside import` of a generated folder of class folders with masks;
  labels  a child that labels images through the store API (`Project.set_label`, with
          a mask for defects, and now and then `undo_label`: the calls the app makes)
          and prints each acknowledged label row id to stdout, flushed, once the call
          has returned;
  train   `lineside train --epochs 1` on a tiny generated project (96 px parts) whose
          production model was trained and deployed first.
After every kill:
  - project.db passes `PRAGMA integrity_check`, and the project opens;
  - no acknowledged label is missing: every label id the child printed is in the
    database with the image and verdict it printed (labels), and every image and label
    there before the run is still there, unchanged (import);
  - every image row has its file, with the sha256 it is named by (import);
  - the production model still serves: `Inspector` on its model file gives a finite
    score on a part (train; also checked after import and labels).
A kill that lands after the child has already finished counts as a kill but not as
"mid-run". Results: a table in benchmarks/results/crash.md (or crash_quick.md).

    python benchmarks/crash.py               # 3 x 50 kills (ten minutes or so on two cores)
    python benchmarks/crash.py --quick       # 3 x 5 kills, a smoke test (about a minute)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from app.core.project import Project  # noqa: E402

IMPORT_OK, IMPORT_PER_DEFECT = 150, 50  # 300 images and 150 masks
LABEL_IMAGES = 400


# -- the label-writing child ------------------------------------------------------

def label_child(project_dir: str, seed: int) -> int:
    """Label every image of the project over and over; print each acknowledged label.

    One line per call, after it has returned: `<label id> <image id> <verdict or ->`.
    """
    import numpy as np

    rng = random.Random(seed)
    with Project.open(project_dir) as project:
        records = project.images()
        while True:
            for record in records:
                if rng.random() < 0.1:
                    project.undo_label(record.id, author="crash")
                    history = project.label_history(record.id)  # the undo is a new row
                    if history:
                        print(f"{history[-1].id} {record.id} {history[-1].verdict or '-'}", flush=True)
                    continue
                verdict = rng.choice(["ok", "scratch", "dent"])
                mask = None
                if verdict != "ok":
                    mask = np.zeros((record.height, record.width), np.uint8)
                    y, x = rng.randrange(record.height), rng.randrange(record.width)
                    mask[max(0, y - 5) : y + 5, max(0, x - 5) : x + 5] = 255
                label = project.set_label(record.id, verdict, mask=mask, author="crash")
                print(f"{label.id} {record.id} {label.verdict}", flush=True)


# -- checks -----------------------------------------------------------------------

def integrity_ok(db_path: Path) -> bool:
    try:
        conn = sqlite3.connect(db_path)
        try:
            return conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        finally:
            conn.close()
    except sqlite3.Error:
        return False


def labels_in_db(db_path: Path) -> dict[int, tuple[int, str | None]]:
    conn = sqlite3.connect(db_path)
    try:
        return {i: (image, verdict) for i, image, verdict in conn.execute("SELECT id, image_id, verdict FROM labels")}
    finally:
        conn.close()


def rows_without_their_file(project_dir: Path) -> int:
    """Image rows whose file is missing or is not the bytes its sha256 names."""
    conn = sqlite3.connect(project_dir / "project.db")
    try:
        rows = conn.execute("SELECT sha256, path FROM images").fetchall()
        masks = [m for (m,) in conn.execute("SELECT mask_path FROM labels WHERE mask_path IS NOT NULL")]
    finally:
        conn.close()
    bad = 0
    for sha, rel in rows:
        path = project_dir / rel
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != sha:
            bad += 1
    bad += sum(not (project_dir / m).is_file() for m in set(masks))
    return bad


def production_serves(project_dir: Path, part) -> bool:
    """The production model (there must be one) loads and gives a finite score."""
    from app.core.runtime import Inspector

    try:
        with Project.open(project_dir) as project:
            model = project.production_model()
        if model is None:
            return False
        verdict = Inspector(model.onnx_path, threshold=model.threshold).inspect(part)
        return math.isfinite(verdict.score)
    except Exception:  # noqa: BLE001  (any failure is what is being counted)
        return False


def opens(project_dir: Path) -> bool:
    try:
        with Project.open(project_dir) as project:
            project.label_counts()
        return True
    except Exception:  # noqa: BLE001
        return False


# -- the runs ---------------------------------------------------------------------

@dataclass
class Tally:
    name: str
    kills: int = 0
    mid_run: int = 0
    integrity_failures: int = 0
    not_opening: int = 0
    lost_acknowledged: int = 0
    acknowledged: int = 0
    broken_rows: int = 0
    production_failures: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}


def _kill_after(command: list[str], delay: float, stdout=subprocess.DEVNULL) -> tuple[bool, str]:
    """Start *command*, SIGKILL it after *delay* s; (it was still running, its stdout)."""
    with tempfile.TemporaryFile() as out:
        child = subprocess.Popen(command, cwd=REPO_ROOT, env=_env(), stdout=out, stderr=subprocess.DEVNULL)
        try:
            child.wait(timeout=delay)
            running = False
        except subprocess.TimeoutExpired:
            running = True
            child.send_signal(signal.SIGKILL)
            child.wait()
        out.seek(0)
        return running, out.read().decode("utf-8", "replace")


def _timed(command: list[str]) -> float:
    started = time.monotonic()
    subprocess.run(command, cwd=REPO_ROOT, env=_env(), check=True, capture_output=True)
    return time.monotonic() - started


def _deployed_project(path: Path, part_source: Path) -> Path:
    """A project with a production model (tests/onnx_fixtures' small model)."""
    from tests.onnx_fixtures import write_model

    with Project.create(path, name="crash") as project:
        folder = project.models_dir / "v1"
        write_model(folder / "model.onnx", version="v1")
        project.register_model("v1", folder, 0.5, {}, {})
        for png in sorted(part_source.glob("good/*.png"))[:2]:
            project.add_image_file(png)
        project.deploy("v1")
    return path


def _snapshot(project_dir: Path) -> tuple[set[str], dict[int, tuple[int, str | None]]]:
    conn = sqlite3.connect(project_dir / "project.db")
    try:
        shas = {sha for (sha,) in conn.execute("SELECT sha256 FROM images")}
    finally:
        conn.close()
    return shas, labels_in_db(project_dir / "project.db")


def run_import(work: Path, kills: int, rng: random.Random, part) -> Tally:
    from app.core.synthetic import write_demo_dataset

    tally = Tally("import")
    source = work / "import-source"
    write_demo_dataset(source, IMPORT_OK, IMPORT_PER_DEFECT, seed=1)
    n_source = len(list(source.glob("*/*.png")))  # the masks are one level deeper
    base = _deployed_project(work / "import-base", source)
    calibrate = work / "import-calibrate"
    shutil.copytree(base, calibrate)
    full_s = _timed([sys.executable, "-m", "app", "import", str(calibrate), str(source)])
    tally.notes.append(f"{n_source} images (+ masks); an uninterrupted import takes {full_s:.1f} s")
    project = work / "import-project"
    started = time.monotonic()
    for _ in range(kills):
        if not project.exists() or len(_snapshot(project)[0]) >= n_source + 2:
            shutil.rmtree(project, ignore_errors=True)
            shutil.copytree(base, project)  # a fresh project once one import got through
        shas_before, labels_before = _snapshot(project)
        delay = rng.uniform(0.0, full_s * 1.1)
        running, _ = _kill_after([sys.executable, "-m", "app", "import", str(project), str(source)], delay)
        tally.kills += 1
        tally.mid_run += running
        db_path = project / "project.db"
        tally.integrity_failures += not integrity_ok(db_path)
        tally.not_opening += not opens(project)
        shas_after, labels_after = _snapshot(project)
        tally.acknowledged += len(labels_before)
        tally.lost_acknowledged += len(shas_before - shas_after)
        tally.lost_acknowledged += sum(labels_after.get(i) != row for i, row in labels_before.items())
        tally.broken_rows += rows_without_their_file(project)
        tally.production_failures += not production_serves(project, part)
    tally.seconds = time.monotonic() - started
    return tally


def run_labels(work: Path, kills: int, rng: random.Random, part) -> Tally:
    from app.core.synthetic import write_demo_dataset

    tally = Tally("labels")
    source = work / "label-source"
    write_demo_dataset(source, LABEL_IMAGES, 0, seed=2)
    project = _deployed_project(work / "label-project", source)
    shutil.rmtree(source / "masks", ignore_errors=True)
    with Project.open(project) as p:
        for png in sorted(source.glob("good/*.png")):
            p.add_image_file(png)  # unlabeled: the child labels them
    started = time.monotonic()
    for trial in range(kills):
        labels_before = labels_in_db(project / "project.db")
        delay = rng.uniform(0.5, 4.0)  # the child needs ~0.5 s to start
        command = [sys.executable, str(Path(__file__).resolve()), "label-child", str(project), str(trial)]
        running, out = _kill_after(command, delay)
        acknowledged = []
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 3:  # a line cut by the kill is not acknowledged
                acknowledged.append((int(parts[0]), int(parts[1]), None if parts[2] == "-" else parts[2]))
        tally.kills += 1
        tally.mid_run += running
        db_path = project / "project.db"
        tally.integrity_failures += not integrity_ok(db_path)
        tally.not_opening += not opens(project)
        labels_after = labels_in_db(db_path)
        tally.acknowledged += len(acknowledged) + len(labels_before)
        tally.lost_acknowledged += sum(labels_after.get(i) != (image, verdict) for i, image, verdict in acknowledged)
        tally.lost_acknowledged += sum(labels_after.get(i) != row for i, row in labels_before.items())
        tally.broken_rows += rows_without_their_file(project)
        tally.production_failures += not production_serves(project, part)
    tally.seconds = time.monotonic() - started
    tally.notes.append(f"{LABEL_IMAGES} images, labeled over and over by the child (with masks, 10 % undos)")
    return tally


def run_train(work: Path, kills: int, rng: random.Random, part) -> Tally:
    from tests.training_fixtures import make_tiny_project

    tally = Tally("train")
    project = make_tiny_project(work / "train-project")
    train = [sys.executable, "-m", "app", "train", str(project), "--epochs", "1", "--device", "cpu"]
    full_s = _timed(train)
    subprocess.run([sys.executable, "-m", "app", "deploy", str(project), "v1"], cwd=REPO_ROOT, env=_env(),
                   check=True, capture_output=True)  # fmt: skip
    tally.notes.append(f"tiny project at 96 px; an uninterrupted `train --epochs 1` takes {full_s:.1f} s")
    started = time.monotonic()
    for _ in range(kills):
        shas_before, labels_before = _snapshot(project)
        delay = rng.uniform(0.0, full_s * 1.1)
        running, _ = _kill_after(train, delay)
        tally.kills += 1
        tally.mid_run += running
        tally.integrity_failures += not integrity_ok(project / "project.db")
        tally.not_opening += not opens(project)
        shas_after, labels_after = _snapshot(project)
        tally.acknowledged += len(labels_before)
        tally.lost_acknowledged += len(shas_before - shas_after)
        tally.lost_acknowledged += sum(labels_after.get(i) != row for i, row in labels_before.items())
        with Project.open(project) as p:
            production = p.production_model()
        tally.production_failures += production is None or production.version != "v1"
        tally.production_failures += not production_serves(project, part)
    tally.seconds = time.monotonic() - started
    return tally


# -- the report -------------------------------------------------------------------

HEADER = ("| Writer | Kills | Killed mid-run | Integrity failures | Did not open | Lost acknowledged labels "
          "| Rows without their file | Production model failures | Time |")


def _row(t: Tally) -> str:
    return (f"| {t.name} | {t.kills} | {t.mid_run} | {t.integrity_failures} | {t.not_opening} "
            f"| {t.lost_acknowledged} of {t.acknowledged} | {t.broken_rows} | {t.production_failures} "
            f"| {t.seconds:.0f} s |")


def report(tallies: list[Tally], args: argparse.Namespace, load_at_start: str) -> str:
    from machine import machine_lines

    failures = sum(t.integrity_failures + t.not_opening + t.lost_acknowledged + t.broken_rows
                   + t.production_failures for t in tallies)  # fmt: skip
    lines = [
        "# Crash consistency" + (" (quick smoke run, not a result)" if args.quick else ""),
        "",
        "Each writer is killed with SIGKILL after a random delay; after every kill the",
        "project is checked (see the docstring of `benchmarks/crash.py`).",
        "",
        HEADER,
        "|---|---|---|---|---|---|---|---|---|",
        *(_row(t) for t in tallies),
        "",
        f"**{'No failures' if failures == 0 else f'{failures} failures'}** in {sum(t.kills for t in tallies)} kills.",
        "",
        "- \"Lost acknowledged labels\": label rows that the child printed as saved, or that were in the",
        "  project before the run, and are missing or changed after the kill, \"of\" the number of such",
        "  checks (a row is checked again after every later kill, so rows count once per kill).",
        "- \"Rows without their file\": image rows whose file is missing or is not the bytes its",
        "  sha256 names, and label masks that are missing.",
        *(f"- {t.name}: {note}" for t in tallies for note in t.notes),
        f"- Random seed {args.seed}.",
        "",
        "## Machine",
        "",
        *machine_lines("benchmarks/crash.py", ("numpy", "sqlalchemy", "onnxruntime", "torch"), load_at_start),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["label-child"]:
        return label_child(argv[1], int(argv[2]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 kills per writer: a smoke test, not a result")
    parser.add_argument("--kills", type=int, default=None, help="kills per writer (default 50, --quick 5)")
    parser.add_argument("--only", choices=["import", "labels", "train"], action="append",
                        help="run only this writer (repeatable)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="results file (default benchmarks/results/crash.md)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and print where it is")
    args = parser.parse_args(argv)
    kills = args.kills or (5 if args.quick else 50)
    out = args.out or REPO_ROOT / "benchmarks" / "results" / ("crash_quick.md" if args.quick else "crash.md")
    from machine import load_average

    load_at_start = load_average()
    import numpy as np

    part = np.full((96, 96, 3), 120, np.uint8)
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="lineside-crash-"))
    runners = {"import": run_import, "labels": run_labels, "train": run_train}
    tallies = []
    try:
        for name in args.only or list(runners):
            print(f"{name}: {kills} kills...", flush=True)
            tally = runners[name](work, kills, rng, part)
            print(_row(tally), flush=True)
            tallies.append(tally)
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    text = report(tallies, args, load_at_start)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(json.dumps({t.name: t.__dict__ for t in tallies}, default=str), file=sys.stderr)
    failures = sum(t.integrity_failures + t.not_opening + t.lost_acknowledged + t.broken_rows
                   + t.production_failures for t in tallies)  # fmt: skip
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
