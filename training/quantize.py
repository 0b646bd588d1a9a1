"""Static INT8 quantisation of a trained model, offered per model and refused unless it
passes its gate (`lineside quantize PROJECT VERSION`).

A workstation feature: ONNX Runtime's quantiser needs the `onnx` package (the train
extra). No torch. The station only *runs* the INT8 file (`model.int8.onnx`, beside
`model.onnx`), which obeys the same Lineside contract: uint8 image in, score, class
probabilities and heatmap out, the `lineside` metadata inside.

How:
- QDQ format, per-channel INT8 weights, UINT8 activations (the u8s8 kernels of x86),
  MinMax calibration on the project's own TRAIN parts, OK and defective, cut exactly as
  the line cuts them (letterbox or tiles: `Inspector.model_inputs`).
- Weights in 7 bits (`reduce_range`): x86 CPUs without VNNI (AVX2 only, common in shop
  PCs) add pairs of u8 x s8 products in 16 bits, which saturate with 8-bit weights, so
  the same file would judge otherwise on the station than where it was gated
  (docs/adr/0016).
- Then each quantised convolution's bias is corrected for the mean shift that rounding
  its weights put into its output, one convolution at a time, on the same calibration
  inputs (`training.bias_correction`). On magnetic tile this turned the float-to-stride-2
  plan from refused (98.59 % agreement) to passed (99.72 %); its session run is a third
  shorter than the float-to-stride-16 plan's, which passed before (7.2 against 10.9 ms).
- Other calibrations, measured on one trained model of each dataset (gate figures over
  the validation and training parts, same calibration inputs) and not taken:
  MinMax with a moving average over the calibration batches (ORT's CalibMovingAverage)
  went both ways: on magnetic tile's full plan 0 validation verdicts changed against 1
  and the largest score change fell from 0.27 to 0.18, on kolektorsdd's full plan it
  rose from 0.27 to 0.34 (every verdict agreed under both). The histogram calibrations
  (Percentile, Entropy) keep every activation of every calibration input: with 256
  288-px inputs the process passed 24 GB and was killed.
- Convolutions, their ReLU6 (Clip) and residual additions only. The stem convolution (3 input channels:
  slower in INT8 than in float) and the last convolution (the patch classifier that
  writes the logits, or the anomaly model's last feature layer) stay float, as does
  everything that does not feed the last convolution: pooling, softmax, sigmoid, the
  memory-bank distances, the part-wide term, a combined model's sums (`float_nodes`).
- Mixed precision by PLANS, fastest first: all of the backbone in INT8, then the
  high-resolution stages kept in float (where this network's INT8 error arises), down
  to the stride-32 stage alone in INT8. Each float part ends at a block boundary, where
  the tensor converted to INT8 is narrowest. The first plan that passes the gate is written;
  none, and the model is refused.
- The BGR->RGB flip of the input is folded into the stem's weights (exact).

The gate. The 1e-4 parity check of a float export cannot hold for INT8; instead, on the
model's held-out parts (the validation split; a good-only model also every labeled
defect, as its trainer holds them out):
- the INT8 threshold is the float threshold moved by the median change INT8 made to the
  scores of the judged parts nearest it (in logits), so the INT8 model keeps the float model's operating
  point. Not re-chosen from the INT8 scores with the trainer's rule: that rule puts the
  threshold in the gap above the highest OK scores, and one OK part's INT8 error moves
  it. On kolektorsdd one part moved from logit -3.1 to -1.1 and the re-chosen threshold
  by 3 logits, which the held-out parts did not see (they all agreed) and 3.6 % of the
  test parts did;
- PASS/FAIL verdicts, each model at its own threshold, agree on >= 99.5 % of the parts,
  and also on >= 99.5 % of the training parts: agreement between two versions of one
  network is numerical fidelity and needs no held-out data, while a validation split of
  a few dozen parts cannot resolve 99.5 % at all (10 parts that all agree are consistent
  with a true agreement of 74 %);
- the *expected* disagreement is at most 0.5 % too: every held-out part's float score
  moved by every change the INT8 model made to any of the judged parts, held-out or
  training (in logits), each model at its own threshold (`expected_disagreement`).
  Counted flips can be none because the judged parts happen to lie far from the
  threshold while the line's parts do not; the smoothed rate counts how many held-out
  parts lie within a change INT8 made elsewhere;
- AUROC is not more than 0.002 below the float model's (a higher one is no harm).
Fail any and nothing is written. Pass, and the file is written atomically and the gate's
figures go into `model.json` under "int8".

The float re-check (docs/adr/0015). A passed file also carries a band about its threshold
(`recheck_band`, in logits: the largest change INT8 made, beyond the threshold's shift,
to a judged part near the threshold). At the line a part whose INT8 score lies within it
is run again by the float model and gets the float verdict (`Inspector.recheck`): only
there can INT8 change a verdict, and only there does a part cost both runs. The gate's
record states the band, the share of held-out parts in it and the expected disagreement
with it.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from app.core.atomic import atomic_path, write_text
from app.core.errors import LinesideError, NotEnoughDataError
from app.core.evaluation import auroc
from app.core.operating_point import DEFAULT_FALSE_REJECT_TARGET, logit, sigmoid, operating_point
from app.core.project import HELD_OUT_SPLITS, Project
from app.core.records import OK, ModelVersion
from app.core.runtime import INT8, INT8_FILENAME, METADATA_KEY, Inspector, file_sha256
from training.bias_correction import correct_biases

# The gate (see the module docstring).
MIN_AGREEMENT = 0.995
MAX_AUROC_DROP = 0.002
CHANGE_FLOOR = 1e-6  # score units; a smaller INT8 change is float32 round-off (expected_disagreement)
NEAR_PARTS = 20  # at least this many parts nearest the threshold lend their INT8 changes
# Calibration: this many train parts at most (every class represented), fed in batches.
# The bias correction is a mean per channel: more parts, a steadier mean. On magnetic
# tile (float-to-stride-2 plan) 256 parts against 64 took INT8's typical change to a
# validation part's logit from 0.138 to 0.114 (90th percentile 0.50 to 0.38) and the
# expected disagreement from 0.14 % to 0.11 %, for 58 s of correction against 17 s.
CALIBRATION_PARTS = 256
CALIBRATION_MAX_INPUTS = 256  # tiles of tiled parts count one each
CALIBRATION_BATCH = 8
JUDGE_BATCH = 8
# Clip (the network's ReLU6) too: quantised with its convolution, the convolution's output
# takes the clipped range (0..6) and ONNX Runtime folds the Clip away. Left out, every
# convolution kept its own wider pre-clip range and a DequantizeLinear -> QuantizeLinear
# pair between it and the next one converted every activation twice: on magnetic tile
# the full-INT8 session took 8.3 ms against 5.1 ms with Clip quantised (float 9.5 ms).
OP_TYPES = ("Conv", "Add", "Clip")
MAX_TRAIN_PARTS = 1000  # training parts judged for the second agreement figure (at most)


class QuantizeRefused(LinesideError):
    """The INT8 model failed its gate; nothing was written. .record holds the figures."""

    def __init__(self, message: str, record: dict):
        super().__init__(message)
        self.record = record


@dataclass(frozen=True)
class Gate:
    min_agreement: float = MIN_AGREEMENT
    max_auroc_drop: float = MAX_AUROC_DROP

    def failures(self, agreement: float, auroc_float: float, auroc_int8: float,
                 agreement_train: float | None = None, expected: float | None = None) -> list[str]:
        out = []
        if expected is not None and not expected <= 1.0 - self.min_agreement:
            out.append(f"verdicts would disagree on {expected:.2%} of parts like these (each part's score moved by "
                       f"the INT8 changes seen; at most {1.0 - self.min_agreement:.1%})")
        if not agreement >= self.min_agreement:
            out.append(f"verdicts agree on {agreement:.2%} of the held-out parts (needs {self.min_agreement:.1%})")
        if agreement_train is not None and not agreement_train >= self.min_agreement:
            out.append(f"verdicts agree on {agreement_train:.2%} of the training parts (needs {self.min_agreement:.1%})")
        if np.isfinite(auroc_float) and not auroc_int8 >= auroc_float - self.max_auroc_drop:
            out.append(f"AUROC {auroc_int8:.4f} against {auroc_float:.4f} in float "
                       f"(may drop by {self.max_auroc_drop:g} at most)")
        return out


@dataclass
class QuantizeResult:
    path: Path
    record: dict = field(default_factory=dict)


def _onnx():
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization  # noqa: F401
    except ImportError as exc:
        raise LinesideError(
            "INT8 quantisation needs the 'onnx' package, which comes with the Workstation edition "
            "(pip install 'lineside[train]'); a Station runs an INT8 model quantised on a workstation."
        ) from exc
    return quantization


# -- calibration data -----------------------------------------------------------------

def calibration_parts(project: Project, limit: int = CALIBRATION_PARTS) -> list[tuple]:
    """Up to *limit* labeled TRAIN parts, every verdict represented, the same on every run:
    round-robin over the verdicts, each in image order."""
    by_verdict: dict[str, list] = {}
    for record, label in project.labeled(split="train"):
        by_verdict.setdefault(label.verdict, []).append((record, label))
    queues = [by_verdict[v] for v in sorted(by_verdict, key=lambda v: (v != OK, v))]
    chosen = []
    while len(chosen) < limit and any(queues):
        for queue in queues:
            if queue and len(chosen) < limit:
                chosen.append(queue.pop(0))
    return chosen


def calibration_inputs(project: Project, inspector: Inspector, limit: int = CALIBRATION_PARTS,
                       max_inputs: int = CALIBRATION_MAX_INPUTS) -> list[np.ndarray]:
    """The network inputs (letterboxes or tiles) of the calibration parts."""
    inputs: list[np.ndarray] = []
    for record, _ in calibration_parts(project, limit):
        inputs += inspector.model_inputs(project.load_image(record.id))
    if not inputs:
        raise NotEnoughDataError("No labeled training parts to calibrate the INT8 model on: train a model first.")
    if len(inputs) > max_inputs:  # evenly spread, so every part keeps some tiles
        keep = np.linspace(0, len(inputs) - 1, max_inputs).round().astype(int)
        inputs = [inputs[i] for i in keep]
    return inputs


def calibration_reader(inputs: list[np.ndarray], batch: int = CALIBRATION_BATCH):
    """An onnxruntime CalibrationDataReader over *inputs* (uint8 S x S x 3 each)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([np.stack(inputs[i:i + batch]) for i in range(0, len(inputs), batch)])

        def get_next(self):
            chunk = next(self._batches, None)
            return None if chunk is None else {"image": chunk}

    return _Reader()


# -- graph preparation (exact in float) ------------------------------------------------------

def _arrays(model) -> dict:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _replace_initializer(model, name: str, value: np.ndarray) -> None:
    from onnx import numpy_helper

    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name == name:
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(value.astype(np.float32), name))
            return
    raise KeyError(name)


def _producers(model) -> dict:
    """Tensor name -> the node that writes it."""
    return {out: node for node in model.graph.node for out in node.output}


def _consumers(model) -> dict[str, list]:
    out: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def drop_channel_flip(model) -> bool:
    """The exported graph flips BGR to RGB (a Slice with step -1 on the channel axis)
    before a scalar normalisation and the stem convolution; reversing the stem's input
    channels instead is exact and saves a pass over the input. False if the graph does
    not have that shape."""
    arrays, consumers = _arrays(model), _consumers(model)
    for node in model.graph.node:
        if node.op_type != "Slice" or len(node.input) < 5:
            continue
        axes, steps = arrays.get(node.input[3]), arrays.get(node.input[4])
        if axes is None or steps is None or list(np.ravel(steps)) != [-1] or int(np.ravel(axes)[0]) not in (-1, 3):
            continue
        chain, name = [], node.output[0]
        while True:  # Transpose / Sub / Div by scalars, then the stem Conv
            users = consumers.get(name, [])
            if len(users) != 1:
                return False
            user = users[0]
            if user.op_type == "Conv":
                break
            if user.op_type not in ("Transpose", "Sub", "Div", "Mul", "Add") or (
                    user.op_type != "Transpose" and np.size(arrays.get(user.input[1], np.zeros(2))) != 1):
                return False
            chain.append(user)
            name = user.output[0]
        transposes = [n for n in chain if n.op_type == "Transpose"]
        if len(transposes) != 1 or user.input[1] not in arrays:
            return False
        weights = arrays[user.input[1]]
        _replace_initializer(model, user.input[1], weights[:, ::-1].copy())
        first = chain[0]
        first.input[0] = node.input[0]
        model.graph.node.remove(node)
        return True
    return False


# -- the INT8 file ----------------------------------------------------------------------

# Mixed precision, tried fastest first; the first plan that passes the gate is written.
# Measured on magnetic-tile (benchmarks/results/latency.md): the high-resolution stages
# (stride <= 4: the stem and the first blocks) carry most of the INT8 error of this
# network, the deep stages almost none. One supervised model, the full plan with one
# stage more kept in float, bias-corrected, |INT8 - float| in logits over its 355
# validation parts (median / 90th percentile): none 0.22 / 0.68; block 0 (stride 2)
# 0.15 / 0.47 at +0.3 ms of 4.2; blocks 1-2 0.16 / 0.58; blocks 3-4 0.22 / 0.72; blocks
# 5-10 0.23 / 0.68; blocks 11-15 0.21 / 0.62 at +2.0 ms; the head 0.22 / 0.69.
PLANS = (
    ("full", 0),  # every Conv/Add in INT8 except the stem and the last convolution
    ("float-to-stride-2", 2),  # + the stride-2 stage (block 0) in float
    ("float-to-stride-4", 3),  # + every block before the 3rd stride-2 convolution in float
    ("float-to-stride-8", 4),  # + every node before the 4th stride-2 convolution in float
    # Only the stride-32 stage and the head in INT8. On magnetic tile the plans above
    # failed by one or two validation verdicts (99.44 % agreement), this one passed (99.72 %,
    # AUROC 0.0019 lower) and still ran a part in 11.1 ms against 13.4 ms float.
    ("float-to-stride-16", 5),
)


def _stride(node) -> int:
    import onnx

    for a in node.attribute:
        if a.name == "strides":
            return max(onnx.helper.get_attribute_value(a) or [1])
    return 1


def _kernel(node) -> tuple[int, ...]:
    import onnx

    for a in node.attribute:
        if a.name == "kernel_shape":
            return tuple(onnx.helper.get_attribute_value(a) or ())
    return ()


def _expansion_before(model, conv) -> list:
    """The 1x1 expansion convolution (and its ReLU6) that feeds *conv* directly, if any.

    A plan's float part ends at the block boundary, not inside the block: the tensor
    between an expansion and its stride-2 depthwise convolution is six times wider than
    the block's input, and converting it from float to INT8 there cost more than the
    INT8 convolutions saved (kolektorsdd, 320-px tiles: the QuantizeLinear of block 1's
    expanded tensor and the layout reorder before it took 6.9 of a part's 30.6 ms)."""
    producers = _producers(model)
    chain = []
    node = producers.get(conv.input[0])
    if node is not None and node.op_type == "Clip":
        chain.append(node)
        node = producers.get(node.input[0])
    if node is not None and node.op_type == "Conv" and _kernel(node) == (1, 1):
        return chain + [node]
    return []


def _ancestors(model, node) -> set[str]:
    """Names of the nodes *node* depends on."""
    producers = _producers(model)
    seen: set[str] = set()
    todo = [producers[i] for i in node.input if i in producers]
    while todo:
        n = todo.pop()
        if n.name not in seen:
            seen.add(n.name)
            todo.extend(producers[i] for i in n.input if i in producers)
    return seen


def float_nodes(model, stride2_count: int) -> list[str] | None:
    """Node names kept in float by a plan: the first and last Conv, and with
    *stride2_count* > 0 every Conv/Add before the stride2_count-th stride-2 Conv, except
    the expansion that feeds it (`_expansion_before`): the float part ends at a block.
    None when the plan does not apply (the network has fewer stride-2 convolutions, or
    nothing would be left to quantise)."""
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    if not convs:
        return None
    keep = {convs[0].name, convs[-1].name}
    # Everything that does not feed the last convolution stays float: the head's tail (a
    # good-only model's nearest-neighbour distance is |f|^2 + min(...), an Add; its
    # part-wide term and a combined model's sums of z are Adds too). Quantised, a score
    # would pass through 256 levels on its way out.
    feeds_last = _ancestors(model, convs[-1])
    keep |= {n.name for n in model.graph.node if n.op_type in OP_TYPES and n.name not in feeds_last}
    if stride2_count > 0:
        seen = 0
        for node in model.graph.node:
            if node.op_type == "Conv" and _stride(node) >= 2:
                seen += 1
                if seen >= stride2_count:
                    keep -= {n.name for n in _expansion_before(model, node)}
                    break
            if node.op_type in OP_TYPES:
                keep.add(node.name)
        else:
            return None
    # A Clip whose convolution stays float stays float with it: quantised alone it would
    # only add a QuantizeLinear/DequantizeLinear pair around itself.
    kept_outputs = {o for n in model.graph.node if n.name in keep for o in n.output}
    keep |= {n.name for n in model.graph.node if n.op_type == "Clip" and n.input and n.input[0] in kept_outputs}
    quantisable = {n.name for n in model.graph.node if n.op_type in OP_TYPES}
    return sorted(keep) if quantisable - keep else None


def prepare(float_path: Path, folder: Path):
    """The float model ready to quantise (ORT's pre-processing: shape inference and
    basic graph optimisation; the channel flip folded): (path, onnx model, flip folded)."""
    _onnx()
    import onnx
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = Path(folder) / "prepared.onnx"
    quant_pre_process(str(float_path), str(prepared))
    model = onnx.load(str(prepared))
    flipped = drop_channel_flip(model)
    taken = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):  # plans name the nodes they keep in float
        if not node.name:
            node.name = next(name for name in (f"{node.op_type}_{i}_{k}" for k in range(len(taken) + 1))
                             if name not in taken)
            taken.add(node.name)
    onnx.save(model, str(prepared))
    return prepared, model, flipped


def applicable_plans(model, wanted: tuple[str, ...] | None = None) -> list[tuple[str, list[str]]]:
    """(plan, float nodes) for the plans that apply to this network, each keeping more in
    float than the one before."""
    out: list[tuple[str, list[str]]] = []
    for name, count in PLANS:
        if wanted is not None and name not in wanted:
            continue
        nodes = float_nodes(model, count)
        if nodes is not None and (not out or set(nodes) > set(out[-1][1])):
            out.append((name, nodes))
    return out


def quantize_file(prepared: Path, out_path: Path, inputs: list[np.ndarray], keep_float: list[str],
                  correct: bool = True, on_layer: Callable[[int, int], None] = lambda done, total: None) -> dict:
    """Write the QDQ INT8 version of the *prepared* float model to *out_path* (metadata
    copied), calibrated on *inputs* (uint8 S x S x 3 network inputs), *keep_float* in float,
    its convolutions' biases corrected on the same inputs unless *correct* is False
    (`training.bias_correction`; *on_layer(done, total)* after each convolution). Returns
    the bias correction's summary."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    quantize_static(
        str(prepared), str(out_path), calibration_reader(inputs), quant_format=QuantFormat.QDQ,
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        op_types_to_quantize=list(OP_TYPES), nodes_to_exclude=list(keep_float),
        calibrate_method=CalibrationMethod.MinMax, reduce_range=True,
    )
    if not correct:
        return {"layers": 0}
    return correct_biases(prepared, out_path, inputs, threads=os.cpu_count() or 1, on_layer=on_layer)


def _quarterly(report: Callable[[int, int], None]) -> Callable[[int, int], None]:
    """*report* at a quarter, half, three quarters and all of the work: a minute of bias
    correction says it is moving without a line per convolution."""
    def on_step(done: int, total: int) -> None:
        if any(done == -(-total * q // 4) for q in (1, 2, 3, 4)):
            report(done, total)
    return on_step


def _set_metadata(path: Path, metadata: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata)})
    with atomic_path(path) as tmp:
        tmp.write_bytes(model.SerializeToString())


# -- the gate ---------------------------------------------------------------------------

def held_out_parts(project: Project, model: ModelVersion) -> list[tuple]:
    """(record, verdict) of the parts the gate judges: the validation split, and for a
    good-only model also every labeled defect (it never learned from any). A good-only
    model's bank holds the validation OK parts (ADR 0007): there the gate compares INT8
    with float on parts the model knows, which is what it checks (the two files agree),
    while the model's own false-reject figures come from its out-of-fold scores."""
    held = [(r, lab.verdict) for r, lab in project.labeled(split="val")]
    if str(model.metrics.get("mode") or model.report.get("mode")) == "good-only":
        seen = {r.id for r, _ in held}
        held += [(r, lab.verdict) for r, lab in project.labeled()
                 if lab.verdict != OK and r.id not in seen and r.split not in HELD_OUT_SPLITS]
    return held


def scores_of(inspector: Inspector, images: list[np.ndarray]) -> np.ndarray:
    out = []
    for i in range(0, len(images), JUDGE_BATCH):
        out += [v.score for v in inspector.inspect_batch(images[i:i + JUDGE_BATCH])]
    return np.asarray(out, np.float64)


def _near_threshold(logits: np.ndarray, threshold_logit: float) -> np.ndarray:
    """Indices of the parts nearest the threshold: a quarter of them, at least NEAR_PARTS."""
    return np.argsort(np.abs(logits - threshold_logit))[:min(logits.size, max(NEAR_PARTS, logits.size // 4))]


def _evenly_spaced(n: int, at_most: int) -> np.ndarray:
    """Indices of at most *at_most* of n items, evenly spaced (all of them if n is no more)."""
    return np.arange(n) if n <= at_most else np.linspace(0, n - 1, at_most).astype(int)


def expected_disagreement(float_scores: np.ndarray, int8_scores: np.ndarray, float_threshold: float,
                          int8_threshold: float, max_parts: int = 2000,
                          parts: np.ndarray | None = None, band: float | None = None) -> float:
    """Share of verdicts expected to differ when any part's INT8 score can move the way the
    judged parts nearest the threshold moved: the mean over parts i and near parts j of
    [float verdict of part i] != [part i's float logit + part j's INT8 change >= the INT8
    threshold's logit]. Logits, because a score's INT8 error is not the same size at 0.5
    as at 0.99; the changes of the parts nearest the threshold (a quarter of them, at
    least NEAR_PARTS), because near 0 or 1 a tiny change is a large one in logits and
    says nothing about the parts that can flip.

    *parts*: the float scores of the parts whose verdicts are at stake (default: the
    judged parts themselves). The gate passes the held-out parts: the line's parts lie
    about the threshold as parts the model never learned from do, while training parts
    lie far from it (the model has fitted them), so counted among the parts at stake
    they only dilute the rate. On one magnetic-tile model the estimate over validation
    and training parts was 0.06 %, over the validation parts alone 0.16 %, and 3 of the
    404 test parts (0.74 %) changed their verdict. Every judged part still lends its
    change: how far INT8 moves a score is a property of the two files, not of the part's
    split. At most *max_parts* parts of either kind (evenly spaced): the estimate needs
    no more. *band*: the line's float re-check band (`recheck_band`); a moved score that
    lands within it of the INT8 threshold gets the float verdict."""
    keep = _evenly_spaced(len(float_scores), max_parts)
    # Within float32 round-off of a score a change is none: else a part whose score *is*
    # the threshold (the rule sets it on a part's score; saturated scores tie) flips on noise.
    lf, change = _changes(np.asarray(float_scores)[keep], np.asarray(int8_scores)[keep])
    t_float = logit(float_threshold)
    near = _near_threshold(lf, t_float)
    at_stake = lf
    if parts is not None:
        at_stake = logit(np.asarray(parts, np.float64)[_evenly_spaced(len(parts), max_parts)])
    float_says = at_stake >= t_float
    int8_logit = at_stake[:, None] + change[near][None, :]
    differs = (int8_logit >= logit(int8_threshold)) != float_says[:, None]
    if band is not None:  # the line re-decides these parts with the float model
        differs &= np.abs(int8_logit - logit(int8_threshold)) > band
    return float(np.mean(differs))


def _changes(float_scores: np.ndarray, int8_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(float logits, INT8 change in logits) of the parts; a change within float32
    round-off of a score is none (CHANGE_FLOOR)."""
    f = np.asarray(float_scores, np.float64)
    q = np.asarray(int8_scores, np.float64)
    lf = logit(f)
    return lf, np.where(np.abs(q - f) < CHANGE_FLOOR, 0.0, logit(q) - lf)


def recheck_band(float_scores: np.ndarray, int8_scores: np.ndarray, float_threshold: float,
                 shift: float) -> float:
    """Half-width, in INT8 logits, of the band about the INT8 threshold in which the line
    re-decides a part with the float model (`Inspector.recheck`): the largest amount by
    which INT8 moved the score of one of the judged parts nearest the threshold (a quarter
    of them, at least NEAR_PARTS) beyond the threshold's own shift.

    Why this width: a part whose INT8 logit lies farther than that from the INT8 threshold
    gets the float verdict unless INT8 moved it by more than it moved every one of those n
    parts, and for a part drawn like them that happens with probability at most 1/(n+1)
    (the rank argument of conformal prediction). Outside that, a part's verdict can only
    differ from float inside the band, where float decides it. What it costs is the share
    of parts inside the band, each run twice; far from the threshold nothing changes."""
    lf, change = _changes(float_scores, int8_scores)
    near = _near_threshold(lf, float(logit(float_threshold)))
    return float(np.max(np.abs(change[near] - shift)))


def gate_figures(float_scores: np.ndarray, int8_scores: np.ndarray, defect: np.ndarray,
                 float_threshold: float, target: float, gate: Gate, source: str,
                 train_scores: tuple[np.ndarray, np.ndarray] | None = None) -> dict:
    """Everything the gate decides on, as stored in model.json["int8"]. *train_scores*:
    (float, INT8) scores of the training parts, for the second agreement figure."""
    if not defect.any() or defect.all():
        raise NotEnoughDataError("The INT8 gate needs OK and defective parts in the validation split: "
                                 "label a few more of each.")
    every_float, every_int8 = float_scores, int8_scores
    if train_scores is not None and len(train_scores[0]):
        every_float = np.concatenate([float_scores, train_scores[0]])
        every_int8 = np.concatenate([int8_scores, train_scores[1]])
    # The median change of the parts nearest the threshold: the ones whose verdicts it decides.
    lf = logit(every_float)
    near = _near_threshold(lf, float(logit(float_threshold)))
    shift = float(np.median(logit(every_int8[near]) - lf[near]))
    int8_threshold = sigmoid(float(logit(float_threshold)) + shift)
    point = operating_point(int8_scores[~defect], int8_scores[defect], target, source, threshold=int8_threshold)
    agree = (float_scores >= float_threshold) == (int8_scores >= point.threshold)
    a_float, a_int8 = auroc(defect, float_scores), auroc(defect, int8_scores)
    train_agree = None
    if train_scores is not None and len(train_scores[0]):
        train_agree = (train_scores[0] >= float_threshold) == (train_scores[1] >= point.threshold)
    expected = expected_disagreement(every_float, every_int8, float_threshold, point.threshold,
                                     parts=float_scores)
    band = recheck_band(every_float, every_int8, float_threshold, shift)
    int8_offset = logit(int8_scores) - logit(point.threshold)
    rechecked = np.abs(int8_offset) <= band
    agree_rechecked = agree | rechecked
    failures = gate.failures(float(agree.mean()), a_float, a_int8,
                             None if train_agree is None else float(train_agree.mean()), expected)
    return {
        "agreement_train": None if train_agree is None else float(train_agree.mean()),
        "n_train_parts": 0 if train_agree is None else int(train_agree.size),
        "passed": not failures, "failures": failures, "gate": asdict(gate),
        "n_parts": int(defect.size), "n_ok": int((~defect).sum()), "n_defect": int(defect.sum()),
        "agreement": float(agree.mean()), "disagreements": int((~agree).sum()),
        "expected_disagreement": expected,
        "auroc_float": float(a_float), "auroc_int8": float(a_int8), "auroc_drop": float(a_float - a_int8),
        "max_abs_score_diff": float(np.max(np.abs(float_scores - int8_scores))),
        "threshold_float": float(float_threshold), "threshold": float(point.threshold),
        "threshold_shift_logit": shift,
        "operating_point": point.to_dict(),
        # The line re-decides parts within the band of the INT8 threshold in float (Inspector.recheck).
        "recheck_band_logit": band, "recheck_share": float(rechecked.mean()),
        "agreement_rechecked": float(agree_rechecked.mean()),
        "expected_disagreement_rechecked": expected_disagreement(
            every_float, every_int8, float_threshold, point.threshold, parts=float_scores, band=band),
    }


def _latency(inspectors: list[Inspector], images: list[np.ndarray], rounds: int = 3) -> list[float]:
    """Median ms per part, one part at a time, the inspectors taking turns."""
    times: list[list[float]] = [[] for _ in inspectors]
    for inspector in inspectors:
        inspector.inspect(images[0])  # warm-up
    for r in range(rounds):
        for i, image in enumerate(images):
            order = range(len(inspectors)) if (i + r) % 2 == 0 else reversed(range(len(inspectors)))
            for k in order:
                start = time.perf_counter()
                inspectors[k].inspect(image)
                times[k].append((time.perf_counter() - start) * 1000.0)
    return [float(np.median(t)) for t in times]


def quantize_model(project: Project, version: str, gate: Gate = Gate(),
                   calibration: list[np.ndarray] | None = None, plans: tuple[str, ...] | None = None,
                   on_progress: Callable[[str], None] = lambda message: None) -> QuantizeResult:
    """Quantise *version*, gate it, and write model.int8.onnx + model.json["int8"] if a
    plan passes; QuantizeRefused (nothing written) if none does. *calibration* replaces
    the project's calibration inputs (tests use it to break the calibration on purpose);
    *plans* limits the mixed-precision plans tried (default: all of PLANS, in order)."""
    _onnx()
    model = project.model(version)
    float_path = model.onnx_path
    threads = os.cpu_count() or 1
    reference = Inspector(float_path, threads=threads, threshold=model.threshold)
    n_parts = None
    if calibration is None:
        on_progress("collecting calibration parts from the training split")
        parts = calibration_parts(project)
        n_parts = len(parts)
        calibration = calibration_inputs(project, reference)
    held = held_out_parts(project, model)
    if not held:
        raise NotEnoughDataError(f"Model {version} has no validation parts to check an INT8 version on.")
    target = float(model.metrics.get("false_reject_target") or project.get_setting("false_reject_target")
                   or DEFAULT_FALSE_REJECT_TARGET)
    images = [project.load_image(r.id) for r, _ in held]
    defect = np.array([v != OK for _, v in held])
    float_scores = scores_of(reference, images)
    train_images = [project.load_image(r.id) for r, _ in project.labeled(split="train")[:MAX_TRAIN_PARTS]]
    float_train = scores_of(reference, train_images)
    source = "the float threshold moved by the median INT8 change in score"
    out = model.path / INT8_FILENAME
    work = Path(tempfile.mkdtemp(prefix=".int8-", dir=model.path))
    tried: list[dict] = []
    try:
        prepared, graph, flipped = prepare(float_path, work)
        candidates = applicable_plans(graph, plans)
        if not candidates:
            raise LinesideError(f"Model {version} has nothing an INT8 plan would quantise; it stays float.")
        for plan, keep_float in candidates:
            candidate = work / f"{plan}.onnx"
            on_progress(f"plan {plan}: quantising with {len(calibration)} calibration inputs "
                        "and correcting its convolutions' biases on them")
            t0 = time.perf_counter()
            corrected = quantize_file(prepared, candidate, calibration, keep_float,
                                      on_layer=_quarterly(lambda done, total, plan=plan: on_progress(
                                          f"plan {plan}: biases of {done} of {total} convolutions corrected")))
            quantise_s = time.perf_counter() - t0
            recipe = {"format": "QDQ", "weights": "int8 per channel", "activations": "uint8",
                      "calibration_method": "minmax", "bias_correction": corrected,
                      "op_types": list(OP_TYPES), "plan": plan,
                      "kept_float": keep_float, "channel_flip_folded": flipped}
            int8 = Inspector(candidate, threads=threads, threshold=1.0)
            int8_scores = scores_of(int8, images)
            figures = gate_figures(float_scores, int8_scores, defect, model.threshold, target, gate, source,
                                   (float_train, scores_of(int8, train_images)))
            train_note = ("" if figures["agreement_train"] is None else
                          f" ({figures['agreement_train']:.2%} of {len(train_images)} training parts)")
            on_progress(f"plan {plan}: {len(held)} held-out parts, verdicts agree on {figures['agreement']:.2%}"
                        f"{train_note}, expected to disagree on {figures['expected_disagreement']:.2%}, "
                        f"AUROC {figures['auroc_int8']:.4f} (float {figures['auroc_float']:.4f})"
                        + ("" if figures["passed"] else " - fails the gate"))
            tried.append({"plan": plan, **{k: figures[k] for k in (
                "passed", "agreement", "agreement_train", "expected_disagreement", "disagreements", "auroc_int8",
                "auroc_drop",
                "max_abs_score_diff")}})
            if figures["passed"]:
                break
        f_ms, q_ms = _latency([Inspector(float_path, threads=1), Inspector(candidate, threads=1)], images[:12])
        record = {
            **figures, "file": INT8_FILENAME, "source_sha256": file_sha256(float_path),
            "recipe": recipe, "plans_tried": tried,
            "calibration": {"split": "train", "inputs": len(calibration), "parts": n_parts},
            "latency_1_thread_ms": {"float": f_ms, "int8": q_ms, "speedup": f_ms / q_ms},
            "quantise_s": round(quantise_s, 1), "size_bytes": candidate.stat().st_size,
            "created_at": datetime.now(timezone.utc).isoformat(), "host": platform.node(),
            "onnxruntime": _ort_version(),
        }
        if not figures["passed"]:
            summary = "; ".join(
                f"{t['plan']}: agreement {t['agreement']:.2%}"
                + ("" if t["agreement_train"] is None else f" (training parts {t['agreement_train']:.2%})")
                + f", expected disagreement {t['expected_disagreement']:.2%}"
                + f", AUROC drop {t['auroc_drop']:+.4f}" for t in tried)
            raise QuantizeRefused(
                f"The INT8 version of model {version} was refused, nothing was written: no mixed-precision plan "
                f"passed the gate (verdict agreement >= {gate.min_agreement:.1%}, counted and expected, AUROC drop <= "
                f"{gate.max_auroc_drop:g}) on {len(held)} held-out parts ({summary}). The float model stays in use.",
                record)
        metadata = {**reference.metadata, "threshold": figures["threshold"], "precision": INT8,
                    "source_sha256": record["source_sha256"], "int8_plan": recipe["plan"],
                    "recheck_band_logit": figures["recheck_band_logit"]}
        _set_metadata(candidate, metadata)
        del int8
        os.replace(candidate, out)
        meta_path = model.path / "model.json"
        stored = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
        stored["int8"] = record
        write_text(meta_path, json.dumps(stored, indent=2, default=float))
        return QuantizeResult(out, record)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
