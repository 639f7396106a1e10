"""Tests of dnn_tf.model: gradients against hand-written backprop, the loss, the steps, init, dropout, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from dnn_tf.model import (
    MLP,
    TRUNCATED_NORMAL_STD,
    accuracy,
    cross_entropy,
    eval_step,
    l2_penalty,
    loss_fn,
    parameter_count,
    train_step,
)
from dnn_tf.reference.backprop import numpy_backprop

# Gradients agree to float32 round-off: max |diff| <= GRAD_RTOL * max |gradient|.
GRAD_RTOL = 1e-5


def _batch(n=32, size=784, seed=0, classes=10):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 0.5, size=(n, size)).astype(np.float32)
    y = rng.integers(0, classes, size=n).astype(np.int32)
    return x, y


# ---------------------------------------------------------------- gradients

def _tape_gradients(model, x, y, beta):
    with tf.GradientTape() as tape:
        loss, _ = loss_fn(model, x, y, l2_beta=beta)
    grads = tape.gradient(loss, model.weights + model.biases)
    k = len(model.weights)
    return float(loss), [g.numpy() for g in grads[:k]], [g.numpy() for g in grads[k:]]


def _max_rel_diff(a_list, b_list):
    scale = max(np.max(np.abs(b)) for b in b_list)
    return max(np.max(np.abs(a - b)) for a, b in zip(a_list, b_list)) / scale


def test_gradients_matchnumpy_backprop():
    model = MLP(hidden_sizes=(7, 5), init="he", seed=3)
    x, y = _batch()
    beta = 1e-2
    weights = [w.numpy() for w in model.weights]
    biases = [b.numpy() for b in model.biases]
    # Give the biases non-zero values so they matter in the check.
    for i, b in enumerate(model.biases):
        b.assign(np.linspace(-0.3, 0.3, b.shape[0]).astype(np.float32) * (i + 1))
        biases[i] = b.numpy()
    loss, dws, dbs = _tape_gradients(model, x, y, beta)
    ref_loss, ref_dws, ref_dbs = numpy_backprop(weights, biases, x, y, beta)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    for got, ref in zip(dws, ref_dws):
        assert got.shape == ref.shape
    assert _max_rel_diff(dws, ref_dws) <= GRAD_RTOL
    assert _max_rel_diff(dbs, ref_dbs) <= GRAD_RTOL
    # Some ReLUs are off, so the check is sensitive to the ReLU derivative: a wrong one
    # (1 everywhere) is far outside the tolerance.
    _, bad_dws, bad_dbs = numpy_backprop(weights, biases, x, y, beta, relu_grad=np.ones_like)
    assert _max_rel_diff(dws, bad_dws) > 100 * GRAD_RTOL
    # ...and to the L2 term: leaving it out is also detected.
    _, no_l2_dws, _ = numpy_backprop(weights, biases, x, y, 0.0)
    assert _max_rel_diff(dws, no_l2_dws) > 100 * GRAD_RTOL


def test_logistic_regression_gradient_matches_numpy():
    model = MLP(hidden_sizes=(), seed=1, init_stddev=0.1)
    x, y = _batch(n=20, seed=1)
    loss, dws, dbs = _tape_gradients(model, x, y, 0.5)
    ref_loss, ref_dws, ref_dbs = numpy_backprop([w.numpy() for w in model.weights],
                                                 [b.numpy() for b in model.biases], x, y, 0.5)
    assert loss == pytest.approx(ref_loss, rel=1e-5)
    assert _max_rel_diff(dws, ref_dws) <= GRAD_RTOL
    assert _max_rel_diff(dbs, ref_dbs) <= GRAD_RTOL


def test_relu_derivative_is_step():
    z = tf.constant([-3.0, -1e-3, 1e-3, 2.0, 50.0])
    with tf.GradientTape() as tape:
        tape.watch(z)
        out = tf.nn.relu(z)
    np.testing.assert_array_equal(tape.gradient(out, z).numpy(), [0.0, 0.0, 1.0, 1.0, 1.0])


def test_l2_penalty_is_half_beta_sum_of_squares_on_weights_only():
    model = MLP(hidden_sizes=(6,), input_size=12, num_classes=3, seed=2)
    model.biases[0].assign(np.full(6, 100.0, np.float32))  # biases must not count
    beta = 0.3
    expected = 0.5 * beta * sum(np.sum(w.numpy().astype(np.float64) ** 2) for w in model.weights)
    assert float(l2_penalty(model, beta)) == pytest.approx(expected, rel=1e-6)
    assert float(l2_penalty(model, 0.0)) == 0.0
    with pytest.raises(ValueError):
        l2_penalty(model, -1.0)


def test_cross_entropy_values_and_global_batch_share():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(8, 10)).astype(np.float32)
    y = rng.integers(0, 10, 8).astype(np.int32)
    shifted = logits - logits.max(1, keepdims=True)
    expected = np.mean(np.log(np.exp(shifted).sum(1)) - shifted[np.arange(8), y])
    assert float(cross_entropy(logits, y)) == pytest.approx(expected, rel=1e-5)
    # A replica holding 8 of a global batch of 32 contributes its share, a quarter of its mean.
    assert float(cross_entropy(logits, y, global_batch_size=32)) == pytest.approx(expected / 4, rel=1e-5)
    # On 8 of 8 the share is the mean itself, to the bit.
    assert float(cross_entropy(logits, y, global_batch_size=8)) == float(cross_entropy(logits, y))
    with pytest.raises(ValueError):
        cross_entropy(logits, np.zeros((8, 10, 1), np.int32))


def test_loss_fn_adds_the_l2_penalty_only_when_asked():
    model = MLP((6,), init="he", seed=2)
    x, y = _batch(n=16)
    plain, logits = loss_fn(model, x, y)
    np.testing.assert_array_equal(logits.numpy(), model(x).numpy())
    assert float(plain) == pytest.approx(float(cross_entropy(model(x), y)), rel=1e-7)
    penalized, _ = loss_fn(model, x, y, l2_beta=0.01)
    assert float(penalized) == pytest.approx(float(plain) + float(l2_penalty(model, 0.01)), rel=1e-6)


def test_train_step_is_one_sgd_update_and_reports_the_batch_before_it():
    model = MLP((8,), init="he", seed=1)
    x, y = _batch(n=64, seed=3)
    before = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        expected_loss, logits = loss_fn(model, x, y, l2_beta=1e-3)
    grads = [g.numpy() for g in tape.gradient(expected_loss, model.trainable_variables)]
    expected_correct = int(np.sum(np.argmax(logits.numpy(), 1) == y))
    loss, correct = train_step(model, tf.keras.optimizers.SGD(0.5), x, y, l2_beta=1e-3)
    assert float(loss) == float(expected_loss) and float(correct) == expected_correct
    for v, b, g in zip(model.trainable_variables, before, grads):
        np.testing.assert_allclose(v.numpy(), b - 0.5 * g, rtol=1e-6, atol=1e-7)
    # Repeated steps learn the batch.
    sgd = tf.keras.optimizers.SGD(0.5)
    step = tf.function(lambda: train_step(model, sgd, x, y))
    first = float(step()[0])
    for _ in range(30):
        last, correct = step()
    assert float(last) < 0.5 * first and float(correct) > 0.8 * len(y)


def test_eval_step_counts_right_predictions_without_dropout():
    model = MLP((16,), dropout_rate=0.5, seed=0)
    x, y = _batch(n=40)
    predictions = np.argmax(model(x).numpy(), 1)
    y[:10] = predictions[:10]  # at least 10 right
    assert float(eval_step(model, x, y)) == float(np.sum(predictions == y)) >= 10


# ---------------------------------------------------------------- shapes

def test_shapes_and_properties():
    model = MLP(hidden_sizes=(1024,))
    assert model.layer_sizes == (784, 1024, 10)
    assert [tuple(w.shape) for w in model.weights] == [(784, 1024), (1024, 10)]
    assert [tuple(b.shape) for b in model.biases] == [(1024,), (10,)]
    assert parameter_count(model.layer_sizes) == 784 * 1024 + 1024 + 1024 * 10 + 10
    assert parameter_count(model.layer_sizes) == sum(int(np.prod(v.shape)) for v in model.trainable_variables)
    images = np.zeros((3, 28, 28), np.float32)
    out = model(images)
    assert out.shape == (3, 10) and out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), model(images.reshape(3, 784)).numpy())
    logreg = MLP()
    assert logreg.layer_sizes == (784, 10) and len(logreg.weights) == 1
    assert MLP((1024, 512, 256)).layer_sizes == (784, 1024, 512, 256, 10)


# ---------------------------------------------------------------- init

def test_same_seed_same_weights_regardless_of_global_seed():
    tf.random.set_seed(1)
    a = MLP((16, 8), seed=5)
    tf.random.set_seed(2)
    tf.random.uniform([3])  # advance global state
    b = MLP((16, 8), seed=5)
    c = MLP((16, 8), seed=6)
    for wa, wb, wc in zip(a.weights, b.weights, c.weights):
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
        assert not np.allclose(wa.numpy(), wc.numpy())
    # Layers get different streams.
    square = MLP((20, 20, 20), input_size=20, num_classes=20, seed=0)
    assert not np.allclose(square.weights[0].numpy(), square.weights[1].numpy())


def test_he_init_std():
    model = MLP((1024, 512), init="he", seed=0)
    for w in model.weights:
        fan_in = w.shape[0]
        assert np.std(w.numpy()) == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.1)
    for b in model.biases:
        np.testing.assert_array_equal(b.numpy(), 0.0)


def test_course_init_is_truncated_normal():
    model = MLP((1024,), seed=0)
    w = model.weights[0].numpy()
    assert np.std(w) == pytest.approx(1.0 * TRUNCATED_NORMAL_STD, rel=0.03)
    assert np.max(np.abs(w)) <= 2.0
    scaled = MLP((64,), init_stddev=0.1, seed=0)
    assert np.max(np.abs(scaled.weights[0].numpy())) <= 0.2
    np.testing.assert_array_equal(model.biases[0].numpy(), 0.0)


# ---------------------------------------------------------------- dropout

def _ones_then_identity(hidden, rate, layers=1):
    """A net whose hidden activations are all 1 and whose later layers are identities."""
    model = MLP((hidden,) * layers, input_size=4, num_classes=hidden, dropout_rate=rate, seed=0)
    model.weights[0].assign(np.zeros((4, hidden), np.float32))
    model.biases[0].assign(np.ones(hidden, np.float32))
    for w in model.weights[1:]:
        w.assign(np.eye(hidden, dtype=np.float32))
    return model


def test_dropout_off_in_evaluation():
    model = MLP((32,), dropout_rate=0.5, seed=0)
    plain = MLP((32,), dropout_rate=0.0, seed=0)
    x, _ = _batch(n=16)
    first = model(x, training=False).numpy()
    np.testing.assert_array_equal(first, model(x, training=False, seed=[1, 2]).numpy())
    np.testing.assert_array_equal(first, plain(x).numpy())
    # training=True with rate 0 is also a plain pass and needs no seed.
    np.testing.assert_array_equal(first, plain(x, training=True).numpy())


def test_dropout_in_training_masks_scales_and_is_seeded():
    rate = 0.5
    model = _ones_then_identity(64, rate)
    x = np.zeros((32, 4), np.float32)
    np.testing.assert_array_equal(model(x).numpy(), 1.0)
    out = model(x, training=True, seed=tf.constant([7, 0], tf.int64)).numpy()
    kept = out != 0
    np.testing.assert_allclose(out[kept], 1.0 / (1.0 - rate))
    assert 0.4 < kept.mean() < 0.6
    again = model(x, training=True, seed=tf.constant([7, 0], tf.int64)).numpy()
    np.testing.assert_array_equal(out, again)
    other = model(x, training=True, seed=tf.constant([7, 1], tf.int32)).numpy()
    assert not np.array_equal(out, other)
    with pytest.raises(ValueError, match="seed"):
        model(x, training=True)
    with pytest.raises(ValueError, match="seed"):
        model(x, training=True, seed=[1, 2, 3])


def test_dropout_layers_get_different_masks():
    # Two dropout layers in series: independent masks drop 1 - (1 - r)^2 = 75% of units,
    # the same mask twice would drop only 50%.
    rate = 0.5
    model = _ones_then_identity(64, rate, layers=2)
    out = model(np.zeros((64, 4), np.float32), training=True, seed=[3, 4]).numpy()
    dropped = np.mean(out == 0)
    assert 0.7 < dropped < 0.8
    np.testing.assert_allclose(out[out != 0], 1.0 / (1.0 - rate) ** 2)


def test_works_in_tf_function_and_xla():
    model = MLP((16,), dropout_rate=0.25, seed=0)
    x, _ = _batch(n=8)

    @tf.function(jit_compile=True)
    def step(x, seed):
        return model(x, training=True, seed=seed), model(x)

    train_out, eval_out = step(tf.constant(x), tf.constant([1, 2], tf.int64))
    assert train_out.shape == (8, 10) and train_out.dtype == tf.float32
    np.testing.assert_allclose(eval_out.numpy(), model(x).numpy(), rtol=1e-4, atol=1e-4)
    assert not np.allclose(train_out.numpy(), eval_out.numpy())


# ---------------------------------------------------------------- saving

def test_checkpoint_and_saved_model_round_trip(tmp_path):
    model = MLP((8,), seed=1)
    x = np.random.default_rng(0).normal(size=(2, 28, 28)).astype(np.float32)
    ckpt = tf.train.Checkpoint(model=model)
    path = ckpt.write(str(tmp_path / "ckpt"))
    restored = MLP((8,), seed=2)
    tf.train.Checkpoint(model=restored).read(path).assert_consumed()
    np.testing.assert_array_equal(model(x).numpy(), restored(x).numpy())

    model.serve = tf.function(lambda images: model(images),
                              input_signature=[tf.TensorSpec([None, 28, 28], tf.float32)])
    tf.saved_model.save(model, str(tmp_path / "saved"))
    loaded = tf.saved_model.load(str(tmp_path / "saved"))
    np.testing.assert_allclose(loaded.serve(x).numpy(), model(x).numpy(), rtol=1e-6)


# ---------------------------------------------------------------- errors

@pytest.mark.parametrize("kwargs", [
    dict(hidden_sizes=(0,)), dict(hidden_sizes=(-3,)), dict(hidden_sizes=(2.5,)),
    dict(num_classes=0), dict(input_size=-1), dict(dropout_rate=1.0), dict(dropout_rate=-0.1),
    dict(init="xavier"), dict(init_stddev=0.0), dict(seed=1.5), dict(seed=True),
])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError):
        MLP(**kwargs)


@pytest.mark.parametrize("shape", [(2, 783), (2, 28, 27), (2, 784, 1), (784,), (2, 1, 28, 28)])
def test_wrong_input_shape_raises(shape):
    with pytest.raises(ValueError, match="shape"):
        MLP()(np.zeros(shape, np.float32))


def test_unknown_feature_dims_raise_inside_tf_function():
    model = MLP()
    fn = tf.function(model, input_signature=[tf.TensorSpec([None, None], tf.float32)])
    with pytest.raises(ValueError, match="shape"):
        fn.get_concrete_function()


# ---------------------------------------------------------------- metrics

def test_accuracy_with_int_and_one_hot_labels():
    predictions = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]])
    labels = np.array([0, 1, 1, 0])
    assert accuracy(predictions, labels) == 75.0
    assert accuracy(predictions, np.eye(3)[labels]) == 75.0
    assert isinstance(accuracy(tf.constant(predictions), labels), float)
    with pytest.raises(ValueError):
        accuracy(predictions, labels[:3])
    with pytest.raises(ValueError):
        accuracy(predictions, np.eye(4)[labels])
    with pytest.raises(ValueError):
        accuracy(np.zeros((0, 3)), np.zeros(0))


def test_chain_rule_script_prints_matching_gradients(capsys):
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).parents[1] / "scripts" / "chain_rule.py"
    spec = importlib.util.spec_from_file_location("chain_rule", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--hidden", "6", "--batch", "8"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(("W", "b"))]
    assert [r.split()[0] for r in rows] == ["W0", "W1", "b0", "b1"]
    assert all(float(r.split()[-1]) < 1e-5 for r in rows)
    assert "[0. 0. 1. 1.]" in out
    assert script.main(["--batch", "0"]) == 2


def test_deskew_model_reads_the_deskewed_image_and_exports_it():
    from dnn_tf.training import augment
    image = np.full((2, 28, 28), augment.BACKGROUND, np.float32)
    for r in range(4, 24):  # an italic bar
        c = int(round(13.5 - 0.4 * (r - 13.5)))
        image[:, r, c:c + 2] = 0.5
    image[1] = image[1, ::-1]  # and its mirror image, slanted the other way
    plain = MLP((16,), init="he", seed=3)
    deskewing = MLP((16,), init="he", seed=3, deskew=True)
    straight = augment.deskew(tf.constant(image))
    np.testing.assert_allclose(deskewing(image).numpy(), plain(straight).numpy(), rtol=1e-5, atol=1e-5)
    assert not np.allclose(deskewing(image).numpy(), plain(image).numpy(), atol=1e-3)
    flat = deskewing(image.reshape(2, 784)).numpy()  # flat inputs are deskewed as images too
    np.testing.assert_allclose(flat, deskewing(image).numpy(), rtol=1e-6)
    assert deskewing.trainable_variables and len(deskewing.trainable_variables) == len(plain.trainable_variables)


def test_deskew_needs_square_inputs():
    with pytest.raises(ValueError, match="deskew needs square images"):
        MLP((4,), input_size=700, deskew=True)
    assert MLP((4,), input_size=700).input_size == 700
