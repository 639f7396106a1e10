"""Is going deeper more parameter-efficient than going wider? Matched-parameter nets, same training budget.

Families: ``wide`` (1 hidden layer), ``deep2`` and ``deep3`` (2 and 3 equal
hidden layers). For each budget -- the parameter count of one hidden layer of
256, 512 and 1024 units -- the deep widths are solved so the parameter counts
match within 2%. Every net gets the same training: ``train_and_evaluate``
with He initialization, SGD with momentum, the same exponential learning-rate
decay, batch size and number of steps, on the same data: the archive given with
``--glyphs`` (say notMNIST_small_dev) prepared with ``dnn_tf.data.prepare.prepare`` (split
80/10/10 %; cached in the temp folder) or, without it, generated glyphs. Several seeds
per net; the statement uses validation accuracy only.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import numpy as np  # noqa: E402

from dnn_tf.model import parameter_count  # noqa: E402
from dnn_tf.notmnist import IMAGE_PIXELS, NUM_CLASSES  # noqa: E402

PROG = "deep_vs_wide"
STEM = "deep_vs_wide"
CACHE_DIR = Path(tempfile.gettempdir()) / "dnn_tf_bench_cache" / "glyphs_prepared"
MATCH_TOLERANCE = 0.02
FAMILIES = {"wide": 1, "deep2": 2, "deep3": 3}
FULL = {"anchors": (256, 512, 1024), "seeds": (0, 1, 2), "steps": 1000}
TINY = {"anchors": (64,), "seeds": (0,), "steps": 40}
GENERATED_PER_CLASS = {"full": (500, 80, 80), "tiny": (30, 10, 10)}  # train / valid / test glyphs per letter
TRAINING = dict(init="he", optimizer="momentum", learning_rate=0.05, momentum=0.9, decay_rate=0.5,
                batch_size=128, dropout_rate=0.0, l2_beta=0.0)
DECAY_FRACTION = 3  # the rate halves every steps / 3 steps
SIGNIFICANCE = 2.0  # a difference counts when it exceeds this many standard errors


# --------------------------------------------------------------------------- widths


def parameters(hidden) -> int:
    """Weights and biases of 784-hidden...-10 (``model.parameter_count``)."""
    return parameter_count((IMAGE_PIXELS, *hidden, NUM_CLASSES))


def matched_width(budget: int, depth: int) -> int:
    """The width w of ``depth`` equal hidden layers whose parameter count is closest to ``budget``.

    Raises:
      ValueError: no width within MATCH_TOLERANCE.
    """
    # (depth - 1) w^2 + (784 + 1 + (depth - 1) + 10) w + 10 = budget
    a = depth - 1
    b = IMAGE_PIXELS + depth + NUM_CLASSES
    c = NUM_CLASSES - budget
    w = -c / b if a == 0 else (-b + math.sqrt(b * b - 4 * a * c)) / (2 * a)
    best = min((max(1, int(w) + d) for d in (-1, 0, 1, 2)), key=lambda x: abs(parameters((x,) * depth) - budget))
    if abs(parameters((best,) * depth) - budget) > MATCH_TOLERANCE * budget:
        raise ValueError(f"no {depth}-layer width matches {budget} parameters within {MATCH_TOLERANCE:.0%}")
    return best


def nets(anchors) -> list[dict]:
    """Every (family, budget) net: hidden sizes and parameter counts."""
    out = []
    for anchor in anchors:
        budget = parameters((anchor,))
        for family, depth in FAMILIES.items():
            hidden = (matched_width(budget, depth),) * depth
            out.append({"family": family, "budget": budget, "hidden": hidden, "parameters": parameters(hidden)})
    return out


# --------------------------------------------------------------------------- data


def load_data(tiny: bool, glyphs: str | None = None) -> tuple[dict, str]:
    """The archive ``glyphs`` prepared (cached), else generated glyphs (always in tiny mode)."""
    if glyphs and not tiny:
        from dnn_tf.data import dataset
        from dnn_tf.data.prepare import MERGED_PICKLE, prepare

        prepare(glyphs, out_dir=CACHE_DIR)
        data = dataset.load(CACHE_DIR / MERGED_PICKLE)
        return data, f"{Path(glyphs).name} prepared by dnn_tf.data.prepare.prepare (--glyphs)"
    sys.path.insert(0, str(common.REPO / "tests"))
    from fixtures import make_dataset

    train, valid, test = GENERATED_PER_CLASS["tiny" if tiny else "full"]
    data = make_dataset(train, valid, test, seed=0)
    what = "generated glyphs (tests/fixtures.py)" + ("" if tiny else " -- no --glyphs archive given")
    return data, what


# --------------------------------------------------------------------------- training


def train_one(net: dict, seed: int, steps: int, data: dict) -> dict:
    from dnn_tf.training.config import RunSettings, TrainConfig
    from dnn_tf.training.loop import train_and_evaluate

    config = TrainConfig(hidden_sizes=net["hidden"], seed=seed, steps=steps,
                         decay_steps=max(1, steps // DECAY_FRACTION), **TRAINING)
    t0 = time.perf_counter()
    settings = RunSettings(log_every=steps, checkpoint_every=0)
    result = train_and_evaluate(config, data, settings, name=f"{net['family']}-{net['budget']}")
    return {"valid": result.valid_accuracy, "test": result.test_accuracy, "seconds": time.perf_counter() - t0}


def summarize(runs: list[dict], n_valid: int) -> list[dict]:
    rows = []
    for key in dict.fromkeys((r["family"], r["budget"]) for r in runs):
        rs = [r for r in runs if (r["family"], r["budget"]) == key]
        valid = np.array([r["valid"] for r in rs])
        test = np.array([r["test"] for r in rs])
        p = valid.mean() / 100
        # Standard error of the mean over seeds; at least the binomial error of one validation set.
        se = max(valid.std(ddof=1) / math.sqrt(len(valid)) if len(valid) > 1 else 0.0,
                 100 * math.sqrt(p * (1 - p) / n_valid) / math.sqrt(len(valid)))
        rows.append({"family": key[0], "budget": key[1], "hidden": rs[0]["hidden"],
                     "parameters": rs[0]["parameters"], "seeds": len(rs), "valid_mean": float(valid.mean()),
                     "valid_sd": float(valid.std(ddof=1)) if len(valid) > 1 else 0.0, "valid_se": se,
                     "test_mean": float(test.mean()), "test_sd": float(test.std(ddof=1)) if len(test) > 1 else 0.0,
                     "seconds": float(sum(r["seconds"] for r in rs))})
    return rows


def statement(rows: list[dict], n_valid: int) -> str:
    """What validation accuracy says about the claim, per budget and overall."""
    lines, verdicts, diffs = [], [], []
    for budget in dict.fromkeys(r["budget"] for r in rows):
        rs = {r["family"]: r for r in rows if r["budget"] == budget}
        wide = rs["wide"]
        deep = max((r for f, r in rs.items() if f != "wide"), key=lambda r: r["valid_mean"])
        diff = deep["valid_mean"] - wide["valid_mean"]
        se = math.sqrt(deep["valid_se"] ** 2 + wide["valid_se"] ** 2)
        if diff > SIGNIFICANCE * se:
            verdict = "deeper is better"
        elif diff < -SIGNIFICANCE * se:
            verdict = "wider is better"
        else:
            verdict = "no significant difference"
        verdicts.append(verdict)
        diffs.append(diff)
        lines.append(f"~{budget:,} parameters: wide {wide['valid_mean']:.1f}% vs best deep ({deep['family']}, "
                     f"{'x'.join(map(str, deep['hidden']))}) {deep['valid_mean']:.1f}%, difference {diff:+.1f} "
                     f"points +- {se:.1f} (1 s.e.): {verdict}.")
    if all(v == "deeper is better" for v in verdicts):
        overall = "The data support the claim: at every budget a deeper net beats the wide one on validation."
    elif any(v == "wider is better" for v in verdicts) and not any(v == "deeper is better" for v in verdicts):
        overall = ("The data contradict the claim here: at matched parameter counts the single wide layer is "
                   "better on validation.")
    elif all(v == "no significant difference" for v in verdicts):
        overall = ("The data do not show the claim: at matched parameter counts, deep and wide nets are within "
                   "the noise of each other on validation.")
        if all(d > 0 for d in diffs) or all(d < 0 for d in diffs):
            overall += (f" The point estimates favour the {'deeper' if diffs[0] > 0 else 'wide'} nets at every "
                        f"budget (by {min(map(abs, diffs)):.1f}-{max(map(abs, diffs)):.1f} points), a direction, "
                        "not a result.")
    else:
        overall = "The data are mixed: " + "; ".join(f"{b:,}: {v}" for b, v in
                                                    zip(dict.fromkeys(r["budget"] for r in rows), verdicts)) + "."
    seeds = rows[0]["seeds"]
    noise = (f"Noise: {seeds} seed(s) per net (initialization and shuffling); the standard error combines the spread "
             f"over seeds with the binomial error of a {n_valid:,}-example validation set "
             f"(about {100 * math.sqrt(0.09 / n_valid):.1f} points at 90% accuracy), so differences of a point or "
             "two are not meaningful; taking the better of the two deep nets favours 'deep' a little. One training "
             "budget and one learning-rate schedule for all nets: a deeper "
             "net might gain more from tuning, dropout or more data (notMNIST_large), which this does not test.")
    return "\n".join(["- " + line for line in lines] + ["", overall, "", noise])


def plot(rows: list[dict], path) -> None:
    plt = common.pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for family in FAMILIES:
        rs = sorted((r for r in rows if r["family"] == family), key=lambda r: r["parameters"])
        if rs:
            ax.errorbar([r["parameters"] for r in rs], [r["valid_mean"] for r in rs],
                        yerr=[r["valid_se"] for r in rs], marker="o", capsize=3,
                        label=f"{family} ({FAMILIES[family]} hidden layer{'s' if FAMILIES[family] > 1 else ''})")
    ax.set_xscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("validation accuracy (%), mean +- s.e.")
    ax.set_title("deep vs wide at matched parameter counts")
    ax.legend(fontsize=8)
    common.save_figure(fig, path)


def render(result: dict) -> str:
    rows = [[r["family"], "x".join(map(str, r["hidden"])), r["parameters"], r["budget"],
             f"{100 * (r['parameters'] / r['budget'] - 1):+.2f}%", r["seeds"],
             f"{r['valid_mean']:.2f} +- {r['valid_sd']:.2f}", f"{r['test_mean']:.2f} +- {r['test_sd']:.2f}",
             r["seconds"]] for r in result["rows"]]
    t = result["training"]
    m = result["machine"]
    return "\n".join([
        "# Deep vs wide at matched parameter counts",
        "",
        f"Data: {result['data']} ({result['sizes']['train']:,} train / {result['sizes']['valid']:,} valid / "
        f"{result['sizes']['test']:,} test). Training, identical for every net: {t['steps']} steps of batch "
        f"{t['batch_size']}, {t['optimizer']} (momentum {t['momentum']}), learning rate {t['learning_rate']} "
        f"x {t['decay_rate']} every {t['decay_steps']} steps, He initialization, no dropout, no L2; seeds "
        f"{result['seeds']}. Machine: {m['cpus']} CPUs, load {m['load_average_1min']:.2f} (shared).",
        "",
        common.markdown_table(["family", "hidden", "parameters", "budget", "vs budget", "seeds",
                               "valid % (mean +- sd)", "test % (mean +- sd)", "train s"], rows),
        "",
        "![accuracy vs parameters](deep_vs_wide.png)",
        "",
        "## What the data show (validation accuracy)",
        "",
        result["statement"],
        "",
    ])


def main(argv=None) -> int:
    p = common.parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=None, help="seeds per net (default 3; --tiny: 1)")
    p.add_argument("--steps", type=int, default=None, help="training steps per net (default 1000; --tiny: 40)")
    common.add_glyphs_flag(p)
    args = p.parse_args(argv)
    sizes = TINY if args.tiny else FULL
    seeds = tuple(range(args.seeds)) if args.seeds else sizes["seeds"]
    steps = args.steps or sizes["steps"]
    if steps < 1 or not seeds:
        raise ValueError("--steps and --seeds must be >= 1")
    start = time.perf_counter()
    machine = common.machine()
    data, what = load_data(args.tiny, args.glyphs)
    n_valid = len(data["valid_labels"])
    runs = []
    todo = nets(sizes["anchors"])
    for seed in seeds:  # seed-major: a partial run still covers every net
        for net in todo:
            r = train_one(net, seed, steps, data)
            runs.append({**net, "seed": seed, **r})
            common.log(f"  {net['family']:5s} {'x'.join(map(str, net['hidden'])):>12s} "
                       f"({net['parameters']:,} params) seed {seed}: valid {r['valid']:.1f}% test {r['test']:.1f}% "
                       f"({r['seconds']:.1f}s)")
    rows = summarize(runs, n_valid)
    training = {**TRAINING, "steps": steps, "decay_steps": max(1, steps // DECAY_FRACTION)}
    result = {"benchmark": STEM, "machine": machine, "tiny": bool(args.tiny), "data": what,
              "sizes": {s: len(data[f"{s}_labels"]) for s in ("train", "valid", "test")},
              "training": training, "seeds": list(seeds), "runs": runs, "rows": rows,
              "statement": statement(rows, n_valid), "seconds": time.perf_counter() - start}
    first_budget = rows[-1]["budget"]
    result["key_lines"] = [f"deep_vs_wide: {result['statement'].split(chr(10) + chr(10))[1]}"] + [
        f"deep_vs_wide ~{first_budget:,} params: " + ", ".join(
            f"{r['family']} {r['valid_mean']:.1f}%" for r in rows if r["budget"] == first_budget)]
    out = common.out_dir(args)
    plot(rows, os.path.join(out, f"{STEM}.png"))
    markdown = render(result)
    return common.publish(out, STEM, result, markdown)


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
