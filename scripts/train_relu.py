#!/usr/bin/env python3
"""Assignment 2, problem: one hidden layer of 1,024 ReLUs trained with SGD (preset ``relu1024``).

    python scripts/train_relu.py [--data data/notMNIST.pickle] [any dnn-tf-train flag]

Writes ``runs/relu1024/`` (metrics.json, saved_model, checkpoints, tb).
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf.cli.train import run_presets  # noqa: E402

PRESETS = ("relu1024",)

if __name__ == "__main__":
    sys.exit(run_presets(PRESETS))
