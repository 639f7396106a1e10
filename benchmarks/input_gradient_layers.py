"""Which layers the cheaper input-gradient matmul (``training/speed.py``) pays in.

    python benchmarks/input_gradient_layers.py [--repeats 15] [--tiny]

For the relu1024 and deep presets' nets, a compiled SGD step (``model.train_step``, batch 128,
synthetic data) is timed with ``tf.matmul`` in every layer and with the trick placed two ways,
the three interleaved round by round. ``MLP`` gives the first layer ``tf.matmul`` whatever it is
passed (nothing needs the images' gradient); after it:

* ``every layer``: the trick on every product, the 10-logit layer's included;
* ``as trained``: ``speed.matmul_cheap_input_gradient`` as the training loop passes it, which
  keeps ``tf.matmul`` for products of at most ``speed.NARROW_COLUMNS`` columns (the logits).

Ratio: the round's ``tf.matmul`` time over the placement's (above 1: the placement is faster), the
median over the rounds with its 95% interval. Writes ``results/input_gradient_layers.{md,json}``.
"""

from __future__ import annotations

import contextlib
from typing import Sequence

import common
import tensorflow as tf
import timed_steps

from dnn_tf import model
from dnn_tf.notmnist import IMAGE_PIXELS, IMAGE_SIZE, NUM_CLASSES
from dnn_tf.training import optimizers, presets, speed

STEM = "input_gradient_layers"
BATCH = 128
LEARNING_RATE = 0.01
FULL = {"presets": ("relu1024", "deep"), "steps": 20, "hidden": {}}
TINY = {"presets": ("relu1024", "deep"), "steps": 2, "hidden": {"relu1024": (64,), "deep": (64, 32)}}
REPEATS = 15


@contextlib.contextmanager
def narrow_columns(columns: int):
    """``speed.NARROW_COLUMNS`` set to ``columns`` while a step is traced (0: the trick everywhere)."""
    saved, speed.NARROW_COLUMNS = speed.NARROW_COLUMNS, columns
    try:
        yield
    finally:
        speed.NARROW_COLUMNS = saved


def compiled_steps(hidden: Sequence[int], matmul, steps: int, columns: int):
    """A traced ``tf.function`` running ``steps`` SGD steps of an MLP with ``matmul`` on fixed data."""
    images, labels = (tf.constant(a) for a in timed_steps.synthetic_data(BATCH, NUM_CLASSES, IMAGE_SIZE))
    net, optimizer = model.MLP(hidden, init="he", seed=0, matmul=matmul), optimizers.SGD(LEARNING_RATE)

    @tf.function
    def run():
        for _ in tf.range(steps):
            model.train_step(net, optimizer, images, labels)

    with narrow_columns(columns):
        run()  # traced here, with this placement
    return run


def main(argv=None) -> int:
    p = common.parser(STEM, __doc__.splitlines()[0])
    args = p.parse_args(argv)
    sizes, out = (TINY if args.tiny else FULL), common.out_dir(args)
    result = common.record(STEM, argv, args, {}, default_repeats=REPEATS)
    placements = {"tf.matmul": (tf.matmul, speed.NARROW_COLUMNS), "every layer": (speed.matmul_cheap_input_gradient, 0),
                  "as trained": (speed.matmul_cheap_input_gradient, speed.NARROW_COLUMNS)}
    rows, key_lines = [], []
    for preset in sizes["presets"]:
        hidden = tuple(sizes["hidden"].get(preset, presets.get(preset).config.hidden_sizes))
        fns = {name: compiled_steps(hidden, mm, sizes["steps"], cols) for name, (mm, cols) in placements.items()}
        times = common.interleave(fns, result["repeats"], log=common.log, alternate=True)
        for name in placements:
            if name != "tf.matmul":
                r = common.paired_ratios(times["tf.matmul"], times[name])
                net = "-".join(map(str, (IMAGE_PIXELS, *hidden, NUM_CLASSES)))
                rows.append({"preset": preset, "net": net, "placement": name, **r})
                key_lines.append(common.ratio_line(f"{preset}_{name.replace(' ', '_')}", r["median"]))
    result = common.finish({**result, "batch": BATCH, "steps_per_round": sizes["steps"], "rows": rows,
                            "key_lines": key_lines})
    table = common.markdown_table(
        ["preset", "net", "placement", "ratio (median)", "95% interval", "spread (25-75%)"],
        [[r["preset"], r["net"], r["placement"], r["median"], f"{r['ci_low']:.2f}-{r['ci_high']:.2f}",
          f"{r['q25']:.2f}-{r['q75']:.2f}"] for r in rows])
    md = "\n\n".join([
        "# The cheaper input-gradient matmul: which layers it pays in",
        f"Command: `{result['command']}`. Load average (`uptime`) {result['uptime_start']} at the start, "
        f"{result['uptime_end']} at the end; {result['repeats']} rounds after a warm-up round, "
        f"{sizes['steps']} SGD steps of batch {BATCH} per contender and round, in reverse order every other round.",
        "Ratio: `tf.matmul`'s time over the placement's in the same round (above 1: faster), median over the "
        "rounds. The first layer always has `tf.matmul`. `every layer`: the trick on every later product; "
        f"`as trained`: as `speed.matmul_cheap_input_gradient` places it (`tf.matmul` for products of at most "
        f"{speed.NARROW_COLUMNS} columns: the logits).",
        table])
    return common.publish(out, STEM, result, md)


if __name__ == "__main__":
    raise SystemExit(common.cli(main, None, STEM))
