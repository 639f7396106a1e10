"""The training loop: ``train_and_evaluate(config, data)`` -> ``TrainResult``.

The shape of Flax's MNIST example around ``model.train_step`` and ``model.eval_step``.
The training set lives on the device as tensors; one compiled call (``tf.function``,
XLA with ``settings.xla``) runs ``settings.steps_per_call`` steps, each gathering its
minibatch in-graph (``inputs``) and running ``model.train_step`` where the strategy says
(``distribute.run_step``), so Python only calls the compiled function, logs and
checkpoints between calls.

Conventions (the course's): the loss and minibatch accuracy logged at step N are
those of step N's minibatch before its update; the validation accuracy logged at
step N is measured after it; the learning rate logged at step N is the one that
update used.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np
import tensorflow as tf

from dnn_tf import model as model_lib
from dnn_tf.data import dataset
from dnn_tf.model import MLP
from dnn_tf.notmnist import IMAGE_PIXELS, IMAGE_SIZE, NUM_CLASSES
from dnn_tf.progress import bar as progress_bar
from dnn_tf.training import distribute, inference, inputs, speed
from dnn_tf.training.checkpoints import Checkpoints
from dnn_tf.training.config import RunSettings, TrainConfig
from dnn_tf.training.interrupt import TrainingInterrupted, deferred_sigint
from dnn_tf.training.optimizers import Optimizer, create_optimizer, learning_rate_at, learning_rate_schedule
from dnn_tf.training.run_dir import RunDir

EVAL_BATCH = 10000  # examples per forward pass when evaluating
TENSORBOARD_SCALARS = ("loss", "minibatch_accuracy", "valid_accuracy", "learning_rate")

logger = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass
class TrainResult:
    """What a training run produced (``to_dict()`` is ``metrics.json``).

    ``history`` holds one dict per log step: ``step``, ``loss``, ``minibatch_accuracy``,
    ``valid_accuracy`` (percent), ``learning_rate`` and ``seconds`` (wall time since the
    start, across resumptions). Accuracies are percentages; the sanitized ones are None
    when the data has no sanitized splits. ``seconds`` is the training loop's wall time
    incl. periodic validation and tracing, summed over resumptions; ``device`` says where
    it ran, e.g. ``"/CPU:0"`` or ``"mirrored: 2 replicas on CPU:0, CPU:1"``.
    """

    name: str
    config: TrainConfig
    history: list[dict[str, float]]
    valid_accuracy: float
    test_accuracy: float
    valid_sanitized_accuracy: float | None
    test_sanitized_accuracy: float | None
    steps: int
    seconds: float
    device: str
    train_examples: int
    model: Any = field(default=None, repr=False, compare=False)
    replicas: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (everything but the model)."""
        keys = ("name", "history", "valid_accuracy", "test_accuracy", "valid_sanitized_accuracy",
                "test_sanitized_accuracy", "steps", "train_examples", "seconds", "device")
        return {"config": self.config.to_dict(), **{k: getattr(self, k) for k in keys}}


@dataclass
class TrainState:
    """The mutable training state: model, optimizer and counters (all tf.Variables)."""

    model: MLP
    optimizer: Optimizer
    step: tf.Variable  # optimizer steps done = index of the next step
    first_bad_step: tf.Variable  # first step with a non-finite loss, -1 if none
    bad_loss: tf.Variable  # that loss
    epoch: tf.Variable  # epoch of the cached permutation (-1 = none yet)
    permutation: tf.Variable | None  # example order of that epoch (shuffle batching)


# --------------------------------------------------------------------------- setup


def training_arrays(config: TrainConfig, data: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images, labels)}`` of a dataset, the training split as ``config`` asks.

    The training split is cut to ``config.train_subset`` and, with ``train_on_valid``,
    the validation split is appended to it (it stays the validation split too).

    Raises:
      DataError: not a valid dataset (``dataset.validate``).
      ValueError: a batch size larger than the training set.
    """
    arrays = dataset.split_arrays(data)
    if config.train_subset is not None:
        images, labels = arrays["train"]
        arrays["train"] = (images[:config.train_subset], labels[:config.train_subset])
    if config.train_on_valid:
        arrays["train"] = tuple(np.concatenate([a, b]) for a, b in zip(arrays["train"], arrays["valid"]))
    n = len(arrays["train"][1])
    if config.batch_size is not None and config.batch_size > n:
        raise ValueError(f"batch_size {config.batch_size} is larger than the training set ({n} examples)")
    return arrays


def create_model(config: TrainConfig) -> MLP:
    """The network of ``config``, its matmuls with the cheaper input gradient (``speed``)."""
    return MLP(config.hidden_sizes, num_classes=NUM_CLASSES, input_size=IMAGE_PIXELS,
               dropout_rate=config.dropout_rate, init=config.init, init_stddev=config.init_stddev,
               seed=config.seed, deskew=config.deskew, matmul=speed.matmul_cheap_input_gradient)


def create_train_state(config: TrainConfig, num_train: int) -> TrainState:
    """Model, optimizer (built, so a checkpoint can restore into it) and counters.

    Call inside the strategy's scope to create the variables on its replicas.
    """
    model = create_model(config)
    optimizer = create_optimizer(config, learning_rate_schedule(config))
    optimizer.build(model.trainable_variables)
    shuffled = config.batching == "shuffle" and config.batch_size is not None

    def counter(value, name, dtype=tf.int64):
        return tf.Variable(value, dtype=dtype, trainable=False, name=name)

    return TrainState(
        model=model, optimizer=optimizer, step=counter(0, "step"),
        first_bad_step=counter(-1, "first_bad_step"), bad_loss=counter(0.0, "bad_loss", tf.float32),
        epoch=counter(-1, "epoch"),
        permutation=counter(tf.range(num_train, dtype=tf.int64), "permutation") if shuffled else None)


# --------------------------------------------------------------------------- the compiled calls


def make_train_fn(config: TrainConfig, settings: RunSettings, state: TrainState, strategy,
                  batch_fn: Callable) -> Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor]]:
    """Compiles ``train(count) -> (loss, accuracy %)``: ``count`` steps, the numbers of the last one."""

    step_fn = functools.partial(model_lib.train_step, state.model, state.optimizer, l2_beta=config.l2_beta)

    def one_step():
        step = state.step.read_value()
        images, labels = batch_fn(step)
        images = inputs.jitter(config, images, step)
        seed = inputs.stream_seed(config.seed, step, inputs.DROPOUT_STREAM)
        loss, correct = distribute.run_step(strategy, step_fn, images, labels, seed)
        first = tf.logical_and(state.first_bad_step < 0, tf.logical_not(tf.math.is_finite(loss)))
        state.first_bad_step.assign(tf.where(first, step, state.first_bad_step))
        state.bad_loss.assign(tf.where(first, loss, state.bad_loss))
        state.step.assign_add(1)
        return loss, 100.0 * correct / int(images.shape[0])

    @tf.function(jit_compile=settings.xla)
    def train(count):
        if settings.steps_per_call == 1:
            return one_step()
        loss, acc = tf.constant(0.0), tf.constant(0.0)
        for _ in tf.range(count):
            loss, acc = one_step()
        return loss, acc

    return train


def make_eval_step(model: MLP) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    """Compiles ``evaluate(images, labels) -> number right``: ``model.eval_step`` in batches of EVAL_BATCH."""

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.float32),
                                  tf.TensorSpec([None], tf.int32)])
    def evaluate(images, labels):
        total = tf.constant(0, tf.int64)
        for start in tf.range(0, tf.shape(images)[0], EVAL_BATCH):
            batch = slice(start, start + EVAL_BATCH)
            total += tf.cast(model_lib.eval_step(model, images[batch], labels[batch]), tf.int64)
        return total

    return evaluate


def evaluate(eval_step, images: tf.Tensor, labels: tf.Tensor) -> float:
    """Accuracy in percent, ``100 * correct / n``."""
    return 100.0 * float(eval_step(images, labels)) / int(images.shape[0])


# --------------------------------------------------------------------------- the loop


def chunk_plan(start: int, steps: int, settings: RunSettings) -> list[tuple[int, int, bool, bool]]:
    """Splits steps ``start .. steps - 1`` into compiled calls.

    Returns:
      ``(last_step, count, log, checkpoint)`` per call: a call ends at a log step
      (0, multiples of ``log_every``, the final step), after a step that completes
      a multiple of ``checkpoint_every`` steps, or after ``steps_per_call`` steps.
    """
    plan, s, last, every = [], start, steps - 1, settings.log_every
    while s <= last:
        end = min(last, s + settings.steps_per_call - 1, s if s % every == 0 else (s // every + 1) * every)
        if settings.checkpoint_every:
            end = min(end, (s // settings.checkpoint_every + 1) * settings.checkpoint_every - 1)
        ckpt = bool(settings.checkpoint_every) and (end + 1) % settings.checkpoint_every == 0
        plan.append((end, end - s + 1, end % every == 0 or end == last, ckpt))
        s = end + 1
    return plan


def _check_finite(state: TrainState, config: TrainConfig, ckpts: Checkpoints | None) -> None:
    """Raises TrainingDiverged if a step had a non-finite loss or the weights are not finite.

    Checkpoints whose weights gave the non-finite loss are deleted first, so every
    checkpoint left (and the one the message names) is a good one.
    """
    bad = int(state.first_bad_step.numpy())
    if bad < 0 and all(bool(tf.reduce_all(tf.math.is_finite(v))) for v in state.model.trainable_variables):
        return
    last_good = None if ckpts is None else ckpts.drop_from(bad) if bad >= 0 else ckpts.latest
    what = (f"loss became {float(state.bad_loss.numpy())} at step {bad}" if bad >= 0
            else f"weights became non-finite by step {int(state.step.numpy()) - 1}")
    rate = learning_rate_at(state.optimizer.learning_rate, max(bad, 0))
    raise TrainingDiverged(
        f"{what}; lower the learning rate (now {rate:g}, config "
        f"learning_rate={config.learning_rate:g}) or init_stddev, or check the data for NaN/inf; "
        f"last good checkpoint: {last_good or 'none'}")


def _log_entry(entry: Mapping[str, float], writer) -> None:
    """Logs one history entry in the course's words and to TensorBoard."""
    logger.info(f"Minibatch loss at step {entry['step']}: {entry['loss']:f}")
    logger.info(f"Minibatch accuracy: {entry['minibatch_accuracy']:.1f}%")
    logger.info(f"Validation accuracy: {entry['valid_accuracy']:.1f}%")
    if writer is not None:
        with writer.as_default(step=entry["step"]):
            for tag in TENSORBOARD_SCALARS:
                tf.summary.scalar(tag, entry[tag])
        writer.flush()


def train_and_evaluate(config: TrainConfig, data: Mapping[str, np.ndarray], settings: RunSettings | None = None,
                       out_dir: str | None = None, resume: bool = False, name: str = "custom",
                       data_id: str | None = None, progress: bool = False) -> TrainResult:
    """Trains ``config`` on ``data`` and evaluates it on the validation and test sets.

    Args:
      config: hyperparameters.
      data: a dataset dict (``dataset`` module: the course's keys, optionally the sanitized ones).
      settings: how to run (logging, checkpoints, compiled-call size, XLA, strategy).
      out_dir: the run folder (``run_dir.RunDir``); None: nothing is written, no checkpoints.
      resume: continue from the latest checkpoint in ``out_dir`` up to ``config.steps``.
      name: the run's name in logs and results (the preset's).
      data_id: identifies the data (e.g. the pickle's SHA-256), kept in ``run.json``; a resumed
        run must have the same.
      progress: show a progress bar over the steps.

    Returns:
      The ``TrainResult``; also written to ``out_dir/metrics.json``.

    Raises:
      DataError: not a valid dataset. ValueError: a checkpoint of another config or data,
        xla with a distributed strategy, a missing/invalid TF_CONFIG for "multiworker".
      TrainingDiverged: the loss became NaN/inf (no checkpoint is written from then on).
      TrainingInterrupted: Ctrl-C; a checkpoint of the steps done was written first.
    """
    settings = settings or RunSettings()
    arrays = training_arrays(config, data)
    if resume and not out_dir:
        raise ValueError("resume needs an out_dir")
    strategy = distribute.create_strategy(settings)  # first: a multi-worker strategy must precede every TF op
    description, replicas = distribute.describe_strategy(strategy)
    if distribute.worker_out_dir(strategy, out_dir) != out_dir:
        out_dir = distribute.worker_out_dir(strategy, out_dir)
        logger.info(f"Not the chief: this worker writes its checkpoints and outputs to {out_dir}")
    run = RunDir(out_dir) if out_dir else None
    if run is not None:
        run.start(config, settings, name, data_id, resume)
    n_train = len(arrays["train"][1])
    logger.info(f"Training on {description}: {name}, {n_train} training examples, {config.steps} steps")
    if config.train_on_valid:
        logger.info("train_on_valid: the validation images are part of the training set, so the validation "
                    "accuracy below is not a held-out measure")
    with tf.device(distribute.default_device()), strategy.scope():
        tensors = {k: (tf.identity(tf.convert_to_tensor(x)), tf.identity(tf.convert_to_tensor(y)))
                   for k, (x, y) in arrays.items()}
        state = create_train_state(config, n_train)
        batch_fn = inputs.make_batch_fn(config, *tensors["train"], state.permutation, state.epoch)
        train_fn = make_train_fn(config, settings, state, strategy, batch_fn)
        eval_step = make_eval_step(state.model)
        ckpts = Checkpoints(run.checkpoints, state.step, model=state.model, optimizer=state.optimizer) if run else None
        start, history, seconds_at = ckpts.restore(config, settings.log_every) if resume else (0, [], {})
        writer = tf.summary.create_file_writer(run.tensorboard) if run else None
        bar = progress_bar(config.steps, name, unit="step", enabled=progress, initial=start)
        counts: dict[int, tf.Tensor] = {}
        t0 = time.perf_counter() - seconds_at.get(str(start), 0.0)

        def checkpoint() -> str | None:
            if ckpts is None:
                return None
            seconds_at[str(int(state.step.numpy()))] = time.perf_counter() - t0
            return ckpts.save(config, history, seconds_at)

        try:
            with deferred_sigint() as sigint:
                for end, count, is_log, is_ckpt in chunk_plan(start, config.steps, settings):
                    counts.setdefault(count, tf.constant(count, tf.int64))
                    loss, acc = train_fn(counts[count])
                    if is_log or is_ckpt or settings.steps_per_call > 1 or sigint.requested:
                        _check_finite(state, config, ckpts)
                    if is_log:
                        entry = {"step": end, "loss": float(loss), "minibatch_accuracy": float(acc),
                                 "valid_accuracy": evaluate(eval_step, *tensors["valid"]),
                                 "learning_rate": learning_rate_at(state.optimizer.learning_rate, end),
                                 "seconds": time.perf_counter() - t0}
                        history.append(entry)
                        bar.set_postfix(loss=f"{entry['loss']:.3f}", valid=f"{entry['valid_accuracy']:.1f}%")
                        _log_entry(entry, writer)
                    bar.update(count)
                    stop = sigint.requested and end + 1 < config.steps
                    if is_ckpt or stop:
                        path = checkpoint()
                        if stop:
                            raise TrainingInterrupted(end + 1, path)
            _check_finite(state, config, ckpts)
            seconds = time.perf_counter() - t0
            if ckpts is not None and start < config.steps and not (
                    settings.checkpoint_every and config.steps % settings.checkpoint_every == 0):
                checkpoint()
        finally:
            bar.close()
            if writer is not None:
                writer.close()
        acc = {k: evaluate(eval_step, *tensors[k]) for k in tensors if k != "train"}
    result = TrainResult(
        name=name, config=config, history=history, valid_accuracy=acc["valid"], test_accuracy=acc["test"],
        valid_sanitized_accuracy=acc.get("valid_sanitized"), test_sanitized_accuracy=acc.get("test_sanitized"),
        steps=int(state.step.numpy()), seconds=seconds, device=description, train_examples=n_train,
        model=state.model, replicas=replicas)
    for label, value in (("Validation", result.valid_accuracy), ("Test", result.test_accuracy),
                         ("Sanitized validation", result.valid_sanitized_accuracy),
                         ("Sanitized test", result.test_sanitized_accuracy)):
        if value is not None:
            logger.info(f"{label} accuracy: {value:.1f}%")
    if run is not None:
        inference.save_model(state.model, run.saved_model)
        run.write_metrics(result.to_dict())
    return result
