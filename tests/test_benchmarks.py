"""Smoke tests of the benchmarks with --tiny sizes: they run, print their key lines, write well-formed results."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dnn_tf import presets

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

RATIO_LINE = re.compile(r"^ratio (?P<name>[\w/]+)=(?P<value>\d+\.\d+)$")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """run(name) -> (out dir, stdout lines): each benchmark's main(--tiny) once per module, into one folder."""
    out = tmp_path_factory.mktemp("bench")
    done: dict[str, list[str]] = {}

    def run(name: str, capsys=None):
        if name not in done:
            module = __import__(name)
            if capsys is not None:
                capsys.readouterr()
            assert module.main(["--tiny", "--out", str(out)]) == 0
            done[name] = capsys.readouterr().out.strip().splitlines() if capsys is not None else []
        return out, done[name]

    return run


def read(out: Path, stem: str) -> dict:
    assert (out / f"{stem}.md").stat().st_size > 0
    return json.loads((out / f"{stem}.json").read_text())


def test_train_throughput_ends_with_three_ratio_lines(tiny, capsys):
    out, lines = tiny("train_throughput", capsys)
    matches = [RATIO_LINE.match(line) for line in lines[-3:]]
    assert all(matches), lines[-3:]
    assert [m["name"] for m in matches] == ["ours/limit", "ours/keras_fit", "ours/tf1_feed_dict"]
    values = [float(m["value"]) for m in matches]
    assert all(v > 0 for v in values)
    data = read(out, "train_throughput")
    assert values == pytest.approx([round(v, 2) for v in data["ratios"].values()], abs=0.006)
    contenders = {r["contender"] for c in data["configs"] for r in c["rows"]}
    assert {"ours", "keras_fit", "tf1_feed_dict", "limit"} <= contenders
    for c in data["configs"]:
        for r in c["rows"]:
            assert r["steps_per_s"] > 0 and r["examples_per_s"] == pytest.approx(r["steps_per_s"] * r["batch"])
    settings = presets.get("relu1024").settings  # "ours" is the preset's own setting, whatever it is
    assert data["ours_default"] == {"steps_per_call": settings.steps_per_call, "xla": settings.xla}
    e = data["eval"]
    assert e["evaluations"] == 3 and 0 < e["eval_cost_pct"] < 100  # steps 0, 50, 100 of a 101-step run
    assert "| 784-1024-10 | 128 | ours |" in (out / "train_throughput.md").read_text()


def test_train_throughput_flop_limit_is_honest():
    import train_throughput as tt
    from dnn_tf.model import flops_per_example

    # 784-1024-10 at batch 128: forward 2*(784*1024 + 1024*10), backward the same for weights plus the
    # input gradient of the second layer only.
    forward = 2 * (784 * 1024 + 1024 * 10)
    assert flops_per_example((784, 1024, 10)) == 2 * forward + 2 * 1024 * 10
    shapes = tt.matmul_shapes((784, 1024, 10), 128)
    assert (128, 784, 1024) in shapes and (784, 128, 1024) in shapes and (2048, 2048, 2048) in shapes
    assert (128, 10, 1024) not in shapes  # too small to matter (< 10% of the largest)


def test_prepare_throughput(tiny, capsys):
    out, lines = tiny("prepare_throughput", capsys)
    m = RATIO_LINE.match(lines[-1])
    assert m and m["name"] == "prepare_ours/course" and float(m["value"]) > 0
    data = read(out, "prepare_throughput")
    big = data["sources"][-1]
    assert big["images"] == 3000
    for name in ("course", "ours w=1", "ours w=2"):
        c = big["contenders"][name]
        assert c["images"] == 3000 and c["images_per_s"] > 0 and c["peak_rss"] > data["import_rss"] > 0
        assert c["array_bytes"] == 3000 * 28 * 28 * 4 + (3000 * 4 if name != "course" else 0)
    assert data["large_seconds"] == pytest.approx(529_114 / big["contenders"]["ours w=2"]["images_per_s"])
    d = data["dedup"]
    assert d["found"] == {"train-valid": d["planted"], "train-test": d["planted"]} and d["seconds"] > 0


def test_prepare_baseline_reads_like_the_course(tmp_path):
    import numpy as np
    import prepare_throughput as pt

    from dnn_tf.decode import read_images

    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures import make_fixture_archive

    archive = tmp_path / "a.tar.gz"
    make_fixture_archive(archive, per_class=3, extra_bad=False)
    letters = pt.course_read(str(archive), str(tmp_path / "x"))
    ours = read_images(archive, workers=1)
    course = np.concatenate(letters)
    assert course.shape == ours.images.shape == (30, 28, 28)
    # Same pixels, same normalization (order differs: listdir vs sorted names).
    assert np.allclose(np.sort(course.reshape(30, -1), axis=0), np.sort(ours.images.reshape(30, -1), axis=0))


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


def test_run_all_summary_and_cli(tiny, capsys):
    import run_all

    for name in run_all.BENCHMARKS:
        out, _ = tiny(name, capsys)
    md = run_all.summarize(out)
    assert "ours/limit" in md and "ours/course" in md and "## Deep vs wide" in md and "## Back-propagation" in md
    # The CLI on the one benchmark that needs no TensorFlow: key lines, then BENCHMARKS.md.
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--tiny", "--only", "prepare_throughput",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ratio prepare_ours/course=" in proc.stdout and (out / "BENCHMARKS.md").exists()
    bad = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--only", "nope"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("run_all: error: unknown benchmark") and not bad.stdout
    assert math.isfinite(json.loads((out / "prepare_throughput.json").read_text())["large_seconds"])
