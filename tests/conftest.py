"""Shared pytest setup: ``tests/`` on sys.path (for ``from fixtures import ...``), the
``shared_sample`` fixture, skipping ``@pytest.mark.shared`` tests when ../shared is absent,
``log_lines`` (what the ``dnn_tf`` logger said) and a clean ``dnn_tf`` logger per test."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).absolute().parent
if str(TESTS_DIR) not in sys.path:
    sys.path.insert(0, str(TESTS_DIR))

SHARED_DIR = Path(__file__).absolute().parents[2] / "shared" / "notmnist"  # ../shared beside the checkout
SHARED_SAMPLE = SHARED_DIR / "notMNIST_sample.tar.gz"


def pytest_collection_modifyitems(config, items):
    if SHARED_SAMPLE.is_file():
        return
    skip = pytest.mark.skip(reason=f"{SHARED_SAMPLE} not found")
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_sample() -> Path:
    """Path of the real 8,000-image notMNIST sample; skips the test when it is absent."""
    if not SHARED_SAMPLE.is_file():
        pytest.skip(f"{SHARED_SAMPLE} not found")
    return SHARED_SAMPLE


@pytest.fixture(scope="session")
def fixture_archive(tmp_path_factory) -> dict:
    """A small notMNIST-like .tar.gz (20 glyphs per letter + planted bad members); see fixtures.make_fixture_archive."""
    from fixtures import make_fixture_archive

    return make_fixture_archive(tmp_path_factory.mktemp("archive") / "notMNIST_small.tar.gz", per_class=20)


@pytest.fixture(scope="session")
def tiny_dataset() -> dict:
    """A notMNIST.pickle-style dict (200 train, 50 valid, 50 test glyphs); see fixtures.make_dataset."""
    from fixtures import make_dataset

    return make_dataset(train_per_class=20, valid_per_class=5, test_per_class=5)


@pytest.fixture(autouse=True)
def _restore_dnn_tf_logger():
    """A CLI run in-process configures the ``dnn_tf`` logger (``console.setup_logging``); undo it after each test."""
    logger = logging.getLogger("dnn_tf")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)
    logger.propagate = propagate


@pytest.fixture
def log_lines() -> list[str]:
    """The messages the ``dnn_tf`` logger emits during the test (INFO and up), in order."""
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("dnn_tf")
    handler, level = Collect(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """run(name) -> (out dir, stdout lines): each benchmark's main(--tiny) once per module, into one folder."""
    import bench_support  # noqa: F401 - puts benchmarks/ on sys.path

    out = tmp_path_factory.mktemp("bench")
    done: dict[str, list[str]] = {}

    def run(name: str, capsys=None):
        if name not in done:
            module = __import__(name)
            if capsys is not None:
                capsys.readouterr()
            assert module.main(["--tiny", "--out", str(out)]) == 0
            done[name] = capsys.readouterr().out.strip().splitlines() if capsys is not None else []
        return out, done[name]

    return run
