"""dnn_tf.training.optimizers: SGD, momentum and Adam match Keras's and the formulas, checkpoint and mirror."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from fixtures import make_stripes_dataset
from test_distribute import assert_same_curve, data_file, run_script  # noqa: F401 (data_file: a fixture)

from dnn_tf.model import MLP, cross_entropy, train_step
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
FORMULA_RTOL = 1e-5  # one float32 update against the float64 formula
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


def make_run(optimizer):
    """(model, compiled step(x, y, seed)): ``model.train_step`` with dropout; the same init every call."""
    model = MLP(HIDDEN, init="he", seed=1, dropout_rate=0.1)
    optimizer.build(model.trainable_variables)
    step = tf.function(lambda x, y, seed: train_step(model, optimizer, x, y, seed=seed))
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


def test_adam_matches_keras_adam_over_a_few_hundred_steps(batches):
    ours = train(optimizers.Adam(schedule()), batches)
    keras = train(tf.keras.optimizers.Adam(schedule()), batches)
    initial = [v.numpy() for v in MLP(HIDDEN, init="he", seed=1).trainable_variables]
    assert largest_difference(ours, initial) > 0.05  # it trained
    assert largest_difference(ours, keras) <= FREE_RUN_ATOL
    # With the betas Keras gets rounded to float32 too, the two are the same arithmetic.
    same = train(tf.keras.optimizers.Adam(schedule(), beta_1=f32(0.9), beta_2=f32(0.999)), batches)
    assert largest_difference(ours, same) <= STEP_ATOL


def test_adam_update_is_the_formula_from_any_state():
    """One update from random moments at several steps, against Adam's formula in float64.

    (With the betas as the float32 kernel sees them: 1 - 0.999f is 4.7e-5 away from 0.001.)
    """
    rng = np.random.default_rng(0)
    lr, b1, b2, eps = 1e-3, f32(optimizers.ADAM_BETA_1), f32(optimizers.ADAM_BETA_2), optimizers.ADAM_EPSILON
    for t in (1, 2, 10, 1000):
        w0 = rng.normal(size=(5, 4)).astype(np.float32)
        m0 = rng.normal(scale=0.1, size=w0.shape).astype(np.float32)
        v0 = rng.uniform(0, 0.01, size=w0.shape).astype(np.float32)
        g = rng.normal(size=w0.shape).astype(np.float32)
        var = tf.Variable(w0)
        adam = optimizers.Adam(lr)
        adam.build([var])
        adam.slots["m"][0].assign(m0)
        adam.slots["v"][0].assign(v0)
        adam.iterations.assign(t - 1)
        adam.apply_gradients([(tf.constant(g), var)])
        m = m0 + (g - m0) * f32(1 - np.float32(b1))
        v = v0 + (g.astype(np.float64) ** 2 - v0) * f32(1 - np.float32(b2))
        step = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        np.testing.assert_allclose(adam.slots["m"][0].numpy(), m, rtol=FORMULA_RTOL, atol=1e-8)
        np.testing.assert_allclose(adam.slots["v"][0].numpy(), v, rtol=FORMULA_RTOL, atol=1e-10)
        np.testing.assert_allclose(var.numpy(), w0 - step * m / (np.sqrt(v) + eps), rtol=FORMULA_RTOL, atol=1e-8)
        assert int(adam.iterations) == t


@pytest.mark.parametrize("nesterov", [False, True])
def test_momentum_matches_keras_sgd_with_momentum(batches, nesterov):
    ours = train(optimizers.Momentum(MOMENTUM_LR, momentum=0.9, nesterov=nesterov), batches)
    keras = train(tf.keras.optimizers.SGD(MOMENTUM_LR, momentum=0.9, nesterov=nesterov), batches)
    assert largest_difference(ours, keras) <= STEP_ATOL  # measured: identical


def test_sgd_is_the_course_update_and_matches_keras_sgd(batches):
    ours = train(optimizers.SGD(MOMENTUM_LR), batches)
    keras = train(tf.keras.optimizers.SGD(MOMENTUM_LR), batches)
    assert largest_difference(ours, keras) <= STEP_ATOL
    var, grad = tf.Variable([[1.0, -2.0]]), tf.constant([[0.5, 0.25]])
    optimizers.SGD(0.1).apply_gradients([(grad, var)])
    np.testing.assert_allclose(var.numpy(), [[1.0 - 0.05, -2.0 - 0.025]], rtol=1e-7)


def test_the_learning_rate_follows_the_schedule_of_the_steps_applied():
    var = tf.Variable([0.0])
    sgd = optimizers.SGD(tf.keras.optimizers.schedules.ExponentialDecay(1.0, 1, 0.5, staircase=True))
    for _ in range(3):
        sgd.apply_gradients([(tf.constant([1.0]), var)])
    assert float(var.numpy()[0]) == -(1.0 + 0.5 + 0.25)
    assert int(sgd.iterations) == 3 and optimizers.learning_rate_at(sgd.learning_rate, 3) == 0.125
    assert optimizers.learning_rate_at(0.2, 10) == 0.2


# --------------------------------------------------------------------------- checkpoints, choice


def test_checkpoint_mid_run_restores_and_continues_identically(batches, tmp_path):
    optimizer = optimizers.Adam(schedule())
    run = make_run(optimizer)
    train(optimizer, batches, stop=CHECKPOINT_AT, run=run)
    path = tf.train.Checkpoint(model=run[0], optimizer=optimizer).save(str(tmp_path / "ckpt"))
    straight = train(optimizer, batches, start=CHECKPOINT_AT, run=run)

    resumed_opt = optimizers.Adam(schedule())
    resumed = make_run(resumed_opt)
    tf.train.Checkpoint(model=resumed[0], optimizer=resumed_opt).restore(path).assert_existing_objects_matched()
    assert int(resumed_opt.iterations) == CHECKPOINT_AT
    assert all(float(np.abs(m.numpy()).max()) > 0 for m in resumed_opt.slots["m"])  # the moments came back
    continued = train(resumed_opt, batches, start=CHECKPOINT_AT, run=resumed)
    for a, b in zip(straight, continued):
        np.testing.assert_array_equal(a, b)


def test_slots_are_built_once_per_variable_and_follow_it():
    model = MLP((3,), input_size=4, num_classes=2, seed=0)
    adam = optimizers.Adam(0.1)
    adam.build(model.trainable_variables)
    adam.build(model.trainable_variables)  # again: nothing new
    assert len(adam.slots["m"]) == len(adam.slots["v"]) == len(model.trainable_variables) == 4
    assert [s.shape for s in adam.slots["v"]] == [v.shape for v in model.trainable_variables]
    # Gradients in another order than the build's still meet their own slots.
    pairs = [(tf.ones_like(v), v) for v in model.trainable_variables][::-1]
    adam.apply_gradients(pairs)
    for v, m in zip(model.trainable_variables, adam.slots["m"]):
        np.testing.assert_allclose(m.numpy(), np.full(v.shape, 1 - optimizers.ADAM_BETA_1), rtol=1e-6)


def test_create_optimizer_picks_each_method():
    def make(name):
        config = TrainConfig(optimizer=name, momentum=0.8)
        return optimizers.create_optimizer(config, optimizers.learning_rate_schedule(config))

    adam, momentum, sgd = make("adam"), make("momentum"), make("sgd")
    assert type(adam) is optimizers.Adam and type(sgd) is optimizers.SGD
    assert type(momentum) is optimizers.Momentum and momentum.momentum == 0.8
    bad = TrainConfig()
    object.__setattr__(bad, "optimizer", "rmsprop")  # past TrainConfig's own check, to reach create_optimizer's
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        optimizers.create_optimizer(bad, 0.1)


def test_keras_optimizers_run_the_same_train_step():
    x = np.random.default_rng(0).uniform(-0.5, 0.5, (16, 784)).astype(np.float32)
    y = np.arange(16, dtype=np.int32) % 10
    model = MLP((8,), init="he", seed=0)
    first = float(train_step(model, tf.keras.optimizers.Adam(0.01), x, y)[0])
    assert float(cross_entropy(model(x), y)) < first


# --------------------------------------------------------------------------- tf.distribute


def test_adam_mirrored_on_two_logical_cpus_matches_single_device(data_file):  # noqa: F811
    out = run_script("""
        base = make(hidden_sizes=(32,), init="he", optimizer="adam", learning_rate=1e-3, l2_beta=1e-4,
                    dropout_rate=0.0, decay_steps=20, decay_rate=0.7, batch_size=32, steps=40, log_every=10,
                    checkpoint_every=0, seed=3)
        default, mirrored = run(base), run(base.replace(strategy="mirrored"))
        weights = [v.values for v in mirrored.model.trainable_variables]
        print(json.dumps({"default": losses(default), "mirrored": losses(mirrored),
                          "optimizer": type(loop.create_optimizer(base.config, 0.1)).__name__,
                          "copies_equal": all(bool(np.array_equal(c[0].numpy(), c[1].numpy())) for c in weights),
                          "replicas": mirrored.replicas}))
    """, data_file)
    assert out["optimizer"] == "Adam" and out["replicas"] == 2
    assert out["copies_equal"]  # every replica applied the same summed update to its copy
    assert_same_curve(out["mirrored"], out["default"])
    assert out["default"][-1] < out["default"][0] / 2  # it did learn
