#!/usr/bin/env python3
"""Compare named variants of a preset over several seeds, choosing on validation accuracy only.

    python scripts/tune_deep.py --data data/notMNIST.pickle --out results/tune_deep.json \
        --candidate base \
        --candidate wide hidden_sizes=2048x1024 dropout_rate=0.5 \
        --candidate adam optimizer=adam learning_rate=1e-3 \
        --seeds 0,1,2 [--preset deep] [--set steps=2001] [--with-test] [--folds 0,1,2,3 [--fold-size N]]

Each ``--candidate NAME [FIELD=VALUE ...]`` is the ``--preset`` (default
``deep``) with those overrides; the pseudo-field ``preset=OTHER`` starts from
another preset. ``--set FIELD=VALUE`` applies to every candidate (e.g. fewer
steps for a quick screen). Every (candidate, seed) run is appended to ``--out``
(JSON, rewritten atomically after each run, so an interrupted sweep keeps its
results and ``--resume`` skips the runs already there) with a Markdown table
beside it (``OUT`` with suffix ``.md``): validation accuracy mean and standard
deviation over the seeds, seconds per run, sorted best first.

Test accuracy is left out unless ``--with-test`` is given: choose on
validation, then rerun the chosen configurations with ``--with-test``.

``--folds K[,K...]`` checks a choice on more held-out images than the one
validation split (1,430 images of notMNIST_small_dev, about 0.6 points of noise):
for each fold K, images ``[K * N, (K + 1) * N)`` of train + valid are held out
(N = ``--fold-size``, by default the validation split's size) and the rest trained
on (``fold_splits``); the test split is not used at all. Runs print nothing but
their one result line (``--verbose`` shows the training log). With folds the
table also pairs each candidate with ``base`` fold by fold: its mean gain and
on how many folds it is ahead. ``--report`` rewrites the table from ``--out``
without training.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf import files
from dnn_tf.cli import ArgumentParser, UsageError, add_output_flags, import_tensorflow, positive_int, run, setup_output  # noqa: E402
from dnn_tf.data import dataset
from dnn_tf.training import presets  # noqa: E402

PROG = "tune_deep"
DEFAULT_PRESET = "deep"
DEFAULT_SEEDS = (0, 1, 2)
PRESET_KEY = "preset"
MARKDOWN_SUFFIX = ".md"
BASELINE = "base"  # the candidate the fold-by-fold comparison is paired with


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("expected at least one seed")
    return seeds


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.path.join("data", "notMNIST.pickle"), help="the prepared dataset")
    p.add_argument("--out", required=True, help="JSON results file (a .md table is written beside it)")
    p.add_argument("--preset", default=DEFAULT_PRESET, help=f"base preset (default: {DEFAULT_PRESET})")
    p.add_argument("--candidate", action="append", nargs="+", default=[], metavar="NAME [FIELD=VALUE ...]",
                   help="a named variant of the base preset (repeatable); 'base' alone means no overrides")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override applied to every candidate (repeatable)")
    p.add_argument("--seeds", type=_seeds, default=DEFAULT_SEEDS, help="comma-separated seeds (default: 0,1,2)")
    p.add_argument("--folds", type=_seeds, default=None,
                   help="comma-separated folds: validate on slices of train + valid instead of the validation "
                        "split (the test split is not used)")
    p.add_argument("--fold-size", type=positive_int, default=None,
                   help="images per fold (default: the size of the validation split)")
    p.add_argument("--with-test", action="store_true",
                   help="also record test accuracy (only after choosing on validation)")
    p.add_argument("--resume", action="store_true", help="skip (config, seed) runs already in --out")
    p.add_argument("--dry-run", action="store_true", help="print the candidates' configs and exit")
    p.add_argument("--report", action="store_true", help="rewrite the table from --out and exit (no training)")
    add_output_flags(p)
    return p


def _texts(items: Sequence[str], what: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{what}: expected FIELD=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def fold_splits(data: dict, folds: Sequence[int], size: int | None = None) -> Iterator[tuple[int, dict]]:
    """Yields ``(fold, data of that fold)`` for each of ``folds``, one at a time.

    Of train + valid concatenated, images ``[fold * size, (fold + 1) * size)``
    become the validation split (and stand in for the test split, which is left
    out so it is never evaluated) and the rest the training split. Every fold is
    checked before the first is yielded, so a bad one fails before any training.
    ``size`` defaults to the size of the validation split.

    Raises:
      UsageError: a fold outside train + valid.
    """
    size = size or len(data["valid_labels"])
    images = np.concatenate([data["train_dataset"], data["valid_dataset"]])
    labels = np.concatenate([data["train_labels"], data["valid_labels"]])
    count = len(images) // size
    for fold in folds:
        if not 0 <= fold < count:
            raise UsageError(f"fold {fold} is outside 0..{count - 1} ({len(images)} images, {size} per fold)")
    for fold in folds:
        held = np.zeros(len(images), bool)
        held[fold * size:(fold + 1) * size] = True
        yield fold, {"train_dataset": images[~held], "train_labels": labels[~held],
                     "valid_dataset": images[held], "valid_labels": labels[held],
                     "test_dataset": images[held], "test_labels": labels[held]}


def make_candidates(preset: str, specs: Sequence[Sequence[str]],
                    common: Sequence[str]) -> dict[str, presets.Preset]:
    """``{name: preset}`` for ``--candidate`` specs (default: the preset alone), named after the candidate.

    Raises:
      UsageError: duplicate names, unknown preset/field or a bad value.
    """
    specs = specs or [["base"]]
    out: dict[str, presets.Preset] = {}
    for name, *items in specs:
        if name in out:
            raise UsageError(f"duplicate candidate name {name!r}")
        start = preset
        rest = []
        for item in items:
            key, _, value = item.partition("=")
            if key.strip() == PRESET_KEY:
                start = value.strip()
            else:
                rest.append(item)
        try:
            chosen = presets.get(start).parse(_texts(common, "--set")).parse(_texts(rest, f"candidate {name}"))
        except ValueError as e:
            raise UsageError(f"candidate {name}: {e}") from None
        out[name] = chosen
    return out


def summarize(rows: Sequence[dict], with_test: bool) -> list[dict]:
    """Per candidate: mean/std of validation (and test) accuracy and seconds, best validation first."""
    by_name: dict[str, list[dict]] = {}
    for r in rows:
        by_name.setdefault(r["candidate"], []).append(r)
    summary = []
    for name, rs in by_name.items():
        s = {"candidate": name, "preset": rs[0].get("preset"), "runs": len(rs), "seeds": [r["seed"] for r in rs],
             "overrides": rs[0]["overrides"]}
        keys = ["valid_accuracy", "seconds"] + (["test_accuracy"] if with_test else [])
        for key in keys:
            values = [r[key] for r in rs if r.get(key) is not None]
            if values:
                s[key + "_mean"] = statistics.fmean(values)
                s[key + "_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        summary.append(s)
    summary.sort(key=lambda s: -s.get("valid_accuracy_mean", 0.0))
    return summary


def paired_folds(rows: Sequence[dict], baseline: str = BASELINE) -> list[dict]:
    """Per candidate: validation accuracy per fold (mean over its seeds) and the paired gain over ``baseline``.

    The gain is the mean over the folds both have of (candidate - baseline); ``ahead`` counts the folds
    where the candidate is higher. Empty without fold runs or without a ``baseline`` candidate.
    """
    runs: dict[str, dict[int, list[float]]] = {}
    for r in rows:
        if r.get("fold") is not None:
            runs.setdefault(r["candidate"], {}).setdefault(r["fold"], []).append(r["valid_accuracy"])
    if baseline not in runs:
        return []
    per_fold = {name: {f: statistics.fmean(v) for f, v in sorted(folds.items())} for name, folds in runs.items()}
    base = per_fold[baseline]
    out = []
    for name, folds in per_fold.items():
        gains = [folds[f] - base[f] for f in folds if f in base]
        paired = name != baseline and bool(gains)
        out.append({"candidate": name, "folds": folds, "mean": statistics.fmean(folds.values()),
                    "gain": statistics.fmean(gains) if paired else None,
                    "ahead": sum(g > 0 for g in gains) if paired else None, "paired_folds": len(gains)})
    return out


def _paired_markdown(paired: Sequence[dict]) -> str:
    folds = sorted({f for p in paired for f in p["folds"]})
    head = f"| candidate | valid % on folds {' / '.join(map(str, folds))} | mean | gain over {BASELINE} | ahead |"
    lines = [head, "|---|---|---|---|---|"]
    for p in paired:
        cells = " / ".join(f"{p['folds'][f]:.2f}" if f in p["folds"] else "-" for f in folds)
        gain = "-" if p["gain"] is None else f"{p['gain']:+.2f}"
        ahead = "-" if p["ahead"] is None else f"{p['ahead']}/{p['paired_folds']}"
        lines.append(f"| {p['candidate']} | {cells} | {p['mean']:.2f} | {gain} | {ahead} |")
    return "\n".join(lines) + "\n"


def markdown(summary: Sequence[dict], with_test: bool, paired: Sequence[dict] = ()) -> str:
    head = "| candidate | preset | runs | valid % (mean ± std) |" + (" test % (mean ± std) |" if with_test else "") \
        + " s/run | overrides |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for s in summary:
        cells = [s["candidate"], str(s.get("preset") or ""), str(s["runs"]),
                 f"{s['valid_accuracy_mean']:.2f} ± {s['valid_accuracy_std']:.2f}"]
        if with_test:
            cells.append(f"{s['test_accuracy_mean']:.2f} ± {s['test_accuracy_std']:.2f}"
                         if "test_accuracy_mean" in s else "")
        cells += [f"{s['seconds_mean']:.0f}", " ".join(f"{k}={v}" for k, v in s["overrides"].items())]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + ("\n" + _paired_markdown(paired) if paired else "")


def _diff(preset: presets.Preset) -> dict[str, Any]:
    """The fields in which ``preset`` differs from the preset it starts from (seed aside)."""
    start = presets.get(preset.name)
    a = preset.config.to_dict() | preset.settings.to_dict()
    b = start.config.to_dict() | start.settings.to_dict()
    return {k: v for k, v in a.items() if k != "seed" and v != b[k]}


def _write(path: str, rows: list[dict], with_test: bool) -> str:
    """Writes the JSON and the Markdown table beside it; returns the table."""
    summary, paired = summarize(rows, with_test), paired_folds(rows)
    files.write_json(path, {"rows": rows, "summary": summary, "paired_folds": paired, "with_test": with_test})
    table = markdown(summary, with_test, paired)
    files.write_text(str(Path(path).with_suffix(MARKDOWN_SUFFIX)), table)
    return table


def _read_rows(path: str) -> list[dict]:
    data = files.read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise UsageError(f"{path} is not a {PROG} results file (JSON with a 'rows' list)")
    return data["rows"]


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.preset not in presets.PRESETS:
        raise UsageError(f"unknown preset {args.preset!r}; choose from {', '.join(presets.PRESETS)}")
    candidates = make_candidates(args.preset, args.candidate, args.set)
    if args.folds and args.with_test:
        raise UsageError("--folds leaves the test split out; drop --with-test")
    if args.report:
        if not os.path.exists(args.out):
            raise UsageError(f"--report: {args.out} does not exist")
        rows = _read_rows(args.out)
        print(_write(args.out, rows, any("test_accuracy" in r for r in rows)), end="")
        return 0
    if args.dry_run:
        for name, preset in candidates.items():
            print(f"{name}: {preset.name} {_diff(preset)}")
        return 0
    data = dataset.load(args.data)  # before importing TensorFlow: a bad path fails fast
    if not args.verbose:
        args.quiet = True  # one result line per run, not the training log
    setup_output(args)
    import_tensorflow(args)
    from dnn_tf.training.loop import train_and_evaluate

    rows: list[dict] = []
    if args.resume and os.path.exists(args.out):
        rows = _read_rows(args.out)
    done = {(r["candidate"], r["seed"], r.get("fold"), repr(sorted(r["config"].items()))) for r in rows}
    splits = fold_splits(data, args.folds, args.fold_size) if args.folds else [(None, data)]
    total = len(args.folds or (None,)) * len(candidates) * len(args.seeds)
    k = 0
    for fold, fold_data in splits:  # one fold's arrays at a time (itertools.product would build them all)
        for (name, preset), seed in itertools.product(candidates.items(), args.seeds):
            k += 1
            cfg = preset.config.replace(seed=seed)
            key = (name, seed, fold, repr(sorted(cfg.to_dict().items())))
            if key in done:
                continue
            t0 = time.perf_counter()
            result = train_and_evaluate(cfg, fold_data, preset.settings, name=name)
            row = {"candidate": name, "seed": seed, "fold": fold, "preset": preset.name,
                   "overrides": _diff(preset),
                   "valid_accuracy": result.valid_accuracy,
                   "valid_curve": [(h["step"], h["valid_accuracy"]) for h in result.history],
                   "seconds": result.seconds, "wall_seconds": time.perf_counter() - t0,
                   "config": cfg.to_dict()}
            if args.with_test:
                row["test_accuracy"] = result.test_accuracy
                row["test_sanitized_accuracy"] = result.test_sanitized_accuracy
            rows.append(row)
            _write(args.out, rows, args.with_test)
            test = f"  test {result.test_accuracy:.2f}" if args.with_test else ""
            where = "" if fold is None else f" fold {fold}"
            print(f"[{k}/{total}] {name} seed {seed}{where}: valid {result.valid_accuracy:.2f}{test}  "
                  f"({result.seconds:.0f} s)", flush=True)
    if rows:
        print(_write(args.out, rows, args.with_test), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
