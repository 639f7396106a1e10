"""The three course notebooks: committed as executed on real data, and run top to bottom here on a small
generated archive (DNN_TF_QUICK=1) without writing into the committed files."""

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
KERNEL = "dnn-tf-test-python"
CELL_TIMEOUT = 300  # seconds; QUICK cells take a few
# An output each notebook must print (proof that its last steps really ran).
EXPECTED = {
    "1_notmnist.ipynb": re.compile(r"Baseline with +\d+ training images: test accuracy \d+\.\d%"),
    "2_fullyconnected.ipynb": re.compile(r"Test accuracy: \d+\.\d%"),
    "3_regularization.ipynb": re.compile(r"Sanitized test accuracy: \d+\.\d%"),
}
# Figures each notebook draws inline (sample grids, class balance, curves, confusion, mistakes).
MIN_FIGURES = {"1_notmnist.ipynb": 3, "2_fullyconnected.ipynb": 3, "3_regularization.ipynb": 4}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A fixture archive, a shared data dir, and a kernel spec that runs this very Python."""
    root = tmp_path_factory.mktemp("notebooks")
    archive = root / "notMNIST_fixture.tar.gz"
    make_fixture_archive(archive, per_class=20, duplicates=3)
    spec_dir = root / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dnn_tf test", "language": "python"}))
    return {"root": root, "archive": archive, "data": root / "data", "kernels": root / "kernels"}


def _text_outputs(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
            elif "data" in out:
                parts.append(out["data"].get("text/plain", ""))
                parts.append(out["data"].get("text/markdown", ""))
    return "".join(parts)


def _figures(nb) -> int:
    return sum("image/png" in out.get("data", {}) for cell in nb.cells for out in cell.get("outputs", []))


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebooks_are_committed_executed_on_real_data(name):
    """Saved by ``make notebooks`` (top to bottom, no errors) on notMNIST_small_dev, never on a fixture."""
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), name  # one run, in order
    assert not [o for c in code for o in c.outputs if o.get("output_type") == "error"], name
    text = _text_outputs(nb)
    assert EXPECTED[name].search(text) and _figures(nb) >= MIN_FIGURES[name], name
    assert "notMNIST_small_dev" in text and "notMNIST_fixture" not in text and "DNN_TF_QUICK" not in text, name
    assert "DNN_TF_QUICK" in code[0].source and "DNN_TF_ARCHIVE" in code[0].source, name
    assert "shared" not in code[0].source, name  # the default is data/, like make reproduce
    assert sum(c.cell_type == "markdown" for c in nb.cells) >= 4, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_notebook_runs(name, workspace, monkeypatch):
    monkeypatch.setenv("DNN_TF_ARCHIVE", str(workspace["archive"]))
    monkeypatch.setenv("DNN_TF_DATA_DIR", str(workspace["data"]))
    monkeypatch.setenv("DNN_TF_QUICK", "1")
    monkeypatch.delenv("DNN_TF_TEST_ARCHIVE", raising=False)
    monkeypatch.delenv("DNN_TF_RUNS_DIR", raising=False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    committed = (NOTEBOOKS / name).read_bytes()
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    km = KernelManager(kernel_name=KERNEL,
                       kernel_spec_manager=KernelSpecManager(kernel_dirs=[str(workspace["kernels"])]))
    client = nbclient.NotebookClient(nb, km=km, timeout=CELL_TIMEOUT,
                                     resources={"metadata": {"path": str(workspace["root"])}})
    client.execute()  # raises CellExecutionError on the first failing cell

    errors = [out for cell in nb.cells for out in cell.get("outputs", []) if out.get("output_type") == "error"]
    assert not errors, errors
    assert all(c.execution_count for c in nb.cells if c.cell_type == "code"), name
    text = _text_outputs(nb)
    assert EXPECTED[name].search(text), f"{name}: no line matching {EXPECTED[name].pattern}"
    assert _figures(nb) >= MIN_FIGURES[name], f"{name}: {_figures(nb)} inline figures"
    assert "Traceback" not in text
    assert (NOTEBOOKS / name).read_bytes() == committed  # executed in memory only
