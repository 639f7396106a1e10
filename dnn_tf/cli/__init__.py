"""Command-line entry points. Each ``main`` turns a bad input into one line and exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence


class UsageError(ValueError):
    """A bad argument or input file; the CLI prints it on one line and exits 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors on one line with exit status 2."""

    def error(self, message: str) -> None:  # noqa: D401 - argparse API
        self.exit(2, f"{self.prog}: error: {message}\n")


def run(main: Callable[[Sequence[str] | None], int | None], argv: Sequence[str] | None, prog: str) -> int:
    """Runs ``main(argv)``; ValueError/OSError become a one-line message and exit 2.

    Args:
      main: the command body; returns an exit status or None (0).
      argv: arguments (None: ``sys.argv[1:]``).
      prog: program name for the message.

    Returns:
      The exit status.
    """
    try:
        return int(main(argv) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # includes UsageError, DataError, FileNotFoundError
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"{prog}: error: {msg}", file=sys.stderr)
        return 2
