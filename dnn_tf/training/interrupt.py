"""Ctrl-C during training: finish the compiled call in flight, then stop cleanly.

A KeyboardInterrupt raised in the middle of the loop would lose everything since
the last periodic checkpoint. ``deferred_sigint`` instead records the first SIGINT;
the training loop looks at it between compiled calls, writes a checkpoint and
raises ``TrainingInterrupted``. A second Ctrl-C interrupts at once, as usual.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from typing import Iterator

logger = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped on Ctrl-C after checkpointing.

    Attributes:
      step: steps done (the checkpoint's number).
      checkpoint: path of the checkpoint written, or None when the run has no folder.
    """

    def __init__(self, step: int, checkpoint: str | None):
        where = f"checkpoint {checkpoint}" if checkpoint else "no run folder, nothing kept"
        super().__init__(f"interrupted after step {step}; {where}")
        self.step = step
        self.checkpoint = checkpoint


class _Flag:
    requested = False


@contextlib.contextmanager
def deferred_sigint() -> Iterator[_Flag]:
    """Within the block the first SIGINT only sets ``flag.requested``; the handler is restored on exit.

    Outside the main thread (where Python cannot install handlers), or where SIGINT is
    ignored, the flag never changes.
    """
    flag = _Flag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN:  # Ctrl-C is ignored here (a background job): leave it so
        yield flag
        return

    def handler(signum, frame):
        flag.requested = True
        logger.info("Ctrl-C: stopping after the steps in flight and saving a checkpoint "
                       "(press Ctrl-C again to quit at once)")
        signal.signal(signal.SIGINT, previous if callable(previous) else signal.default_int_handler)

    signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
