"""The crash-consistency benchmark, quick version: 5 SIGKILLs each of an import, a
labeling session and a training, with every check after each kill (see
benchmarks/crash.py; the full 150-kill run is in benchmarks/results/crash.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile.helpers import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")]


def test_quick_crash_benchmark_finds_no_failures(tmp_path: Path):
    out = tmp_path / "crash_quick.md"
    done = subprocess.run([sys.executable, "benchmarks/crash.py", "--quick", "--out", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=540)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (import|labels|train) \| (.*)\|$", text, re.M)}
    assert sorted(rows) == ["import", "labels", "train"]
    for writer, row in rows.items():
        kills, mid_run, integrity, not_opening, lost, broken, production, _ = [c.strip() for c in row.split("|")]
        assert kills == "5" and int(mid_run) >= 1, (writer, row)
        assert (integrity, not_opening, broken, production) == ("0", "0", "0", "0"), (writer, row)
        assert lost.startswith("0 of "), (writer, row)
    assert "**No failures** in 15 kills." in text
