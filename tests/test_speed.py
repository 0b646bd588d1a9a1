"""Line speed: session options keep float parity, INT8 quantisation behind its gate,
`lineside bench` choosing per machine and `load_inspector_for_project` honouring it,
the heatmap's display-size path and the latency profile writer."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.cli import speed
from app.core.operating_point import logit, sigmoid
from app.core.project import Project
from app.core.runtime import INT8, INT8_FILENAME, Inspector, load_inspector_for_project
from app.core.synthetic import DEFECT_KINDS, generate_part
from benchmarks import latency
from tests.onnx_fixtures import write_model
from tests.training_fixtures import make_tiny_project

pytest.importorskip("torch")  # the trained fixture needs the workstation edition
onnx = pytest.importorskip("onnx")
quantize = pytest.importorskip("training.quantize")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    from training.pipeline import train_project

    folder = make_tiny_project(tmp_path_factory.mktemp("speed") / "tiny")
    train_project(folder, epochs=1, device="cpu", seed=0)
    return folder


@pytest.fixture()
def project_dir(trained, tmp_path) -> Path:
    """A fresh copy of the trained project per test (tests write INT8 files and settings)."""
    copy = tmp_path / "project"
    shutil.copytree(trained, copy)
    return copy


def generated_parts(n: int, seed: int = 11) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    kinds = [None, *DEFECT_KINDS]
    return [generate_part(rng, kinds[i % len(kinds)], size=160)[0] for i in range(n)]


# A small convolutional model with a clear answer, so that the gate's outcome does not
# hang on a one-epoch network whose scores all sit near its threshold: bright blobs on a
# dark textured part are defects. Conv -> Relu -> Conv -> Relu (+ residual Add) -> Conv:
# what the quantiser turns into INT8; max-pooled patch logits -> heatmap and score.
BLOB_SIZE = 64


def _blob_model(path: Path) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = np.full((4, 3, 3, 3), 1.0 / 27.0, np.float32) * rng.uniform(0.8, 1.2, (4, 1, 1, 1)).astype(np.float32)
    w2 = (np.eye(4, dtype=np.float32)[:, :, None, None] * np.pad(np.ones((1, 1)), 1)[None, None]
          + rng.normal(0, 0.02, (4, 4, 3, 3))).astype(np.float32)
    w3 = np.full((1, 4, 1, 1), 6.0, np.float32)
    inits = [numpy_helper.from_array(a, n) for a, n in [
        (w1, "w1"), (np.full(4, -0.45, np.float32), "b1"), (w2, "w2"), (np.zeros(4, np.float32), "b2"),
        (w3, "w3"), (np.array([-2.0], np.float32), "b3"), (np.array(1 / 255, np.float32), "inv255"),
        (np.array(1.0, np.float32), "one"), (np.array([1], np.int64), "axis1")]]
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "inv255"], ["x"]),
        helper.make_node("Transpose", ["x"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Conv", ["nchw", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["res"]),
        helper.make_node("Conv", ["res", "w3", "b3"], ["logits"]),
        helper.make_node("MaxPool", ["logits"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Sigmoid", ["pooled"], ["heat4"]),
        helper.make_node("Squeeze", ["heat4", "axis1"], ["heatmap"]),
        helper.make_node("ReduceMax", ["heatmap"], ["score"], axes=[1, 2], keepdims=0),
        helper.make_node("Sub", ["one", "score"], ["ok"]),
        helper.make_node("Unsqueeze", ["ok", "axis1"], ["ok1"]),
        helper.make_node("Unsqueeze", ["score", "axis1"], ["bad1"]),
        helper.make_node("Concat", ["ok1", "bad1"], ["class_probs"], axis=1),
    ]
    grid = BLOB_SIZE // 16
    graph = helper.make_graph(nodes, "blob", [
        helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", BLOB_SIZE, BLOB_SIZE, 3])], [
        helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
        helper.make_tensor_value_info("class_probs", TensorProto.FLOAT, ["N", 2]),
        helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", grid, grid])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    meta = {"format": 1, "class_names": ["ok", "blob"], "input_size": BLOB_SIZE, "heatmap_stride": 16,
            "threshold": 0.5, "version": "v1", "mode": "supervised"}
    helper.set_model_props(model, {"lineside": json.dumps(meta)})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def blob_part(rng: np.random.Generator, defect: bool) -> np.ndarray:
    """A dark textured part; a defective one has a bright blob somewhere."""
    image = (40 + 30 * rng.random((BLOB_SIZE, BLOB_SIZE, 3))).astype(np.uint8)
    if defect:
        y, x = rng.integers(8, BLOB_SIZE - 8, 2)
        r = int(rng.integers(3, 6))
        image[y - r:y + r, x - r:x + r] = rng.integers(200, 256)
    return image


@pytest.fixture(scope="module")
def blob_project(tmp_path_factory) -> Path:
    """A project with generated blob parts (train and val) and the blob model as v1,
    thresholded on its validation OK parts like the trainer does."""
    from app.core.operating_point import operating_point

    folder = tmp_path_factory.mktemp("blob") / "project"
    rng = np.random.default_rng(5)
    with Project.create(folder, name="blob") as project:
        val = []
        for i in range(60):
            defect = i % 3 == 0
            image = blob_part(rng, defect)
            record, _ = project.add_image_array(image)
            project.set_label(record.id, "blob" if defect else "ok")
            split = "val" if i % 2 else "train"
            project.set_split(record.id, split)
            if split == "val":
                val.append((image, defect))
        version = project.next_version()
        model_dir = project.models_dir / version
        path = _blob_model(model_dir / "model.onnx")
        scores = np.array([v.score for v in Inspector(path).inspect_batch([im for im, _ in val])])
        defect = np.array([d for _, d in val])
        point = operating_point(scores[~defect], scores[defect])
        metrics = {"auroc": 1.0, "false_reject_target": 0.01, "mode": "supervised"}
        (model_dir / "model.json").write_text(json.dumps({"threshold": point.threshold, "metrics": metrics}))
        project.register_model(version, model_dir, point.threshold, metrics, {"mode": "supervised"})
        project.deploy(version)
    return folder


@pytest.fixture(scope="module")
def quantized(blob_project, tmp_path_factory) -> Path:
    """A copy of the blob project whose v1 has passed the gate and got its INT8 file."""
    copy = tmp_path_factory.mktemp("quantized") / "project"
    shutil.copytree(blob_project, copy)
    with Project.open(copy) as project:
        quantize.quantize_model(project, "v1")
    return copy


# -- float: session options must not change what the model says -----------------------

def test_runtime_session_options_keep_float_parity(trained):
    import onnxruntime as ort

    model_path = trained / "models" / "v1" / "model.onnx"
    plain = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])  # ORT defaults
    parts = generated_parts(6)
    for threads, spinning in ((1, None), (2, True), (2, False)):
        inspector = Inspector(model_path, threads=threads, spinning=spinning)
        batch = np.stack([x for p in parts for x in inspector.model_inputs(p)])
        expected = plain.run(["score", "class_probs", "heatmap"], {"image": batch})
        got = [v for v in inspector.inspect_batch(parts)]
        assert np.max(np.abs(np.array([v.score for v in got]) - expected[0])) <= 1e-5
        assert np.max(np.abs(np.stack([v.heatmap for v in got]) - expected[2])) <= 1e-5


def test_folding_the_channel_flip_into_the_stem_is_exact(trained, tmp_path):
    import onnxruntime as ort
    from onnxruntime.quantization.shape_inference import quant_pre_process

    source = trained / "models" / "v1" / "model.onnx"
    prepared = tmp_path / "prepared.onnx"
    quant_pre_process(str(source), str(prepared))
    model = onnx.load(str(prepared))
    assert quantize.drop_channel_flip(model)
    assert not any(n.op_type == "Slice" and n.input[0] == "/net/Cast_output_0" for n in model.graph.node)
    batch = np.stack([Inspector(source).model_inputs(p)[0] for p in generated_parts(4)])
    a = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"]).run(None, {"image": batch})
    b = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": batch})
    assert all(np.max(np.abs(x - y)) <= 1e-5 for x, y in zip(a, b))


# -- INT8: the gate -----------------------------------------------------------------

def _model_json(folder: Path) -> bytes:
    return (folder / "models" / "v1" / "model.json").read_bytes()


def test_a_model_failing_the_gate_is_refused_and_nothing_is_written(project_dir):
    before = _model_json(project_dir)
    with Project.open(project_dir) as project:
        with pytest.raises(quantize.QuantizeRefused, match="refused, nothing was written") as refused:
            quantize.quantize_model(project, "v1", quantize.Gate(min_agreement=1.01), plans=("full",))
    assert refused.value.record["passed"] is False and refused.value.record["failures"]
    folder = project_dir / "models" / "v1"
    assert not (folder / INT8_FILENAME).exists()
    assert _model_json(project_dir) == before
    assert not [p for p in folder.iterdir() if p.name.startswith(".int8-")]  # no leftovers


def test_a_broken_calibration_is_refused(blob_project, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(blob_project, copy)
    # Calibrated on blank frames only, every activation range is wrong for real parts.
    blank = [np.zeros((BLOB_SIZE, BLOB_SIZE, 3), np.uint8)] * 8
    with Project.open(copy) as project:
        with pytest.raises(quantize.QuantizeRefused, match="no mixed-precision plan passed"):
            quantize.quantize_model(project, "v1", calibration=blank)
    assert not (copy / "models" / "v1" / INT8_FILENAME).exists()


def test_the_blob_model_quantises_with_its_own_calibration(blob_project):
    """Sanity of the fixture the passing tests rely on: float separates blobs cleanly."""
    with Project.open(blob_project) as project:
        model = project.model("v1")
        inspector = Inspector(model.onnx_path, threshold=model.threshold)
        rng = np.random.default_rng(99)
        assert all(inspector.inspect(blob_part(rng, True)).passed is False for _ in range(10))
        assert all(inspector.inspect(blob_part(rng, False)).passed for _ in range(10))


def test_the_cli_refuses_with_a_clear_message(project_dir, capsys):
    assert main(["quantize", str(project_dir), "v1", "--min-agreement", "1.01"]) == 2
    err = capsys.readouterr().err
    assert "refused, nothing was written" in err and "float model stays in use" in err
    assert not (project_dir / "models" / "v1" / INT8_FILENAME).exists()


def test_the_cli_writes_a_passing_int8_file_and_states_its_gate_and_re_check(blob_project, tmp_path, capsys):
    copy = tmp_path / "project"
    shutil.copytree(blob_project, copy)
    assert main(["quantize", str(copy), "v1"]) == 0
    out = capsys.readouterr().out
    record = json.loads((copy / "models" / "v1" / "model.json").read_text())["int8"]
    assert f"wrote {copy / 'models' / 'v1' / INT8_FILENAME}" in out
    assert f"gate passed on {record['n_parts']} held-out parts: verdicts agree on {record['agreement']:.2%}" in out
    assert (f"parts within {record['recheck_band_logit']:.2f} logits of the threshold "
            f"({record['recheck_share']:.1%} of the held-out parts) are re-checked by the float model") in out


def test_a_passing_model_gets_its_int8_file_and_gate_record(quantized):
    folder = quantized / "models" / "v1"
    record = json.loads((folder / "model.json").read_text())["int8"]
    assert 0.0 <= record["expected_disagreement"] <= 1.0 - quantize.MIN_AGREEMENT
    assert record["passed"] and record["agreement"] >= quantize.MIN_AGREEMENT
    assert record["auroc_drop"] <= quantize.MAX_AUROC_DROP
    assert record["recipe"]["format"] == "QDQ" and record["recipe"]["weights"] == "int8 per channel"
    # Every convolution fed a quantised tensor had its bias corrected: the blob model's
    # middle one, and its last one, which stays float but reads the INT8 residual sum.
    written = onnx.load(str(folder / INT8_FILENAME))
    producer = {o: n.op_type for n in written.graph.node for o in n.output}
    fed_int8 = [n for n in written.graph.node if n.op_type == "Conv" and producer.get(n.input[0]) == "DequantizeLinear"]
    assert record["recipe"]["bias_correction"]["layers"] == len(fed_int8) == 2
    int8 = Inspector(folder / INT8_FILENAME)
    assert int8.precision == INT8 and int8.threshold == pytest.approx(record["threshold"])
    assert int8.metadata["source_sha256"] == record["source_sha256"]
    # The INT8 threshold is the float one moved by the median INT8 change (in logits).
    float_logit = np.log(record["threshold_float"] / (1 - record["threshold_float"]))
    assert record["threshold"] == pytest.approx(1 / (1 + np.exp(-(float_logit + record["threshold_shift_logit"]))))
    assert record["operating_point"]["threshold"] == record["threshold"]
    assert record["operating_point"]["n_ok_heldout"] == record["n_ok"]


def test_float_and_int8_agree_on_generated_parts(quantized):
    folder = quantized / "models" / "v1"
    with Project.open(quantized) as project:
        threshold = project.model("v1").threshold
    reference = Inspector(folder / "model.onnx", threshold=threshold)
    int8 = Inspector(folder / INT8_FILENAME)
    rng = np.random.default_rng(2024)  # parts neither the calibration nor the gate saw
    parts = [blob_part(rng, i % 2 == 0) for i in range(200)]
    a, b = reference.inspect_batch(parts), int8.inspect_batch(parts)
    same = np.mean([x.passed == y.passed for x, y in zip(a, b)])
    assert same >= quantize.MIN_AGREEMENT
    assert max(abs(x.score - y.score) for x, y in zip(a, b)) < 0.05  # INT8, not parity


def test_the_trained_network_quantises_and_reports_every_plan(project_dir):
    """The real (tiny, one-epoch) network through the quantiser: each plan tried is
    recorded; whatever the outcome, a written file passed and a refusal wrote nothing."""
    messages: list[str] = []
    with Project.open(project_dir) as project:
        try:
            result = quantize.quantize_model(project, "v1", on_progress=messages.append)
        except quantize.QuantizeRefused as refused:
            record, written = refused.record, False
        else:
            record, written = result.record, True
    assert [t["plan"] for t in record["plans_tried"]] == [n for n, _ in quantize.PLANS][:len(record["plans_tried"])]
    # The bias correction (a minute on a real project) reports a quarter at a time, per plan.
    for tried in record["plans_tried"]:
        steps = [m for m in messages if m.startswith(f"plan {tried['plan']}: biases of")]
        assert len(steps) == 4 and re.fullmatch(r"plan \S+: biases of (\d+) of \1 convolutions corrected", steps[-1])
    assert record["recipe"]["channel_flip_folded"] is True
    assert (project_dir / "models" / "v1" / INT8_FILENAME).exists() == written == record["passed"]


def test_bias_correction_brings_int8_convolutions_back_to_float_on_parts_it_never_saw(project_dir, tmp_path):
    """The trained network, full plan: corrected on the calibration (training) parts, the
    quantised convolutions' mean outputs on the validation parts are nearer float's than
    without the correction."""
    from training import bias_correction

    folder = project_dir / "models" / "v1"
    prepared, model, _ = quantize.prepare(folder / "model.onnx", tmp_path)
    (_, keep), = quantize.applicable_plans(model, ("full",))
    inspector = Inspector(folder / "model.onnx")
    with Project.open(project_dir) as project:
        calibration = quantize.calibration_inputs(project, inspector)
        held_out = [x for record, _ in project.labeled(split="val")
                    for x in inspector.model_inputs(project.load_image(record.id))]
    plain, corrected = tmp_path / "plain.onnx", tmp_path / "corrected.onnx"
    assert quantize.quantize_file(prepared, plain, calibration, keep, correct=False) == {"layers": 0}
    summary = quantize.quantize_file(prepared, corrected, calibration, keep)
    layers = bias_correction.correctable_convs(onnx.load(str(plain)), model)
    assert summary["layers"] == len(layers) > 10 and summary["inputs"] == len(calibration)
    float_names, int8_names = [layer[1] for layer in layers], [layer[2] for layer in layers]
    reference = bias_correction.channel_means(
        bias_correction.session_with_outputs(model, float_names, 1), float_names, held_out)

    def shifts(path: Path) -> np.ndarray:
        session = bias_correction.session_with_outputs(onnx.load(str(path)), int8_names, 1)
        means = bias_correction.channel_means(session, int8_names, held_out)
        return np.array([np.abs(m - r).mean() for m, r in zip(means, reference)])

    before, after = shifts(plain), shifts(corrected)
    # Measured: 0.071 before, 0.0097 after, every convolution nearer float.
    assert after.mean() < 0.5 * before.mean()
    assert (after < before).mean() >= 0.8


def test_each_plan_keeps_more_of_the_trained_network_in_float_down_to_the_stride_32_stage(project_dir, tmp_path):
    # The plans are tried fastest first, each a fallback that keeps more in float; the
    # last leaves only the stride-32 stage and the head in INT8, and still leaves some.
    _, model, _ = quantize.prepare(project_dir / "models" / "v1" / "model.onnx", tmp_path)
    plans = quantize.applicable_plans(model)
    assert [name for name, _ in plans] == [name for name, _ in quantize.PLANS]
    kept = [set(nodes) for _, nodes in plans]
    assert all(a < b for a, b in zip(kept, kept[1:]))
    quantisable = {n.name for n in model.graph.node if n.op_type in quantize.OP_TYPES}
    stride32 = quantisable - kept[-1]
    assert stride32 and len(stride32) < len(quantisable) / 2
    # Blocks 0-10 (stride 2 to 16) stay float; blocks 11-15 run at stride 32.
    blocks = {int(n.split("_blocks.")[1].split("/")[0]) for n in stride32 if "_blocks." in n}
    assert blocks and min(blocks) >= 11
    # Each float part ends at a block boundary: the 1x1 expansion (and its ReLU6) feeding
    # the first INT8 stride-2 convolution is INT8 too, so the float-to-INT8 conversion is
    # of the narrow block input, not the six-times-wider expanded tensor.
    by_name = {n.name: n for n in model.graph.node}
    for (_, nodes), count in zip(plans, [c for _, c in quantize.PLANS]):
        if count == 0:
            continue
        first_int8 = [n for n in model.graph.node if n.op_type == "Conv" and quantize._stride(n) >= 2][count - 1]
        assert first_int8.name not in nodes
        expansion = quantize._expansion_before(model, first_int8)
        assert [n.op_type for n in expansion] == ["Clip", "Conv"]
        assert not {n.name for n in expansion} & set(nodes)
        assert all(by_name[name].op_type in quantize.OP_TYPES for name in nodes)


def test_a_good_only_models_distances_and_part_wide_term_stay_float_in_int8(tmp_path):
    """Only what feeds the last convolution is quantised: the nearest-neighbour distance
    (|f|^2 + min(...)) and the part-wide term's sum are Adds after it, and through UINT8
    a score passed through 256 levels (on magnetic tile, the good-only model's INT8
    plans disagreed with float on more parts before)."""
    import onnx

    from tests.test_part_statistics import SIZE, part
    from training.anomaly import AnomalyConfig, export_anomaly, fit_anomaly

    rng = np.random.default_rng(0)
    ok = [part(rng) for _ in range(24)]  # two folds of 12: enough for the part-wide term
    fit = fit_anomaly(ok, AnomalyConfig(input_size=SIZE, part_statistics=True, folds=2))
    assert fit.net.part_gaussian is not None
    export_anomaly(fit.net, tmp_path / "model.onnx", SIZE, {"mode": "good-only"}, ok[:2])
    prepared, model, _ = quantize.prepare(tmp_path / "model.onnx", tmp_path)
    (_, keep), = quantize.applicable_plans(model, ("full",))
    last_conv = [n for n in model.graph.node if n.op_type == "Conv"][-1]
    feeding = quantize._ancestors(model, last_conv)
    quantisable = {n.name for n in model.graph.node if n.op_type in quantize.OP_TYPES}
    assert quantisable - set(keep) and quantisable - set(keep) <= feeding
    quantize.quantize_file(prepared, tmp_path / "int8.onnx", ok[:8], keep)
    graph = onnx.load(str(tmp_path / "int8.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    tail_adds = [n for n in graph.node if n.op_type == "Add" and "embedder" not in n.name]
    assert len(tail_adds) >= 2  # the distance's and the part-wide term's
    assert not any(producer[i].op_type == "DequantizeLinear" for n in tail_adds for i in n.input if i in producer)


def test_int8_convolutions_pass_activations_on_without_converting_them_twice(project_dir, tmp_path):
    """Every ReLU6 is quantised with its convolution, so in the graph ONNX Runtime runs no
    activation goes DequantizeLinear -> QuantizeLinear between two INT8 convolutions (that
    pair converted every activation twice and cost the full-INT8 model a third of its time)."""
    import onnx
    import onnxruntime as ort

    prepared, model, _ = quantize.prepare(project_dir / "models" / "v1" / "model.onnx", tmp_path)
    (name, keep), = quantize.applicable_plans(model, ("full",))
    with Project.open(project_dir) as project:
        inputs = quantize.calibration_inputs(project, Inspector(project_dir / "models" / "v1" / "model.onnx"), 8)
    quantize.quantize_file(prepared, tmp_path / "int8.onnx", inputs, keep)
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(tmp_path / "int8.onnx"), options, providers=["CPUExecutionProvider"])
    graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}
    qlinear = [n for n in graph.node if n.op_type == "QLinearConv"]
    requantised = [n.name for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] in producer
                   and producer[n.input[0]].op_type == "DequantizeLinear"]
    assert len(qlinear) > 10 and requantised == []
    assert not any(n.op_type == "Clip" and n.input[0] in producer and producer[n.input[0]].op_type == "QLinearConv"
                   for n in graph.node)  # no float ReLU6 left between INT8 convolutions


def test_quantize_needs_onnx_and_says_so(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # as on a station
    with pytest.raises(Exception, match="Workstation edition"):
        quantize._onnx()


# -- bench and loading what it chose ----------------------------------------------------

def test_bench_chooses_int8_and_the_line_loads_it(quantized, capsys, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(quantized, copy)
    assert main(["bench", str(copy), "--precision", "int8", "--parts", "6", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "parts per second" in out and "int8, 1 thread" in out
    with Project.open(copy) as project:
        assert project.get_setting("precision") == INT8
        threads = project.get_setting("threads")
        assert threads >= 1 and project.get_setting("parts_per_second") > 0
        inspector, model = load_inspector_for_project(project)
    assert inspector.model_path.name == INT8_FILENAME and inspector.precision == INT8
    assert inspector.threads == threads
    assert model.version == "v1"


def test_bench_auto_stores_a_choice_and_prints_expected_speed(quantized, capsys, tmp_path):
    copy = tmp_path / "project"
    shutil.copytree(quantized, copy)
    assert main(["bench", str(copy), "--parts", "4", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    assert "expected:" in out and "float, 1 thread" in out and "int8, 1 thread" in out
    with Project.open(copy) as project:
        assert project.get_setting("precision") in ("float", "int8")
        inspector, _ = load_inspector_for_project(project)
        assert inspector.precision == project.get_setting("precision")


def test_bench_times_lanes_for_several_views_and_the_line_loads_the_choice(quantized, capsys, tmp_path):
    import os

    copy = tmp_path / "project"
    shutil.copytree(quantized, copy)
    assert main(["bench", str(copy), "--views", "2", "--parts", "3", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    cores = os.cpu_count() or 1
    assert "as 3 parts of 2 views" in out
    # Two inputs per part: lanes are timed where there is more than one core to share them.
    assert (f"float, {cores} lanes of 1 thread" in out) == (f"int8, {cores} lanes of 1 thread" in out) == (cores > 1)
    with Project.open(copy) as project:
        lanes, threads = project.get_setting("lanes"), project.get_setting("threads")
        assert lanes in (1, cores) and project.get_setting("bench")["views"] == 2
        inspector, _ = load_inspector_for_project(project)
        assert inspector.lanes == lanes and inspector.threads == threads
        # A thread count given to the line (`--threads`) wins and means one session.
        assert load_inspector_for_project(project, threads=1)[0].lanes == 1
    # One view of an untiled part is one input: nothing to share, no lanes timed.
    assert main(["bench", str(copy), "--parts", "3", "--rounds", "1", "--dry-run"]) == 0
    assert "lanes" not in capsys.readouterr().out


def test_bench_refuses_an_impossible_view_count(quantized, capsys):
    assert main(["bench", str(quantized), "--views", "5", "--dry-run"]) == 2
    assert "--views is 1 to 4" in capsys.readouterr().err


def test_bench_without_int8_keeps_float(blob_project, tmp_path, capsys):
    project_dir = tmp_path / "project"
    shutil.copytree(blob_project, project_dir)
    assert main(["bench", str(project_dir), "--model", "v1", "--parts", "3", "--rounds", "1"]) == 0
    assert "no valid INT8 file" in capsys.readouterr().out
    with Project.open(project_dir) as project:
        assert project.get_setting("precision") == "float"


def test_a_missing_int8_file_falls_back_to_float_with_a_warning(project_dir, caplog):
    with Project.open(project_dir) as project:
        project.set_setting("precision", INT8)
        project.set_setting("threads", 2)
        with caplog.at_level(logging.WARNING, logger="app.core.runtime"):
            inspector, model = load_inspector_for_project(project, "v1")
    assert inspector.precision == "float" and inspector.model_path.name == "model.onnx"
    assert inspector.threads == 2 and inspector.threshold == model.threshold
    assert "using the float model" in caplog.text


def test_an_int8_file_of_another_export_is_not_used(quantized, tmp_path, caplog):
    copy = tmp_path / "project"
    shutil.copytree(quantized, copy)
    source = copy / "models" / "v1" / "model.onnx"
    model = onnx.load(str(source))
    model.doc_string = "re-exported"  # any change to the float file makes the INT8 one stale
    onnx.save(model, str(source))
    with Project.open(copy) as project:
        project.set_setting("precision", INT8)
        with caplog.at_level(logging.WARNING, logger="app.core.runtime"):
            inspector, _ = load_inspector_for_project(project, "v1")
    assert inspector.precision == "float" and "not made from" in caplog.text


def _candidate(precision: str, threads: int, ms: float) -> speed.Candidate:
    return speed.Candidate(precision, threads, inspector=None, ms=[ms])  # type: ignore[arg-type]


def test_expected_parts_per_second_counts_the_parts_that_also_ran_in_float():
    # Nine parts judged in INT8 alone, one near the threshold re-checked by the float model too.
    c = speed.Candidate("int8", 1, inspector=None, ms=[4.0] * 9 + [14.0])  # type: ignore[arg-type]
    assert c.ms_per_part == 4.0
    assert c.parts_per_second == pytest.approx(1000.0 / 5.0)


def test_choose_prefers_float_unless_int8_is_clearly_faster():
    float1, int8_1 = _candidate("float", 1, 10.0), _candidate("int8", 1, 9.8)
    assert speed.choose([float1, int8_1], int8_ok=True)[0] is float1  # 2 % is noise
    faster = _candidate("int8", 1, 6.0)
    assert speed.choose([float1, faster], int8_ok=True)[0] is faster
    assert speed.choose([float1, faster], int8_ok=False)[0] is float1  # failed here: never
    two = _candidate("float", 2, 9.5)
    assert speed.choose([float1, two], int8_ok=False)[0] is float1  # 5 %: not worth a core
    assert speed.choose([float1, _candidate("float", 2, 6.0)], int8_ok=False)[0].threads == 2


def test_expected_disagreement_sees_parts_near_the_threshold_that_no_judged_part_flipped():
    threshold = 0.5  # both models' (logit 0)
    # 180 parts far below the threshold, moved by -0.5 logit by INT8; 20 parts just above it
    # (+0.2 logit), moved by +0.05: no judged part changes its verdict...
    lf = np.concatenate([np.linspace(-8.0, -3.0, 180), np.full(20, 0.2)])
    lq = np.concatenate([lf[:180] - 0.5, lf[180:] + 0.05])
    float_scores, int8_scores = sigmoid(lf), sigmoid(lq)
    agreement = float(np.mean((float_scores >= threshold) == (int8_scores >= threshold)))
    assert agreement == 1.0
    # ...but a near part moved the way the far ones were would flip. The changes lent are
    # those of the 50 parts nearest the threshold (a quarter): the 20 near ones and the 30
    # highest far ones, so 10 % of the parts x 60 % of the changes.
    expected = quantize.expected_disagreement(float_scores, int8_scores, threshold, threshold)
    assert expected == pytest.approx(0.1 * 0.6)
    failures = quantize.Gate().failures(agreement, 1.0, 1.0, agreement, expected)
    assert len(failures) == 1 and "would disagree on 6.00%" in failures[0]
    assert quantize.Gate().failures(agreement, 1.0, 1.0, agreement, 0.004) == []


def test_expected_disagreement_is_zero_for_an_identical_model_and_small_for_small_changes():
    rng = np.random.default_rng(0)
    scores = sigmoid(rng.normal(0.0, 3.0, 500))
    assert quantize.expected_disagreement(scores, scores, 0.5, 0.5) == 0.0
    nudged = sigmoid(logit(scores) + rng.normal(0.0, 0.01, 500))
    assert quantize.expected_disagreement(scores, nudged, 0.5, 0.5) < 0.005
    # Evenly spaced subsample beyond max_parts: the same answer within sampling noise.
    full = quantize.expected_disagreement(scores, nudged, 0.5, 0.5)
    assert abs(quantize.expected_disagreement(scores, nudged, 0.5, 0.5, max_parts=250) - full) < 0.005


def test_expected_disagreement_counts_the_held_out_parts_not_the_fitted_training_parts():
    threshold = 0.5
    rng = np.random.default_rng(1)
    # Held-out parts straddle the threshold; training parts, which the model has fitted,
    # lie far from it. Every part's INT8 change is +-0.4 logit.
    held = rng.normal(0.0, 1.5, 200)
    train = np.concatenate([rng.normal(-9.0, 1.0, 700), rng.normal(9.0, 1.0, 100)])
    lf = np.concatenate([held, train])
    lq = lf + np.where(rng.random(lf.size) < 0.5, -0.4, 0.4)
    f, q = sigmoid(lf), sigmoid(lq)
    diluted = quantize.expected_disagreement(f, q, threshold, threshold)
    at_stake = quantize.expected_disagreement(f, q, threshold, threshold, parts=f[:200])
    # A held-out part within 0.4 logit of the threshold flips under half the changes.
    truth = 0.5 * float(np.mean(np.abs(held) < 0.4))
    assert at_stake == pytest.approx(truth, abs=0.02)
    assert diluted < at_stake / 3
    # Without *parts* it is the judged parts' own estimate, as before.
    assert quantize.expected_disagreement(f[:200], q[:200], threshold, threshold) == pytest.approx(
        quantize.expected_disagreement(f[:200], q[:200], threshold, threshold, parts=f[:200]))


def test_no_part_outside_the_recheck_band_can_be_moved_across_the_threshold_by_a_change_seen():
    rng = np.random.default_rng(3)
    lf = rng.normal(0.0, 2.0, 400)
    lq = lf + 0.1 + rng.normal(0.0, 0.3, 400)  # INT8: a shift and a spread of changes
    f, q = sigmoid(lf), sigmoid(lq)
    lf_, change = quantize._changes(f, q)
    near = quantize._near_threshold(lf_, 0.0)
    shift = float(np.median(change[near]))
    band = quantize.recheck_band(f, q, 0.5, shift)
    assert band == pytest.approx(np.max(np.abs(change[near] - shift)))
    int8_threshold = float(sigmoid(shift))
    without = quantize.expected_disagreement(f, q, 0.5, int8_threshold)
    with_band = quantize.expected_disagreement(f, q, 0.5, int8_threshold, band=band)
    assert without > 0.01 and with_band == 0.0
    # The parts themselves: every one that INT8 flipped lies inside the band.
    flipped = (f >= 0.5) != (q >= int8_threshold)
    assert flipped.any() and np.all(np.abs(logit(q[flipped]) - shift) <= band)


def test_the_line_re_decides_int8_verdicts_near_the_threshold_with_the_float_model(quantized, tmp_path):
    from dataclasses import replace

    copy = tmp_path / "project"
    shutil.copytree(quantized, copy)
    record = json.loads((copy / "models" / "v1" / "model.json").read_text())["int8"]
    assert record["recheck_band_logit"] >= 0.0 and 0.0 <= record["recheck_share"] <= 1.0
    assert record["agreement_rechecked"] >= record["agreement"]
    assert record["expected_disagreement_rechecked"] <= record["expected_disagreement"]
    with Project.open(copy) as project:
        project.set_setting("precision", INT8)
        inspector, model = load_inspector_for_project(project, "v1")
        reference = Inspector(model.onnx_path, threshold=model.threshold)
    assert inspector.precision == INT8 and inspector.recheck is not None
    assert inspector.info.recheck_band_logit == pytest.approx(record["recheck_band_logit"])
    rng = np.random.default_rng(77)
    parts = [blob_part(rng, i % 2 == 0) for i in range(60)]
    floats = reference.inspect_batch(parts)
    alone = Inspector(model.path / INT8_FILENAME).inspect_batch(parts)
    assert [v.passed for v in inspector.inspect_batch(parts)] == [v.passed for v in floats]
    # This model's INT8 error is tiny, so is its band; a band that takes in half the parts
    # shows which verdict each part gets.
    distance = np.abs(logit([v.score for v in alone]) - logit(alone[0].threshold))
    band = float(np.median(distance))
    inspector.info = replace(inspector.info, recheck_band_logit=band)
    verdicts = inspector.inspect_batch(parts)
    assert 0 < sum(v.rechecked for v in verdicts) < len(parts)
    # A re-checked score is the float one moved onto the INT8 file's scale: one threshold for all.
    shift = logit(inspector.threshold) - logit(reference.threshold)
    for verdict, truth, own, d in zip(verdicts, floats, alone, distance):
        assert verdict.rechecked == (d <= band) and verdict.threshold == inspector.threshold
        if d <= band:
            assert verdict.passed == truth.passed and verdict.defect_class == truth.defect_class
            assert logit(verdict.score) == pytest.approx(logit(truth.score) + shift, abs=1e-4)
            assert sum(verdict.class_probs.values()) == pytest.approx(1.0, abs=1e-5)
            assert verdict.class_probs["ok"] == pytest.approx(1.0 - verdict.score)
            assert np.array_equal(verdict.heatmap, truth.heatmap)
        else:
            assert verdict.passed == own.passed and verdict.score == pytest.approx(own.score, abs=1e-6)
    # A band wide enough for every part: the line's verdicts are the float model's, one by one.
    inspector.info = replace(inspector.info, recheck_band_logit=100.0)
    wide = inspector.inspect_batch(parts)
    assert all(v.rechecked for v in wide)
    assert [v.passed for v in wide] == [v.passed for v in floats]
    assert [v.passed for v in wide] == [v.score < inspector.threshold for v in wide]


def test_the_station_gate_figure_matches_the_quantiser():
    assert speed.MIN_AGREEMENT == quantize.MIN_AGREEMENT


# -- heatmap and profile ----------------------------------------------------------------

def test_heatmap_maps_straight_to_a_display_size(tmp_path):
    from app.core.preprocess import heatmap_to_image

    inspector = Inspector(write_model(tmp_path / "m.onnx"))
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 150:] = 255
    verdict = inspector.inspect(image)
    full = verdict.heatmap_on_image()
    assert np.array_equal(full, heatmap_to_image(verdict.heatmap, verdict.box))  # unchanged default
    small = verdict.heatmap_on_image((50, 25))
    assert small.shape == (25, 50) and small.dtype == np.float32
    assert small[:, 45:].mean() > 0.7 and small[:, :25].mean() < 0.1


def test_the_profile_table_writer(tmp_path):
    model = write_model(tmp_path / "m.onnx")
    inspector = Inspector(model)
    import cv2

    encoded = [cv2.imencode(".jpg", part)[1].tobytes() for part in generated_parts(4)]
    profile = latency.profile_stages(inspector, encoded, "fixture, float, 1 thread", rounds=1, warmup=1)
    assert set(profile.stages) == set(latency.STAGES) and len(profile.stages["session"]) == 3
    assert profile.total_p50() > 0 and profile.inputs_per_part == 1
    profile.ops = latency.op_profile(model, generated_parts(2), runs=3)
    assert "ReduceMean" in profile.ops and all(ms >= 0 for ms in profile.ops.values())
    text = latency.render_table("Latency", ["- CPU: test"], [
        ("Stages", latency.stage_table([profile])), ("Node types", latency.op_table([profile]))])
    path = latency.write_table(tmp_path / "results" / "latency.md", text)
    written = path.read_text()
    assert written.startswith("# Latency") and "## Stages" in written and "## Node types" in written
    assert "fixture, float, 1 thread" in written and "| ReduceMean |" in written
    assert "session run" in written and "heatmap on image" in written


def test_the_yardstick_is_the_plain_pretrained_classifier_and_rows_are_scaled_by_it(tmp_path):
    import onnxruntime as ort
    import torch

    from training.network import load_pretrained_backbone

    x = np.random.default_rng(3).random((1, 3, 224, 224), dtype=np.float32)
    net = load_pretrained_backbone().eval()
    with torch.no_grad():
        h = net.stem(torch.from_numpy(x))
        for block in net._blocks:
            h = block(h)
        expected = net._fc(net.head(h).mean((2, 3))).numpy()
    session = ort.InferenceSession(latency.yardstick_onnx(), providers=["CPUExecutionProvider"])
    assert np.allclose(session.run(None, {"x": x})[0], expected, atol=1e-3)

    yard = latency.yardstick_latency({"fixture": write_model(tmp_path / "m.onnx")}, generated_parts(2), rounds=1)
    assert set(yard) == {latency.YARD_1, latency.YARD_2, "fixture"}
    assert all(r["p50"] >= r["min"] > 0 for r in yard.values())
    one = yard["fixture"]["p50"] / yard[latency.YARD_1]["p50"]
    two = yard["fixture"]["p50"] / yard[latency.YARD_2]["p50"]
    text = "\n".join(latency.yardstick_lines(yard))
    five = latency.YARDSTICK_FILED_MS
    assert f"| {one:.2f} | {five * one:.2f} | {five * two:.2f} |" in text
    assert f"| {latency.YARD_1} | " in text and "not measurements" in text
