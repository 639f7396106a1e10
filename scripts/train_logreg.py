#!/usr/bin/env python3
"""Assignment 2, logistic regression: full-batch gradient descent on 10,000 examples
(preset ``logreg_gd``), then SGD with minibatches of 128 (``logreg_sgd``).

    python scripts/train_logreg.py [--data data/notMNIST.pickle] [any dnn-tf-train flag]

Each preset writes ``runs/<preset>/`` (metrics.json, saved_model, checkpoints, tb).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf.cli.train import run_presets  # noqa: E402

PRESETS = ("logreg_gd", "logreg_sgd")

if __name__ == "__main__":
    sys.exit(run_presets(PRESETS))
