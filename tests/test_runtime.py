"""The ONNX Runtime inspector against small contract-obeying fixture models."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core.errors import BadImageError, ModelFileError
from app.core.imageio import encode_png
from app.core.runtime import Inspector, ModelInfo
from tests.onnx_fixtures import build_model, write_model, write_wrong_io_model

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory) -> Path:
    return write_model(tmp_path_factory.mktemp("model") / "model.onnx", reference={"stats": {}})


@pytest.fixture(scope="module")
def inspector(model_path) -> Inspector:
    return Inspector(model_path)


def _solid(h: int, w: int, bgr: tuple[int, int, int]) -> np.ndarray:
    image = np.empty((h, w, 3), np.uint8)
    image[:] = bgr
    return image


def test_model_info_comes_from_the_onnx_metadata(inspector):
    assert inspector.info == ModelInfo(
        class_names=["ok", "scratch", "spot"],
        input_size=64,
        heatmap_stride=16,
        threshold=0.5,
        version="v1",
        reference={"stats": {}},
    )
    assert inspector.threshold == 0.5
    assert inspector.providers == ["CPUExecutionProvider"]


def test_dark_part_passes_and_bright_blue_part_fails_as_class_one(inspector):
    dark = inspector.inspect(_solid(64, 64, (10, 10, 10)))
    assert dark.passed and dark.label == "PASS" and dark.defect_class is None
    assert dark.score == pytest.approx(10 / 255, abs=1e-3)
    assert max(dark.class_probs, key=dark.class_probs.get) == "ok"

    blue = inspector.inspect(_solid(64, 64, (250, 200, 40)))
    assert not blue.passed and blue.label == "FAIL"
    assert blue.score == pytest.approx((250 + 200 + 40) / 3 / 255, abs=1e-3)
    assert blue.defect_class == "scratch"  # class 1 follows the blue channel
    assert sum(blue.class_probs.values()) == pytest.approx(1.0, abs=1e-5)
    assert blue.threshold == 0.5 and blue.latency_ms > 0


def test_defect_class_is_argmax_over_defect_classes_only(inspector):
    # Bright green: the "spot" logit is highest among defects even if "ok" were higher.
    green = inspector.inspect(_solid(64, 64, (120, 255, 120)))
    assert not green.passed
    assert green.defect_class == "spot"


def test_threshold_override(model_path):
    strict = Inspector(model_path, threshold=0.01)
    assert strict.threshold == 0.01
    verdict = strict.inspect(_solid(64, 64, (10, 10, 10)))
    assert not verdict.passed and verdict.threshold == 0.01


def test_heatmap_shape_and_mapping_back_to_a_wide_image(inspector):
    image = _solid(100, 200, (0, 0, 0))
    image[:, 150:] = 255  # the right quarter is bright
    verdict = inspector.inspect(image)
    assert verdict.heatmap.shape == (4, 4) and verdict.heatmap.dtype == np.float32
    assert verdict.box.width == 200 and verdict.box.height == 100
    on_image = verdict.heatmap_on_image()
    assert on_image.shape == (100, 200)
    assert on_image[:, 180:].mean() > 0.7
    assert on_image[:, :100].mean() < 0.1


@pytest.mark.parametrize(
    "image",
    [
        np.full((50, 80), 230, np.uint8),  # gray
        np.dstack([np.full((50, 80, 3), 230, np.uint8), np.full((50, 80), 7, np.uint8)]),  # BGRA
        np.full((50, 80, 3), 230 * 257, np.uint16),  # 16-bit
        np.full((50, 80, 1), 230, np.uint8),  # gray with a channel axis
    ],
    ids=["gray", "bgra", "16bit", "gray1"],
)
def test_any_layout_gives_the_same_verdict_as_8bit_bgr(inspector, image):
    reference = inspector.inspect(np.full((50, 80, 3), 230, np.uint8))
    verdict = inspector.inspect(image)
    assert verdict.score == pytest.approx(reference.score, abs=1e-4)
    assert verdict.label == reference.label == "FAIL"


def test_batch_matches_single_inspections(inspector):
    images = [_solid(64, 64, (10, 10, 10)), _solid(30, 90, (250, 200, 40)), np.full((40, 40), 128, np.uint8)]
    batch = inspector.inspect_batch(images)
    assert [v.label for v in batch] == [inspector.inspect(i).label for i in images]
    for single, many in zip((inspector.inspect(i) for i in images), batch):
        assert many.score == pytest.approx(single.score, abs=1e-4)  # summation order differs
        assert many.box == single.box
    assert inspector.inspect_batch([]) == []


def test_inspect_file_and_bad_files(inspector, tmp_path):
    good = tmp_path / "part.png"
    good.write_bytes(encode_png(_solid(40, 40, (250, 250, 250))))
    assert inspector.inspect_file(good).label == "FAIL"

    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    broken = tmp_path / "broken.png"
    broken.write_bytes(encode_png(_solid(40, 40, (1, 2, 3)))[:30])
    for bad in (empty, broken, tmp_path / "missing.png"):
        with pytest.raises(BadImageError, match=bad.name):
            inspector.inspect_file(bad)


def test_warmup_leaves_the_session_giving_the_same_verdicts(inspector):
    part = np.full((40, 60, 3), 90, np.uint8)
    before = inspector.inspect(part)
    inspector.warmup()
    after = inspector.inspect(part)
    assert (after.score, after.passed) == (before.score, before.passed)


def _bad_model_files(tmp_path: Path) -> dict[str, Path]:
    valid = build_model().SerializeToString()
    files = {
        "missing": tmp_path / "nothing-here.onnx",
        "empty": tmp_path / "empty.onnx",
        "truncated": tmp_path / "truncated.onnx",
        "random": tmp_path / "random.onnx",
        "image": tmp_path / "picture.onnx",
    }
    files["empty"].write_bytes(b"")
    files["truncated"].write_bytes(valid[: len(valid) // 2])
    files["random"].write_bytes(np.random.default_rng(0).bytes(4096))
    files["image"].write_bytes(encode_png(_solid(20, 20, (1, 2, 3))))
    files["wrong_io"] = write_wrong_io_model(tmp_path / "wrong_io.onnx")
    files["no_metadata"] = write_model(tmp_path / "no_metadata.onnx", metadata=False)
    files["future_format"] = write_model(
        tmp_path / "future.onnx", metadata={"format": 99, "class_names": ["ok"], "input_size": 64, "threshold": 0.5}
    )
    files["damaged_metadata"] = write_model(tmp_path / "damaged.onnx", metadata={"format": 1, "class_names": ["ok"]})
    return files


def test_bad_model_files_raise_model_file_error_naming_the_file(tmp_path):
    for kind, path in _bad_model_files(tmp_path).items():
        with pytest.raises(ModelFileError) as caught:
            Inspector(path)
        assert path.name in str(caught.value), kind


def test_unavailable_provider_falls_back_to_cpu(model_path):
    inspector = Inspector(model_path, providers=["NoSuchExecutionProvider"])
    assert inspector.providers == ["CPUExecutionProvider"]
    assert inspector.inspect(_solid(20, 20, (0, 0, 0))).passed


def test_inspecting_never_imports_torch(model_path, tmp_path):
    image = tmp_path / "part.png"
    cv2.imwrite(str(image), _solid(32, 48, (200, 200, 200)))
    code = (
        "import sys\n"
        "from app.core.runtime import Inspector\n"
        f"verdict = Inspector({str(model_path)!r}).inspect_file({str(image)!r})\n"
        "assert verdict.label == 'FAIL', verdict\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
