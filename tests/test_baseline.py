"""Tests of dnn_tf.reference.scipy_logreg (scipy logistic regression) and scripts/baseline_logreg.py."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.optimize import approx_fprime, check_grad

from dnn_tf.reference.scipy_logreg import (
    LogRegParams,
    accuracy_percent,
    fit_logreg,
    loss_and_grad,
    predict,
    run_baseline,
)

ROOT = Path(__file__).resolve().parents[1]


def _blobs(n, d=20, k=4, spread=1.0, seed=0):
    """Gaussian classes around random centres, unit noise."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(123).normal(scale=spread, size=(k, d))
    y = rng.integers(0, k, n)
    return (centres[y] + rng.normal(size=(n, d))).astype(np.float32), y.astype(np.int32)


# ---------------------------------------------------------------- objective

def test_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(15, 6))
    y = rng.integers(0, 3, 15)
    theta = rng.normal(size=6 * 3 + 3)
    for l2 in (0.0, 0.7):
        f = lambda t, l2=l2: loss_and_grad(t, x, y, 3, l2)[0]  # noqa: E731
        g = lambda t, l2=l2: loss_and_grad(t, x, y, 3, l2)[1]  # noqa: E731
        assert check_grad(f, g, theta) <= 1e-6 * np.linalg.norm(g(theta))
        np.testing.assert_allclose(g(theta), approx_fprime(theta, f, 1e-7), rtol=1e-4, atol=1e-6)


def test_objective_values():
    x = np.ones((4, 2))
    y = np.array([0, 1, 2, 0])
    f, grad = loss_and_grad(np.zeros(2 * 3 + 3), x, y, 3, 1.0)
    assert f == pytest.approx(math.log(3))  # uniform softmax, no penalty at W = 0
    # Penalty is l2 / (2 n) ||W||^2 on the weights only (the bias is not penalized).
    theta = np.zeros(9)
    theta[:6] = 2.0
    theta[6:] = 5.0
    f_w, _ = loss_and_grad(theta, np.zeros((4, 2)), y, 3, 1.0)
    assert f_w == pytest.approx(math.log(3) + 0.5 * 1.0 / 4 * 6 * 4.0)


def test_log_sum_exp_is_stable_for_huge_logits():
    x = np.array([[1e4, -1e4], [-1e4, 1e4]])
    y = np.array([0, 1])
    theta = np.concatenate([np.eye(2).ravel(), np.zeros(2)])
    f, grad = loss_and_grad(theta, x, y, 2, 0.0)
    assert np.isfinite(f) and np.all(np.isfinite(grad))
    assert f == pytest.approx(0.0, abs=1e-12)
    f_wrong, _ = loss_and_grad(theta, x, y[::-1].copy(), 2, 0.0)
    assert f_wrong == pytest.approx(2e4)


# ---------------------------------------------------------------- fitting

def test_fits_linearly_separable_problem():
    x, y = _blobs(300, d=2, k=3, spread=20.0, seed=1)
    params = fit_logreg(x, y, l2=1e-3, max_iter=500)
    assert isinstance(params, LogRegParams)
    assert params.weights.shape == (2, 3) and params.bias.shape == (3,)
    assert accuracy_percent(params, x, y) == 100.0
    assert params.iterations >= 1


def test_reaches_a_stationary_point():
    x, y = _blobs(200, d=10, k=3, seed=2)
    params = fit_logreg(x, y, l2=1.0, max_iter=1000, tol=1e-8)
    assert params.converged
    theta = np.concatenate([params.weights.ravel(), params.bias])
    f, grad = loss_and_grad(theta, x.astype(np.float64), y, 3, 1.0)
    assert np.max(np.abs(grad)) < 1e-5
    assert f == pytest.approx(params.loss)


def test_stronger_l2_gives_smaller_weights():
    x, y = _blobs(200, d=10, k=3, seed=3)
    weak = fit_logreg(x, y, l2=0.01, max_iter=500)
    strong = fit_logreg(x, y, l2=100.0, max_iter=500)
    assert np.linalg.norm(strong.weights) < 0.5 * np.linalg.norm(weak.weights)


def test_more_training_data_does_not_hurt():
    x_test, y_test = _blobs(2000, seed=10)
    x_train, y_train = _blobs(2000, seed=11)
    accs = [accuracy_percent(fit_logreg(x_train[:n], y_train[:n], num_classes=4), x_test, y_test)
            for n in (12, 100, 2000)]
    assert accs[0] <= accs[1] <= accs[2]
    assert accs[2] > accs[0] + 5.0


def test_predict_accepts_images():
    rng = np.random.default_rng(0)
    images = rng.uniform(-0.5, 0.5, (40, 28, 28)).astype(np.float32)
    labels = (images[:, 0, 0] > 0).astype(np.int32)
    params = fit_logreg(images, labels, max_iter=50)
    assert params.weights.shape == (784, 2)
    np.testing.assert_array_equal(predict(params, images), predict(params, images.reshape(40, 784)))
    assert predict(params, images).dtype.kind == "i"


@pytest.mark.parametrize("x, y", [
    (np.zeros(10), np.zeros(10, int)),                   # 1-D input
    (np.zeros((10, 3)), np.zeros(9, int)),               # length mismatch
    (np.zeros((10, 3)), np.zeros((10, 2), int)),         # one-hot labels
    (np.zeros((0, 3)), np.zeros(0, int)),                # empty
    (np.zeros((4, 3)), np.array([0, 1, 2, -1])),         # negative label
    (np.zeros((4, 3)), np.array([0.0, 1.0, 0.0, 1.0])),  # float labels
    (np.zeros((4, 3)), np.zeros(4, int)),                # a single class
    (np.zeros((2, 2, 2, 2)), np.array([0, 1])),          # 4-D input
])
def test_wrong_inputs_raise(x, y):
    with pytest.raises(ValueError):
        fit_logreg(x, y)


def test_bad_options_and_predict_shape_raise():
    x, y = _blobs(20, d=3, k=2)
    with pytest.raises(ValueError):
        fit_logreg(x, y, l2=-1.0)
    with pytest.raises(ValueError):
        fit_logreg(x, y, max_iter=0)
    with pytest.raises(ValueError):
        fit_logreg(x, y, num_classes=1)
    params = fit_logreg(x, y, max_iter=5)
    with pytest.raises(ValueError):
        predict(params, np.zeros((2, 4)))
    with pytest.raises(ValueError):
        accuracy_percent(params, x, y[:5])


# ---------------------------------------------------------------- run_baseline

def _course_dict(n_train=300, n_eval=200, seed=0):
    """A tiny stand-in for the notMNIST pickle: 28x28 float32 images, int32 labels."""
    def split(n, s):
        x, y = _blobs(n, d=784, k=10, spread=0.3, seed=s)
        return (x.reshape(n, 28, 28) * 0.2).astype(np.float32), y.astype(np.int32)
    d = {}
    for name, n, s in (("train", n_train, seed), ("valid", n_eval, seed + 1), ("test", n_eval, seed + 2)):
        d[f"{name}_dataset"], d[f"{name}_labels"] = split(n, s)
    return d


def test_run_baseline_rows(log_lines):
    data = _course_dict()
    rows = run_baseline(data, sizes=(20, 300), max_iter=50)
    lines = [line for line in log_lines if "train_size=" in line]
    assert [r["train_size"] for r in rows] == [20, 300]
    for r in rows:
        assert set(r) == {"train_size", "test_accuracy", "valid_accuracy", "iterations", "seconds"}
        assert 0.0 <= r["test_accuracy"] <= 100.0 and 0.0 <= r["valid_accuracy"] <= 100.0
        assert 1 <= r["iterations"] <= 50 and r["seconds"] >= 0.0
    assert rows[1]["test_accuracy"] > rows[0]["test_accuracy"]
    assert rows[1]["test_accuracy"] > 50.0  # well above chance (10%)
    assert len(lines) == 2 and "train_size=300" in lines[1]
    json.dumps(rows)  # plain Python types


def test_run_baseline_rejects_bad_input():
    data = _course_dict(n_train=30, n_eval=10)
    with pytest.raises(ValueError, match="sizes"):
        run_baseline(data, sizes=(31,))
    with pytest.raises(ValueError, match="sizes"):
        run_baseline(data, sizes=())
    del data["test_labels"]
    with pytest.raises(ValueError, match="test_labels"):
        run_baseline(data, sizes=(10,))


def test_baseline_does_not_import_tensorflow():
    code = "import sys, dnn_tf.reference.scipy_logreg; assert 'tensorflow' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# ---------------------------------------------------------------- script

def _script():
    spec = importlib.util.spec_from_file_location("baseline_logreg", ROOT / "scripts" / "baseline_logreg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv", [["--sizes", "50,abc"], ["--sizes", "0"], ["--max-iter", "x"]])
def test_script_bad_arguments_exit_2_on_one_line(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _script().main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "error:" in err


def test_script_missing_file_one_line_error(tmp_path, capsys):
    pytest.importorskip("dnn_tf.data.dataset")
    assert _script().main(["--data", str(tmp_path / "missing.pickle")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("baseline_logreg: error:") and err.count("\n") == 1


def test_script_prints_table_and_writes_json(tmp_path, capsys):
    pytest.importorskip("dnn_tf.data.dataset")
    from dnn_tf.files import save_pickle

    data = _course_dict(n_train=120, n_eval=50)
    # The merged pickle also carries the sanitized splits.
    for split in ("valid", "test"):
        data[f"{split}_dataset_sanitized"] = data[f"{split}_dataset"]
        data[f"{split}_labels_sanitized"] = data[f"{split}_labels"]
    save_pickle(tmp_path / "notMNIST.pickle", data)
    out = tmp_path / "rows.json"
    code = _script().main(["--data", str(tmp_path / "notMNIST.pickle"), "--sizes", "30,120",
                           "--max-iter", "20", "--out", str(out)])
    assert code == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["train_size", "test_acc"]
    assert [line.split()[0] for line in table[1:]] == ["30", "120"]
    rows = json.loads(out.read_text())
    assert [r["train_size"] for r in rows] == [30, 120]
