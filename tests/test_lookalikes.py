"""The labeled part a threshold-placing OK part looks most like, when that part is
labeled defective (training/lookalikes.py): generated parts, the real backbone."""

import numpy as np
import pytest

pytest.importorskip("torch")

from app.core.operating_point import highest_ok_text  # noqa: E402
from app.core.synthetic import generate_part  # noqa: E402
from training.data import Sample  # noqa: E402
from training.lookalikes import defective_lookalikes, part_embeddings, unit_rows, with_lookalikes  # noqa: E402


def _parts(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [generate_part(rng, None, 128)[0] for _ in range(n)]


def _other_exposure(image: np.ndarray) -> np.ndarray:
    """The same part under dimmer light, as a camera's second exposure would see it."""
    return np.clip(image.astype(np.float32) * 0.8 + 6, 0, 255).astype(np.uint8)


def test_an_ok_query_is_flagged_only_when_its_nearest_labeled_part_is_defective():
    vectors = unit_rows(np.array([[1.0, 0.0, 0.0], [0.95, 0.1, 0.0], [0.0, 1.0, 0.1], [0.0, 0.9, 0.0],
                                  [0.1, 0.0, 1.0], [0.5, 0.5, 0.5]]))
    keys = ["ok-a", "crack-a", "ok-b", "ok-c", "ok-d", "ok-e"]
    verdicts = ["ok", "crack", "ok", "ok", "ok", "ok"]
    found = defective_lookalikes(keys, vectors, verdicts, ["ok-a", "ok-b", "missing"])
    assert set(found) == {"ok-a"}
    assert found["ok-a"][0] == "crack-a" and 0.0 < found["ok-a"][1] <= 1.0


def test_another_exposure_of_a_part_is_its_nearest_labeled_part_and_tiles_pool_into_one_part():
    images = _parts(6)
    samples = [Sample(img, None, "ok", f"part{i}") for i, img in enumerate(images)]
    samples.append(Sample(_other_exposure(images[2]), None, "ok", "again"))
    left, right = images[4][:, :64], images[4][:, 64:]
    samples += [Sample(np.ascontiguousarray(np.hstack([left, left])), None, "ok", "tiled#t0"),
                Sample(np.ascontiguousarray(np.hstack([right, right])), None, "ok", "tiled#t1")]
    keys, rows = part_embeddings(samples)
    assert keys == [f"part{i}" for i in range(6)] + ["again", "tiled"]
    assert rows.shape[0] == 8 and np.allclose(np.linalg.norm(rows, axis=1), 1.0)
    similarity = rows @ rows[keys.index("again")]
    similarity[keys.index("again")] = -np.inf
    assert keys[int(np.argmax(similarity))] == "part2"


def test_the_threshold_placing_parts_name_their_defective_lookalike_and_the_sentence_says_so():
    images = _parts(6, seed=1)
    samples = [Sample(img, None, "ok", f"sha{i}") for i, img in enumerate(images)]
    # sha6 is the same part as sha1 under other light; sha1 is labeled scratch.
    samples.append(Sample(_other_exposure(images[1]), None, "ok", "sha6"))
    labeled = {f"sha{i}": (100 + i, f"part{i}.png", "scratch" if i == 1 else "ok") for i in range(7)}
    parts = [{"image_id": 106, "filename": "part6.png", "score": 0.97, "rejected": True},
             {"image_id": 103, "filename": "part3.png", "score": 0.41, "rejected": False}]
    named = with_lookalikes(parts, samples, labeled)
    assert named[0]["looks_like"]["filename"] == "part1.png"
    assert named[0]["looks_like"]["verdict"] == "scratch" and named[0]["looks_like"]["image_id"] == 101
    assert {k: named[1][k] for k in parts[1]} == parts[1]  # the part's own entry is kept as it was
    assert "part6.png (0.970, looks most like part1.png, labeled scratch)" in highest_ok_text(named)
    # Without a labeled defect nothing is computed and the parts come back as they were.
    only_ok = {k: (i, f, "ok") for k, (i, f, _) in labeled.items()}
    assert with_lookalikes(parts, samples, only_ok) is parts
