"""The good-only anomaly model (training/anomaly.py) on generated textures."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

import training.export
from app.core.evaluation import auroc, rates_at, threshold_for_false_reject
from training.anomaly import (
    AnomalyConfig,
    PatchEmbedder,
    _Reservoir,
    anomaly_outputs,
    anomaly_scores,
    export_anomaly,
    fit_anomaly,
    greedy_coreset,
    with_bank_prefix,
)
from training.export import ExportParityError
from training.loop import Cancelled
from training.network import EfficientNetLite0

SIZE = 128  # 8 x 8 patches of 16 px
GRID = SIZE // 16


def texture(rng: np.random.Generator, spot: bool, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """A brushed-metal-like texture (BGR uint8) and its defect mask; a dark round spot if *spot*."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle = rng.uniform(-0.2, 0.2)
    phase = rng.uniform(0, 2 * np.pi)
    level = rng.uniform(115, 140)
    gray = level + 18 * np.sin(0.9 * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    gray += rng.normal(0, 5, (size, size))
    mask = np.zeros((size, size), np.uint8)
    if spot:
        cx, cy = rng.uniform(24, size - 24, 2)
        r = rng.uniform(7, 10)
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        gray[disc] -= 70
        mask[disc] = 255
    img = np.clip(gray, 0, 255).astype(np.uint8)
    tint = np.array([1.02, 1.0, 0.97], np.float32)
    return np.clip(img[..., None] * tint, 0, 255).astype(np.uint8), mask


def images(seed: int, n: int, spot: bool, size: int = SIZE):
    rng = np.random.default_rng(seed)
    return [texture(rng, spot, size) for _ in range(n)]


@pytest.fixture(scope="module")
def fitted():
    ok = [img for img, _ in images(1, 30, False)]
    events = []
    fit = fit_anomaly(ok, AnomalyConfig(input_size=SIZE), on_event=events.append)
    return ok, fit, events


def test_good_only_fit_detects_spots_and_points_at_them(fitted):
    _, fit, events = fitted
    ok_test = [img for img, _ in images(2, 12, False)]
    bad = images(3, 12, True)
    s_ok = anomaly_scores(fit.net, ok_test)
    out = anomaly_outputs(fit.net, [img for img, _ in bad])
    s_bad = out.score.numpy()
    labels = np.r_[np.zeros(len(s_ok)), np.ones(len(s_bad))]
    assert auroc(labels, np.r_[s_ok, s_bad]) >= 0.95
    # The threshold comes from the out-of-fold OK scores only, as the product sets it.
    threshold = threshold_for_false_reject(fit.oof_ok_scores, 0.01)
    catch, false_reject = rates_at(s_ok, s_bad, threshold)
    assert catch >= 0.9
    assert false_reject <= 0.25
    # The patches the part score pools (its three largest distances) include the spot.
    # Distances, not the heatmap: the logistic saturates to exactly 1.0 on several patches
    # of a clear defect, and argmax over ties would only report the first of them.
    hits = 0
    for (_, mask), heat, dist in zip(bad, out.heatmap.numpy(), out.patch_distance.numpy()):
        assert heat.shape == dist.shape == (GRID, GRID)
        on_spot = False
        for flat in np.argsort(dist.ravel())[-3:]:
            y, x = divmod(int(flat), GRID)
            on_spot |= bool(mask[max(0, 16 * y - 4):16 * y + 20, max(0, 16 * x - 4):16 * x + 20].any())
        hits += on_spot
    assert hits >= 11
    # Progress was reported for each phase.
    assert {e["phase"] for e in events} >= {"features", "coreset", "oof"}


def test_the_heatmap_shows_each_patch_the_largest_distance_around_it(fitted, tmp_path):
    """The heatmap patch is the largest patch distance of its 3 x 3 neighbourhood, so a
    defect the bank sees in one patch lights the patches it reaches into; the part's
    score is the same as without, and the exported graph computes the same heatmap."""
    from training.anomaly import AnomalyNet

    _, fit, _ = fitted
    net = fit.net
    assert net.heatmap_neighbourhood == 3  # the default a fit gets
    own = AnomalyNet(net.embedder, net.bank_t.t() + net.center.reshape(1, -1), net.center.reshape(-1),
                     float(net.mu), float(net.sigma), net.pool, heatmap_neighbourhood=1).eval()
    parts = [img for img, _ in images(3, 4, True)]
    out, single = anomaly_outputs(net, parts), anomaly_outputs(own, parts)
    torch.testing.assert_close(out.score, single.score, atol=1e-5, rtol=1e-5)
    expected = torch.sigmoid((torch.nn.functional.max_pool2d(single.patch_distance[:, None], 3, 1, 1)[:, 0]
                              - net.mu) / net.sigma)
    torch.testing.assert_close(out.heatmap, expected, atol=1e-5, rtol=1e-5)
    assert (out.heatmap >= single.heatmap - 1e-5).all()
    hot = np.unravel_index(int(np.argmax(single.patch_distance[0].numpy())), (GRID, GRID))
    y, x = (min(max(v, 1), GRID - 2) for v in hot)
    assert (out.heatmap[0, y - 1:y + 2, x - 1:x + 2] >= single.heatmap[0][hot] - 1e-5).sum() >= 4
    with pytest.raises(ValueError, match="odd"):
        AnomalyNet(net.embedder, net.bank_t.t(), net.center.reshape(-1), 1.0, 1.0, heatmap_neighbourhood=2)
    path = tmp_path / "neighbourhood.onnx"
    export_anomaly(net, path, SIZE, {"kind": "anomaly"}, parts)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _, _, ort_heat = session.run(None, {"image": np.stack(parts)})
    np.testing.assert_allclose(ort_heat, out.heatmap.numpy(), atol=1e-4)


def test_outputs_are_calibrated_and_consistent(fitted):
    ok, fit, _ = fitted
    out = anomaly_outputs(fit.net, ok[:5])
    score, probs, heat = out.score.numpy(), out.class_probs.numpy(), out.heatmap.numpy()
    assert score.shape == (5,) and probs.shape == (5, 2) and heat.shape == (5, GRID, GRID)
    assert np.all((heat >= 0) & (heat <= 1))
    # The part score is the logistic of the mean of its three largest patch distances.
    top3 = np.sort(out.patch_distance.numpy().reshape(5, -1), 1)[:, -3:].mean(1)
    expected = 1.0 / (1.0 + np.exp(-(top3 - fit.mu) / fit.sigma))
    np.testing.assert_allclose(score, expected, atol=1e-6)
    assert np.all(score <= heat.reshape(5, -1).max(1) + 1e-7)
    np.testing.assert_allclose(probs[:, 1], score, atol=1e-7)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-6)
    # Median OOF OK distance maps to 0.5 by construction.
    assert np.median(fit.oof_ok_scores) == pytest.approx(0.5, abs=0.02)


def test_out_of_fold_scores_for_every_ok_image_and_deterministic(fitted):
    ok, fit, _ = fitted
    assert fit.oof_ok_scores.shape == (len(ok),)
    assert np.all(np.isfinite(fit.oof_ok_scores))
    assert np.all((fit.oof_ok_scores >= 0) & (fit.oof_ok_scores <= 1))
    again = fit_anomaly(ok, AnomalyConfig(input_size=SIZE))
    np.testing.assert_allclose(again.oof_ok_scores, fit.oof_ok_scores, atol=1e-5)
    assert again.bank_entries == fit.bank_entries


def test_the_half_of_a_combined_model_scores_one_fold_for_its_calibration(fitted):
    ok, fit, _ = fitted
    one = fit_anomaly(ok, AnomalyConfig(input_size=SIZE, score_every_fold=False))
    # The same bank (the folds' coresets do not depend on the scoring), one fold scored.
    assert torch.equal(one.net.bank_t, fit.net.bank_t) and fit.oof_indices is None
    scored = one.oof_indices
    assert 0 < len(scored) < len(ok) and one.oof_ok_scores.shape == scored.shape
    np.testing.assert_allclose(one.oof_distances, fit.oof_distances[scored], rtol=1e-6)
    assert np.median(one.oof_ok_scores) == pytest.approx(0.5, abs=0.05)
    assert np.isfinite([one.mu, one.sigma]).all() and one.sigma > 0


def test_a_bank_prefix_is_the_first_picks_of_each_fold_and_only_moves_distances_up(fitted):
    ok, fit, _ = fitted
    assert sum(fit.fold_entries) == fit.bank_entries and len(fit.fold_entries) == AnomalyConfig().folds
    rows = fit.net.bank_t.t()  # centred rows, in bank order
    whole = with_bank_prefix(fit.net, fit.fold_entries, 1.0)
    assert whole.bank_entries == fit.bank_entries
    half = with_bank_prefix(fit.net, fit.fold_entries, 0.5)
    kept = [-(-n // 2) for n in fit.fold_entries]  # ceil
    assert half.bank_entries == sum(kept)
    starts = np.cumsum([0, *fit.fold_entries[:-1]])
    first = np.concatenate([np.arange(s, s + k) for s, k in zip(starts, kept)])
    assert np.allclose(half.bank_t.t().numpy(), rows[first].numpy(), atol=1e-5)
    parts = [img for img, _ in images(5, 4, True)] + ok[:2]
    full_d = anomaly_outputs(fit.net, parts).patch_distance
    half_d = anomaly_outputs(half, parts).patch_distance
    # A subset of the bank can only leave a patch's nearest neighbour as near or farther.
    assert bool((half_d >= full_d - 1e-4).all()) and float((half_d - full_d).max()) > 0
    assert np.allclose(anomaly_outputs(whole, parts).score.numpy(), anomaly_scores(fit.net, parts), atol=1e-5)
    with pytest.raises(ValueError):
        with_bank_prefix(fit.net, fit.fold_entries, 0.0)


def test_tiles_of_one_part_share_a_fold():
    # Parts of two identical tiles (overlapping tiles are nearly that): scored out-of-fold
    # against a bank holding the twin, a tile would look perfectly normal.
    tiles = [img for img, _ in images(5, 12, False) for _ in range(2)]
    cfg = AnomalyConfig(input_size=SIZE, coreset_ratio=1.0)  # every patch in the bank
    loose = fit_anomaly(tiles, cfg)
    grouped = fit_anomaly(tiles, cfg, groups=[i // 2 for i in range(len(tiles))])
    typical = float(np.median(grouped.oof_distances))
    # (float32 |f|^2 - 2 f.B + |B|^2 leaves a few hundredths where the twin is in the bank)
    assert np.sum(loose.oof_distances < 0.02 * typical) >= len(tiles) // 2
    assert grouped.oof_distances.min() > 0.3 * typical


def test_held_out_features_beyond_the_store_cap_are_recomputed(fitted):
    ok, fit, _ = fitted
    # A store too small for even one image: every held-out image is re-extracted, same result.
    cfg = AnomalyConfig(input_size=SIZE, oof_store_cap_bytes=1)
    again = fit_anomaly(ok, cfg)
    np.testing.assert_allclose(again.oof_ok_scores, fit.oof_ok_scores, atol=1e-4)


def test_onnx_export_matches_pytorch(fitted, tmp_path):
    ok, fit, _ = fitted
    bad = [img for img, _ in images(4, 3, True)]
    path = tmp_path / "model.onnx"
    diff = export_anomaly(fit.net, path, SIZE, {"kind": "anomaly"}, ok[:3] + bad)
    assert diff <= training.export.PARITY_TOLERANCE
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["score", "class_probs", "heatmap"]
    batch = np.stack(bad)
    score, probs, heat = session.run(None, {"image": batch})
    assert score.shape == (3,) and probs.shape == (3, 2) and heat.shape == (3, GRID, GRID)
    np.testing.assert_allclose(score, anomaly_scores(fit.net, bad), atol=1e-4)


def test_export_refused_when_parity_fails(fitted, tmp_path, monkeypatch):
    ok, fit, _ = fitted
    monkeypatch.setattr(training.export, "PARITY_TOLERANCE", -1.0)
    path = tmp_path / "model.onnx"
    with pytest.raises(ExportParityError):
        export_anomaly(fit.net, path, SIZE, {}, ok[:2])
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n_images", [6, 60])
def test_bank_respects_caps_however_many_images(n_images):
    ok = [img for img, _ in images(5, n_images, False, size=64)]  # 16 patches each
    dim = PatchEmbedder(EfficientNetLite0(), AnomalyConfig().layers, 3).dim
    cap_entries = 12
    cfg = AnomalyConfig(input_size=64, bank_cap_bytes=cap_entries * (dim + 1) * 4, pool_rows=50,
                        coreset_ratio=1.0)
    fit = fit_anomaly(ok, cfg)
    assert fit.bank_entries <= cap_entries
    assert fit.bank_bytes <= cfg.bank_cap_bytes
    assert fit.oof_ok_scores.shape == (n_images,)
    # The entry cap binds as well as the byte cap.
    cfg2 = AnomalyConfig(input_size=64, max_bank_entries=7, pool_rows=50, coreset_ratio=1.0)
    assert fit_anomaly(ok, cfg2).bank_entries <= 7


def test_candidate_pool_never_grows_past_its_rows():
    rng = np.random.default_rng(0)
    pool = _Reservoir(100, 4, rng)
    for start in range(0, 10_000, 37):
        rows = np.arange(start, start + 37, dtype=np.float32)[:, None].repeat(4, 1)
        pool.add(rows, np.arange(start, start + 37))
    kept, owners = pool.view()
    assert kept.shape == (100, 4) and pool.rows.shape == (100, 4)
    assert np.array_equal(kept[:, 0].astype(int), owners)
    # A uniform sample of the stream: not stuck on the first rows.
    assert 2500 < owners.mean() < 7500
    assert len(set(owners.tolist())) == 100


def test_greedy_coreset_covers_every_cluster():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 50, (6, 64))
    feats = np.concatenate([c + rng.normal(0, 0.5, (200, 64)) for c in centres]).astype(np.float32)
    chosen = greedy_coreset(feats, 6, projection_dim=32, seed=0)
    assert sorted(set((chosen // 200).tolist())) == list(range(6))


@pytest.mark.parametrize("stop_after", [0, 5, 12])
def test_should_stop_cancels(stop_after):
    ok = [img for img, _ in images(6, 20, False, size=64)]
    calls = {"n": 0}

    def should_stop():
        calls["n"] += 1
        return calls["n"] > stop_after

    with pytest.raises(Cancelled):
        fit_anomaly(ok, AnomalyConfig(input_size=64, batch=2), should_stop=should_stop)


def test_rejects_parts_of_the_wrong_size():
    ok = [img for img, _ in images(7, 4, False, size=64)]
    with pytest.raises(ValueError):
        fit_anomaly(ok, AnomalyConfig(input_size=96))


def test_a_ring_leaves_the_grid_edge_out_of_the_score_and_the_heatmap(fitted, tmp_path):
    """Tiles with a margin and enough overlap (`TilePlan.redundant_ring`): each tile's outer
    ring of patches is judged better by a neighbour, so the good-only score ignores it and
    the heatmap is 0 there; the exported graph does the same."""
    from training.anomaly import AnomalyNet, pool_distances

    ok, fit, _ = fitted
    # The pooling alone: a hot patch on the ring counts without a ring, not with one.
    d = torch.ones(1, GRID * GRID)
    d.view(1, GRID, GRID)[0, 0, 3] = 50.0
    assert float(pool_distances(d, "max")) == 50.0 and float(pool_distances(d, "max", ring=1)) == 1.0
    d.view(1, GRID, GRID)[0, 1, 3] = 20.0
    assert float(pool_distances(d, "max", ring=1)) == 20.0

    net = fit.net
    ringed = AnomalyNet(net.embedder, net.bank_t.t() + net.center.reshape(1, -1), net.center.reshape(-1),
                        float(net.mu), float(net.sigma), net.pool, ring=1,
                        heatmap_neighbourhood=3).eval()
    # Parts with a dark spot in the outer ring of patches and inside it.
    rng = np.random.default_rng(9)
    clean, _ = texture(rng, False)
    edge, inner = clean.copy(), clean.copy()
    edge[2:14, 50:62] //= 4
    inner[50:62, 50:62] //= 4
    with torch.no_grad():
        plain = net(torch.from_numpy(np.stack([clean, edge, inner])))
        out = ringed(torch.from_numpy(np.stack([clean, edge, inner])))
    # Same distances; the score pools the interior only, so it can only be lower.
    # (the ringed model's bank is the same rows, re-centred: float rounding only).
    torch.testing.assert_close(out.patch_distance, plain.patch_distance, atol=1e-4, rtol=1e-5)
    interior = pool_distances(out.patch_distance.reshape(3, -1), net.pool, ring=1)
    torch.testing.assert_close(out.score, torch.sigmoid((interior - net.mu) / net.sigma))
    assert (out.score <= plain.score + 1e-5).all()
    assert float(out.score[2]) > float(out.score[0]) + 0.2  # a spot inside is still found
    heat = out.heatmap.numpy()
    assert (heat[:, 0, :] == 0).all() and (heat[:, -1, :] == 0).all() and (heat[:, :, 0] == 0).all()
    # Inside, each patch shows the largest distance of its 3 x 3 neighbours among the
    # interior patches: the edge spot, on the ring, lights nothing inside.
    inside = plain.patch_distance[:, None, 1:-1, 1:-1]
    expected_heat = torch.sigmoid((torch.nn.functional.max_pool2d(inside, 3, 1, 1)[:, 0] - net.mu) / net.sigma)
    np.testing.assert_allclose(heat[:, 1:-1, 1:-1], expected_heat.numpy(), atol=1e-5)
    # The exported graph: parity-checked at export, and the same zero ring in ONNX Runtime.
    path = tmp_path / "ringed.onnx"
    export_anomaly(ringed, path, SIZE, {"kind": "anomaly"}, [clean, edge, inner])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    score, _, ort_heat = session.run(None, {"image": np.stack([clean, edge, inner])})
    np.testing.assert_allclose(score, out.score.numpy(), atol=1e-4)
    assert (ort_heat[:, 0, :] == 0).all() and (ort_heat[:, :, -1] == 0).all()
    np.testing.assert_allclose(ort_heat, heat, atol=1e-4)


def test_a_ring_is_fitted_into_the_calibration_and_saved_with_the_model(tmp_path, monkeypatch):
    from training.checkpoint import load_network

    ok = [img for img, _ in images(5, 12, False)]
    fit = fit_anomaly(ok, AnomalyConfig(input_size=SIZE, ring=1, folds=3))
    assert fit.net.ring == 1
    # The out-of-fold scores the threshold rests on are pooled without the ring too: an
    # OK part's score from the final bank equals its calibrated pooled distance.
    with torch.no_grad():
        out = fit.net(torch.from_numpy(np.stack(ok[:2])))
    from training.anomaly import pool_distances
    expected = torch.sigmoid((pool_distances(out.patch_distance.reshape(2, -1), fit.net.pool, 1) - fit.net.mu)
                             / fit.net.sigma)
    np.testing.assert_allclose(out.score.numpy(), expected.numpy(), atol=1e-6)
    # Only the patches that can count enter the bank: (8 - 2)^2 of the 8 x 8 per part.
    seen = []
    original = _Reservoir.add

    def counting(self, feats, owner):
        seen.append(feats.shape[0])
        return original(self, feats, owner)

    monkeypatch.setattr(_Reservoir, "add", counting)
    fit_anomaly(ok, AnomalyConfig(input_size=SIZE, ring=1, folds=3))
    assert sum(seen) == len(ok) * (GRID - 2) ** 2
    path = tmp_path / "checkpoint.pt"
    torch.save({"mode": "good-only", "config": {"layers": list(fit.net.embedder.layers), "neighbourhood": 3,
                                                "pool": fit.net.pool, "ring": 1},
                "state_dict": fit.net.state_dict()}, path)
    assert load_network(path).ring == 1
