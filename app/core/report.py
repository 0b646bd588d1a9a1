"""The model report: what a quality manager asks before a model decides about parts.

One HTML page per model version, from what the trainer stored (the model's metrics and
report dicts) and from measurements made now on the project's own parts: the model and
the production model it was judged beside are run again on the version's validation
parts (its training_set.json) to draw score histograms, ROC curves, the confusion
matrix, the parts whose verdict changed, the inference time, and the train/validation
gap. Charts are drawn with OpenCV and embedded as PNG data URIs, so the file is one
self-contained page; app/ui/models/report_pdf.py prints it to PDF with Qt.

Every figure says where it comes from; what was not recorded is said to be missing,
not guessed.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.core.charts import (
    bar_chart,
    histogram_chart,
    interval_chart,
    line_chart,
    matrix_chart,
    png_data_uri,
    roc_chart,
    roc_curve,
    thumbnail,
)
from app.core.errors import BadImageError, LinesideError
from app.core.evaluation import auroc, rate_interval
from app.core.operating_point import highest_ok_text, single_part_note, threshold_text
from app.core.records import OK

if TYPE_CHECKING:
    from app.core.project import Project
    from app.core.records import ModelVersion

MAX_VAL_PARTS = 400  # validation parts re-measured (all of them on most projects)
MAX_TRAIN_PARTS = 150  # training parts measured for the train/validation gap
MAX_THUMBNAILS = 8  # per direction in "what got corrected"
LATENCY_PARTS = 20
# Assumed power draw for the energy estimate when the project sets no `tdp_watts`.
DEFAULT_TDP_W = {"cpu": 65.0, "gpu": 300.0}
GAP_WARNING = 0.10  # train catch more than 10 points above validation: it may have memorised
GAP_LOSS_RATIO = 2.0

# -- measurements on the project's own parts -------------------------------------------------------


@dataclass
class _Measured:
    val: list = field(default_factory=list)  # (record, truth, verdict)
    prod: list = field(default_factory=list)  # production Verdicts on the same parts (or [])
    prod_model: "ModelVersion | None" = None
    train: list = field(default_factory=list)  # (truth, score)
    latency_ms: float | None = None
    prod_latency_ms: float | None = None
    skipped: int = 0
    note: str = ""


def _training_set(model: "ModelVersion") -> dict | None:
    try:
        return json.loads((model.path / "training_set.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _spread(items: list, n: int) -> list:
    """At most *n* items spread evenly over *items* (the same ones every time)."""
    if len(items) <= n:
        return list(items)
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, n).round()]


def _comparison_model(project: "Project", model: "ModelVersion") -> "ModelVersion | None":
    """The production model this version was judged beside when it was trained; else today's."""
    stored = (model.report.get("production_on_same_val") or {}).get("version")
    for version in (stored, getattr(project.production_model(), "version", None)):
        if version and version != model.version:
            try:
                other = project.model(version)
            except LinesideError:
                continue
            if other.onnx_path.is_file():
                return other
    return None


def measure(project: "Project", model: "ModelVersion") -> _Measured:
    """Run the model (and its production comparison) again on its validation parts."""
    from app.core.runtime import Inspector

    out = _Measured()
    labeled = project.labeled()
    by_sha = {record.sha256: (record, label.verdict) for record, label in labeled}
    chosen = _training_set(model)
    if chosen is not None:
        val = [by_sha[s] for s in chosen.get("val", []) if s in by_sha]
        train = [by_sha[s] for s in chosen.get("train", []) if s in by_sha]
        out.note = "its validation parts (training_set.json) with their current labels"
    else:
        val = [(r, l.verdict) for r, l in labeled if r.split == "val"]
        train = [(r, l.verdict) for r, l in labeled if r.split == "train"]
        out.note = "the project's validation split today (this version kept no training_set.json)"
    if not model.onnx_path.is_file():
        out.note = f"{model.onnx_path} is missing: nothing could be measured"
        return out
    inspector = Inspector(model.onnx_path, threads=1, threshold=model.threshold)
    out.prod_model = _comparison_model(project, model)
    prod = Inspector(out.prod_model.onnx_path, threads=1, threshold=out.prod_model.threshold) \
        if out.prod_model else None
    latencies, prod_latencies = [], []
    for record, truth in _spread(val, MAX_VAL_PARTS):
        try:
            image = project.load_image(record.id)
        except BadImageError:
            out.skipped += 1
            continue
        verdict = inspector.inspect(image)
        if len(latencies) < LATENCY_PARTS + 1:
            latencies.append(verdict.latency_ms)
        out.val.append((record, truth, verdict))
        if prod is not None:
            out.prod.append(prod.inspect(image))
            if len(prod_latencies) < LATENCY_PARTS + 1:
                prod_latencies.append(out.prod[-1].latency_ms)
    if len(latencies) > 1:  # the first run allocates: left out
        out.latency_ms = float(np.median(latencies[1:]))
    if len(prod_latencies) > 1:
        out.prod_latency_ms = float(np.median(prod_latencies[1:]))
    for record, truth in _spread(train, MAX_TRAIN_PARTS):
        try:
            out.train.append((truth, float(inspector.inspect(project.load_image(record.id)).score)))
        except BadImageError:
            out.skipped += 1
    return out


# -- the HTML --------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value))


def _pct(value: float | None, ci: list | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" + (f" (95% CI {ci[0]:.1%}-{ci[1]:.1%})" if ci else "")


def _num(value, fmt: str = "{:.3f}") -> str:
    return "-" if value is None or isinstance(value, str) else fmt.format(value)


def _img(image: np.ndarray, width: int | None = None) -> str:
    w = width or min(640, image.shape[1])
    return f'<p><img src="{png_data_uri(image)}" width="{w}"></p>'


def _table(header: list[str] | None, rows: list[list[str]]) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table border="1" cellspacing="0" cellpadding="4">{head}{body}</table>'


def _missing(text: str) -> str:
    return f'<p class="missing"><i>{_e(text)}</i></p>'


_STYLE = """
body { font-family: sans-serif; font-size: 10pt; color: #222; }
h1 { font-size: 18pt; } h2 { font-size: 13pt; margin-top: 18px; border-bottom: 1px solid #999; }
th { background: #eee; text-align: left; } td, th { font-size: 9pt; }
.warn { color: #b00; font-weight: bold; } .ok { color: #070; } .missing { color: #666; }
.small { font-size: 8pt; color: #555; }
"""


class _Report:
    def __init__(self, project: "Project", model: "ModelVersion", measured: _Measured | None) -> None:
        self.project, self.model, self.m = project, model, measured
        self.metrics, self.report = model.metrics, model.report
        self.parts: list[str] = []
        if measured is not None and measured.val:
            self.truth = np.array([t != OK for _, t, _ in measured.val])
            self.scores = np.array([v.score for _, _, v in measured.val])
        else:
            self.truth = self.scores = np.array([])

    def add(self, text: str) -> None:
        self.parts.append(text)

    def build(self) -> str:
        m = self.model
        name = self.project.name
        self.add(f"<h1>Model report: {_e(name)} {_e(m.version)}</h1>")
        created = m.created_at.astimezone().strftime("%Y-%m-%d %H:%M")
        mode = self.report.get("mode") or self.metrics.get("mode") or "not recorded"
        measured = f"{self.m.note}, {len(self.m.val)} parts" if self.m else "nothing (measurements skipped)"
        self.add(f"<p>Status <b>{_e(m.status)}</b>, registered {created}, mode <b>{_e(mode)}</b>, "
                 f"threshold {threshold_text(m.threshold, 4)}. Report written {datetime.now().astimezone():%Y-%m-%d %H:%M}; "
                 f"re-measured now on {_e(measured)}.</p>")
        for section in (self.gate, self.trained_on, self.less_data, self.corrected, self.costs, self.baseline,
                        self.operating_point, self.histograms, self.confusion, self.per_class, self.per_source,
                        self.gap, self.audit_sampling):
            section()
        return (f"<html><head><meta charset='utf-8'><title>{_e(name)} {_e(m.version)}</title>"
                f"<style>{_STYLE}</style></head><body>{''.join(self.parts)}</body></html>")

    # -- sections ----------------------------------------------------------------------------

    def gate(self) -> None:
        gate = self.report.get("deploy_gate")
        self.add("<h2>Deploy gate (golden set)</h2>")
        if not gate:
            self.add(_missing("This version has not been through the deploy gate."))
            return
        verdict = "passed" if gate.get("passed") else "REFUSED"
        cls = "ok" if gate.get("passed") else "warn"
        text = (f"<p class='{cls}'>Gate {verdict} on {gate.get('n_golden', 0)} golden parts "
                f"({gate.get('n_ok', 0)} OK, {gate.get('n_defect', 0)} defective), checked {_e(_when(gate.get('checked_at')))}"
                f"{' against ' + _e(gate['production']) if gate.get('production') else ''}.</p>")
        for reason in gate.get("reasons", []):
            text += f"<p class='warn'>{_e(m_version(self.model))} {_e(reason)}</p>"
        if gate.get("override"):
            o = gate["override"]
            text += f"<p class='warn'>Overridden by {_e(o.get('by') or 'the single user')}: {_e(o.get('reason'))}</p>"
        if gate.get("note"):
            text += _missing(gate["note"])
        self.add(text)

    def trained_on(self) -> None:
        r = self.report
        self.add("<h2>What it was trained on</h2>")
        reason = str(r.get("mode_reason") or "")
        reason = reason.split(":", 1)[1].strip() if reason.startswith(f"{r.get('mode')}:") else reason
        self.add(f"<p>Mode <b>{_e(r.get('mode', '-'))}</b>{': ' + _e(reason) if reason else ''}. "
                 f"{r.get('n_train', '-')} training and {r.get('n_val', '-')} validation parts"
                 f"{', trained tile by tile' if r.get('tiling') else ''}; trained {_e(_when(r.get('trained_at')))} "
                 f"on {_e(r.get('host', '-'))}.</p>")
        bank = r.get("bank")
        if r.get("mode") == "good-only" and isinstance(bank, dict) and bank.get("entries"):
            self.add(_how_good_only_scores(bank))
        per_class = r.get("per_class") or {}
        if per_class:
            names = list(per_class)
            self.add(_table(["class", "train", "validation"],
                            [[_e(n), str(per_class[n].get("train", 0)), str(per_class[n].get("val", 0))] for n in names]))
            self.add(_img(bar_chart(names, {"train": [per_class[n].get("train", 0) for n in names],
                                            "validation": [per_class[n].get("val", 0) for n in names]},
                                    "Images per class and split", "images")))
        else:
            self.add(_missing("Images per class: not recorded."))
        self.add(self._labelers())
        changes = r.get("changes") or []
        if changes:
            self.add("<p>Changes since the previous version: " + "; ".join(_e(c) for c in changes) + ".</p>")
        for shortfall in r.get("shortfalls") or []:
            self.add(f"<p class='warn'>Data shortfall: {_e(shortfall)}</p>")
        change = r.get("weight_change")
        if isinstance(change, dict) and change:
            blocks = list(change)
            self.add("<p>Relative weight change per block: how far training moved each part of the network "
                     "from its pretrained weights (|w - w0| / |w0|; 0 = untouched, large = relearned).</p>")
            self.add(_img(bar_chart(blocks, {"relative change": [float(change[b]) for b in blocks]},
                                    "Relative weight change per block", "|w - w0| / |w0|")))
        else:
            self.add(_missing("Relative weight change per block: not recorded "
                              + ("(a good-only model keeps its pretrained backbone)."
                                 if r.get("mode") == "good-only" else "for this version.")))

    def _labelers(self) -> str:
        chosen = _training_set(self.model)
        shas = set(chosen.get("train", []) + chosen.get("val", [])) if chosen else None
        authors: dict[str, int] = {}
        dates = []
        for record, label in self.project.labeled():
            if (shas is not None and record.sha256 not in shas) or (shas is None and record.split not in ("train", "val")):
                continue
            authors[label.author or "(unnamed)"] = authors.get(label.author or "(unnamed)", 0) + 1
            dates.append(label.created_at)
        if not authors:
            return _missing("Labelers: none of its parts are still labeled in the project.")
        who = ", ".join(f"{_e(a)} ({n})" for a, n in sorted(authors.items(), key=lambda kv: -kv[1]))
        return (f"<p>Labeled by {who}, between {min(dates).astimezone():%Y-%m-%d} and "
                f"{max(dates).astimezone():%Y-%m-%d} (the current labels of its parts).</p>")

    def less_data(self) -> None:
        self.add("<h2>What less data would give</h2>")
        curve = self.report.get("learning_curve")
        note = self.report.get("learning_curve_note")
        if not curve and note:
            self.add(_missing(f"Learning curve {note}."))
            return
        if not curve:
            self.add(_missing("Not measured for this version: the trainer recorded no learning curve "
                              "(training on a share of the data and measuring each). The benchmark "
                              "results of the project (benchmarks/results) hold one for the magnetic-tile data."))
            return
        fractions = [float(p.get("fraction", 0)) for p in curve]
        series = {key: [p.get(key) for p in curve] for key in ("auroc", "catch_rate", "catch_at_1pct_false_reject")
                  if any(p.get(key) is not None for p in curve)}
        self.add(_img(line_chart(fractions, series, "Learning curve", "share of the training data", "",
                                 x_format="{:.0%}")))
        self.add(_table(["share of data", *series],
                        [[f"{f:.0%}", *(_num(series[k][i]) for k in series)] for i, f in enumerate(fractions)]))
        if any("n_train_parts" in p for p in curve):
            seconds = self.report.get("learning_curve_s")
            self.add("<p class='small'>How the points are made: the same training recipe re-fitted on a share of "
                     "the training parts (the same share of each class), from the frozen-layer features the full "
                     "run had already computed, for as many epochs as the full run took; each measured on the same "
                     "validation parts, catch at the target false-reject rate with the threshold set on the "
                     "validation OK parts. 100 % is this model on the same parts"
                     + (f"; the re-fits took {float(seconds):.0f} s, after the model was handed over" if seconds is not None
                        else "")
                     + ".</p>")

    def corrected(self) -> None:
        self.add("<h2>What got corrected</h2>")
        m = self.m
        if m is None or not m.val:
            self.add(_missing("No validation parts could be measured."))
            return
        if m.prod_model is None:
            self.add(_missing("There was no production model to compare with: every verdict is new."))
            return
        pm = m.prod_model
        fixed, broke = [], []
        for (record, truth, new), old in zip(m.val, m.prod):
            defect = truth != OK
            new_right, old_right = (not new.passed) == defect, (not old.passed) == defect
            if new_right and not old_right:
                fixed.append((record, truth, new, old))
            elif old_right and not new_right:
                broke.append((record, truth, new, old))
        self.add(f"<p>On {len(m.val)} validation parts, {self.model.version} judges <b>{len(fixed)}</b> correctly "
                 f"that {pm.version} got wrong, and <b>{len(broke)}</b> wrongly that {pm.version} got right "
                 f"(each model at its own threshold: {threshold_text(self.model.threshold)} and {threshold_text(pm.threshold)}). "
                 "The heatmap shows where the new model sees a defect.</p>")
        for title, items in ((f"Now right (wrong with {pm.version})", fixed),
                             (f"Now wrong (right with {pm.version})", broke)):
            self.add(f"<p><b>{_e(title)}</b>: {len(items)}"
                     f"{f', the first {MAX_THUMBNAILS} shown' if len(items) > MAX_THUMBNAILS else ''}</p>")
            if items:
                self.add(self._thumbs(items[:MAX_THUMBNAILS], pm.version))

    def _thumbs(self, items: list, old_version: str) -> str:
        cells = []
        for record, truth, new, old in items:
            image = self.project.load_image(record.id)
            thumb = thumbnail(image, new.heatmap_on_image())
            cells.append(f"<td>{_img(thumb, thumb.shape[1])}<br><span class='small'>image {record.id}: "
                         f"{_e(truth)}<br>{self.model.version} {new.label} {new.score:.3f}, "
                         f"{_e(old_version)} {old.label} {old.score:.3f}</span></td>")
        rows = ["<tr>" + "".join(cells[i:i + 4]) + "</tr>" for i in range(0, len(cells), 4)]
        return f'<table cellpadding="4">{"".join(rows)}</table>'

    def costs(self) -> None:
        r = self.report
        self.add("<h2>What it costs</h2>")
        elapsed, device = r.get("elapsed_s"), str(r.get("device") or "")
        rows = [["training time", f"{elapsed:.0f} s ({elapsed / 60:.1f} min)" if elapsed else "not recorded"],
                ["device", _e(device or "not recorded")]]
        if elapsed:
            kind = "gpu" if device.upper().startswith("GPU") else "cpu"
            tdp = float(self.project.get_setting("tdp_watts") or DEFAULT_TDP_W[kind])
            rows.append(["energy (estimate)", f"about {tdp * elapsed / 3600:.1f} Wh = assumed TDP {tdp:.0f} W x "
                         f"training time (<i>an estimate: set the project setting tdp_watts for this PC</i>)"])
        latency = self.m.latency_ms if self.m else None
        rows.append(["inference per part", f"{latency:.1f} ms (median, 1 thread, measured now on this PC)"
                     if latency else "not measured"])
        size = self.model.onnx_path.stat().st_size if self.model.onnx_path.is_file() else None
        rows.append(["model size", f"{_size(size)} (model.onnx)" if size else "model.onnx missing"])
        if r.get("epochs_run"):
            rows.append(["epochs", f"{r['epochs_run']}{' (stopped early)' if r.get('stopped_early') else ''}"])
        self.add(_table(None, rows))
        if latency:
            names, values = [f"{self.model.version} (this model)"], [latency]
            if self.m.prod_latency_ms:
                names.append(f"{self.m.prod_model.version} (production)")
                values.append(self.m.prod_latency_ms)
            self.add(_img(bar_chart(names, {"ms per part": values}, "Inference time per part (median, 1 thread, "
                                    "measured now)", "ms")))

    def baseline(self) -> None:
        self.add("<h2>Is it better than simple?</h2>")
        base = self.report.get("baseline_on_same_val")
        prod = self.report.get("production_on_same_val")
        # A good-only model's own figures span every OK part (out-of-fold); the row beside the
        # baseline is on the baseline's parts where the trainer stored that.
        own = self.report.get("model_on_same_val") or self.metrics
        rows = [[f"<b>{_e(self.model.version)}</b> (this model)", _num(own.get("auroc")),
                 _pct(own.get("catch_at_1pct_false_reject"))]]
        if base:
            rows.append([f"baseline: {_e(base.get('method', ''))}", _num(base.get("auroc")),
                         _pct(base.get("catch_at_1pct_false_reject"))])
        if prod and not prod.get("error"):
            rows.append([f"{_e(prod.get('version'))} (production then)", _num(prod.get("auroc")), "-"])
        self.add(_table(["method, on the same validation parts", "AUROC", "catch at 1% false reject (best case)"],
                        rows))
        if not base:
            self.add(_missing("The baseline was not measured (it needs OK and defective parts on both sides)."))
        curves = {}
        if len(self.scores) and self.truth.any() and (~self.truth).any():
            curves[f"{self.model.version} (AUROC {auroc(self.truth.astype(int), self.scores):.3f})"] = \
                roc_curve(self.truth, self.scores)
            if self.m.prod:
                prod_scores = np.array([v.score for v in self.m.prod])
                curves[f"{self.m.prod_model.version} (AUROC {auroc(self.truth.astype(int), prod_scores):.3f})"] = \
                    roc_curve(self.truth, prod_scores)
            roc = (base or {}).get("roc")
            if roc and roc.get("false_reject"):
                curves[f"baseline (AUROC {float(base.get('auroc') or 0):.3f}, at training time)"] = (
                    np.asarray(roc["false_reject"], float), np.asarray(roc["catch"], float))
            fr = float(np.mean(self.scores[~self.truth] >= self.model.threshold))
            catch = float(np.mean(self.scores[self.truth] >= self.model.threshold))
            self.add(_img(roc_chart(curves, "ROC on the validation parts", (fr, catch)), 560))
            self.add("<p class='small'>The models' curves are measured now; the baseline's "
                     + ("was stored at training time, on the same parts." if roc else
                        "was not stored by this version's trainer, so it is not drawn; its figures above "
                        "were measured on the same parts at training time.") + "</p>")
        else:
            self.add(_missing("ROC: needs OK and defective validation parts."))

    def operating_point(self) -> None:
        mt = self.metrics
        self.add("<h2>Operating point (the stored threshold)</h2>")
        if "false_reject_rate" not in mt:
            self.add(_missing("Not recorded for this version."))
            return
        self.add(f"<p>Threshold <b>{threshold_text(mt.get('threshold', self.model.threshold), 4)}</b>, set on "
                 f"{_e(mt.get('threshold_source', 'held-out OK parts'))} for a target false-reject rate of "
                 f"{_pct(mt.get('false_reject_target'))}.</p>")
        note = single_part_note(int(mt.get("n_ok_heldout") or 0), float(mt.get("false_reject_target") or 0.01))
        if note:
            self.add(f"<p>{_e(note)}</p>")
        if highest := highest_ok_text(mt.get("highest_ok_parts") or []):
            self.add(f"<p>{_e(highest)}</p>")
        self.add(_table(["", "rate", "on"], [
            ["catch (defective parts failed)", _pct(mt.get("catch_rate"), mt.get("catch_rate_ci")),
             f"{mt.get('n_defect_heldout', '-')} held-out defective parts"],
            ["false reject (OK parts failed), expected", _pct(mt.get("false_reject_rate"), mt.get("false_reject_rate_ci")),
             f"{mt.get('n_ok_heldout', '-')} held-out OK parts"],
        ]))
        rows = []
        if mt.get("catch_rate") is not None:
            rows.append(("catch", mt["catch_rate"], mt.get("catch_rate_ci"), None))
        rows.append(("false reject", mt["false_reject_rate"], mt.get("false_reject_rate_ci"),
                     mt.get("false_reject_target")))
        self.add(_img(interval_chart(rows, "Catch and false reject with 95 % intervals")))
        if mt.get("catch_at_1pct_false_reject") is not None:
            self.add(f"<p class='small'>Best case, with a threshold picked on the very parts measured: catch "
                     f"{_pct(mt['catch_at_1pct_false_reject'])} at 1 % false reject. The line gets the figures above.</p>")

    def histograms(self) -> None:
        self.add("<h2>Scores of OK and defective validation parts</h2>")
        if not len(self.scores):
            self.add(_missing("No validation parts could be measured."))
            return
        self.add(_img(histogram_chart(self.scores[~self.truth], self.scores[self.truth], self.model.threshold,
                                      f"{self.model.version} scores on validation parts (measured now)")))
        ok, bad = self.scores[~self.truth], self.scores[self.truth]
        fr = np.mean(ok >= self.model.threshold) if len(ok) else None
        catch = np.mean(bad >= self.model.threshold) if len(bad) else None
        self.add(f"<p>Measured now at the stored threshold: catch {_pct(catch, _ci(bad, self.model.threshold))}, "
                 f"false reject {_pct(fr, _ci(ok, self.model.threshold))}.</p>")

    def audit_sampling(self) -> None:
        """Escapes: sampled PASS parts at the line that people labeled defective."""
        from app.core.audit_sampling import escapes

        self.add("<h2>Audit sampling at the line (escapes)</h2>")
        found = escapes(self.project, self.model.version)
        share = f"1 in {round(1 / found['rate'])}" if found["rate"] else "none (audit sampling is off)"
        if not found["sampled"]:
            self.add(_missing(f"No PASS part of {self.model.version} has been sampled yet (sampling: {share} "
                              "of the parts it passes go to the labeling queue)."))
            return
        verb = "was" if found["escapes"] == 1 else "were"
        text = (f"<p>{found['sampled']} PASS parts sampled at the line ({share}), {found['labeled']} labeled by a "
                f"person so far; {found['escapes']} {verb} defective: parts this model let through.</p>")
        if found["labeled"]:
            lo, hi = rate_interval(found["escapes"], found["labeled"])
            text += (f"<p class='small'>Share of passed parts that were defective: "
                     f"{found['escapes'] / found['labeled']:.1%} (95 % CI {lo:.1%}-{hi:.1%}).</p>")
        self.add(text)

    def confusion(self) -> None:
        self.add("<h2>Confusion matrix (validation parts, stored threshold)</h2>")
        if not len(self.scores):
            self.add(_missing("No validation parts could be measured."))
            return
        truths = sorted({t for _, t, _ in self.m.val}, key=lambda n: (n != OK, n))
        names = [n for n in self.report.get("per_class", {}) if n != OK] or [t for t in truths if t != OK]
        supervised = (self.report.get("mode") or self.metrics.get("mode")) != "good-only" and bool(
            self.m.val[0][2].class_probs)
        cols = ["PASS", *(names if supervised else ["FAIL"])]
        matrix = np.zeros((len(truths), len(cols)), int)
        for _, truth, v in self.m.val:
            if v.passed:
                j = 0
            elif supervised and v.defect_class in cols:
                j = cols.index(v.defect_class)
            else:
                j = cols.index("FAIL") if "FAIL" in cols else 1
            matrix[truths.index(truth), j] += 1
        self.add(_img(matrix_chart(matrix, truths, cols, "true class (rows) vs what the model says (columns)"),
                      min(640, 190 + 130 * len(cols))))

    def per_class(self) -> None:
        self.add("<h2>Catch per defect class</h2>")
        per = self.metrics.get("per_class") or {}
        if not per:
            self.add(_missing("Not recorded for this version."))
            return
        names = list(per)
        rows = []
        for n in names:
            k, total = round(per[n].get("caught", 0) * per[n].get("n", 0)), per[n].get("n", 0)
            ci = list(rate_interval(k, total)) if total else None
            rows.append([_e(n), str(total), _pct(per[n].get("caught"), ci),
                         _pct(per[n].get("class_correct")) if "class_correct" in per[n] else "-"])
        self.add(_table(["class", "held-out parts", "caught", "right class named"], rows))
        self.add(_img(bar_chart(names, {"caught": [per[n].get("caught") for n in names]},
                                "Share of each defect class caught (held-out, at training)", "caught",
                                percent=True, y_max=1.0)))

    def per_source(self) -> None:
        """Catch and false reject per capture source, lighting tag and day: a camera or a
        shift the model serves worse shows up here, not in the overall figure."""
        self.add("<h2>Per source, lighting and day</h2>")
        m = self.m
        if m is None or not m.val:
            self.add(_missing("No validation parts could be measured now."))
            return
        groupings = {"source": lambda r: r.source or "-",
                     "lighting tag": lambda r: (r.tags or {}).get("lighting"),
                     "day captured": lambda r: f"{r.captured_at.astimezone():%Y-%m-%d}" if r.captured_at else None}
        rows = []
        for kind, key_of in groupings.items():
            groups: dict[str, list] = {}
            for record, truth, verdict in m.val:
                key = key_of(record)
                if key is not None:
                    groups.setdefault(str(key), []).append((truth != OK, verdict.score >= self.model.threshold))
            if kind == "lighting tag" and not groups:
                continue  # nobody tags lighting on this project
            for key, parts in sorted(groups.items()):
                defects = [failed for is_defect, failed in parts if is_defect]
                oks = [failed for is_defect, failed in parts if not is_defect]
                catch = (f"{sum(defects)}/{len(defects)} = "
                         + _pct(sum(defects) / len(defects), list(rate_interval(sum(defects), len(defects))))
                         if defects else "-")
                fr = (f"{sum(oks)}/{len(oks)} = " + _pct(sum(oks) / len(oks), list(rate_interval(sum(oks), len(oks))))
                      if oks else "-")
                rows.append([_e(kind), _e(key), catch, fr])
        self.add(_table(["by", "group", "defects caught (stored threshold)", "OK parts rejected"], rows))

    def gap(self) -> None:
        self.add("<h2>Training vs validation</h2>")
        history = self.report.get("history") or []
        warnings = []
        if history:
            epochs = [h.get("epoch", i + 1) for i, h in enumerate(history)]
            self.add(_img(line_chart(epochs, {"train loss": [h.get("train_loss") for h in history],
                                              "validation loss": [h.get("val_loss") for h in history]},
                                     "Loss per epoch", "epoch", "loss", integer_x=True)))
            last = history[-1]
            if last.get("train_loss") and last.get("val_loss") and \
                    last["val_loss"] > GAP_LOSS_RATIO * last["train_loss"]:
                warnings.append(f"the validation loss ({last['val_loss']:.3f}) is more than {GAP_LOSS_RATIO:g}x the "
                                f"training loss ({last['train_loss']:.3f}) at the last epoch")
        else:
            self.add(_missing("No per-epoch history was recorded (a good-only model learns in one pass)."))
        if self.m and self.m.train and len(self.scores):
            t_truth = np.array([t != OK for t, _ in self.m.train])
            t_scores = np.array([s for _, s in self.m.train])
            thr = self.model.threshold
            rows, rates = [], {}
            for name, truth, scores in (("training parts", t_truth, t_scores), ("validation parts", self.truth,
                                                                                 self.scores)):
                catch = float(np.mean(scores[truth] >= thr)) if truth.any() else None
                fr = float(np.mean(scores[~truth] >= thr)) if (~truth).any() else None
                rates[name] = (catch, fr)
                rows.append([name, str(len(scores)), _pct(catch), _pct(fr)])
            self.add(_table(["measured now on", "parts", "catch", "false reject"], rows))
            (tc, tf), (vc, vf) = rates["training parts"], rates["validation parts"]
            if tc is not None and vc is not None and tc - vc > GAP_WARNING:
                warnings.append(f"it catches {tc:.0%} of training defects but {vc:.0%} of validation ones")
            if tf is not None and vf is not None and vf - tf > GAP_WARNING:
                warnings.append(f"it rejects {vf:.0%} of validation OK parts but {tf:.0%} of training ones")
        if (self.report.get("mode") or "") == "good-only":
            self.add("<p class='small'>A good-only model keeps every OK part it learned from in memory (the "
                     "validation split's too): they score low here by construction. Its threshold and the "
                     "false-reject figures above come from each of them scored out-of-fold, by a bank fitted "
                     "without it.</p>")
        if warnings:
            self.add("<p class='warn'>Warning: the model does much better on what it learned from than on new "
                     "parts (" + "; ".join(_e(w) for w in warnings) + "). It may have memorised its training parts: "
                     "label more varied parts before trusting the validation figures.</p>")
        else:
            self.add("<p class='ok'>No large gap between training and validation.</p>")


def _how_good_only_scores(bank: dict) -> str:
    text = (f"<p>How it scores: every 16-px patch by its distance to the nearest of {int(bank['entries']):,} OK "
            f"patches kept in its memory bank ({_size(int(bank.get('bytes', 0)))})")
    if bank.get("part_statistics"):
        text += (", plus how unusual the part is as a whole: the mean and spread of its patch features against "
                 "the OK parts' (a Gaussian, covariance shrinkage "
                 f"{float(bank.get('part_shrinkage') or 0):.2f}). The heatmap shows the patch evidence; a part "
                 "rejected for its whole surface may show no single hot spot")
    return text + ".</p>"


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def _when(text: object) -> str:
    """An ISO time as local 'YYYY-MM-DD HH:MM', or '-'."""
    try:
        return datetime.fromisoformat(str(text)).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return "-" if text in (None, "") else str(text)


def m_version(model: "ModelVersion") -> str:
    return model.version


def _ci(scores: np.ndarray, threshold: float) -> list[float] | None:
    if not len(scores):
        return None
    return list(rate_interval(int(np.sum(scores >= threshold)), len(scores)))


def build_report(project: "Project", version: str, measure_now: bool = True) -> str:
    """The HTML report of model *version*; *measure_now* False uses the stored figures only."""
    model = project.model(version)
    measured = measure(project, model) if measure_now else None
    return _Report(project, model, measured).build()


def write_report(project: "Project", version: str, out: Path) -> Path:
    from app.core.atomic import write_text

    write_text(Path(out), build_report(project, version))
    return Path(out)
