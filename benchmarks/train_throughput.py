"""Training throughput: dnn_tf's loop vs Keras ``fit`` vs the course's TF1 feed_dict loop vs the machine.

In one process, for the same nets (784-1024-10 and 784-1024-512-256-10),
batch sizes and step counts, steady-state steps/s of:

1. ours -- the compiled step ``train_and_evaluate`` runs (``dnn_tf.training.loop.make_train_fn``
   on data resident on the device), with the default config and with XLA and
   several steps per call;
2. keras_fit -- ``model.fit`` of the equivalent ``tf.keras.Sequential`` fed by
   ``tf.data`` (from_tensor_slices, cache, shuffle, batch, repeat, prefetch);
3. tf1_feed_dict -- the course's loop: ``tf.compat.v1`` graph, placeholders,
   ``GradientDescentOptimizer``, one ``session.run`` with a ``feed_dict`` per
   step, numpy offset slicing, loss and predictions fetched every step;
4. limit -- FLOPs per step (``common.flops_per_example``: forward + backward,
   no input gradient for the first layer) / the best float32 ``tf.matmul``
   GFLOP/s measured in the same rounds (the net's own shapes and squares).

Contenders run round-robin (A, B, C, A, B, C, ...) after a compile/warm-up
round; each number is the median of the rounds. Then the cost of evaluating a
10,000-example validation set every 500 steps of a 3,001-step
``train_and_evaluate`` run, and the ``deep`` preset's step as configured (Adam,
dropout, L2, jitter) against a bare step of its net and Keras ``fit``, with a
profile of where its time goes (``train_deep``). The contenders themselves are
in ``train_contenders``.

The last five lines printed are the ratios: for 784-1024-10 at batch 128
``ratio ours/limit=R``, ``ratio ours/keras_fit=R``, ``ratio ours/tf1_feed_dict=R``,
then for the deep preset ``ratio deep_preset/bare_step=R``, ``ratio deep_preset/keras_fit=R``.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from typing import Callable, Sequence

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402  (sets TF_CPP_MIN_LOG_LEVEL before TensorFlow loads)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import train_deep  # noqa: E402
from train_contenders import (  # noqa: E402
    IMAGE_PIXELS,
    LEARNING_RATE,
    NUM_CLASSES,
    SEED,
    make_keras_fit,
    make_matmul,
    make_ours,
    make_tf1_feed_dict,
    matmul_shapes,
    synthetic_data,
)

from dnn_tf.training import loop, presets  # noqa: E402

PROG = "train_throughput"
STEM = "train_throughput"
HEADLINE_NET = "784-1024-10"
HEADLINE_BATCH = 128
# Evaluation cost: the course's schedule.
EVAL_STEPS = 3001
EVAL_EVERY = 500
EVAL_EXAMPLES = 10000
EVAL_TARGET_PCT = 5.0
HEADLINE_TARGETS = {"ours/limit": 0.6, "ours/keras_fit": 1.0, "ours/tf1_feed_dict": 1.0}
TARGETS = {**HEADLINE_TARGETS, **train_deep.TARGETS}


@dataclass(frozen=True)
class Sizes:
    """Everything that --tiny shrinks."""

    nets: dict[str, tuple[int, ...]]
    batches: tuple[int, ...]
    steps: dict[int, int]  # timed steps per round, by batch size (a multiple of every steps_per_call)
    train_examples: int
    eval_steps: int
    eval_every: int
    eval_examples: int
    eval_repeats: int
    spc: int  # steps per call of the multi-step variants
    deep_steps: int  # timed steps per round of the deep preset (a multiple of its steps_per_call)
    deep_hidden: tuple[int, ...] | None = None  # the deep preset's hidden sizes (None: its own)
    variants: bool = True  # also the XLA variants (at the headline net and batch)


FULL = Sizes(nets={HEADLINE_NET: (1024,), "784-1024-512-256-10": (1024, 512, 256)}, batches=(128, 1024),
             steps={128: 150, 1024: 20}, train_examples=20000, eval_steps=EVAL_STEPS, eval_every=EVAL_EVERY,
             eval_examples=EVAL_EXAMPLES, eval_repeats=1, spc=10, deep_steps=20)
TINY = Sizes(nets={HEADLINE_NET: (1024,)}, batches=(128,), steps={128: 20}, train_examples=2048,
             eval_steps=101, eval_every=50, eval_examples=1000, eval_repeats=1, spc=10, deep_steps=10,
             deep_hidden=(64, 32), variants=False)


# --------------------------------------------------------------------------- contenders (train_contenders)


def ours_config(hidden: Sequence[int], batch: int, spc: int | None = None, xla: bool | None = None):
    """The relu1024 preset (its steps_per_call / xla defaults unless given) on this net and batch."""
    base = presets.get("relu1024")
    return base.replace(hidden_sizes=tuple(hidden), batch_size=batch, init="he",
                        learning_rate=LEARNING_RATE, checkpoint_every=0, seed=SEED,
                        steps_per_call=spc if spc else base.settings.steps_per_call,
                        xla=base.settings.xla if xla is None else xla)


# --------------------------------------------------------------------------- measurements


def measure_config(net: str, hidden: tuple[int, ...], batch: int, steps: int, sizes: Sizes,
                   images: np.ndarray, labels: np.ndarray, repeats: int) -> dict:
    """Interleaved rounds of every contender on one (net, batch)."""
    layer_sizes = (IMAGE_PIXELS, *hidden, NUM_CLASSES)
    flop_step = common.flops_per_example(layer_sizes) * batch
    default = ours_config(hidden, batch)
    variants = {"ours": default}
    headline = net == HEADLINE_NET and batch == HEADLINE_BATCH
    for spc, xla in ((sizes.spc, False), (1, True), (sizes.spc, True))[:None if sizes.variants and headline else 1]:
        if (spc, xla) != (default.settings.steps_per_call, default.settings.xla):
            variants[f"ours spc={spc}{' xla' if xla else ''}"] = ours_config(hidden, batch, spc, xla)
    contenders: dict[str, Callable[[], float]] = {}
    for name, config in variants.items():
        contenders[name] = make_ours(config, images, labels, steps)
    contenders["keras_fit"] = make_keras_fit(hidden, batch, images, labels, steps)
    contenders["tf1_feed_dict"], close = make_tf1_feed_dict(hidden, batch, images, labels, steps)
    shapes = matmul_shapes(layer_sizes, batch)
    matmuls = {f"matmul {m}x{k}x{n}": make_matmul((m, k, n)) for m, k, n in shapes}
    contenders.update(matmuls)
    common.log(f"{net} batch {batch}: {len(contenders)} contenders, {steps} steps x {repeats} rounds")
    try:
        times = common.interleave(contenders, repeats, warmup=1, log=common.log)
    finally:
        close()
    gflops = {}
    for (m, k, n), name in zip(shapes, matmuls):
        gflops[name] = 2 * m * k * n / common.median(times[name]) / 1e9
    best_name = max(gflops, key=gflops.get)
    best = gflops[best_name]
    limit_sps = best * 1e9 / flop_step
    rows = []
    for name in contenders:
        if name in matmuls:
            continue
        sps = steps / common.median(times[name])
        rows.append({"net": net, "batch": batch, "contender": name, "steps_per_s": sps,
                     "steps_per_s_best": steps / min(times[name]),
                     "examples_per_s": sps * batch, "gflops": sps * flop_step / 1e9, "vs_limit": sps / limit_sps,
                     "spread": common.spread(times[name]), "seconds": times[name]})
    best_limit = max(2 * m * k * n / min(times[name]) / 1e9 for (m, k, n), name in zip(shapes, matmuls))
    rows.append({"net": net, "batch": batch, "contender": "limit", "steps_per_s": limit_sps,
                 "steps_per_s_best": best_limit * 1e9 / flop_step,
                 "examples_per_s": limit_sps * batch, "gflops": best, "vs_limit": 1.0,
                 "spread": common.spread(times[best_name]), "seconds": None})
    return {"net": net, "batch": batch, "steps": steps, "flop_per_step": flop_step,
            "matmul_gflops": gflops, "best_matmul": best_name, "rows": rows,
            "configs": {name: {"steps_per_call": c.settings.steps_per_call, "xla": c.settings.xla}
                        for name, c in variants.items()}}


def measure_eval_cost(sizes: Sizes, images: np.ndarray, labels: np.ndarray, repeats: int) -> dict:
    """Cost of validating every ``eval_every`` steps of a ``train_and_evaluate`` run, measured three ways.

    1. in the loop: the run's loop replayed from ``loop``'s public parts (the compiled step
       called as ``loop.chunk_plan`` plans it, ``loop.evaluate`` of a fresh ``make_eval_step``
       at every log step), with a clock around each evaluation; the evaluations' seconds (the
       first includes tracing the eval function) over the loop's;
    2. the difference of two ``train_and_evaluate`` runs, one evaluating every ``eval_every``
       steps, one only at the first and last step;
    3. one evaluation timed on its own, times the number of evaluations.
    """
    valid_x, valid_y = synthetic_data(sizes.eval_examples, seed=SEED + 1)
    test_x, test_y = synthetic_data(1000, seed=SEED + 2)
    data = {"train_dataset": images, "train_labels": labels, "valid_dataset": valid_x, "valid_labels": valid_y,
            "test_dataset": test_x, "test_labels": test_y}
    base = ours_config((1024,), HEADLINE_BATCH).replace(steps=sizes.eval_steps)
    runs = {"with_eval": base.replace(log_every=sizes.eval_every),
            "without_eval": base.replace(log_every=sizes.eval_steps + 1)}  # still evaluates at step 0 and the end
    evals = {name: len([s for s in loop.chunk_plan(0, c.config.steps, c.settings) if s[2]])
             for name, c in runs.items()}
    vx, vy = tf.constant(valid_x), tf.constant(valid_y)
    in_loop: list[float] = []  # per replayed loop: share of its time spent in the evaluations
    in_loop_steady: list[float] = []  # the same with the first (tracing) call counted like the others
    first_call: list[float] = []

    def run_of(preset):
        def run() -> float:
            return loop.train_and_evaluate(preset.config, data, preset.settings).seconds
        return run

    def replayed_loop() -> float:
        preset = runs["with_eval"]
        ours = make_ours(preset, images, labels, preset.settings.steps_per_call)  # built and traced untimed
        eval_step = loop.make_eval_step(ours.state.model)
        counts: dict[int, tf.Tensor] = {}
        clock: list[float] = []
        t0 = time.perf_counter()
        for _, count, is_log, _ in loop.chunk_plan(0, preset.config.steps, preset.settings):
            loss, _ = ours.train_fn(counts.setdefault(count, tf.constant(count, tf.int64)))
            if is_log:
                float(loss)
                t_eval = time.perf_counter()
                loop.evaluate(eval_step, vx, vy)
                clock.append(time.perf_counter() - t_eval)
        seconds = time.perf_counter() - t0
        steady = common.median(clock[1:]) if len(clock) > 1 else clock[0]
        in_loop.append(sum(clock) / seconds)
        in_loop_steady.append((sum(clock[1:]) + steady) / (seconds - clock[0] + steady))
        first_call.append(clock[0])
        return seconds

    common.log(f"eval cost: {sizes.eval_steps}-step train_and_evaluate runs and the replayed loop x {repeats}")
    contenders = {**{name: run_of(preset) for name, preset in runs.items()}, "replayed_loop": replayed_loop}
    seconds = common.interleave(contenders, repeats, warmup=0, log=common.log)
    eval_fn = loop.make_eval_step(loop.create_model(base.config))

    def one_evaluation() -> None:
        loop.evaluate(eval_fn, vx, vy)

    one_eval = common.interleave({"eval": one_evaluation}, max(5, repeats), warmup=1)
    t_eval = common.median(one_eval["eval"])
    t_with = common.median(seconds["with_eval"])
    t_without = common.median(seconds["without_eval"])
    extra = evals["with_eval"] - evals["without_eval"]
    return {"steps": sizes.eval_steps, "eval_every": sizes.eval_every, "eval_examples": sizes.eval_examples,
            "evaluations": evals["with_eval"], "eval_seconds": t_eval,
            "first_eval_seconds": common.median(first_call),
            "run_seconds_with_eval": t_with, "run_seconds_without_eval": t_without,
            "loop_seconds": common.median(seconds["replayed_loop"]),
            "steps_per_s_with_eval": sizes.eval_steps / t_with,
            "steps_per_s_without_eval": sizes.eval_steps / t_without,
            "eval_cost_pct": 100.0 * common.median(in_loop),
            "eval_cost_pct_without_tracing": 100.0 * common.median(in_loop_steady),
            "eval_cost_pct_isolated": 100.0 * evals["with_eval"] * t_eval / t_with,
            "eval_cost_pct_differential": (100.0 * (t_with - t_without) / t_with * evals["with_eval"] / extra
                                           if extra else None),
            "seconds": seconds}


# --------------------------------------------------------------------------- report


def headline_ratios(configs: list[dict], contender: str = "ours", key: str = "steps_per_s") -> dict[str, float]:
    """ours/limit, ours/keras_fit, ours/tf1_feed_dict for the headline net and batch.

    ``key``: ``"steps_per_s"`` (medians) or ``"steps_per_s_best"`` (each contender's fastest round).
    """
    for c in configs:
        if c["batch"] == HEADLINE_BATCH and c["net"] == HEADLINE_NET:
            sps = {r["contender"]: r[key] for r in c["rows"]}
            return {"ours/limit": sps[contender] / sps["limit"], "ours/keras_fit": sps[contender] / sps["keras_fit"],
                    "ours/tf1_feed_dict": sps[contender] / sps["tf1_feed_dict"]}
    raise ValueError(f"no measurement of {HEADLINE_NET} at batch {HEADLINE_BATCH}")


def render(result: dict) -> str:
    """The markdown report."""
    rows = []
    for c in result["configs"]:
        for r in c["rows"]:
            rows.append([r["net"], r["batch"], r["contender"], r["steps_per_s"], r["examples_per_s"], r["gflops"],
                         r["vs_limit"], r["spread"], r["steps_per_s_best"]])
    table = common.markdown_table(["net", "batch", "contender", "steps/s", "examples/s", "GFLOP/s", "x limit",
                                   "spread", "best-round steps/s"], rows)
    mm = []
    for c in result["configs"]:
        for name, g in c["matmul_gflops"].items():
            mm.append([c["net"], c["batch"], name, g, "best" if name == c["best_matmul"] else ""])
    e = result["eval"]
    ratios = {k: result["ratios"][k] for k in HEADLINE_TARGETS}
    m = result["machine"]
    lines = [
        "# Training throughput",
        "",
        f"Machine: {m['cpus']} CPUs, load average {m['load_average_1min']:.2f} at start, "
        f"{result['machine_end']['load_average_1min']:.2f} at the end (other processes share the cores; "
        f"contenders are interleaved and each figure is the median of {result['repeats']} rounds after a warm-up "
        "round; `spread` = (max - min) / median of the rounds).",
        f"Synthetic learnable data, {result['train_examples']:,} training examples resident on the device; "
        f"SGD, learning rate {LEARNING_RATE}; steps per round: "
        + ", ".join(f"{s} at batch {b}" for b, s in result["steps"].items()) + ".",
        "",
        "* `ours`: `dnn_tf.training.loop.make_train_fn` with the preset's defaults "
        f"(steps_per_call={result['ours_default']['steps_per_call']}, xla={result['ours_default']['xla']}); "
        "`ours spc=N [xla]`: the same with N steps per `tf.function` call and/or XLA.",
        "* `keras_fit`: `tf.keras.Sequential` + `model.fit` on `tf.data` (cache, shuffle, batch, repeat, prefetch), "
        "steady state (steps 1..N-1 of each fit call).",
        "* `tf1_feed_dict`: the course's `tf.compat.v1` graph, `session.run` with a `feed_dict` every step.",
        "* `limit`: FLOPs per step (forward + backward, no input gradient for the first layer) / the best "
        "`tf.matmul` GFLOP/s measured in the same rounds.",
        "",
        table,
        "",
        "## Headline (784-1024-10, batch 128)",
        "",
        common.markdown_table(["ratio", "measured", "target", "met"],
                              [[k, v, f">= {TARGETS[k]}", "yes" if v >= TARGETS[k] else "no"]
                               for k, v in ratios.items()]),
        "",
        "Cross-check with each contender's fastest round (the least disturbed by other processes): "
        + ", ".join(f"{k} {result['best_round_ratios'][k]:.2f}" for k in HEADLINE_TARGETS) + ".",
        "",
        f"Best `ours` variant at the headline: `{result['best_variant']}` "
        f"({result['best_variant_ratios']['ours/limit']:.2f}x limit, "
        f"{result['best_variant_ratios']['ours/keras_fit']:.2f}x Keras fit, "
        f"{result['best_variant_ratios']['ours/tf1_feed_dict']:.2f}x TF1).",
        "",
        "## Evaluation cost",
        "",
        f"`train_and_evaluate`, {e['steps']:,} steps at batch {HEADLINE_BATCH}, validation on "
        f"{e['eval_examples']:,} examples every {e['eval_every']} steps ({e['evaluations']} evaluations): "
        f"{e['steps_per_s_with_eval']:.0f} steps/s ({e['run_seconds_with_eval']:.2f} s) vs "
        f"{e['steps_per_s_without_eval']:.0f} steps/s ({e['run_seconds_without_eval']:.2f} s) "
        "when it only evaluates at the first and last step. "
        "Timed inside the run's loop (replayed from `loop`'s public parts: the compiled step called as "
        "`chunk_plan` plans it, `evaluate` at every log step; the training step traced beforehand, no host-side "
        f"checks), the {e['evaluations']} evaluations take **{e['eval_cost_pct']:.1f}%** of it "
        f"(target <= {EVAL_TARGET_PCT:.0f}%); the first, {1000 * e['first_eval_seconds']:.0f} ms, includes the "
        f"one-time tracing of the eval function: counted like the others, {e['eval_cost_pct_without_tracing']:.1f}%. "
        f"Cross-checks: one evaluation on its own takes {1000 * e['eval_seconds']:.0f} ms, "
        f"x {e['evaluations']} = {e['eval_cost_pct_isolated']:.1f}% of the run; the difference of the two runs, "
        "scaled to all evaluations, gives "
        + (f"{e['eval_cost_pct_differential']:.1f}%" if e["eval_cost_pct_differential"] is not None else "-")
        + " (the noisiest: two separate runs). Run times include tracing/compilation.",
        "",
        *train_deep.render_deep(result["deep"]),
        "## Matmul GFLOP/s (the limit's denominator)",
        "",
        common.markdown_table(["net", "batch", "shape (m x k x n)", "GFLOP/s", ""], mm),
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    args = common.parser(PROG, __doc__.splitlines()[0]).parse_args(argv)
    sizes = TINY if args.tiny else FULL
    repeats = common.repeats_of(args)
    start = time.perf_counter()
    machine = common.machine()
    images, labels = synthetic_data(sizes.train_examples)
    configs = []
    for net, hidden in sizes.nets.items():
        for batch in sizes.batches:
            configs.append(measure_config(net, hidden, batch, sizes.steps[batch], sizes, images, labels, repeats))
    eval_cost = measure_eval_cost(sizes, images, labels, sizes.eval_repeats if args.repeats is None else repeats)
    deep = train_deep.measure_deep(sizes.deep_hidden, sizes.deep_steps, images, labels, repeats,
                                   eval_examples=sizes.eval_examples)
    ratios = {**headline_ratios(configs), **deep["ratios"]}
    headline = next(c for c in configs if c["net"] == HEADLINE_NET and c["batch"] == HEADLINE_BATCH)
    variants = [r["contender"] for r in headline["rows"] if r["contender"].startswith("ours")]
    best_variant = max(variants, key=lambda v: next(r["steps_per_s"] for r in headline["rows"] if r["contender"] == v))
    result = {
        "benchmark": STEM, "machine": machine, "machine_end": common.machine(), "repeats": repeats,
        "tiny": bool(args.tiny), "train_examples": sizes.train_examples, "steps": sizes.steps,
        "learning_rate": LEARNING_RATE, "ours_default": headline["configs"]["ours"],
        "configs": configs, "eval": eval_cost, "deep": deep, "ratios": ratios, "targets": TARGETS,
        "eval_target_pct": EVAL_TARGET_PCT, "best_variant": best_variant,
        "best_variant_ratios": headline_ratios(configs, best_variant),
        "best_round_ratios": {**headline_ratios(configs, key="steps_per_s_best"), **deep["best_round_ratios"]},
        "seconds": time.perf_counter() - start,
    }
    key_lines = [f"eval cost {eval_cost['eval_cost_pct']:.1f}% of a {eval_cost['steps']}-step run "
                 f"({eval_cost['evaluations']} evaluations of {eval_cost['eval_examples']} examples; "
                 f"{eval_cost['eval_cost_pct_without_tracing']:.1f}% without the one-time tracing)"]
    key_lines += [common.ratio_line(k, v) for k, v in ratios.items()]
    result["key_lines"] = key_lines
    markdown = render(result)
    return common.publish(common.out_dir(args), STEM, result, markdown,
                          notes=[f"best ours variant at the headline: {best_variant} "
                                 f"({result['best_variant_ratios']['ours/limit']:.2f}x limit)"])


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
