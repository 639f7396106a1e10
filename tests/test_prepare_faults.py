"""dnn-tf-prepare under faults: SIGKILL at every write, damaged outputs, stale temp files, a second writer.

A killed run must never leave something a rerun takes for a finished result: the rerun completes and
gives exactly what an uninterrupted run gives, and no temporary file is left behind.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_fixture_archive

from dnn_tf.cli.prepare import main
from dnn_tf.data.dataset import COURSE_KEYS, SANITIZED_KEYS, validate
from dnn_tf.data.prepare import LOCK_FILE, prepare
from dnn_tf.data.safe_pickle import load_pickle
from dnn_tf.notmnist import LETTERS, DataError

PER_CLASS = 300  # 3,000 glyphs: a run takes about a second
ARGS = ["--workers", "1", "--quiet"]
CONSOLE = Path(sys.executable).with_name("dnn-tf-prepare")
KILL_TIMEOUT = 120  # seconds to reach a kill point on a loaded machine

# Runs dnn_tf.cli.prepare.main in a child that stops (and says so in READY) right before it writes or
# renames the file TARGET, so the test can SIGKILL it at exactly that point.
DRIVER = r"""
import contextlib, os, sys, time
import dnn_tf.files as dio
point, target, ready, argv = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]

def stop():
    open(ready, "w").close()
    time.sleep(600)

if point == "before-write":
    real_atomic_path = dio.atomic_path
    @contextlib.contextmanager
    def atomic_path(path):
        if os.path.basename(os.fspath(path)) == target:
            stop()
        with real_atomic_path(path) as tmp:
            yield tmp
    dio.atomic_path = atomic_path
else:  # "before-rename": the temporary file is complete, the rename has not happened
    real_replace = os.replace
    def replace(src, dst):
        if os.path.basename(os.fspath(dst)) == target:
            stop()
        return real_replace(src, dst)
    os.replace = replace

from dnn_tf.cli.prepare import main
sys.exit(main(argv))
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> str:
    return make_fixture_archive(tmp_path_factory.mktemp("faults") / "notMNIST_small.tar.gz", per_class=PER_CLASS,
                                seed=21)["path"]


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory) -> dict:
    """What an uninterrupted run writes, for seed 133 and seed 7."""
    out = {}
    for seed in (133, 7):
        d = tmp_path_factory.mktemp(f"ref{seed}")
        prepare(source, out_dir=d, seed=seed, workers=1, progress=False)
        out[seed] = {"merged": load_pickle(d / "notMNIST.pickle"), "dir": d,
                     "classes": [load_pickle(d / "notMNIST_small" / f"{x}.pickle") for x in LETTERS]}
    return out


def _finished_run(reference: dict, seed: int, tmp_path: Path) -> Path:
    """A copy of a finished run's output folder (what ``main(_argv(...))`` would leave)."""
    out = tmp_path / "out"
    shutil.copytree(reference[seed]["dir"], out)  # copy2 keeps mtimes; the manifests name the same source
    return out


def _argv(source, out: Path, seed: int = 133) -> list[str]:
    return ["--train-archive", str(source), "--out", str(out), "--seed", str(seed), *ARGS]


def _temps(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob("*.tmp"))


def _assert_matches_reference(out: Path, ref: dict) -> None:
    d = load_pickle(out / "notMNIST.pickle")
    validate(d)
    assert list(d) == list(COURSE_KEYS) + list(SANITIZED_KEYS)
    for key in d:
        np.testing.assert_array_equal(d[key], ref["merged"][key], err_msg=key)
    for letter, expected in zip(LETTERS, ref["classes"]):
        np.testing.assert_array_equal(load_pickle(out / "notMNIST_small" / f"{letter}.pickle"), expected)
    report = json.loads((out / "prepare_report.json").read_text())
    assert report["sizes"]["train"] == len(d["train_labels"])
    assert _temps(out) == [], "temporary files left behind"


def _kill_at(tmp_path: Path, point: str, target: str, argv: list[str]) -> None:
    ready = tmp_path / f"ready-{point}-{target}"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, point, target, str(ready), *argv],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + KILL_TIMEOUT
        while not ready.exists():
            assert proc.poll() is None, f"prepare ended before {point} {target}: {proc.stderr.read().decode()}"
            assert time.monotonic() < deadline, f"never reached {point} {target}"
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


# (kill point, file, what must be on disk after the kill)
KILL_POINTS = [
    ("before-rename", "E.pickle", "A..D.pickle new, E's temp complete, no manifest"),
    ("before-write", "manifest.json", "all class pickles, no manifest"),
    ("before-write", "notMNIST.pickle", "class pickles and manifest, no notMNIST.pickle"),
    ("before-rename", "notMNIST.pickle", "notMNIST.pickle's temp complete but not renamed"),
    ("before-write", "prepare_report.json", "notMNIST.pickle written, report not"),
]


@pytest.mark.parametrize("point, target, state", KILL_POINTS, ids=[f"{p}:{t}" for p, t, _ in KILL_POINTS])
def test_killed_first_run_then_rerun_completes_with_the_same_result(tmp_path, capsys, source, reference,
                                                                    point, target, state):
    out = tmp_path / "out"
    _kill_at(tmp_path, point, target, _argv(source, out))
    classes = out / "notMNIST_small"
    if target == "E.pickle":
        assert (classes / "D.pickle").exists() and not (classes / "E.pickle").exists()
        assert [p.name for p in classes.glob(".E.pickle.*.tmp")], "expected E's complete temp file"
        assert not (classes / "manifest.json").exists()
    if target == "notMNIST.pickle":
        assert (classes / "manifest.json").exists() and not (out / "notMNIST.pickle").exists()
    if target == "prepare_report.json":
        assert (out / "notMNIST.pickle").exists() and not (out / "prepare_report.json").exists()

    assert main(_argv(source, out)) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.startswith("wrote ")
    _assert_matches_reference(out, reference[133])
    # and the next run reuses it all
    assert main(_argv(source, out)) == 0
    assert capsys.readouterr().out.startswith("reused ")
    assert json.loads((out / "prepare_report.json").read_text())["reused"] == {
        "class_pickles": {"train": True}, "merged_pickle": True}


@pytest.mark.parametrize("target", ["notMNIST.pickle", "prepare_report.json"])
def test_run_with_other_inputs_killed_midway_never_leaves_a_mismatched_pickle_report_pair(
        tmp_path, capsys, source, reference, target):
    """Seed 133 finished; a seed-7 run is killed around its merged pickle; a seed-133 rerun must not
    reuse a seed-7 pickle under the old seed-133 report (it did before the report was dropped first)."""
    out = _finished_run(reference, 133, tmp_path)
    _kill_at(tmp_path, "before-write", target, _argv(source, out, seed=7))
    capsys.readouterr()
    assert main(_argv(source, out, seed=133)) == 0
    _assert_matches_reference(out, reference[133])
    assert main(_argv(source, out, seed=7)) == 0
    _assert_matches_reference(out, reference[7])


@pytest.mark.parametrize("poll_for", ["notMNIST_small/A.pickle", "notMNIST_small/manifest.json"])
def test_console_script_sigkilled_at_a_polled_point_then_rerun(tmp_path, capsys, source, reference, poll_for):
    """The real entry point, killed asynchronously as soon as ``poll_for`` shows up in the output folder."""
    out = tmp_path / "out"
    proc = subprocess.Popen([str(CONSOLE), *_argv(source, out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + KILL_TIMEOUT
    while not (out / poll_for).exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    proc.send_signal(signal.SIGKILL)
    status = proc.wait(timeout=30)
    if status == 0:
        pytest.skip(f"prepare finished before {poll_for} was seen (the DRIVER tests cover this point)")
    assert status == -signal.SIGKILL
    assert main(_argv(source, out)) == 0, capsys.readouterr().err
    _assert_matches_reference(out, reference[133])


@pytest.mark.parametrize("victim", ["notMNIST.pickle", "notMNIST_small/C.pickle"])
@pytest.mark.parametrize("damage", ["empty", "last-byte-cut", "same-size-garbage", "other-valid-pickle"])
def test_damaged_outputs_are_detected_and_rebuilt_without_force(tmp_path, capsys, source, reference, victim, damage):
    out = _finished_run(reference, 133, tmp_path)
    assert main(_argv(source, out)) == 0 and capsys.readouterr().out.startswith("reused ")  # a good copy
    path = out / victim
    data = path.read_bytes()
    if damage == "empty":
        path.write_bytes(b"")
    elif damage == "last-byte-cut":
        path.write_bytes(data[:-1])
    elif damage == "same-size-garbage":
        path.write_bytes(bytes(len(data)))
    else:  # a well-formed pickle of the wrong thing: fewer images / a smaller dataset
        obj = (reference[133]["classes"][2][:5] if victim.endswith("C.pickle")
               else {k: v[:10] for k, v in reference[133]["merged"].items()})
        path.write_bytes(pickle.dumps(obj, protocol=4))
    if damage != "other-valid-pickle":
        with pytest.raises(DataError, match="truncated or corrupt"):
            load_pickle(path)
    capsys.readouterr()
    assert main(_argv(source, out)) == 0
    reused = json.loads((out / "prepare_report.json").read_text())["reused"]
    if victim == "notMNIST.pickle":  # rebuilt from the (good) class pickles
        assert capsys.readouterr().out.startswith("wrote ")
        assert reused == {"class_pickles": {"train": True}, "merged_pickle": False}
    else:  # the class pickles are decoded again; notMNIST.pickle itself was fine
        assert reused["class_pickles"] == {"train": False}
    _assert_matches_reference(out, reference[133])


def test_stale_temp_files_of_killed_runs_are_removed_and_others_kept(tmp_path, caplog, source, reference):
    out = tmp_path / "out"
    classes = out / "notMNIST_small"
    classes.mkdir(parents=True)
    stale = [out / ".notMNIST.pickle.k3j_x9ab.tmp", out / ".prepare_report.json.aaaa1111.tmp",
             classes / ".C.pickle.zz99yy88.tmp", classes / ".manifest.json.q1w2e3r4.tmp"]
    kept = [out / ".other.pickle.abc.tmp", out / "notes.tmp", classes / ".K.pickle.abc.tmp", out / "A.pickle.tmp"]
    for p in stale + kept:
        p.write_bytes(b"\x80\x04partial")
    caplog.set_level(logging.INFO, logger="dnn_tf")
    prepare(source, out_dir=out, workers=1, progress=False)
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    assert sum("left in" in m and "interrupted run" in m for m in caplog.messages) == 2
    validate(load_pickle(out / "notMNIST.pickle"))


def test_a_second_prepare_on_the_same_folder_is_refused_while_the_first_runs(tmp_path, capsys, source):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running prepare holds
        (out / ".notMNIST.pickle.live0001.tmp").write_bytes(b"being written")
        assert main(_argv(source, out)) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "another prepare is writing to" in err
        assert (out / ".notMNIST.pickle.live0001.tmp").exists()  # the holder's temp file is not touched
        assert not (out / "notMNIST_small").exists()
    finally:
        os.close(fd)
    assert main(_argv(source, out)) == 0  # lock released (as it is when the holder dies)
    assert not (out / ".notMNIST.pickle.live0001.tmp").exists()
