"""What the benchmark tests share: the benchmarks/ folder on sys.path, their ratio lines, their outputs, and the
code before the reorganization (commit 8428ca3) for the benchmarks that compare against it.

(The ``tiny`` fixture that runs a benchmark once per test module is in conftest.py.)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"
sys.path.insert(0, str(BENCH))
OLD_COMMIT = "8428ca3"  # the code before the package was reorganized: the speed tricks' and the budget's "old"

RATIO_LINE = re.compile(r"^ratio (?P<name>[\w/]+)=(?P<value>\d+\.\d+)$")


def read(out: Path, stem: str) -> dict:
    assert (out / f"{stem}.md").stat().st_size > 0
    return json.loads((out / f"{stem}.json").read_text())


def results_snapshot() -> dict[str, float]:
    """Every file in results/ with its modification time (a --tiny run must leave them alone)."""
    return {p.name: p.stat().st_mtime for p in (REPO / "results").iterdir() if p.is_file()}


def old_checkout(dest: Path) -> Path | None:
    """The package of commit OLD_COMMIT extracted into ``dest`` (``git archive``: the repository is only read),
    or None when this is not a git checkout that has the commit."""
    try:
        archive = subprocess.run(["git", "-C", str(REPO), "archive", OLD_COMMIT, "dnn_tf"], capture_output=True,
                                 timeout=120, check=True).stdout
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, capture_output=True, timeout=120, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return dest
