"""dnn_tf.training.optimizers: the fused Adam and SGD match Keras's, checkpoint, loss-scale and mirror like them."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from fixtures import make_stripes_dataset
from test_distribute import assert_same_curve, data_file, run_script  # noqa: F401 (data_file: a fixture)

from dnn_tf.model import MLP, softmax_cross_entropy
from dnn_tf.training import optimizers
from dnn_tf.training.config import TrainConfig

STEPS = 300  # "a few hundred steps" of a real MLP
HIDDEN = (64, 32)
BATCH = 32
SCHEDULE = dict(initial_learning_rate=1e-3, decay_steps=100, decay_rate=0.7)  # the deep preset's kind of decay
MOMENTUM_LR = 0.05
# Keras's Adam computes 1 - beta in float64 and rounds it; the kernel subtracts in float32 (1 - 0.9f =
# 0.10000002): the moments' rates differ by 2e-7 (beta_1) and 1.3e-5 (beta_2) relative. Weights after
# STEPS steps agree to this (measured 1.9e-6, weights of order 0.1-1).
FREE_RUN_ATOL = 1e-5
STEP_ATOL = 1e-7  # one update from the same state: float rounding of the weights
CHECKPOINT_AT = 40


@pytest.fixture(scope="module")
def batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """The same STEPS minibatches for every run: the course's offset batching of the stripes data."""
    data = make_stripes_dataset()
    x = data["train_dataset"].reshape(len(data["train_labels"]), -1).astype(np.float32)
    y = data["train_labels"].astype(np.int32)
    offsets = [(s * BATCH) % (len(y) - BATCH) for s in range(STEPS)]
    return [(x[o:o + BATCH], y[o:o + BATCH]) for o in offsets]


def schedule():
    return tf.keras.optimizers.schedules.ExponentialDecay(**SCHEDULE)


def make_run(optimizer, compute_dtype=tf.float32):
    """(model, compiled step(x, y) -> loss); the model's init is the same for every call."""
    model = MLP(HIDDEN, init="he", seed=1, dropout_rate=0.1, compute_dtype=compute_dtype)
    variables = model.trainable_variables
    optimizer.build(variables)

    @tf.function
    def step(x, y, seed):
        with tf.GradientTape() as tape:
            loss = softmax_cross_entropy(model(x, training=True, seed=seed), y)
            scaled = optimizer.scale_loss(loss)
        optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        return loss

    return model, step


def train(optimizer, batches, start=0, stop=STEPS, run=None):
    """Trains on ``batches[start:stop]`` (dropout seeded by the step); returns the model's weights."""
    model, step = run or make_run(optimizer)
    for s in range(start, stop):
        step(*batches[s], tf.constant([0, s], tf.int64))
    return [v.numpy() for v in model.trainable_variables]


def largest_difference(a, b) -> float:
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b))


def f32(x: float) -> float:
    """``x`` rounded to float32, as the fused kernels see their hyperparameters."""
    return float(np.float32(x))


# --------------------------------------------------------------------------- same numbers as Keras


def test_fused_adam_matches_keras_adam_over_a_few_hundred_steps(batches):
    fused = train(optimizers.FusedAdam(schedule()), batches)
    keras = train(tf.keras.optimizers.Adam(schedule()), batches)
    initial = [v.numpy() for v in MLP(HIDDEN, init="he", seed=1).trainable_variables]
    assert largest_difference(fused, initial) > 0.05  # it trained
    assert largest_difference(fused, keras) <= FREE_RUN_ATOL
    # With the betas Keras gets rounded to float32 too, the two are the same arithmetic.
    same = train(tf.keras.optimizers.Adam(schedule(), beta_1=f32(0.9), beta_2=f32(0.999)), batches)
    assert largest_difference(fused, same) <= STEP_ATOL


def test_fused_adam_update_equals_keras_update_from_every_state_of_a_run(batches):
    """At each of STEPS steps of Keras's own run, one fused update from the same state and gradient."""
    keras_opt, fused_opt = tf.keras.optimizers.Adam(schedule()), optimizers.FusedAdam(schedule())
    model, fused_model = MLP(HIDDEN, init="he", seed=1), MLP(HIDDEN, init="he", seed=2)
    keras_opt.build(model.trainable_variables)
    fused_opt.build(fused_model.trainable_variables)
    state = list(model.trainable_variables) + list(keras_opt.variables)
    fused_state = list(fused_model.trainable_variables) + list(fused_opt.variables)
    assert [v.shape for v in state] == [v.shape for v in fused_state]
    worst = 0.0
    for x, y in batches:
        with tf.GradientTape() as tape:
            loss = softmax_cross_entropy(model(x), y)
        grads = tape.gradient(loss, model.trainable_variables)
        for target, source in zip(fused_state, state):
            target.assign(source)
        keras_opt.apply_gradients(zip(grads, model.trainable_variables))
        fused_opt.apply_gradients(zip(grads, fused_model.trainable_variables))
        worst = max(worst, largest_difference([v.numpy() for v in fused_state], [v.numpy() for v in state]))
    assert int(fused_opt.iterations) == int(keras_opt.iterations) == STEPS
    assert worst <= STEP_ATOL


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_momentum_matches_keras_sgd_with_momentum(batches, nesterov):
    fused = train(optimizers.FusedSGD(MOMENTUM_LR, momentum=0.9, nesterov=nesterov), batches)
    keras = train(tf.keras.optimizers.SGD(MOMENTUM_LR, momentum=0.9, nesterov=nesterov), batches)
    assert largest_difference(fused, keras) <= STEP_ATOL  # measured: identical


def test_fused_sgd_matches_keras_sgd(batches):
    fused = train(optimizers.FusedSGD(MOMENTUM_LR), batches)
    keras = train(tf.keras.optimizers.SGD(MOMENTUM_LR), batches)
    assert largest_difference(fused, keras) <= STEP_ATOL


def test_amsgrad_and_sparse_gradients_keep_keras_updates():
    var = tf.Variable(tf.ones([4, 3]))
    grad = tf.IndexedSlices(tf.fill([2, 3], 0.5), tf.constant([0, 2]), tf.constant([4, 3]))
    for fused, keras in [(optimizers.FusedAdam(0.1), tf.keras.optimizers.Adam(0.1)),
                         (optimizers.FusedSGD(0.1, momentum=0.9), tf.keras.optimizers.SGD(0.1, momentum=0.9))]:
        results = []
        for opt in (fused, keras):
            v = tf.Variable(var)
            opt.apply_gradients([(grad, v)])
            results.append(v.numpy())
        np.testing.assert_allclose(results[0], results[1], atol=STEP_ATOL)
        assert np.all(results[0][[1, 3]] == 1.0) and np.all(results[0][[0, 2]] < 1.0)  # only the given rows
    dense = tf.fill([4, 3], 0.5)
    results = []
    for opt in (optimizers.FusedAdam(0.1, amsgrad=True), tf.keras.optimizers.Adam(0.1, amsgrad=True)):
        v = tf.Variable(var)
        for _ in range(3):
            opt.apply_gradients([(dense, v)])
        results.append(v.numpy())
    np.testing.assert_allclose(results[0], results[1], atol=STEP_ATOL)


# --------------------------------------------------------------------------- checkpoints, loss scale


def test_checkpoint_mid_run_restores_and_continues_identically(batches, tmp_path):
    optimizer = optimizers.FusedAdam(schedule())
    run = make_run(optimizer)
    train(optimizer, batches, stop=CHECKPOINT_AT, run=run)
    path = tf.train.Checkpoint(model=run[0], optimizer=optimizer).save(str(tmp_path / "ckpt"))
    straight = train(optimizer, batches, start=CHECKPOINT_AT, run=run)

    resumed_opt = optimizers.FusedAdam(schedule())
    resumed = make_run(resumed_opt)
    tf.train.Checkpoint(model=resumed[0], optimizer=resumed_opt).restore(path).assert_existing_objects_matched()
    assert int(resumed_opt.iterations) == CHECKPOINT_AT
    continued = train(resumed_opt, batches, start=CHECKPOINT_AT, run=resumed)
    for a, b in zip(straight, continued):
        np.testing.assert_array_equal(a, b)


def test_checkpoint_of_keras_adam_restores_into_fused_adam(batches, tmp_path):
    """Runs checkpointed before the fused optimizer resume with it: the slot variables are Keras's."""
    keras_opt = tf.keras.optimizers.Adam(schedule())
    run = make_run(keras_opt)
    train(keras_opt, batches, stop=CHECKPOINT_AT, run=run)
    path = tf.train.Checkpoint(model=run[0], optimizer=keras_opt).save(str(tmp_path / "keras"))
    fused_opt = optimizers.FusedAdam(schedule())
    fused = make_run(fused_opt)
    tf.train.Checkpoint(model=fused[0], optimizer=fused_opt).restore(path).assert_existing_objects_matched()
    for a, b in zip(fused_opt.variables, keras_opt.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert largest_difference(train(fused_opt, batches, start=CHECKPOINT_AT, run=fused),
                              train(keras_opt, batches, start=CHECKPOINT_AT, run=run)) <= FREE_RUN_ATOL


def test_fused_adam_under_loss_scale_optimizer_matches_keras_and_skips_overflows(batches):
    config = TrainConfig(optimizer="adam", mixed_precision=True, learning_rate=1e-3)
    fused_lso = optimizers.create_optimizer(config, optimizers.learning_rate_schedule(config))
    assert isinstance(fused_lso, tf.keras.mixed_precision.LossScaleOptimizer)
    assert isinstance(fused_lso.inner_optimizer, optimizers.FusedAdam)
    # float16 activations round coarsely, so any difference in the weights can flip a rounding and the runs
    # drift apart: compare with Keras's Adam on the betas the kernel uses (float32), the same arithmetic.
    keras_lso = tf.keras.mixed_precision.LossScaleOptimizer(
        tf.keras.optimizers.Adam(1e-3, beta_1=f32(0.9), beta_2=f32(0.999)))
    fused_model, fused_step = make_run(fused_lso, tf.float16)
    keras_model, keras_step = make_run(keras_lso, tf.float16)
    for s, (x, y) in enumerate(batches[:CHECKPOINT_AT]):
        fused_step(x, y, tf.constant([0, s], tf.int64))
        keras_step(x, y, tf.constant([0, s], tf.int64))
    fused_w = [v.numpy() for v in fused_model.trainable_variables]
    assert largest_difference(fused_w, [v.numpy() for v in keras_model.trainable_variables]) <= STEP_ATOL
    assert int(fused_lso.iterations) == int(keras_lso.iterations) > 0
    assert float(fused_lso.dynamic_scale) == float(keras_lso.dynamic_scale)

    # An overflowing step is skipped: weights, slots and iterations unchanged, the scale halved.
    variables = fused_model.trainable_variables
    before, slots, scale = fused_w, [v.numpy() for v in fused_lso.inner_optimizer.variables], float(
        fused_lso.dynamic_scale)
    fused_lso.apply_gradients(zip([tf.fill(v.shape, np.inf) for v in variables], variables))
    assert largest_difference([v.numpy() for v in variables], before) == 0.0
    assert largest_difference([v.numpy() for v in fused_lso.inner_optimizer.variables], slots) == 0.0
    assert float(fused_lso.dynamic_scale) == scale / 2


def test_create_optimizer_picks_the_fused_ones():
    def make(name):
        config = TrainConfig(optimizer=name, momentum=0.8)
        return optimizers.create_optimizer(config, optimizers.learning_rate_schedule(config))

    adam, momentum, sgd = make("adam"), make("momentum"), make("sgd")
    assert type(adam) is optimizers.FusedAdam and isinstance(adam, tf.keras.optimizers.Adam)
    assert type(momentum) is optimizers.FusedSGD and momentum.momentum == 0.8
    assert type(sgd) is optimizers.FusedSGD and sgd.momentum == 0.0
    bad = TrainConfig()
    object.__setattr__(bad, "optimizer", "rmsprop")  # past TrainConfig's own check, to reach create_optimizer's
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        optimizers.create_optimizer(bad, 0.1)


# --------------------------------------------------------------------------- tf.distribute


def test_fused_adam_mirrored_on_two_logical_cpus_matches_single_device(data_file):  # noqa: F811
    out = run_script("""
        base = make(hidden_sizes=(32,), init="he", optimizer="adam", learning_rate=1e-3, l2_beta=1e-4,
                    dropout_rate=0.0, decay_steps=20, decay_rate=0.7, batch_size=32, steps=40, log_every=10,
                    checkpoint_every=0, seed=3)
        default, mirrored = run(base), run(base.replace(strategy="mirrored"))
        print(json.dumps({"default": losses(default), "mirrored": losses(mirrored),
                          "optimizer": type(loop.create_optimizer(base.config, 0.1)).__name__,
                          "replicas": mirrored.replicas}))
    """, data_file)
    assert out["optimizer"] == "FusedAdam" and out["replicas"] == 2
    assert_same_curve(out["mirrored"], out["default"])
    assert out["default"][-1] < out["default"][0] / 2  # it did learn
