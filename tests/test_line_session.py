"""The line session (app/core/line_session.py): sources -> verdict -> store -> outputs.

Real project stores, a real (tiny) ONNX model (tests/onnx_fixtures.py: the score is the
part's mean brightness), real threads. No training.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from app.core.errors import LinesideError
from app.core.frames import Frame
from app.core.imageio import encode_png
from app.core.image_retention import ImageRetention
from app.core.line_session import CallbackListener, LineSession, PartResult
from app.core.line_sources import FileListSource, SimulatedLineSource, make_source
from app.core.plc.signals import ErrorCode
from app.core.project import Project
from tests.onnx_fixtures import write_model

# The simulated line's parts have a mean brightness of about 0.23..0.35: at 0.3 roughly
# a third of them FAIL with this model, so both verdicts occur.
SIM_THRESHOLD = 0.3
DARK = np.full((48, 64, 3), 30, np.uint8)  # score 0.12: PASS
BRIGHT_BLUE = np.zeros((48, 64, 3), np.uint8)
BRIGHT_BLUE[..., 0] = 255
BRIGHT_BLUE[..., 1:] = 120  # score ~0.65: FAIL, class 1 ("scratch": the blue channel)


def add_model(project: Project, version: str = "v1", threshold: float = SIM_THRESHOLD, deploy: bool = True) -> None:
    folder = project.models_dir / version
    write_model(folder / "model.onnx", version=version, threshold=threshold)
    project.register_model(version, folder, threshold, {}, {})
    if deploy:
        project.deploy(version)


@pytest.fixture
def project(tmp_path):
    proj = Project.create(tmp_path / "project")
    add_model(proj)
    yield proj
    proj.close()


class GatedSource:
    """A triggered camera under the test's control: snap() hands out the next queued
    image, waiting until the test opens the gate (so the station stays busy)."""

    none_means_lost = True

    def __init__(self, images: list[np.ndarray] | None = None, name: str = "Gated camera") -> None:
        self.name = name
        self.images = list(images or [DARK])
        self.gate = threading.Event()
        self.gate.set()
        self.snapping = threading.Event()
        self.count = 0

    def open(self) -> None:
        pass

    def snap(self) -> Frame:
        self.snapping.set()
        self.gate.wait(10)
        self.count += 1
        image = self.images[(self.count - 1) % len(self.images)]
        return Frame(image.copy(), self.count, time.time(), self.name)

    def read(self) -> Frame | None:
        return self.snap()

    def close(self) -> None:
        self.gate.set()


class Recorder(CallbackListener):
    """Everything a session says, with a condition to wait on."""

    def __init__(self) -> None:
        super().__init__()
        self.results: list[PartResult] = []
        self.committed: list[PartResult] = []
        self.errors: list[tuple[int, str]] = []
        self.triggers: list[tuple[int, bool]] = []
        self.cond = threading.Condition()

    def on_result(self, result):
        with self.cond:
            self.results.append(result)
            self.cond.notify_all()

    def on_committed(self, results):
        with self.cond:
            self.committed.extend(results)
            self.cond.notify_all()

    def on_error(self, code, message):
        with self.cond:
            self.errors.append((code, message))
            self.cond.notify_all()

    def on_trigger(self, number, accepted):
        self.triggers.append((number, accepted))

    def wait_committed(self, n: int, timeout: float = 20.0) -> list[PartResult]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.committed) >= n, timeout), (
                f"{len(self.committed)} of {n} results committed; errors {self.errors}")
            return list(self.committed)


def test_free_run_sim_counts_records_and_times_every_part(project):
    rec = Recorder()
    session = LineSession(project, [make_source("sim", rate_hz=100)], [rec], max_parts=24)
    session.start()
    assert session.wait(60)
    session.stop()
    c = session.counters
    assert c.parts == 24 and c.passed + c.failed == 24
    assert c.failed > 0 and c.passed > 0  # both verdicts occur at this threshold
    assert sum(c.per_class.values()) == c.failed
    assert c.yield_ == pytest.approx(c.passed / 24)
    stored = {row["id"]: row for row in project.inspections()}
    assert len(stored) == 24 == session.committed
    for result in rec.committed:  # what listeners were told is what the store holds
        row = stored[result.inspection_id]
        assert (row["verdict"], row["defect_class"], row["model_version"]) == (
            result.label, result.defect_class, "v1")
        assert row["score"] == pytest.approx(result.score)
        assert result.class_code == (0 if result.passed else session.class_code(result.defect_class))
        assert result.class_code != 0 or result.passed
    timing = session.timing()
    assert set(timing) == {"capture", "inspect", "commit", "total"}
    assert all(timing[s]["n"] == 24 for s in timing)
    assert timing["total"]["p50"] >= timing["inspect"]["p50"]


def test_trigger_takes_one_part_and_a_trigger_while_busy_is_missed(project):
    camera = GatedSource([BRIGHT_BLUE])
    rec = Recorder()
    session = LineSession(project, [camera], [rec], triggered=True)
    session.start()
    try:
        camera.gate.clear()
        assert session.trigger() == 1
        assert camera.snapping.wait(5)
        assert session.busy and not session.ready
        # Decided on the spot (no waiting needed before the negative check).
        assert session.trigger() is None
        assert session.counters.missed == 1
        assert (ErrorCode.TRIGGER_WHILE_BUSY, ) == tuple(code for code, _ in rec.errors)
        assert rec.triggers == [(1, True), (0, False)]
        camera.gate.set()
        (result,) = rec.wait_committed(1)
        assert result.trigger == 1 and result.label == "FAIL"
        assert result.defect_class == "scratch" and result.class_code == 1
        assert result.score_scaled == round(result.score * 10000) and 5000 < result.score_scaled < 7000
        assert project.inspections()[0]["id"] == result.inspection_id
        assert session.counters.parts == 1
    finally:
        session.stop()


def test_a_part_fails_if_any_of_its_views_fails(project):
    rec = Recorder()
    top, side = GatedSource([DARK, DARK], "Top"), GatedSource([DARK, BRIGHT_BLUE], "Side")
    frames: list = []
    rec.on_frame = lambda view, frame: frames.append((view, frame))
    with LineSession(project, [top, side], [rec], triggered=True) as session:
        assert session.trigger() == 1
        rec.wait_committed(1)
        assert session.trigger() == 2
        first, second = rec.wait_committed(2)
    assert (first.label, len(first.verdicts), first.source) == ("PASS", 2, "Top + Side")
    assert sorted(view for view, _ in frames) == [0, 0, 1, 1]  # the live preview saw every frame
    assert second.label == "FAIL" and second.defect_class == "scratch"
    assert [v.passed for v in second.verdicts] == [True, False]
    assert second.score == pytest.approx(max(v.score for v in second.verdicts))
    assert [row["verdict"] for row in reversed(project.inspections())] == ["PASS", "FAIL"]


def test_hot_folder_parts_are_judged_once_each_in_order(project, tmp_path):
    folder = tmp_path / "incoming"
    folder.mkdir()
    rec = Recorder()
    session = LineSession(project, [make_source(f"folder:{folder}")], [rec], max_parts=3)
    session.start()
    try:
        for i, image in enumerate([DARK, BRIGHT_BLUE, DARK]):
            (folder / f"part{i}.png").write_bytes(encode_png(image))
            time.sleep(0.05)  # distinct modification times: the folder's order is the files' age
        results = rec.wait_committed(3)
        assert session.wait(10)
    finally:
        session.stop()
    assert [r.paths[0].name for r in results] == ["part0.png", "part1.png", "part2.png"]
    assert [r.label for r in results] == ["PASS", "FAIL", "PASS"]
    assert len(project.inspections()) == 3


def test_stop_commits_every_judged_part(project):
    rec = Recorder()
    session = LineSession(project, [make_source("sim", rate_hz=0)], [rec], commit_interval_s=0.25)
    session.start()
    with rec.cond:
        assert rec.cond.wait_for(lambda: len(rec.results) >= 10, 30)
    session.stop()
    judged = session.counters.parts
    assert judged >= 10
    assert len(project.inspections()) == judged == session.committed == len(rec.committed)


def test_commits_are_batched_under_a_commit_interval(project):
    batches: list[int] = []
    listener = CallbackListener(on_committed=lambda results: batches.append(len(results)))
    session = LineSession(project, [make_source("sim", rate_hz=0)], [listener], max_parts=20,
                          commit_interval_s=0.5, max_batch=50)
    session.start()
    assert session.wait(60)
    session.stop()
    assert sum(batches) == 20
    assert max(batches) > 1  # several results per transaction


def test_select_model_and_reset_counters(project):
    add_model(project, "v2", threshold=0.9, deploy=False)
    rec = Recorder()
    models: list[str] = []
    rec.on_model = models.append
    with LineSession(project, [GatedSource([BRIGHT_BLUE])], [rec], triggered=True) as session:
        session.trigger()
        rec.wait_committed(1)
        assert session.select_model("v2") == "v2"
        with pytest.raises(LinesideError, match="v7"):
            session.select_model("v7")
        assert session.model_version == "v2"  # a bad choice leaves the model in place
        session.trigger()
        first, second = rec.wait_committed(2)
        assert (first.label, first.model_version) == ("FAIL", "v1")
        assert (second.label, second.model_version) == ("PASS", "v2")  # threshold 0.9
        assert session.counters.parts == 2
        session.reset_counters()
        assert session.counters.parts == 0 and session.counters.per_class == {}
    assert models == ["v1", "v2"]
    assert any(code == ErrorCode.MODEL_NOT_AVAILABLE for code, _ in rec.errors)


def test_an_inspector_without_a_project_acknowledges_without_recording(project):
    from app.core.runtime import load_inspector_for_project

    inspector, _ = load_inspector_for_project(project)
    rec = Recorder()
    with LineSession(inspector, [GatedSource()], [rec], triggered=True) as session:
        session.trigger()
        (result,) = rec.wait_committed(1)
    assert result.inspection_id is None and result.label == "PASS"
    assert project.inspections() == []


def test_session_refuses_more_than_four_views(project):
    with pytest.raises(LinesideError, match="1 to 4 views"):
        LineSession(project, [GatedSource() for _ in range(5)])


def _result(seq: int, passed: bool, image: np.ndarray) -> PartResult:
    return PartResult(seq=seq, trigger=None, at=time.time(), sources=["cam"], verdicts=[], passed=passed,
                      score=0.1 if passed else 0.9, defect_class=None if passed else "scratch",
                      class_code=0 if passed else 1, model_version="v1", images=[image], inspection_id=seq)


def _noise(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)


def test_retention_keeps_fails_samples_passes_and_frees_the_oldest_passes_first(project, tmp_path):
    one = len(encode_png(_noise(0)))
    keep = ImageRetention(tmp_path / "kept", pass_every=2, quota_bytes=int(one * 5.5))
    keep.start(project)
    wanted = []
    for seq in range(1, 9):  # P F P P P F P P: the 1st, 3rd and 5th PASS (seq 1, 4, 7) are sampled
        result = _result(seq, passed=seq not in (2, 6), image=_noise(seq))
        if keep.wants(result):
            wanted.append(seq)
            keep.on_committed([result])
    keep.stop()
    assert wanted == [1, 2, 4, 6, 7]  # every FAIL; one PASS in two
    names = sorted(p.name for p in (tmp_path / "kept").glob("*/*.png"))
    assert len(names) == 5 and keep.deleted == 0
    # Over the quota: the oldest PASS goes, never a FAIL while a PASS is left.
    keep = ImageRetention(tmp_path / "kept", pass_every=1, quota_bytes=int(one * 5.5))
    keep.start(project)
    keep.on_committed([_result(9, True, _noise(9))])
    keep.stop()
    left = sorted(p.name for p in (tmp_path / "kept").glob("*/*.png"))
    assert [n.split("_")[0] for n in left] == ["0000000002", "0000000004", "0000000006", "0000000007", "0000000009"]


def test_retention_never_deletes_a_labeled_image(project, tmp_path):
    one = len(encode_png(_noise(0)))
    keep = ImageRetention(tmp_path / "kept", pass_every=1, quota_bytes=int(one * 2.5))
    keep.start(project)
    keep.on_committed([_result(1, True, _noise(1))])
    keep.stop()
    (first,) = list((tmp_path / "kept").glob("*/*.png"))
    image, _ = project.add_image_file(first, source="retained")  # "this verdict is wrong": labeled
    project.set_label(image.id, "scratch")
    keep = ImageRetention(tmp_path / "kept", pass_every=1, quota_bytes=int(one * 2.5))
    keep.start(project)
    for seq in (2, 3, 4):
        keep.on_committed([_result(seq, True, _noise(seq))])
    keep.stop()
    left = sorted(p.name.split("_")[0] for p in (tmp_path / "kept").glob("*/*.png"))
    assert first.exists()
    assert left == ["0000000001", "0000000004"]
    assert keep.total_bytes <= keep.quota_bytes


def test_make_source_refuses_bad_specs(tmp_path):
    with pytest.raises(LinesideError, match="camera:0"):
        make_source("camera:front")
    with pytest.raises(LinesideError, match="not a folder"):
        make_source(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(LinesideError, match="expected camera:N"):
        make_source("usb:1")
    assert make_source("sim:3", rate_hz=7).rate_hz == 7


def test_line_session_imports_no_plc_library_qt_or_torch():
    import subprocess
    import sys

    code = ("import sys, app.core.line_session, app.core.plc.link, app.core.plc.signals;"
            "bad = [m for m in ('torch', 'PySide6', 'pymodbus', 'asyncua') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# -- what the Inspect workspace, `lineside inspect` and the demo need ------------------


def test_file_list_judges_every_file_in_order_and_reports_unreadable_ones(project, tmp_path):
    dark, blue = tmp_path / "dark.png", tmp_path / "blue.png"
    dark.write_bytes(encode_png(DARK))
    blue.write_bytes(encode_png(BRIGHT_BLUE))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n half a picture")
    rec = Recorder()
    failed: list = []
    order: list = []
    rec.on_part_failed = lambda frames, message: (failed.append((frames[0].path, message)), order.append("failed"))
    on_result = rec.on_result
    rec.on_result = lambda result: (order.append(result.source), on_result(result))
    paths = [dark, broken, tmp_path / "missing.png", blue]
    with LineSession(project, [FileListSource(paths)], [rec], max_parts=len(paths)) as session:
        assert session.wait(30)  # ends by itself: failed parts count towards max_parts
    assert order == [str(dark), "failed", "failed", str(blue)]
    assert [r.label for r in rec.committed] == ["PASS", "FAIL"]
    assert [r.paths[0] for r in rec.committed] == [dark, blue]
    assert [path for path, _ in failed] == [broken, tmp_path / "missing.png"]
    assert failed[0][1].startswith(f"{broken}: not a readable image")
    assert session.counters.errors == 2 and session.counters.parts == 2
    assert [code for code, _ in rec.errors] == [ErrorCode.INSPECTION_FAILED] * 2
    rows = list(reversed(project.inspections()))
    assert [row["source"] for row in rows] == [str(dark), str(blue)]


def test_switch_between_triggered_and_free_run_without_a_new_session(project):
    rec = Recorder()
    line = SimulatedLineSource(seed=2, rate_hz=50)
    with LineSession(project, [line], [rec], triggered=True) as session:
        time.sleep(0.3)
        assert rec.results == []  # nothing without a trigger
        assert session.trigger() == 1
        rec.wait_committed(1)
        session.set_triggered(False)  # free-run: parts flow by themselves
        rec.wait_committed(6)
        session.set_triggered(True)
        time.sleep(0.3)  # the part in hand is finished
        with rec.cond:
            settled = len(rec.results)
        time.sleep(0.4)
        assert len(rec.results) == settled  # triggered again: nothing flows
        assert session.trigger() is not None
        rec.wait_committed(settled + 1)
    assert session.counters.missed == 0 and session.counters.errors == 0


def test_simulated_line_at_rate_0_makes_each_part_when_the_station_is_ready(project):
    rec = Recorder()
    line = SimulatedLineSource(seed=3, defect_rate=0.35, rate_hz=0)
    with LineSession(project, [line], [rec], max_parts=10) as session:
        assert session.wait(30)
    assert len(rec.committed) == 10 and all(r.truth is not None for r in rec.committed)
    assert session.counters.dropped == 0  # none made and pushed out unjudged
    assert [r.seq for r in rec.committed] == list(range(1, 11))


def test_demo_inspects_fresh_parts_through_the_line_session(project, capsys):
    from app.cli.demo import DEMO_SETTING, run_demo_command

    project.set_setting(DEMO_SETTING, True)
    root = project.path
    project.close()
    assert run_demo_command(root, n_fresh=5) == 0
    out = capsys.readouterr().out.splitlines()
    parts = [line for line in out if line.startswith(("PASS", "FAIL"))]
    assert len(parts) == 5 and all("(truth: " in line for line in parts)
    right = sum(1 for line in parts if "<- wrong" not in line)
    assert f"{right}/5 verdicts right." in "\n".join(out)
    with Project.open(root) as reopened:
        assert len(reopened.inspections()) == 5
