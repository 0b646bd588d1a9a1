"""`lineside quantize` and `lineside bench`: line speed, per model and per machine.

- `quantize PROJECT VERSION` writes `models/VERSION/model.int8.onnx` if the INT8 model
  passes its gate (training/quantize.py; a workstation feature: it needs `onnx`).
- `bench PROJECT [--model VERSION] [--views N]` times the model on this machine's CPU,
  float and INT8 (if there is a valid INT8 file), on 1 and on all cores, on the
  project's own images (N of them per part for an N-view station), and stores the choice
  in the project settings: `precision` (float|int8), `threads`, `lanes`,
  `parts_per_second`. Where a part is several network inputs (tiles, views) it also
  times lanes: one one-thread session per core, the inputs shared out between them
  (`Inspector(lanes=...)`). `load_inspector_for_project` then loads what was chosen.
  Needs only ONNX Runtime: it runs on a station.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from app.core.errors import LinesideError
from app.core.operating_point import threshold_text

if TYPE_CHECKING:
    from app.core.project import Project
    from app.core.records import ModelVersion
    from app.core.runtime import Inspector

BENCH_PARTS = 24  # the project's own images timed
BENCH_ROUNDS = 3
# INT8 is chosen only when it is clearly faster: a few percent is within the noise.
MIN_INT8_GAIN = 1.05
# More threads take cores from the GUI and other work: only when clearly faster.
MIN_THREAD_GAIN = 1.10
# On this machine INT8 and float must still agree (same figure as the quantisation gate).
MIN_AGREEMENT = 0.995
GATE_PARTS = 100  # validation parts re-checked on this machine (at most)


def register(sub) -> None:
    q = sub.add_parser("quantize", help="write an INT8 version of a model if it passes its accuracy gate")
    q.add_argument("project", type=Path)
    q.add_argument("version", help="model version, e.g. v3")
    q.add_argument("--min-agreement", type=float, default=None, metavar="SHARE",
                   help="gate: share of held-out parts whose verdict must not change (default 0.995)")
    q.add_argument("--max-auroc-drop", type=float, default=None, metavar="DROP",
                   help="gate: how far AUROC may fall below float (default 0.002)")
    q.set_defaults(handler=run_quantize)

    b = sub.add_parser("bench", help="time float and INT8 on this machine and store the faster choice")
    b.add_argument("project", type=Path)
    b.add_argument("--model", metavar="VERSION", help="model to time (default: production, else newest)")
    b.add_argument("--parts", type=int, default=BENCH_PARTS, help=f"project images to time (default {BENCH_PARTS})")
    b.add_argument("--rounds", type=int, default=BENCH_ROUNDS, help=f"passes over them (default {BENCH_ROUNDS})")
    b.add_argument("--views", type=int, default=1,
                   help="views per part at this station (1-4, default 1): each timed part is that many images")
    b.add_argument("--precision", choices=["auto", "float", "int8"], default="auto",
                   help="auto (default): the fastest that passes; float/int8: only that one")
    b.add_argument("--dry-run", action="store_true", help="measure and print, store nothing")
    b.set_defaults(handler=run_bench)


# -- quantize ---------------------------------------------------------------------------

def run_quantize(args: argparse.Namespace) -> int:
    from app.core.project import Project

    try:
        from training import quantize
    except ImportError as exc:  # a station: no trainer, no onnx
        raise LinesideError("INT8 quantisation is a Workstation feature (it needs the 'onnx' package); "
                            "quantise on a workstation and copy the project.") from exc
    gate = quantize.Gate(
        min_agreement=quantize.MIN_AGREEMENT if args.min_agreement is None else args.min_agreement,
        max_auroc_drop=quantize.MAX_AUROC_DROP if args.max_auroc_drop is None else args.max_auroc_drop)
    with Project.open(args.project) as project:
        result = quantize.quantize_model(project, args.version, gate,
                                         on_progress=lambda m: print(f"  {m}", flush=True))
    r = result.record
    speed = r["latency_1_thread_ms"]
    print(f"wrote {result.path}")
    print(f"gate passed on {r['n_parts']} held-out parts: verdicts agree on {r['agreement']:.2%} "
          f"(expected to differ on {r['expected_disagreement']:.2%} of parts like them), "
          f"AUROC {r['auroc_int8']:.4f} (float {r['auroc_float']:.4f}), "
          f"threshold {threshold_text(r['threshold'], 4)} (float {threshold_text(r['threshold_float'], 4)})")
    print(f"at the line, parts within {r['recheck_band_logit']:.2f} logits of the threshold "
          f"({r['recheck_share']:.1%} of the held-out parts) are re-checked by the float model: "
          f"expected to differ on {r['expected_disagreement_rechecked']:.2%} then")
    print(f"one part, one thread: {speed['int8']:.1f} ms INT8 vs {speed['float']:.1f} ms float "
          f"({speed['speedup']:.2f}x); run `lineside bench {args.project}` to choose per machine")
    return 0


# -- bench ------------------------------------------------------------------------------

@dataclass
class Candidate:
    precision: str
    threads: int
    inspector: "Inspector"
    ms: list[float] = field(default_factory=list)
    lanes: int = 1

    @property
    def ms_per_part(self) -> float:
        return float(np.median(self.ms)) if self.ms else float("inf")

    @property
    def parts_per_second(self) -> float:
        """From the mean time per part, not the median: an INT8 model's parts near the
        threshold also run the float model (its re-check band), and they take a line's time
        as surely as the typical part does."""
        return 1000.0 / float(np.mean(self.ms)) if self.ms else 0.0

    @property
    def name(self) -> str:
        if self.lanes > 1:
            return f"{self.precision}, {self.lanes} lanes of 1 thread"
        return f"{self.precision}, {self.threads} thread{'s' if self.threads > 1 else ''}"


def _model_to_bench(project: "Project", version: str | None) -> "ModelVersion":
    if version:
        return project.model(version)
    chosen = project.production_model() or next(iter(project.models()), None)
    if chosen is None:
        raise LinesideError(f"The project {project.path} has no trained models to time; train one first.")
    return chosen


def bench_images(project: "Project", n: int) -> list[np.ndarray]:
    """Up to *n* of the project's images, spread over all of them, decoded."""
    from app.core.errors import BadImageError

    records = project.images()
    if not records:
        raise LinesideError(f"The project {project.path} has no images to time the model on.")
    picks = np.unique(np.linspace(0, len(records) - 1, max(1, n)).round().astype(int))
    images = []
    for i in picks:
        try:
            images.append(project.load_image(records[i].id))
        except BadImageError:
            continue
    if not images:
        raise LinesideError(f"None of the project's images could be read in {project.path}.")
    return images


def as_parts(images: list[np.ndarray], views: int) -> list[list[np.ndarray]]:
    """*images* grouped *views* at a time: what one trigger of an N-view station judges."""
    views = max(1, views)
    parts = [images[i:i + views] for i in range(0, len(images) - views + 1, views)]
    if not parts:
        raise LinesideError(f"{len(images)} readable images are too few to time {views}-view parts.")
    return parts


def time_candidates(candidates: list[Candidate], parts: list[list[np.ndarray]], rounds: int) -> None:
    """Per-part wall time (all its views), one part at a time as the line judges them; the
    candidates take turns on every part (order alternating) so a busy neighbour slows all
    alike."""
    for c in candidates:
        c.inspector.warmup()
        c.inspector.inspect_batch(parts[0])
    for r in range(rounds):
        for i, part in enumerate(parts):
            order = candidates if (i + r) % 2 == 0 else candidates[::-1]
            for c in order:
                start = time.perf_counter()
                c.inspector.inspect_batch(part)
                c.ms.append((time.perf_counter() - start) * 1000.0)


def gate_images(project: "Project", fallback: list[np.ndarray], limit: int = GATE_PARTS) -> list[np.ndarray]:
    """The validation parts the quantisation gate judged (up to *limit*): the INT8 file is
    re-checked on this machine's CPU, whose integer kernels may differ from the one it was
    quantised on. The timed images when there is no validation split."""
    from app.core.errors import BadImageError

    records = [r for r, _ in project.labeled(split="val")]
    images = []
    for i in np.unique(np.linspace(0, len(records) - 1, limit).round().astype(int)) if records else []:
        try:
            images.append(project.load_image(records[i].id))
        except BadImageError:
            continue
    return images or fallback


def int8_agreement(float_insp: "Inspector", int8_insp: "Inspector", images: list[np.ndarray]) -> float:
    """Share of *images* with the same PASS/FAIL from both, each at its own threshold."""
    same = [a.passed == b.passed for a, b in zip(float_insp.inspect_batch(images), int8_insp.inspect_batch(images))]
    return float(np.mean(same))


def choose(candidates: list[Candidate], int8_ok: bool) -> tuple[Candidate, list[str]]:
    """The configuration to store, and why. INT8 only if it passed here and is at least
    MIN_INT8_GAIN faster than the best float; more threads only if MIN_THREAD_GAIN faster."""
    notes = []

    def best_of(group: list[Candidate]) -> Candidate | None:
        if not group:
            return None
        fewest = min(group, key=lambda c: c.threads)
        fastest = min(group, key=lambda c: c.ms_per_part)
        return fastest if fastest.ms_per_part * MIN_THREAD_GAIN <= fewest.ms_per_part else fewest

    best_float = best_of([c for c in candidates if c.precision == "float"])
    best_int8 = best_of([c for c in candidates if c.precision == "int8"]) if int8_ok else None
    if best_float is None and best_int8 is None:
        raise LinesideError("nothing to choose from")
    if best_float is None:
        return best_int8, notes  # type: ignore[return-value]
    if best_int8 is None:
        return best_float, notes
    if best_int8.ms_per_part * MIN_INT8_GAIN <= best_float.ms_per_part:
        return best_int8, notes
    notes.append(f"INT8 is not at least {MIN_INT8_GAIN - 1:.0%} faster here: float stays")
    return best_float, notes


def run_bench(args: argparse.Namespace) -> int:
    from app.cli.models import format_table
    from app.core.project import Project
    from app.core.runtime import FLOAT, INT8, Inspector, int8_inspector_for

    cores = os.cpu_count() or 1
    thread_counts = sorted({1, cores})
    if not 1 <= args.views <= 4:
        raise LinesideError(f"--views is 1 to 4 (a station has 1 to 4 views of a part), not {args.views}.")
    with Project.open(args.project) as project:
        model = _model_to_bench(project, args.model)
        images = bench_images(project, args.parts * args.views)
        parts = as_parts(images, args.views)
        candidates: list[Candidate] = []
        float_first = Inspector(model.onnx_path, threads=1, threshold=model.threshold)
        # Lanes only pay where one part is several network inputs (tiles or views).
        lanes = cores if cores > 1 and sum(len(float_first.model_inputs(im)) for im in parts[0]) > 1 else 0
        if args.precision in ("auto", "float"):
            candidates += [Candidate(FLOAT, 1, float_first)]
            candidates += [Candidate(FLOAT, t, Inspector(model.onnx_path, threads=t, threshold=model.threshold))
                           for t in thread_counts[1:]]
            if lanes:
                candidates.append(Candidate(FLOAT, cores, Inspector(model.onnx_path, threads=cores, lanes=lanes,
                                                                    threshold=model.threshold), lanes=lanes))
        notes: list[str] = []
        int8_ok = False
        if args.precision in ("auto", "int8"):
            first = int8_inspector_for(model, thread_counts[0])
            if first is None:
                message = (f"model {model.version} has no valid INT8 file "
                           f"(`lineside quantize {args.project} {model.version}` writes one)")
                if args.precision == "int8":
                    raise LinesideError(message)
                notes.append(message)
            else:
                int8s = [Candidate(INT8, thread_counts[0], first)]
                int8s += [Candidate(INT8, t, int8_inspector_for(model, t)) for t in thread_counts[1:]]
                if lanes:
                    int8s.append(Candidate(INT8, cores, int8_inspector_for(model, cores, lanes), lanes=lanes))
                reference = Inspector(model.onnx_path, threads=cores, threshold=model.threshold)
                agreement = int8_agreement(reference, first, gate_images(project, images))
                int8_ok = agreement >= MIN_AGREEMENT
                if not int8_ok:
                    notes.append(f"on this machine INT8 and float verdicts agree on only {agreement:.1%} of the "
                                 f"validation parts (the gate needs {MIN_AGREEMENT:.1%}): INT8 is not used")
                    if args.precision == "int8":
                        raise LinesideError(notes[-1])
                candidates += int8s
        time_candidates(candidates, parts, max(1, args.rounds))
        chosen, why = choose(candidates, int8_ok)
        notes += why
        rows = [[c.name, f"{c.ms_per_part:.2f}", f"{c.parts_per_second:.0f}", "<-" if c is chosen else ""]
                for c in candidates]
        views = "" if args.views == 1 else f" as {len(parts)} parts of {args.views} views"
        print(f"model {model.version} on {len(parts) * args.views} of the project's images{views}, "
              f"{cores} logical cores, load average {_load()}")
        print(format_table(["configuration", "ms per part (p50)", "parts/s (from the mean)", "chosen"], rows))
        for note in notes:
            print(f"note: {note}")
        if not args.dry_run:
            project.set_setting("precision", chosen.precision)
            project.set_setting("threads", chosen.threads)
            project.set_setting("lanes", chosen.lanes)
            project.set_setting("parts_per_second", round(chosen.parts_per_second, 1))
            project.set_setting("bench", {
                "model": model.version, "at": datetime.now(timezone.utc).isoformat(), "cores": cores,
                "views": args.views,
                "results": {c.name: round(c.ms_per_part, 3) for c in candidates}, "notes": notes})
    stored = "" if args.dry_run else " (stored in the project settings)"
    print(f"expected: {chosen.parts_per_second:.0f} parts per second, {chosen.ms_per_part:.1f} ms per part (p50), "
          f"with {chosen.name}{stored}")
    return 0


def _load() -> str:
    try:
        return ", ".join(f"{v:.2f}" for v in os.getloadavg())
    except (OSError, AttributeError):  # Windows
        return "n/a"
