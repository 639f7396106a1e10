"""benchmarks/train_throughput.py with --tiny sizes: key lines and well-formed results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf
from bench_support import RATIO_LINE, read

from dnn_tf.training import presets

RATIO_NAMES = ["ours/limit", "ours/keras_fit", "ours/tf1_feed_dict", "deep_preset/bare_step", "deep_preset/keras_fit"]
DEEP_CONTENDERS = {"deep_preset", "bare_step", "keras_fit"}


def test_train_throughput_ends_with_five_ratio_lines(tiny, capsys):
    out, lines = tiny("train_throughput", capsys)
    matches = [RATIO_LINE.match(line) for line in lines[-5:]]
    assert all(matches), lines[-5:]
    assert [m["name"] for m in matches] == RATIO_NAMES
    values = [float(m["value"]) for m in matches]
    assert all(v > 0 for v in values)
    data = read(out, "train_throughput")
    assert list(data["ratios"]) == RATIO_NAMES and list(data["targets"]) == RATIO_NAMES
    assert values == pytest.approx([round(v, 2) for v in data["ratios"].values()], abs=0.006)
    assert data["targets"] == {"ours/limit": 0.6, "ours/keras_fit": 1.0, "ours/tf1_feed_dict": 1.0,
                               "deep_preset/bare_step": 0.9, "deep_preset/keras_fit": 1.2}
    assert set(data["best_round_ratios"]) == set(RATIO_NAMES)  # run_all looks each up in targets
    contenders = {r["contender"] for c in data["configs"] for r in c["rows"]}
    assert {"ours", "keras_fit", "tf1_feed_dict", "limit"} <= contenders
    for c in data["configs"]:
        for r in c["rows"]:
            assert r["steps_per_s"] > 0 and r["examples_per_s"] == pytest.approx(r["steps_per_s"] * r["batch"])
    settings = presets.get("relu1024").settings  # "ours" is the preset's own setting, whatever it is
    assert data["ours_default"] == {"steps_per_call": settings.steps_per_call, "xla": settings.xla}
    e = data["eval"]
    assert e["evaluations"] == 3 and 0 < e["eval_cost_pct"] < 100  # steps 0, 50, 100 of a 101-step run
    md = (out / "train_throughput.md").read_text()
    assert "| 784-1024-10 | 128 | ours |" in md


def test_train_throughput_deep_preset_section(tiny, capsys):
    import train_deep

    out, _ = tiny("train_throughput", capsys)
    data = read(out, "train_throughput")
    deep = data["deep"]
    preset = presets.get("deep")
    assert (deep["steps_per_call"], deep["xla"], deep["batch"]) == (
        preset.settings.steps_per_call, preset.settings.xla, preset.config.batch_size)
    sps = {r["contender"]: r["steps_per_s"] for r in deep["rows"]}
    assert set(sps) == DEEP_CONTENDERS | {name for name, *_ in train_deep.VARIANTS}
    assert all(v > 0 for v in sps.values())
    assert data["ratios"]["deep_preset/bare_step"] == pytest.approx(sps["deep_preset"] / sps["bare_step"])
    assert data["ratios"]["deep_preset/keras_fit"] == pytest.approx(sps["deep_preset"] / sps["keras_fit"])
    # The profile: one row per variant (its median minus deep_preset's) and per directly timed part.
    parts = {p["part"]: p for p in deep["profile"]}
    assert set(parts) == {name for name, *_ in train_deep.VARIANTS} | set(train_deep.DIRECT)
    step_ms = 1000.0 / sps["deep_preset"]
    assert deep["step_ms"] == pytest.approx(step_ms, rel=1e-9)
    seconds = {r["contender"]: np.asarray(r["seconds"]) for r in deep["rows"]}
    for name, *_ in train_deep.VARIANTS:  # the median of the per-round differences to deep_preset
        per_round = 1000.0 * (seconds[name] - seconds["deep_preset"]) / deep["steps"]
        p = parts[name]
        assert p["ms_per_step"] == pytest.approx(float(np.median(per_round)), rel=1e-6, abs=1e-9)
        assert (p["ms_low"], p["ms_high"]) == pytest.approx((per_round.min(), per_round.max()))
        assert p["pct_of_step"] == pytest.approx(100 * p["ms_per_step"] / step_ms, rel=1e-6, abs=1e-9)
    for name in train_deep.DIRECT:
        p = parts[name]
        assert p["kind"] == "direct" and 0 < p["ms_low"] <= p["ms_per_step"] <= p["ms_high"] < math.inf
    md = (out / "train_throughput.md").read_text()
    assert "## Deep preset (784-64-32-10, batch 128)" in md and "### Where the deep step's time goes" in md
    assert "| 784-64-32-10 | 128 | deep_preset |" in md and "| no jitter | variant: " in md
    assert "| deep_preset/bare_step |" in md and "| random draws | alone: " in md


def test_train_throughput_flop_limit_is_honest():
    import train_throughput as tt
    from common import flops_per_example

    # 784-1024-10 at batch 128: forward 2*(784*1024 + 1024*10), backward the same for weights plus the
    # input gradient of the second layer only.
    forward = 2 * (784 * 1024 + 1024 * 10)
    assert flops_per_example((784, 1024, 10)) == 2 * forward + 2 * 1024 * 10
    shapes = tt.matmul_shapes((784, 1024, 10), 128)
    assert (128, 784, 1024) in shapes and (784, 128, 1024) in shapes and (2048, 2048, 2048) in shapes
    assert (128, 10, 1024) not in shapes  # too small to matter (< 10% of the largest)


def test_profile_variants_switch_off_what_they_name():
    """The fixed-batch and Keras-Adam variants really change what they say (or the profile would mislead)."""
    import train_contenders as tc
    import train_deep

    from dnn_tf.training import optimizers

    images, labels = tc.synthetic_data(256)
    preset = presets.get("deep").replace(hidden_sizes=(8,), checkpoint_every=0)
    spc = preset.settings.steps_per_call
    shuffled = tc.make_ours(preset, images, labels, spc)
    fixed = tc.make_ours(preset, images, labels, spc, fixed_batch=True)
    keras = tc.make_ours(preset, images, labels, spc, optimizer=train_deep.keras_adam)
    for run in (shuffled, fixed, keras):
        assert run() > 0 and int(run.state.step.numpy()) == spc
    assert int(fixed.state.epoch.numpy()) == -1  # never drew an epoch permutation
    assert int(shuffled.state.epoch.numpy()) == (spc - 1) // (len(labels) // preset.config.batch_size)
    assert type(keras.state.optimizer) is tf.keras.optimizers.Adam and int(keras.state.optimizer.iterations) == spc
    assert type(shuffled.state.optimizer) is optimizers.Adam


def test_ours_runs_the_models_train_step(monkeypatch):
    """`ours` is dnn_tf's own step: make_train_fn's compiled call runs dnn_tf.model.train_step."""
    import train_contenders as tc

    from dnn_tf import model

    traced = []
    train_step = model.train_step
    monkeypatch.setattr(model, "train_step", lambda *a, **k: traced.append(a[0]) or train_step(*a, **k))
    images, labels = tc.synthetic_data(256)
    run = tc.make_ours(presets.get("relu1024").replace(hidden_sizes=(8,), checkpoint_every=0), images, labels, 10)
    assert run() > 0 and traced == [run.state.model]  # traced once, with the run's model
