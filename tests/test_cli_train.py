"""dnn-tf-train / dnn-tf-evaluate and the scripts/train_*.py wrappers."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures import RESULT_KEYS

from dnn_tf import files
from dnn_tf.cli import evaluate as evaluate_cli
from dnn_tf.cli import train as train_cli
from dnn_tf.training import inference
from dnn_tf.training.presets import PRESETS

SCRIPTS = Path(__file__).absolute().parents[1] / "scripts"
FAST = ["--steps", "21", "--log-every", "10", "--quiet", "--learning-rate", "0.05"]


@pytest.fixture(scope="module")
def dataset(tiny_dataset, tmp_path_factory) -> tuple[str, dict]:
    path = tmp_path_factory.mktemp("data") / "notMNIST.pickle"
    files.save_pickle(path, tiny_dataset)
    return str(path), tiny_dataset


@pytest.fixture(scope="module")
def trained_run(dataset, tmp_path_factory) -> str:
    """A small ReLU net that fits the fixture's 200 training glyphs."""
    out = str(tmp_path_factory.mktemp("run") / "relu")
    status = train_cli.main(["--data", dataset[0], "--preset", "relu1024", "--hidden-sizes", "128", "--init", "he",
                             "--optimizer", "adam", "--learning-rate", "0.003", "--out", out, "--steps", "401",
                             "--log-every", "100", "--batch-size", "50", "--quiet"])
    assert status == 0
    return out


def call(main, argv) -> int:
    """Exit status of a console main, whether it returns it or argparse exits."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


def one_error_line(capsys, prog: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{prog}: error: "), err
    return err[0]


# --------------------------------------------------------------------------- dnn-tf-train


@pytest.mark.parametrize("argv, words", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--set", "learning_rate=fast"], "bad value for learning_rate"),
    (["--set", "no_such_field=1"], "no_such_field"),
    (["--set", "learning_rate"], "FIELD=VALUE"),
    (["--learning-rate", "-1"], "learning_rate must be > 0"),
    (["--batch-size", "ten"], "bad value for batch_size"),
    (["--xla", "maybe"], "bad value for xla"),
])
def test_train_bad_arguments_exit_2_with_one_line(capsys, dataset, tmp_path, argv, words):
    status = call(train_cli.main, ["--data", dataset[0], "--out", str(tmp_path), *argv])
    assert status == 2
    assert words in one_error_line(capsys, "dnn-tf-train")
    assert not os.listdir(tmp_path)


def test_train_missing_or_bad_data_file_exits_2(capsys, tmp_path):
    assert train_cli.main(["--data", str(tmp_path / "none.pickle"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in one_error_line(capsys, "dnn-tf-train")
    junk = tmp_path / "junk.pickle"
    junk.write_bytes(b"not a pickle")
    assert train_cli.main(["--data", str(junk), "--out", str(tmp_path / "o")]) == 2
    one_error_line(capsys, "dnn-tf-train")


def test_list_presets(capsys):
    assert train_cli.main(["--list-presets"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == list(PRESETS)
    deep, full = (next(line for line in out if line.split()[0] == name) for name in ("deep", "deep_full"))
    assert "2048x1024x512" in deep and "max_rotation=10.0" in deep and "train_on_valid" not in deep
    assert "train_on_valid=True" in full


def test_flags_and_set_override_the_preset():
    args = train_cli.build_parser().parse_args(
        ["--preset", "relu1024", "--hidden-sizes", "64,32", "--batch-size", "none", "--xla",
         "--deskew", "false", "--set", "l2_beta=1e-3", "--set", "steps=7", "--seed", "3",
         "--set", "log_every=2"])
    preset = train_cli.make_preset(args)
    config, settings = preset.config, preset.settings
    assert config.hidden_sizes == (64, 32) and config.batch_size is None and settings.xla is True
    assert config.deskew is False and config.l2_beta == 1e-3 and config.steps == 7 and config.seed == 3
    assert settings.log_every == 2 and preset.name == "relu1024"
    assert config.learning_rate == PRESETS["relu1024"].config.learning_rate
    for f in ("decay_steps", "train_subset", "steps_per_call", "max_shift", "checkpoint_every", "strategy"):
        assert f"--{f.replace('_', '-')}" in train_cli.build_parser().format_help()


def test_help_comes_from_field_metadata_and_shows_the_chosen_preset(capsys):
    def help_of(*argv):
        assert call(train_cli.main, [*argv, "--help"]) == 0
        return " ".join(capsys.readouterr().out.split())  # argparse wraps lines

    deep, default = help_of("--preset", "deep"), help_of()
    assert "widths of the hidden ReLU layers" in deep  # TrainConfig.hidden_sizes' metadata["help"]
    assert "--hidden-sizes VALUE widths of the hidden ReLU layers, e.g. 1024,512; empty: logistic regression " \
           "(2048,1024,512)" in deep
    assert "--optimizer VALUE sgd (the course's), momentum or adam (adam)" in deep
    assert "(1024)" in default and "(2048,1024,512)" not in default  # relu1024, the default preset
    assert "--log-every VALUE" in deep and "run settings (RunSettings)" in deep
    assert "value of preset deep" in deep


def test_train_end_to_end_writes_metrics_and_saved_model(capsys, dataset, tmp_path):
    out = tmp_path / "runs" / "{preset}"
    status = train_cli.main(["--data", dataset[0], "--preset", "relu1024", "--hidden-sizes", "16",
                             "--out", str(out), "--checkpoint-every", "10", *FAST])
    assert status == 0
    run = tmp_path / "runs" / "relu1024"
    metrics = json.loads((run / "metrics.json").read_text())
    assert set(metrics) == RESULT_KEYS
    assert metrics["steps"] == 21 and metrics["config"]["hidden_sizes"] == [16]
    assert [h["step"] for h in metrics["history"]] == [0, 10, 20]
    assert metrics["test_sanitized_accuracy"] is not None  # the fixture pickle has the sanitized keys
    assert (run / "saved_model" / "saved_model.pb").is_file()
    assert (run / "checkpoints" / "checkpoint").is_file()
    printed = capsys.readouterr().out
    assert "relu1024: validation" in printed and "21 steps in" in printed
    # --resume with more steps continues the same run
    assert train_cli.main(["--data", dataset[0], "--preset", "relu1024", "--hidden-sizes", "16", "--out", str(out),
                           "--checkpoint-every", "10", "--resume", *FAST, "--steps", "31"]) == 0
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["steps"] == 31 and [h["step"] for h in metrics["history"]] == [0, 10, 20, 30]


def test_train_divergence_exits_3_with_one_line(capsys, dataset, tmp_path):
    argv = ["--data", dataset[0], "--preset", "logreg_sgd", "--out", str(tmp_path / "o"), *FAST,
            "--hidden-sizes", "64,64", "--init-stddev", "1", "--decay-steps", "0", "--learning-rate", "1e6"]
    assert train_cli.main(argv) == 3
    line = one_error_line(capsys, "dnn-tf-train")
    assert re.search(r"loss became \S+ at step \d+; lower the learning rate \(now 1e\+06", line), line


def test_nan_pixels_are_refused_before_training(capsys, dataset, tmp_path):
    data = dict(dataset[1])
    data["train_dataset"] = data["train_dataset"].copy()
    data["train_dataset"][7:, 0, 0] = np.nan
    path = tmp_path / "nan.pickle"
    files.save_pickle(path, data)
    assert train_cli.main(["--data", str(path), "--preset", "logreg_sgd", "--out", str(tmp_path / "o"), *FAST]) == 2
    line = one_error_line(capsys, "dnn-tf-train")
    assert line == (f"dnn-tf-train: error: {path}: train_dataset[7] has NaN or infinite pixels (193 such images); "
                    "rebuild the pickle with dnn-tf-prepare")
    assert not (tmp_path / "o").exists()


def _native_tensorflow_lines(stderr: str) -> list[str]:
    """TensorFlow's C++ log lines (``I0000 00:00:... cudart_stub.cc:31] ...``) and absl's start-up notice."""
    return [line for line in stderr.splitlines()
            if re.match(r"[IWEF]\d{4} \d\d:\d\d:\d\d", line) or "absl::InitializeLog" in line]


def test_no_tensorflow_start_up_lines_unless_verbose(dataset, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    bare = subprocess.run([sys.executable, "-c", "import tensorflow as tf; tf.config.list_physical_devices('GPU')"],
                          capture_output=True, text=True, env=env, timeout=300)
    argv = [sys.executable, "-m", "dnn_tf.cli.train", "--data", dataset[0], "--preset", "logreg_sgd",
            *[a for a in FAST if a != "--quiet"]]

    def run(*extra):
        return subprocess.run([*argv, *extra], capture_output=True, text=True, env=env, timeout=300)

    quiet = run("--quiet", "--out", str(tmp_path / "a"))
    normal = run("--out", str(tmp_path / "b"))  # the course's log lines, still no TensorFlow lines
    verbose = run("--verbose", "--out", str(tmp_path / "c"))
    assert quiet.returncode == normal.returncode == verbose.returncode == 0, quiet.stderr + verbose.stderr
    assert quiet.stderr == "" and "logreg_sgd: validation" in quiet.stdout
    assert _native_tensorflow_lines(normal.stderr) == [] and "Minibatch loss at step 0:" in normal.stderr
    assert len(_native_tensorflow_lines(verbose.stderr)) >= len(_native_tensorflow_lines(bare.stderr))


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # the scripts only run under __main__
    return module


def test_scripts_name_real_presets_and_cover_the_course():
    names = [p for s in ("train_logreg", "train_relu", "train_regularized") for p in _load_script(s).PRESETS]
    assert sorted(names) == sorted(PRESETS)
    assert _load_script("train_regularized")._select(["--only", "deep,logreg_l2", "--xla"]) == (
        ("deep", "logreg_l2"), ["--xla"])


def test_run_presets_trains_each_preset_into_its_folder(dataset, tmp_path):
    status = train_cli.run_presets(("logreg_gd", "logreg_sgd"), ["--data", dataset[0], "--out",
                                                                 str(tmp_path / "{preset}"), "--train-subset", "150",
                                                                 "--steps", "3", "--log-every", "1", "--quiet"])
    assert status == 0
    for preset in ("logreg_gd", "logreg_sgd"):
        metrics = json.loads((tmp_path / preset / "metrics.json").read_text())
        assert metrics["name"] == preset and metrics["steps"] == 3
    assert json.loads((tmp_path / "logreg_gd" / "metrics.json").read_text())["config"]["batch_size"] is None


# --------------------------------------------------------------------------- dnn-tf-evaluate


def _table_rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split() for line in out.splitlines() if line[:1] in "ABCDEFGHIJ" and line[1] == " "}


def test_evaluate_archive_prints_accuracy_and_per_letter_table(capsys, trained_run, dataset, tmp_path):
    from fixtures import make_fixture_archive

    from dnn_tf.data.decode import read_images

    # the run's own training glyphs, written back as PNGs (plus planted bad members)
    train_images, train_labels = dataset[1]["train_dataset"], dataset[1]["train_labels"]
    pixels = np.round(train_images * 255 + 127.5).astype(np.uint8)
    archive = make_fixture_archive(tmp_path / "letters.tar.gz", images=pixels, labels=train_labels)
    capsys.readouterr()
    out_json = tmp_path / "eval.json"
    assert evaluate_cli.main(["--model", trained_run, "--images", archive["path"], "--json", str(out_json),
                              "--quiet"]) == 0
    out = capsys.readouterr().out
    n = len(train_labels)
    assert out.startswith("Accuracy: ") and f"/{n} images, " in out and "skipped" in out
    rows = _table_rows(out)
    assert sorted(rows) == list("ABCDEFGHIJ")
    assert [int(rows[c][1]) for c in "ABCDEFGHIJ"] == np.bincount(train_labels, minlength=10).tolist()
    result = json.loads(out_json.read_text())
    found = read_images(archive["path"])
    predicted = inference.predict(trained_run, found.images).argmax(1)
    assert result["n"] == n and result["skipped"] == len(found.skipped) > 0
    assert result["correct"] == int(np.sum(predicted == found.labels))
    assert result["accuracy"] == pytest.approx(100 * result["correct"] / n)
    assert result["accuracy"] > 80  # these are the glyphs it was trained on
    for r, c in zip(result["per_letter"], range(10)):
        mine = found.labels == c
        assert r["correct"] == int(np.sum(predicted[mine] == c)) and rows[r["letter"]][2] == str(r["correct"])
        wrong = np.bincount(predicted[mine & (predicted != c)], minlength=10)
        assert (r["confused_with"] is None) == (wrong.sum() == 0)
        if wrong.sum():
            assert r["confused_count"] == wrong.max() and wrong["ABCDEFGHIJ".index(r["confused_with"])] == wrong.max()


def test_evaluate_folder_and_pickle_agree_with_predict(capsys, trained_run, dataset, tmp_path):
    from fixtures import make_fixture_folder

    folder = make_fixture_folder(tmp_path / "letters", per_class=3, extra_bad=False, seed=5)
    assert evaluate_cli.main(["--model", trained_run, "--images", folder["path"], "--quiet"]) == 0
    assert "/30 images)" in capsys.readouterr().out
    _, data = dataset
    out_json = tmp_path / "p.json"
    assert evaluate_cli.main(["--model", os.path.join(trained_run, "saved_model"), "--images", dataset[0],
                              "--split", "valid", "--json", str(out_json)]) == 0
    expected = inference.predict(trained_run, data["valid_dataset"]).argmax(1) == data["valid_labels"]
    assert json.loads(out_json.read_text())["correct"] == int(expected.sum())


def test_evaluate_imports_no_training_code(trained_run, dataset):
    code = ("import sys; from dnn_tf.cli import evaluate; "
            f"status = evaluate.main(['--model', {trained_run!r}, '--images', {dataset[0]!r}, '--quiet']); "
            "loaded = sorted(m for m in sys.modules if m.startswith('dnn_tf.')); print(loaded); "
            "training = ('dnn_tf.training.loop', 'dnn_tf.training.optimizers', 'dnn_tf.training.checkpoints'); "
            "sys.exit(status or any(m in loaded for m in training))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-2000:]
    assert "'dnn_tf.training.inference'" in proc.stdout and "Accuracy: " in proc.stdout


@pytest.mark.parametrize("which", ["model", "images", "split"])
def test_evaluate_bad_input_exits_2(capsys, trained_run, dataset, tmp_path, which):
    argv = {"model": ["--model", str(tmp_path), "--images", dataset[0]],
            "images": ["--model", trained_run, "--images", str(tmp_path / "missing.tar.gz")],
            "split": ["--model", trained_run, "--images", dataset[0], "--split", "nope"]}[which]
    assert call(evaluate_cli.main, argv) == 2
    one_error_line(capsys, "dnn-tf-evaluate")


# --------------------------------------------------------------------------- real glyphs (../shared)


@pytest.mark.shared
def test_train_and_evaluate_on_the_real_sample(shared_sample, tmp_path, capsys):
    from dnn_tf.data.prepare import prepare

    prepare(shared_sample, out_dir=tmp_path / "data")
    pickle = str(tmp_path / "data" / "notMNIST.pickle")
    assert train_cli.main(["--data", pickle, "--preset", "logreg_sgd", "--out", str(tmp_path / "run"),
                           "--steps", "801", "--log-every", "400", "--quiet"]) == 0
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["valid_accuracy"] > 80  # logistic regression on real glyphs (86% after 3001 steps)
    capsys.readouterr()
    assert evaluate_cli.main(["--model", str(tmp_path / "run"), "--images", pickle, "--split", "valid"]) == 0
    assert f"Accuracy: {metrics['valid_accuracy']:.2f}%" in capsys.readouterr().out
