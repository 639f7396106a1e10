"""The run folder: where one training run keeps everything, and whether it is finished or resumable.

Layout of ``<run>/``::

    run.json        the run's name, config, settings, the data it trains on and the code that trains it
                    (``code_id``; written first)
    checkpoints/    ckpt-N + history.json (``checkpoints.Checkpoints``)
    tb/             TensorBoard scalars (``tensorboard --logdir <run>``)
    saved_model/    the trained model for serving (``inference.save_model``)
    metrics.json    the result (``TrainResult.to_dict()``), written last: its presence means "finished"

``dnn-tf-train`` and ``dnn-tf-reproduce`` both go through this, so they agree on what a
finished run is (same config, data and code, metrics written) and when an interrupted one
may continue (same data, checkpoints of the same config).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any, Mapping

from dnn_tf import files
from dnn_tf.training.config import RunSettings, TrainConfig

RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
HISTORY_FILE = "history.json"  # in CHECKPOINT_DIR: the config and log entries the checkpoints go with
TENSORBOARD_DIR = "tb"
SAVED_MODEL_DIR = "saved_model"
GROWABLE = ("steps",)  # config fields a resumed run may change
PACKAGE = Path(__file__).resolve().parents[1]  # dnn_tf/


@functools.lru_cache(maxsize=None)
def code_id() -> str:
    """SHA-256 of dnn_tf's Python sources (relative paths and contents): which code trained a run."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def config_changes(saved: Mapping[str, Any], config: TrainConfig) -> list[str]:
    """``"field: old != new"`` for each field that stops ``saved`` (a config dict) from resuming as ``config``."""
    new = config.to_dict()
    return [f"{k}: {saved.get(k)!r} != {v!r}" for k, v in new.items() if k not in GROWABLE and saved.get(k) != v]


def saved_history(directory: str) -> dict | None:
    """What ``history.json`` in a checkpoint folder holds (``config``, ``history``, ``seconds``), or None."""
    saved = files.read_json(os.path.join(directory, HISTORY_FILE))
    return saved if isinstance(saved, dict) else None


class RunDir:
    """One run folder (see the module docstring); nothing is created until ``start``."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        self.checkpoints = os.path.join(self.path, CHECKPOINT_DIR)
        self.tensorboard = os.path.join(self.path, TENSORBOARD_DIR)
        self.saved_model = os.path.join(self.path, SAVED_MODEL_DIR)
        self.metrics_path = os.path.join(self.path, METRICS_FILE)
        self.info_path = os.path.join(self.path, RUN_FILE)

    def __repr__(self) -> str:
        return f"RunDir({self.path!r})"

    def info(self) -> dict | None:
        """What ``run.json`` holds, or None."""
        info = files.read_json(self.info_path)
        return info if isinstance(info, dict) else None

    def metrics(self) -> dict | None:
        """What ``metrics.json`` holds, or None."""
        metrics = files.read_json(self.metrics_path)
        return metrics if isinstance(metrics, dict) else None

    def _same_data(self, data_id: str | None, code: str | None = None) -> bool:
        info = self.info()
        return info is not None and (data_id is None or info.get("data_id") == data_id) and (
            code is None or info.get("code_id") == code)

    def finished(self, config: TrainConfig, data_id: str | None = None, code: str | None = None) -> dict | None:
        """The metrics of a finished run of ``config`` on data ``data_id`` by code ``code`` (None: any), else None."""
        metrics = self.metrics()
        if metrics is None or not self._same_data(data_id, code) or metrics.get("config") != config.to_dict():
            return None
        if not all(isinstance(metrics.get(k), (int, float)) for k in ("valid_accuracy", "test_accuracy")):
            return None
        return metrics

    def resumable(self, config: TrainConfig, data_id: str | None = None) -> bool:
        """Whether the folder holds checkpoints that ``config`` may continue on data ``data_id``."""
        saved = saved_history(self.checkpoints)
        return (self._same_data(data_id) and saved is not None and "config" in saved
                and not config_changes(saved["config"], config))

    def start(self, config: TrainConfig, settings: RunSettings, name: str, data_id: str | None,
              resume: bool) -> None:
        """Prepares the folder for a run: drops an old result, and old checkpoints unless ``resume``.

        Raises:
          ValueError: ``resume`` into a folder whose run trained on other data.
        """
        info = self.info()
        if resume and info is not None and data_id is not None and info.get("data_id") not in (None, data_id):
            raise ValueError(f"{self.path} was trained on other data (run.json data_id {info.get('data_id')!r}); "
                             "use another out dir or train without resume")
        if os.path.exists(self.metrics_path):
            os.remove(self.metrics_path)  # never mistake an old result for this run's
        if not resume and os.path.isdir(self.checkpoints):
            shutil.rmtree(self.checkpoints)  # a fresh run must never resume into an old one's checkpoints
        files.write_json(self.info_path, {"name": name, "config": config.to_dict(), "settings": settings.to_dict(),
                                          "data_id": data_id, "code_id": code_id()})

    def write_metrics(self, metrics: Mapping[str, Any]) -> None:
        """Writes ``metrics.json`` (atomically): the run is finished."""
        files.write_json(self.metrics_path, dict(metrics))
