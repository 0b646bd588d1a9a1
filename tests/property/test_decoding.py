"""Image decoding never fails in an unplanned way.

Whatever bytes arrive (random, a known format's header followed by noise, a valid file
with bytes flipped or cut off) and whatever array a camera hands over (uint8, uint16,
float32, bool, int16; 1x1 to small; gray, 1, 3 or 4 channels, or a layout that is not
an image), the result is either a uint8 HxWx3 image or a BadImageError with a message:
never another exception, never another shape.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from app.core.errors import BadImageError
from app.core.imageio import decode_image, read_image, to_bgr8

MAGICS = [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"MM\x00*",
          b"RIFF\x00\x00\x00\x00WEBP", b"P5\n"]


def _valid(suffix: str, seed: int) -> bytes:
    image = np.random.default_rng(seed).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(suffix, image)
    assert ok
    return buf.tobytes()


VALID = {suffix: _valid(suffix, i) for i, suffix in enumerate([".png", ".jpg", ".bmp", ".tif", ".webp"])}


def _image_or_bad(call) -> np.ndarray | None:
    try:
        image = call()
    except BadImageError as exc:
        assert str(exc)  # a message to show
        return None
    assert isinstance(image, np.ndarray) and image.dtype == np.uint8
    assert image.ndim == 3 and image.shape[2] == 3 and image.shape[0] >= 1 and image.shape[1] >= 1
    return image


@settings(max_examples=100, deadline=None)
@given(st.one_of(
    st.binary(max_size=600),
    st.builds(lambda magic, rest: magic + rest, st.sampled_from(MAGICS), st.binary(max_size=600)),
))  # fmt: skip
def test_random_bytes_decode_or_are_refused(data: bytes):
    _image_or_bad(lambda: decode_image(data, "part.png"))


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(sorted(VALID)), st.data())
def test_damaged_files_decode_or_are_refused(suffix: str, data):
    good = bytearray(VALID[suffix])
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(good) - 1), st.integers(0, 255)), max_size=8))
    for position, value in flips:
        good[position] = value
    cut = data.draw(st.integers(0, len(good)))
    _image_or_bad(lambda: decode_image(bytes(good[:cut]), f"part{suffix}"))


@settings(max_examples=50, deadline=None)
@given(st.binary(max_size=300))
def test_read_image_from_a_file_decodes_or_is_refused(data: bytes):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "part.png"
        path.write_bytes(data)
        _image_or_bad(lambda: read_image(path))


DTYPES = st.sampled_from([np.uint8, np.uint16, np.float32, np.bool_, np.int16])
IMAGE_SHAPES = st.one_of(
    st.tuples(st.integers(1, 12), st.integers(1, 12)),
    st.tuples(st.integers(1, 12), st.integers(1, 12), st.sampled_from([1, 3, 4])),
)
ODD_SHAPES = st.one_of(
    st.tuples(st.integers(1, 12)),  # a line, not an image
    st.tuples(st.integers(1, 6), st.integers(1, 6), st.sampled_from([2, 5])),
    st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4), st.integers(1, 3)),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.just(3)).filter(lambda s: 0 in s),  # empty
)


@settings(max_examples=100, deadline=None)
@given(st.data(), DTYPES, IMAGE_SHAPES)
def test_any_camera_array_becomes_bgr8(data, dtype, shape):
    array = data.draw(hnp.arrays(dtype, shape))  # floats include NaN and infinities
    image = _image_or_bad(lambda: to_bgr8(array))
    assert image is not None, "an image layout must be converted, not refused"
    assert image.shape == (shape[0], shape[1], 3)
    if dtype == np.uint8 and len(shape) == 3 and shape[2] == 3:
        assert np.array_equal(image, array)  # already BGR8: unchanged
    if len(shape) == 2 or shape[2] == 1:
        assert np.array_equal(image[:, :, 0], image[:, :, 1]) and np.array_equal(image[:, :, 1], image[:, :, 2])


@settings(max_examples=60, deadline=None)
@given(st.data(), DTYPES, ODD_SHAPES)
def test_a_layout_that_is_not_an_image_is_refused(data, dtype, shape):
    array = data.draw(hnp.arrays(dtype, shape))
    with pytest.raises(BadImageError):
        to_bgr8(array)


@settings(max_examples=60, deadline=None)
@given(st.data(), st.sampled_from([np.uint8, np.uint16]), IMAGE_SHAPES)
def test_a_png_round_trip_keeps_the_size(data, dtype, shape):
    array = data.draw(hnp.arrays(dtype, shape))
    ok, buf = cv2.imencode(".png", array)
    assert ok
    image = _image_or_bad(lambda: decode_image(buf.tobytes(), "roundtrip.png"))
    assert image is not None and image.shape == (shape[0], shape[1], 3)
    if dtype == np.uint8 and len(shape) == 3 and shape[2] == 3:
        assert np.array_equal(image, array)
