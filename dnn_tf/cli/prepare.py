"""``dnn-tf-prepare``: archives -> ``DIR/notMNIST.pickle`` + ``DIR/prepare_report.json``.

Examples::

    dnn-tf-prepare                                   # download notMNIST_large + notMNIST_small (the course's)
    dnn-tf-prepare --train-archive path/to/notMNIST_small.tar.gz --out /tmp/small   # one archive, split three ways
    dnn-tf-prepare --train-archive big.tar.gz --test-archive small/ --train-size 20000 --valid-size 1000

Status lines and progress bars go to stderr, the summary (``prepare.format_report``) to stdout.
Bad input (missing file, not a tar, no A..J folders, sizes larger than the data, a size/worker
count that is not a positive integer, a URL scheme other than http/https/file, an output folder
that cannot be created) prints one line and exits with status 2.
"""

from __future__ import annotations

import sys
from typing import Sequence

from dnn_tf.cli import (
    ArgumentParser,
    add_output_flags,
    non_negative_int,
    positive_int,
    run,
    setup_output,
    show_progress,
)
from dnn_tf.data.download import CANONICAL_TEST, CANONICAL_TRAIN, resolve_sources
from dnn_tf.notmnist import COURSE_SEED, COURSE_TEST_SIZE, COURSE_TRAIN_SIZE, COURSE_VALID_SIZE

PROG = "dnn-tf-prepare"
DEFAULT_OUT = "data"


def build_parser() -> ArgumentParser:
    """The argument parser of ``dnn-tf-prepare``."""
    p = ArgumentParser(
        prog=PROG,
        description="Decode the notMNIST archives into per-class pickles and a balanced notMNIST.pickle "
        "(train/valid/test + duplicate-free sanitized valid/test), like the course's assignment 1.",
    )
    p.add_argument("--train-archive", metavar="SRC",
                   help=f"train (+valid) source: .tar.gz/.tar path, folder, URL or canonical name "
                        f"(default: {CANONICAL_TRAIN}, downloaded). Given alone, test is split from it too.")
    p.add_argument("--test-archive", metavar="SRC",
                   help=f"test source (default: {CANONICAL_TEST} when --train-archive is not given)")
    p.add_argument("--out", metavar="DIR", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    p.add_argument("--train-size", type=positive_int, metavar="N",
                   help=f"training images (default: {COURSE_TRAIN_SIZE} with two archives; all that is left with one)")
    p.add_argument("--valid-size", type=positive_int, metavar="N",
                   help=f"validation images (default: {COURSE_VALID_SIZE} / 10%% of one)")
    p.add_argument("--test-size", type=positive_int, metavar="N",
                   help=f"test images (default: {COURSE_TEST_SIZE} / 10%% of one)")
    p.add_argument("--seed", type=non_negative_int, default=COURSE_SEED,
                   help="shuffling seed (default: %(default)s, the course's)")
    p.add_argument("--workers", type=positive_int, metavar="N", help="decoding processes (default: CPU count)")
    p.add_argument("--force", action="store_true", help="rebuild even if the existing pickles match the inputs")
    add_output_flags(p)
    return p


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_output(args)
    progress = show_progress(args)
    from dnn_tf.data.prepare import format_report, prepare  # after parsing: --help stays fast (no numpy, Pillow)

    train, test = resolve_sources(args.train_archive, args.test_archive, args.out, progress)
    report = prepare(
        train,
        test,
        out_dir=args.out,
        train_size=args.train_size,
        valid_size=args.valid_size,
        test_size=args.test_size,
        seed=args.seed,
        workers=args.workers,
        force=args.force,
        progress=progress,
    )
    print(format_report(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dnn-tf-prepare``; returns the exit status (2 on bad input)."""
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
