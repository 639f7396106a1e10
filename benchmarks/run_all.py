"""Runs every benchmark (each in its own process), prints their key lines, writes results/BENCHMARKS.md.

``make bench`` calls ``python benchmarks/run_all.py`` (``make bench ARGS="--glyphs PATH"`` hands
``--glyphs`` to the benchmarks that build their data from real glyphs): under 20 minutes on 2 cores
with prepare_full_scale's archives and course baseline cached, plus a few minutes each for building
the archives and measuring the course's extract-then-read the first time (timings in results/run_all.json).
``--checkout DIR`` (a checkout of the code before, say ``git worktree add DIR 8428ca3``) also runs
``speed_tricks`` and ``budget_train`` against it (up to 15 minutes each). ``--tiny`` runs everything
with tiny sizes (about a minute), into a temporary folder unless given ``--out``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

PROG = "run_all"
HERE = Path(__file__).resolve().parent
BENCHMARKS = ("train_throughput", "backprop_cost", "input_gradient_layers", "prepare_throughput", "prepare_full_scale",
              "deep_vs_wide")
AGAINST_CHECKOUT = ("speed_tricks", "budget_train")  # run with --checkout: the code before, next to this one
CHECKOUT_FLAG = {"speed_tricks": "--checkout", "budget_train": "--old"}
# Safety nets only (typical: 150-300 s, 10-30 s, 60-120 s, 150-350 s, 80-150 s, 150-250 s on 2 shared cores;
# prepare_full_scale's first run builds its archives and measures the course once: up to 1,500 s more).
TIMEOUT = {"train_throughput": 900, "backprop_cost": 240, "input_gradient_layers": 600, "prepare_throughput": 600,
           "prepare_full_scale": 2400, "deep_vs_wide": 480, "speed_tricks": 1800, "budget_train": 1500}
TAKES_GLYPHS = ("prepare_throughput", "prepare_full_scale", "deep_vs_wide")  # benchmarks with --glyphs
TINY_TIMEOUT = 300  # speed_tricks and budget_train start a TensorFlow process per checkout
SUMMARY = "BENCHMARKS.md"
WALL = "run_all.json"  # wall seconds of each benchmark's latest run (a partial --only run updates its entries)


def run_one(name: str, out: str, tiny: bool, repeats: int | None = None, glyphs: str | None = None,
            checkout: str | None = None) -> tuple[int, float, str]:
    """Runs benchmark ``name``; returns (exit status, seconds, its stdout). Progress goes to stderr as it runs."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), "--out", out] + (["--tiny"] if tiny else [])
    cmd += ["--repeats", str(repeats)] if repeats is not None else []
    cmd += ["--glyphs", glyphs] if glyphs and name in TAKES_GLYPHS else []
    cmd += [CHECKOUT_FLAG[name], checkout] if checkout and name in CHECKOUT_FLAG else []
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, timeout=TINY_TIMEOUT if tiny else TIMEOUT[name])
        status, stdout = proc.returncode, proc.stdout
    except subprocess.TimeoutExpired as e:
        status, stdout = -1, (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stdout += f"\n{name}: timed out"
    return status, time.perf_counter() - t0, stdout


def load(out: Path, name: str) -> dict | None:
    try:
        with open(out / f"{name}.json", encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _met(ok: bool) -> str:
    return "yes" if ok else "no"


def summarize(out: str | os.PathLike, wall: dict[str, float] | None = None) -> str:
    """BENCHMARKS.md: every ratio and target from the results JSON files in ``out``."""
    out = Path(out)
    rows = []
    loads = []
    t = load(out, "train_throughput")
    if t:
        loads += [t["machine"]["load_average_1min"], t["machine_end"]["load_average_1min"]]
        for k, v in t["ratios"].items():
            what = "deep preset, 784-2048-1024-512-10" if k.startswith("deep_preset") else "784-1024-10, default config"
            rows.append(["train_throughput", f"{k} ({what}, batch 128)", f"{v:.2f}",
                         f">= {t['targets'][k]}", _met(v >= t["targets"][k])])
        for k, v in t.get("best_round_ratios", {}).items():
            rows.append(["train_throughput", f"{k}, each contender's fastest round (cross-check)", f"{v:.2f}",
                         f">= {t['targets'][k]}", _met(v >= t["targets"][k])])
        for k, v in t["best_variant_ratios"].items():
            rows.append(["train_throughput", f"{k}, best variant `{t['best_variant']}`", f"{v:.2f}",
                         f">= {t['targets'][k]}", _met(v >= t["targets"][k])])
        e = t["eval"]
        rows.append(["train_throughput", f"evaluation cost ({e['evaluations']} x {e['eval_examples']:,} examples, "
                     f"{e['steps']:,} steps), timed in the run", f"{e['eval_cost_pct']:.1f}%",
                     f"<= {t['eval_target_pct']:.0f}%", _met(e["eval_cost_pct"] <= t["eval_target_pct"])])
        rows.append(["train_throughput", "evaluation cost without the one-time tracing of the eval function",
                     f"{e['eval_cost_pct_without_tracing']:.1f}%", f"<= {t['eval_target_pct']:.0f}%",
                     _met(e["eval_cost_pct_without_tracing"] <= t["eval_target_pct"])])
    p = load(out, "prepare_throughput")
    if p:
        loads += [p["machine"]["load_average_1min"], p["machine_end"]["load_average_1min"]]
        tg = p["targets"]
        for s in p["sources"]:
            best = s["contenders"][s["best"]]
            rows.append(["prepare_throughput", f"ours/course images/s, {s['source']} ({best['images_per_s']:,.0f} vs "
                         f"{s['contenders']['course']['images_per_s']:,.0f} images/s)", f"{s['ratio_vs_course']:.2f}",
                         f">= {tg['ratio']:.0f}", _met(s["ratio_vs_course"] >= tg["ratio"])])
        big = p["sources"][-1]
        if not load(out, "prepare_full_scale"):  # (measured there)
            rows.append(["prepare_throughput", "projected notMNIST_large (529,114 images), 2 workers",
                         f"{p['large_seconds']:.0f} s", f"< {tg['large_seconds']:.0f} s",
                         _met(p["large_seconds"] < tg["large_seconds"])])
        rows.append(["prepare_throughput", f"peak memory beyond arrays + import ({big['source']}, w=2)",
                     f"{100 * big['memory_overhead_w2']:.0f}%", f"< {100 * tg['memory_overhead']:.0f}%",
                     _met(big["memory_overhead_w2"] < tg["memory_overhead"])])
        d = p["dedup"]
        rows.append(["prepare_throughput", f"find_overlaps {' + '.join(f'{n:,}' for n in d['sizes'])} images",
                     f"{d['seconds']:.1f} s", f"< {tg['dedup_seconds']:.0f} s",
                     _met(d["seconds"] < tg["dedup_seconds"])])
    rows += _full_scale_rows(out, loads)
    b = load(out, "backprop_cost")
    if b:
        loads += [b["machine"]["load_average_1min"], b["machine_end"]["load_average_1min"]]
        for r in b["rows"]:
            rows.append(["backprop_cost", f"{r['net']} batch {r['batch']}: (fwd+bwd+update) / fwd, time; memory "
                         "incl. weights", f"{r['time_ratio']:.2f}; {r['total_memory_ratio']:.2f}",
                         "claim: ~2", "-"])
    g = load(out, "input_gradient_layers")
    if g:
        loads += [g["machine"]["load_average_1min"], g["machine_end"]["load_average_1min"]]
        for r in g["rows"]:
            rows.append(["input_gradient_layers", f"cheaper input gradient, {r['placement']}, {r['preset']} net "
                         f"({r['net']}): tf.matmul time / its (95% interval {r['ci_low']:.2f}-{r['ci_high']:.2f})",
                         f"{r['median']:.2f}", "-", "-"])
    rows += _checkout_rows(out, loads)
    dw = load(out, "deep_vs_wide")
    parts = ["# Benchmarks", ""]
    if loads:
        parts += [f"Measured on {os.cpu_count()} shared CPUs (other processes were running: load average "
                  f"{min(loads):.1f}-{max(loads):.1f}); contenders are interleaved and medians reported, see each "
                  "benchmark's .md for the spread.", ""]
    if wall:
        parts += ["Wall time of the latest run of each: " + ", ".join(f"{k} {v:.0f} s" for k, v in wall.items())
                  + f"; together {sum(wall.values()):.0f} s.", ""]
    parts += [common.markdown_table(["benchmark", "measure", "measured", "target", "met"], rows), ""]
    if b:
        parts += ["## Back-propagation cost", "", b["conclusion"], ""]
    if dw:
        parts += ["## Deep vs wide", "", dw["statement"], ""]
    parts += ["Details: " + ", ".join(f"[{n}]({n}.md)" for n in BENCHMARKS + AGAINST_CHECKOUT
                                      if (out / f"{n}.md").exists()), ""]
    return "\n".join(parts)


def _checkout_rows(out: Path, loads: list[float]) -> list[list[str]]:
    """speed_tricks' verdicts and budget_train's ratio, when their results are there."""
    rows = []
    s = load(out, "speed_tricks")
    if s:
        loads += [s["machine"]["load_average_1min"], s["machine_end"]["load_average_1min"]]
        for r in s["rows"]:
            q = r["ratio"]
            rows.append(["speed_tricks", f"{r['trick']} on {r['speeds_up']} ({r['checkout']}): time without / with "
                         f"(95% interval {q['ci_low']:.2f}-{q['ci_high']:.2f})", f"{q['median']:.2f}",
                         f">= {s['keep_ratio']}: keep", r["verdict"]])
    b = load(out, "budget_train")
    if b:
        loads += [b["machine"]["load_average_1min"], b["machine_end"]["load_average_1min"]]
        q, sides = b["ratio"], b["sides"]
        rows.append(["budget_train", f"deep preset steps/s, new ({sides['new']['revision']}) / old "
                     f"({sides['old']['revision']}) (95% interval {q['ci_low']:.2f}-{q['ci_high']:.2f})",
                     f"{q['median']:.2f}",
                     f">= {b['target']}", _met(b["met"]) + (" (unclear)" if b["against_target"] == "unclear" else "")])
    return rows


def _full_scale_rows(out: Path, loads: list[float]) -> list[list[str]]:
    f = load(out, "prepare_full_scale")
    if not f:
        return []
    loads += [f["machine"]["load_average_1min"], f["machine_end"]["load_average_1min"]]
    ours, tg, rows = f["contenders"]["ours"], f["targets"], []
    what = f"two-archive prepare, {'tiny archives' if f['tiny'] else 'notMNIST_large + notMNIST_small shaped'}"
    rows.append(["prepare_full_scale", f"{what}: wall ({ours['decode_images_per_s']:,.0f} images/s decode)",
                 f"{ours['seconds']:.1f} s", f"<= {tg['seconds']:.0f} s", _met(ours["seconds"] <= tg["seconds"])])
    rss = ours["tree_rss"] / common.MIB
    rows.append(["prepare_full_scale", f"{what}: peak RSS of the process tree", f"{rss:,.0f} MiB",
                 f"<= {tg['tree_rss_mib']:,.0f} MiB", _met(rss <= tg["tree_rss_mib"])])
    for label in ("course", "baseline"):
        if label in f["contenders"]:
            c = f["contenders"][label]
            mib = c['tree_rss'] / common.MIB
            rows.append(["prepare_full_scale", f"{label} ({c['seconds']:.0f} s, {mib:,.0f} MiB) / ours, wall",
                         f"{c['seconds'] / ours['seconds']:.2f}", "-", "-"])
    if f.get("identity"):
        rows.append(["prepare_full_scale", f"arrays identical to {f['compare_with']}",
                     _met(f["identity"]["identical"]), "yes", _met(f["identity"]["identical"])])
    return rows


def main(argv=None) -> int:
    p = common.parser(PROG, __doc__.splitlines()[0])
    p.add_argument("--only", default=None,
                   help=f"comma-separated subset of {', '.join(BENCHMARKS + AGAINST_CHECKOUT)}")
    p.add_argument("--checkout", default=None, metavar="DIR",
                   help=f"a checkout of the code before (e.g. of 8428ca3): also run {' and '.join(AGAINST_CHECKOUT)}")
    common.add_glyphs_flag(p)
    args = p.parse_args(argv)
    every = BENCHMARKS + AGAINST_CHECKOUT
    names = (BENCHMARKS + (AGAINST_CHECKOUT if args.checkout else ()) if not args.only
             else tuple(n.strip() for n in args.only.split(",")))
    unknown = [n for n in names if n not in every]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; choose from {', '.join(every)}")
    if "budget_train" in names and not args.checkout:
        raise ValueError("budget_train needs --checkout (a checkout of the code before, e.g. of 8428ca3)")
    start = time.perf_counter()
    out = common.out_dir(args)
    failed = []
    wall: dict[str, float] = {}
    for name in names:
        common.log(f"== {name}" + (" (tiny)" if args.tiny else ""))
        status, seconds, stdout = run_one(name, str(out), args.tiny, args.repeats, args.glyphs, args.checkout)
        wall[name] = seconds
        data = load(out, name)
        print(f"== {name} ({seconds:.0f} s){'' if status == 0 else f' FAILED (exit {status})'}", flush=True)
        if status != 0:
            failed.append(name)
            print("\n".join(stdout.strip().splitlines()[-5:]), flush=True)
        elif data:
            for line in data.get("key_lines", []):
                print(line, flush=True)
    total = time.perf_counter() - start
    previous = load(out, WALL.removesuffix(".json")) or {}
    latest = {n: wall.get(n, previous.get(n)) for n in every if n in wall or n in previous}
    common.dio.write_json(out / WALL, latest)
    common.dio.write_text(out / SUMMARY, summarize(out, latest))
    wall["total"] = total
    print(f"== all done in {wall['total']:.0f} s; summary in {out / SUMMARY}"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    return 1 if failed else 0


def cli(argv=None) -> int:
    return common.cli(main, argv, PROG)


if __name__ == "__main__":
    sys.exit(cli())
