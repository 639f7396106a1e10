"""Training faults: a run killed with SIGKILL resumes to the same result, Ctrl-C keeps a checkpoint and
``--resume`` finishes it identically, a diverging run stops cleanly."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from dnn_tf import files
from dnn_tf.cli import train as train_cli
from dnn_tf.training import loop
from dnn_tf.training.config import TrainConfig

REPO = Path(__file__).absolute().parents[1]
STEPS = 3001
LOG_EVERY = 100
CHECKPOINT_EVERY = 100
# A small ReLU net on the fixture's 200 glyphs: ~1 ms per step, so the run lasts a few seconds
# and the kill lands long before its end.
# Every field that matters is pinned, so retuned presets do not change these tests.
RUN_ARGS = ["--preset", "relu1024", "--hidden-sizes", "64", "--init", "he", "--optimizer", "sgd",
            "--learning-rate", "0.05", "--decay-steps", "0", "--batch-size", "20", "--steps", str(STEPS),
            "--log-every", str(LOG_EVERY), "--checkpoint-every", str(CHECKPOINT_EVERY)]
# Far too large a step for a net with 2 hidden layers and the course's init: the loss is NaN by step ~3.
DIVERGING = dict(hidden_sizes=(64, 64), init="truncated_normal", init_stddev=1.0, optimizer="sgd",
                 learning_rate=1e6, decay_steps=0, batch_size=20)
POLL_SECONDS = 0.02
START_TIMEOUT = 120  # seconds for the subprocess to import TensorFlow and write its first checkpoint


@pytest.fixture(scope="module")
def pickle_path(tiny_dataset, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("data") / "notMNIST.pickle"
    files.save_pickle(path, tiny_dataset)
    return str(path)


def kill_after_first_checkpoint(argv: list[str], ckpt_dir: Path, stderr_path: Path) -> int:
    """Starts ``python -m dnn_tf.cli.train argv``, SIGKILLs it once a checkpoint exists; returns its status."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "dnn_tf.cli.train", *argv], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while not (ckpt_dir / "checkpoint").is_file():  # CheckpointManager writes it after the files
                assert proc.poll() is None, f"finished before a checkpoint: {stderr_path.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "no checkpoint in time"
                time.sleep(POLL_SECONDS)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            status = proc.wait()
    return status


def test_sigkilled_run_resumes_to_the_uninterrupted_result(pickle_path, tmp_path, capsys):
    killed = tmp_path / "killed"
    argv = ["--data", pickle_path, "--out", str(killed), *RUN_ARGS]
    status = kill_after_first_checkpoint([*argv, "--quiet"], killed / "checkpoints", tmp_path / "stderr.txt")
    assert status == -signal.SIGKILL
    assert not (killed / "metrics.json").exists()  # it really died mid-run
    latest = tf.train.latest_checkpoint(str(killed / "checkpoints"))
    done = int(latest.rsplit("-", 1)[1])
    assert CHECKPOINT_EVERY <= done < STEPS and done % CHECKPOINT_EVERY == 0

    capsys.readouterr()
    assert train_cli.main([*argv, "--resume"]) == 0
    printed = capsys.readouterr().err  # log lines go to stderr
    match = re.search(r"Resumed from \S+ckpt-(\d+) at step (\d+)", printed)
    assert match and int(match.group(1)) == int(match.group(2)) >= done

    full = tmp_path / "full"
    assert train_cli.main(["--data", pickle_path, "--out", str(full), *RUN_ARGS, "--quiet"]) == 0
    resumed, reference = (json.loads((d / "metrics.json").read_text()) for d in (killed, full))
    assert resumed["steps"] == reference["steps"] == STEPS
    assert abs(resumed["test_accuracy"] - reference["test_accuracy"]) <= 0.5
    assert abs(resumed["valid_accuracy"] - reference["valid_accuracy"]) <= 0.5
    log_steps = list(range(0, STEPS, LOG_EVERY))
    assert [h["step"] for h in resumed["history"]] == [h["step"] for h in reference["history"]] == log_steps
    np.testing.assert_allclose([h["loss"] for h in resumed["history"]], [h["loss"] for h in reference["history"]],
                               rtol=1e-4, atol=1e-6)
    assert resumed["seconds"] > 0 and all(h["seconds"] >= 0 for h in resumed["history"])
    assert (killed / "saved_model" / "saved_model.pb").is_file()


def interrupt_after_first_log_line(argv: list[str], stderr_path: Path) -> int:
    """Starts ``python -m dnn_tf.cli.train argv``, sends SIGINT (Ctrl-C) once it logs step 0; returns its status."""
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="")
    with open(stderr_path, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "dnn_tf.cli.train", *argv], cwd=REPO, env=env,
                                stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while "Minibatch loss at step 0:" not in stderr_path.read_text():
                assert proc.poll() is None, f"finished before logging: {stderr_path.read_text()[-2000:]}"
                assert time.monotonic() < deadline, "no log line in time"
                time.sleep(POLL_SECONDS)
            proc.send_signal(signal.SIGINT)
            status = proc.wait(timeout=START_TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return status


def test_ctrl_c_checkpoints_the_step_and_resume_finishes_identically(pickle_path, tmp_path, capsys):
    stopped = tmp_path / "stopped"
    # no periodic checkpoints at all: before, a Ctrl-C kept nothing of such a run
    argv = ["--data", pickle_path, "--out", str(stopped), *RUN_ARGS, "--checkpoint-every", "0"]
    status = interrupt_after_first_log_line(argv, tmp_path / "stderr.txt")
    last = (tmp_path / "stderr.txt").read_text().strip().splitlines()[-1]
    assert status == 130, last
    match = re.fullmatch(r"dnn-tf-train: interrupted after step (\d+); checkpoint (\S+); resume with: (.+)", last)
    assert match, last
    step, checkpoint, command = int(match.group(1)), match.group(2), shlex.split(match.group(3))
    assert 0 < step < STEPS and checkpoint == str(stopped / "checkpoints" / f"ckpt-{step}")
    assert tf.train.latest_checkpoint(str(stopped / "checkpoints")) == checkpoint
    assert not (stopped / "metrics.json").exists()
    assert command == ["dnn-tf-train", *argv, "--resume"]

    capsys.readouterr()
    assert train_cli.main([*command[1:], "--quiet"]) == 0  # the printed command, as the user would run it
    full = tmp_path / "full"
    assert train_cli.main(["--data", pickle_path, "--out", str(full), *RUN_ARGS, "--checkpoint-every", "0",
                           "--quiet"]) == 0
    resumed, reference = (json.loads((d / "metrics.json").read_text()) for d in (stopped, full))
    assert resumed["steps"] == reference["steps"] == STEPS
    for key in ("valid_accuracy", "test_accuracy", "valid_sanitized_accuracy", "test_sanitized_accuracy"):
        assert resumed[key] == reference[key], key
    def without_time(metrics):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in metrics["history"]]

    assert without_time(resumed) == without_time(reference)


def test_too_large_learning_rate_exits_3_and_keeps_the_last_good_checkpoint(pickle_path, tmp_path, capsys):
    out = tmp_path / "run"
    argv = ["--data", pickle_path, "--out", str(out), "--preset", "relu1024", "--steps", "200", "--log-every", "50",
            "--checkpoint-every", "1", "--quiet"]
    argv += [f"--set={k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in DIVERGING.items()]
    capsys.readouterr()
    assert train_cli.main(argv) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    line = err[0]
    assert line.startswith("dnn-tf-train: error: loss became ")
    step = int(re.search(r"at step (\d+);", line).group(1))
    assert "lower the learning rate (now 1e+06" in line
    latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
    assert latest is not None and line.endswith(f"last good checkpoint: {latest}")
    # checkpoint N holds the weights after N steps, those of step N's loss: the one of the bad step is gone
    saved = int(latest.rsplit("-", 1)[1])
    assert 1 <= saved < step
    assert not (out / "checkpoints" / f"ckpt-{step}.index").exists()
    assert not (out / "metrics.json").exists() and not (out / "saved_model").exists()

    # it restores into a fresh model and optimizer, and every weight is finite
    config = TrainConfig(**DIVERGING)
    state = loop.create_train_state(config, 200)
    checkpoint = tf.train.Checkpoint(model=state.model, optimizer=state.optimizer, step=state.step)
    checkpoint.restore(latest).assert_existing_objects_matched()
    assert int(state.step.numpy()) == saved
    assert all(np.all(np.isfinite(v.numpy())) for v in state.model.trainable_variables)


def test_atomic_dir_replaces_a_folder_whole_or_not_at_all(tmp_path):
    """What save_model and the demo page rely on: the old folder or the new one, never a mix, no leftovers."""
    out = tmp_path / "saved_model"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with files.atomic_dir(out) as tmp:
            (Path(tmp) / "new.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]  # the failed new folder is gone
    assert [p.name for p in out.iterdir()] == ["old.txt"]
    with files.atomic_dir(out) as tmp:
        assert Path(tmp).parent == tmp_path and not any(Path(tmp).iterdir())
        (Path(tmp) / "new.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]  # the old folder, moved aside, is removed
    assert [p.name for p in out.iterdir()] == ["new.txt"]
