"""The exercises of ``make exercises`` (scripts/make_exercises.py): the notebooks with the solution cells emptied.

Run blank on the fixture archive in QUICK mode, every cell runs and each check says ``NOT YET`` with what is
missing, in one plain line; then, in the same kernel, typical wrong solutions get the check's message of what is
wrong. (With their solutions in, the exercises are the notebooks: tests/test_notebooks.py::test_notebook_runs
runs them, every check PASSED.)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
pytest.importorskip("nbclient")
from test_notebooks import (  # noqa: E402
    CHECK_NAME,
    NAMES,
    NOTEBOOKS,
    check_outputs,
    notebook_client,
    quick_environment,
    stderr_outputs,
    tags,
    workspace,  # noqa: F401 - the module's fixture
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import make_exercises  # noqa: E402

# What each check of a blank exercise reports missing: the first name its problem's solution defines.
MISSING = {
    "1_notmnist.ipynb": {"Problem 3": "counts", "Problem 5": "overlap", "Problem 6": "rows"},
    "2_fullyconnected.ipynb": {"Problem (one hidden layer)": "relu_variables"},
    "3_regularization.ipynb": {"Problem 1 (L2)": "l2_loss", "Problem 2 (overfitting)": "overfit",
                               "Problem 3 (dropout)": "dropout_logits", "Problem 4 (the best model)": "best_config"},
}
# Wrong solutions, run after the blank exercise in its kernel: (code, the problem whose check runs next,
# what the check must say).
WRONG = {
    "1_notmnist.ipynb": [
        ('counts = {split: [1] * 10 for split in ("train", "valid", "test")}', "Problem 3",
         r"train: you count \[1, 1, 1, 1, 1, 1, 1, 1, 1, 1\], the labels hold \[16, 16,"),
        ('overlap = {"train-valid": 0, "train-test": 0, "valid-test": 0}', "Problem 5",
         r"train-test: you count 0, dnn_tf\.data\.duplicates counts 1 "),
    ],
    "2_fullyconnected.ipynb": [
        ("relu_variables = [tf.Variable(tf.zeros([IMAGE_PIXELS, 512])), tf.Variable(tf.zeros([512]))]\n"
         "def relu_logits(variables, x):\n    return tf.matmul(x, variables[0]) + variables[1]",
         "Problem (one hidden layer)",
         r"relu_variables has shapes \[\[784, 512\], \[512\]\], the network needs \[\[784, 1024\], \[1024\], "),
        ("relu_variables = [tf.Variable(tf.zeros(s)) for s in ([IMAGE_PIXELS, HIDDEN], [HIDDEN], [HIDDEN, 10], [10])]\n"
         "def relu_logits(variables, x):  # no ReLU\n"
         "    w1, b1, w2, b2 = variables\n    return tf.matmul(tf.matmul(x, w1) + b1, w2) + b2",
         "Problem (one hidden layer)",
         r"at step 0 your loss is [\d.e+-]+, dnn_tf\.model's [\d.e+-]+: the forward pass differs"),
    ],
    "3_regularization.ipynb": [
        ("def l2_loss(variables, x, y, beta):  # sum(W ** 2) is twice tf.nn.l2_loss\n"
         "    return cross_entropy(logits(variables, x), y) + beta * tf.add_n("
         "[tf.reduce_sum(w ** 2) for w in variables[0::2]])",
         "Problem 1 (L2)", r"l2_loss, 0 hidden layer\(s\): at step 0 your loss is [\d.e+-]+, dnn_tf\.model's "),
        ("def dropout_logits(variables, x, seed=None):  # at evaluation too\n"
         "    w1, b1, w2, b2 = variables\n"
         "    return tf.matmul(tf.nn.dropout(tf.nn.relu(tf.matmul(x, w1) + b1), DROPOUT_RATE), w2) + b2",
         "Problem 3 (dropout)", r"without a seed \(evaluation\) dropout_logits must drop nothing"),
        ("def dropout_logits(variables, x, seed=None):  # tf.nn.dropout's own masks\n"
         "    w1, b1, w2, b2 = variables\n    h = tf.nn.relu(tf.matmul(x, w1) + b1)\n"
         "    return tf.matmul(h if seed is None else tf.nn.dropout(h, DROPOUT_RATE), w2) + b2",
         "Problem 3 (dropout)", r"at step \d your loss is [\d.e+-]+, dnn_tf\.model's [\d.e+-]+ \(the masks: "),
        ("best_config, best = TrainConfig(hidden_sizes=(1024,), decay_steps=1000, decay_rate=0.5), None",
         "Problem 4 (the best model)", r"best_config has 1 hidden layer\(s\): the problem asks for a multi-layer"),
    ],
}


def leading_comments(source: str) -> list[str]:
    lines = []
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def test_exercises_are_the_notebooks_with_the_solutions_emptied(tmp_path):
    assert make_exercises.write_exercises(tmp_path, NAMES) == {name: "wrote" for name in NAMES}
    for name in NAMES:
        notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
        exercise = nbformat.read(tmp_path / name, as_version=4)
        nbformat.validate(exercise)
        header, cells = exercise.cells[0], exercise.cells[1:]
        assert header.cell_type == "markdown" and f"notebooks/{name}" in header.source
        assert [(c.cell_type, tags(c)) for c in cells] == [(c.cell_type, tags(c)) for c in notebook.cells]
        for original, cell in zip(notebook.cells, cells):
            if "solution" in tags(original):
                assert cell.source.splitlines() == leading_comments(original.source) != [], original.source
                assert len(cell.source) < len(original.source)
            else:
                assert cell.source == original.source
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None
        solutions = sum("solution" in tags(c) for c in cells)
        checks = sum("check" in tags(c) for c in cells)
        assert solutions >= checks >= 1, (name, solutions, checks)


def test_an_edited_exercise_is_kept_unless_forced(tmp_path, capsys):
    assert make_exercises.main(["--out", str(tmp_path)]) == 0
    edited, run = tmp_path / "2_fullyconnected.ipynb", tmp_path / "1_notmnist.ipynb"
    nb = nbformat.read(edited, as_version=4)
    solution = next(c for c in nb.cells if "solution" in tags(c))
    solution.source += "\nrelu_variables = []  # my work"
    nbformat.write(nb, edited)
    nb = nbformat.read(run, as_version=4)  # run in Jupyter and saved, not edited: rewritten
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", text="some output\n")]
    nb.metadata["widgets"] = {}
    nbformat.write(nb, run)
    capsys.readouterr()

    assert make_exercises.main(["--out", str(tmp_path)]) == 0
    said = capsys.readouterr().out.splitlines()
    assert f"kept (edited since written; --force overwrites it) {tmp_path.name}/2_fullyconnected.ipynb" in said
    assert f"wrote {tmp_path.name}/1_notmnist.ipynb" in said and f"wrote {tmp_path.name}/3_regularization.ipynb" in said
    assert "# my work" in edited.read_text() and "some output" not in run.read_text()
    assert make_exercises.main(["--out", str(tmp_path), "--force"]) == 0
    assert "# my work" not in edited.read_text() and not make_exercises.edited(edited)


def test_unknown_notebook_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        make_exercises.main(["--out", str(tmp_path), "--only", "4_convolutions.ipynb"])
    assert exit_.value.code == 2
    assert "invalid choice: '4_convolutions.ipynb'" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", NAMES)
def test_blank_exercise_checks_say_what_is_missing_or_wrong(name, workspace, monkeypatch, tmp_path):  # noqa: F811
    quick_environment(monkeypatch, workspace)
    make_exercises.write_exercises(tmp_path, [name])
    nb = nbformat.read(tmp_path / name, as_version=4)
    checks = {CHECK_NAME.search(c.source).group(1): c for c in nb.cells if "check" in tags(c)}
    client = notebook_client(nb, workspace)
    wrong = []
    with client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)  # raises CellExecutionError on an error outside the checks
        blank = check_outputs(nb)
        for code, problem, _ in WRONG[name]:
            cell = nbformat.v4.new_code_cell(code + "\n\n" + checks[problem].source)
            nb.cells.append(cell)
            client.execute_cell(cell, len(nb.cells) - 1)
            wrong.append("".join(o.get("text", "") for o in cell.outputs if o.get("output_type") == "stream"))

    assert list(blank) == list(MISSING[name])
    for problem, printed in blank.items():
        assert printed == (f"{problem}: NOT YET - {MISSING[name][problem]} is not defined: write the solution "
                           "cells above and run them\n"), printed
    for (_, problem, pattern), printed in zip(WRONG[name], wrong):
        assert re.fullmatch(rf"{re.escape(problem)}: NOT YET - .*\n", printed) and re.search(pattern, printed), printed
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors and not stderr_outputs(nb), (errors, stderr_outputs(nb))
    assert "PASSED" not in "".join(blank.values()) + "".join(wrong)
