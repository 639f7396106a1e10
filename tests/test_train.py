"""Training loop: learning, schedules, determinism, resume, NaN guard, export, batching, options."""

from __future__ import annotations

import glob
import json
import logging
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from fixtures import RESULT_KEYS
from fixtures import make_stripes_dataset as make_data

from dnn_tf.data import dataset
from dnn_tf.model import MLP
from dnn_tf.notmnist import DataError
from dnn_tf.training import inference, inputs, loop
from dnn_tf.training.config import RunSettings, TrainConfig
from dnn_tf.training.presets import Preset

HISTORY_METRICS = ("step", "loss", "minibatch_accuracy", "valid_accuracy", "learning_rate")


@pytest.fixture(scope="module")
def data():
    return make_data()


def small(**overrides) -> Preset:
    """A tiny run: config and settings fields in one call."""
    base = dict(learning_rate=0.05, batch_size=32, steps=61, log_every=20, checkpoint_every=0)
    base.update(overrides)
    return Preset("tiny", TrainConfig(), RunSettings()).replace(**base)


def fit(preset: Preset, data, **kwargs) -> loop.TrainResult:
    return loop.train_and_evaluate(preset.config, data, preset.settings, name=preset.name, **kwargs)


class Interrupt(Exception):
    pass


class RaiseOn(logging.Handler):
    """A log handler that raises ``Interrupt`` at the first message starting with ``prefix``."""

    def __init__(self, prefix: str):
        super().__init__(logging.INFO)
        self.prefix = prefix

    def emit(self, record):
        if record.getMessage().startswith(self.prefix):
            raise Interrupt


def metrics(history):
    return [{k: h[k] for k in HISTORY_METRICS} for h in history]


# --------------------------------------------------------------------------- learning


def test_loss_falls_and_logs_course_lines(data, log_lines):
    lines = log_lines
    result = fit(small(steps=101, log_every=25), data)
    assert [h["step"] for h in result.history] == [0, 25, 50, 75, 100]
    assert result.history[-1]["loss"] < result.history[0]["loss"] / 3
    assert result.valid_accuracy > 80 and result.test_accuracy > 80
    assert result.steps == 101 and result.seconds > 0
    assert result.device in ("/CPU:0", "/GPU:0")
    assert any(line.startswith(f"Training on {result.device}") for line in lines)
    assert "Minibatch loss at step 25: " in "\n".join(lines)
    assert sum(line.startswith("Minibatch accuracy: ") for line in lines) == 5
    assert lines[-1].startswith("Test accuracy: ")
    assert result.valid_sanitized_accuracy is None and result.test_sanitized_accuracy is None


def test_one_hidden_layer_overfits_64_examples(data):
    config = small(hidden_sizes=(64,), init="he", learning_rate=0.3, train_subset=64, batch_size=None, steps=150,
                   log_every=50)
    result = fit(config, data)
    assert result.history[-1]["minibatch_accuracy"] == 100.0
    probs = inference.predict(result.model, data["train_dataset"][:64])
    assert np.mean(np.argmax(probs, 1) == data["train_labels"][:64]) == 1.0
    assert result.history[-1]["loss"] < 0.05


@pytest.mark.parametrize("staircase", [False, True])
def test_learning_rate_decay_follows_schedule(data, staircase):
    config = small(learning_rate=0.1, decay_steps=10, decay_rate=0.5, staircase=staircase, steps=46, log_every=5)
    result = fit(config, data)
    for h in result.history:
        exponent = h["step"] // 10 if staircase else h["step"] / 10
        assert h["learning_rate"] == pytest.approx(0.1 * 0.5 ** exponent, rel=1e-5)
    assert result.history[-1]["learning_rate"] < 0.1 * 0.5 ** 4 * 1.001


def test_constant_learning_rate_without_decay(data):
    result = fit(small(steps=21, log_every=10), data)
    assert [h["learning_rate"] for h in result.history] == pytest.approx([0.05] * 3)


# --------------------------------------------------------------------------- determinism


def test_same_seed_same_metrics_other_seed_differs(data):
    config = small(hidden_sizes=(16,), dropout_rate=0.3, max_shift=1, max_rotation=10, max_shear=0.2, seed=7,
                   steps=41)
    a = fit(config, data)
    b = fit(config, data)
    c = fit(config.replace(seed=8), data)
    assert metrics(a.history) == metrics(b.history)
    assert (a.valid_accuracy, a.test_accuracy) == (b.valid_accuracy, b.test_accuracy)
    assert [h["loss"] for h in a.history] != [h["loss"] for h in c.history]


def test_steps_per_call_gives_the_same_history(data):
    config = small(hidden_sizes=(16,), dropout_rate=0.2, max_shift=1, max_scale=0.1, steps=53, log_every=10,
                   batch_size=50)
    one = fit(config, data)
    many = fit(config.replace(steps_per_call=7), data)
    assert [h["step"] for h in many.history] == [0, 10, 20, 30, 40, 50, 52]
    assert metrics(many.history) == metrics(one.history)
    assert many.steps == one.steps == 53


def test_chunk_plan_lands_on_log_and_checkpoint_steps():
    config = small(steps=23, log_every=5, checkpoint_every=4, steps_per_call=3)
    plan = loop.chunk_plan(0, config.config.steps, config.settings)
    assert [end for end, _, log, _ in plan if log] == [0, 5, 10, 15, 20, 22]
    assert [end + 1 for end, _, _, ckpt in plan if ckpt] == [4, 8, 12, 16, 20]
    assert all(1 <= count <= 3 for _, count, _, _ in plan)
    assert sum(count for _, count, _, _ in plan) == 23
    ends = [end for end, *_ in plan]
    assert ends == sorted(ends) and ends[-1] == 22
    assert loop.chunk_plan(10, 23, config.settings)[0][:2] == (10, 1)  # a log step is a chunk of its own end
    assert loop.chunk_plan(23, 23, config.settings) == []


# --------------------------------------------------------------------------- checkpoints, resume, divergence


def test_resume_after_interruption_matches_uninterrupted_run(data, tmp_path, log_lines):
    config = small(hidden_sizes=(16,), dropout_rate=0.2, steps=61, log_every=10, checkpoint_every=20)
    full = fit(config, data, out_dir=str(tmp_path / "full"))

    out = str(tmp_path / "cut")
    crash_at_step_50 = RaiseOn("Minibatch loss at step 50")
    logging.getLogger("dnn_tf").addHandler(crash_at_step_50)
    try:
        with pytest.raises(Interrupt):
            fit(config, data, out_dir=out)
    finally:
        logging.getLogger("dnn_tf").removeHandler(crash_at_step_50)
    assert tf.train.latest_checkpoint(os.path.join(out, "checkpoints")).endswith("ckpt-40")
    resumed = fit(config, data, out_dir=out, resume=True)
    assert any("Resumed from" in line and "step 40" in line for line in log_lines)
    assert resumed.steps == 61
    assert [h["step"] for h in resumed.history] == [h["step"] for h in full.history]
    for a, b in zip(metrics(resumed.history), metrics(full.history)):
        assert a == pytest.approx(b, rel=1e-5, abs=1e-5)
    assert resumed.valid_accuracy == pytest.approx(full.valid_accuracy, abs=0.5)
    with open(os.path.join(out, "metrics.json")) as f:
        saved = json.load(f)
    assert [h["step"] for h in saved["history"]] == [0, 10, 20, 30, 40, 50, 60]
    assert saved["steps"] == 61


def test_resume_refuses_a_different_config(data, tmp_path):
    config = small(steps=21, checkpoint_every=10)
    fit(config, data, out_dir=str(tmp_path))
    with pytest.raises(ValueError, match="different config.*hidden_sizes"):
        fit(config.replace(hidden_sizes=(8,)), data, out_dir=str(tmp_path), resume=True)
    # a longer run of the same config continues from the final checkpoint
    more = fit(config.replace(steps=31), data, out_dir=str(tmp_path), resume=True)
    assert more.steps == 31 and [h["step"] for h in more.history] == [0, 20, 30]


def test_nan_guard_names_step_and_keeps_last_checkpoint_finite(data, tmp_path, monkeypatch):
    bad = dict(data)
    bad["train_dataset"] = data["train_dataset"][:200].copy()
    bad["train_labels"] = data["train_labels"][:200]
    bad["train_dataset"][125, 3, 3] = np.nan  # offset batching, batch 10: example 125 is in step 12's batch
    config = small(batching="offset", batch_size=10, steps=50, log_every=100, checkpoint_every=5)
    with pytest.raises(DataError, match=r"train_dataset\[125\] has NaN"):  # refused before training ...
        fit(config, bad, out_dir=str(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()
    monkeypatch.setattr(dataset, "validate", lambda d: None)  # ... so, to test the guard, let it through
    with pytest.raises(loop.TrainingDiverged) as err:
        fit(config, bad, out_dir=str(tmp_path))
    message = str(err.value)
    assert "at step 12" in message and "lower the learning rate" in message and "ckpt-10" in message
    ckpt = tf.train.latest_checkpoint(os.path.join(tmp_path, "checkpoints"))
    assert ckpt.endswith("ckpt-10")
    reader = tf.train.load_checkpoint(ckpt)
    weights = [reader.get_tensor(name) for name, _ in tf.train.list_variables(ckpt) if "model/" in name]
    assert weights and all(np.all(np.isfinite(w)) for w in weights)
    assert not os.path.exists(os.path.join(tmp_path, "metrics.json"))


def test_huge_learning_rate_diverges(data):
    config = small(hidden_sizes=(64, 64), learning_rate=1e6, steps=200, log_every=100)
    with pytest.raises(loop.TrainingDiverged, match=r"at step \d+; lower the learning rate \(now 1e\+06"):
        fit(config, data)


# --------------------------------------------------------------------------- export


@pytest.mark.parametrize("deskew", [False, True])
def test_saved_model_reloads_with_same_predictions(data, tmp_path, deskew):
    config = small(hidden_sizes=(16,), dropout_rate=0.5, steps=21, log_every=10, checkpoint_every=10, deskew=deskew)
    result = fit(config, data, out_dir=str(tmp_path))
    assert result.model.deskew is deskew  # so the export below must carry the deskewing too
    images = data["test_dataset"][:50]
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    out = loaded.signatures["serving_default"](images=tf.constant(images))
    assert set(out) == {"logits", "probabilities"}
    np.testing.assert_allclose(out["logits"].numpy(), result.model(images).numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["probabilities"].numpy().sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(inference.predict(str(tmp_path), images, batch_size=7),
                               inference.predict(result.model, images), rtol=1e-5, atol=1e-6)
    exported = inference.layer_weights(str(tmp_path))  # what the weight plots draw
    assert [w.shape for w in exported] == [(784, 16), (16, 10)]
    for got, want in zip(exported, result.model.weights):
        np.testing.assert_array_equal(got, want.numpy())
    with open(tmp_path / "metrics.json") as f:
        saved = json.load(f)
    assert set(saved) == RESULT_KEYS
    assert saved["test_accuracy"] == result.test_accuracy and saved["config"]["hidden_sizes"] == [16]
    assert glob.glob(str(tmp_path / "tb" / "events.out.tfevents.*"))
    # saving again replaces the SavedModel in place
    inference.save_model(MLP((16,), seed=5), str(tmp_path / "saved_model"))
    again = tf.saved_model.load(str(tmp_path / "saved_model")).signatures["serving_default"](images=tf.constant(images))
    np.testing.assert_allclose(again["logits"].numpy(), MLP((16,), seed=5)(images).numpy(), rtol=1e-5, atol=1e-5)


def test_predict_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="shape"):
        inference.predict(MLP(), np.zeros((3, 784), np.float32))
    with pytest.raises(FileNotFoundError, match="no SavedModel"):
        inference.predict(str(tmp_path), np.zeros((3, 28, 28), np.float32))


def test_sanitized_accuracies_reported_when_present(tmp_path, log_lines):
    data = make_data(sanitized=True)
    lines = log_lines
    result = fit(small(steps=21, log_every=10), data, out_dir=str(tmp_path))
    assert 0 <= result.valid_sanitized_accuracy <= 100 and 0 <= result.test_sanitized_accuracy <= 100
    predicted = inference.predict(result.model, data["test_dataset_sanitized"]).argmax(1)
    expected = predicted == data["test_labels_sanitized"]
    assert result.test_sanitized_accuracy == pytest.approx(100 * expected.mean())
    assert any(line.startswith("Sanitized test accuracy") for line in lines)
    with open(tmp_path / "metrics.json") as f:
        assert json.load(f)["test_sanitized_accuracy"] == result.test_sanitized_accuracy


# --------------------------------------------------------------------------- batching and jitter


def indexed(n: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Images whose every pixel is the example's index, labels = index."""
    images = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 28, 28)).copy()
    return tf.constant(images), tf.constant(np.arange(n, dtype=np.int32))


def batches(config: TrainConfig, n: int, steps: range) -> list[np.ndarray]:
    images, labels = indexed(n)
    state = loop.create_train_state(config.config, n)
    batch = inputs.make_batch_fn(config.config, images, labels, state.permutation, state.epoch)
    fn = tf.function(lambda step: batch(step))
    out = []
    for s in steps:
        x, y = fn(tf.constant(s, tf.int64))
        np.testing.assert_array_equal(x.numpy()[:, 0, 0], y.numpy())
        out.append(y.numpy())
    return out


def test_offset_batching_is_the_course_formula():
    n, b = 100, 16
    got = batches(small(batching="offset", batch_size=b), n, range(20))
    for step, idx in enumerate(got):
        offset = (step * b) % (n - b)
        np.testing.assert_array_equal(idx, np.arange(offset, offset + b))
    for idx in batches(small(batching="offset", batch_size=n), n, range(3)):  # n == b: always the whole set
        np.testing.assert_array_equal(idx, np.arange(n))


def test_shuffle_batching_visits_each_example_once_per_epoch():
    n, b = 50, 8  # 6 batches per epoch, 2 examples left out of each epoch
    got = batches(small(batch_size=b, seed=3), n, range(12))
    epoch0, epoch1 = np.concatenate(got[:6]), np.concatenate(got[6:])
    assert len(set(epoch0)) == 48 and len(set(epoch1)) == 48
    assert not np.array_equal(epoch0, epoch1)
    again = batches(small(batch_size=b, seed=3), n, range(6, 8))  # a restart mid-way gives the same batches
    np.testing.assert_array_equal(again[0], got[6])
    np.testing.assert_array_equal(again[1], got[7])
    other = batches(small(batch_size=b, seed=4), n, range(1))
    assert not np.array_equal(other[0], got[0])


def test_full_batch_uses_every_example_each_step(data):
    config = small(batch_size=None, train_subset=100, steps=11, log_every=10)
    assert len(batches(config, 100, range(1))[0]) == 100
    result = fit(config, data)
    assert result.steps == 11 and [h["step"] for h in result.history] == [0, 10]
    # the minibatch is the whole (sub)set: its accuracy is a multiple of 1%
    assert all(h["minibatch_accuracy"] == pytest.approx(round(h["minibatch_accuracy"]), abs=1e-4)
               for h in result.history)


def test_train_on_valid_appends_the_validation_split(data):
    n_train, n_valid = len(data["train_labels"]), len(data["valid_labels"])
    arrays = loop.training_arrays(small(train_on_valid=True, train_subset=100).config, data)
    images, labels = arrays["train"]
    assert images.shape == (100 + n_valid, 28, 28)
    np.testing.assert_array_equal(images[100:], data["valid_dataset"])
    np.testing.assert_array_equal(labels[:100], data["train_labels"][:100])
    np.testing.assert_array_equal(arrays["valid"][1], data["valid_labels"])  # still evaluated
    plain = fit(small(steps=3, log_every=1), data)
    refit = fit(small(steps=3, log_every=1, train_on_valid=True), data)
    assert (plain.train_examples, refit.train_examples) == (n_train, n_train + n_valid)
    assert refit.to_dict()["config"]["train_on_valid"] is True


# --------------------------------------------------------------------------- options


def test_xla_runs_on_cpu_and_learns_like_the_plain_step(data):
    config = small(hidden_sizes=(32,), init="he", learning_rate=0.1, steps=121, log_every=60)
    base = fit(config, data)
    xla = fit(config.replace(xla=True, steps_per_call=20), data)
    assert base.valid_accuracy > 90
    assert abs(xla.valid_accuracy - base.valid_accuracy) <= 5
    assert math.isfinite(xla.history[-1]["loss"]) and xla.steps == 121
    # The same step: XLA changes the float rounding (and draws its own random numbers: offset batching
    # has none), not the math.
    first = [fit(config.replace(batching="offset", steps=1, **xla), data).history[0]["loss"]
             for xla in ({}, dict(xla=True))]
    np.testing.assert_allclose(first[1], first[0], rtol=1e-5)


@pytest.mark.parametrize("optimizer", ["momentum", "adam"])
def test_other_optimizers_learn(data, optimizer):
    config = small(optimizer=optimizer, learning_rate=0.01, steps=61, log_every=30)
    result = fit(config, data)
    assert result.history[-1]["loss"] < result.history[0]["loss"] / 2


def test_bad_inputs_raise_value_error(data):
    with pytest.raises(ValueError, match="xla is not supported with strategy 'mirrored'"):
        fit(small(strategy="mirrored", xla=True), data)
    with pytest.raises(ValueError, match="test_labels"):
        fit(small(), {k: v for k, v in data.items() if k != "test_labels"})
    with pytest.raises(ValueError, match="larger than the training set"):
        fit(small(batch_size=64, train_subset=10), data)
    with pytest.raises(ValueError, match="out_dir"):
        fit(small(), data, resume=True)
    wrong = dict(data, valid_labels=data["valid_labels"] + 10)
    with pytest.raises(ValueError, match="0..9"):
        fit(small(), wrong)


def test_result_to_dict_is_json_without_model(data):
    result = fit(small(steps=3, log_every=1), data)
    d = result.to_dict()
    assert set(d) == RESULT_KEYS
    assert len(d["history"]) == 3 and set(d["history"][0]) == set(HISTORY_METRICS) | {"seconds"}
    json.dumps(d)


def test_the_loop_trains_with_the_cheaper_input_gradient_which_changes_no_number():
    from dnn_tf.training import speed

    model = loop.create_model(TrainConfig(hidden_sizes=(32, 16), init="he"))
    assert model.matmul is speed.matmul_cheap_input_gradient
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-0.5, 0.5, (64, 784)).astype(np.float32))
    w = tf.constant(rng.normal(size=(784, 32)).astype(np.float32))
    dy = tf.constant(rng.normal(size=(64, 32)).astype(np.float32))
    grads = []
    for matmul in (tf.matmul, speed.matmul_cheap_input_gradient):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            out = matmul(x, w)
        grads.append([out, *tape.gradient(out, [x, w], output_gradients=dy)])
    for plain, cheap in zip(*grads):  # the same sums: equal up to float rounding (bit-identical here)
        np.testing.assert_allclose(cheap.numpy(), plain.numpy(), rtol=1e-6, atol=1e-6)
