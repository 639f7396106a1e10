"""Where training runs: one device, or data-parallel replicas with tf.distribute.

``RunSettings.strategy``:

* ``"default"``: TensorFlow's default strategy on one device (``default_device()``).
* ``"mirrored"``: ``MirroredStrategy`` over all local GPUs (or, without GPUs, all
  logical CPU devices); ``"multiworker"``: ``MultiWorkerMirroredStrategy`` over the
  machines of ``TF_CONFIG``.

Every strategy runs the same ``model.train_step`` (``run_step``). ``TrainConfig.batch_size``
is the GLOBAL batch: it is gathered once, cut into one contiguous slice per replica
(``replica_slice``), each replica's loss is its slice's share of the global mean, and the
optimizer sums the replicas' gradients, so an update equals the single-device one on the
same batch (up to float rounding). Dropout masks are drawn per replica. On a cluster the
chief writes the run folder; worker ``i`` writes its own to ``<run>/worker-i``.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Sequence

import tensorflow as tf

from dnn_tf.training.config import RunSettings

TF_CONFIG_ENV = "TF_CONFIG"
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
WORKER_DIR = "worker-{}"  # output folder of non-chief worker i, inside the run folder
_DISTRIBUTED = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
_STRATEGIES: dict[Any, Any] = {}  # one strategy per kind and devices per process


def default_device() -> str:
    """``"/GPU:0"`` when TensorFlow sees a GPU, else ``"/CPU:0"``."""
    return "/GPU:0" if tf.config.list_physical_devices("GPU") else "/CPU:0"


def parse_tf_config(text: str | None) -> dict[str, Any]:
    """Checks the ``TF_CONFIG`` of a multi-worker run.

    Args:
      text: the variable's value (None when unset).

    Returns:
      The parsed dict (keys ``cluster`` and ``task``).

    Raises:
      ValueError: unset, not JSON, or no worker list / task that fits it (one line).
    """
    hint = f"set {TF_CONFIG_ENV} on every machine, e.g. {TF_CONFIG_ENV}='{TF_CONFIG_EXAMPLE}'"
    if not text or not text.strip():
        raise ValueError(f"strategy 'multiworker' needs the {TF_CONFIG_ENV} environment variable; {hint}")
    try:
        tf_config = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{TF_CONFIG_ENV} is not valid JSON ({e.msg} at char {e.pos}); {hint}") from None
    cluster = tf_config.get("cluster") if isinstance(tf_config, dict) else None
    task = tf_config.get("task") if isinstance(tf_config, dict) else None
    if not isinstance(cluster, dict) or not cluster.get("worker") and not cluster.get("chief"):
        raise ValueError(f"{TF_CONFIG_ENV} has no cluster with a 'worker' list; {hint}")
    for job, hosts in cluster.items():
        if not isinstance(hosts, list) or not all(isinstance(h, str) and ":" in h for h in hosts):
            raise ValueError(f"{TF_CONFIG_ENV} cluster[{job!r}] must be a list of 'host:port' strings; {hint}")
    if not isinstance(task, dict) or task.get("type") not in cluster or not isinstance(task.get("index"), int) \
            or not 0 <= task["index"] < len(cluster[task["type"]]):
        raise ValueError(f"{TF_CONFIG_ENV} task must be {{'type': one of {sorted(cluster)}, 'index': a position "
                         f"in that list}}, got {task!r}; {hint}")
    return tf_config


def create_strategy(settings: RunSettings, devices: Sequence[str] | None = None) -> tf.distribute.Strategy:
    """The tf.distribute strategy of ``settings.strategy`` (created once per process).

    A multi-worker strategy must be created before TensorFlow runs anything else.

    Args:
      settings: ``strategy`` (and ``xla``, refused with a distributed strategy).
      devices: ``"mirrored"`` only, the devices to mirror over; default all local
        GPUs, or all logical CPU devices when there is no GPU.

    Returns:
      The default strategy, a ``MirroredStrategy`` or a ``MultiWorkerMirroredStrategy``.

    Raises:
      ValueError: ``xla`` with a distributed strategy, ``devices`` without "mirrored",
        or a missing/invalid ``TF_CONFIG`` for "multiworker".
    """
    if devices is not None and settings.strategy != "mirrored":
        raise ValueError(f"devices are only for strategy 'mirrored', not {settings.strategy!r}")
    if settings.strategy == "default":
        return tf.distribute.get_strategy()
    if settings.xla:
        raise ValueError(f"xla is not supported with strategy {settings.strategy!r} (the all-reduce of the "
                         "gradients is outside what XLA compiles here); drop xla or use strategy 'default'")
    if settings.strategy == "mirrored":
        if devices is None:
            devices = [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]
        key = ("mirrored", tuple(devices))
        if key not in _STRATEGIES:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices))
        return _STRATEGIES[key]
    if settings.strategy == "multiworker":
        text = os.environ.get(TF_CONFIG_ENV)
        parse_tf_config(text)
        if "multiworker" in _STRATEGIES and _STRATEGIES["multiworker"][0] != text:
            raise ValueError(f"{TF_CONFIG_ENV} changed after this process created its multi-worker strategy; "
                             "start a new process")
        if "multiworker" not in _STRATEGIES:
            try:
                _STRATEGIES["multiworker"] = (text, tf.distribute.MultiWorkerMirroredStrategy())
            except RuntimeError as e:  # collective ops must be configured before the runtime starts
                raise ValueError(f"cannot start the multi-worker strategy in this process ({e}); "
                                 "train in a fresh process") from None
        return _STRATEGIES["multiworker"][1]
    raise ValueError(f"unknown strategy {settings.strategy!r}")


def is_distributed(strategy: tf.distribute.Strategy) -> bool:
    """True for a mirrored or multi-worker strategy, False for the default one."""
    return isinstance(strategy, _DISTRIBUTED)


def describe_strategy(strategy: tf.distribute.Strategy) -> tuple[str, int]:
    """``(device description, replicas)``, e.g. ``("mirrored: 2 replicas on CPU:0, CPU:1", 2)``."""
    if not is_distributed(strategy):
        return default_device(), 1
    local = ", ".join(f"{tf.DeviceSpec.from_string(d).device_type}:{tf.DeviceSpec.from_string(d).device_index}"
                      for d in strategy.extended.worker_devices)
    n = strategy.num_replicas_in_sync
    replicas = f"{n} replica{'s' if n != 1 else ''}"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver
        return f"multiworker: {replicas}, this is {resolver.task_type} {resolver.task_id} on {local}", n
    return f"mirrored: {replicas} on {local}", n


def worker_out_dir(strategy: tf.distribute.Strategy, out_dir: str | None) -> str | None:
    """Where this process writes: ``out_dir`` for the chief (and single-process runs),
    ``out_dir/worker-<id>`` for the other workers of a cluster."""
    if out_dir is None or not is_distributed(strategy) or strategy.extended.should_checkpoint:
        return out_dir
    return os.path.join(out_dir, WORKER_DIR.format(strategy.cluster_resolver.task_id))


def replica_slice(batch_size: int, replica: int, replicas: int) -> tuple[int, int]:
    """``(start, stop)`` of ``replica``'s contiguous share of a global batch (sizes differ by at most 1)."""
    return replica * batch_size // replicas, (replica + 1) * batch_size // replicas


def run_step(strategy: tf.distribute.Strategy, step_fn: Callable, images: tf.Tensor, labels: tf.Tensor,
             seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Runs ``step_fn(images, labels, seed=, global_batch_size=) -> (loss, correct)`` where the strategy says.

    On one device it is simply called (``global_batch_size`` None: the batch is all there is). On
    replicas each gets its slice of the batch and the dropout seed with its replica id folded in,
    and their losses (each its share of the global mean) and counts are summed.
    """
    batch = int(images.shape[0])
    if not is_distributed(strategy):
        return step_fn(images, labels, seed=seed, global_batch_size=None)

    def split(context):
        start, stop = replica_slice(batch, context.replica_id_in_sync_group, context.num_replicas_in_sync)
        return images[start:stop], labels[start:stop]

    def replica_step(images, labels):
        replica = tf.distribute.get_replica_context().replica_id_in_sync_group
        return step_fn(images, labels, seed=tf.random.experimental.stateless_fold_in(seed, replica),
                       global_batch_size=batch)

    per_replica = strategy.run(replica_step, args=strategy.experimental_distribute_values_from_function(split))
    return tuple(strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None) for value in per_replica)
