"""What the benchmark tests share: the benchmarks/ folder on sys.path, their ratio lines, their outputs.

(The ``tiny`` fixture that runs a benchmark once per test module is in conftest.py.)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

RATIO_LINE = re.compile(r"^ratio (?P<name>[\w/]+)=(?P<value>\d+\.\d+)$")


def read(out: Path, stem: str) -> dict:
    assert (out / f"{stem}.md").stat().st_size > 0
    return json.loads((out / f"{stem}.json").read_text())
