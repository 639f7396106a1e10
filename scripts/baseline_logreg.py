#!/usr/bin/env python3
"""Assignment 1, problem 6: an off-the-shelf logistic regression on 50..5000 training examples.

    python scripts/baseline_logreg.py --data data/notMNIST.pickle --sizes 50,100,1000,5000 \
        [--out results/baseline_logreg.json]

Prints test (and validation) accuracy per training-set size.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from dnn_tf import files
from dnn_tf.cli import ArgumentParser, add_output_flags, run, setup_output
from dnn_tf.data import dataset
from dnn_tf.reference import scipy_logreg

PROG = "baseline_logreg"


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected positive sizes, got {text!r}")
    return sizes


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/notMNIST.pickle", help="the merged notMNIST pickle")
    parser.add_argument("--sizes", type=_sizes, default=scipy_logreg.DEFAULT_SIZES,
                        help="comma-separated training-set sizes (default: 50,100,1000,5000)")
    parser.add_argument("--l2", type=float, default=scipy_logreg.DEFAULT_L2,
                        help="L2 strength on the weights, 1/C in sklearn's terms (default: 1.0)")
    parser.add_argument("--max-iter", type=int, default=scipy_logreg.DEFAULT_MAX_ITER,
                        help="L-BFGS iterations (default: sklearn's 100)")
    parser.add_argument("--out", default=None, help="also write the rows as JSON here")
    add_output_flags(parser)
    return parser


def format_table(rows: Sequence[dict]) -> str:
    """The rows as a fixed-width text table."""
    lines = [f"{'train_size':>10}  {'test_acc':>8}  {'valid_acc':>9}  {'iters':>5}  {'seconds':>7}"]
    for r in rows:
        lines.append(f"{r['train_size']:>10}  {r['test_accuracy']:>7.1f}%  {r['valid_accuracy']:>8.1f}%  "
                     f"{r['iterations']:>5}  {r['seconds']:>7.1f}")
    return "\n".join(lines)


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_output(args)
    data = dataset.load(args.data)  # restricted unpickler + schema check
    rows = scipy_logreg.run_baseline(data, sizes=args.sizes, l2=args.l2, max_iter=args.max_iter)
    print(format_table(rows))
    if args.out:
        files.write_json(args.out, rows)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
