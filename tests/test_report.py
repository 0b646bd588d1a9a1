"""The model report: every section answered from the stored report and from parts
measured now, charts embedded, and a PDF printed by Qt.

The fixture model scores a part by its mean brightness (tests/onnx_fixtures.py): OK
parts are dark, defective ones carry a bright blob, and a few of each overlap, so the
two versions (which differ only in threshold) disagree on known parts.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.cli import main
from app.core import report as report_mod
from app.core.imageio import encode_png
from app.core.operating_point import operating_point
from app.core.project import Project
from tests.onnx_fixtures import write_model

N_OK, N_DEFECT = 24, 16


def _part(rng: np.random.Generator, defect: bool) -> np.ndarray:
    level = int(rng.integers(90, 120)) if defect else int(rng.integers(55, 100))
    image = np.clip(rng.normal(level, 6, (64, 64, 3)), 0, 255).astype(np.uint8)
    if defect:
        x, y = (int(v) for v in rng.integers(12, 52, 2))
        cv2.circle(image, (x, y), int(rng.integers(5, 10)), (250, 250, 250), -1)
    return image


def _metrics_and_report(project: Project, version: str, threshold_target: float, parts: list,
                        production: str | None) -> tuple[dict, dict]:
    """What training/pipeline.py would store, computed from the fixture's own scores."""
    ok = [s for _, v, s in parts if v == "ok"]
    bad = [s for _, v, s in parts if v != "ok"]
    point = operating_point(ok, bad, threshold_target, f"{len(ok)} validation OK parts")
    per_class = {"scratch": {"n": len(bad), "caught": float(np.mean(np.array(bad) >= point.threshold)),
                             "class_correct": 0.5}}
    metrics = {**point.to_dict(), "auroc": 0.91, "catch_at_1pct_false_reject": 0.6, "per_class": per_class,
               "n_val": len(parts), "mode": "supervised"}
    report = {
        "mode": "supervised", "mode_reason": "16 labeled defects (10 needed)", "n_train": 20, "n_val": len(parts),
        "per_class": {"ok": {"train": 12, "val": len(ok)}, "scratch": {"train": 8, "val": len(bad)}},
        "device": "CPU (2 cores)", "elapsed_s": 95.0, "epochs_run": 4, "stopped_early": False,
        "history": [{"epoch": e, "train_loss": 0.6 / e, "val_loss": 0.5 / e ** 0.5, "val_auroc": 0.8 + e / 50,
                     "val_catch_rate": 0.5} for e in range(1, 5)],
        "weight_change": {"stem": 0.004, "block 0": 0.01, "block 5": 0.05, "head": 0.3},
        "baseline_on_same_val": {"method": "image statistics + logistic regression", "auroc": 0.7,
                                 "catch_at_1pct_false_reject": 0.2},
        "production_on_same_val": {"version": production, "auroc": 0.85, "catch_rate": 0.5,
                                   "false_reject_rate": 0.02} if production else None,
        "changes": ["+8 labeled images since v1 (32 -> 40)"] if production else ["first model of this project"],
        "shortfalls": [], "trained_at": "2024-05-03T14:02:00+00:00", "host": "line3-pc",
    }
    return metrics, report


def make_project(root: Path) -> Path:
    """v1 (production) and v2 (candidate), each with model.onnx, training_set.json and figures."""
    rng = np.random.default_rng(7)
    path = root / "proj"
    with Project.create(path, name="Line 3 tiles") as project:
        train, val = [], []
        for i in range(N_OK + N_DEFECT + 20):
            defect = i % 5 in (1, 3)
            record, _ = project.add_image_bytes(encode_png(_part(rng, defect)), f"part{i:03d}.png")
            project.set_label(record.id, "scratch" if defect else "ok", author="ann" if i % 3 else "bob")
            (train if i < 20 else val).append(record)
            project.set_split(record.id, "train" if i < 20 else "val")
        val_parts = [(r, project.label(r.id).verdict, float(project.load_image(r.id).mean() / 255)) for r in val]
        for version, target, production in (("v1", 0.30, None), ("v2", 0.05, "v1")):
            folder = path / "models" / version
            metrics, report = _metrics_and_report(project, version, target, val_parts, production)
            write_model(folder / "model.onnx", class_names=["ok", "scratch"], threshold=metrics["threshold"],
                        version=version)
            (folder / "training_set.json").write_text(json.dumps(
                {"train": [r.sha256 for r in train], "val": [r.sha256 for r in val]}))
            project.register_model(version, folder, metrics["threshold"], metrics, report)
            if version == "v1":
                project.deploy("v1")
    return path


@pytest.fixture(scope="module")
def project_dir(tmp_path_factory) -> Path:
    return make_project(tmp_path_factory.mktemp("report"))


@pytest.fixture(scope="module")
def html(project_dir: Path) -> str:
    with Project.open(project_dir) as project:
        return report_mod.build_report(project, "v2")


def _section(html: str, title: str) -> str:
    start = html.index(f"<h2>{title}")
    end = html.find("<h2>", start + 4)
    return html[start:end if end > 0 else len(html)]


def _images(fragment: str) -> list[np.ndarray]:
    out = []
    for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', fragment):
        image = cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.size
        out.append(image)
    return out


SECTIONS = ("What it was trained on", "What less data would give", "What got corrected", "What it costs",
            "Is it better than simple?", "Operating point", "Scores of OK and defective", "Confusion matrix",
            "Catch per defect class", "Training vs validation")


def test_every_section_is_there_with_a_picture_where_data_allows(html: str):
    for title in SECTIONS:
        fragment = _section(html, title)
        if title == "What less data would give":
            assert "Not measured for this version" in fragment and not _images(fragment)
            continue
        images = _images(fragment)
        assert images, f"no chart in '{title}'"
        assert all(img.std() > 5 for img in images), f"a blank chart in '{title}'"  # something was drawn


def test_trained_on_lists_classes_splits_labelers_and_weight_change(html: str):
    fragment = _section(html, "What it was trained on")
    assert "<td>scratch</td><td>8</td><td>16</td>" in fragment.replace("\n", "")
    assert "Labeled by ann (40), bob (20)" in fragment
    assert "Relative weight change per block" in fragment or "weight change" in fragment
    assert len(_images(fragment)) == 2  # per class and split; weight change


def test_corrected_parts_are_the_ones_whose_verdict_differs(project_dir: Path, html: str):
    with Project.open(project_dir) as project:
        v1, v2 = project.model("v1"), project.model("v2")
        fixed = broke = 0
        for record, label in project.labeled(split="val"):
            score = project.load_image(record.id).mean() / 255
            defect = label.verdict != "ok"
            right_new, right_old = (score >= v2.threshold) == defect, (score >= v1.threshold) == defect
            fixed += right_new and not right_old
            broke += right_old and not right_new
    assert v2.threshold != v1.threshold and fixed + broke > 0
    fragment = _section(html, "What got corrected")
    assert f"judges <b>{fixed}</b> correctly that v1 got wrong, and <b>{broke}</b> wrongly" in fragment
    assert len(_images(fragment)) == min(fixed, 8) + min(broke, 8)  # a thumbnail with heatmap per part


def test_costs_label_the_energy_as_an_estimate(html: str):
    fragment = _section(html, "What it costs")
    assert "about 1.7 Wh = assumed TDP 65 W x training time" in fragment and "estimate" in fragment
    assert re.search(r"\d+\.\d ms \(median, 1 thread", fragment)
    assert re.search(r"\d+ kB \(model.onnx\)", fragment) and "CPU (2 cores)" in fragment


def test_operating_point_histogram_and_confusion_agree_with_the_parts(project_dir: Path, html: str):
    with Project.open(project_dir) as project:
        v2 = project.model("v2")
        truth, scores = [], []
        for record, label in project.labeled(split="val"):
            truth.append(label.verdict != "ok")
            scores.append(project.load_image(record.id).mean() / 255)
    truth, scores = np.array(truth), np.array(scores)
    catch = np.mean(scores[truth] >= v2.threshold)
    fr = np.mean(scores[~truth] >= v2.threshold)
    assert f"Measured now at the stored threshold: catch {catch:.1%}" in html
    assert f"false reject {fr:.1%}" in html
    op = _section(html, "Operating point")
    assert f"{v2.metrics['catch_rate']:.1%} (95% CI" in op and f"{v2.metrics['false_reject_rate']:.1%} (95% CI" in op
    # Few held-out OK parts: the report says one of them set the threshold.
    from app.core.operating_point import single_part_note

    note = single_part_note(v2.metrics["n_ok_heldout"], v2.metrics["false_reject_target"])
    assert note is not None and "so that one part decides it" in op


def test_without_a_learning_curve_or_weight_change_it_says_so(project_dir: Path):
    with Project.open(project_dir) as project:
        v1 = project.model("v1")
        html = report_mod._Report(project, v1, None).build()  # stored figures only
    assert "Relative weight change per block" in html  # v1 has one
    assert "Not measured for this version: the trainer recorded no learning curve" in html
    assert "This version has not been through the deploy gate" not in html  # v1 was deployed: gate ran
    assert "No validation parts could be measured." in html


def test_learning_curve_is_drawn_when_recorded(project_dir: Path):
    with Project.open(project_dir) as project:
        v2 = project.model("v2")
        curve = [{"fraction": f, "auroc": 0.8 + f / 10, "catch_rate": 0.5 + f / 3} for f in (0.25, 0.5, 1.0)]
        model = type(v2)(**{**v2.__dict__, "report": {**v2.report, "learning_curve": curve}})
        html = report_mod._Report(project, model, None).build()
    fragment = _section(html, "What less data would give")
    assert len(_images(fragment)) == 1 and "<td>25%</td>" in fragment


def test_the_report_names_the_ok_parts_that_placed_the_threshold(project_dir: Path):
    with Project.open(project_dir) as project:
        v2 = project.model("v2")
        parts = [{"image_id": 1, "filename": "cam1-000481.png", "score": 0.77, "rejected": False},
                 {"image_id": 2, "filename": "cam1-000107.png", "score": 0.04, "rejected": False}]
        model = type(v2)(**{**v2.__dict__, "metrics": {**v2.metrics, "highest_ok_parts": parts}})
        html = report_mod._Report(project, model, None).build()
    op = _section(html, "Operating point")
    assert "Highest-scoring held-out OK parts: cam1-000481.png (0.770), cam1-000107.png (0.040)." in op


def test_roc_curve_matches_auroc():
    from app.core.evaluation import auroc

    rng = np.random.default_rng(0)
    labels = np.r_[np.zeros(200, bool), np.ones(50, bool)]
    scores = np.r_[rng.beta(2, 5, 200), rng.beta(5, 2, 50)]
    fpr, tpr = report_mod.roc_curve(labels, scores)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(labels.astype(int), scores), abs=1e-9)


def test_baseline_roc_stored_at_training_time_is_drawn_beside_the_model(project_dir: Path):
    from training.comparisons import roc_points

    rng = np.random.default_rng(1)
    labels = np.r_[np.zeros(300, bool), np.ones(80, bool)]
    scores = np.r_[rng.normal(0, 1, 300), rng.normal(1, 1, 80)]
    roc = roc_points(labels, scores)
    from app.core.evaluation import auroc

    # Thinned to at most 200 points, the curve still has the baseline's area under it.
    assert len(roc["catch"]) <= 200 and roc["false_reject"][0] == 0 and roc["catch"][-1] == 1
    assert np.trapezoid(roc["catch"], roc["false_reject"]) == pytest.approx(auroc(labels.astype(int), scores),
                                                                            abs=0.01)
    with Project.open(project_dir) as project:
        v2 = project.model("v2")
        base = {**v2.report["baseline_on_same_val"], "roc": roc}
        model = type(v2)(**{**v2.__dict__, "report": {**v2.report, "baseline_on_same_val": base}})
        measured = report_mod.measure(project, v2)
        with_roc = _section(report_mod._Report(project, model, measured).build(), "Is it better than simple?")
        without = _section(report_mod._Report(project, v2, measured).build(), "Is it better than simple?")
    assert "was stored at training time" in with_roc and "is not drawn" in without
    assert len(_images(with_roc)) == len(_images(without)) == 1  # one ROC chart, one more curve on it
    assert not np.array_equal(_images(with_roc)[0], _images(without)[0])


def test_per_source_and_day_rows_add_up_to_the_measured_parts(project_dir: Path):
    with Project.open(project_dir) as project:
        v2 = project.model("v2")
        measured = report_mod.measure(project, v2)
        html = report_mod._Report(project, v2, measured).build()
        sources = {r.source for r, _t, _v in measured.val}
    fragment = _section(html, "Per source, lighting and day")
    rows = re.findall(r"<tr><td>(source|day captured)</td><td>([^<]*)</td><td>([^<]*)</td><td>([^<]*)</td></tr>",
                      fragment)
    assert {g for kind, g, *_ in rows if kind == "source"} == sources
    defects = [t != "ok" for _r, t, _v in measured.val]
    caught = sum(v.score >= v2.threshold for (_r, t, v) in measured.val if t != "ok")
    for kind in ("source", "day captured"):
        totals = [re.match(r"(\d+)/(\d+)", c).groups() for k, _g, c, _f in rows if k == kind and c != "-"]
        assert sum(int(n) for n, _ in totals) == caught and sum(int(d) for _, d in totals) == sum(defects)
    assert "lighting tag" not in fragment  # nobody tagged lighting here: no empty rows


def test_cli_writes_html_and_a_pdf(project_dir: Path, tmp_path: Path, capsys):
    pytest.importorskip("PySide6")
    out_html, out_pdf = tmp_path / "v2.html", tmp_path / "v2.pdf"
    assert main(["report", str(project_dir), "v2", "--html", str(out_html), "--pdf", str(out_pdf)]) == 0
    printed = capsys.readouterr().out
    pages = int(re.search(r"\((\d+) pages\)", printed).group(1))
    assert out_html.read_text().startswith("<html>") and pages >= 3
    data = out_pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.count(b"/Type /Page\n") + data.count(b"/Type /Page ") \
        + data.count(b"/Type /Page>") + data.count(b"/Type/Page") >= 1
    assert data.count(b"/Subtype /Image") >= 10  # the charts made it into the PDF


def test_cli_report_needs_an_output(project_dir: Path, capsys):
    assert main(["report", str(project_dir), "v2"]) == 2
    assert "--html OUT.html" in capsys.readouterr().err


@pytest.mark.parametrize("part_statistics", [True, False])
def test_a_good_only_model_says_how_it_scores(project_dir: Path, part_statistics: bool):
    with Project.open(project_dir) as project:
        v2 = project.model("v2")
        bank = {"entries": 16384, "bytes": 22609920, "part_statistics": part_statistics}
        if part_statistics:
            bank["part_shrinkage"] = 0.0231
        report = {**v2.report, "mode": "good-only", "mode_reason": "good-only (asked for)", "bank": bank}
        model = type(v2)(**{**v2.__dict__, "report": report})
        html = report_mod._Report(project, model, None).build()
    trained_on = _section(html, "What it was trained on")
    assert "nearest of 16,384 OK patches kept in its memory bank (22.6 MB)" in trained_on
    assert ("how unusual the part is as a whole" in trained_on) is part_statistics
    assert ("covariance shrinkage 0.02" in trained_on) is part_statistics
