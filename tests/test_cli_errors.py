"""Every bad flag value of every console script: exit status 2, exactly one non-empty stderr line, no traceback.

Most cases run ``main(argv)`` in-process (fast); a few run the installed console scripts as real
processes to prove the entry points behave the same.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_dataset, make_fixture_archive

from dnn_tf import files
from dnn_tf.cli import evaluate as evaluate_cli
from dnn_tf.cli import prepare as prepare_cli
from dnn_tf.cli import reproduce as reproduce_cli
from dnn_tf.cli import train as train_cli

BIN = Path(sys.executable).parent
MAINS = {"dnn-tf-prepare": prepare_cli.main, "dnn-tf-train": train_cli.main, "dnn-tf-evaluate": evaluate_cli.main,
         "dnn-tf-reproduce": reproduce_cli.main}


@pytest.fixture(scope="module")
def places(tmp_path_factory) -> dict[str, str]:
    """Paths the argument lists refer to as {name}."""
    d = tmp_path_factory.mktemp("cli")
    archive = make_fixture_archive(d / "notMNIST_small.tar.gz", per_class=2, extra_bad=False)["path"]
    (d / "file.txt").write_text("a regular file\n")
    model = d / "run" / "saved_model"
    model.mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(b"")  # enough for the model path check, never loaded
    (d / "evil.pickle").write_bytes(b"cos\nsystem\n(Vtouch " + str(d / "pwned").encode() + b"\ntR.")
    with tarfile.open(d / "nothing.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("A/../../x.png")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"png"))
    good = make_dataset(train_per_class=2, valid_per_class=1, test_per_class=1)
    raw = dict(good, train_dataset=np.round(good["train_dataset"] * 255 + 127.5).astype(np.uint8))
    files.save_pickle(d / "raw.pickle", raw)  # the images as 0..255 bytes, never normalized
    scaled = dict(good, valid_dataset=good["valid_dataset"] * 255 + 127.5)  # float, but 0..255
    scaled["valid_dataset"][0, 0, :2] = 0.0, 255.0
    files.save_pickle(d / "scaled.pickle", scaled)
    nan = dict(good, test_dataset=good["test_dataset"].copy())
    nan["test_dataset"][3, 5, 5] = np.nan
    files.save_pickle(d / "nan.pickle", nan)
    return {"archive": archive, "file": str(d / "file.txt"), "dir": str(d), "run": str(d / "run"),
            "evil": str(d / "evil.pickle"), "nothing": str(d / "nothing.tar.gz"), "missing": str(d / "missing"),
            "raw": str(d / "raw.pickle"), "scaled": str(d / "scaled.pickle"), "nan": str(d / "nan.pickle")}


# (program, argv with {placeholders}, words the one stderr line must contain)
CASES = [
    # dnn-tf-prepare: sizes, workers, seed, output folder, URL schemes, sources
    ("dnn-tf-prepare", "--train-size 0", "--train-size: invalid positive integer value: '0'"),
    ("dnn-tf-prepare", "--train-size -5", "--train-size: invalid positive integer value: '-5'"),
    ("dnn-tf-prepare", "--train-size 1.5", "--train-size: invalid positive integer value: '1.5'"),
    ("dnn-tf-prepare", "--train-size 1e3", "--train-size: invalid positive integer value: '1e3'"),
    ("dnn-tf-prepare", "--valid-size 0", "--valid-size: invalid positive integer value: '0'"),
    ("dnn-tf-prepare", "--test-size -1", "--test-size: invalid positive integer value: '-1'"),
    ("dnn-tf-prepare", "--test-size ten", "--test-size: invalid positive integer value: 'ten'"),
    ("dnn-tf-prepare", "--train-archive {archive} --out {dir}/o1 --train-size 5",
     "train_size=5 is smaller than the 10 classes"),
    ("dnn-tf-prepare", "--workers 0", "--workers: invalid positive integer value: '0'"),
    ("dnn-tf-prepare", "--workers -2", "--workers: invalid positive integer value: '-2'"),
    ("dnn-tf-prepare", "--workers 1.5", "--workers: invalid positive integer value: '1.5'"),
    ("dnn-tf-prepare", "--seed -1", "--seed: invalid non-negative integer value: '-1'"),
    ("dnn-tf-prepare", "--train-archive {archive} --out {file}/sub", "cannot create output folder {file}/sub"),
    ("dnn-tf-prepare", "--train-archive {archive} --out {file}", "output folder {file} exists and is not a folder"),
    ("dnn-tf-prepare", "--train-archive ftp://example.org/notMNIST_small.tar.gz --out {dir}/o2",
     "unsupported URL scheme 'ftp'"),
    ("dnn-tf-prepare", "--train-archive {archive} --test-archive gopher://x/y.tar.gz --out {dir}/o3",
     "unsupported URL scheme 'gopher'"),
    ("dnn-tf-prepare", "--train-archive {missing}.tar.gz --out {dir}/o4", "does not exist"),
    # (--quiet: without it the status line "decoding ..." comes first, by design)
    ("dnn-tf-prepare", "--train-archive {nothing} --out {dir}/o5 --quiet", "no A..J folders found"),
    ("dnn-tf-prepare", "--train-archive {file} --out {dir}/o6", "is not a tar archive"),
    ("dnn-tf-prepare", "--bogus", "unrecognized arguments: --bogus"),
    # dnn-tf-train: presets, --set, field values, data
    ("dnn-tf-train", "--preset nope --data {missing}", "unknown preset 'nope'"),
    ("dnn-tf-train", "--set steps --data {missing}", "--set needs FIELD=VALUE"),
    ("dnn-tf-train", "--set steps=many --data {missing}", "bad value for steps"),
    ("dnn-tf-train", "--set no_such=1 --data {missing}", "no_such"),
    ("dnn-tf-train", "--steps -5 --data {missing}", "steps must be > 0"),
    ("dnn-tf-train", "--steps 0 --data {missing}", "steps must be > 0"),
    ("dnn-tf-train", "--dropout-rate 1.5 --data {missing}", "dropout_rate must be in [0, 1)"),
    ("dnn-tf-train", "--dropout-rate -0.1 --data {missing}", "dropout_rate must be in [0, 1)"),
    ("dnn-tf-train", "--set dropout_rate=half --data {missing}", "bad value for dropout_rate"),
    ("dnn-tf-train", "--strategy warp --data {missing}", "strategy must be one of"),
    ("dnn-tf-train", "--data {missing}.pickle --out {dir}/t1", "data file {missing}.pickle not found"),
    ("dnn-tf-train", "--data {evil} --out {dir}/t2", "refusing to load"),
    ("dnn-tf-train", "--data {archive} --out {dir}/t3", "truncated or corrupt"),
    ("dnn-tf-train", "--data {raw} --out {dir}/t4", "train_dataset must be float32 (n, 28, 28), got uint8 (20, 28, 28):"
     " looks like raw 0..255 pixels: run dnn-tf-prepare"),
    ("dnn-tf-train", "--data {scaled} --out {dir}/t5", "valid_dataset must hold normalized pixels in [-1, 1], got "
     "0..255: looks like raw 0..255 pixels: run dnn-tf-prepare"),
    ("dnn-tf-train", "--data {nan} --out {dir}/t6", "test_dataset[3] has NaN or infinite pixels"),
    # dnn-tf-evaluate: model and images
    ("dnn-tf-evaluate", "--model {missing} --images {archive}", "no SavedModel in {missing}"),
    ("dnn-tf-evaluate", "--model {run} --images {missing}.tar.gz", "{missing}.tar.gz does not exist"),
    ("dnn-tf-evaluate", "--model {run} --images {nothing}", "no A..J folders found"),
    ("dnn-tf-evaluate", "--model {run} --images {file}", "is not a tar archive"),
    ("dnn-tf-evaluate", "--model {run} --images {evil}", "refusing to load"),
    ("dnn-tf-evaluate", "--model {run} --images {raw}", "looks like raw 0..255 pixels: run dnn-tf-prepare"),
    ("dnn-tf-evaluate", "--model {run} --images {nan}", "test_dataset[3] has NaN or infinite pixels"),
    ("dnn-tf-evaluate", "--model {run} --images {archive} --batch-size 0", "--batch-size must be > 0"),
    ("dnn-tf-evaluate", "--model {run} --images {archive} --split bogus", "invalid choice: 'bogus'"),
    ("dnn-tf-evaluate", "--images {archive}", "the following arguments are required: --model"),
    # dnn-tf-reproduce: presets, seeds, workers, archive
    ("dnn-tf-reproduce", "--presets nope", "unknown preset(s) nope"),
    ("dnn-tf-reproduce", "--presets relu1024,deeep", "unknown preset(s) deeep"),
    ("dnn-tf-reproduce", "--presets ,", "unknown preset(s)"),
    ("dnn-tf-reproduce", "--seeds -1", "expected seeds >= 0"),
    ("dnn-tf-reproduce", "--workers 0", "--workers: invalid positive integer value: '0'"),
    ("dnn-tf-reproduce", "--train-archive {missing}.tar.gz --data-dir {dir}/r1 --quick", "{missing}.tar.gz"),
]


def _fill(text: str, places: dict[str, str]) -> str:
    return text.format(**places)


def _call(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse errors exit from inside parse_args
        return e.code


@pytest.mark.parametrize("prog, argv, words", CASES, ids=[f"{p[7:]}:{a}" for p, a, _ in CASES])
def test_bad_flag_or_input_is_one_line_and_exit_2(prog, argv, words, places, capsys, monkeypatch):
    from dnn_tf.data import class_pickles

    def no_decoding(*args, **kwargs):
        raise AssertionError("argument errors must be reported before any decoding")

    if "smaller than" in words or "output folder" in words:
        monkeypatch.setattr(class_pickles, "read_images", no_decoding)
    status = _call(MAINS[prog], _fill(argv, places).split())
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, err
    assert len(lines) == 1 and err.endswith("\n") and err.count("\n") == 1, err
    assert lines[0].startswith(f"{prog}: error: ")
    assert _fill(words, places) in lines[0]
    assert "Traceback" not in err and out == ""
    assert not os.path.exists(places["dir"] + "/pwned")


@pytest.mark.parametrize(
    "script, argv, words",
    [
        ("dnn-tf-prepare", ["--workers", "0"], "--workers: invalid positive integer value: '0'"),
        ("dnn-tf-prepare", ["--train-archive", "{archive}", "--out", "{file}/sub", "--quiet"], "cannot create"),
        ("dnn-tf-train", ["--preset", "nope"], "unknown preset 'nope'"),
        ("dnn-tf-reproduce", ["--presets", "nope"], "unknown preset(s) nope"),
    ],
)
def test_installed_console_scripts(script, argv, words, places, tmp_path):
    proc = subprocess.run([str(BIN / script), *(_fill(a, places) for a in argv)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert lines == [lines[0]] and lines[0].startswith(f"{script}: error: ") and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert os.listdir(tmp_path) == []  # nothing created in the working folder
