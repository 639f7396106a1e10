#!/usr/bin/env python3
"""What "the same seed gives the same metrics" holds for: the same run repeated, and run otherwise.

    python scripts/determinism.py --data data/notMNIST.pickle [--preset deep] [--steps 301] [--repeats 3]

Trains one preset for a few hundred steps in fresh processes, each under one variant:

* ``default``, twice: the same machine, versions and settings (the claim);
* ``op_determinism``: with ``tf.config.experimental.enable_op_determinism()``, and its cost;
* ``threads=1``: one intra-op thread (a machine with another core count);
* ``isa=AVX``: oneDNN limited to AVX (``ONEDNN_MAX_CPU_ISA``), as on a CPU without AVX2/AVX-512;
* ``onednn_off``: TensorFlow's Eigen kernels instead of oneDNN (``TF_ENABLE_ONEDNN_OPTS=0``);
* ``op_determinism + threads=1`` and ``op_determinism + isa=AVX``: whether op determinism makes
  the result independent of the core count or the instruction set (compared with ``op_determinism``);

and says, for each, whether its losses and accuracies are bit-identical to its reference and how
far they are apart. The timing of ``default`` and ``op_determinism`` is interleaved over
``--repeats`` rounds (ratio of medians). Writes ``results/determinism.{md,json}``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf import files  # noqa: E402
from dnn_tf.cli import ArgumentParser, positive_int, run  # noqa: E402

PROG = "determinism"
RESULTS = Path(__file__).resolve().parents[1] / "results"
VARIANTS = {  # name: (environment, enable op determinism, intra-op threads)
    "default": ({}, False, None),
    "op_determinism": ({}, True, None),
    "threads=1": ({}, False, 1),
    "isa=AVX": ({"ONEDNN_MAX_CPU_ISA": "AVX"}, False, None),
    "onednn_off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, False, None),
    "op_determinism + threads=1": ({}, True, 1),
    "op_determinism + isa=AVX": ({"ONEDNN_MAX_CPU_ISA": "AVX"}, True, None),
}
REFERENCE = {"op_determinism + threads=1": "op_determinism", "op_determinism + isa=AVX": "op_determinism"}
TIMED = ("default", "op_determinism")
ACCURACIES = ("valid_accuracy", "test_accuracy", "valid_sanitized_accuracy", "test_sanitized_accuracy")

CHILD = """
import json, sys
import tensorflow as tf
from dnn_tf.data import dataset
from dnn_tf.training import presets, loop
deterministic, threads, data_path, name, steps = json.loads(sys.argv[1])
if deterministic:
    tf.config.experimental.enable_op_determinism()
if threads:
    tf.config.threading.set_intra_op_parallelism_threads(threads)
preset = presets.get(name, steps=steps, log_every=max(steps // 10, 1), checkpoint_every=0)
result = loop.train_and_evaluate(preset.config, dataset.load(data_path), preset.settings, name=name)
print(json.dumps(result.to_dict()))
"""


def run_variant(name: str, data: str, preset: str, steps: int) -> dict:
    env_extra, deterministic, threads = VARIANTS[name]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env_extra)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps([deterministic, threads, data, preset, steps])],
                          capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        raise RuntimeError(f"variant {name} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def compare(a: dict, b: dict) -> dict:
    """Bit-identical?, and the largest loss difference and accuracy differences (points)."""
    losses_a, losses_b = ([h["loss"] for h in m["history"]] for m in (a, b))
    return {"identical": losses_a == losses_b and all(a[k] == b[k] for k in ACCURACIES),
            "max_loss_diff": max(abs(x - y) for x, y in zip(losses_a, losses_b)),
            "accuracy_diff": {k: None if a[k] is None else b[k] - a[k] for k in ACCURACIES}}


def markdown(result: dict) -> str:
    lines = ["# Determinism", "",
             f"`python scripts/determinism.py --data path/to/{result['data']} --preset {result['preset']} --steps "
             f"{result['steps']} --repeats {result['repeats']}` on {result['machine']}; each variant in a fresh "
             "process, compared with the first run of its reference.", "",
             "| variant | compared with | bit-identical | largest loss difference | valid / test accuracy difference |",
             "|---|---|---|---|---|"]
    for name, c in result["comparisons"].items():
        d = c["accuracy_diff"]
        lines.append(f"| {name} | {c['reference']} | {'yes' if c['identical'] else 'no'} | {c['max_loss_diff']:.3g} | "
                     f"{d['valid_accuracy']:+.2f} / {d['test_accuracy']:+.2f} |")
    t = result["timing"]
    lines += ["", f"Cost of `enable_op_determinism()`: training loop {t['ratio']:.3f}x the default's time "
              f"(median of {result['repeats']} interleaved runs each: {t['default']:.1f} s vs "
              f"{t['op_determinism']:.1f} s)."]
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    """The CPU's model name (Linux), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a prepared notMNIST.pickle")
    p.add_argument("--preset", default="deep")
    p.add_argument("--steps", type=positive_int, default=301)
    p.add_argument("--repeats", type=positive_int, default=3, help="interleaved timing rounds")
    p.add_argument("--out", default=str(RESULTS / "determinism"), help="output stem (.md and .json)")
    return p


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    data = os.path.abspath(args.data)
    runs: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    for _ in range(args.repeats):  # the timed pair interleaved, the other variants once
        for name in TIMED:
            runs[name].append(run_variant(name, data, args.preset, args.steps))
            print(f"{name}: {runs[name][-1]['seconds']:.1f} s", flush=True)
    for name in VARIANTS:
        if not runs[name]:
            runs[name].append(run_variant(name, data, args.preset, args.steps))
            print(f"{name}: done", flush=True)
    again = runs["default"][1 if args.repeats > 1 else 0]
    comparisons = {"default (again)": {"reference": "default", **compare(runs["default"][0], again)}}
    for name in VARIANTS:
        if name != "default":
            reference = REFERENCE.get(name, "default")
            comparisons[name] = {"reference": reference, **compare(runs[reference][0], runs[name][0])}
    timing = {name: statistics.median(r["seconds"] for r in runs[name]) for name in TIMED}
    timing["ratio"] = timing["op_determinism"] / timing["default"]
    result = {"data": os.path.basename(args.data), "preset": args.preset, "steps": args.steps, "repeats": args.repeats,
              "machine": f"{cpu_model()} ({platform.machine()}), {os.cpu_count()} CPUs", "comparisons": comparisons,
              "timing": timing}
    files.write_json(args.out + ".json", result)
    files.write_text(args.out + ".md", markdown(result))
    print(markdown(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
