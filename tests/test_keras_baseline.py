"""The plain-Keras baseline: same network and L2 as ours, whole epochs, a TrainResult-shaped dict."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import tensorflow as tf
from fixtures import RESULT_KEYS, make_stripes_dataset

from dnn_tf.model import MLP, l2_penalty, parameter_count
from dnn_tf.reference import keras_mlp
from dnn_tf.report import tables
from dnn_tf.training import presets
from dnn_tf.training.config import TrainConfig

N_TRAIN, BATCH = 600, 64  # 10 steps an epoch, the last one of 24 examples
CONFIG = TrainConfig(hidden_sizes=(32,), init="he", dropout_rate=0.2, l2_beta=1e-4, optimizer="adam",
                     learning_rate=1e-2, decay_steps=20, decay_rate=0.5, batch_size=BATCH, steps=47)
SEED = 3


@pytest.fixture(scope="module")
def data():
    return make_stripes_dataset(n_train=N_TRAIN, sanitized=True)


@pytest.fixture(scope="module")
def result(data):
    return keras_mlp.fit_keras(CONFIG, data, seed=SEED)


def test_learns_in_whole_epochs_and_reports_like_train_result(result):
    assert set(result) == RESULT_KEYS
    assert result["steps"] == 50  # 47 steps / 10 an epoch = 4.7 -> 5 epochs, as many steps as fit ran
    assert [h["step"] for h in result["history"]] == [9, 19, 29, 39, 49]
    for h in result["history"]:
        assert h["learning_rate"] == pytest.approx(CONFIG.learning_rate * CONFIG.decay_rate ** (h["step"] / 20))
        assert 0 <= h["minibatch_accuracy"] <= 100 and 0 <= h["valid_accuracy"] <= 100
    assert [h["seconds"] for h in result["history"]] == sorted(h["seconds"] for h in result["history"])
    assert result["history"][-1]["loss"] < result["history"][0]["loss"]
    assert result["valid_accuracy"] > 80 and result["test_accuracy"] > 80  # chance: 10%
    assert result["test_sanitized_accuracy"] > 80 and result["valid_sanitized_accuracy"] > 80
    assert result["history"][-1]["valid_accuracy"] == pytest.approx(result["valid_accuracy"])
    assert result["train_examples"] == N_TRAIN and result["device"] in ("/CPU:0", "/GPU:0")
    assert result["config"] == CONFIG.replace(seed=SEED).to_dict()
    assert json.loads(json.dumps(result)) == result


def test_results_table_accepts_it(result):
    (row,) = tables.results_rows([result], "x")
    assert (row["preset"], row["steps"], row["seed"], row["dataset"]) == ("keras_baseline", 50, SEED, "x")
    assert (row["valid"], row["test"]) == (result["valid_accuracy"], result["test_accuracy"])
    assert row["test_sanitized"] == result["test_sanitized_accuracy"]


def test_no_sanitized_splits_give_none(data):
    plain = {k: v for k, v in data.items() if "sanitized" not in k}
    out = keras_mlp.fit_keras(CONFIG.replace(steps=1, hidden_sizes=()), plain)
    assert out["valid_sanitized_accuracy"] is None and out["test_sanitized_accuracy"] is None
    assert out["steps"] == 10 and len(out["history"]) == 1  # at least one epoch


@pytest.mark.parametrize("steps, epochs", [(47, 5), (45, 5), (44, 4), (3, 1), (100, 10)])
def test_epoch_budget_rounds_half_up_to_whole_epochs(steps, epochs):
    assert keras_mlp.epoch_budget(steps, N_TRAIN, BATCH) == (epochs, 10)


def test_deep_preset_budget():
    deep = presets.get("deep").config
    assert keras_mlp.epoch_budget(deep.steps, 200_000, deep.batch_size) == (4, 1563)  # 6,001 -> 6,252 steps


@pytest.mark.parametrize("hidden_sizes", [(), (1024,), (2048, 1024, 512)])
def test_as_many_parameters_as_our_mlp(hidden_sizes):
    model = keras_mlp.build_model(CONFIG.replace(hidden_sizes=hidden_sizes))
    assert model.count_params() == parameter_count((784, *hidden_sizes, 10))
    assert model.count_params() == sum(int(np.prod(v.shape)) for v in MLP(hidden_sizes).trainable_variables)
    dropouts = [layer.rate for layer in model.layers if isinstance(layer, tf.keras.layers.Dropout)]
    assert dropouts == [CONFIG.dropout_rate] * len(hidden_sizes)


def test_build_mlp_from_sizes_alone():
    """What the benchmarks build: layers, defaults (the course's init, no L2) and a refused init."""
    model = keras_mlp.build_mlp((64, 32), dropout_rate=0.5)
    assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)
    kinds = [(type(layer).__name__, getattr(layer, "units", None) or getattr(layer, "rate", None))
             for layer in model.layers]
    assert kinds == [("Flatten", None), ("Dense", 64), ("Dropout", 0.5), ("Dense", 32), ("Dropout", 0.5),
                     ("Dense", 10)]
    assert [layer.activation.__name__ for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)] == [
        "relu", "relu", "linear"]
    assert model.losses == []  # no L2 unless asked
    first = model.layers[1].kernel.numpy()  # truncated normal of stddev 1: actual stddev 0.88, as ours
    assert first.std() == pytest.approx(0.8796, rel=0.03) and np.abs(first).max() <= 2.0
    he = keras_mlp.build_mlp((8,), init="he").layers[1].kernel.numpy()
    assert he.std() == pytest.approx(math.sqrt(2 / 784), rel=0.05)
    with pytest.raises(ValueError, match="init must be one of"):
        keras_mlp.build_mlp((8,), init="glorot")


def test_l2_term_and_init_agree_with_ours():
    config = CONFIG.replace(hidden_sizes=(256, 64), l2_beta=1e-3)
    model = keras_mlp.build_model(config)
    mlp = MLP(config.hidden_sizes, init="he")
    first = model.layers[1].kernel.numpy()  # He init: actual stddev sqrt(2 / 784), as ours
    assert first.std() == pytest.approx(math.sqrt(2 / 784), rel=0.03)
    assert first.std() == pytest.approx(mlp.weights[0].numpy().std(), rel=0.03)
    dense = [layer for layer in model.layers if isinstance(layer, tf.keras.layers.Dense)]
    rng = np.random.default_rng(0)
    for layer, w, b in zip(dense, mlp.weights, mlp.biases):
        layer.set_weights([w.numpy(), rng.normal(size=b.shape)])  # biases are not penalized
    keras_l2 = float(tf.add_n(model.losses))
    assert keras_l2 == pytest.approx(float(l2_penalty(mlp, config.l2_beta)), rel=1e-6)
    assert keras_l2 == pytest.approx(config.l2_beta / 2 * sum(float(np.sum(w.numpy() ** 2)) for w in mlp.weights),
                                     rel=1e-6)
    assert keras_mlp.build_model(config.replace(l2_beta=0.0)).losses == []


@pytest.mark.parametrize("overrides, word", [
    ({"batching": "offset"}, "batching='offset'"), ({"batch_size": None}, "batch_size=None"),
    ({"deskew": True}, "deskew"), ({"max_shift": 1}, "max_shift=1"),
    ({"max_rotation": 5.0}, "max_rotation"), ({"max_scale": 0.1}, "max_scale"), ({"max_shear": 0.1}, "max_shear"),
])
def test_configs_it_cannot_honour_raise(data, overrides, word):
    with pytest.raises(ValueError, match=f"cannot honour.*{word}"):
        keras_mlp.fit_keras(CONFIG.replace(**overrides), data)


def test_unknown_optimizer_raises():
    config = CONFIG.replace()
    object.__setattr__(config, "optimizer", "rmsprop")  # TrainConfig refuses it; a future one might not
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        keras_mlp.check_config(config)


def test_baseline_config_is_the_deep_preset_without_jitter():
    deep = presets.get("deep").config
    with pytest.raises(ValueError, match=r"input jitter \(max_shift=1, max_rotation=10.0, .*baseline_config\(\) turns"):
        keras_mlp.check_config(deep)
    base = keras_mlp.baseline_config(deep)
    keras_mlp.check_config(base)
    assert (base.max_shift, base.max_rotation, base.max_scale, base.max_shear, base.deskew) == (0, 0, 0, 0, False)
    same = ("hidden_sizes", "init", "dropout_rate", "l2_beta", "optimizer", "learning_rate", "decay_steps",
            "decay_rate", "batch_size", "steps", "seed")
    assert {k: getattr(base, k) for k in same} == {k: getattr(deep, k) for k in same}
