"""What each speed trick of the training code buys, on what it speeds up: interleaved rounds, ratios, spreads.

A trick is kept only if it buys at least 5% of what it speeds up. Each trick is switched off
in a checkout's own code (``checkout_worker``: a measurement, never a dnn_tf option) and timed
against the same code with it on, in the same rounds:

* ``input_gradient``: the matmul with the cheaper input gradient, ``dx = (w @ dy^T)^T`` (8428ca3's
  ``model.matmul_for_training``, here ``training/speed.py``) vs TensorFlow's own gradient, on the
  deep preset's step and on a bare step of its net;
* ``fused_optimizer``: the optimizer's fused update (one ``ResourceApplyAdam`` /
  ``ResourceApplyGradientDescent`` kernel per variable) vs Keras's own Adam on the deep
  preset's step and Keras's SGD on the relu1024 preset's;
* ``compiled_warp``: the XLA-compiled affine warp of the input jitter
  (``augment.compiled_affine_warp``) vs the same warp uncompiled, on the deep preset's step
  and on its jitter alone;
* ``steps_per_call``: 10 steps per compiled call (the presets' setting) vs 1, on the
  relu1024 and deep presets' steps.

``--checkout DIR`` measures a checkout of other code (say ``git worktree add DIR 8428ca3``, the
code before the reorganization) next to this checkout, whose tricks are measured too. Every
checkout runs in its own process; the contenders of all of them are interleaved in rounds (in
reverse order every other round), after a warm-up round; in a round, each trick's contender
with it and without it run one after the other. A trick's ratio is, round by round, the time
without it over the time with it (above 1: the trick speeds things up); the table gives the
median over the rounds, its 95% confidence interval and the rounds' quartiles (the spread). Writes
``results/speed_tricks.md`` and ``.json``; ``--tiny`` (small nets, 2 rounds) writes into a
temporary folder unless given another ``--out``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from checkout_worker import revision, time_checkouts  # noqa: E402

PROG = "speed_tricks"
STEM = "speed_tricks"
ROUNDS = 15
KEEP_RATIO = 1.05  # the rule: a trick buys at least 5% of what it speeds up
TRICKS = {
    "input_gradient": "matmul with the cheaper input gradient vs TensorFlow's gradient",
    "fused_optimizer": "fused optimizer update vs Keras's optimizer",
    "compiled_warp": "XLA-compiled affine warp vs the same warp uncompiled",
    "steps_per_call": "steps_per_call 10 vs 1",
}
# (trick, what it speeds up: kind of contender, preset); kinds: "step" (the preset's compiled step),
# "bare" (the bare step of its net and batch), "jitter" (its input jitter alone).
MEASURES = (
    ("input_gradient", "step", "deep"),
    ("input_gradient", "bare", "deep"),
    ("fused_optimizer", "step", "deep"),
    ("fused_optimizer", "step", "relu1024"),
    ("compiled_warp", "step", "deep"),
    ("compiled_warp", "jitter", "deep"),
    ("steps_per_call", "step", "relu1024"),
    ("steps_per_call", "step", "deep"),
)
WHAT = {"step": "the {preset} preset's step", "bare": "a bare step of the {preset} preset's net",
        "jitter": "the {preset} preset's jitter alone"}
# Work per run (each a multiple of 10 steps, the presets' steps_per_call) and the training set's size.
FULL = {"steps": {"deep": 40, "relu1024": 200}, "jitter_steps": 400, "examples": 20000, "overrides": {}}
TINY = {"steps": {"deep": 10, "relu1024": 20}, "jitter_steps": 20, "examples": 2048,
        "overrides": {"deep": {"hidden_sizes": [64, 32]}, "relu1024": {"hidden_sizes": [64]}}}
PLACEHOLDERS = {"--checkout": "CHECKOUT", "--out": "OUT"}


def contender_name(label: str, kind: str, preset: str, off: str | None = None) -> str:
    return f"{label}: {kind} {preset}" + (f" without {off}" if off else "")


def run_name(label: str, trick: str, kind: str, preset: str, with_it: bool) -> str:
    return f"{label}: {trick} on {kind} {preset}, {'with' if with_it else 'without'}"


def plan(infos: dict[str, dict], sizes: dict) -> dict[str, tuple[str, str, dict]]:
    """Every measure whose trick a checkout has, with and without it one after the other:
    run -> (checkout, contender, what to build). The contenders with every trick are shared."""
    runs = {}
    for label, info in infos.items():
        for trick, kind, preset in MEASURES:
            if trick not in info["tricks"]:
                continue
            steps = sizes["jitter_steps"] if kind == "jitter" else sizes["steps"][preset]
            for off in (None, trick):
                runs[run_name(label, trick, kind, preset, off is None)] = (
                    label, contender_name(label, kind, preset, off),
                    {"kind": kind, "preset": preset, "steps": steps, "examples": sizes["examples"],
                     "overrides": sizes["overrides"].get(preset, {}), "off": off})
    return runs


def measure(checkouts: dict[str, str], sizes: dict, repeats: int) -> dict:
    """Interleaved rounds of every measure of every checkout; the rows: one per (checkout, trick, measure)."""
    timed = time_checkouts(checkouts, lambda infos: plan(infos, sizes), repeats)
    runs, times = timed["runs"], timed["times"]
    rows = []
    for label in checkouts:
        for trick, kind, preset in MEASURES:
            on, off = (run_name(label, trick, kind, preset, with_it) for with_it in (True, False))
            if off not in runs:
                continue
            steps = runs[on][2]["steps"]
            ratio = common.paired_ratios(times[off], times[on])
            rows.append({"checkout": label, "trick": trick, "kind": kind, "preset": preset,
                         "speeds_up": WHAT[kind].format(preset=preset), "steps": steps,
                         "steps_per_s_with": steps / common.median(times[on]),
                         "steps_per_s_without": steps / common.median(times[off]),
                         "ratio": ratio, "verdict": verdict(ratio), "seconds_with": times[on],
                         "seconds_without": times[off]})
    return {"rows": rows, "round_loads": timed["round_loads"],
            "checkouts": {label: {k: info[k] for k in ("layout", "tricks")}
                          for label, info in timed["checkouts"].items()},
            "tensorflow": next(iter(timed["checkouts"].values()))["tensorflow"],
            "contenders": {contender: {"worker": label, "spec": spec, "built": timed["built"][contender]}
                           for label, contender, spec in runs.values()}}


def verdict(ratio: dict) -> str:
    """``keep`` (median ratio >= KEEP_RATIO) or ``drop``; ``(unclear)``: the median's 95% interval straddles the bar."""
    keep = ratio["median"] >= KEEP_RATIO
    return ("keep" if keep else "drop") + (" (unclear)" if common.against(ratio, KEEP_RATIO) == "unclear" else "")


def render(result: dict) -> str:
    m, loads = result["machine"], result["round_loads"]
    load = f"{min(loads):.1f}-{max(loads):.1f}" if loads else "-"
    rows = [[r["checkout"], TRICKS[r["trick"]], r["speeds_up"], r["steps_per_s_with"], r["steps_per_s_without"],
             f"{r['ratio']['median']:.2f}", f"{r['ratio']['ci_low']:.2f}-{r['ratio']['ci_high']:.2f}",
             f"{r['ratio']['q25']:.2f}-{r['ratio']['q75']:.2f}", load, r["verdict"]] for r in result["rows"]]
    checkouts = "; ".join(f"`{label}`: {c['layout']} layout, tricks {', '.join(c['tricks'])}"
                          for label, c in result["checkouts"].items())
    return "\n".join([
        "# Speed tricks: what each buys on what it speeds up",
        "",
        f"Command: `{result['command']}`" + (" (CHECKOUT: a checkout of the code measured next to this one, e.g. "
                                             "`git worktree add CHECKOUT 8428ca3`)" if "CHECKOUT" in result["command"]
                                             else "") + ".",
        f"Machine: {m['cpus']} CPUs shared with other processes, Python {m['python']}, TensorFlow "
        f"{result['tensorflow']}, {m['time']}; load average (`uptime`) {result['uptime_start']} at the start, "
        f"{result['uptime_end']} at the end, {load} (1 min) over the rounds.",
        f"Checkouts, each in its own process: {checkouts}.",
        f"{result['repeats']} rounds after a warm-up round; a round runs, for every trick of every checkout, what it "
        "speeds up with the trick and right after without it (in reverse order every other round). `ratio`: "
        "round by round, the time without the trick over the time "
        "with it (above 1: the trick speeds it up), median over the rounds; `95% interval`: the median's "
        "(distribution-free, from the order statistics of the rounds); `spread`: the rounds' quartiles. Rule: a "
        f"trick is kept if it buys at least {100 * (KEEP_RATIO - 1):.0f}% (median ratio >= {KEEP_RATIO}); "
        "`(unclear)`: the median's 95% interval straddles that bar, so more rounds or a quieter machine could "
        "turn the verdict.",
        "",
        common.markdown_table(["checkout", "trick", "what it speeds up", "steps/s with", "steps/s without",
                               "ratio", "95% interval", "spread (25-75%)", "load", "verdict"], rows, digits=1),
        "",
        "Steps per round: " + ", ".join(f"{p} {s}" for p, s in result["sizes"]["steps"].items())
        + f", jitter alone {result['sizes']['jitter_steps']}; synthetic data, {result['sizes']['examples']:,} "
        "training examples resident on the device. `steps/s` are medians of the rounds, the jitter's in "
        "jitters of one batch per second.",
        "",
    ])


def main(argv=None) -> int:
    p = common.parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--checkout", default=None, metavar="DIR",
                   help="a checkout of other code to measure next to this one, e.g. one of 8428ca3")
    args = p.parse_args(argv)
    sizes, out = TINY if args.tiny else FULL, common.out_dir(args)
    result = common.record(STEM, argv, args, PLACEHOLDERS, ROUNDS)
    folders = ([args.checkout] if args.checkout else []) + [str(common.REPO)]
    labels = [revision(folder) for folder in folders]
    if len(set(labels)) < len(labels):
        labels = [f"{label} ({i + 1})" for i, label in enumerate(labels)]
    measured = measure(dict(zip(labels, folders)), sizes, result["repeats"])
    result = common.finish({**result, "keep_ratio": KEEP_RATIO, "sizes": sizes, **measured})
    result["key_lines"] = [f"trick {r['trick']} on {r['speeds_up']} ({r['checkout']}): ratio "
                           f"{r['ratio']['median']:.2f} (95% {r['ratio']['ci_low']:.2f}-{r['ratio']['ci_high']:.2f}): "
                           f"{r['verdict']}" for r in measured["rows"]]
    return common.publish(out, STEM, result, render(result))


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
