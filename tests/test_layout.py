"""The package's shape: data flows one way, dnn_tf/data imports no TensorFlow, the one tape, public APIs only."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import dnn_tf

PACKAGE = Path(dnn_tf.__file__).parent
MAX_MODULE_LINES = 400
MAX_MODEL_LINES = 250
# The flow, archive -> arrays -> pickle -> tensors -> model -> metrics -> report, plus what every stage may
# use (first) and the command line (last). A module may import its own stage or an earlier one.
STAGES = ("common", "archive", "arrays", "pickle", "tensors", "model", "metrics", "report", "cli")
EXPLICIT = {
    "dnn_tf": "common", "dnn_tf.notmnist": "common", "dnn_tf.files": "common", "dnn_tf.console": "common",
    "dnn_tf.progress": "common",
    "dnn_tf.data.download": "archive", "dnn_tf.data.archive": "archive", "dnn_tf.data.tar_stream": "archive",
    "dnn_tf.data.dataset": "pickle", "dnn_tf.data.prepare": "pickle",
    "dnn_tf.training.config": "tensors", "dnn_tf.training.presets": "tensors", "dnn_tf.training.inputs": "tensors",
    "dnn_tf.training.augment": "tensors",
    "dnn_tf.model": "model", "dnn_tf.reference.backprop": "model",
}
BY_PACKAGE = {"dnn_tf.data": "arrays", "dnn_tf.training": "metrics", "dnn_tf.reference": "metrics",
              "dnn_tf.report": "report", "dnn_tf.demo": "report", "dnn_tf.cli": "cli"}
FOREIGN_PRIVATE_OK: set[tuple[str, str]] = set()  # (module, name) exceptions: none


def modules() -> list[str]:
    names = ["dnn_tf"] + [m.name for m in pkgutil.walk_packages(dnn_tf.__path__, "dnn_tf.")]
    return sorted(names)


def source_path(module: str) -> Path:
    rel = Path(*module.split(".")[1:])
    package_init = PACKAGE / rel / "__init__.py"
    return package_init if package_init.exists() else (PACKAGE / rel).with_suffix(".py")


def stage(module: str) -> str:
    if module in EXPLICIT:
        return EXPLICIT[module]
    for package, name in BY_PACKAGE.items():
        if module == package or module.startswith(package + "."):
            return name
    raise AssertionError(f"{module} has no place in the flow: add it to tests/test_layout.py")


def imported_modules(module: str) -> set[str]:
    """The dnn_tf modules ``module`` imports (anywhere in it, function-level imports included)."""
    tree = ast.parse(source_path(module).read_text())
    found = set()
    known = set(modules())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("dnn_tf")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dnn_tf"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found - {module}


def backward_imports() -> list[str]:
    found = []
    for module in modules():
        here = STAGES.index(stage(module))
        for other in sorted(imported_modules(module)):
            if STAGES.index(stage(other)) > here:
                found.append(f"{module} ({stage(module)}) imports {other} ({stage(other)})")
    return found


def test_every_module_has_a_stage_and_imports_nothing_later_in_the_flow():
    assert not backward_imports()


def test_the_flow_check_catches_a_backward_import(monkeypatch):
    monkeypatch.setitem(EXPLICIT, "dnn_tf.data.safe_pickle", "report")  # as if the loader came after the pickle
    assert "dnn_tf.data.dataset (pickle) imports dnn_tf.data.safe_pickle (report)" in backward_imports()


def test_data_imports_no_tensorflow_in_a_fresh_process():
    data_modules = [m for m in modules() if m.startswith("dnn_tf.data")]
    assert len(data_modules) >= 10
    code = ("import importlib, sys\n"
            f"for m in {data_modules!r}:\n    importlib.import_module(m)\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_model_is_short_and_holds_the_only_gradient_tape():
    model = PACKAGE / "model.py"
    assert len(model.read_text().splitlines()) <= MAX_MODEL_LINES
    tapes = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "GradientTape(" in p.read_text()]
    assert tapes == ["model.py"]


def test_modules_stay_small():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long


def _foreign_names(tree: ast.Module) -> dict[str, str]:
    """Names bound to other libraries' modules or objects: ``{name: 'module'}``."""
    names = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if not a.name.startswith("dnn_tf"):
                    names[a.asname or a.name.split(".")[0]] = a.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("dnn_tf") \
                and node.level == 0:
            for a in node.names:
                names[a.asname or a.name] = node.module
    return names


def private_uses(source: str) -> list[str]:
    """``lib._name`` attribute uses, ``from lib import _name`` and ``super()._name`` in ``source``."""
    tree = ast.parse(source)
    foreign = _foreign_names(tree)

    def private(name: str) -> bool:
        return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.module.startswith("dnn_tf"):
            found += [f"from {node.module} import {a.name}" for a in node.names if private(a.name)]
        elif isinstance(node, ast.Attribute) and private(node.attr):
            root = node.value  # what the attribute is read from: a module, a call's result, super()
            while isinstance(root, (ast.Attribute, ast.Call, ast.Subscript)):
                root = root.func if isinstance(root, ast.Call) else root.value
            if isinstance(root, ast.Name) and (root.id in foreign or root.id == "super"):
                found.append(f"{ast.unparse(node)} (line {node.lineno})")
    return found


def test_private_use_check_catches_what_it_should():
    assert private_uses("import tarfile\nclass T(tarfile.TarInfo):\n    def f(self):\n"
                        "        return super()._proc_member(1)\n")
    assert private_uses("from PIL import Image\nd = Image._getdecoder('L', 'zip', ())\n")
    assert private_uses("import tensorflow as tf\nx = tf.keras.optimizers.Adam()._momentums\n")
    assert private_uses("from numpy import _core\n")
    assert not private_uses("import numpy as np\nclass A:\n    def f(self):\n        return self._x + np.pi\n")


def private_overrides(classes) -> list[str]:
    """``Class._name`` methods that replace a private member of a base class from another library."""
    found = []
    for cls in classes:
        foreign_bases = [b for b in cls.__mro__[1:] if not b.__module__.startswith(("dnn_tf", "builtins"))]
        for name in vars(cls):
            if name.startswith("_") and not name.endswith("__") and any(hasattr(b, name) for b in foreign_bases):
                found.append(f"{cls.__name__}.{name}")
    return found


def test_private_override_check_catches_what_it_should():
    import tarfile

    class Overrides(tarfile.TarInfo):
        def _proc_member(self, tarfile_):
            return tarfile_

    class Adds(tarfile.TarInfo):
        def _own_helper(self):
            return self

    assert private_overrides([Overrides, Adds]) == ["Overrides._proc_member"]


@pytest.mark.parametrize("module", modules())
def test_no_private_api_of_another_library(module):
    assert not private_uses(source_path(module).read_text())
    mod = importlib.import_module(module)
    classes = [c for _, c in inspect.getmembers(mod, inspect.isclass) if c.__module__ == module]
    assert not private_overrides(classes)


def test_one_version():
    setup_cfg = (PACKAGE.parent / "setup.cfg").read_text()
    assert "version = attr: dnn_tf.__version__" in setup_cfg
    assert dnn_tf.__version__.count(".") == 2


MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|tmp|home|root|Users|check)/[\w.-]")
PUBLISHED = ("README.md", "docs", "results", "notebooks", "benchmarks", "scripts")


def machine_paths(text: str) -> list[str]:
    """The absolute paths of one machine in ``text`` (``/tmp/x``, ``/home/me/...``)."""
    return [m.group(0) for m in MACHINE_PATH.finditer(text)]


def test_machine_path_check_catches_what_it_should():
    assert machine_paths('"data": "/tmp/tune/dev/notMNIST.pickle"') == ["/tmp/t"]
    assert machine_paths("cache in /root/.cache/dnn_tf") == ["/root/."]
    assert machine_paths("see ~/.cache/dnn_tf/bench, path/to/work/x, https://x.org/home/y") == []


def test_no_machine_paths_in_committed_results_and_docs():
    """Results and docs are read on other machines: a path of the one they were made on means nothing there."""
    root = PACKAGE.parent
    found = {}
    for entry in PUBLISHED:
        paths = [root / entry] if (root / entry).is_file() else sorted((root / entry).rglob("*"))
        for path in paths:
            if path.suffix in (".md", ".json", ".txt", ".ipynb", ".csv") and path.is_file():
                hits = machine_paths(path.read_text(errors="replace"))
                if hits:  # quoted without the leading "/", so that this message is no machine path itself
                    found[str(path.relative_to(root))] = [h[1:] for h in hits[:3]]
    assert not found
