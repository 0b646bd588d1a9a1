"""Tiled inspection: the tile plan rule, the tile/stitch geometry, tiled training samples
and the runtime pooling tiles into one verdict. Generated images and tiny ONNX models (one
test also reads kolektorsdd's parts where the dataset is present)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from app.core.errors import ModelFileError
from app.core.imageio import encode_png, read_image, to_bgr8
from app.core.preprocess import (
    PAD_VALUE,
    TilePlan,
    TILE_MARGIN,
    choose_tile_plan,
    defect_extent,
    grey_channel,
    heatmap_to_image,
    letterbox,
    stitch,
    stitch_grid,
)
from app.core.runtime import MAX_TILES_PER_RUN, Inspector
from tests.onnx_fixtures import IR_VERSION, OPSET, build_model, lineside_metadata, write_model
from training.data import OK, load_tiled_samples

# --- the plan rule ---------------------------------------------------------------------


def test_plan_keeps_small_and_square_parts_whole():
    # Magnetic-tile-like parts (about 322 x 267 px, small painted blowholes): tiling would
    # gain < 1.5x resolution for 4x the model runs.
    tiles_like = [(322 + d, 267 - d) for d in range(-20, 21, 5)]
    assert choose_tile_plan(tiles_like, [8.0, 12.0, 30.0, 95.0], 224) is None
    assert choose_tile_plan(tiles_like, [], 256) is None
    assert choose_tile_plan([(200, 200)], [3.0], 224) is None  # fits the input already
    assert choose_tile_plan([(100, 300)], [], 224) is None  # never upscaled past native
    assert choose_tile_plan([(2000, 2000)], [], 224) is None  # square, nothing says "small"
    assert choose_tile_plan([], [], 224) is None


def test_plan_tiles_elongated_parts_along_their_long_side():
    # Kolektor-like commutators: 1,260 x 500 px.
    plan = choose_tile_plan([(1259, 500), (1235, 500), (1285, 500)], [36.0, 50.0, 80.0], 224)
    # The short side fills 224 px of the tile, inside a 16 px margin on each side.
    assert plan == TilePlan(224 + 2 * TILE_MARGIN, 0.448, 0.125, TILE_MARGIN)
    layout = plan.layout(1259, 500)
    assert {x for _, x in layout.origins} == {-TILE_MARGIN} and len(layout) == 3  # one column, 3 tiles
    assert plan.scale / (224 / 1259) > 2.5
    # No border of the part is a tile's outer edge: every border lies a margin inside a tile.
    ys = [y for y, _ in layout.origins]
    assert min(ys) == -TILE_MARGIN and max(ys) + plan.tile == layout.scaled_height + TILE_MARGIN
    assert choose_tile_plan([(1259, 500)], [36.0], 224, margin=0) == TilePlan(224, 0.448, 0.125)


def test_plan_goes_to_native_for_tiny_defects_on_large_parts():
    plan = choose_tile_plan([(2000, 2000)], [4.0, 5.0, 6.0], 224)
    assert plan is not None and plan.tile == 224 + 2 * TILE_MARGIN
    # Raised towards native for 4-6 px defects, lowered only as far as the tile budget asks.
    assert 0.3 < plan.scale <= 1.0 and plan.count(2000, 2000) <= 32
    elongated = choose_tile_plan([(256, 1024)], [2.0], 224)
    assert elongated == TilePlan(256, 1.0, 0.125, TILE_MARGIN)  # tiny defects: native, never above


def test_plan_dict_round_trip_and_validation():
    plan = TilePlan(256, 0.448, 0.125, 16)
    assert TilePlan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    assert plan.to_dict() == {"tile": 256, "scale": 0.448, "overlap": 0.125, "margin": 16}
    assert TilePlan.from_dict(None) is None
    # A model saved before the margin existed is cut exactly as it was trained: no margin.
    assert TilePlan.from_dict({"tile": 64, "scale": 1}) == TilePlan(64, 1.0, 0.125, 0)
    for bad in ({"tile": 64, "scale": 0}, {"tile": 64, "scale": 1, "overlap": 0.9}, {"tile": 4, "scale": 1},
                {"tile": 64, "scale": 1, "margin": 16}, {"tile": 64, "scale": 1, "margin": -1}):
        with pytest.raises(ValueError):
            TilePlan.from_dict(bad)


def test_defect_extent_is_the_short_side_of_the_painted_box():
    mask = np.zeros((100, 200), np.uint8)
    assert defect_extent(mask) is None and defect_extent(None) is None
    mask[40:43, 20:120] = 255  # a 3 px thick, 100 px long scratch
    assert defect_extent(mask) == 3.0


# --- tiles, masks, stitching -------------------------------------------------------------


@pytest.mark.parametrize(
    "plan, shape",
    [
        (TilePlan(64, 1.0, 0.125), (64, 400)),
        (TilePlan(64, 1.0, 0.25), (150, 130)),
        (TilePlan(64, 0.5, 0.125), (300, 1000)),
        (TilePlan(64, 1.0, 0.125), (40, 300)),  # shorter than a tile: centred and padded
        (TilePlan(64, 0.37, 0.1), (333, 517)),
        (TilePlan(64, 1.0, 0.125, 8), (48, 400)),  # margin: the part's borders 8 px inside
        (TilePlan(64, 0.5, 0.125, 8), (300, 1000)),
    ],
)
def test_tiles_cover_every_pixel_of_the_part(plan, shape):
    image = np.random.default_rng(0).integers(0, 256, shape + (3,), dtype=np.uint8)
    tiles, layout = plan.tiles(image)
    assert len(tiles) == len(layout) and all(t.shape == (64, 64, 3) and t.dtype == np.uint8 for t in tiles)
    covered = np.zeros((layout.scaled_height, layout.scaled_width), np.int32)
    for y0, x0 in layout.origins:
        covered[max(0, y0) : y0 + 64, max(0, x0) : x0 + 64] += 1
    assert covered.min() >= 1  # no pixel of the scaled part is missed
    for axis in (0, 1):  # neighbours overlap by at least the plan's overlap
        starts = sorted({o[axis] for o in layout.origins})
        assert all(b - a <= plan.stride for a, b in zip(starts, starts[1:]))


def test_native_tiles_are_exact_crops_and_padding_is_pad_value():
    image = np.random.default_rng(1).integers(0, 256, (40, 300, 3), dtype=np.uint8)
    plan = TilePlan(64, 1.0, 0.125)
    tiles, layout = plan.tiles(image)
    for tile, (y0, x0) in zip(tiles, layout.origins):
        assert y0 == -12  # a 40 px tall part is centred in the 64 px tile
        np.testing.assert_array_equal(tile[12:52], image[:, x0 : x0 + 64])
        assert (tile[:12] == PAD_VALUE).all() and (tile[52:] == PAD_VALUE).all()


def test_a_margin_puts_every_border_of_the_part_inside_a_tile():
    image = np.random.default_rng(2).integers(0, 256, (48, 300, 3), dtype=np.uint8)
    plan = TilePlan(64, 1.0, 0.125, 8)
    tiles, layout = plan.tiles(image)
    assert all(y0 == -8 for y0, _ in layout.origins)  # 48 px + 2 x 8 px margin fill the tile
    first, last = tiles[0], tiles[-1]
    x_last = layout.origins[-1][1]
    assert layout.origins[0][1] == -8 and x_last + 64 == 300 + 8
    np.testing.assert_array_equal(first[8:56, 8:], image[:, :56])
    np.testing.assert_array_equal(last[8:56, :56], image[:, x_last : x_last + 56])
    for band in (first[:8], first[56:], first[:, :8], last[:, 56:]):
        assert (band == PAD_VALUE).all()


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_stitch_puts_a_tiles_hot_patch_at_its_place_in_the_original(scale):
    plan = TilePlan(64, scale, 0.125)
    h, w = round(64 / scale), round(300 / scale)
    layout = plan.layout(h, w)
    heat = np.zeros((len(layout), 4, 4), np.float32)
    k = 2
    heat[k, 1, 2] = 1.0  # tile k, patch row 1, column 2: scaled y 16..32, x x0+32..x0+48
    y0, x0 = layout.origins[k]
    on_image = stitch(heat, layout)
    assert on_image.shape == (h, w) and on_image.dtype == np.float32
    y, x = np.unravel_index(int(np.argmax(on_image)), on_image.shape)
    assert (y0 + 16) / scale <= y < (y0 + 32) / scale
    assert (x0 + 32) / scale <= x < (x0 + 48) / scale
    assert on_image.max() > 0.9


def test_stitch_takes_the_max_where_tiles_overlap():
    plan = TilePlan(64, 1.0, 0.25)
    layout = plan.layout(64, 112)  # two tiles, x 0..64 and 48..112: overlap 48..64
    heat = np.stack([np.full((4, 4), 0.2, np.float32), np.full((4, 4), 0.7, np.float32)])
    on_image = stitch(heat, layout)
    assert np.allclose(on_image[:, 50:62], 0.7) and np.allclose(on_image[:, :40], 0.2)


@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_tile_mask_agrees_with_tiles(scale):
    plan = TilePlan(64, scale, 0.125)
    image = np.zeros((round(80 / scale), round(320 / scale), 3), np.uint8)
    mask = np.zeros(image.shape[:2], np.uint8)
    for y, x in ((30, 50), (10, 200), (60, 300)):
        ys, xs = slice(round(y / scale), round((y + 8) / scale)), slice(round(x / scale), round((x + 12) / scale))
        image[ys, xs] = 255
        mask[ys, xs] = 255
    tiles, _ = plan.tiles(image)
    masks = plan.tile_mask(mask)
    assert len(masks) == len(tiles)
    for tile, tile_mask in zip(tiles, masks):
        assert tile_mask.shape == (64, 64) and set(np.unique(tile_mask)) <= {0, 255}
        bright = tile[:, :, 0] > 128
        assert (tile_mask[bright] > 0).all()  # every defect pixel of the tile is in its mask
        assert bright.sum() <= (tile_mask > 0).sum() <= bright.sum() + 4 * 64  # and little else


def test_tile_mask_keeps_a_one_pixel_crack_when_downscaled():
    plan = TilePlan(64, 0.25, 0.125)
    mask = np.zeros((256, 1024), np.uint8)
    mask[100, 600:700] = 255
    assert sum(int(m.any()) for m in plan.tile_mask(mask)) >= 1


# --- tiled training samples ---------------------------------------------------------------


def _write_part(tmp_path, shape=(64, 300)):
    image = np.full(shape + (3,), 90, np.uint8)
    image[20:30, 250:260] = 250
    path = tmp_path / "part.png"
    path.write_bytes(encode_png(image))
    mask = np.zeros(shape, np.uint8)
    mask[20:30, 250:260] = 255
    return path, mask


def test_tiled_samples_label_tiles_from_the_mask(tmp_path):
    path, mask = _write_part(tmp_path)
    plan = TilePlan(64, 1.0, 0.125)
    samples = load_tiled_samples(path, "scratch", plan, mask=mask, key="abc")
    layout = plan.layout(*mask.shape)
    assert len(samples) == len(layout) == 6
    holding = [i for i, (_, x0) in enumerate(layout.origins) if x0 < 260 and x0 + 64 > 250]  # any part of it
    assert len(holding) == 2 and [i for i, s in enumerate(samples) if s.verdict == "scratch"] == holding
    for s in samples:
        assert s.image.shape == (64, 64, 3)
        if s.verdict == "scratch":
            assert s.mask is not None and s.mask.any()
        else:
            assert s.verdict == OK and s.mask is None
    assert [s.key for s in samples] == [f"abc#t{i}" for i in range(6)]


def test_tiled_samples_of_an_unmasked_defect_form_a_bag(tmp_path):
    path, _ = _write_part(tmp_path)
    plan = TilePlan(64, 1.0, 0.125)
    weak = load_tiled_samples(path, "scratch", plan)
    assert len(weak) == 6 and all(s.verdict == "scratch" and s.mask is None for s in weak)
    ok = load_tiled_samples(path, OK, plan)
    assert len(ok) == 6 and all(s.verdict == OK and s.mask is None for s in ok)


# --- the runtime ---------------------------------------------------------------------------


def _tiled_metadata(tile=64, scale=1.0, **extra) -> dict:
    meta = lineside_metadata(["ok", "scratch", "spot"], tile, 16, 0.5, "v1", None)
    meta["tiling"] = {"tile": tile, "scale": scale, "overlap": 0.125}
    meta.update(extra)
    return meta


@pytest.fixture(scope="module")
def tiled(tmp_path_factory) -> Inspector:
    return Inspector(write_model(tmp_path_factory.mktemp("tiled") / "m.onnx", metadata=_tiled_metadata()))


@pytest.fixture(scope="module")
def per_tile(tmp_path_factory) -> Inspector:
    """The same network without a plan: on a 64 x 64 input it judges exactly one tile."""
    return Inspector(write_model(tmp_path_factory.mktemp("plain") / "m.onnx"))


def test_model_info_reads_tiling_and_mode(tiled, per_tile, tmp_path):
    assert tiled.info.tiling == TilePlan(64, 1.0, 0.125) and tiled.info.mode == "supervised"
    assert per_tile.info.tiling is None and per_tile.info.mode == "supervised"
    other = write_model(tmp_path / "a.onnx", metadata=_tiled_metadata(mode="anomaly"))
    assert Inspector(other).info.mode == "anomaly"
    wrong = write_model(tmp_path / "wrong.onnx", metadata=_tiled_metadata(scale=1.0) | {"input_size": 32})
    with pytest.raises(ModelFileError, match="tile size"):
        Inspector(wrong)
    damaged = write_model(tmp_path / "damaged.onnx", metadata=_tiled_metadata() | {"tiling": {"tile": 64}})
    with pytest.raises(ModelFileError, match="damaged"):
        Inspector(damaged)


def test_tiled_verdict_pools_the_strongest_tile(tiled, per_tile):
    image = np.full((64, 400, 3), 10, np.uint8)
    image[:, 40:100] = (60, 200, 60)  # a dim green area ("spot" colour), weaker
    image[:, 330:400] = (250, 220, 40)  # a bright blue area ("scratch" colour), strongest
    verdict = tiled.inspect(image)
    tiles, layout = tiled.info.tiling.tiles(image)
    singles = [per_tile.inspect(t) for t in tiles]
    best = max(singles, key=lambda v: v.score)
    assert verdict.score == pytest.approx(best.score, abs=1e-4)
    assert not verdict.passed and verdict.defect_class == "scratch"
    assert verdict.class_probs == pytest.approx(best.class_probs, abs=1e-4)
    on_image = verdict.heatmap_on_image()
    assert on_image.shape == (64, 400) and on_image.dtype == np.float32
    assert on_image[:, 340:].mean() > 0.5 and on_image[:, 150:300].mean() < 0.1
    # Verdict.heatmap + box still map onto the part for code that uses them directly.
    coarse = heatmap_to_image(verdict.heatmap, verdict.box)
    assert coarse.shape == (64, 400) and coarse[:, 340:].mean() > coarse[:, 150:300].mean() + 0.5
    assert verdict.box.width == 400 and verdict.box.height == 64
    # The grid is stitched on first use (the line's verdict does not need it), the same
    # grid an eager stitch gives.
    fresh = tiled.inspect(image)
    assert fresh.grid is None
    grid, box = stitch_grid(fresh.tile_heatmaps, fresh.layout, 16)
    assert np.array_equal(fresh.heatmap, grid) and fresh.box == box


def test_tiled_batch_runs_in_chunks_and_matches_single_parts(tiled, monkeypatch):
    rng = np.random.default_rng(3)
    parts = [rng.integers(0, 256, (64, w, 3), dtype=np.uint8) for w in (400, 64, 900, 30)]
    singles = [tiled.inspect(p) for p in parts]
    sizes = []
    real_run = tiled._session.run

    def counting_run(names, feeds):
        sizes.append(feeds["image"].shape[0])
        return real_run(names, feeds)

    monkeypatch.setattr(tiled._session, "run", counting_run)
    batch = tiled.inspect_batch(parts)
    total = sum(len(tiled.info.tiling.layout(*p.shape[:2])) for p in parts)
    assert sum(sizes) == total > MAX_TILES_PER_RUN and max(sizes) <= MAX_TILES_PER_RUN
    for one, many, part in zip(singles, batch, parts):
        assert many.score == pytest.approx(one.score, abs=1e-4) and many.label == one.label
        assert many.heatmap_on_image().shape == part.shape[:2]


def test_lanes_share_out_parts_and_tiles_and_give_the_same_verdicts(tiled, monkeypatch):
    """Inspector(lanes=2): a batch of parts is shared out between two one-thread sessions
    side by side (each cuts its own parts), one part's several tiles likewise, and a
    single input keeps the main session; the verdicts are those of one session, in order."""
    laned = Inspector(tiled.model_path, threads=2, lanes=2)
    assert laned.lanes == 2 and len(laned._lanes) == 2
    laned.warmup()
    calls: dict[str, list[int]] = {"main": [], "lane0": [], "lane1": []}
    for name, session in (("main", laned._session), ("lane0", laned._lanes[0]), ("lane1", laned._lanes[1])):
        def counting(names, feeds, _real=session.run, _name=name):
            calls[_name].append(feeds["image"].shape[0])
            return _real(names, feeds)
        monkeypatch.setattr(session, "run", counting)
    tiles = lambda part: len(tiled.info.tiling.layout(*part.shape[:2]))  # noqa: E731
    rng = np.random.default_rng(4)
    parts = [rng.integers(0, 256, (64, w, 3), dtype=np.uint8) for w in (400, 64, 900, 30, 150)]
    expected, got = tiled.inspect_batch(parts), laned.inspect_batch(parts)
    # Parts 0-2 to the first lane, 3-4 to the second, all their tiles with them.
    assert calls["main"] == [] and sum(calls["lane0"]) == sum(tiles(p) for p in parts[:3])
    assert sum(calls["lane1"]) == sum(tiles(p) for p in parts[3:])
    # A one-thread lane runs its inputs one at a time (runtime.LANE_RUN_INPUTS).
    assert set(calls["lane0"]) == set(calls["lane1"]) == {1}
    # Runs of another size take other kernels: float32 round-off apart, not more.
    for one, two in zip(expected, got):
        assert two.score == pytest.approx(one.score, abs=1e-5) and two.label == one.label
        assert np.allclose(two.heatmap_on_image(), one.heatmap_on_image(), atol=1e-5)
    # One part of several tiles: its tiles are shared out evenly.
    for name in calls:
        calls[name].clear()
    wide = parts[2]
    assert laned.inspect(wide).score == pytest.approx(tiled.inspect(wide).score, abs=1e-6)
    assert calls["main"] == [] and abs(sum(calls["lane0"]) - sum(calls["lane1"])) <= 1
    assert sum(calls["lane0"]) + sum(calls["lane1"]) == tiles(wide) > 2
    single = np.full((64, 64, 3), 200, np.uint8)  # one tile: nothing to share
    assert laned.inspect(single).score == pytest.approx(tiled.inspect(single).score, abs=1e-6)
    assert calls["main"] == [1]


def _nan_score_model() -> onnx.ModelProto:
    """The fixture model with its score multiplied by NaN."""
    model = build_model()
    for node in model.graph.node:
        node.output[:] = ["raw_score" if o == "score" else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.array(np.nan, np.float32), "nan"))
    model.graph.node.append(helper.make_node("Mul", ["raw_score", "nan"], ["score"]))
    return model


def test_nan_score_is_a_model_failure_not_a_verdict(tmp_path):
    path = tmp_path / "nan.onnx"
    onnx.save(_nan_score_model(), str(path))
    inspector = Inspector(path)
    with pytest.raises(ModelFileError, match=r"invalid score \(NaN\)") as caught:
        inspector.inspect(np.full((64, 64, 3), 10, np.uint8))
    assert path.name in str(caught.value)


# --- acceptance: tiling finds what the whole-part view cannot see --------------------------


def _local_contrast_model(tile: int, tiling: dict | None) -> onnx.ModelProto:
    """A trivial 'model': how much darker each pixel is than its 5x5 neighbourhood (0..1).
    score = the largest such contrast, heatmap = its max per 16 px patch."""
    nodes = [
        helper.make_node("Cast", ["image"], ["f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["f", "inv255"], ["x"]),
        helper.make_node("ReduceMean", ["x"], ["gray"], axes=[3], keepdims=1),
        helper.make_node("Transpose", ["gray"], ["g"], perm=[0, 3, 1, 2]),
        helper.make_node("AveragePool", ["g"], ["blur"], kernel_shape=[5, 5], pads=[2, 2, 2, 2], count_include_pad=0),
        helper.make_node("Sub", ["blur", "g"], ["diff"]),
        helper.make_node("Relu", ["diff"], ["contrast"]),
        helper.make_node("MaxPool", ["contrast"], ["pooled"], kernel_shape=[16, 16], strides=[16, 16]),
        helper.make_node("Squeeze", ["pooled", "axis1"], ["heatmap"]),
        helper.make_node("ReduceMax", ["heatmap"], ["score"], axes=[1, 2], keepdims=0),
        helper.make_node("Unsqueeze", ["score", "axis1"], ["s1"]),
        helper.make_node("Sub", ["one", "s1"], ["ok1"]),
        helper.make_node("Concat", ["ok1", "s1"], ["class_probs"], axis=1),
    ]
    inits = [
        numpy_helper.from_array(np.array(1 / 255, np.float32), "inv255"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    graph = helper.make_graph(
        nodes, "local_contrast",
        [helper.make_tensor_value_info("image", TensorProto.UINT8, ["N", tile, tile, 3])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]),
         helper.make_tensor_value_info("class_probs", TensorProto.FLOAT, ["N", 2]),
         helper.make_tensor_value_info("heatmap", TensorProto.FLOAT, ["N", tile // 16, tile // 16])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    meta = lineside_metadata(["ok", "spot"], tile, 16, 0.1, "v1", None)  # fail at 25 gray levels
    meta["tiling"] = tiling
    helper.set_model_props(model, {"lineside": json.dumps(meta)})
    onnx.checker.check_model(model)
    return model


def _long_part() -> np.ndarray:
    """256 x 1,024 px of smooth, slightly noisy texture around the padding gray."""
    yy, xx = np.mgrid[0:256, 0:1024].astype(np.float32)
    base = PAD_VALUE + 4 * np.sin(2 * np.pi * xx / 200) * np.cos(2 * np.pi * yy / 150)
    base += np.random.default_rng(7).normal(0, 1.0, base.shape)
    return np.repeat(np.clip(base, 0, 255).astype(np.uint8)[:, :, None], 3, axis=2)


@pytest.mark.parametrize("defect", ["spot", "scratch"])
def test_tiling_finds_a_defect_too_small_to_see_at_whole_part_scale(tmp_path, defect):
    part = _long_part()
    if defect == "spot":
        y, x, extent = slice(140, 142), slice(700, 702), 2.0  # a 2 x 2 px dark spot
        part[y, x] = part[y, x].astype(np.int16).clip(60) - 60
    else:
        y, x, extent = slice(60, 100), slice(300, 301), 1.0  # a 1 px wide, 40 px long scratch
        part[y, x] = part[y, x].astype(np.int16).clip(40) - 40
    plan = choose_tile_plan([part.shape[:2]], [extent], 224)
    assert plan == TilePlan(256, 1.0, 0.125, TILE_MARGIN)  # tiny painted defects: native resolution
    whole_path, tiled_path = tmp_path / "whole.onnx", tmp_path / "tiled.onnx"
    onnx.save(_local_contrast_model(224, None), str(whole_path))
    onnx.save(_local_contrast_model(plan.tile, plan.to_dict()), str(tiled_path))
    whole, tiled = Inspector(whole_path), Inspector(tiled_path)

    assert whole.inspect(part).passed  # letterboxed to 224 px the defect blurs away
    found = tiled.inspect(part)
    assert not found.passed and found.defect_class == "spot"
    assert found.score > 2 * whole.inspect(part).score
    heat = found.heatmap_on_image()
    assert heat.shape == part.shape[:2]
    hy, hx = np.unravel_index(int(np.argmax(heat)), heat.shape)
    assert y.start - 16 <= hy < y.stop + 16 and x.start - 16 <= hx < x.stop + 16  # at the defect
    assert tiled.inspect(_long_part()).passed  # and the clean part is not rejected


@pytest.mark.parametrize(
    "plan, shape, ring",
    [
        (TilePlan(320, 0.576, 0.125, 16), (1265, 500), 1),  # kolektorsdd-like: 320-px tiles
        (TilePlan(256, 1.0, 0.125, 16), (256, 1024), 1),
        (TilePlan(256, 0.5, 0.125, 16), (2000, 2000), 1),
        (TilePlan(256, 0.448, 0.125, 0), (1259, 500), 0),  # no margin: the border is a tile edge
        (TilePlan(96, 1.0, 0.125, 16), (64, 400), 0),  # 12 px overlap: less than two patches
    ],
)
def test_a_redundant_ring_leaves_every_part_pixel_inside_some_tiles_interior(plan, shape, ring):
    assert plan.redundant_ring(16) == ring
    layout = plan.layout(*shape)
    inner = np.zeros((layout.scaled_height, layout.scaled_width), bool)
    r = 16
    for y0, x0 in layout.origins:
        ya, xa = max(0, y0 + r), max(0, x0 + r)
        inner[ya : max(ya, y0 + plan.tile - r), xa : max(xa, x0 + plan.tile - r)] = True
    assert inner.all() == bool(ring)


def test_an_explicit_input_size_is_the_tile_and_tiling_is_judged_against_it():
    # 96 x 96 parts and a project input of 96 px: whole-part letterboxing loses nothing,
    # so nothing is tiled, though the part inside a 96-px tile with its margins is 64 px.
    assert choose_tile_plan([(96, 96)], [15.0], 96 - 2 * TILE_MARGIN, whole_size=96) is None
    # Judged against a 64-px letterbox instead, native 96-px tiles would be a 1.5x gain.
    assert choose_tile_plan([(96, 96)], [15.0], 96 - 2 * TILE_MARGIN) == TilePlan(96, 1.0, 0.125, TILE_MARGIN)


# -- grey parts are cut on their one channel ----------------------------------------------

def _grey_bgr(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    grey = rng.integers(0, 256, shape, dtype=np.uint8)
    grey = cv2.GaussianBlur(grey, (0, 0), 2.0)  # texture, not noise: resampling differs more
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)


def _cut_both_ways(cut, image: np.ndarray):
    grey = grey_channel(image)
    assert grey is not None and grey.ndim == 2
    return cut(image), [to_bgr8(t) for t in cut(grey)]


@pytest.mark.parametrize("scale", [0.31, 0.576, 1.0, 1.7])
def test_a_grey_parts_tiles_cut_from_its_channel_are_the_same_bytes(scale):
    rng = np.random.default_rng(int(scale * 100))
    plan = TilePlan(64, scale, 0.125, 8)
    for shape in [(157, 61), (300, 90), (41, 233)]:
        three, one = _cut_both_ways(lambda im: plan.tiles(im)[0], _grey_bgr(rng, shape))
        assert len(three) == len(one) and all(np.array_equal(a, b) for a, b in zip(three, one))


@pytest.mark.parametrize("shape", [(373, 248), (180, 90), (50, 70), (288, 288)])
def test_a_grey_parts_letterbox_cut_from_its_channel_is_the_same_bytes(shape):
    three, one = _cut_both_ways(lambda im: [letterbox(im, 96)[0]], _grey_bgr(np.random.default_rng(1), shape))
    assert np.array_equal(three[0], one[0])


def test_colour_and_odd_parts_are_not_taken_for_grey():
    part = _grey_bgr(np.random.default_rng(2), (120, 80))
    channel = part[..., 0]
    assert np.array_equal(grey_channel(part), channel) and grey_channel(channel) is channel
    for y, x, c in [(0, 0, 1), (119, 79, 2), (61, 33, 0)]:  # one pixel off, rows the probe skips too
        coloured = part.copy()
        coloured[y, x, c] ^= 1
        assert grey_channel(coloured) is None
    assert grey_channel(part.astype(np.uint16)) is None
    assert grey_channel(np.dstack([part, part[..., :1]])) is None


def test_the_inspector_gives_a_grey_part_the_verdict_of_its_bgr_copy(tiled):
    part = _grey_bgr(np.random.default_rng(4), (70, 300))
    part[30:40, 200:210] = 255
    as_bgr, as_grey = tiled.inspect(part), tiled.inspect(part[..., 0].copy())
    assert as_bgr.score == as_grey.score and np.array_equal(as_bgr.heatmap_on_image(), as_grey.heatmap_on_image())
    assert all(np.array_equal(a, b) for a, b in zip(tiled.model_inputs(part), tiled.model_inputs(part[..., 0])))


KOLEKTOR = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "kolektorsdd"


@pytest.mark.skipif(not KOLEKTOR.is_dir(), reason="the kolektorsdd dataset is not present")
def test_real_grey_parts_cut_from_their_channel_are_the_same_bytes():
    plan = TilePlan(320, 0.576, 0.125, 16)
    files = sorted((KOLEKTOR / "images").rglob("*.jpg"))[:12]
    assert files
    for path in files:
        three, one = _cut_both_ways(lambda im: plan.tiles(im)[0], read_image(path))
        assert all(np.array_equal(a, b) for a, b in zip(three, one))


# -- unpainted defects on large parts ---------------------------------------------------------

def _long_parts_project(tmp_path, n_ok: int, n_painted: int, n_unpainted: int):
    """A project of 120 x 600 px parts (tiling territory): OK parts, and defective parts
    with or without a painted region."""
    from app.core.project import Project

    project = Project.create(tmp_path / "long")
    rng = np.random.default_rng(3)
    for i in range(n_ok + n_painted + n_unpainted):
        image = rng.integers(80, 120, (120, 600, 3), dtype=np.uint8)
        record, _ = project.add_image_array(image, source=f"part{i}")
        if i < n_ok:
            project.set_label(record.id, OK)
            continue
        mask = np.zeros((120, 600), np.uint8)
        mask[50:60, 300:330] = 255
        project.set_label(record.id, "crack", mask if i < n_ok + n_painted else None)
    return project


def test_large_parts_tile_whether_or_not_their_defects_are_painted(tmp_path):
    from training.data import part_key
    from training.modes import SUPERVISED
    from training.pipeline import choose_size_and_tiling, load_split
    from training.weak_tiles import is_weak

    project = _long_parts_project(tmp_path, 4, 2, 3)
    labeled = project.labeled()
    size, plan = choose_size_and_tiling(project, labeled, SUPERVISED)
    assert plan is not None and size == plan.tile
    samples, parts, unpainted = load_split(project, None, size, plan)
    assert len(parts) == 9 and unpainted == 3
    # Every defective part is used: a painted one labels its tiles from the mask, an
    # unpainted one gives a bag of tiles that all carry its class and no mask.
    weak_parts = {part_key(s.key) for s in samples if is_weak(s)}
    assert len(weak_parts) == 3
    for s in samples:
        if part_key(s.key) in weak_parts:
            assert s.verdict == "crack" and s.mask is None
    painted = [s for s in samples if s.verdict == "crack" and not is_weak(s)]
    assert painted and all(s.mask is not None and s.mask.any() for s in painted)
