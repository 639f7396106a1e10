#!/usr/bin/env python3
"""Executes the course notebooks top to bottom and saves them with their outputs (``make notebooks``).

    python scripts/run_notebooks.py --archive path/to/notMNIST_small_dev.tar.gz   # offline, one archive
    python scripts/run_notebooks.py                    # the course's archives, downloaded into data/
    python scripts/run_notebooks.py --only 2_fullyconnected.ipynb

Each notebook runs in a fresh kernel of this Python, in ``notebooks/`` (so its default
``DATA_DIR`` is ``data/``, the folder ``make reproduce`` prepares into; ``DNN_TF_DATA_DIR``
chooses another), and is written back atomically only when every cell ran, every check
cell passed and no output names a path of this machine (the archives, the data folder,
the checkout, the home folder, the Python environment) or went to stderr: a failed,
interrupted or unclean run leaves the committed notebook as it was. No execution timings
are recorded, so a re-run changes only what was computed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf import files  # noqa: E402
from dnn_tf.cli import ArgumentParser, UsageError, add_output_flags, run, setup_output  # noqa: E402

PROG = "run_notebooks"
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
ORDER = ("1_notmnist.ipynb", "2_fullyconnected.ipynb", "3_regularization.ipynb")  # 2 and 3 reuse 1's pickle
KERNEL = "dnn-tf-notebooks"
CELL_TIMEOUT = 3600  # seconds; the deep model of notebook 3 trains for several minutes


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--archive", help="a local archive for train/valid/test (sets DNN_TF_ARCHIVE; default: "
                                     "the course's archives, downloaded)")
    p.add_argument("--test-archive", help="a local test archive (sets DNN_TF_TEST_ARCHIVE)")
    p.add_argument("--only", action="append", choices=ORDER, help="run only this notebook (repeatable)")
    add_output_flags(p)
    return p


def kernel_manager(folder: str):
    """A kernel manager for a kernel spec that starts this very Python (the project's venv)."""
    from jupyter_client import KernelManager
    from jupyter_client.kernelspec import KernelSpecManager

    spec = Path(folder) / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dnn_tf", "language": "python"}))
    return KernelManager(kernel_name=KERNEL, kernel_spec_manager=KernelSpecManager(kernel_dirs=[folder]))


def machine_paths() -> list[str]:
    """Absolute paths that must not appear in a committed output: where things are on this machine."""
    paths = [os.environ.get(variable) for variable in ("DNN_TF_ARCHIVE", "DNN_TF_TEST_ARCHIVE", "DNN_TF_DATA_DIR",
                                                       "DNN_TF_RUNS_DIR")]
    paths += [str(NOTEBOOKS.parent), os.path.expanduser("~"), sys.prefix, tempfile.gettempdir()]
    paths = {os.path.abspath(p) for p in paths if p}
    paths |= {os.path.dirname(p) for p in paths if os.path.isfile(p)}  # an archive's folder too
    # (a top-level folder such as /tmp is left out: too short to tell apart from other text)
    return sorted(p for p in paths if p.count(os.sep) >= 2 or p == os.path.expanduser("~"))


def unclean(nb, paths: Sequence[str]) -> list[str]:
    """What keeps the executed ``nb`` from being committed: stderr output, a check not passed, a machine path."""
    found = []
    for index, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")] + [v for k, v in out.get("data", {}).items() if k.startswith("text/")]
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                found.append(f"cell {index} wrote to stderr: {out.get('text', '').strip()[:120]!r}")
            for text in texts:
                found += [f"cell {index}: a check did not pass: {line.strip()[:120]!r}"
                          for line in text.splitlines() if ": NOT YET - " in line]
                found += [f"cell {index} names {p}" for p in paths if p in text]
    return found


def execute(path: Path, kernels: str) -> float:
    """Runs every cell of ``path`` and saves it with its outputs; returns the seconds it took.

    Raises:
      ValueError: the run is not clean enough to commit (``unclean``); the notebook is left as it was.
    """
    import nbclient
    import nbformat

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    nbclient.NotebookClient(nb, km=kernel_manager(tempfile.mkdtemp(dir=kernels)), timeout=CELL_TIMEOUT,
                            record_timing=False, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    problems = unclean(nb, machine_paths())
    if problems:
        raise ValueError(f"{path.name} not saved: {'; '.join(problems[:3])}")
    files.write_text(path, nbformat.writes(nb) + "\n")
    return time.perf_counter() - start


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_output(args)
    for flag, variable in ((args.archive, "DNN_TF_ARCHIVE"), (args.test_archive, "DNN_TF_TEST_ARCHIVE")):
        if flag:
            if not os.path.exists(flag):
                raise UsageError(f"{flag} does not exist")
            os.environ[variable] = os.path.abspath(flag)
    os.environ.pop("DNN_TF_QUICK", None)
    with tempfile.TemporaryDirectory() as kernels:
        for name in [n for n in ORDER if not args.only or n in args.only]:
            seconds = execute(NOTEBOOKS / name, kernels)
            print(f"{name}: executed in {seconds:.0f} s, saved with its outputs", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
