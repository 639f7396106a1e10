"""The training budget: the deep preset's steps/s in this checkout at least 0.9x those of the code before.

Both checkouts' packages are called ``dnn_tf``, so each runs in its own process
(``checkout_worker``) with its own checkout on the path, building its own ``deep`` preset's
compiled step as ``train_and_evaluate`` builds it (Adam and its schedule, dropout, L2, shifts
and distortions, shuffled in-graph batches, its steps_per_call; no checkpoints) on the same
synthetic data. After a warm-up round, the two are timed round-robin (in reverse order every
other round), ``steps`` steady-state steps each a round; the ratio of a round is the old
step's time over the new one's (new/old steps/s), and the result is the median over the
rounds with the quartiles as its spread. Writes ``results/budget_train.md`` and ``.json``;
``--tiny`` (a small net, 2 rounds) writes into a temporary folder unless given another ``--out``.
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from checkout_worker import revision, time_checkouts  # noqa: E402

PROG = "budget_train"
STEM = "budget_train"
PRESET = "deep"
TARGET = 0.9  # new/old steps/s
ROUNDS = 30
FULL = {"steps": 100, "examples": 20000, "overrides": {}}
TINY = {"steps": 10, "examples": 2048, "overrides": {"hidden_sizes": [64, 32]}}
PLACEHOLDERS = {"--old": "OLD", "--new": "NEW", "--out": "OUT"}


def measure(checkouts: dict[str, str], sizes: dict, repeats: int) -> dict:
    """Interleaved rounds of the deep preset's step of the old and the new checkout."""
    spec = {"kind": "step", "preset": PRESET, "steps": sizes["steps"], "examples": sizes["examples"],
            "overrides": sizes["overrides"]}
    timed = time_checkouts(checkouts, lambda infos: {side: (side, side, spec) for side in infos}, repeats)
    times, steps = timed["times"], sizes["steps"]
    sides = {side: {"revision": revision(folder), "layout": timed["checkouts"][side]["layout"],
                    "built": timed["built"][side], "seconds": times[side],
                    "steps_per_s": steps / common.median(times[side]), "steps_per_s_best": steps / min(times[side]),
                    "spread": common.spread(times[side])} for side, folder in checkouts.items()}
    return {"spec": spec, "sides": sides, "ratio": common.paired_ratios(times["old"], times["new"]),
            "round_loads": timed["round_loads"], "tensorflow": timed["checkouts"]["new"]["tensorflow"]}


def render(result: dict) -> str:
    m, r, loads = result["machine"], result["ratio"], result["round_loads"]
    rows = [[f"{side} ({s['revision']})", s["steps_per_s"], s["steps_per_s_best"], f"{s['spread']:.2f}"]
            for side, s in result["sides"].items()]
    met = "met" if r["median"] >= TARGET else "**missed**"
    if common.against(r, TARGET) == "unclear":
        met += f" on the median, but its 95% interval straddles {TARGET}: not established either way"
    return "\n".join([
        "# Training budget: the deep preset's steps/s, new vs old",
        "",
        f"Command: `{result['command']}` (OLD: a checkout of the code before, e.g. `git worktree add OLD 8428ca3`"
        + ("; NEW: the checkout measured as new" if "NEW" in result["command"] else "; new: this checkout") + ").",
        f"Machine: {m['cpus']} CPUs shared with other processes, Python {m['python']}, TensorFlow "
        f"{result['tensorflow']}, {m['time']}; load average (`uptime`) {result['uptime_start']} at the start, "
        f"{result['uptime_end']} at the end, {min(loads):.1f}-{max(loads):.1f} (1 min) over the rounds.",
        f"Each checkout in its own process, its own `{PRESET}` preset's compiled step (as `train_and_evaluate` "
        f"builds it, no checkpoints) on the same synthetic data ({result['spec']['examples']:,} examples resident "
        f"on the device); {result['repeats']} rounds of {result['spec']['steps']} steps each after a warm-up round, "
        "in reverse order every other round. `spread` of a side: (max - min) / median of its rounds.",
        "",
        common.markdown_table(["checkout", "steps/s (median)", "steps/s (best round)", "spread"], rows, digits=1),
        "",
        f"**new/old steps/s: {r['median']:.2f}** (median of the rounds' ratios, 95% interval {r['ci_low']:.2f}-"
        f"{r['ci_high']:.2f}; the rounds' quartiles {r['q25']:.2f}-{r['q75']:.2f}, range {r['low']:.2f}-"
        f"{r['high']:.2f}); target >= {TARGET}: {met}.",
        "",
    ])


def main(argv=None) -> int:
    p = common.parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--old", required=True, metavar="DIR", help="a checkout of the code before, e.g. of 8428ca3")
    p.add_argument("--new", default=str(common.REPO), metavar="DIR",
                   help="the checkout measured as new (default: this one)")
    args = p.parse_args(argv)
    sizes, out = TINY if args.tiny else FULL, common.out_dir(args)
    result = common.record(STEM, argv, args, PLACEHOLDERS, ROUNDS)
    measured = measure({"old": args.old, "new": args.new}, sizes, result["repeats"])
    ratio = measured["ratio"]
    result = common.finish({**result, "target": TARGET, **measured, "met": ratio["median"] >= TARGET,
                            "against_target": common.against(ratio, TARGET)})
    result["key_lines"] = [f"budget {PRESET} preset: new {measured['sides']['new']['steps_per_s']:.1f} vs old "
                           f"{measured['sides']['old']['steps_per_s']:.1f} steps/s (medians)",
                           common.ratio_line("budget_new/old", ratio["median"])]
    return common.publish(out, STEM, result, render(result))


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
