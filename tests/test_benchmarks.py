"""The other benchmarks (back-propagation cost, deep vs wide) with --tiny sizes, and run_all."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
from bench_support import BENCH, read


def test_backprop_cost(tiny, capsys):
    out, lines = tiny("backprop_cost", capsys)
    assert lines[-1].startswith("backprop 784-1024-10 batch ")
    data = read(out, "backprop_cost")
    assert (out / "backprop_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for r in data["rows"]:
        assert r["time_ratio"] > 1.0  # a training step costs more than its forward pass
        assert r["flop_ratio"] == pytest.approx(2.0126, abs=1e-3)
        assert r["analytic_ratio"] > 1.0
    md = (out / "backprop_cost.md").read_text()
    assert "## Conclusion" in md and "forward" in data["conclusion"]


def test_backprop_analytic_bytes():
    import backprop_cost as bc

    a = bc.analytic_bytes((784, 1024, 10), 100)
    assert a["weights"] == 4 * (784 * 1024 + 1024 + 1024 * 10 + 10)
    assert a["forward"] == 4 * 100 * (784 + 1024)
    assert a["train_step"] == 4 * (784 * 1024 + 1024 + 1024 * 10 + 10) + 4 * 100 * (784 + 1024 + 10) + 4 * 100 * 1034


def test_deep_vs_wide(tiny, capsys):
    out, lines = tiny("deep_vs_wide", capsys)
    assert lines[-2].startswith("deep_vs_wide: The data")
    data = read(out, "deep_vs_wide")
    assert (out / "deep_vs_wide.png").stat().st_size > 0
    assert {r["family"] for r in data["rows"]} == {"wide", "deep2", "deep3"}
    for r in data["rows"]:
        assert abs(r["parameters"] / r["budget"] - 1) <= 0.02
        assert 0 <= r["valid_mean"] <= 100 and 0 <= r["test_mean"] <= 100
    assert "validation" in (out / "deep_vs_wide.md").read_text()


def test_deep_vs_wide_matched_widths():
    import deep_vs_wide as dw

    assert dw.matched_width(dw.parameters((1024,)), 1) == 1024
    for depth in (2, 3):
        w = dw.matched_width(dw.parameters((1024,)), depth)
        assert abs(dw.parameters((w,) * depth) / 814_090 - 1) <= 0.02
    with pytest.raises(ValueError):
        dw.matched_width(100, 3)  # 3 hidden layers of width 1 already have 809 parameters


def test_run_all_summary_and_cli(tiny, capsys, tmp_path, monkeypatch):
    import run_all

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # prepare_full_scale's archives
    for name in run_all.BENCHMARKS:
        out, _ = tiny(name, capsys)
    md = run_all.summarize(out)
    assert "ours/limit" in md and "ours/course" in md and "## Deep vs wide" in md and "## Back-propagation" in md
    assert "two-archive prepare, tiny archives: wall" in md and "peak RSS of the process tree" in md
    assert "projected notMNIST_large" not in md  # measured by prepare_full_scale instead
    commands = []  # --glyphs reaches the benchmarks that build data from glyphs, and only those
    monkeypatch.setattr(run_all.subprocess, "run", lambda cmd, **kw: commands.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, ""))
    for name in run_all.BENCHMARKS:
        run_all.run_one(name, str(out), True, glyphs="/data/g.tar.gz")
    passed = {cmd[1].rsplit("/", 1)[-1][:-3] for cmd in commands if cmd[-2:] == ["--glyphs", "/data/g.tar.gz"]}
    assert passed == {"prepare_throughput", "prepare_full_scale", "deep_vs_wide"}
    monkeypatch.undo()
    # The CLI on the one benchmark that needs no TensorFlow: key lines, then BENCHMARKS.md.
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--tiny", "--only", "prepare_throughput",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ratio prepare_ours/course=" in proc.stdout and (out / "BENCHMARKS.md").exists()
    bad = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--only", "nope"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("run_all: error: unknown benchmark") and not bad.stdout
    assert math.isfinite(json.loads((out / "prepare_throughput.json").read_text())["large_seconds"])
