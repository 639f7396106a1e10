"""What the user sees: log lines for the CLIs and notebooks, and a TensorFlow that starts quietly.

Library modules log to ``logging.getLogger(__name__)`` (children of the ``dnn_tf``
logger) and never print. ``setup_logging`` is for the edges (the CLIs, a notebook):
it shows the ``dnn_tf`` records as plain lines, written through ``tqdm.write`` so a
progress bar on the same terminal is not torn apart.

``import_tensorflow`` imports TensorFlow without its C++ start-up lines
(``cudart_stub.cc ... Could not find cuda drivers``, ``cpu_feature_guard.cc ...``):
they are written to file descriptor 2 by native code before TensorFlow reads any
setting that could stop them, so the import runs with descriptor 2 pointed at a
temporary file (replayed if the import fails). Nothing of this happens with
``verbose`` or when the user set ``TF_CPP_MIN_LOG_LEVEL`` themselves.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from types import ModuleType
from typing import IO, Iterator

import tqdm

LOGGER = "dnn_tf"
TF_LOG_ENV = "TF_CPP_MIN_LOG_LEVEL"
# Native TensorFlow logs at and above this level are shown by default: 2 = errors only.
QUIET_TF_LOG_LEVEL = "2"
QUIET, NORMAL, VERBOSE = -1, 0, 1


class _TqdmHandler(logging.Handler):
    """Writes each record as one line via ``tqdm.write`` (above any progress bar)."""

    def __init__(self, stream: IO[str] | None):
        super().__init__()
        self.stream = stream

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.tqdm.write(self.format(record), file=self.stream or sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return text


def setup_logging(verbosity: int = NORMAL, stream: IO[str] | None = None) -> logging.Logger:
    """Shows the package's log records on ``stream`` (default: the current ``sys.stderr``).

    Args:
      verbosity: ``QUIET`` (warnings and errors only), ``NORMAL`` (progress lines, the
        course's "Minibatch loss at step N" lines) or ``VERBOSE`` (also debug lines and
        TensorFlow's own Python log).
      stream: where the lines go (a notebook passes ``sys.stdout``).

    Returns:
      The ``dnn_tf`` logger. Calling again replaces the handler set up before.
    """
    logger = logging.getLogger(LOGGER)
    for handler in [h for h in logger.handlers if isinstance(h, _TqdmHandler)]:
        logger.removeHandler(handler)
    handler = _TqdmHandler(stream)
    handler.setFormatter(_Formatter())
    logger.addHandler(handler)
    logger.setLevel({QUIET: logging.WARNING, NORMAL: logging.INFO}.get(verbosity, logging.DEBUG))
    logger.propagate = False
    if "tensorflow" in sys.modules:
        _tensorflow_python_log(verbosity)
    return logger


def import_tensorflow(verbose: bool = False) -> ModuleType:
    """Imports TensorFlow (and finds its devices) without its native start-up lines.

    Args:
      verbose: show everything TensorFlow prints.

    Returns:
      The ``tensorflow`` module.
    """
    if verbose or TF_LOG_ENV in os.environ or "tensorflow" in sys.modules:
        import tensorflow as tf
    else:
        os.environ[TF_LOG_ENV] = QUIET_TF_LOG_LEVEL
        with _native_stderr_captured():
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # CUDA start-up logs its failure here
    _tensorflow_python_log(VERBOSE if verbose else NORMAL)
    return tf


def _tensorflow_python_log(verbosity: int) -> None:
    import tensorflow as tf

    tf.get_logger().setLevel(logging.DEBUG if verbosity >= VERBOSE else logging.ERROR)


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[None]:
    """Points file descriptor 2 at a temporary file; replays it to stderr if the body raises."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real descriptor 2 (some embedded interpreters): nothing to hide
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
