"""A run's checkpoints: ``tf.train.CheckpointManager`` plus the history they go with.

``<run>/checkpoints/ckpt-N`` holds the weights, optimizer state and step counter
after N steps; ``history.json`` beside them holds the config that wrote them, the
log entries so far and the wall time at each checkpoint, and is written first, so it
is never behind the newest checkpoint. A checkpoint resumes only under the same
``TrainConfig`` (``run_dir.config_changes``: ``steps`` may grow, a longer run
continues a finished one).
"""

from __future__ import annotations

import logging
import os
from typing import Any

import tensorflow as tf

from dnn_tf import files
from dnn_tf.training.config import TrainConfig
from dnn_tf.training.run_dir import HISTORY_FILE, config_changes, saved_history

STATE_FILE = "checkpoint"  # CheckpointManager's index of the checkpoints in the folder
MAX_TO_KEEP = 3

logger = logging.getLogger(__name__)


def checkpoint_number(path: str) -> int:
    """``.../ckpt-40`` -> 40 (the steps done when it was written)."""
    return int(path.rsplit("-", 1)[1])


class Checkpoints:
    """The checkpoints of one run folder.

    Args:
      directory: ``<run>/checkpoints``.
      step: the int64 step variable (saved and restored with the rest).
      objects: what else to save (``model=..., optimizer=...``).
    """

    def __init__(self, directory: str, step: tf.Variable, **objects: Any):
        self.directory = directory
        self.step = step
        self.checkpoint = tf.train.Checkpoint(step=step, **objects)
        self.manager = tf.train.CheckpointManager(self.checkpoint, directory, max_to_keep=MAX_TO_KEEP)

    @property
    def latest(self) -> str | None:
        return self.manager.latest_checkpoint

    def restore(self, config: TrainConfig, log_every: int) -> tuple[int, list[dict], dict[str, float]]:
        """Restores the latest checkpoint.

        Returns:
          (step, history entries before that step, {step: seconds} of the checkpoints so far).

        Raises:
          ValueError: the checkpoint was written with a different config.
        """
        if self.latest is None:
            logger.info(f"No checkpoint in {self.directory}; starting from step 0")
            return 0, [], {}
        saved = saved_history(self.directory) or {}
        if "config" in saved:
            changes = config_changes(saved["config"], config)
            if changes:
                raise ValueError(f"checkpoint in {self.directory} was written with a different config "
                                 f"({', '.join(changes)}); use another out dir or train without resume")
        self.checkpoint.restore(self.latest).assert_existing_objects_matched()
        step = int(self.step.numpy())
        # Entries logged before the checkpoint; a finished run's off-schedule final entry (step - 1)
        # is dropped when this run goes further, so the history matches an uninterrupted run's.
        history = [h for h in saved.get("history", []) if h["step"] < step and not (
            h["step"] == step - 1 and step < config.steps and h["step"] % log_every)]
        seconds_at = {k: v for k, v in saved.get("seconds", {}).items() if int(k) <= step}
        logger.info(f"Resumed from {self.latest} at step {step}")
        return step, history, seconds_at

    def save(self, config: TrainConfig, history: list[dict], seconds_at: dict[str, float]) -> str:
        """Writes the history (first, so it is never behind the checkpoint), then checkpoint ``step``."""
        files.write_json(os.path.join(self.directory, HISTORY_FILE),
                         {"config": config.to_dict(), "history": history, "seconds": seconds_at})
        return self.manager.save(checkpoint_number=int(self.step.numpy()))

    def drop_from(self, step: int) -> str | None:
        """Deletes the checkpoints of ``step`` steps or more; returns the latest one left (or None).

        Checkpoint N holds the weights after N steps, the ones step N's loss is
        computed with; when that loss is not finite, checkpoint N is no good.
        """
        keep = [p for p in self.manager.checkpoints if checkpoint_number(p) < step]
        drop = [p for p in self.manager.checkpoints if checkpoint_number(p) >= step]
        if not drop:
            return self.latest
        for prefix in drop:
            for path in tf.io.gfile.glob(prefix + ".*"):
                tf.io.gfile.remove(path)
        state_file = os.path.join(self.directory, STATE_FILE)
        if not keep:
            os.remove(state_file)
            return None
        # Rewrite the index with TensorFlow's own (atomic) writer: names relative to the folder, as
        # CheckpointManager writes them, and their timestamps, so that a later manager still rotates them.
        index = tf.train.get_checkpoint_state(self.directory)
        stamps = dict(zip(map(os.path.basename, index.all_model_checkpoint_paths),
                          index.all_model_checkpoint_timestamps))
        names = [os.path.basename(p) for p in keep]
        tf.compat.v1.train.update_checkpoint_state(
            self.directory, names[-1], all_model_checkpoint_paths=names,
            all_model_checkpoint_timestamps=[stamps[n] for n in names] if all(n in stamps for n in names) else None)
        self.manager = tf.train.CheckpointManager(self.checkpoint, self.directory, max_to_keep=MAX_TO_KEEP)
        return keep[-1]
