"""scripts/tune_deep.py: candidates over seeds and cross-validation folds, validation only."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_stripes_dataset

from dnn_tf import files
from dnn_tf.cli import UsageError

SCRIPT = Path(__file__).absolute().parents[1] / "scripts" / "tune_deep.py"


@pytest.fixture(scope="module")
def tune():
    spec = importlib.util.spec_from_file_location("tune_deep", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # runs only under __main__
    return module


@pytest.fixture(scope="module")
def data():
    return make_stripes_dataset(n_train=1500, n_eval=300)  # 1,800 train + valid: folds 0, 1 of 800


def test_fold_splits_hold_out_one_slice_of_train_and_valid_and_drops_test(tune, data):
    both = np.concatenate([data["train_dataset"], data["valid_dataset"]])
    labels = np.concatenate([data["train_labels"], data["valid_labels"]])
    size = 800
    splits = dict(tune.fold_splits(data, (0, 1), size))
    assert list(splits) == [0, 1]
    for fold, split in splits.items():
        held = slice(fold * size, (fold + 1) * size)
        np.testing.assert_array_equal(split["valid_dataset"], both[held])
        np.testing.assert_array_equal(split["valid_labels"], labels[held])
        np.testing.assert_array_equal(split["test_dataset"], both[held])  # the real test split is never used
        assert len(split["train_dataset"]) == len(both) - size == len(split["train_labels"])
        rest = np.delete(np.arange(len(both)), np.arange(len(both))[held])
        np.testing.assert_array_equal(split["train_dataset"], both[rest])
        assert set(split) == {f"{s}_{k}" for s in ("train", "valid", "test") for k in ("dataset", "labels")}
    with pytest.raises(UsageError, match="fold 2 is outside 0..1"):
        next(tune.fold_splits(data, (0, 2), size))  # every fold is checked before the first is handed out
    by_default = dict(tune.fold_splits(data, (5,)))  # folds as large as the validation split: 6 of 300
    np.testing.assert_array_equal(by_default[5]["valid_labels"], labels[1500:1800])
    with pytest.raises(UsageError, match="fold 6 is outside 0..5"):
        next(tune.fold_splits(data, (6,)))


def test_folds_run_each_candidate_per_fold_and_refuse_with_test(tune, data, tmp_path, capsys):
    path = tmp_path / "d.pickle"
    files.save_pickle(path, data)
    out = tmp_path / "cv.json"
    common = ["--data", str(path), "--out", str(out), "--preset", "logreg_sgd", "--seeds", "0",
              "--set", "steps=11", "--set", "log_every=10", "--fold-size", "800"]
    assert tune.main(common + ["--folds", "0,1", "--with-test"]) == 2
    assert "--folds leaves the test split out" in capsys.readouterr().err
    assert tune.main(common + ["--folds", "0,2"]) == 2  # fold 2 does not exist: nothing is trained
    assert "fold 2 is outside 0..1" in capsys.readouterr().err and not out.exists()
    assert tune.main(common + ["--folds", "0,1", "--candidate", "a", "--candidate", "b", "learning_rate=0.01"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["candidate"], r["fold"]) for r in rows] == [("a", 0), ("b", 0), ("a", 1), ("b", 1)]
    assert all("test_accuracy" not in r for r in rows)
    summary = {s["candidate"]: s for s in json.loads(out.read_text())["summary"]}
    assert summary["a"]["runs"] == summary["b"]["runs"] == 2  # mean over the folds
    assert "fold 1" in capsys.readouterr().out


def test_paired_folds_pair_each_candidate_with_base_fold_by_fold(tune, tmp_path, capsys):
    rows = [{"candidate": c, "fold": f, "seed": s, "valid_accuracy": v, "seconds": 1.0, "overrides": {}}
            for c, f, s, v in [("base", 0, 0, 90.0), ("base", 0, 1, 92.0), ("base", 1, 0, 80.0),
                               ("x", 0, 0, 92.0), ("x", 1, 0, 79.0), ("y", 1, 0, 81.0), ("z", None, 0, 99.0)]]
    paired = {p["candidate"]: p for p in tune.paired_folds(rows)}
    assert set(paired) == {"base", "x", "y"}  # z has no fold runs
    assert paired["base"]["folds"] == {0: 91.0, 1: 80.0} and paired["base"]["gain"] is None
    assert paired["x"]["gain"] == pytest.approx(0.0) and paired["x"]["ahead"] == 1  # +1.0 on fold 0, -1.0 on 1
    assert paired["y"]["gain"] == pytest.approx(1.0) and (paired["y"]["ahead"], paired["y"]["paired_folds"]) == (1, 1)
    assert tune.paired_folds(rows, baseline="missing") == []
    out = tmp_path / "cv.json"
    assert tune.main(["--out", str(out), "--report"]) == 2  # nothing to report yet
    files.write_json(out, {"rows": rows})
    assert tune.main(["--out", str(out), "--report"]) == 0
    table = out.with_suffix(".md").read_text()
    assert "| y | - / 81.00 | 81.00 | +1.00 | 1/1 |" in table and table in capsys.readouterr().out
