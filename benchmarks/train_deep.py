"""train_throughput's deep-preset section: its step vs a bare step and Keras fit, and where its time goes.

Contenders, interleaved in rounds like the rest of train_throughput (medians):

* ``deep_preset``: dnn_tf's compiled step with the ``deep`` preset's config and
  settings exactly (Adam and its schedule, dropout, L2, shifts + distortions,
  shuffled in-graph batches, its steps_per_call);
* ``bare_step``: the floor, the same net and batch with forward + backward + plain
  SGD in raw TensorFlow (``train_contenders.make_bare_step``);
* ``keras_fit``: ``model.fit`` of the same net as ``dnn_tf.reference.keras_mlp`` builds it
  (``train_contenders.make_keras_fit``) with the same Adam, schedule and dropout (no L2 and
  no jitter: less work than ours);
* the profile: the deep preset with one part switched off (or swapped) at a time;
  the time a variant saves is that part's cost. The step's random draws, the
  in-graph NaN guard, the host-side finiteness check after every call and the
  periodic evaluation are timed on their own (``DIRECT``), in milliseconds per
  training step.

What each speed trick of the step buys (fused optimizer kernels, the compiled warp,
several steps per call) is measured by ``speed_tricks``.
"""

from __future__ import annotations

import time
from typing import Callable

import common
import numpy as np
import tensorflow as tf
import timed_steps
import train_contenders as tc

from dnn_tf.training import inputs, loop, optimizers, presets

PRESET = "deep"
EVAL_EXAMPLES = 10000  # the validation split's size (the course's)
MS = 1000.0
TARGETS = {"deep_preset/bare_step": 0.9, "deep_preset/keras_fit": 1.2}
NO_JITTER = dict(max_shift=0, max_rotation=0.0, max_scale=0.0, max_shear=0.0)


def keras_adam(config):
    """Keras's own Adam at the config's schedule (the update dnn_tf used before its fused one)."""
    return timed_steps.keras_optimizer(config.replace(optimizer="adam"), optimizers.learning_rate_schedule(config))


# (name, what it changes, preset overrides, make_ours keywords)
VARIANTS = (
    ("Keras Adam", "Keras's own Adam instead of dnn_tf's (fused kernels; Keras's was the step's before them)", {},
     {"optimizer": keras_adam}),
    ("SGD", "a plain (fused) SGD update instead of Adam", {"optimizer": "sgd"}, {}),
    ("no dropout", "dropout off (its masks, their random numbers, the masking and its gradient)",
     {"dropout_rate": 0.0}, {}),
    ("no L2", "the L2 penalty off (its sum over the weights and its gradient)", {"l2_beta": 0.0}, {}),
    ("no jitter", "no input shifts or affine distortions", NO_JITTER, {}),
    ("fixed batch", "always the same resident batch: no in-graph permutation and gather", {},
     {"fixed_batch": True}),
)
DIRECT = {
    "random draws": "the step's stateless random numbers (dropout uniforms, shift and distortion draws)",
    "NaN guard": "the in-graph finiteness check of each step's loss (make_train_fn's three lines, replayed)",
    "host NaN check": "train_and_evaluate's finiteness check of every weight after each call, per step",
    "evaluation": "validating {examples:,} examples at every log step of the preset's run, per step",
}


def deep_preset(hidden: tuple[int, ...] | None = None):
    """The ``deep`` preset as configured (no checkpoints: they are not part of the step), optionally narrower."""
    preset = presets.get(PRESET).replace(checkpoint_every=0)
    return preset.replace(hidden_sizes=hidden) if hidden else preset


def make_random_draws(preset, steps: int) -> Callable[[], float]:
    """Draws, ``steps`` times in one compiled call, the random numbers of one deep-preset step."""
    config = preset.config
    batch, widths = config.batch_size, config.hidden_sizes

    @tf.function
    def draws(count):
        total = tf.constant(0.0)
        for step in tf.range(count, dtype=tf.int64):
            seed = tf.stack([tf.constant(config.seed, tf.int64), step])
            for i, width in enumerate(widths):  # dropout masks (what stateless_dropout draws)
                total += tf.reduce_sum(tf.random.stateless_uniform(
                    [batch, width], tf.random.experimental.stateless_fold_in(seed, i)))
            total += tf.reduce_sum(tf.random.stateless_uniform([batch, 4], seed, alg=inputs.RNG_ALG))
            total += tf.cast(tf.reduce_sum(tf.random.stateless_uniform(
                [batch, 2], seed, minval=0, maxval=3, dtype=tf.int32, alg=inputs.RNG_ALG)), tf.float32)
        return total

    return timed_steps.timed_calls(draws, tf.constant(steps, tf.int64), 1)


def make_nan_guard(ours: Callable, steps: int) -> Callable[[], float]:
    """``steps`` rounds of the in-graph NaN guard's ops on the run's own counters, in one compiled call.

    The same three lines as ``loop.make_train_fn``'s step (replayed here: they are inline there).
    """
    state = ours.state

    @tf.function
    def guard(count):
        for step in tf.range(count, dtype=tf.int64):
            loss = tf.cast(step, tf.float32)  # finite, so the counters keep their values
            first = tf.logical_and(state.first_bad_step < 0, tf.logical_not(tf.math.is_finite(loss)))
            state.first_bad_step.assign(tf.where(first, step, state.first_bad_step))
            state.bad_loss.assign(tf.where(first, loss, state.bad_loss))
        return state.first_bad_step.read_value()

    return timed_steps.timed_calls(guard, tf.constant(steps, tf.int64), 1)


def make_host_check(ours: Callable, steps: int) -> Callable[[], float]:
    """train_and_evaluate's host-side check after each compiled call of ``steps_per_call`` steps.

    The same reads as its finiteness check (replayed here: the check is private to the loop):
    the step's NaN flag and whether every weight is finite.
    """
    state, preset = ours.state, ours.preset
    calls = steps // preset.settings.steps_per_call

    def run() -> float:
        t0 = time.perf_counter()
        for _ in range(calls):
            if int(state.first_bad_step.numpy()) < 0:
                all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in state.model.trainable_variables)
        return time.perf_counter() - t0

    return run


def make_evaluation(ours: Callable, steps: int, examples: int) -> Callable[[], float]:
    """One validation pass of ``examples``, scaled to its share of ``steps`` steps of the preset's run."""
    config, settings = ours.preset.config, ours.preset.settings
    evaluations = sum(1 for plan in loop.chunk_plan(0, config.steps, settings) if plan[2])
    images, labels = tc.synthetic_data(examples, seed=tc.SEED + 1)
    eval_step = loop.make_eval_step(ours.state.model)
    x, y = tf.constant(images), tf.constant(labels)

    def run() -> float:
        t0 = time.perf_counter()
        loop.evaluate(eval_step, x, y)
        return (time.perf_counter() - t0) * evaluations * steps / config.steps

    return run


def measure_deep(hidden: tuple[int, ...] | None, steps: int, images: np.ndarray, labels: np.ndarray,
                 repeats: int, eval_examples: int = EVAL_EXAMPLES) -> dict:
    """Interleaved rounds of the deep preset, its floor, Keras fit and the profile's variants.

    Args:
      hidden: hidden sizes (None: the preset's; --tiny passes small ones).
      steps: timed steps per round, a multiple of the preset's steps_per_call.
    """
    preset = deep_preset(hidden)
    config, spc = preset.config, preset.settings.steps_per_call
    ours = tc.make_ours(preset, images, labels, steps)
    contenders = {
        "deep_preset": ours,
        "bare_step": tc.make_bare_step(config.hidden_sizes, config.batch_size, images, labels, steps, spc),
        "keras_fit": tc.make_keras_fit(config.hidden_sizes, config.batch_size, images, labels, steps,
                                       optimizer=keras_adam(config), dropout=config.dropout_rate),
    }
    for name, _, overrides, keywords in VARIANTS:
        contenders[name] = tc.make_ours(preset.replace(**overrides) if overrides else preset, images, labels,
                                        steps, **keywords)
    direct = {"random draws": make_random_draws(preset, steps), "NaN guard": make_nan_guard(ours, steps),
              "host NaN check": make_host_check(ours, steps), "evaluation": make_evaluation(ours, steps, eval_examples)}
    contenders.update(direct)
    net = "-".join(map(str, (tc.IMAGE_PIXELS, *config.hidden_sizes, tc.NUM_CLASSES)))
    common.log(f"deep preset {net}: {len(contenders)} contenders, {steps} steps x {repeats} rounds")
    times = common.interleave(contenders, repeats, warmup=1, log=common.log)
    med = {name: common.median(t) for name, t in times.items()}
    rows = [{"net": net, "batch": config.batch_size, "contender": name, "steps_per_s": steps / med[name],
             "steps_per_s_best": steps / min(times[name]), "examples_per_s": steps / med[name] * config.batch_size,
             "spread": common.spread(times[name]), "seconds": times[name]}
            for name in contenders if name not in direct]
    step_ms = MS * med["deep_preset"] / steps
    sps = {r["contender"]: r["steps_per_s"] for r in rows}
    best = {r["contender"]: r["steps_per_s_best"] for r in rows}
    return {"net": net, "batch": config.batch_size, "steps": steps, "steps_per_call": spc,
            "xla": preset.settings.xla, "rows": rows, "profile": profile(times, steps, eval_examples),
            "step_ms": step_ms, "bare_ms": MS * med["bare_step"] / steps,
            "ratios": ratios(sps), "best_round_ratios": ratios(best)}


def profile(times: dict[str, list[float]], steps: int, eval_examples: int) -> list[dict]:
    """Each part's milliseconds per step: a variant's time minus deep_preset's, a direct part's own time.

    Differences are taken round by round (the two ran seconds apart, so the load on the shared
    cores was much the same) and ``ms_per_step`` is their median; ``ms_low``/``ms_high`` are the
    smallest and largest over the rounds (how far to trust it).
    """
    deep = np.asarray(times["deep_preset"])
    parts = [(n, w, "variant") for n, w, _, _ in VARIANTS]
    parts += [(n, w.format(examples=eval_examples), "direct") for n, w in DIRECT.items()]
    rows = []
    for name, what, kind in parts:
        per_round = MS * (np.asarray(times[name]) - (deep if kind == "variant" else 0.0)) / steps
        rows.append({"part": name, "what": what, "kind": kind, "ms_per_step": common.median(list(per_round)),
                     "ms_low": float(per_round.min()), "ms_high": float(per_round.max())})
        rows[-1]["pct_of_step"] = 100.0 * rows[-1]["ms_per_step"] / (MS * common.median(list(deep)) / steps)
    return rows


def ratios(sps: dict[str, float]) -> dict[str, float]:
    """deep_preset/bare_step and deep_preset/keras_fit from steps/s by contender."""
    return {"deep_preset/bare_step": sps["deep_preset"] / sps["bare_step"],
            "deep_preset/keras_fit": sps["deep_preset"] / sps["keras_fit"]}


def render_deep(deep: dict) -> list[str]:
    """The markdown section of the deep preset (lines)."""
    table = common.markdown_table(
        ["net", "batch", "contender", "steps/s", "examples/s", "spread", "best-round steps/s"],
        [[r["net"], r["batch"], r["contender"], r["steps_per_s"], r["examples_per_s"], r["spread"],
          r["steps_per_s_best"]] for r in deep["rows"]])
    profile = common.markdown_table(
        ["part", "how it was measured", "ms/step", "% of the deep step", "range over the rounds"],
        [[p["part"], ("variant: " if p["kind"] == "variant" else "alone: ") + p["what"], p["ms_per_step"],
          p["pct_of_step"], f"{p['ms_low']:.1f} .. {p['ms_high']:.1f}"] for p in deep["profile"]])
    r = deep["ratios"]
    return [
        f"## Deep preset ({deep['net']}, batch {deep['batch']})",
        "",
        f"`deep_preset`: `make_train_fn` with the `deep` preset's config and settings (Adam with its decay, dropout, "
        f"L2, shifts + distortions, shuffled in-graph batches, steps_per_call={deep['steps_per_call']}, "
        f"xla={deep['xla']}); `bare_step`: the same net and batch, forward + backward + `w -= lr * g` in raw "
        "TensorFlow, data resident, in-graph batch; `keras_fit`: `model.fit` of the same net as "
        "`dnn_tf.reference.keras_mlp` builds it, with the same Adam and schedule and `Dropout` layers (no L2, no "
        "jitter). The other rows are the profile's variants.",
        "",
        table,
        "",
        common.markdown_table(["ratio", "measured", "target", "met"],
                              [[k, v, f">= {TARGETS[k]}", "yes" if v >= TARGETS[k] else "no"] for k, v in r.items()]),
        "",
        "Cross-check with each contender's fastest round: "
        + ", ".join(f"{k} {v:.2f}" for k, v in deep["best_round_ratios"].items()) + ". "
        "What each of the step's speed tricks buys: [speed_tricks](speed_tricks.md).",
        "",
        "### Where the deep step's time goes",
        "",
        f"One `deep_preset` step takes {deep['step_ms']:.1f} ms, the bare step {deep['bare_ms']:.1f} ms. A variant's "
        "ms/step is the median over the rounds of its time minus `deep_preset`'s in the same round (negative: "
        "switching that part off saves that much; positive: the swap costs that much); an `alone` row is that work "
        "timed by itself, per training step. The range shows how much the other processes on the shared cores moved "
        "it from round to round.",
        "",
        profile,
        "",
    ]
