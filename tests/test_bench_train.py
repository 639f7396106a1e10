"""benchmarks/train_throughput.py with --tiny sizes: key lines and well-formed results."""

from __future__ import annotations

import pytest

from bench_support import RATIO_LINE, read
from dnn_tf import presets


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
