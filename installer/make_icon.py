"""Draw the Lineside icon as PNG (256 px) and Windows ICO from the same geometry as
resources/lineside.svg, with OpenCV only (no SVG renderer needed on the build PC).

    python installer/make_icon.py            # writes resources/lineside.png and .ico
"""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

import cv2
import numpy as np

RESOURCES = Path(__file__).resolve().parents[1] / "resources"
SUPERSAMPLE = 4  # draw large, then shrink: OpenCV's own anti-aliasing is rough on curves
ICO_SIZES = (16, 24, 32, 48, 64, 128, 256)


def _bgra(hex_color: str) -> tuple[int, int, int, int]:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return (b, g, r, 255)


def _rounded_rect(img: np.ndarray, x0: int, y0: int, x1: int, y1: int, radius: int, color) -> None:
    cv2.rectangle(img, (x0 + radius, y0), (x1 - radius, y1), color, -1)
    cv2.rectangle(img, (x0, y0 + radius), (x1, y1 - radius), color, -1)
    for cx, cy in ((x0 + radius, y0 + radius), (x1 - radius, y0 + radius), (x0 + radius, y1 - radius), (x1 - radius, y1 - radius)):
        cv2.circle(img, (cx, cy), radius, color, -1, cv2.LINE_AA)


def draw_icon(size: int = 256) -> np.ndarray:
    """The icon as uint8 BGRA, size x size (transparent corners)."""
    s = SUPERSAMPLE * size / 256.0

    def p(v: float) -> int:
        return int(round(v * s))

    big = np.zeros((p(256), p(256), 4), np.uint8)
    white = _bgra("#ffffff")
    _rounded_rect(big, p(8), p(8), p(248), p(248), p(48), _bgra("#0f4c81"))
    cv2.circle(big, (p(128), p(112)), p(68), _bgra("#22c55e"), -1, cv2.LINE_AA)
    check = np.array([[p(94), p(114)], [p(118), p(138)], [p(164), p(88)]], np.int32)
    cv2.polylines(big, [check], False, white, max(1, p(18)), cv2.LINE_AA)
    for x, y in check:  # round caps and joins, as in the SVG
        cv2.circle(big, (int(x), int(y)), max(1, p(9)), white, -1, cv2.LINE_AA)
    _rounded_rect(big, p(36), p(196), p(220), p(210), p(7), white)
    for cx in (64, 128, 192):
        cv2.circle(big, (p(cx), p(222)), p(8), white, -1, cv2.LINE_AA)
    return cv2.resize(big, (size, size), interpolation=cv2.INTER_AREA)


def ico_bytes(sizes: tuple[int, ...] = ICO_SIZES) -> bytes:
    """A Windows .ico holding PNG-compressed images (valid since Windows Vista)."""
    pngs = []
    for size in sizes:
        ok, buf = cv2.imencode(".png", draw_icon(size))
        if not ok:
            raise RuntimeError(f"could not encode the {size} px icon")
        pngs.append((size, buf.tobytes()))
    header = struct.pack("<HHH", 0, 1, len(pngs))
    offset = len(header) + 16 * len(pngs)
    entries, blobs = b"", b""
    for size, data in pngs:
        dim = 0 if size >= 256 else size  # 0 means 256 in the ICO directory
        entries += struct.pack("<BBBBHHII", dim, dim, 0, 0, 1, 32, len(data), offset)
        blobs += data
        offset += len(data)
    return header + entries + blobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RESOURCES, help="folder for lineside.png and lineside.ico")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out / "lineside.png"), draw_icon(256))
    (args.out / "lineside.ico").write_bytes(ico_bytes())
    print(f"wrote {args.out / 'lineside.png'} and {args.out / 'lineside.ico'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
