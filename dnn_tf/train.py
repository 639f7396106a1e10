"""Training and evaluation: ``train_and_evaluate(config, data)`` -> ``TrainResult``.

The training set lives on the device as tensors. One compiled call
(``tf.function``, XLA with ``config.xla``) runs ``config.steps_per_call``
optimizer steps; each step gathers its minibatch in-graph, so Python only calls
the compiled function and logs between calls.

Every random choice is a stateless function of ``(config.seed, step)``:

* shuffling: epoch ``e`` visits the examples in the order
  ``argsort(stateless_uniform(seed=(seed, 4 * e)))``, ``n // batch_size``
  batches per epoch (the remainder is left out of that epoch);
* dropout: seed ``(seed, 4 * step + 1)`` (the model folds in the layer index);
* input jitter: seed ``(seed, 4 * step + 2)`` for the shift, that seed with
  ``DISTORT_SUBSTREAM`` folded in for the affine distortion.

So a resumed run follows the same trajectory as an uninterrupted one, and two
runs with the same seed on the same CPU give identical metrics.

Input jitter (``jitter``, module ``augment``): with ``config.distorts`` each
training image gets a random affine map (rotation, scale, shear), then with
``config.max_shift > 0`` a random whole-pixel shift in ``[-max_shift, max_shift]``
along x and y; pixels brought in from outside are ``augment.BACKGROUND`` = -0.5,
the normalized value of a 0 pixel, i.e. empty glyph background. With
``config.deskew`` the model then straightens each (jittered) image's slant
itself (``model.MLP``), so evaluation and the SavedModel deskew too.

Conventions (the course's): the loss and minibatch accuracy logged at step N
are those of the minibatch of step N before its update; the validation
accuracy logged at step N is measured after that update. The learning rate
logged at step N is the one used by that update, ``schedule(N)``.

Distribution (``config.strategy``, tf.distribute):

* ``"default"``: one device (``default_device()``), the fast path above.
* ``"mirrored"``: ``tf.distribute.MirroredStrategy`` over all local GPUs (or,
  without GPUs, all logical CPU devices); ``"multiworker"``:
  ``tf.distribute.MultiWorkerMirroredStrategy`` over the machines of ``TF_CONFIG``.
  ``config.batch_size`` is the GLOBAL batch: each step gathers it exactly as the
  default path does (on this worker's first device), cuts it into one contiguous
  slice per replica, and every replica's loss is its examples' summed
  cross-entropy divided by the global batch size plus L2 / replicas
  (``tf.nn.compute_average_loss`` / ``scale_regularization_loss``). The
  optimizer all-reduces (sums) the gradients, so an update equals the default
  path's on the same global batch (up to float rounding); loss and accuracy are
  summed over replicas (``strategy.reduce``). Dropout masks are drawn per
  replica (seed folded with the replica id), so with dropout the trajectory
  differs from the default path's (same distribution, still deterministic).
  On a cluster the chief writes ``out_dir``; worker ``i`` writes its own
  checkpoints (for ``resume``) and outputs to ``out_dir/worker-i``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.core.framework import summary_pb2

from dnn_tf import augment
from dnn_tf import io
from dnn_tf.config import TrainConfig
from dnn_tf.model import MLP, l2_penalty, softmax_cross_entropy

IMAGE_SIZE = 28
NUM_CLASSES = 10
# Examples per forward pass when evaluating / predicting.
EVAL_BATCH = 10000
# Random streams: seed (config.seed, NUM_STREAMS * counter + stream).
NUM_STREAMS = 4
SHUFFLE_STREAM, DROPOUT_STREAM, JITTER_STREAM = 0, 1, 2
DISTORT_SUBSTREAM = 1  # folded into the jitter seed: the distortion draws apart from the shift
# The same random numbers on CPU and GPU (augment.RNG_ALG, "philox"; XLA-compiled steps draw
# different, equally deterministic numbers: its Philox is not bit-identical to the TF kernels').
RNG_ALG = augment.RNG_ALG
# Update the progress bar at most every this many steps (plus at log steps).
PROGRESS_EVERY = 25
CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_STATE_FILE = "checkpoint"  # CheckpointManager's index of the checkpoints in CHECKPOINT_DIR
CHECKPOINT_MAX_TO_KEEP = 3
HISTORY_FILE = "history.json"
SAVED_MODEL_DIR = "saved_model"
METRICS_FILE = "metrics.json"
TENSORBOARD_DIR = "tb"
TENSORBOARD_SCALARS = ("loss", "minibatch_accuracy", "valid_accuracy", "learning_rate")
SERVING_SIGNATURE = "serving_default"
# Fields that may change between an interrupted run and its resumption (a checkpoint does not
# depend on the strategy: a run may continue on more or fewer devices).
RESUMABLE_CHANGES = ("name", "steps", "log_every", "checkpoint_every", "steps_per_call", "xla", "strategy")
# Environment variable describing the cluster for strategy "multiworker".
TF_CONFIG_ENV = "TF_CONFIG"
TF_CONFIG_EXAMPLE = ('{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}')
# Output folder of non-chief worker i, inside out_dir.
WORKER_DIR = "worker-{}"

SPLITS = ("train", "valid", "test")
SANITIZED_SPLITS = ("valid_sanitized", "test_sanitized")  # keys valid_dataset_sanitized, valid_labels_sanitized


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
      config: the run's hyperparameters.
      history: one dict per log step with keys ``step``, ``loss``,
        ``minibatch_accuracy``, ``valid_accuracy`` (percent), ``learning_rate`` and
        ``seconds`` (wall time since the start of training, across resumptions).
      valid_accuracy, test_accuracy: final accuracies in percent.
      valid_sanitized_accuracy, test_sanitized_accuracy: on the sanitized splits
        (overlap with training removed), None when the data has no such keys.
      steps: optimizer steps done.
      train_examples: size of the training set used (after ``train_subset``
        and ``train_on_valid``).
      seconds: wall time of the training loop incl. periodic validation (and
        tracing/compilation), summed over resumptions.
      device: where it ran, e.g. ``"/CPU:0"``, or with a tf.distribute strategy
        e.g. ``"mirrored: 2 replicas on CPU:0, CPU:1"``.
      model: the trained ``MLP`` (not serialized).
      replicas: number of replicas in sync (1 for ``strategy="default"``); not
        serialized separately, ``device`` names it.
    """

    config: TrainConfig
    history: list[dict[str, float]]
    valid_accuracy: float
    test_accuracy: float
    valid_sanitized_accuracy: float | None
    test_sanitized_accuracy: float | None
    steps: int
    seconds: float
    device: str
    train_examples: int | None = None
    model: Any = field(default=None, repr=False, compare=False)
    replicas: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (everything but the model)."""
        return {
            "config": self.config.to_dict(),
            "history": [dict(h) for h in self.history],
            "valid_accuracy": self.valid_accuracy,
            "test_accuracy": self.test_accuracy,
            "valid_sanitized_accuracy": self.valid_sanitized_accuracy,
            "test_sanitized_accuracy": self.test_sanitized_accuracy,
            "steps": self.steps,
            "train_examples": self.train_examples,
            "seconds": self.seconds,
            "device": self.device,
        }


@dataclass
class TrainState:
    """The mutable training state: model, optimizer and counters (all tf.Variables)."""

    model: MLP
    optimizer: Any
    schedule: Any  # a LearningRateSchedule or a float
    step: tf.Variable  # optimizer steps done = index of the next step
    first_bad_step: tf.Variable  # first step with a non-finite loss, -1 if none
    bad_loss: tf.Variable  # that loss
    epoch: tf.Variable  # epoch of the cached permutation (-1 = none yet)
    permutation: tf.Variable | None  # example order of that epoch (shuffle batching)
    strategy: Any = None  # the tf.distribute.Strategy the variables live in; None = default path


# --------------------------------------------------------------------------- setup


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


_STRATEGIES: dict[Any, Any] = {}  # one strategy per kind and devices per process


def create_strategy(config: TrainConfig, devices: Sequence[str] | None = None):
    """The tf.distribute strategy of ``config.strategy``, or None for ``"default"``.

    Strategies are created once per process and reused (a multi-worker one must
    be created before TensorFlow runs anything else).

    Args:
      config: the run's hyperparameters (``strategy``; ``xla`` is refused with a strategy).
      devices: ``"mirrored"`` only, the devices to mirror over; default all local
        GPUs, or all logical CPU devices when there is no GPU.

    Returns:
      None, a ``MirroredStrategy`` or a ``MultiWorkerMirroredStrategy``.

    Raises:
      ValueError: ``xla`` with a strategy, ``devices`` without "mirrored", or a
        missing/invalid ``TF_CONFIG`` for "multiworker".
    """
    if devices is not None and config.strategy != "mirrored":
        raise ValueError(f"devices are only for strategy 'mirrored', not {config.strategy!r}")
    if config.strategy == "default":
        return None
    if config.xla:
        raise ValueError(f"xla is not supported with strategy {config.strategy!r} (the all-reduce of the "
                         "gradients is outside what XLA compiles here); drop xla or use strategy 'default'")
    if config.strategy == "mirrored":
        if devices is None:
            devices = [d.name for d in tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")]
        key = ("mirrored", tuple(devices))
        if key not in _STRATEGIES:
            _STRATEGIES[key] = tf.distribute.MirroredStrategy(list(devices))
        return _STRATEGIES[key]
    if config.strategy == "multiworker":
        text = os.environ.get(TF_CONFIG_ENV)
        parse_tf_config(text)
        key = "multiworker"
        if key in _STRATEGIES and _STRATEGIES[key][0] != text:
            raise ValueError(f"{TF_CONFIG_ENV} changed after this process created its multi-worker strategy; "
                             "start a new process")
        if key not in _STRATEGIES:
            try:
                _STRATEGIES[key] = (text, tf.distribute.MultiWorkerMirroredStrategy())
            except RuntimeError as e:  # collective ops must be configured before the runtime starts
                raise ValueError(f"cannot start the multi-worker strategy in this process ({e}); "
                                 "train in a fresh process") from None
        return _STRATEGIES[key][1]
    raise ValueError(f"unknown strategy {config.strategy!r}")


def strategy_scope(strategy_or_config):
    """The scope in which variables are created: ``strategy.scope()``, or a no-op for the default path.

    Args:
      strategy_or_config: a ``tf.distribute.Strategy``, None, or a ``TrainConfig``
        (its strategy, see ``create_strategy``).

    Raises:
      ValueError: see ``create_strategy``.
    """
    strategy = strategy_or_config
    if isinstance(strategy_or_config, TrainConfig):
        strategy = create_strategy(strategy_or_config)
    return strategy.scope() if strategy is not None else contextlib.nullcontext()


def describe_strategy(strategy) -> tuple[str, int]:
    """``(device description, replicas)``, e.g. ``("mirrored: 2 replicas on CPU:0, CPU:1", 2)``."""
    if strategy is None:
        return default_device(), 1
    local = ", ".join(f"{tf.DeviceSpec.from_string(d).device_type}:{tf.DeviceSpec.from_string(d).device_index}"
                      for d in strategy.extended.worker_devices)
    n = strategy.num_replicas_in_sync
    replicas = f"{n} replica{'s' if n != 1 else ''}"
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        resolver = strategy.cluster_resolver
        return f"multiworker: {replicas}, this is {resolver.task_type} {resolver.task_id} on {local}", n
    return f"mirrored: {replicas} on {local}", n


def worker_out_dir(strategy, out_dir: str | None) -> str | None:
    """Where this process writes: ``out_dir`` for the chief (and single-process runs),
    ``out_dir/worker-<id>`` for the other workers of a cluster."""
    if out_dir is None or strategy is None or strategy.extended.should_checkpoint:
        return out_dir
    return os.path.join(out_dir, WORKER_DIR.format(strategy.cluster_resolver.task_id))


def data_keys(split: str) -> tuple[str, str]:
    """The pickle keys of ``split``: ``("test_dataset", "test_labels")``, ``("test_dataset_sanitized", ...)``."""
    base, _, suffix = split.partition("_")
    suffix = "_" + suffix if suffix else ""
    return f"{base}_dataset{suffix}", f"{base}_labels{suffix}"


def split_arrays(data: Mapping[str, np.ndarray], config: TrainConfig) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Checks ``data`` and returns ``{split: (images float32, labels int32)}``.

    The training split is cut to ``config.train_subset`` and, with
    ``config.train_on_valid``, the validation split is appended to it (it stays
    the validation split too); sanitized splits are included when both of their
    keys are present.

    Raises:
      ValueError: a missing key, wrong shapes, empty split, labels outside 0..9,
        or a batch size larger than the training set.
    """
    out = {}
    for split in SPLITS + SANITIZED_SPLITS:
        keys = data_keys(split)
        if split in SANITIZED_SPLITS and not all(k in data for k in keys):
            continue
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"data has no {', '.join(missing)}")
        images = np.asarray(data[keys[0]], dtype=np.float32)
        labels = np.asarray(data[keys[1]])
        if images.ndim == 2 and images.shape[1] == IMAGE_SIZE * IMAGE_SIZE:
            images = images.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"{keys[0]} must have shape (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.shape}")
        if labels.shape != (images.shape[0],):
            raise ValueError(f"{keys[1]} must have shape ({images.shape[0]},), got {labels.shape}")
        if images.shape[0] == 0:
            raise ValueError(f"{keys[0]} is empty")
        if not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= NUM_CLASSES:
            raise ValueError(f"{keys[1]} must be integers in 0..{NUM_CLASSES - 1}")
        out[split] = (images, labels.astype(np.int32))
    if config.train_subset is not None:
        images, labels = out["train"]
        out["train"] = (images[:config.train_subset], labels[:config.train_subset])
    if config.train_on_valid:
        out["train"] = tuple(np.concatenate([a, b]) for a, b in zip(out["train"], out["valid"]))
    n = out["train"][0].shape[0]
    if config.batch_size is not None and config.batch_size > n:
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set ({n} examples)")
    return out


def create_model(config: TrainConfig) -> MLP:
    """The network of ``config`` (float16 compute with ``mixed_precision``)."""
    return MLP(hidden_sizes=config.hidden_sizes, num_classes=NUM_CLASSES, input_size=IMAGE_SIZE * IMAGE_SIZE,
               dropout_rate=config.dropout_rate, init=config.init, init_stddev=config.init_stddev,
               seed=config.seed, compute_dtype=tf.float16 if config.mixed_precision else tf.float32,
               deskew=config.deskew)


def learning_rate_schedule(config: TrainConfig):
    """``lr * decay_rate ** (step / decay_steps)`` (ExponentialDecay), or the constant rate."""
    if config.decay_steps > 0:
        return tf.keras.optimizers.schedules.ExponentialDecay(
            config.learning_rate, config.decay_steps, config.decay_rate, staircase=config.staircase)
    return float(config.learning_rate)  # (Keras refuses an int)


def learning_rate_at(schedule, step: int) -> float:
    """The learning rate ``schedule`` gives at ``step``."""
    if isinstance(schedule, tf.keras.optimizers.schedules.LearningRateSchedule):
        return float(schedule(step))
    return float(schedule)


def create_optimizer(config: TrainConfig, schedule):
    """SGD (the course's), SGD with momentum or Adam; loss-scaled with ``mixed_precision``.

    With ``mixed_precision`` the optimizer is a ``LossScaleOptimizer`` (dynamic
    loss scaling): a step whose float16 gradients overflow is skipped and the
    scale halved. The schedule follows the inner optimizer's iteration count, so
    it lags behind ``step`` by the number of skipped steps (a handful at the start).
    """
    if config.optimizer == "sgd":
        optimizer = tf.keras.optimizers.SGD(schedule)
    elif config.optimizer == "momentum":
        optimizer = tf.keras.optimizers.SGD(schedule, momentum=config.momentum)
    elif config.optimizer == "adam":
        optimizer = tf.keras.optimizers.Adam(schedule)
    else:
        raise ValueError(f"unknown optimizer {config.optimizer!r}")
    if config.mixed_precision:
        optimizer = tf.keras.mixed_precision.LossScaleOptimizer(optimizer)
    return optimizer


def create_train_state(config: TrainConfig, num_train: int, strategy=None) -> TrainState:
    """Model, optimizer (built, so a checkpoint can restore into it) and counters.

    Args:
      config: hyperparameters.
      num_train: training examples (size of the shuffling permutation).
      strategy: a tf.distribute strategy (``create_strategy``) to create every
        variable in (mirrored on its replicas), or None for the default path.
    """
    with strategy_scope(strategy):
        model = create_model(config)
        schedule = learning_rate_schedule(config)
        optimizer = create_optimizer(config, schedule)
        optimizer.build(model.trainable_variables)
        shuffled = config.batching == "shuffle" and config.batch_size is not None
        return TrainState(
            model=model, optimizer=optimizer, schedule=schedule,
            step=tf.Variable(0, dtype=tf.int64, trainable=False, name="step"),
            first_bad_step=tf.Variable(-1, dtype=tf.int64, trainable=False, name="first_bad_step"),
            bad_loss=tf.Variable(0.0, dtype=tf.float32, trainable=False, name="bad_loss"),
            epoch=tf.Variable(-1, dtype=tf.int64, trainable=False, name="epoch"),
            permutation=tf.Variable(tf.range(num_train, dtype=tf.int64), trainable=False, name="permutation")
            if shuffled else None,
            strategy=strategy)


# --------------------------------------------------------------------------- in-graph pieces


def stream_seed(seed: int, counter, stream: int) -> tf.Tensor:
    """The stateless seed ``(seed, NUM_STREAMS * counter + stream)`` as an int64 [2] tensor."""
    counter = tf.cast(counter, tf.int64)
    return tf.stack([tf.constant(seed, tf.int64), counter * NUM_STREAMS + stream])


def epoch_permutation(n: int, seed: int, epoch) -> tf.Tensor:
    """A permutation of ``range(n)`` that depends only on ``(seed, epoch)`` (XLA-compatible)."""
    keys = tf.random.stateless_uniform([n], stream_seed(seed, epoch, SHUFFLE_STREAM), dtype=tf.float64,
                                      alg=RNG_ALG)
    return tf.cast(tf.argsort(keys, stable=True), tf.int64)


def make_batch_fn(config: TrainConfig, state: TrainState, images: tf.Tensor,
                  labels: tf.Tensor) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Returns ``batch(step) -> (images, labels)``, traced inside the train step.

    ``batch_size=None``: the whole set every step. ``"offset"``: the course's
    ``images[offset:offset + b]`` with ``offset = (step * b) % (n - b)``.
    ``"shuffle"``: batch ``step % (n // b)`` of the permutation of epoch
    ``step // (n // b)``, recomputed in-graph when the epoch changes.
    """
    n = int(images.shape[0])
    if config.batch_size is None:
        return lambda step: (images, labels)
    b = config.batch_size
    if config.batching == "offset":
        span = max(n - b, 1)  # n == b: offset always 0

        def offset_batch(step):
            offset = (step * b) % span
            idx = tf.cast(offset, tf.int32) + tf.range(b)  # a gather: XLA would recompile a dynamic slice
            return tf.gather(images, idx), tf.gather(labels, idx)

        return offset_batch

    per_epoch = n // b

    def shuffled_batch(step):
        epoch = step // per_epoch

        def new_epoch():
            perm = epoch_permutation(n, config.seed, epoch)
            state.permutation.assign(perm)
            state.epoch.assign(epoch)
            return perm

        # Recomputed only when the epoch changes (and after a restart); the value flows
        # out of the cond so no backend can read the variable before the update.
        perm = tf.cond(tf.not_equal(epoch, state.epoch), new_epoch, state.permutation.read_value)
        start = (step % per_epoch) * b
        idx = tf.gather(perm, start + tf.range(b, dtype=tf.int64))
        return tf.gather(images, idx), tf.gather(labels, idx)

    return shuffled_batch


def jitter(config: TrainConfig, images: tf.Tensor, step: tf.Tensor) -> tf.Tensor:
    """The training jitter of ``step``: ``augment.random_distort`` then ``augment.random_shift``, as configured."""
    seed = stream_seed(config.seed, step, JITTER_STREAM)
    if config.distorts:
        images = augment.random_distort(images, tf.random.experimental.stateless_fold_in(seed, DISTORT_SUBSTREAM),
                                        max_rotation=config.max_rotation, max_scale=config.max_scale,
                                        max_shear=config.max_shear)
    if config.max_shift > 0:
        images = augment.random_shift(images, config.max_shift, seed)
    return images


def train_step(config: TrainConfig, state: TrainState, batch_fn) -> tuple[tf.Tensor, tf.Tensor]:
    """One optimizer step on the minibatch of ``state.step`` (call inside a tf.function).

    Returns:
      The step's loss (cross-entropy + L2) and minibatch accuracy in percent,
      both computed before the update.
    """
    model, optimizer = state.model, state.optimizer
    step = state.step.read_value()
    x, y = batch_fn(step)
    x = jitter(config, x, step)
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        logits = model(x, training=True, seed=stream_seed(config.seed, step, DROPOUT_STREAM))
        loss = softmax_cross_entropy(logits, y)
        if config.l2_beta > 0:
            loss = loss + l2_penalty(model, config.l2_beta)
        scaled = optimizer.scale_loss(loss) if config.mixed_precision else loss
    grads = tape.gradient(scaled, variables)
    optimizer.apply_gradients(zip(grads, variables))
    hits = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y)
    acc = 100.0 * tf.reduce_mean(tf.cast(hits, tf.float32))
    first = tf.logical_and(state.first_bad_step < 0, tf.logical_not(tf.math.is_finite(loss)))
    state.first_bad_step.assign(tf.where(first, step, state.first_bad_step))
    state.bad_loss.assign(tf.where(first, loss, state.bad_loss))
    state.step.assign_add(1)
    return loss, acc


def replica_slice(batch_size: int, replica: int, replicas: int) -> tuple[int, int]:
    """``(start, stop)`` of ``replica``'s contiguous share of a global batch (sizes differ by at most 1)."""
    return replica * batch_size // replicas, (replica + 1) * batch_size // replicas


def _agree_on_finite(grads: list[tf.Tensor]) -> list[tf.Tensor]:
    """Makes every replica's gradients non-finite when any replica's are (call in replica context).

    The loss-scale optimizer decides per replica whether to skip a step; with
    this, all replicas skip the same steps (an overflow on one replica must not
    let the others apply the summed, infinite, gradient).
    """
    finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads])
    overflows = tf.distribute.get_replica_context().all_reduce(  # replicas with non-finite gradients
        tf.distribute.ReduceOp.SUM, 1.0 - tf.cast(finite, tf.float32))
    poison = tf.where(overflows > 0, float("nan"), 0.0)
    return [g + tf.cast(poison, g.dtype) for g in grads]


def distributed_train_step(config: TrainConfig, state: TrainState, batch_fn) -> tuple[tf.Tensor, tf.Tensor]:
    """``train_step`` on ``state.strategy``'s replicas (call inside a tf.function).

    The global batch is gathered (and jittered) exactly as in ``train_step``,
    then split into one slice per replica; see the module docstring.

    Returns:
      The global batch's loss (cross-entropy + L2) and accuracy in percent, both
      before the update, summed over the replicas.
    """
    strategy, model, optimizer = state.strategy, state.model, state.optimizer
    replicas = strategy.num_replicas_in_sync
    step = state.step.read_value()
    x, y = batch_fn(step)
    x = jitter(config, x, step)
    batch = int(x.shape[0])

    def split(ctx):
        start, stop = replica_slice(batch, ctx.replica_id_in_sync_group, ctx.num_replicas_in_sync)
        return x[start:stop], y[start:stop]

    xs, ys = strategy.experimental_distribute_values_from_function(split)

    def replica_step(x, y):
        seed = stream_seed(config.seed, step, DROPOUT_STREAM)
        if replicas > 1:
            seed = tf.random.experimental.stateless_fold_in(
                seed, tf.distribute.get_replica_context().replica_id_in_sync_group)
        variables = model.trainable_variables
        with tf.GradientTape() as tape:
            logits = model(x, training=True, seed=seed)
            losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits)
            loss = tf.nn.compute_average_loss(losses, global_batch_size=batch)
            if config.l2_beta > 0:
                loss = loss + tf.nn.scale_regularization_loss(l2_penalty(model, config.l2_beta))
            scaled = optimizer.scale_loss(loss) if config.mixed_precision else loss
        grads = tape.gradient(scaled, variables)
        if config.mixed_precision:
            grads = _agree_on_finite(grads)
        optimizer.apply_gradients(zip(grads, variables))  # sums the replicas' gradients
        hits = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), y), tf.float32))
        return loss, hits

    losses, hits = strategy.run(replica_step, args=(xs, ys))
    loss = strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
    acc = 100.0 * strategy.reduce(tf.distribute.ReduceOp.SUM, hits, axis=None) / batch
    first = tf.logical_and(state.first_bad_step < 0, tf.logical_not(tf.math.is_finite(loss)))
    state.first_bad_step.assign(tf.where(first, step, state.first_bad_step))
    state.bad_loss.assign(tf.where(first, loss, state.bad_loss))
    state.step.assign_add(1)
    return loss, acc


def make_train_fn(config: TrainConfig, state: TrainState, batch_fn) -> Callable[[tf.Tensor], tuple]:
    """Compiles ``train(count) -> (loss, accuracy)`` of the last of ``count`` steps.

    ``state.strategy`` None: ``train_step`` on one device; otherwise
    ``distributed_train_step`` on the strategy's replicas.

    Raises:
      ValueError: ``config.xla`` with a strategy.
    """
    step_fn = train_step
    if state.strategy is not None:
        if config.xla:
            raise ValueError("xla is not supported with a tf.distribute strategy; drop xla")
        step_fn = distributed_train_step

    if config.steps_per_call == 1:
        @tf.function(jit_compile=config.xla)
        def train_one(count):
            del count  # always 1
            return step_fn(config, state, batch_fn)
        return train_one

    @tf.function(jit_compile=config.xla)
    def train_many(count):
        loss, acc = tf.constant(0.0), tf.constant(0.0)
        for _ in tf.range(count):
            loss, acc = step_fn(config, state, batch_fn)
        return loss, acc

    return train_many


def make_eval_fn(model: MLP) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Compiles ``correct(images, labels) -> number of right predictions`` (batches of EVAL_BATCH)."""

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def eval_step(images, labels):
        n = tf.shape(images)[0]
        total = tf.constant(0, tf.int64)
        for start in tf.range(0, n, EVAL_BATCH):
            logits = model(images[start:start + EVAL_BATCH])
            pred = tf.argmax(logits, axis=1, output_type=tf.int32)
            total += tf.reduce_sum(tf.cast(tf.equal(pred, labels[start:start + EVAL_BATCH]), tf.int64))
        return total

    return eval_step


def evaluate(eval_fn, images: tf.Tensor, labels: tf.Tensor) -> float:
    """Accuracy in percent, ``100 * correct / n``."""
    return 100.0 * float(eval_fn(images, labels)) / int(images.shape[0])


# --------------------------------------------------------------------------- the loop


def chunk_plan(start: int, config: TrainConfig) -> list[tuple[int, int, bool, bool]]:
    """Splits steps ``start .. config.steps - 1`` into compiled calls.

    Returns:
      ``(last_step, count, log, checkpoint)`` per call: a call ends at a log step
      (0, multiples of ``log_every``, the final step), after a step that
      completes a multiple of ``checkpoint_every`` steps, or after
      ``steps_per_call`` steps.
    """
    plan = []
    s = start
    last = config.steps - 1
    while s <= last:
        end = min(last, s + config.steps_per_call - 1)
        nxt_log = s if s % config.log_every == 0 else (s // config.log_every + 1) * config.log_every
        end = min(end, nxt_log)
        if config.checkpoint_every:
            end = min(end, (s // config.checkpoint_every + 1) * config.checkpoint_every - 1)
        log = end % config.log_every == 0 or end == last
        ckpt = bool(config.checkpoint_every) and (end + 1) % config.checkpoint_every == 0
        plan.append((end, end - s + 1, log, ckpt))
        s = end + 1
    return plan


def _all_finite(model: MLP) -> bool:
    return all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in model.trainable_variables)


def _checkpoint_number(path: str) -> int:
    return int(path.rsplit("-", 1)[1])


def _drop_checkpoints_from(manager, step: int) -> str | None:
    """Deletes the checkpoints of ``step`` steps or more and returns the latest one left (or None).

    Checkpoint N holds the weights after N steps, the ones step N's loss is
    computed with; when that loss is not finite, checkpoint N is no good.
    """
    keep = [p for p in manager.checkpoints if _checkpoint_number(p) < step]
    drop = [p for p in manager.checkpoints if _checkpoint_number(p) >= step]
    if not drop:
        return manager.latest_checkpoint
    for prefix in drop:
        for path in tf.io.gfile.glob(prefix + ".*"):
            tf.io.gfile.remove(path)
    state_file = os.path.join(manager.directory, CHECKPOINT_STATE_FILE)
    if not keep:
        os.remove(state_file)
        return None
    # Rewrite the index (a CheckpointState text proto) as CheckpointManager does: names relative
    # to the folder, with their timestamps so that a later manager still rotates them.
    index = tf.train.get_checkpoint_state(manager.directory)
    stamps = dict(zip(map(os.path.basename, index.all_model_checkpoint_paths), index.all_model_checkpoint_timestamps))
    names = [os.path.basename(p) for p in keep]
    del index.all_model_checkpoint_paths[:], index.all_model_checkpoint_timestamps[:]
    index.model_checkpoint_path = names[-1]
    index.all_model_checkpoint_paths.extend(names)
    if all(n in stamps for n in names):
        index.all_model_checkpoint_timestamps.extend(stamps[n] for n in names)
    io.write_text(state_file, text_format.MessageToString(index))
    return keep[-1]


def _check_finite(state: TrainState, config: TrainConfig, manager) -> None:
    """Raises TrainingDiverged if a step had a non-finite loss or the weights are not finite.

    Checkpoints whose weights gave the non-finite loss are deleted first, so
    every checkpoint left (and the one the message names) is a good one.
    """
    bad = int(state.first_bad_step.numpy())
    if bad < 0 and _all_finite(state.model):
        return
    last_good = None
    if manager is not None:
        last_good = _drop_checkpoints_from(manager, bad) if bad >= 0 else manager.latest_checkpoint
    what = (f"loss became {float(state.bad_loss.numpy())} at step {bad}" if bad >= 0
            else f"weights became non-finite by step {int(state.step.numpy()) - 1}")
    rate = learning_rate_at(state.schedule, max(bad, 0))
    raise TrainingDiverged(
        f"{what}; lower the learning rate (now {rate:g}, config learning_rate={config.learning_rate:g}) "
        f"or init_stddev, or check the data for NaN/inf; last good checkpoint: {last_good or 'none'}")


def _comparable(config_dict: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in config_dict.items() if k not in RESUMABLE_CHANGES}


def _restore(config: TrainConfig, checkpoint, manager, ckpt_dir: str, log) -> tuple[int, list, dict]:
    """Restores the latest checkpoint.

    Returns:
      (step, history entries before that step, {step: seconds} of the checkpoints so far).

    Raises:
      ValueError: the checkpoint was written with a different config.
    """
    latest = manager.latest_checkpoint
    if latest is None:
        log(f"No checkpoint in {ckpt_dir}; starting from step 0")
        return 0, [], {}
    saved = {}
    history_path = os.path.join(ckpt_dir, HISTORY_FILE)
    if os.path.exists(history_path):
        with open(history_path, encoding="utf-8") as f:
            saved = json.load(f)
    if "config" in saved:
        old, new = _comparable(saved["config"]), _comparable(config.to_dict())
        diff = [k for k in new if old.get(k) != new[k]]
        if diff:
            raise ValueError(f"checkpoint in {ckpt_dir} was written with a different config "
                             f"({', '.join(f'{k}: {old.get(k)!r} != {new[k]!r}' for k in diff)}); "
                             "use another out dir or train without resume")
    checkpoint.restore(latest).assert_existing_objects_matched()
    step = int(checkpoint.step.numpy())
    # Entries logged before the checkpoint; a finished run's off-schedule final entry (step - 1)
    # is dropped when this run goes further, so the history matches an uninterrupted run's.
    history = [h for h in saved.get("history", []) if h["step"] < step and not (
        h["step"] == step - 1 and step < config.steps and h["step"] % config.log_every)]
    seconds_at = {k: v for k, v in saved.get("seconds", {}).items() if int(k) <= step}
    log(f"Resumed from {latest} at step {step}")
    return step, history, seconds_at


def _save_checkpoint(config: TrainConfig, state: TrainState, manager, ckpt_dir: str, history: list,
                     seconds_at: dict) -> str:
    """Writes the history (first, so it is never behind the checkpoint) and the checkpoint."""
    io.write_json(os.path.join(ckpt_dir, HISTORY_FILE),
                  {"config": config.to_dict(), "history": history, "seconds": seconds_at})
    return manager.save(checkpoint_number=int(state.step.numpy()))


def train_and_evaluate(config: TrainConfig, data: Mapping[str, np.ndarray], out_dir: str | None = None,
                       resume: bool = False, log: Callable[[str], Any] = print,
                       progress: bool = True) -> TrainResult:
    """Trains ``config`` on ``data`` and evaluates it on the validation and test sets.

    Args:
      config: hyperparameters.
      data: the course's keys (``train_dataset`` float32 (n, 28, 28), ``train_labels``
        int (n,), same for ``valid`` and ``test``), optionally the sanitized keys.
      out_dir: where checkpoints, the SavedModel, metrics.json and TensorBoard
        scalars go (None: nothing is written, no checkpoints).
      resume: continue from the latest checkpoint in ``out_dir`` up to ``config.steps``.
      log: called with each log line.
      progress: show a ``tf.keras.utils.Progbar``.

    Returns:
      The ``TrainResult``; also written to ``out_dir/metrics.json``.

    Raises:
      ValueError: bad data, a checkpoint of another config, xla with a strategy,
        or a missing/invalid TF_CONFIG for strategy "multiworker".
      TrainingDiverged: the loss became NaN/inf (no checkpoint is written from then on).
    """
    arrays = split_arrays(data, config)
    if resume and not out_dir:
        raise ValueError("resume needs an out_dir")
    strategy = create_strategy(config)  # first: a multi-worker strategy must precede every TF op
    description, replicas = describe_strategy(strategy)
    device = default_device()
    if worker_out_dir(strategy, out_dir) != out_dir:
        out_dir = worker_out_dir(strategy, out_dir)
        log(f"Not the chief: this worker writes its checkpoints and outputs to {out_dir}")
    ckpt_dir = os.path.join(out_dir, CHECKPOINT_DIR) if out_dir else None
    if ckpt_dir and not resume and os.path.isdir(ckpt_dir):
        shutil.rmtree(ckpt_dir)  # a fresh run must never resume into an old one's checkpoints
    n_train = arrays["train"][0].shape[0]
    log(f"Training on {description}: {config.name}, {n_train} training examples, {config.steps} steps")
    if config.train_on_valid:
        log("train_on_valid: the validation images are part of the training set, so the validation "
            "accuracy below is not a held-out measure")
    with tf.device(device), strategy_scope(strategy):
        tensors = {k: (tf.identity(tf.convert_to_tensor(x)), tf.identity(tf.convert_to_tensor(y)))
                   for k, (x, y) in arrays.items()}
        state = create_train_state(config, n_train, strategy)
        train_fn = make_train_fn(config, state, make_batch_fn(config, state, *tensors["train"]))
        eval_fn = make_eval_fn(state.model)

        checkpoint = manager = None
        start, history, seconds_at = 0, [], {}
        if ckpt_dir and (config.checkpoint_every or resume):
            checkpoint = tf.train.Checkpoint(model=state.model, optimizer=state.optimizer, step=state.step)
            manager = tf.train.CheckpointManager(checkpoint, ckpt_dir, max_to_keep=CHECKPOINT_MAX_TO_KEEP)
            if resume:
                start, history, seconds_at = _restore(config, checkpoint, manager, ckpt_dir, log)
        writer = tf.summary.create_file_writer(os.path.join(out_dir, TENSORBOARD_DIR)) if out_dir else None

        bar = (tf.keras.utils.Progbar(config.steps, stateful_metrics=("loss", "valid_accuracy"), unit_name="step")
               if progress else None)
        if bar is not None and start:
            bar.update(start)
        counts: dict[int, tf.Tensor] = {}
        t0 = time.perf_counter() - seconds_at.get(str(start), 0.0)
        last_bar = start
        check_every_chunk = config.steps_per_call > 1
        try:
            for end, count, is_log, is_ckpt in chunk_plan(start, config):
                if count not in counts:
                    counts[count] = tf.constant(count, tf.int64)
                loss, acc = train_fn(counts[count])
                if is_log or is_ckpt or check_every_chunk:
                    _check_finite(state, config, manager)
                if is_log:
                    entry = {"step": end, "loss": float(loss), "minibatch_accuracy": float(acc),
                             "valid_accuracy": evaluate(eval_fn, *tensors["valid"]),
                             "learning_rate": learning_rate_at(state.schedule, end),
                             "seconds": time.perf_counter() - t0}
                    history.append(entry)
                    if bar is not None:  # the bar's line stays on screen above the log lines
                        bar.update(end + 1, values=[("loss", entry["loss"]),
                                                    ("valid_accuracy", entry["valid_accuracy"])])
                        last_bar = end + 1
                        if end + 1 < config.steps:  # (the final update ends its line itself)
                            sys.stdout.write("\n")
                    _log_entry(entry, log, writer)
                elif bar is not None and end + 1 - last_bar >= PROGRESS_EVERY:
                    bar.update(end + 1)
                    last_bar = end + 1
                if is_ckpt and manager is not None:
                    seconds_at[str(end + 1)] = time.perf_counter() - t0
                    _save_checkpoint(config, state, manager, ckpt_dir, history, seconds_at)
            _check_finite(state, config, manager)
            seconds = time.perf_counter() - t0
            if manager is not None and config.checkpoint_every and start < config.steps \
                    and config.steps % config.checkpoint_every:
                seconds_at[str(config.steps)] = seconds
                _save_checkpoint(config, state, manager, ckpt_dir, history, seconds_at)
        finally:
            if writer is not None:
                writer.close()

        acc = {k: evaluate(eval_fn, *tensors[k]) for k in tensors if k != "train"}
    result = TrainResult(
        config=config, history=history, valid_accuracy=acc["valid"], test_accuracy=acc["test"],
        valid_sanitized_accuracy=acc.get("valid_sanitized"), test_sanitized_accuracy=acc.get("test_sanitized"),
        steps=int(state.step.numpy()), seconds=seconds, device=description, train_examples=int(n_train),
        model=state.model, replicas=replicas)
    _log_final(result, log)
    if out_dir:
        save_model(state.model, os.path.join(out_dir, SAVED_MODEL_DIR))
        io.write_json(os.path.join(out_dir, METRICS_FILE), result.to_dict())
    return result


def _log_final(result: TrainResult, log) -> None:
    log(f"Validation accuracy: {result.valid_accuracy:.1f}%")
    log(f"Test accuracy: {result.test_accuracy:.1f}%")
    if result.valid_sanitized_accuracy is not None:
        log(f"Sanitized validation accuracy: {result.valid_sanitized_accuracy:.1f}%")
    if result.test_sanitized_accuracy is not None:
        log(f"Sanitized test accuracy: {result.test_sanitized_accuracy:.1f}%")


def _log_entry(entry: Mapping[str, float], log, writer) -> None:
    """Logs one history entry in the course's words and to TensorBoard."""
    log(f"Minibatch loss at step {entry['step']}: {entry['loss']:f}")
    log(f"Minibatch accuracy: {entry['minibatch_accuracy']:.1f}%")
    log(f"Validation accuracy: {entry['valid_accuracy']:.1f}%")
    if writer is not None:
        with writer.as_default(step=entry["step"]):
            for tag in TENSORBOARD_SCALARS:
                write_scalar(tag, entry[tag])
        writer.flush()


def write_scalar(tag: str, value: float) -> None:
    """``tf.summary.scalar`` without needing the tensorboard package (same event record)."""
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    tf.summary.write(tag, tf.constant(value, tf.float32), metadata=metadata)


# --------------------------------------------------------------------------- export / inference


class _Serving(tf.Module):
    """What the SavedModel holds: the model and its serving function."""

    def __init__(self, model: MLP):
        super().__init__(name="serving")
        self.model = model

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.float32, name="images")])
    def serve(self, images):
        logits = self.model(images)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


def save_model(model: MLP, path: str) -> None:
    """Saves ``model`` as a SavedModel at ``path`` (replacing it atomically).

    The ``serving_default`` signature takes ``images`` float32 (None, 28, 28)
    and returns ``{"logits", "probabilities"}`` (float32, (None, 10)).
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", dir=parent)
    old = None
    try:
        serving = _Serving(model)
        tf.saved_model.save(serving, tmp, signatures={SERVING_SIGNATURE: serving.serve})
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".old.", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if old:
        shutil.rmtree(old, ignore_errors=True)


def resolve_saved_model(path: str | os.PathLike) -> str:
    """The SavedModel folder of a run folder (``<run>/saved_model``) or the folder itself.

    Raises:
      FileNotFoundError: no saved_model.pb there.
    """
    path = os.fspath(path)
    for candidate in (os.path.join(path, SAVED_MODEL_DIR), path):
        if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise FileNotFoundError(f"no SavedModel in {path} (expected {path}/{SAVED_MODEL_DIR}/saved_model.pb)")


def predict(model_or_saved_model_dir, images: np.ndarray, batch_size: int = EVAL_BATCH) -> np.ndarray:
    """Class probabilities ``(n, 10)`` for ``images`` (n, 28, 28).

    Args:
      model_or_saved_model_dir: an ``MLP``, a loaded SavedModel, or a path to a
        SavedModel / run folder (loaded with ``tf.saved_model.load`` only).
      images: float32 normalized images.
      batch_size: examples per forward pass.

    Returns:
      float32 probabilities, one row per image.

    Raises:
      ValueError: bad image shape or batch size. FileNotFoundError: no SavedModel.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"images must have shape (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.shape}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if isinstance(model_or_saved_model_dir, MLP):
        model = model_or_saved_model_dir

        def fn(x):
            return tf.nn.softmax(model(x))
    else:
        loaded = model_or_saved_model_dir
        if isinstance(loaded, (str, os.PathLike)):
            loaded = tf.saved_model.load(resolve_saved_model(loaded))
        signature = loaded.signatures[SERVING_SIGNATURE]

        def fn(x):
            return signature(images=x)["probabilities"]
    out = [fn(tf.constant(images[i:i + batch_size])).numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)
