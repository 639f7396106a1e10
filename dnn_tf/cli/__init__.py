"""Command-line plumbing shared by the four console scripts.

Each ``main`` turns a bad input into one ``prog: error: ...`` line and exit 2, a
Ctrl-C into exit 130, and decides what the user sees: ``--quiet`` (warnings and the
final summary only), the default (progress bars on a terminal and the course's log
lines) or ``--verbose`` (also debug lines and TensorFlow's own start-up log).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from dnn_tf import console

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
# Ends the error of a download that found no network.
OFFLINE_HINT = ("offline? run on a local archive instead: --train-archive path/to/notMNIST_small.tar.gz "
                "(make reproduce DATA=path/to/notMNIST_small.tar.gz)")

log = logging.getLogger("dnn_tf.cli")


class UsageError(ValueError):
    """A bad argument or input file; the CLI prints it on one line and exits 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors on one line with exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (argparse says "invalid positive integer value: 'x'")."""
    value = int(text)
    if value < 1:
        raise ValueError(text)
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (argparse says "invalid non-negative integer value: 'x'")."""
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


positive_int.__name__ = "positive integer"  # the words argparse puts in its error line
non_negative_int.__name__ = "non-negative integer"


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """Adds the mutually exclusive ``--quiet`` and ``--verbose``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quiet", action="store_true",
                       help="no progress bars or log lines: warnings, errors and the final summary only")
    group.add_argument("--verbose", action="store_true",
                       help="also debug lines and TensorFlow's own log (its C++ start-up lines included)")


def setup_output(args: argparse.Namespace) -> int:
    """Shows the package's log lines as ``--quiet`` / ``--verbose`` ask; returns the verbosity."""
    verbosity = console.QUIET if args.quiet else console.VERBOSE if args.verbose else console.NORMAL
    console.setup_logging(verbosity)
    return verbosity


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars only on a terminal, and not with ``--quiet``."""
    return not args.quiet and sys.stderr.isatty()


def import_tensorflow(args: argparse.Namespace):
    """TensorFlow, imported quietly unless ``--verbose`` (see ``console.import_tensorflow``)."""
    return console.import_tensorflow(verbose=args.verbose)


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None, prog: str) -> int:
    """Runs ``main(argv)``; ValueError/OSError become a one-line message and exit 2.

    A download that found no network (``NetworkError``) also says how to work offline.

    Args:
      main: the command body; returns an exit status or None (0).
      argv: arguments (None: ``sys.argv[1:]``).
      prog: program name for the message.

    Returns:
      The exit status.
    """
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt as e:
        print(f"{prog}: {e or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ValueError, OSError) as e:  # includes UsageError, DataError, FileNotFoundError
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        download = sys.modules.get("dnn_tf.data.download")  # only a command that downloads imports it
        if download is not None and isinstance(e, download.NetworkError):
            msg += f"; {OFFLINE_HINT}"
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return EXIT_USAGE
