#!/usr/bin/env python3
"""Assignment 3, regularization: L2 on logistic regression and the ReLU net (problem 1),
overfitting a few batches (problem 2), dropout (problem 3) and our best model (problem 4), also
refit on train + valid (``deep_full``).

    python scripts/train_regularized.py [--data data/notMNIST.pickle] [any dnn-tf-train flag]
    python scripts/train_regularized.py --only deep --mixed-precision --xla

Each preset writes ``runs/<preset>/``. ``--only a,b`` trains just those presets.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf.cli.train import run_presets  # noqa: E402

PRESETS = ("logreg_l2", "relu1024_l2", "overfit_small", "relu1024_dropout", "deep", "deep_full")


def _select(argv: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """Takes ``--only a,b`` out of ``argv``."""
    if "--only" not in argv:
        return PRESETS, argv
    i = argv.index("--only")
    if i + 1 >= len(argv):
        return PRESETS, argv[:i] + ["--only"]  # dnn-tf-train reports the bad flag
    chosen = tuple(p.strip() for p in argv[i + 1].split(",") if p.strip())
    return chosen, argv[:i] + argv[i + 2:]


if __name__ == "__main__":
    presets, rest = _select(sys.argv[1:])
    sys.exit(run_presets(presets, rest))
