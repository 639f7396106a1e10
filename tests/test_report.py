"""Tests for dnn_tf.report.tables: rows, seed aggregation, markdown and JSON."""

import json
import math
import sys

import pytest

from dnn_tf import files
from dnn_tf.report import tables

DATASET_LINE = "Trained on 6,400 images split from the 8,000-image notMNIST_small sample, not the course's 200,000"


def _result(name, valid, test, sanitized=None, seed=0, steps=3001, seconds=12.34, device="CPU", **config):
    return {"name": name, "config": {"seed": seed, "steps": steps, "hidden_sizes": [], **config},
            "history": [{"step": 0, "loss": 1.0}], "valid_accuracy": valid, "test_accuracy": test,
            "valid_sanitized_accuracy": None, "test_sanitized_accuracy": sanitized,
            "steps": steps, "seconds": seconds, "device": device}


@pytest.fixture
def results():
    return [
        _result("logreg_gd", 78.04, 85.06, steps=801),
        _result("logreg_sgd", 79.5, 86.94, sanitized=86.0),
        _result("relu1024", 86.25, 92.45),
        _result("deep", 90.0, 95.0, 94.0, seed=0, steps=6001),
        _result("deep", 91.0, 96.0, 95.0, seed=1, steps=6001),
        _result("deep", 92.0, 97.0, 96.5, seed=2, steps=6001),
    ]


def test_rows_columns_and_values(results):
    rows = tables.results_rows(results, "notMNIST_small")
    assert len(rows) == 6
    assert all(tuple(r) == tables.ROW_COLUMNS for r in rows)
    gd, sgd, relu = rows[:3]
    assert gd == {"preset": "logreg_gd", "course_test": 82.9, "valid": 78.04, "test": 85.06,
                  "test_sanitized": None, "train_examples": None, "train_on_valid": False, "steps": 801,
                  "seconds": 12.34, "device": "CPU", "seed": 0, "dataset": "notMNIST_small"}
    assert sgd["course_test"] == 86.1 and sgd["test_sanitized"] == 86.0
    assert relu["course_test"] is None
    assert [r["seed"] for r in rows[3:]] == [0, 1, 2]
    assert rows[3]["course_test"] == 97.1


def test_rows_of_a_run_trained_on_valid_have_no_valid_accuracy():
    refit = dict(_result("deep_full", 99.9, 93.5, seed=1, train_on_valid=True), train_examples=7200)
    held = dict(_result("deep", 92.5, 93.0), train_examples=6400)
    rows = tables.results_rows([held, refit], "x")
    assert [(r["valid"], r["test"], r["train_examples"]) for r in rows] == [(92.5, 93.0, 6400),
                                                                           (None, 93.5, 7200)]
    table = tables.results_markdown(rows, DATASET_LINE)
    assert "| Train images |" in table
    assert "| deep_full | — | — | 93.5 | — | 7,200 |" in table
    assert [r["train_on_valid"] for r in rows] == [False, True]
    assert table.count("validation accuracy is not a held-out measure") == 1 and "- **deep_full** trained on" in table
    assert "held-out" not in tables.results_markdown(rows[:1], DATASET_LINE)


def test_rows_reject_result_without_name():
    with pytest.raises(ValueError, match="no name"):
        tables.results_rows([{"config": {}, "test_accuracy": 1.0}], "x")
    with pytest.raises(ValueError, match="no config"):
        tables.results_rows([{"name": "deep", "test_accuracy": 1.0}], "x")
    with pytest.raises(ValueError, match="valid_accuracy"):
        tables.results_rows([_result("deep", "high", 1.0)], "x")


def test_aggregate_seeds_exact(results):
    rows = tables.results_rows(results, "notMNIST_small")
    aggregated = tables.aggregate_seeds(rows)
    assert [a["preset"] for a in aggregated] == ["deep"]  # single-seed presets left out
    deep = aggregated[0]
    assert deep["seeds"] == [0, 1, 2] and deep["n"] == 3 and deep["course_test"] == 97.1
    assert deep["valid"] == pytest.approx({"mean": 91.0, "std": 1.0, "min": 90.0, "max": 92.0})
    assert deep["test"] == pytest.approx({"mean": 96.0, "std": 1.0, "min": 95.0, "max": 97.0})
    s = deep["test_sanitized"]
    assert s["mean"] == pytest.approx(95.1666666667)
    # sample std (ddof=1) of 94, 95, 96.5
    assert s["std"] == pytest.approx(math.sqrt(((94 - 95.1666667) ** 2 + (95 - 95.1666667) ** 2
                                                + (96.5 - 95.1666667) ** 2) / 2))
    assert (s["min"], s["max"]) == (94.0, 96.5)


def test_aggregate_missing_sanitized_and_same_seed():
    rows = tables.results_rows([_result("relu1024", 80, 90, None, seed=0),
                                _result("relu1024", 82, 92, 91.0, seed=1),
                                _result("deep", 1, 2, seed=5), _result("deep", 3, 4, seed=5)], "d")
    aggregated = tables.aggregate_seeds(rows)
    assert len(aggregated) == 1  # deep ran twice with the same seed: not a seed spread
    assert aggregated[0]["test_sanitized"] is None
    assert aggregated[0]["test"]["mean"] == 91.0


def test_summary_one_row_per_preset(results):
    rows = tables.results_rows(results, "notMNIST_small")
    lines = tables.summary_markdown(rows, tables.aggregate_seeds(rows)).splitlines()
    assert lines[0].startswith("| Preset | Course test % | Valid % | Test % | Test (sanitized) % | Seeds |")
    body = {line.split(" | ")[0].strip("| "): line for line in lines[2:]}
    assert list(body) == ["logreg_gd", "logreg_sgd", "relu1024", "deep"]  # the three deep runs are one row
    # sample std of 94, 95, 96.5: 1.26
    assert body["deep"] == "| deep | 97.1 | 91.0 ± 1.0 | 96.0 ± 1.0 | 95.2 ± 1.3 | 0, 1, 2 |"
    assert body["logreg_sgd"] == "| logreg_sgd | 86.1 | 79.5 | 86.9 | 86.0 | 0 |"
    assert body["relu1024"] == "| relu1024 | — | 86.2 | 92.5 | — | 0 |"


def test_markdown_table(results):
    rows = tables.results_rows(results, "notMNIST_small")
    text = tables.results_markdown(rows, DATASET_LINE, tables.aggregate_seeds(rows))
    lines = text.splitlines()
    assert lines[0] == f"**Dataset:** {DATASET_LINE}"
    table = [line for line in lines if line.startswith("| ")]
    header, body = table[0], table[1:]
    assert "Course test %" in header and "Test (sanitized) %" in header
    assert len(body) == 6
    cells = [c.strip() for c in body[0].strip("|").split("|")]
    assert cells == ["logreg_gd", "82.9", "78.0", "85.1", "—", "—", "801", "12.3", "CPU", "0"]
    relu = [c.strip() for c in body[2].strip("|").split("|")]
    assert relu[:5] == ["relu1024", "—", "86.2", "92.5", "—"]
    # column count consistent (GitHub renders the table)
    assert len({line.count("|") for line in lines if line.startswith("|")}) == 1
    assert "- **deep** (3 runs, seeds 0, 1, 2): valid 91.0 ± 1.0 (min 90.0, max 92.0)" in text
    assert "test 96.0 ± 1.0" in text and "course 97.1" in text
    assert "logreg_gd 82.9%: assignment 2" in text
    assert text.endswith("\n")


def test_markdown_without_aggregation_and_empty_description(results):
    rows = tables.results_rows(results[:1], "d")
    text = tables.results_markdown(rows, "Trained on something.")
    assert "± " not in text and "seeds" not in text
    with pytest.raises(ValueError):
        tables.results_markdown(rows, "  ")


def test_describe_dataset():
    assert tables.describe_dataset(6400, 800, 800, "/data/notMNIST_small.tar.gz", source_size=8000) == (
        "Trained on 6,400 images split from the 8,000-image notMNIST_small archive "
        "(valid 800, test 800), not the course's 200,000.")
    assert tables.describe_dataset(6400, 800, 800, "notMNIST_sample.tar.gz", source_size=8000) == (
        "Trained on 6,400 images split from the 8,000-image notMNIST_sample "
        "(valid 800, test 800), not the course's 200,000.")
    full = tables.describe_dataset(200000, 10000, 10000, "notMNIST_large", "notMNIST_small.tar.gz")
    assert full.endswith("tested on 10,000 from notMNIST_small (the course's sizes).")
    smaller = tables.describe_dataset(50000, 5000, 5000, "notMNIST_large", "notMNIST_small")
    assert "the course used 200,000 / 10,000 / 10,000" in smaller
    with pytest.raises(ValueError):
        tables.describe_dataset(-1, 0, 0, "x")


def test_json_roundtrip(results, tmp_path):
    import numpy as np

    rows = tables.results_rows(results, "notMNIST_small")
    rows[0]["seconds"] = np.float32(1.5)  # numpy scalars become plain floats
    aggregated = tables.aggregate_seeds(rows)
    obj = tables.results_json(rows, "notMNIST_small", aggregated,
                              {"versions": {"python": sys.version.split()[0]}, "nan": float("nan")})
    assert set(obj) == {"schema", "dataset", "course_figures", "runs", "aggregated", "extra"}
    path = tmp_path / "results.json"
    files.write_json(path, obj)
    back = json.loads(path.read_text())
    assert back["runs"][0]["seconds"] == 1.5 and back["runs"][0]["course_test"] == 82.9
    assert len(back["runs"]) == 6 and back["aggregated"][0]["preset"] == "deep"
    assert back["course_figures"]["deep"]["test_accuracy"] == 97.1
    assert "assignment 3" in back["course_figures"]["deep"]["source"]
    assert back["extra"]["nan"] is None  # strict JSON, no NaN token
    json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"non-standard {c}"))
    empty = tables.results_json([], "d")
    assert empty["runs"] == [] and empty["aggregated"] == [] and empty["extra"] == {}


def test_report_does_not_import_tensorflow():
    import subprocess

    code = "import sys, dnn_tf.report.tables; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
