"""Line speed: where one part's milliseconds go, and how fast the line can judge.

Helpers:
- `single_image_latency`: Inspector vs PyTorch eager on one thread, same parts, taking
  turns (which one goes first alternates per image) so that a busy neighbour on a shared
  machine slows both alike; the first WARMUP parts of each are not counted. Both paths
  do the same work per part: letterbox, network, score, class probabilities, heatmap
  mapped onto the image.
- `batch_throughput`: parts per second through Inspector.inspect_batch.
- `profile_stages`: one part through the Inspector stage by stage (decode, letterbox or
  tiles, session run, verdict, heatmap), `op_profile`: the session run per ONNX node
  type from ONNX Runtime's own profiler (SessionOptions.enable_profiling, JSON trace).
- `render_table` / `write_table`: the markdown of benchmarks/results/latency.md.

Run as a script it profiles the shipped input sizes (224 and 288 px on magnetic-tile
parts, a tiled kolektorsdd model), float and INT8, session options, eager PyTorch and
batch throughput, and writes benchmarks/results/latency.md:

    python benchmarks/latency.py [--work DIR] [--quick]

--work keeps the two trained projects there (trained on first use, ~10 min on 2 cores)
and reuses them on the next run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from app.core.imageio import decode_image, to_bgr8  # noqa: E402
from app.core.preprocess import TileLayout, heatmap_to_image, letterbox  # noqa: E402
from app.core.runtime import Inspector  # noqa: E402

WARMUP = 10
BATCH = 16


@dataclass
class LatencyResult:
    n: int
    ort_ms: list[float]
    torch_ms: list[float]
    max_score_diff: float  # ORT vs eager on the same parts: the export is the same network

    @staticmethod
    def _p(values: list[float], q: float) -> float:
        return float(np.percentile(values, q)) if values else float("nan")

    def row(self, name: str) -> dict:
        values = self.ort_ms if name == "ort" else self.torch_ms
        return {"p50": self._p(values, 50), "p95": self._p(values, 95), "mean": float(np.mean(values))}

    @property
    def speedup_p50(self) -> float:
        return self.row("torch")["p50"] / self.row("ort")["p50"]


def load_eager_network(checkpoint: Path):
    """The trained network in PyTorch, from the checkpoint saved beside the ONNX file."""
    from training.checkpoint import load_network

    return load_network(checkpoint)


def _eager_verdict(net, image: np.ndarray, size: int) -> tuple[float, np.ndarray, np.ndarray]:
    import torch

    square, box = letterbox(to_bgr8(image), size)
    with torch.inference_mode():
        out = net(torch.from_numpy(square[None]))
        score, probs, heat = float(out.score[0]), out.class_probs[0].numpy(), out.heatmap[0].numpy()
    return score, probs, heatmap_to_image(heat, box)  # the heatmap on the part, as the line shows it


def single_image_latency(model_dir: Path, images: list[np.ndarray], onnx_path: Path | None = None) -> LatencyResult:
    """Per-part wall time of Inspector.inspect (+ heatmap on the image) vs the eager
    network, both on one thread. *onnx_path*: another file of the same network (INT8)."""
    import torch

    previous_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        inspector = Inspector(onnx_path or model_dir / "model.onnx", threads=1)
        net = load_eager_network(model_dir / "checkpoint.pt")
        size = inspector.info.input_size
        ort_ms: list[float] = []
        torch_ms: list[float] = []
        diff = 0.0
        sequence = [images[i % len(images)] for i in range(WARMUP)] + list(images)
        for i, image in enumerate(sequence):
            order = ("ort", "torch") if i % 2 == 0 else ("torch", "ort")
            scores = {}
            for which in order:
                start = time.perf_counter()
                if which == "ort":
                    verdict = inspector.inspect(image)
                    verdict.heatmap_on_image()
                    scores[which] = verdict.score
                else:
                    scores[which] = _eager_verdict(net, image, size)[0]
                ms = (time.perf_counter() - start) * 1000.0
                if i >= WARMUP:
                    (ort_ms if which == "ort" else torch_ms).append(ms)
            diff = max(diff, abs(scores["ort"] - scores["torch"]))
    finally:
        torch.set_num_threads(previous_threads)
    return LatencyResult(len(images), ort_ms, torch_ms, diff)


YARDSTICK_FILED_MS = 5.0  # the plain network's session time when the targets were set ("under 5 ms")


def yardstick_onnx(size: int = 224) -> bytes:
    """The targets' yardstick: the plain ImageNet EfficientNet-Lite0 classifier (float input,
    no preprocessing, no heatmap) as one ONNX graph."""
    import io

    import torch

    from training.network import load_pretrained_backbone

    class Classifier(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            x = self.net.stem(x)
            for block in self.net._blocks:
                x = block(x)
            return self.net._fc(self.net.head(x).mean((2, 3)))

    import warnings

    from training.export import OPSET

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice (training/export.py)
        torch.onnx.export(Classifier(load_pretrained_backbone().eval()), torch.zeros(1, 3, size, size), buffer,
                          input_names=["x"], dynamo=False, opset_version=OPSET)
    return buffer.getvalue()


YARD_1, YARD_2 = "yardstick, 1 thread", "yardstick, 2 threads"


def yardstick_latency(line_models: dict[str, Path], images: list[np.ndarray], rounds: int = 3) -> dict[str, dict]:
    """p50 and min ms per part of the yardstick's bare session (1 and 2 threads) and of each
    line model's Inspector on one thread (decoded image to verdict + heatmap on the image),
    taking turns part by part: the machine's speed at this moment divides out of the ratios."""
    import onnxruntime as ort

    def session(threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        return ort.InferenceSession(yardstick_onnx(), options, providers=["CPUExecutionProvider"])

    bare = {YARD_1: session(1), YARD_2: session(2)}
    x = np.random.default_rng(0).random((1, 3, 224, 224), dtype=np.float32)
    inspectors = {name: Inspector(path, threads=1) for name, path in line_models.items()}
    times: dict[str, list[float]] = {name: [] for name in [*bare, *inspectors]}
    sequence = [images[i % len(images)] for i in range(WARMUP)] + list(images) * rounds
    for i, image in enumerate(sequence):
        stamps = []
        for name, yardstick in bare.items():
            start = time.perf_counter()
            yardstick.run(None, {"x": x})
            stamps.append((name, time.perf_counter() - start))
        for name, inspector in inspectors.items():
            start = time.perf_counter()
            inspector.inspect(image).heatmap_on_image()
            stamps.append((name, time.perf_counter() - start))
        if i >= WARMUP:
            for name, seconds in stamps:
                times[name].append(seconds * 1000.0)
    return {name: {"p50": float(np.median(ms)), "min": float(np.min(ms))} for name, ms in times.items()}


def yardstick_lines(yard: dict[str, dict]) -> list[str]:
    one, two = yard[YARD_1]["p50"], yard[YARD_2]["p50"]
    rows = [[name, f"{r['p50']:.2f}", f"{r['min']:.2f}", f"{r['p50'] / one:.2f}",
             f"{YARDSTICK_FILED_MS * r['p50'] / one:.2f}", f"{YARDSTICK_FILED_MS * r['p50'] / two:.2f}"]
            for name, r in yard.items()]
    five = f"{YARDSTICK_FILED_MS:.0f} ms"
    return [*_md(["Configuration", "p50 ms", "min ms", "x yardstick (1 thread)",
                  f"scaled: 1-thread yardstick = {five}", f"scaled: 2-thread yardstick = {five}"], rows), "",
            "The yardstick is the plain ImageNet EfficientNet-Lite0 classifier at 224 px, a bare float session "
            "(no letterbox, no heatmap): the network the line-speed targets were set against, which then ran in "
            f"under {five} on this machine (the thread count was not given; ONNX Runtime's default uses both "
            "cores). Each magnetic-tile row is the whole line path on one thread (decoded image to verdict + "
            "heatmap on the image); all rows take turns part by part. The last two columns scale every row to a "
            f"machine on which the yardstick takes {five}, on one thread or on two: estimates of what the targets' "
            "machine would measure, not measurements."]


def batch_throughput(model_path: Path, images: list[np.ndarray], min_images: int = 256,
                     threads: int | None = None, spinning: bool | None = None, lanes: int = 1,
                     line_model=None) -> dict:
    """Parts per second through Inspector.inspect_batch at batch 16 on all cores (or in
    *lanes* one-thread sessions). *line_model*: the model whose gated INT8 file to load as
    the line does (`int8_inspector_for`, with the float re-check) instead of *model_path*."""
    from app.core.runtime import int8_inspector_for

    threads = threads or os.cpu_count() or 1
    inspector = (int8_inspector_for(line_model, threads, lanes) if line_model is not None else
                 Inspector(model_path, threads=threads, spinning=spinning, lanes=lanes))
    batches = [images[i:i + BATCH] for i in range(0, len(images), BATCH)]
    batches = [b for b in batches if len(b) == BATCH] or [images[:BATCH]]
    inspector.inspect_batch(batches[0])  # warm-up, not counted
    done, start = 0, time.perf_counter()
    while done < min_images:
        for batch in batches:
            inspector.inspect_batch(batch)
            done += len(batch)
    seconds = time.perf_counter() - start
    return {"threads": threads, "batch": len(batches[0]), "images": done, "seconds": seconds,
            "images_per_s": done / seconds}


def views_latency(model_path: Path, images: list[np.ndarray], views: int, settings: list[tuple[int, int]],
                  rounds: int = 3) -> dict[tuple[int, int], float]:
    """p50 ms per part of *views* images (one inspect_batch call, as the line judges an
    N-view part), for each (threads, lanes) in *settings*, timed the way `lineside bench`
    times its candidates (taking turns on every part)."""
    from app.cli.speed import Candidate, as_parts, time_candidates

    candidates = {s: Candidate("", s[0], Inspector(model_path, threads=s[0], lanes=s[1]), lanes=s[1])
                  for s in settings}
    time_candidates(list(candidates.values()), as_parts(images, views), rounds)
    return {key: c.ms_per_part for key, c in candidates.items()}


def model_at_size(model_dir: Path, size: int, dest: Path) -> Path:
    """The same trained weights exported at another input side (the network is fully
    convolutional), with the checkpoint beside it: for latency at a stated size."""
    import json
    import shutil

    from training.export import onnx_bytes

    net = load_eager_network(model_dir / "checkpoint.pt")
    meta = json.loads((model_dir / "model.json").read_text())
    meta = {k: v for k, v in meta.items() if k not in ("metrics", "report")} | {"input_size": size}
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "model.onnx").write_bytes(onnx_bytes(net, size, meta))
    shutil.copyfile(model_dir / "checkpoint.pt", dest / "checkpoint.pt")
    return dest


# -- stage and node profiles --------------------------------------------------------------

STAGES = ("decode", "preprocess", "session", "verdict", "heatmap")
STAGE_TITLES = {"decode": "decode (JPEG)", "preprocess": "letterbox / tiles", "session": "session run",
                "verdict": "verdict", "heatmap": "heatmap on image"}


@dataclass
class StageProfile:
    """One configuration's per-part times, stage by stage (ms), and its node-type split."""

    name: str
    precision: str
    threads: int
    inputs_per_part: float
    stages: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in STAGES})
    ops: dict[str, float] = field(default_factory=dict)  # op type -> ms per session run
    notes: str = ""

    def p50(self, stage: str) -> float:
        values = self.stages.get(stage) or []
        return float(np.median(values)) if values else float("nan")

    @property
    def totals(self) -> np.ndarray:
        """Decoded image to verdict + heatmap (decode excluded), per part."""
        return np.sum([self.stages[k] for k in STAGES if k != "decode"], axis=0)

    def total_p50(self) -> float:
        return float(np.median(self.totals))

    def total_p95(self) -> float:
        return float(np.percentile(self.totals, 95))


def profile_stages(inspector: Inspector, encoded: list[bytes], name: str, rounds: int = 3,
                   warmup: int = 3) -> StageProfile:
    """Each part through the Inspector's own steps, timed one by one (one part at a time)."""
    inspector.warmup()
    per_part = []
    result = StageProfile(name, inspector.precision, inspector.threads, 0.0)
    for r in range(rounds):
        for i, data in enumerate(encoded):
            t0 = time.perf_counter()
            image = decode_image(data)
            t1 = time.perf_counter()
            inputs, place = inspector._model_inputs(image)
            t2 = time.perf_counter()
            scores, probs, heat = inspector._run_chunked(inputs)
            t3 = time.perf_counter()
            if isinstance(place, TileLayout):
                verdict = inspector._pooled_verdict(scores, probs, heat, place, 0.0)
            else:
                verdict = inspector._verdict(float(scores[0]), probs[0], heat[0], place, 0.0)
            t4 = time.perf_counter()
            verdict.heatmap_on_image()
            t5 = time.perf_counter()
            if r == 0 and i < warmup:
                continue
            per_part.append(len(inputs))
            for stage, (a, b) in zip(STAGES, [(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]):
                result.stages[stage].append((b - a) * 1000.0)
    result.inputs_per_part = float(np.mean(per_part))
    return result


def parse_profile(trace: Path | str) -> tuple[dict[str, float], int]:
    """ONNX Runtime's JSON trace -> (total ms per op type over all runs, number of runs)."""
    events = json.loads(Path(trace).read_text())
    by_op: dict[str, float] = defaultdict(float)
    runs = 0
    for event in events:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            runs += 1
        elif event.get("cat") == "Node" and str(event.get("name", "")).endswith("_kernel_time"):
            by_op[event.get("args", {}).get("op_name", "?")] += float(event.get("dur", 0)) / 1000.0
    return dict(by_op), runs


def op_profile(model_path: Path, images: list[np.ndarray], threads: int = 1, runs: int = 20) -> dict[str, float]:
    """Milliseconds per session run by ONNX node type, one part per run (all its tiles)."""
    with tempfile.TemporaryDirectory(prefix="lineside-prof-") as tmp:
        inspector = Inspector(model_path, threads=threads, profile_prefix=str(Path(tmp) / "ort"))
        batches = [np.stack(inspector.model_inputs(image)) for image in images[:max(1, runs)]]
        n = 0
        while n < runs:
            for batch in batches:
                inspector._run(batch)
                n += 1
        trace = inspector.end_profiling()
        by_op, counted = parse_profile(trace)
    warm = counted or n  # the first runs are included: a small bias toward allocation, same for all
    return {op: ms / warm for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])}


# -- the results file -----------------------------------------------------------------------

def _fmt(value: float, digits: int = 2) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def stage_table(profiles: list[StageProfile]) -> list[str]:
    head = ["Configuration", "inputs/part", *(STAGE_TITLES[k] for k in STAGES), "**to verdict + heatmap p50**", "p95",
            "min"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for p in profiles:
        cells = [p.name, _fmt(p.inputs_per_part, 1), *(_fmt(p.p50(k)) for k in STAGES),
                 f"**{_fmt(p.total_p50())}**", _fmt(p.total_p95()), _fmt(float(np.min(p.totals)))]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def op_table(profiles: list[StageProfile], top: int = 8) -> list[str]:
    """Node types by share of the session run, one column per configuration."""
    with_ops = [p for p in profiles if p.ops]
    if not with_ops:
        return []
    totals: dict[str, float] = defaultdict(float)
    for p in with_ops:
        for op, ms in p.ops.items():
            totals[op] += ms / max(1e-9, sum(p.ops.values()))
    ops = [op for op, _ in sorted(totals.items(), key=lambda kv: -kv[1])][:top]
    head = ["Node type (ms per run, share)", *(p.name for p in with_ops)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * len(with_ops)]
    for op in ops:
        cells = [op]
        for p in with_ops:
            ms, total = p.ops.get(op), sum(p.ops.values())
            cells.append("-" if ms is None else f"{ms:.2f} ({ms / total:.0%})")
        lines.append("| " + " | ".join(cells) + " |")
    cells = ["all nodes"] + [f"{sum(p.ops.values()):.2f}" for p in with_ops]
    lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_table(title: str, machine: list[str], sections: list[tuple[str, list[str]]]) -> str:
    """The results file: title, the machine bullet lines, then (heading, lines) sections."""
    out = [f"# {title}", "", *machine, ""]
    for heading, lines in sections:
        out += [f"## {heading}", "", *lines, ""]
    return "\n".join(out).rstrip() + "\n"


def write_table(path: Path, text: str) -> Path:
    from app.core.atomic import write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    return path


# -- the benchmark -------------------------------------------------------------------------

RESULTS = REPO_ROOT / "benchmarks" / "results" / "latency.md"
MAGNETIC = REPO_ROOT.parent / "shared" / "datasets" / "magnetic-tile"
KOLEKTOR = REPO_ROOT.parent / "shared" / "datasets" / "kolektorsdd"
TARGETS = {"mt288_p50_ms": 6.0, "mt288_vs_eager": 3.0, "ko_p50_ms": 30.0, "batch_parts_per_s": 300.0}


def trained_project(work: Path, root: Path, input_size: int | None, epochs: int | None) -> Path:
    """A project of the dataset's train+val split with a trained model (reused if there),
    built as benchmarks/detection.py builds its default model: the trainer divides the
    images into its own train and validation parts and picks the mode (`auto`), so the
    model timed here is the one the detection results describe."""
    from app.core.project import Project
    from benchmarks import tile_data

    folder = work / root.name
    if (folder / "project.db").is_file():
        with Project.open(folder) as project:
            if project.models():
                return folder
    else:
        items = tile_data.in_split(tile_data.read_split(root), "train", "val")
        tile_data.build_project(folder, root, items, keep_splits=False)
        if input_size:
            with Project.open(folder) as project:
                project.set_setting("input_size", input_size)
    from training.pipeline import train_project

    print(f"  training on {root.name} ({epochs or 'default'} epochs, CPU)...", flush=True)
    train_project(folder, epochs=epochs, device="cpu", seed=0)
    return folder


def newest_model(folder: Path):
    from app.core.project import Project

    with Project.open(folder) as project:
        return project.production_model() or project.models()[0]


def gated_int8(folder: Path, version: str) -> dict:
    """`lineside quantize` on the project (the gate), the record either way."""
    from app.core.project import Project
    from training import quantize

    with Project.open(folder) as project:
        try:
            return quantize.quantize_model(project, version, on_progress=lambda m: print(f"    {m}", flush=True)).record
        except quantize.QuantizeRefused as refused:
            print(f"    refused: {refused}", flush=True)
            return refused.record


def ungated_int8(model_path: Path, folder: Path, dest: Path, plan: str = "full") -> Path:
    """An INT8 file of *model_path* for timing only (no gate), calibrated on *folder*'s
    training parts: what INT8 would cost when the gate refuses it."""
    from app.core.project import Project
    from training import quantize

    with Project.open(folder) as project, tempfile.TemporaryDirectory() as tmp:
        inputs = quantize.calibration_inputs(project, Inspector(model_path))
        prepared, graph, _ = quantize.prepare(model_path, Path(tmp))
        keep = dict(quantize.applicable_plans(graph))[plan]
        quantize.quantize_file(prepared, dest, inputs, keep)
    return dest


LINE_INT8 = "INT8 + float re-check (the line)"


def test_split_accuracy(model, int8_path: Path, items) -> dict:
    """Float vs INT8 on the dataset's test split, each at its own stored threshold, one
    part at a time on 1 thread, the three taking turns: the float model, the INT8 file
    alone, and the INT8 file as the line loads it (`int8_inspector_for`: parts within the
    re-check band of the threshold re-decided in float; the INT8 file alone where it has
    no band or was not gated)."""
    from app.core.evaluation import auroc
    from app.core.imageio import read_image
    from app.core.records import OK
    from app.core.runtime import int8_inspector_for

    a = Inspector(model.onnx_path, threads=1, threshold=model.threshold)
    b = Inspector(int8_path, threads=1)
    gated = int8_path == model.path / "model.int8.onnx"
    line = (int8_inspector_for(model, 1) if gated else None) or b
    for inspector in (a, b, line):
        inspector.warmup()
    runs = {"float": [], "int8": [], "line": []}
    ms = {"float": [], "int8": [], "line": []}
    for k, item in enumerate(items):
        image = read_image(item.path)
        order = (("float", a), ("int8", b), ("line", line))
        for name, inspector in (order if k % 2 == 0 else order[::-1]):
            start = time.perf_counter()
            verdict = inspector.inspect(image)
            ms[name].append((time.perf_counter() - start) * 1000.0)
            runs[name].append(verdict)
    defect = np.array([item.verdict != OK for item in items])
    rejected = {name: np.array([not v.passed for v in vs]) for name, vs in runs.items()}
    fp, qp, lp = rejected["float"], rejected["int8"], rejected["line"]
    return {"n": len(items), "auroc_float": auroc(defect, [v.score for v in runs["float"]]),
            "auroc_int8": auroc(defect, [v.score for v in runs["int8"]]),
            # Re-checked scores are already on the INT8 file's scale (one threshold for all).
            "auroc_line": auroc(defect, [v.score for v in runs["line"]]),
            "agreement": float(np.mean(fp == qp)), "agreement_line": float(np.mean(fp == lp)),
            "rechecked": int(sum(v.rechecked for v in runs["line"])),
            "recheck_band_logit": line.info.recheck_band_logit if line.recheck is not None else None,
            "catch_float": float(fp[defect].mean()), "catch_int8": float(qp[defect].mean()),
            "catch_line": float(lp[defect].mean()), "fr_float": float(fp[~defect].mean()),
            "fr_int8": float(qp[~defect].mean()), "fr_line": float(lp[~defect].mean()), "threshold_int8": b.threshold,
            "ms": {name: {"p50": float(np.median(t)), "mean": float(np.mean(t)), "p99": float(np.percentile(t, 99))}
                   for name, t in ms.items()}}


def session_variants(model_path: Path, inputs: np.ndarray, rounds: int) -> list[list[str]]:
    """Session-run p50 of one part under ONNX Runtime's options, taking turns."""
    import onnxruntime as ort

    from app.core.runtime import session_options

    levels = {"basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    variants = {}
    for level in levels:
        for threads, spin in ((1, False), (2, False), (2, True)):
            options = session_options(threads, spinning=spin)
            options.graph_optimization_level = levels[level]
            name = f"{level}, {threads} thread{'s' if threads > 1 else ''}" + (", spinning" if spin else "")
            variants[name] = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    times: dict[str, list[float]] = {k: [] for k in variants}
    feed = {"image": inputs}
    for session in variants.values():
        session.run(None, feed)
    names = list(variants)
    for r in range(rounds):
        for name in (names if r % 2 == 0 else names[::-1]):
            start = time.perf_counter()
            variants[name].run(None, feed)
            times[name].append((time.perf_counter() - start) * 1000.0)
    return [[name, f"{np.median(t):.2f}", f"{np.percentile(t, 95):.2f}"] for name, t in times.items()]


def _md(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1),
            *("| " + " | ".join(r) + " |" for r in rows)]


def main(argv: list[str] | None = None) -> int:
    from app.core.imageio import read_image
    from benchmarks import tile_data
    from benchmarks.machine import load_average, machine_lines

    parser = argparse.ArgumentParser(description="Line-speed profile of the Inspector (writes latency.md)")
    parser.add_argument("--work", type=Path, default=None, help="keep/reuse the trained projects here")
    parser.add_argument("--parts", type=int, default=60, help="test parts per profile (default 60)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs when a project must be trained (default: the trainer's own, as shipped)")
    parser.add_argument("--quick", action="store_true", help="few parts, 1 round: checks the script")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_at_start = load_average()
    rounds = 1 if args.quick else 3
    n_parts = 8 if args.quick else args.parts
    work = args.work or Path(tempfile.mkdtemp(prefix="lineside-latency-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"[1] projects and models in {work}", flush=True)
    mt_dir = trained_project(work, MAGNETIC, 288, args.epochs)
    ko_dir = trained_project(work, KOLEKTOR, None, args.epochs)
    mt, ko = newest_model(mt_dir), newest_model(ko_dir)
    mt_items = tile_data.in_split(tile_data.read_split(MAGNETIC), "test")
    ko_items = tile_data.in_split(tile_data.read_split(KOLEKTOR), "test")
    spread = lambda items, n: [items[i] for i in np.linspace(0, len(items) - 1, min(n, len(items))).astype(int)]  # noqa: E731
    mt_enc = [item.path.read_bytes() for item in spread(mt_items, n_parts)]
    ko_enc = [item.path.read_bytes() for item in spread(ko_items, max(8, n_parts // 3))]

    print("[2] INT8: the gate on each project's validation split", flush=True)
    gates = {"magnetic-tile": gated_int8(mt_dir, mt.version), "kolektorsdd": gated_int8(ko_dir, ko.version)}
    int8_files = {}
    for name, model, folder in (("magnetic-tile", mt, mt_dir), ("kolektorsdd", ko, ko_dir)):
        gated = model.path / "model.int8.onnx"
        if gates[name]["passed"] and gated.is_file():
            int8_files[name] = (gated, "gated")
        else:
            plan = gates[name]["plans_tried"][-1]["plan"] if gates[name].get("plans_tried") else "full"
            int8_files[name] = (ungated_int8(model.onnx_path, folder, work / f"{name}-{plan}.int8.onnx", plan),
                                f"refused ({plan}), timing only")
    at224 = work / "magnetic-224"
    if not (at224 / "model.onnx").is_file():
        model_at_size(mt.path, 224, at224)
    int8_224 = ungated_int8(at224 / "model.onnx", mt_dir, work / "magnetic-224.int8.onnx", "full")

    print("[3] stage and node profiles, 1 thread", flush=True)
    configs = [
        ("magnetic-tile 224 px, float", at224 / "model.onnx", mt_enc, None),
        ("magnetic-tile 224 px, INT8 (full, not gated)", int8_224, mt_enc, None),
        ("magnetic-tile 288 px, float", mt.onnx_path, mt_enc, mt.threshold),
        (f"magnetic-tile 288 px, INT8 ({int8_files['magnetic-tile'][1]})", int8_files["magnetic-tile"][0], mt_enc, None),
        (f"kolektorsdd tiled, {ko.metrics.get('mode', 'supervised')}, float", ko.onnx_path, ko_enc, ko.threshold),
        (f"kolektorsdd tiled, {ko.metrics.get('mode', 'supervised')}, INT8 ({int8_files['kolektorsdd'][1]})", int8_files["kolektorsdd"][0], ko_enc, None),
    ]
    profiles = []
    for name, path, encoded, threshold in configs:
        inspector = Inspector(path, threads=1, threshold=threshold)
        profile = profile_stages(inspector, encoded, name, rounds=rounds)
        profile.ops = op_profile(path, [decode_image(e) for e in encoded], threads=1, runs=10 if args.quick else 30)
        profiles.append(profile)
        print(f"  {name}: p50 {profile.total_p50():.2f} ms ({profile.inputs_per_part:.1f} inputs/part)", flush=True)

    print("[3b] the yardstick: a plain EfficientNet-Lite0 at 224 px, taking turns with the line's models", flush=True)
    yard = yardstick_latency({"magnetic-tile 288 px, float": mt.onnx_path,
                              f"magnetic-tile 288 px, INT8 ({int8_files['magnetic-tile'][1]})":
                                  int8_files["magnetic-tile"][0]},
                             [decode_image(e) for e in mt_enc], rounds=1 if args.quick else 2)
    print("  " + ", ".join(f"{k}: {v['p50']:.2f} ms" for k, v in yard.items()), flush=True)

    print("[4] session options at 288 px", flush=True)
    first = read_image(mt_items[0].path)
    mt_input = np.stack(Inspector(mt.onnx_path).model_inputs(first))
    variants_float = session_variants(mt.onnx_path, mt_input, 20 if args.quick else 60)
    variants_int8 = session_variants(int8_files["magnetic-tile"][0], mt_input, 20 if args.quick else 60)

    print("[5] PyTorch eager vs ONNX Runtime, 1 thread, 288 px (decoded image to verdict + heatmap)", flush=True)
    images = [decode_image(e) for e in mt_enc]
    eager_float = single_image_latency(mt.path, images)
    eager_int8 = single_image_latency(mt.path, images, onnx_path=int8_files["magnetic-tile"][0])

    print("[6] batch throughput (batch 16)", flush=True)
    many = images * max(1, 32 // len(images))
    throughput = []
    for label, path in (("float", mt.onnx_path), ("INT8", int8_files["magnetic-tile"][0])):
        for threads, spin, lanes in ((2, False, 1), (2, True, 1), (2, False, 2), (1, False, 1)):
            r = batch_throughput(path, many, min_images=64 if args.quick else 320, threads=threads, spinning=spin,
                                 lanes=lanes)
            throughput.append((label, threads, spin, r["images_per_s"], lanes))
            print(f"  {label} {threads} threads{' spinning' if spin else ''}{' in 2 lanes' if lanes > 1 else ''}: "
                  f"{r['images_per_s']:.0f} parts/s", flush=True)
    if int8_files["magnetic-tile"][1] == "gated":  # the line's INT8, near-threshold parts re-checked in float
        for threads, lanes in ((2, 1), (2, 2)):
            r = batch_throughput(mt.onnx_path, many, min_images=64 if args.quick else 320, threads=threads,
                                 lanes=lanes, line_model=mt)
            throughput.append((LINE_INT8, threads, False, r["images_per_s"], lanes))
            print(f"  {LINE_INT8} {threads} threads{' in 2 lanes' if lanes > 1 else ''}: "
                  f"{r['images_per_s']:.0f} parts/s", flush=True)
    print("[6b] parts of 2 and 4 views, 2 cores: one 2-thread session vs 2 one-thread lanes", flush=True)
    views = {(label, n): views_latency(path, many, n, [(2, 1), (2, 2)], rounds=1 if args.quick else 3)
             for label, path in (("float", mt.onnx_path), ("INT8", int8_files["magnetic-tile"][0])) for n in (2, 4)}

    print("[7] test-split accuracy, float vs INT8", flush=True)
    accuracy = {
        "magnetic-tile": test_split_accuracy(mt, int8_files["magnetic-tile"][0], mt_items),
        "kolektorsdd": test_split_accuracy(ko, int8_files["kolektorsdd"][0], ko_items),
    }

    text = render_report(profiles, variants_float, variants_int8, eager_float, eager_int8, throughput, views, gates,
                         accuracy, int8_files, mt, ko, yard, machine_lines("benchmarks/latency.py", ("onnxruntime", "torch", "cv2", "numpy"), load_at_start), args.quick)
    out = write_table(args.out, text)
    print(text)
    print(f"wrote {out}")
    return 0


def render_report(profiles, variants_float, variants_int8, eager_float, eager_int8, throughput, views, gates, accuracy,
                  int8_files, mt, ko, yard, machine, quick) -> str:
    by_name = {p.name: p for p in profiles}
    mt_float = next(p for n, p in by_name.items() if n.startswith("magnetic-tile 288 px, float"))
    mt_int8 = next(p for n, p in by_name.items() if n.startswith("magnetic-tile 288 px, INT8"))
    ko_float = next(p for n, p in by_name.items() if n.startswith("kolektorsdd tiled") and ", float" in n)
    ko_int8 = next(p for n, p in by_name.items() if n.startswith("kolektorsdd tiled") and ", INT8" in n)
    mt_ok = int8_files["magnetic-tile"][1] == "gated"
    ko_ok = int8_files["kolektorsdd"][1] == "gated"
    # What the line runs: float, or where INT8 passed its gate, INT8 with its float re-check.
    line_label = LINE_INT8 if mt_ok and any(t[0] == LINE_INT8 for t in throughput) else ("INT8" if mt_ok else "float")
    best_batch = max(t[3] for t in throughput if t[1] == 2 and t[0] in ("float", line_label))
    eager = eager_int8 if mt_ok else eager_float
    line_mt = mt_int8 if mt_ok else mt_float
    line_ko = ko_int8 if ko_ok else ko_float
    met = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    # The line's INT8 with its float re-check, timed on the whole test split (part by part).
    mt_line = accuracy["magnetic-tile"]["ms"]["line" if mt_ok else "float"]
    ko_line = accuracy["kolektorsdd"]["ms"]["line" if ko_ok else "float"]
    line_note = lambda a, t: ("" if not a["rechecked"] else  # noqa: E731
                              f"; every test part with the float re-check of the {a['rechecked']} near the threshold: "
                              f"p50 {t['p50']:.2f} ms, mean {t['mean']:.2f}, p99 {t['p99']:.2f}")
    targets = [
        ["magnetic-tile 288 px, one part, 1 thread, p50 <= 6 ms (what the line runs: "
         f"{'INT8' if mt_ok else 'float, INT8 refused'})",
         f"{line_mt.total_p50():.2f} ms{line_note(accuracy['magnetic-tile'], mt_line) if mt_ok else ''}",
         met(max(line_mt.total_p50(), mt_line["p50"] if mt_ok else 0.0) <= 6.0)],
        ["same, >= 3x PyTorch eager (same process, alternating)",
         f"{eager.row('torch')['p50'] / eager.row('ort')['p50']:.2f}x", met(eager.speedup_p50 >= 3.0)],
        ["kolektorsdd tiled part, 1 thread, p50 <= 30 ms (what the line runs: "
         f"{'INT8' if ko_ok else 'float'})",
         f"{line_ko.total_p50():.2f} ms{line_note(accuracy['kolektorsdd'], ko_line) if ko_ok else ''}",
         met(max(line_ko.total_p50(), ko_line["p50"] if ko_ok else 0.0) <= 30.0)],
        ["batch throughput, 2 cores (one 2-thread session or two 1-thread lanes), >= 300 magnetic-tile parts/s "
         f"({line_label})", f"{best_batch:.0f} parts/s", met(best_batch >= 300)],
        ["accuracy at the line unchanged within the INT8 gate on both test splits (a gated INT8 model as the "
         "line runs it, parts within its re-check band decided in float: agreement >= 99.5 %, AUROC drop <= "
         "0.002; where INT8 was refused the line keeps the float model)", ", ".join(
            f"{k} ({int8_files[k][1]}): agreement {a['agreement_line']:.2%} ({a['n'] - round(a['agreement_line'] * a['n'])}"
            f" of {a['n']} differ; INT8 alone {a['agreement']:.2%}), AUROC {a['auroc_line']:.4f} vs "
            f"{a['auroc_float']:.4f}" for k, a in accuracy.items()),
         met(all(a["agreement_line"] >= 0.995 and a["auroc_line"] >= a["auroc_float"] - 0.002
                 for k, a in accuracy.items() if int8_files[k][1] == "gated"))],
    ]
    gate_rows = []
    for name, g in gates.items():
        for t in g.get("plans_tried", []):
            last = t is g["plans_tried"][-1]  # the re-check figures are the chosen plan's
            gate_rows.append([name, t["plan"], f"{t['agreement']:.2%}",
                              "-" if t.get("agreement_train") is None else f"{t['agreement_train']:.2%}",
                              "-" if t.get("expected_disagreement") is None else f"{t['expected_disagreement']:.2%}",
                              f"{g['recheck_band_logit']:.2f} / {g['recheck_share']:.1%} / "
                              f"{g['expected_disagreement_rechecked']:.2%}" if last and "recheck_band_logit" in g else "-",
                              f"{t['auroc_int8']:.4f} (float {g['auroc_float']:.4f})", f"{t['max_abs_score_diff']:.3f}",
                              "passed" if t["passed"] else "refused"])
    acc_rows = [[k, str(a["n"]), f"{a['auroc_float']:.4f}", f"{a['auroc_int8']:.4f}", f"{a['agreement']:.2%}",
                 f"{a['catch_float']:.1%} / {a['fr_float']:.1%}", f"{a['catch_int8']:.1%} / {a['fr_int8']:.1%}",
                 f"{a['agreement_line']:.2%}", f"{a['rechecked']} of {a['n']}",
                 f"{a['catch_line']:.1%} / {a['fr_line']:.1%}",
                 " / ".join(f"{a['ms'][m]['p50']:.2f}" for m in ("float", "int8", "line")),
                 int8_files[k][1]] for k, a in accuracy.items()]
    thr_rows = [[label, str(threads), "on" if spin else "off", "2 of 1 thread" if lanes > 1 else "-", f"{v:.0f}"]
                for label, threads, spin, v, lanes in throughput]
    view_rows = [[label, str(n), f"{t[(2, 1)]:.2f}", f"{t[(2, 2)]:.2f}", f"{t[(2, 1)] / t[(2, 2)]:.2f}x"]
                 for (label, n), t in views.items()]
    eager_rows = [[label, f"{r.row('ort')['p50']:.2f}", f"{r.row('torch')['p50']:.2f}", f"{r.speedup_p50:.2f}x",
                   f"{r.max_score_diff:.2e}"] for label, r in (("float", eager_float), ("INT8", eager_int8))]
    sections = [
        ("Targets", [*(_md(["Target", "Measured", "Met"], targets)),
                     "", "Absolute times on this shared 2-core machine move with the neighbours' load (see the load "
                     "averages above: several times the 2 cores); ratios are measured in one process, the "
                     "configurations taking turns. The 'min' column of the stage table is the fastest part of "
                     "each configuration: the closest this run gets to an idle machine."]),
        ("The machine's speed: the targets' yardstick in the same process", yardstick_lines(yard)),
        ("Where one part's time goes (1 thread, ms per part, p50 per stage)", [
            *stage_table(profiles), "",
            "Decode is reported but not counted in the line latency (the camera or hot folder decodes once "
            "for display too); 'to verdict + heatmap' is letterbox/tiles + session + verdict + heatmap mapped "
            "onto the image. Tiled parts run all their tiles in one session call."]),
        ("Session run by ONNX node type (ONNX Runtime profiler, ms per run)", op_table(profiles)),
        ("Session options, 288 px float (one part, session only)", _md(["Options", "p50 ms", "p95 ms"], variants_float)),
        ("Session options, 288 px INT8 (one part, session only)", _md(["Options", "p50 ms", "p95 ms"], variants_int8)),
        ("PyTorch eager vs ONNX Runtime, 288 px, 1 thread (decoded image to verdict + heatmap)",
         _md(["ONNX model", "ORT p50 ms", "eager p50 ms", "speed-up", "max score diff vs eager"], eager_rows)),
        ("Batch throughput, magnetic-tile 288 px, batch 16", [
            *_md(["Model", "threads", "spinning", "lanes", "parts/s"], thr_rows), "",
            "Lanes (`Inspector(lanes=2)`, chosen per machine by `lineside bench`): the batch is shared out between "
            "two one-thread sessions run side by side instead of one session splitting every layer over two threads. "
            "'INT8' rows run the INT8 file alone; the line's rows load it as a station does, the parts near the "
            "threshold re-run by the float model."]),
        ("One part of several views, magnetic-tile 288 px, 2 cores (p50 ms per part)",
         _md(["Model", "views", "one 2-thread session", "2 one-thread lanes", "lanes faster by"], view_rows)),
        ("INT8 gate (validation split; `lineside quantize`)", [
            *_md(["Dataset", "plan", "agreement (val)", "agreement (train)", "expected disagreement",
                  "re-check band (logits) / val parts in it / expected disagreement with it",
                  "AUROC (val)", "max score diff", "result"], gate_rows), "",
            "Gate: verdicts (each model at its own threshold; the INT8 threshold is the float one moved by the "
            "median change INT8 made to the scores of the judged parts nearest it) agree on >= 99.5 % of the "
            "validation parts and of the training parts; the expected disagreement (every validation part's float "
            "logit moved by every INT8 change seen, `training.quantize.expected_disagreement`) is at most 0.5 %; "
            "and validation AUROC is at most 0.002 below float. The re-check band (`training.quantize.recheck_band`, "
            "docs/adr/0015) is the largest change INT8 made, beyond the threshold's shift, to a judged part near "
            "the threshold; the line re-decides a part in float when its INT8 score lies within it."]),
        ("Test split, float vs INT8 (each at its stored threshold)", [*_md(
            ["Dataset", "parts", "AUROC float", "AUROC INT8 alone", "INT8 alone agrees", "catch / false reject float",
             "catch / false reject INT8 alone", "the line (INT8 + re-check) agrees", "re-checked in float",
             "catch / false reject at the line", "p50 ms float / INT8 alone / line (1 thread)", "INT8 file"],
            acc_rows), "",
            "Every test part, one at a time on 1 thread, the three taking turns. 'The line' is the INT8 file as "
            "the station loads it (`int8_inspector_for`): a part whose INT8 score lies within the file's re-check "
            "band of its threshold is run again by the float model, whose verdict it gets."]),
        ("Models", [f"- magnetic-tile: {mt.version}, {mt.metrics.get('mode')}, input {json.loads((mt.path / 'model.json').read_text())['input_size']} px, "
                    f"val AUROC {mt.metrics.get('auroc', float('nan')):.4f}, epochs run {mt.report.get('epochs_run')}",
                    f"- kolektorsdd: {ko.version}, {ko.metrics.get('mode')}, tiling {json.loads((ko.path / 'model.json').read_text()).get('tiling')}, "
                    f"val AUROC {ko.metrics.get('auroc', float('nan')):.4f}, epochs run {ko.report.get('epochs_run')}",
                    "- Datasets: magnetic-tile (Huang, Qiu and Yuan, The Visual Computer 2020) and KolektorSDD "
                    "(Tabernik et al., J. Intell. Manuf. 2020), fixed splits; images read in place, never copied here."]),
    ]
    title = "Line speed: latency profile, INT8 and throughput" + (" (--quick: checks the script, not a result)" if quick else "")
    return render_table(title, machine, sections)


if __name__ == "__main__":
    sys.exit(main())
