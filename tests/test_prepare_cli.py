"""dnn-tf-prepare: exit status 2 with one line on bad input, reuse/--force, download hand-off."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_fixture_archive

from dnn_tf.cli import prepare as prepare_cli
from dnn_tf.cli.prepare import main
from dnn_tf.data import download
from dnn_tf.data.dataset import validate
from dnn_tf.data.safe_pickle import load_pickle

REPO = Path(__file__).absolute().parents[1]


def _run(argv, capsys):
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def small_archive(tmp_path_factory):
    return make_fixture_archive(tmp_path_factory.mktemp("cli") / "notMNIST_small.tar.gz", per_class=10, seed=8)


def _no_letters_tar(path: Path) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        info = tarfile.TarInfo("images/x.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"png"))
    return path


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (lambda d: d / "missing.tar.gz", [], "does not exist"),
        (lambda d: (d / "notes.tar.gz").write_text("hello\n") and d / "notes.tar.gz", [], "is not a tar archive"),
        (lambda d: _no_letters_tar(d / "other.tar.gz"), [], "no A..J folders found"),
        (None, ["--train-size", "5000"],
         "train 5,000 + valid 10 + test 10 images need 502 per class, but class A has only 10"),
        (None, ["--valid-size", "100", "--test-size", "100"], "no images left for training"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, small_archive, make, extra, message):
    source = make(tmp_path) if make else small_archive["path"]
    status, out, err = _run(["--train-archive", source, "--out", tmp_path / "out", "--workers", "1", "--quiet", *extra],
                            capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("dnn-tf-prepare: error: ")
    assert message in err
    assert out == ""
    assert not (tmp_path / "out" / "notMNIST.pickle").exists()


def test_bad_arguments_exit_2(tmp_path, capsys):
    for argv in (["--workers", "0"], ["--train-size", "-3"], ["--seed", "x"], ["--bogus"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "dnn-tf-prepare: error:" in err


def test_prepare_reuse_and_force(tmp_path, capsys, monkeypatch, small_archive):
    out = tmp_path / "data"
    argv = ["--train-archive", small_archive["path"], "--out", out, "--workers", "1"]
    with monkeypatch.context() as m:
        m.setattr(prepare_cli, "show_progress", lambda args: not args.quiet)  # as on a terminal
        status, stdout, err = _run(argv, capsys)
    assert status == 0
    assert stdout.startswith(f"wrote {out / 'notMNIST.pickle'} (single-archive, seed 133)")
    assert "train 80, valid 10, test 10" in stdout
    assert "decoding" in err and "100%" in err  # status and progress go to stderr
    d = load_pickle(out / "notMNIST.pickle")
    validate(d)
    assert np.bincount(d["train_labels"]).tolist() == [8] * 10
    assert sorted(p.name for p in (out / "notMNIST_small").iterdir()) == sorted(
        [f"{letter}.pickle" for letter in "ABCDEFGHIJ"] + ["manifest.json"]
    )
    mtime = os.stat(out / "notMNIST.pickle").st_mtime_ns

    status, stdout, err = _run(argv, capsys)  # stderr is not a terminal here: status lines, no progress bar
    assert status == 0 and stdout.startswith("reused ")
    assert "reusing" in err and "%|" not in err
    status, stdout, err = _run(argv + ["--quiet"], capsys)
    assert status == 0 and stdout.startswith("reused ") and err == ""
    assert os.stat(out / "notMNIST.pickle").st_mtime_ns == mtime

    os.utime(out / "notMNIST.pickle", ns=(mtime - 10**9, mtime - 10**9))
    status, stdout, _ = _run(argv + ["--quiet", "--force"], capsys)
    assert status == 0 and stdout.startswith("wrote ")
    assert os.stat(out / "notMNIST.pickle").st_mtime_ns != mtime - 10**9


def test_urls_and_canonical_names_go_through_download_fetch(tmp_path, capsys, monkeypatch, small_archive):
    calls = []
    test_archive = make_fixture_archive(tmp_path / "t.tar.gz", per_class=4, extra_bad=False, seed=9)

    def fetch(source, dest_dir, expected_size=None, sha256=None, progress=False, **kwargs):
        calls.append((source, dest_dir, expected_size))
        return small_archive["path"] if "large" in source else test_archive["path"]

    monkeypatch.setattr(download, "fetch", fetch)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "d"

    status, stdout, err = _run(["--out", out, "--train-size", "60", "--valid-size", "20", "--test-size", "40",
                                "--workers", "1", "--quiet"], capsys)
    assert status == 0, err
    assert calls == [("notMNIST_large.tar.gz", str(out), 247336696), ("notMNIST_small.tar.gz", str(out), 8458043)]
    assert "two-archive" in stdout and "train 60, valid 20, test 40" in stdout

    calls.clear()
    url = "https://example.org/files/notMNIST_small.tar.gz"
    status, _, err = _run(["--train-archive", small_archive["path"], "--test-archive", url, "--out", out,
                           "--train-size", "60", "--valid-size", "20", "--test-size", "40", "--workers", "1",
                           "--quiet"], capsys)
    assert status == 0, err
    assert calls == [(url, str(out), 8458043)]


def test_console_entry_runs_without_traceback(tmp_path):
    script = str(REPO / "scripts" / "prepare_data.py")
    for cmd in ([sys.executable, "-m", "dnn_tf.cli.prepare"], [sys.executable, script]):
        proc = subprocess.run(cmd + ["--train-archive", str(tmp_path / "none.tar.gz"), "--out", str(tmp_path)],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2
        missing = tmp_path / "none.tar.gz"
        assert proc.stderr.strip().splitlines() == [f"dnn-tf-prepare: error: train source {missing} does not exist"]


@pytest.mark.shared
def test_shared_sample_end_to_end(tmp_path, capsys, shared_sample):
    argv = ["--train-archive", shared_sample, "--out", tmp_path, "--workers", "2", "--quiet"]
    status, stdout, err = _run(argv, capsys)
    assert status == 0, err
    assert "train 6,400, valid 800, test 800" in stdout
    d = load_pickle(tmp_path / "notMNIST.pickle")
    validate(d)
    for split, n in (("train", 640), ("valid", 80), ("test", 80)):
        assert np.bincount(d[f"{split}_labels"]).tolist() == [n] * 10
    for letter in "ABCDEFGHIJ":
        assert load_pickle(tmp_path / "notMNIST_sample" / f"{letter}.pickle").shape == (800, 28, 28)
