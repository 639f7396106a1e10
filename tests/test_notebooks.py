"""The three course notebooks: committed as executed on real data, with clean outputs and every problem checked;
and run top to bottom here on a small generated archive (DNN_TF_QUICK=1), every check passing, without writing
into the committed files.

The exercises (scripts/make_exercises.py) are these notebooks with the solution cells emptied, so this run is
also the run of the exercises with their solutions in; tests/test_exercises.py runs them blank.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
from fixtures import make_fixture_archive  # noqa: E402
from jupyter_client import KernelManager  # noqa: E402
from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
sys.path.insert(0, str(NOTEBOOKS.parent / "scripts"))
import run_notebooks  # noqa: E402

NAMES = ("1_notmnist.ipynb", "2_fullyconnected.ipynb", "3_regularization.ipynb")
KERNEL = "dnn-tf-test-python"
CELL_TIMEOUT = 300  # seconds; QUICK cells take a few
FIXTURE_ARCHIVE = "notMNIST_fixture.tar.gz"  # the generated archive the tests run on
# An output each notebook must print (proof that its last steps really ran).
EXPECTED = {
    "1_notmnist.ipynb": re.compile(r"Baseline with +[\d,]+ training images: test accuracy \d+\.\d%"),
    "2_fullyconnected.ipynb": re.compile(r"relu1024: validation \d+\.\d%, test \d+\.\d% \(sanitized \d+\.\d%\)"),
    "3_regularization.ipynb": re.compile(r"deep: validation \d+\.\d%, test \d+\.\d% \(sanitized \d+\.\d%\)"),
}
# Figures each notebook draws inline (samples, balance; curves beside dnn_tf.model's, weights, errors).
MIN_FIGURES = {"1_notmnist.ipynb": 3, "2_fullyconnected.ipynb": 6, "3_regularization.ipynb": 5}
# The problems of each notebook, in order: the heading of each and the name its check cell prints (None: a
# problem answered by a figure, which has nothing to check).
PROBLEMS = {
    "1_notmnist.ipynb": [("## Problems 1 and 2", None), ("## Problem 3", "Problem 3"), ("## Problem 4", None),
                         ("## Problem 5", "Problem 5"), ("## Problem 6", "Problem 6")],
    "2_fullyconnected.ipynb": [("## Problem: one hidden layer", "Problem (one hidden layer)")],
    "3_regularization.ipynb": [("## Problem 1", "Problem 1 (L2)"), ("## Problem 2", "Problem 2 (overfitting)"),
                               ("## Problem 3", "Problem 3 (dropout)"), ("## Problem 4", "Problem 4 (the best model)")],
}
ARCHIVE_NAMES = re.compile(r"[\w.-]+\.(tar\.gz|tgz|tar)(, [\w.-]+\.(tar\.gz|tgz|tar))?")  # "Data: ..." of a notebook
CHECK_NAME = re.compile(r'^check\("([^"]+)"', re.M)
# Committed outputs: no path of a machine, no warning, no traceback, no progress bar, no long line.
ABSOLUTE_PATH = re.compile(r"(?:^|[\s\"'(\[=:,])(?:/[\w.+-]+){2,}|~/|\b[A-Za-z]:\\")
MACHINE_WORDS = re.compile(r"warning|traceback|site-packages|\.venv|it/s\]|DNN_TF_QUICK|QUICK smoke run", re.I)
MAX_LINE = 200  # characters in one line of text output (a longer one is a repr nobody reads)
MAX_CELL_LINES = 40  # lines of text output of one cell


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def text_outputs(cells, kinds=("stream", "text/plain", "text/markdown")) -> list[tuple[int, str]]:
    """``(cell index, text)`` of every text output of ``cells``."""
    parts = []
    for i, cell in enumerate(cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and "stream" in kinds:
                parts.append((i, out.get("text", "")))
            for kind in ("text/plain", "text/markdown", "text/html"):
                if kind in kinds and kind in out.get("data", {}):
                    parts.append((i, out["data"][kind]))
    return parts


def all_text(nb) -> str:
    return "".join(text for _, text in text_outputs(nb.cells))


def figures(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


def check_outputs(nb) -> dict[str, str]:
    """``{problem: what its check cell printed}``, for every cell tagged ``check``."""
    found = {}
    for cell in nb.cells:
        if "check" in tags(cell):
            name = CHECK_NAME.search(cell.source)
            assert name, f"a check cell that calls no check(...): {cell.source[:80]!r}"
            found[name.group(1)] = "".join(o.get("text", "") for o in cell.get("outputs", [])
                                           if o.get("output_type") == "stream")
    return found


def stderr_outputs(nb) -> list[str]:
    return [o.get("text", "") for cell in nb.cells for o in cell.get("outputs", [])
            if o.get("output_type") == "stream" and o.get("name") == "stderr"]


def problem_sections(nb) -> list[tuple[str, list]]:
    """``(heading, cells)`` of each cell tagged ``problem`` and the cells after it up to the next ``## `` heading."""
    sections = []
    for cell in nb.cells:
        heading = cell.cell_type == "markdown" and cell.source.startswith("## ")
        if "problem" in tags(cell):
            sections.append((cell.source.splitlines()[0], []))
        elif heading:
            sections.append((None, []))
        elif sections:
            sections[-1][1].append(cell)
    return [(h, cells) for h, cells in sections if h is not None]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fixture archive, a shared data dir, and a kernel spec that runs this very Python."""
    root = tmp_path_factory.mktemp("notebooks")
    archive = root / FIXTURE_ARCHIVE
    make_fixture_archive(archive, per_class=20, duplicates=3)
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dnn_tf test", "language": "python"}))
    return {"root": root, "archive": archive, "data": root / "data", "kernels": root / "kernels"}


def quick_environment(monkeypatch, workspace) -> None:
    """The environment a QUICK kernel inherits: the fixture archive, a scratch data dir, no GPU."""
    monkeypatch.setenv("DNN_TF_ARCHIVE", str(workspace["archive"]))
    monkeypatch.setenv("DNN_TF_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("DNN_TF_QUICK", "1")
    monkeypatch.delenv("DNN_TF_TEST_ARCHIVE", raising=False)
    monkeypatch.delenv("DNN_TF_RUNS_DIR", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")


def notebook_client(nb, workspace):
    km = KernelManager(kernel_name=KERNEL,
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(workspace["kernels"])]))
    return nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, record_timing=False,
                                   resources={"metadata": {"path": str(workspace["root"])}})


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_executed_on_real_data(name):
    """Saved by ``make notebooks`` (top to bottom, no errors, every check passed) on real data, not on a fixture."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), name  # one run, in order
    assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"], name
    text = all_text(nb)
    assert EXPECTED[name].search(text), f"{name}: no line matching {EXPECTED[name].pattern}"
    assert figures(nb) >= MIN_FIGURES[name], f"{name}: {figures(nb)} inline figures"
    data = re.findall(r"^Data: (.+)$", text, re.M)  # the archives, by their names only
    assert data and all(re.fullmatch(ARCHIVE_NAMES, d) for d in data), data
    assert not any(FIXTURE_ARCHIVE in d for d in data), f"{name} was saved from a test run: {data}"
    checks = check_outputs(nb)
    assert list(checks) == [check for _, check in PROBLEMS[name] if check], name
    for problem, printed in checks.items():
        assert printed.startswith(f"{problem}: PASSED\n"), f"{name}: {printed!r}"
    assert "DNN_TF_QUICK" in code[0].source and "DNN_TF_ARCHIVE" in code[0].source, name
    assert "shared" not in code[0].source, name  # the default is data/, like make reproduce
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 6, name


@pytest.mark.parametrize("name", NAMES)
def test_committed_outputs_are_clean(name):
    """No machine paths, warnings, tracebacks, progress bars, stderr, long reprs or timings in a committed notebook."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    assert not stderr_outputs(nb), stderr_outputs(nb)
    for i, text in text_outputs(nb.cells, kinds=("stream", "text/plain", "text/markdown", "text/html")):
        assert not ABSOLUTE_PATH.search(text), f"{name} cell {i}: a path: {ABSOLUTE_PATH.search(text).group()!r}"
        assert not MACHINE_WORDS.search(text), f"{name} cell {i}: {MACHINE_WORDS.search(text).group()!r} in {text!r}"
        assert "\r" not in text, f"{name} cell {i}: a progress bar"
    for i, cell in enumerate(nb.cells):
        lines = "".join(text for _, text in text_outputs([cell], kinds=("stream", "text/plain"))).splitlines()
        assert len(lines) <= MAX_CELL_LINES, f"{name} cell {i}: {len(lines)} lines of output"
        long = [line for line in lines if len(line) > MAX_LINE]
        assert not long, f"{name} cell {i}: a line of {len(long[0])} characters: {long[0][:80]}..."
        assert "execution" not in cell.metadata, f"{name} cell {i}: execution timings in the metadata"
        assert not ABSOLUTE_PATH.search(cell.source.replace("http://", "").replace("https://", "")), (name, i)


@pytest.mark.parametrize("name", NAMES)
def test_each_problem_has_its_solution_then_its_check(name):
    """Every problem: the course's words quoted, solution cells that say what they define, then the check."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    sections = problem_sections(nb)
    assert len(sections) == len(PROBLEMS[name]), [h for h, _ in sections]
    for (heading, cells), (expected, check) in zip(sections, PROBLEMS[name]):
        assert heading.startswith(expected), (heading, expected)
        problem = next(c for c in nb.cells if c.source.splitlines()[0] == heading)
        assert "> **Problem" in problem.source, f"{heading}: the course's words are not quoted"
        kinds = ["solution" if "solution" in tags(c) else "check" if "check" in tags(c) else "other" for c in cells]
        assert kinds[0] == "solution", (heading, kinds)  # the solution right below the problem
        solution = [c for c in cells if "solution" in tags(c)]
        assert all(c.cell_type == "code" and c.source.startswith("# Problem") for c in solution), heading
        checks = [c for c in cells if "check" in tags(c)]
        if check is None:
            assert not checks, heading
            continue
        assert len(checks) == 1 and kinds.index("check") > max(i for i, k in enumerate(kinds) if k == "solution")
        assert CHECK_NAME.search(checks[0].source).group(1) == check
    tagged = [c for c in nb.cells if {"problem", "solution", "check"} & set(tags(c))]
    assert all(c.cell_type == ("markdown" if "problem" in tags(c) else "code") for c in tagged), name


def test_run_notebooks_refuses_to_save_an_unclean_run(tmp_path, monkeypatch):
    """make notebooks saves nothing that names where the data is, went to stderr or failed a check."""
    archive = tmp_path / "somewhere" / "notMNIST_x.tar.gz"
    archive.parent.mkdir()
    archive.write_bytes(b"")
    monkeypatch.setenv("DNN_TF_ARCHIVE", str(archive))
    paths = run_notebooks.machine_paths()
    assert str(archive) in paths and str(archive.parent) in paths and str(NOTEBOOKS.parent) in paths
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x"), nbformat.v4.new_code_cell("y")])
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", text="Data: notMNIST_x.tar.gz\nProblem 1: PASSED\n")]
    assert run_notebooks.unclean(nb, paths) == []
    nb.cells[1].outputs = [
        nbformat.v4.new_output("stream", name="stderr", text="UserWarning: careful\n"),
        nbformat.v4.new_output("execute_result", data={"text/plain": f"reading {archive.parent}/notMNIST_x.tar.gz"}),
        nbformat.v4.new_output("stream", text="Problem 2: NOT YET - overfit is not defined\n")]
    found = run_notebooks.unclean(nb, paths)
    assert found[0] == "cell 1 wrote to stderr: 'UserWarning: careful'"
    assert f"cell 1 names {archive.parent}" in found
    assert "cell 1: a check did not pass: 'Problem 2: NOT YET - overfit is not defined'" in found


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs(name, workspace, monkeypatch):
    """Top to bottom on the fixture archive in QUICK mode: no error, no stderr, every check PASSED."""
    quick_environment(monkeypatch, workspace)
    committed = (NOTEBOOKS / name).read_bytes()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    notebook_client(nb, workspace).execute()  # raises CellExecutionError on the first failing cell

    assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), name
    text = all_text(nb)
    assert EXPECTED[name].search(text), f"{name}: no line matching {EXPECTED[name].pattern}"
    assert figures(nb) >= MIN_FIGURES[name], f"{name}: {figures(nb)} inline figures"
    assert re.search(rf"^Data: {re.escape(FIXTURE_ARCHIVE)}$", text, re.M), "the archive is named, by its name"
    checks = check_outputs(nb)
    assert list(checks) == [check for _, check in PROBLEMS[name] if check], name
    for problem, printed in checks.items():
        assert printed.startswith(f"{problem}: PASSED\n") and "NOT YET" not in printed, printed
    assert "Traceback" not in text and not stderr_outputs(nb), stderr_outputs(nb)
    assert (NOTEBOOKS / name).read_bytes() == committed  # executed in memory only
