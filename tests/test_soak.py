"""A short soak of the station (benchmarks/soak.py): `lineside run --source sim --rate 0
--no-keep` flat out for a few thousand parts, then a clean stop. Every judged part
must be in the store, and resident memory must not grow with the parts.

Correctness and a memory bound only: the speed is the benchmark's to report.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.soak import fixture_project, memory_mib, run_soak  # noqa: E402

PARTS = 4000
# 128 px parts: drawn about 8x faster than the 256 px of `--source sim`, and still big
# enough (48 KiB each) that an image kept per part would show.
PART_SIZE = 128
# Measured on Linux: +1 MiB over 3,000 parts after the warm-up, levelling off at +3 MiB
# by 12,000 parts (SQLite's page cache and the 2,000-part timing window filling up);
# allocator noise moves RSS by a few MiB either way. An image kept per part would add
# about 140 MiB here. 24 MiB leaves room for the noise and still catches that.
MAX_GROWTH_MIB = 24


def test_the_simulated_line_runs_flat_out_at_rate_zero(tmp_path):
    from app.cli import build_parser
    from app.cli.run import make_sources

    args = build_parser().parse_args(["run", str(tmp_path), "--source", "sim", "--rate", "0"])
    (source,) = make_sources(args)
    assert source.rate_hz == 0  # not the 5 parts/s of a plain `--source sim`
    (paced,) = make_sources(build_parser().parse_args(["run", str(tmp_path), "--source", "sim"]))
    assert paced.rate_hz == 5.0


def test_a_short_soak_loses_no_result_and_does_not_grow(tmp_path):
    if memory_mib()[0] is None:
        pytest.skip("resident memory is read from /proc (Linux)")
    project = fixture_project(tmp_path / "project")
    samples = []
    figures = run_soak(project, PARTS, every=500, warmup=1000, size=PART_SIZE, on_sample=samples.append)
    assert figures["errors"] == 0 and figures["missed"] == 0 and figures["dropped"] == 0
    assert figures["parts"] == PARTS  # --max-parts: exactly that many judged
    assert figures["committed"] == figures["stored"] == PARTS and figures["lost"] == 0
    assert [s["parts"] for s in samples] == sorted(s["parts"] for s in samples) and samples[-1]["parts"] == PARTS
    assert all(s["committed"] <= s["parts"] for s in samples)  # acknowledged only after judged
    assert figures["growth_mib"] < MAX_GROWTH_MIB, figures["samples"]
