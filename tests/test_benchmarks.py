"""The other benchmarks (back-propagation cost, deep vs wide, speed tricks, the training budget) with --tiny
sizes, run_all, and the FLOP count they share."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from bench_support import BENCH, OLD_COMMIT, REPO, old_checkout, read, results_snapshot


def test_flops_per_example_hand_count():
    from common import flops_per_example

    # 4 -> 3 -> 2: forward 2*4*3 + 2*3*2 = 36; backward: weight grads 36, input grad of
    # the second layer only 2*3*2 = 12; total 84.
    assert flops_per_example((4, 3, 2), backward=False) == 36
    assert flops_per_example((4, 3, 2)) == 84
    assert flops_per_example((784, 10)) == 2 * 2 * 784 * 10  # logreg: no input gradient at all
    with pytest.raises(ValueError):
        flops_per_example((784,))
    with pytest.raises(ValueError):
        flops_per_example((784, 0, 10))


def test_backprop_cost(tiny, capsys):
    out, lines = tiny("backprop_cost", capsys)
    assert lines[-1].startswith("backprop 784-1024-10 batch ")
    data = read(out, "backprop_cost")
    assert (out / "backprop_cost.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for r in data["rows"]:
        # Timings at --tiny sizes are noise, so only their bookkeeping is checked; the ratio a full run
        # measures (a step costs more than its forward pass) is in results/backprop_cost.md.
        assert r["forward_s"] > 0 and r["train_step_s"] > 0
        assert r["time_ratio"] == pytest.approx(r["train_step_s"] / r["forward_s"])
        assert r["flop_ratio"] == pytest.approx(2.0126, abs=1e-3)
        assert r["analytic_ratio"] > 1.0
    md = (out / "backprop_cost.md").read_text()
    assert "## Conclusion" in md and "forward" in data["conclusion"]


def test_input_gradient_layers(tiny, capsys):
    out, lines = tiny("input_gradient_layers", capsys)
    data = read(out, "input_gradient_layers")
    assert [(r["preset"], r["placement"]) for r in data["rows"]] == [
        ("relu1024", "every layer"), ("relu1024", "as trained"), ("deep", "every layer"), ("deep", "as trained")]
    for r in data["rows"]:
        assert r["ci_low"] <= r["median"] <= r["ci_high"] and len(r["rounds"]) == data["repeats"]
    assert lines[-1].startswith("ratio deep_as_trained=")
    assert "| deep | 784-64-32-10 | as trained |" in (out / "input_gradient_layers.md").read_text()


def test_narrow_products_keep_tensorflows_gradient():
    """The logits layer (10 columns) gets plain tf.matmul; a hidden product gets the trick, same values either way."""
    import tensorflow as tf

    from dnn_tf.training import speed

    x, narrow, wide = tf.ones([4, 8]), tf.Variable(tf.ones([8, 10])), tf.Variable(tf.ones([8, 32]))
    for w, tricked in ((narrow, False), (wide, True)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = speed.matmul_cheap_input_gradient(x, w)
        assert ("IdentityN" in [op.type for op in tf.function(speed.matmul_cheap_input_gradient)
                .get_concrete_function(x, w).graph.get_operations()]) == tricked
        dx, dw = tape.gradient(y, [x, w])
        assert float(tf.reduce_max(tf.abs(dx - tf.fill(x.shape, float(w.shape[1]))))) == 0.0
        assert float(tf.reduce_max(tf.abs(dw - 4.0))) == 0.0


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
    for name in (*run_all.BENCHMARKS, "speed_tricks"):  # speed_tricks: this checkout's tricks only
        out, _ = tiny(name, capsys)
    md = run_all.summarize(out)
    assert "ours/limit" in md and "ours/course" in md and "## Deep vs wide" in md and "## Back-propagation" in md
    assert "| speed_tricks | steps_per_call on the deep preset's step (" in md
    assert "[speed_tricks](speed_tricks.md)" in md
    assert "two-archive prepare, tiny archives: wall" in md and "peak RSS of the process tree" in md
    assert "projected notMNIST_large" not in md  # measured by prepare_full_scale instead
    commands = []  # --glyphs reaches the benchmarks that build data from glyphs, and only those
    monkeypatch.setattr(run_all.subprocess, "run", lambda cmd, **kw: commands.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, ""))
    for name in run_all.BENCHMARKS + run_all.AGAINST_CHECKOUT:
        run_all.run_one(name, str(out), True, glyphs="/data/g.tar.gz", checkout="/co")
    passed = {cmd[1].rsplit("/", 1)[-1][:-3] for cmd in commands if "--glyphs" in cmd}
    assert passed == {"prepare_throughput", "prepare_full_scale", "deep_vs_wide"}
    against = {cmd[1].rsplit("/", 1)[-1][:-3]: cmd[-2:] for cmd in commands if "/co" in cmd}
    assert against == {"speed_tricks": ["--checkout", "/co"], "budget_train": ["--old", "/co"]}
    monkeypatch.undo()
    # The CLI on the one benchmark that needs no TensorFlow: key lines, then BENCHMARKS.md.
    proc = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--tiny", "--only", "prepare_throughput",
                           "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "ratio prepare_ours/course=" in proc.stdout and (out / "BENCHMARKS.md").exists()
    bad = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--only", "nope"], capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("run_all: error: unknown benchmark") and not bad.stdout
    with pytest.raises(ValueError, match="budget_train needs --checkout"):
        run_all.main(["--only", "budget_train", "--out", str(out)])
    assert math.isfinite(json.loads((out / "prepare_throughput.json").read_text())["large_seconds"])


@pytest.fixture(scope="module")
def old(tmp_path_factory):
    """A checkout of the code before (OLD_COMMIT's dnn_tf, extracted); skips when git cannot provide it."""
    path = old_checkout(tmp_path_factory.mktemp("old") / OLD_COMMIT)
    if path is None:
        pytest.skip(f"commit {OLD_COMMIT} is not available from git here")
    return path


def _tiny_without_out(module, argv, capsys) -> tuple[dict, list[str]]:
    """main(--tiny, *argv) with no --out: returns its results and stdout lines, and checks results/ was left alone."""
    before = results_snapshot()
    capsys.readouterr()
    assert module.main(["--tiny", *argv]) == 0
    captured = capsys.readouterr()
    assert results_snapshot() == before
    temp = next(line.rsplit(" ", 1)[1] for line in captured.err.splitlines() if line.startswith("--tiny: the results"))
    return json.loads((Path(temp) / f"{module.STEM}.json").read_text()), captured.out.strip().splitlines()


def test_speed_tricks_against_the_old_code(old, capsys):
    import speed_tricks

    data, lines = _tiny_without_out(speed_tricks, ["--checkout", str(old)], capsys)
    assert data["command"] == "python benchmarks/speed_tricks.py --tiny --checkout CHECKOUT"  # no machine paths
    assert data["checkouts"][OLD_COMMIT] == {"layout": "flat", "tricks": list(speed_tricks.TRICKS)}
    here = next(label for label in data["checkouts"] if label != OLD_COMMIT)
    assert data["checkouts"][here] == {"layout": "packages", "tricks": list(speed_tricks.TRICKS)}
    rows = {(r["checkout"], r["trick"], r["kind"], r["preset"]): r for r in data["rows"]}
    expected = {(label, *m) for label in (OLD_COMMIT, here) for m in speed_tricks.MEASURES}
    assert set(rows) == expected
    contenders = data["contenders"]
    for (label, trick, _, _), r in rows.items():
        ratios = [a / b for a, b in zip(r["seconds_without"], r["seconds_with"])]
        assert r["ratio"]["rounds"] == pytest.approx(ratios) and len(ratios) == data["repeats"] == 2
        assert r["ratio"]["median"] == pytest.approx(sum(ratios) / 2)
        assert r["verdict"].split()[0] == ("keep" if r["ratio"]["median"] >= 1.05 else "drop")
        assert f"trick {trick} on {r['speeds_up']} ({label}): ratio {r['ratio']['median']:.2f}" in "\n".join(lines)
    # Each trick really was switched off: what the workers report they built.
    old_deep = contenders[speed_tricks.contender_name(OLD_COMMIT, "step", "deep")]["built"]
    assert old_deep["optimizer"] == "dnn_tf.optimizers.FusedAdam" and old_deep["steps_per_call"] == 10
    built = {(c["worker"], c["spec"]["kind"], c["spec"]["preset"], c["spec"]["off"]): c["built"]
             for c in contenders.values()}
    assert built[OLD_COMMIT, "step", "deep", "fused_optimizer"]["optimizer"] == "keras.src.optimizers.adam.Adam"
    assert built[OLD_COMMIT, "step", "relu1024", "fused_optimizer"]["optimizer"] == "keras.src.optimizers.sgd.SGD"
    assert built[here, "step", "deep", None]["optimizer"] == "dnn_tf.training.optimizers.Adam"
    assert built[here, "step", "deep", "steps_per_call"]["steps_per_call"] == 1
    assert built[OLD_COMMIT, "bare", "deep", None]["matmul"] == "matmul_for_training"
    assert built[OLD_COMMIT, "bare", "deep", "input_gradient"]["matmul"] == "matmul"


def test_speed_tricks_worker_switches_the_old_codes_tricks_off(old):
    """What the worker patches in the old code is what it names, and only while the step is traced."""
    from checkout_worker import Worker

    with Worker(old) as worker:
        assert worker.info["layout"] == "flat" and worker.info["dnn_tf"].endswith(OLD_COMMIT + "/dnn_tf")
        for off in (None, "input_gradient", "compiled_warp"):
            worker.build(f"deep {off}", kind="step", preset="deep", steps=10, examples=512, off=off,
                         overrides={"hidden_sizes": [16]})
            assert worker.run(f"deep {off}") > 0
        with pytest.raises(RuntimeError, match="no trick 'nope'"):
            worker.build("bad", kind="step", preset="deep", steps=10, off="nope")
    import timed_steps
    from checkout_worker import checkout_modules, traced_without

    # This checkout: what is built under the patch is traced under it (the jitter calls the plain warp),
    # and the compiled warp is back afterwards.
    dnn = checkout_modules()
    compiled, plain, traced = dnn.augment.compiled_affine_warp, dnn.augment.affine_warp, []
    dnn.augment.affine_warp = lambda *args: traced.append(1) or plain(*args)
    try:
        config = dnn.presets.get("deep").config
        images, _ = timed_steps.synthetic_data(config.batch_size, 10, 28)
        timed_steps.make_jitter(dnn.inputs, config, images, 2)
        assert not traced  # the compiled warp wraps the original function
        with traced_without(dnn, "compiled_warp"):
            run = timed_steps.make_jitter(dnn.inputs, config, images, 2)
        assert traced and run() > 0 and len(traced) == 1  # traced once, inside the patch
    finally:
        dnn.augment.affine_warp = plain
    assert dnn.augment.compiled_affine_warp is compiled and hasattr(compiled, "get_concrete_function")


def test_budget_train(old, capsys):
    import budget_train

    data, lines = _tiny_without_out(budget_train, ["--old", str(old)], capsys)
    assert data["command"] == "python benchmarks/budget_train.py --tiny --old OLD"
    sides = data["sides"]
    assert (sides["old"]["revision"], sides["old"]["layout"], sides["new"]["layout"]) == (OLD_COMMIT, "flat",
                                                                                         "packages")
    assert sides["old"]["built"]["optimizer"] == "dnn_tf.optimizers.FusedAdam"
    assert sides["new"]["built"]["optimizer"] == "dnn_tf.training.optimizers.Adam"
    ratios = [a / b for a, b in zip(sides["old"]["seconds"], sides["new"]["seconds"])]
    assert data["ratio"]["rounds"] == pytest.approx(ratios)
    assert data["met"] == (data["ratio"]["median"] >= 0.9)
    assert lines[-1] == f"ratio budget_new/old={data['ratio']['median']:.2f}"


def test_tiny_never_writes_into_results():
    import common

    args = common.parser("x", "x").parse_args(["--tiny", "--out", str(REPO / "results")])
    with pytest.raises(ValueError, match="--tiny does not write into results/"):
        common.out_dir(args)
    assert common.command_line("b.py", ["--old", "/a/b", "--out=/c", "--tiny"], {"--old": "OLD", "--out": "OUT"}) \
        == "python benchmarks/b.py --old OLD --out=OUT --tiny"
    assert common.command_line("b.py", ["--out", "/c/results", "--repeats", "3"], {}) \
        == "python benchmarks/b.py --out OUT --repeats 3"  # --out is hidden whatever the benchmark's placeholders


def test_paired_ratios_and_the_medians_interval():
    import common

    r = common.paired_ratios([2.0, 3.0, 6.0], [1.0, 2.0, 3.0])
    assert (r["median"], r["low"], r["high"], r["rounds"]) == (2.0, 1.5, 2.0, [2.0, 1.5, 2.0])
    # 95%: ranks (10, 21) of 30 (P(Binomial(30, 1/2) <= 9) = 0.021), (4, 12) of 15; under 6 values, the range.
    assert common.median_interval(range(1, 31)) == (10, 21) and common.median_interval(range(1, 16)) == (4, 12)
    assert common.median_interval([3, 1, 2]) == (1, 3)
    assert common.against({"ci_low": 1.06, "ci_high": 1.2}, 1.05) == "above"
    assert common.against({"ci_low": 0.9, "ci_high": 1.04}, 1.05) == "below"
    assert common.against({"ci_low": 1.0, "ci_high": 1.1}, 1.05) == "unclear"
