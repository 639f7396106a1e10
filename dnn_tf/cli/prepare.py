"""``dnn-tf-prepare``: archives -> ``DIR/notMNIST.pickle`` + ``DIR/prepare_report.json``.

Examples::

    dnn-tf-prepare                                   # download notMNIST_large + notMNIST_small (the course's)
    dnn-tf-prepare --train-archive ../shared/notmnist/notMNIST_sample.tar.gz --out /tmp/sample
    dnn-tf-prepare --train-archive big.tar.gz --test-archive small/ --train-size 20000 --valid-size 1000

Bad input (missing file, not a tar, no A..J folders, sizes larger than the
data, a size/worker count that is not a positive integer, a URL scheme other
than http/https/file, an output folder that cannot be created) prints one line
and exits with status 2.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path, PurePosixPath
from typing import Sequence
from urllib.parse import urlparse

from dnn_tf.cli import ArgumentParser, run

PROG = "dnn-tf-prepare"
CANONICAL_TRAIN = "notMNIST_large.tar.gz"
CANONICAL_TEST = "notMNIST_small.tar.gz"
CANONICAL_NAMES = (CANONICAL_TRAIN, CANONICAL_TEST)
DEFAULT_OUT = "data"
# Any "scheme://": http, https and file are fetched, others are refused by download.fetch (exit 2).
_URL = re.compile(r"^[a-z][a-z0-9+.-]+://", re.IGNORECASE)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


_count.__name__ = "non-negative integer"
_positive.__name__ = "positive integer"


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
    p.add_argument("--train-size", type=_positive, metavar="N", help="training images (default: 200000 with two "
                   "archives; all that is left with one)")
    p.add_argument("--valid-size", type=_positive, metavar="N",
                   help="validation images (default: 10000 / 10%% of one)")
    p.add_argument("--test-size", type=_positive, metavar="N", help="test images (default: 10000 / 10%% of one)")
    p.add_argument("--seed", type=_count, default=133, help="shuffling seed (default: %(default)s, the course's)")
    p.add_argument("--workers", type=_positive, metavar="N", help="decoding processes (default: CPU count)")
    p.add_argument("--force", action="store_true", help="rebuild even if the existing pickles match the inputs")
    p.add_argument("--quiet", action="store_true", help="no progress bars or status lines (the summary is printed)")
    return p


def resolve_source(source: str, out_dir: str, progress: bool, log) -> str:
    """A local path as is; a URL or canonical archive name downloaded into ``out_dir``.

    Returns:
      The local path to read.
    """
    is_url = bool(_URL.match(source))
    if not is_url and not (source in CANONICAL_NAMES and not Path(source).exists()):
        return source
    from dnn_tf import download  # lazily: only needed for downloads

    name = PurePosixPath(urlparse(source).path).name if is_url else source
    expected = download.EXPECTED_SIZES.get(name)
    return download.fetch(source, dest_dir=out_dir, expected_size=expected, progress=progress, log=log)


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    from dnn_tf.data import format_report, prepare  # after parsing: --help stays fast

    def log(*parts) -> None:
        if not args.quiet:
            print(*parts, file=sys.stderr, flush=True)

    train, test = args.train_archive, args.test_archive
    if train is None:
        train = CANONICAL_TRAIN
        test = CANONICAL_TEST if test is None else test
    progress = not args.quiet
    train = resolve_source(train, args.out, progress, log)
    test = resolve_source(test, args.out, progress, log) if test is not None else None
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
        log=log,
    )
    print(format_report(report))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dnn-tf-prepare``; returns the exit status (2 on bad input)."""
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
