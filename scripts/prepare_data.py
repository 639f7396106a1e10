#!/usr/bin/env python3
"""Prepare notMNIST: the same as the ``dnn-tf-prepare`` console script (see ``--help``).

    python scripts/prepare_data.py --train-archive path/to/notMNIST_small.tar.gz --out data
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf.cli.prepare import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
