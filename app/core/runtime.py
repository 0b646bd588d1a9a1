"""The line-side verdict: an exported ONNX model run with ONNX Runtime.

Everything the runtime needs travels inside the .onnx file (class names, input size,
threshold, drift reference, tile plan in the `lineside` metadata entry), so a model
copied out of a project onto a station works on its own. Torch is never imported here.

A model with a tile plan ("tiling" in the metadata) is a per-tile network: large parts
are cut into overlapping tiles near native resolution (`app.core.preprocess.TilePlan`),
all tiles go through the model, the part's score is the max over its tiles, its class
comes from the strongest tile and its heatmap is stitched over the whole part.

Speed (benchmarks/results/latency.md): one session per model with all graph
optimisations, sequential execution, intra-op threads as chosen per machine by
`lineside bench` (project settings "precision", "threads" and "lanes": one-thread
sessions side by side for parts of several inputs), pool threads not spinning by
default. A project may run `model.int8.onnx` (static INT8, written by `lineside
quantize` only when it passed its accuracy gate; it carries its own threshold, and a
band about it within which a part is re-decided by the float model, so that the line's
verdicts are the float model's wherever INT8 could have changed one; docs/adr/0015).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from app.core.errors import LinesideError, ModelFileError
from app.core.imageio import read_image, to_bgr8
from app.core.operating_point import logit, sigmoid
from app.core.preprocess import (
    Letterbox,
    TileLayout,
    TilePlan,
    grey_channel,
    letterbox,
    stitch_grid,
    stitch_scaled,
)

if TYPE_CHECKING:  # the project store is only needed by load_inspector_for_project
    from app.core.project import Project
    from app.core.records import ModelVersion

METADATA_KEY = "lineside"
SUPPORTED_FORMAT = 1
INPUT_NAME = "image"
OUTPUT_NAMES = ("score", "class_probs", "heatmap")
# Used when a model knows only "ok" (a pure good/bad model with no named defects).
GENERIC_DEFECT = "defect"
DEFAULT_MODE = "supervised"
# Tiles per session run: bounds memory on a many-tile batch, still amortises the call.
MAX_TILES_PER_RUN = 16
# Inputs per run of a one-thread lane (`Inspector(lanes=N)`): one. A one-thread session
# gains nothing from a larger run but the call's overhead, and a run of several 288-px
# inputs carries its activations past a core's cache. INT8 magnetic-tile model, batches
# of 16 in two lanes, 2-core machine, configurations taking turns (ad-hoc): runs of 2
# against 16, eight rounds, 221 against 208 parts/s on average, 2 faster in seven; runs
# of 1, 2 and 4, six rounds, 213, 207 and 201 (1 fastest or tied in five). Cutting each
# part just before its run instead of all first made no difference.
LANE_RUN_INPUTS = 1
# Precisions a project can choose with `lineside bench` (setting "precision").
FLOAT, INT8 = "float", "int8"
INT8_FILENAME = "model.int8.onnx"  # beside model.onnx, written by `lineside quantize`
# Worker threads of ONNX Runtime's pool busy-wait between kernels by default. On a
# station with its own cores that shaves a little latency off every part; on a machine
# shared with the GUI and other work it burns a core for nothing. Off unless asked for
# (benchmarks/results/latency.md measures both).
DEFAULT_SPINNING = False

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelInfo:
    class_names: list[str]
    input_size: int
    heatmap_stride: int
    threshold: float
    version: str | None
    reference: dict | None
    tiling: TilePlan | None = None  # None: the whole part is letterboxed into one input
    mode: str = DEFAULT_MODE  # how the model was trained ("supervised", ...)
    precision: str = FLOAT  # "int8" for a file written by `lineside quantize`
    # INT8 files: half-width (logits) of the band about the threshold in which a part's
    # verdict is re-decided by the float model (`Inspector.recheck`); None: never.
    recheck_band_logit: float | None = None


@dataclass
class Verdict:
    passed: bool
    score: float
    defect_class: str | None  # None when passed
    class_probs: dict[str, float]
    # The model grid and its letterbox; for a tiled model None until `heatmap` or `box`
    # is first read (see there).
    grid: np.ndarray | None
    grid_box: Letterbox | None
    latency_ms: float
    threshold: float
    tile_heatmaps: np.ndarray | None = None  # [T, h, w] per tile, tiled models only
    layout: TileLayout | None = None  # where those tiles sit, tiled models only
    # Decided by the float model: its INT8 score lay within the re-check band of the
    # threshold. PASS/FAIL, class and heatmap are then the float model's, its score moved
    # onto the INT8 file's scale (the two thresholds' difference), and `threshold` the
    # INT8 file's, so all of the line's verdicts read against one threshold.
    rechecked: bool = False

    @property
    def heatmap(self) -> np.ndarray:
        """float32 h x w: the model grid over the letterboxed input. For a tiled model:
        the stitched patch grid over a square holding the part at the tiling scale, and
        `box` describes that square, so heatmap_to_image(heatmap, box) still lands on the
        part. Built on first use: the line's verdict and its display heatmap
        (`heatmap_on_image`) come from the tiles directly, and stitching the grid cost a
        kolektorsdd part 2 ms of its 33 (benchmarks/results/latency.md)."""
        if self.grid is None:
            self._stitch_grid()
        return self.grid  # type: ignore[return-value]

    @property
    def box(self) -> Letterbox:
        if self.grid_box is None:
            self._stitch_grid()
        return self.grid_box  # type: ignore[return-value]

    def _stitch_grid(self) -> None:
        if self.tile_heatmaps is None or self.layout is None:
            raise ValueError("a verdict without a heatmap grid must carry its tiles and their layout")
        stride = max(1, self.layout.tile // self.tile_heatmaps.shape[-1])
        self.grid, self.grid_box = stitch_grid(self.tile_heatmaps, self.layout, stride)

    @property
    def label(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def heatmap_on_image(self, size: tuple[int, int] | None = None) -> np.ndarray:
        """The heatmap as float32 over the original image (padding cut away).

        *size* (width, height) maps it straight to a display size (default: the image's
        own H x W), so a GUI showing a downscaled part need not build the full-resolution
        map and shrink it again.
        """
        if self.layout is not None:  # exact stitch from the tiles, not the coarse grid
            canvas = stitch_scaled(self.tile_heatmaps, self.layout)
            out_w, out_h = size or (self.layout.width, self.layout.height)
            if canvas.shape == (out_h, out_w):
                return canvas
            return cv2.resize(canvas, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
        return grid_to_image(self.heatmap, self.box, size)


def grid_to_image(grid: np.ndarray, box: Letterbox, size: tuple[int, int] | None = None) -> np.ndarray:
    """A model-grid heatmap mapped onto the original image, or straight to *size* =
    (width, height) (a display size): the grid is resized to the model input square, the
    part's region cut out and resized once to the output. With size None this is exactly
    `preprocess.heatmap_to_image`; with a display size it skips the full-resolution map
    (for a 5-megapixel camera frame, 20 MB of float32 resized twice per part)."""
    out_w, out_h = size or (box.width, box.height)
    full = cv2.resize(np.asarray(grid, np.float32), (box.size, box.size), interpolation=cv2.INTER_LINEAR)
    new_w, new_h = max(1, round(box.width * box.scale)), max(1, round(box.height * box.scale))
    crop = full[box.pad_y : box.pad_y + new_h, box.pad_x : box.pad_x + new_w]
    return cv2.resize(crop, (int(out_w), int(out_h)), interpolation=cv2.INTER_LINEAR)


def session_options(threads: int = 1, spinning: bool | None = None, profile_prefix: str | None = None):
    """ONNX Runtime options for the line: *threads* intra-op threads, one graph at a time.

    - all graph optimisations (constant folding, Conv+BN+Clip fusion, NCHWc layout);
    - sequential execution, one inter-op thread: the network is a chain, a second pool
      only competes for the same cores;
    - *spinning* (default DEFAULT_SPINNING): whether idle pool threads busy-wait;
    - *profile_prefix*: ONNX Runtime's per-node profiler writes a JSON trace there.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads))
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT warnings about unused initialisers are noise here
    spin = DEFAULT_SPINNING if spinning is None else bool(spinning)
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    return options


def _parse_model_info(meta_json: str | None, path: Path) -> ModelInfo:
    if not meta_json:
        raise ModelFileError(
            f"{path}: this ONNX file is not a Lineside model (no '{METADATA_KEY}' metadata). "
            "Use a model exported by Lineside (`lineside export`)."
        )
    try:
        meta = json.loads(meta_json)
        if meta.get("format") != SUPPORTED_FORMAT:
            raise ModelFileError(
                f"{path}: model format {meta.get('format')!r} is not supported by this version "
                f"of Lineside (expected {SUPPORTED_FORMAT}). Update Lineside or re-export the model."
            )
        class_names = [str(c) for c in meta["class_names"]]
        info = ModelInfo(
            class_names=class_names,
            input_size=int(meta["input_size"]),
            heatmap_stride=int(meta.get("heatmap_stride", 16)),
            threshold=float(meta["threshold"]),
            version=None if meta.get("version") is None else str(meta["version"]),
            reference=meta.get("reference") or None,
            tiling=TilePlan.from_dict(meta.get("tiling")),
            mode=str(meta.get("mode") or DEFAULT_MODE),
            precision=str(meta.get("precision") or FLOAT),
            recheck_band_logit=(None if meta.get("recheck_band_logit") is None
                                else float(meta["recheck_band_logit"])),
        )
    except ModelFileError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ModelFileError(f"{path}: the Lineside metadata in this model is damaged ({exc}).") from exc
    if not class_names or class_names[0] != "ok" or info.input_size <= 0:
        raise ModelFileError(f"{path}: the Lineside metadata in this model is inconsistent.")
    if info.tiling is not None and info.tiling.tile != info.input_size:
        raise ModelFileError(
            f"{path}: the model's tile size ({info.tiling.tile}) differs from its input size "
            f"({info.input_size}); the metadata is inconsistent. Re-export the model."
        )
    return info


def _choose_providers(requested: list[str] | None) -> list[str]:
    import onnxruntime as ort

    if not requested:
        return ["CPUExecutionProvider"]
    available = set(ort.get_available_providers())
    # A station without a GPU still inspects: the CPU is always the last resort.
    chosen = [p for p in requested if p in available and p != "CPUExecutionProvider"]
    return chosen + ["CPUExecutionProvider"]


class Inspector:
    """Loads one Lineside ONNX model and turns part images into verdicts."""

    def __init__(
        self,
        model_path: Path | str,
        threads: int = 1,
        threshold: float | None = None,
        providers: list[str] | None = None,
        *,
        lanes: int = 1,
        spinning: bool | None = None,
        profile_prefix: str | None = None,
    ) -> None:
        """*threads*: intra-op threads of the session. *lanes* > 1: a run of several
        inputs (tiles, views, a batch) is split over that many one-thread sessions run side
        by side instead (`_run_in_lanes`); a single input still takes the main session."""
        import onnxruntime as ort

        self.model_path = Path(model_path)
        path = self.model_path
        if not path.is_file():
            raise ModelFileError(f"{path}: model file not found.")
        if path.stat().st_size == 0:
            raise ModelFileError(f"{path}: the model file is empty (0 bytes).")
        self.threads = max(1, int(threads))
        options = session_options(self.threads, spinning, profile_prefix)
        try:
            self._session = ort.InferenceSession(
                str(path), sess_options=options, providers=_choose_providers(providers)
            )
        except Exception as exc:  # ORT raises its own classes for truncated/garbage files
            raise ModelFileError(
                f"{path}: not a readable ONNX model (damaged, truncated or another kind of file)."
            ) from exc
        self._check_signature(path)
        self.lanes = max(1, int(lanes))
        self._lanes = [ort.InferenceSession(str(path), sess_options=session_options(1, spinning),
                                            providers=_choose_providers(providers))
                       for _ in range(self.lanes)] if self.lanes > 1 else []
        self._pool = ThreadPoolExecutor(self.lanes - 1, thread_name_prefix="lane") if self._lanes else None
        if self._pool is not None:  # idle lane threads go with the inspector
            weakref.finalize(self, self._pool.shutdown, wait=False)
        meta = self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY)
        self.info = _parse_model_info(meta, path)
        self.threshold = self.info.threshold if threshold is None else float(threshold)
        # The float model that re-decides parts within `info.recheck_band_logit` of the
        # threshold (an INT8 file; set by `int8_inspector_for`). None: every verdict is this file's.
        self.recheck: Inspector | None = None

    def _check_signature(self, path: Path) -> None:
        inputs = self._session.get_inputs()
        outputs = {o.name for o in self._session.get_outputs()}
        ok = (
            len(inputs) == 1
            and inputs[0].name == INPUT_NAME
            and inputs[0].type == "tensor(uint8)"
            and len(inputs[0].shape) == 4
            and set(OUTPUT_NAMES) <= outputs
        )
        if not ok:
            got = ", ".join(f"{i.name} {i.type}" for i in inputs)
            raise ModelFileError(
                f"{path}: this ONNX model does not have the Lineside inputs and outputs "
                f"(expects input 'image' uint8 [N,S,S,3] and outputs {', '.join(OUTPUT_NAMES)}; "
                f"has input {got})."
            )

    @property
    def providers(self) -> list[str]:
        return list(self._session.get_providers())

    @property
    def precision(self) -> str:
        return self.info.precision

    @property
    def metadata(self) -> dict:
        """The raw `lineside` metadata entry of the file."""
        return json.loads(self._session.get_modelmeta().custom_metadata_map.get(METADATA_KEY) or "{}")

    def end_profiling(self) -> Path | None:
        """Stop ONNX Runtime's profiler (Inspector(..., profile_prefix=...)): its JSON trace."""
        name = self._session.end_profiling()
        return Path(name) if name else None

    def _run(self, batch: np.ndarray, session=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        try:
            score, probs, heat = (session or self._session).run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        except Exception as exc:
            raise ModelFileError(f"{self.model_path}: the model failed to run ({exc}).") from exc
        n = batch.shape[0]
        out = (
            np.asarray(score, np.float32).reshape(n),
            np.asarray(probs, np.float32).reshape(n, -1),
            np.asarray(heat, np.float32).reshape(n, heat.shape[-2], heat.shape[-1]),
        )
        self._check_finite(*out)
        return out

    def _check_finite(self, scores: np.ndarray, probs: np.ndarray, heat: np.ndarray) -> None:
        """A NaN/inf output is a broken model, never a verdict: NaN >= threshold is False,
        so a NaN score would otherwise PASS every part without anyone noticing."""
        for name, values in (("score", scores), ("class probabilities", probs), ("heatmap", heat)):
            bad = values[~np.isfinite(values)]
            if bad.size:
                kind = "NaN" if np.isnan(bad).any() else "infinite"
                raise ModelFileError(
                    f"{self.model_path}: the model returned an invalid {name} ({kind}); its verdicts "
                    "cannot be trusted. The model file is damaged or was trained/exported badly: "
                    "retrain or re-export it."
                )

    def _run_chunked(self, inputs: list[np.ndarray], session=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """All model inputs of a batch, at most MAX_TILES_PER_RUN per session run
        (LANE_RUN_INPUTS on a lane)."""
        if session is None and self._lanes and len(inputs) > 1:
            return self._run_in_lanes(inputs)
        step = LANE_RUN_INPUTS if self._is_lane(session) else MAX_TILES_PER_RUN
        parts = [self._run(np.stack(inputs[i : i + step]), session) for i in range(0, len(inputs), step)]
        return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))  # type: ignore[return-value]

    def _is_lane(self, session) -> bool:
        return session is not None and any(session is lane for lane in self._lanes)

    def _run_in_lanes(self, inputs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One part's several inputs (or a batch of inputs) shared out between the lanes,
        the results put back in order."""
        results = self._share_out(inputs, self._run_chunked)
        return tuple(np.concatenate([r[k] for r in results]) for k in range(3))  # type: ignore[return-value]

    def _share_out(self, items: list, work) -> list:
        """*items* cut into contiguous near-equal shares, one per lane, `work(share,
        session)` run on all shares at once (ONNX Runtime, OpenCV and NumPy release the
        GIL); the results in the shares' order. One session with two threads splits every
        convolution in two and meets at each of the network's ~60 layers; two one-thread
        sessions meet once. On this project's 2-core machine (benchmarks/results/latency.md,
        INT8 magnetic-tile model) a part of two views took 6.8 ms against 8.7 ms, a batch
        of 16 ran at 290 parts/s against 223; but three kolektorsdd tiles split 2 + 1 and
        one two-thread session was faster (`lineside bench` times both on the station)."""
        shares = [s for s in np.array_split(np.arange(len(items)), min(self.lanes, len(items))) if s.size]
        jobs = [(self._lanes[i], [items[j] for j in share]) for i, share in enumerate(shares)]
        assert self._pool is not None
        futures = [self._pool.submit(work, share, session) for session, share in jobs[1:]]
        return [work(jobs[0][1], jobs[0][0])] + [f.result() for f in futures]

    def _class_of(self, probs: np.ndarray) -> str:
        names = self.info.class_names
        if len(probs) > 1 and len(names) > 1:
            return names[1 + int(np.argmax(probs[1 : len(names)]))]
        return GENERIC_DEFECT

    def _verdict(self, score: float, probs: np.ndarray, heat: np.ndarray | None, box: Letterbox | None,
                 ms: float) -> Verdict:
        names = self.info.class_names
        class_probs = {name: float(p) for name, p in zip(names, probs)}
        passed = score < self.threshold  # reject when score >= threshold (as evaluation)
        defect_class = None if passed else self._class_of(probs)
        return Verdict(passed, score, defect_class, class_probs, heat, box, ms, self.threshold)

    def _pooled_verdict(self, scores: np.ndarray, probs: np.ndarray, heat: np.ndarray,
                        layout: TileLayout, ms: float) -> Verdict:
        """One part from its tiles: the strongest tile speaks for the part (score and
        class), the heatmap is all tiles stitched."""
        best = int(np.argmax(scores))
        verdict = self._verdict(float(scores[best]), probs[best], None, None, ms)
        verdict.tile_heatmaps, verdict.layout = heat, layout
        return verdict

    def inspect(self, image: np.ndarray) -> Verdict:
        return self.inspect_batch([image])[0]

    def model_inputs(self, image: np.ndarray) -> list[np.ndarray]:
        """What the network sees of one part: its tiles, or its single letterbox (the
        same geometry as inspect; for calibration and profiling)."""
        return self._model_inputs(image)[0]

    def _model_inputs(self, image: np.ndarray) -> tuple[list[np.ndarray], Letterbox | TileLayout]:
        """The model inputs for one part: its tiles, or its single letterbox. A grey part
        is cut on its one channel (`grey_channel`: the same inputs, a third of the work)."""
        grey = grey_channel(image)
        source = grey if grey is not None else to_bgr8(image)
        if self.info.tiling is not None:
            tiles, layout = self.info.tiling.tiles(source)
            return [to_bgr8(t) for t in tiles], layout
        square, box = letterbox(source, self.info.input_size)
        return [to_bgr8(square)], box

    def inspect_batch(self, images: list[np.ndarray]) -> list[Verdict]:
        """Inspect several parts in one go (all their tiles together, in chunks);
        latency_ms is the batch time per part. With lanes, the parts are shared out
        between them and each lane letterboxes or tiles its own, so the cutting runs side
        by side too (264-280 against 246-268 parts/s when the calling thread cut them all)."""
        if not images:
            return []
        start = time.perf_counter()
        if self._lanes and len(images) > 1:
            results = self._share_out(images, self._cut_and_run)
        else:
            results = [self._cut_and_run(images, None)]
        verdicts = []
        for (scores, probs, heat), spans, places in results:
            for (a, b), place in zip(spans, places):
                if isinstance(place, TileLayout):
                    verdicts.append(self._pooled_verdict(scores[a:b], probs[a:b], heat[a:b], place, 0.0))
                else:
                    verdicts.append(self._verdict(float(scores[a]), probs[a], heat[a], place, 0.0))
        if self.recheck is not None and self.info.recheck_band_logit is not None:
            verdicts = self._rechecked(images, verdicts, self.info.recheck_band_logit)
        ms = (time.perf_counter() - start) * 1000.0 / len(images)
        for verdict in verdicts:
            verdict.latency_ms = ms
        return verdicts

    def _rechecked(self, images: list[np.ndarray], verdicts: list[Verdict], band: float) -> list[Verdict]:
        """*verdicts* with those whose score lies within *band* (logits) of the threshold
        replaced by the float model's verdicts on the same parts. INT8 moves a score by a
        few tenths of a logit; only a part that close to the threshold can change its
        verdict, and only there does the float model run (training/quantize.py:
        `recheck_band`)."""
        assert self.recheck is not None
        threshold = logit(self.threshold)
        near = [i for i, v in enumerate(verdicts) if abs(logit(v.score) - threshold) <= band]
        if not near:
            return verdicts
        out = list(verdicts)
        # The float score is shown on this file's scale (moved by the difference of the two
        # thresholds in logits), so every verdict of the line reads against one threshold;
        # the decision stays the float model's.
        shift = float(threshold - logit(self.recheck.threshold))
        for i, verdict in zip(near, self.recheck.inspect_batch([images[i] for i in near])):
            score = sigmoid(float(logit(verdict.score)) + shift)
            scale = score / verdict.score if verdict.score > 0 else 0.0  # "ok" first, then the defects
            verdict.class_probs = {name: (1.0 - score if k == 0 else p * scale)
                                   for k, (name, p) in enumerate(verdict.class_probs.items())}
            verdict.score, verdict.threshold, verdict.rechecked = score, self.threshold, True
            out[i] = verdict
        return out

    def _cut_and_run(self, images: list[np.ndarray], session) -> tuple[tuple, list, list]:
        """The network inputs of *images* (letterboxes or tiles) run on *session* (None:
        the main session, or all lanes for one part's several inputs): (outputs, each
        part's span of inputs, each part's letterbox or tile layout)."""
        inputs: list[np.ndarray] = []
        spans, places = [], []
        for image in images:
            part_inputs, place = self._model_inputs(image)
            spans.append((len(inputs), len(inputs) + len(part_inputs)))
            inputs.extend(part_inputs)
            places.append(place)
        return self._run_chunked(inputs, session), spans, places

    def inspect_file(self, path: Path | str) -> Verdict:
        return self.inspect(read_image(path))

    def warmup(self) -> None:
        """Run once on a blank input so the first real part is not slowed by allocation."""
        size = self.info.input_size
        blank = np.zeros((1, size, size, 3), np.uint8)
        for session in [self._session, *self._lanes]:
            self._run(blank, session)
        if self.recheck is not None:
            self.recheck.warmup()


def load_inspector_for_project(
    project: "Project", version: str | None = None, threads: int | None = None
) -> tuple[Inspector, "ModelVersion"]:
    """The project's production model (or *version*) ready to inspect.

    Precision, threads and lanes are what `lineside bench` chose for this machine
    (project settings "precision", "threads" and "lanes"); *threads* given here wins,
    with one lane. An INT8 choice uses `model.int8.onnx` with the threshold re-chosen for
    it at quantisation; when that file is missing or was made from another model.onnx,
    the float model is used and a warning logged.
    """
    if version is None:
        model = project.production_model()
        if model is None:
            raise LinesideError(
                "no production model: deploy one with `lineside deploy PROJECT VERSION` "
                "(or pass --model VERSION)."
            )
    else:
        model = project.model(version)  # a LinesideError naming the known versions
    precision, threads, lanes = runtime_settings(project, threads)
    return inspector_for_model(model, precision, threads, lanes), model


def runtime_settings(project: "Project", threads: int | None = None) -> tuple[str, int, int]:
    """(precision, threads, lanes) the project chose for this machine; *threads* given
    here wins, with one lane. A plant station keeps them with its local model copy, to
    load it the same way offline."""
    lanes = 1
    if threads is None:
        threads = _int_setting(project.get_setting("threads"), 1)
        lanes = _int_setting(project.get_setting("lanes"), 1)
    return (INT8 if project.get_setting("precision") == INT8 else FLOAT), threads, lanes


def inspector_for_model(model: "ModelVersion", precision: str = FLOAT, threads: int = 1, lanes: int = 1) -> Inspector:
    """*model* (its folder: the project's, or a station's local copy) ready to inspect."""
    if precision == INT8:
        # The INT8 file's own threshold: re-chosen on its scores by the trainer's rule.
        int8 = int8_inspector_for(model, threads, lanes)
        if int8 is not None:
            return int8
    # The project's threshold wins over the one baked into the file: it may have been
    # tuned after the export.
    return Inspector(model.onnx_path, threads=threads, threshold=model.threshold, lanes=lanes)


def _int_setting(value: object, default: int) -> int:
    try:
        return max(1, int(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def file_sha256(path: Path | str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def int8_inspector_for(model: "ModelVersion", threads: int = 1, lanes: int = 1) -> Inspector | None:
    """The model's INT8 file ready to inspect, if it exists and was quantised from the
    model's current model.onnx; None (with a logged warning) otherwise, so the caller
    falls back to float. A file with a re-check band gets the float model beside it for
    the parts near the threshold (`Inspector.recheck`)."""
    path = model.path / INT8_FILENAME
    if not path.is_file():
        log.warning("the project chose INT8, but model %s has no %s (run `lineside quantize`); "
                    "using the float model", model.version, INT8_FILENAME)
        return None
    try:
        inspector = Inspector(path, threads=threads, lanes=lanes)
        source = inspector.metadata.get("source_sha256")
    except LinesideError as exc:
        log.warning("%s cannot be used (%s); using the float model", path, exc)
        return None
    if inspector.precision != INT8 or source != file_sha256(model.onnx_path):
        log.warning("%s was not made from model %s's current model.onnx; using the float model "
                    "(run `lineside quantize` again)", path, model.version)
        return None
    if inspector.info.recheck_band_logit is not None:
        # Parts within the band of the threshold get the float verdict (the project's threshold).
        inspector.recheck = Inspector(model.onnx_path, threads=threads, threshold=model.threshold, lanes=lanes)
    return inspector
