"""dnn-tf-reproduce end to end in --quick mode on a generated archive."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fixtures import make_fixture_archive
from PIL import Image

from dnn_tf import files
from dnn_tf.cli import reproduce
from dnn_tf.data import dataset
from dnn_tf.report import results_dir
from dnn_tf.training import presets, run_dir
from dnn_tf.training.run_dir import RunDir

# Every run of the --quick --seeds 0,1 workspace, in order (multi-seed presets once per seed).
ALL_RUNS = [name if name not in reproduce.MULTI_SEED else f"{name}_seed{s}"
            for name in reproduce.RUN_ORDER for s in ((0, 1) if name in reproduce.MULTI_SEED else (0,))]
ALL_PRESETS = [run.rsplit("_seed", 1)[0] for run in ALL_RUNS]
PLOTS = ("samples.png", "class_balance.png", "curves_assignment2.png", "curves_assignment3.png",
         "templates_logreg_sgd.png", "hidden_units_relu1024.png", "confusion_deep.png", "mistakes_deep.png")
MIN_PNG_BYTES = 1024


def _run(capsys, *argv) -> tuple[int, str, str]:
    code = reproduce.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _args(ws, *extra, results=None) -> list[str]:
    return ["--train-archive", str(ws["archive"]), "--data-dir", str(ws["data"]), "--runs", str(ws["runs"]),
            "--results", str(results or ws["results"]), "--quick", "--workers", "1", *extra]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """One full --quick run (every preset, the MULTI_SEED ones with seeds 0 and 1) shared by the tests below."""
    root = tmp_path_factory.mktemp("reproduce")
    ws = {"root": root, "archive": root / "notMNIST_fixture.tar.gz", "data": root / "data",
          "runs": root / "runs", "results": root / "results"}
    make_fixture_archive(ws["archive"], per_class=20, duplicates=3)
    code = reproduce.main(_args(ws, "--seeds", "0,1", "--presets", "all"))
    assert code == 0
    return ws


def test_writes_results_md(workspace):
    md = (workspace["results"] / "results.md").read_text()
    assert "**Dataset:**" in md and "notMNIST_fixture" in md and "160 images" in md
    summary, every_run = md.split("## Summary", 1)[1].split("## Every run", 1)
    for preset in reproduce.RUN_ORDER:
        rows = [line for line in every_run.splitlines() if line.startswith(f"| {preset} |")]
        assert len(rows) == (2 if preset in reproduce.MULTI_SEED else 1), preset
        (line,) = [line for line in summary.splitlines() if line.startswith(f"| {preset} |")]
        assert line.endswith("| 0, 1 |" if preset in reproduce.MULTI_SEED else "| 0 |") and (" ± " in line) == (
            preset in reproduce.MULTI_SEED), line
        cells = [c.strip() for c in rows[0].strip("|").split("|")]
        assert 0.0 <= float(cells[3]) <= 100.0 and cells[6] == "60", rows[0]
        # train images: all 160 of the fixture (subsets are larger), deep_full + its 20 valid
        full = preset == "deep_full"
        assert cells[5] == ("180" if full else "160") and (cells[2] == "—") == full, rows[0]
    assert re.search(r"\*\*deep\*\* \(2 runs, seeds 0, 1\)", md)
    assert re.search(r"\*\*deep_full\*\* \(2 runs, seeds 0, 1\): valid —", md)
    assert "- **deep_full** trained on the training and the validation images together" in md
    assert md.count("SMOKE RUN") == 1 and "not results" in md
    archive = workspace["archive"]
    assert (f"**Archives:** {archive.name} ({archive.stat().st_size:,} bytes, SHA-256 "
            f"{files.sha256_file(archive)})") in md
    assert "**Every run trained in this invocation** (none reused)." in md
    assert re.search(r"\*\*Total wall time:\*\* [\d,.]+ s", md)
    assert re.search(r"\*\*Data preparation\*\* \(single-archive\): train 160, valid 20, test 20", md)
    dup = json.loads((workspace["data"] / "prepare_report.json").read_text())["duplicates"]["exact"]
    within, across = dup["within"], dup["across"]
    assert sum(within.values()) + sum(across.values()) == 3  # the 3 planted copies
    assert (f"exact duplicates within train {within['train']}, valid {within['valid']}, test {within['test']}; "
            f"across train–valid {across['train-valid']}, train–test {across['train-test']}") in md
    for name in PLOTS:
        assert f"]({name})" in md


def test_writes_results_json(workspace):
    report = json.loads((workspace["results"] / "results.json").read_text())
    assert {"schema", "dataset", "course_figures", "runs", "aggregated", "extra"} <= set(report)
    assert "notMNIST_fixture" in report["dataset"]["tag"] and report["dataset"]["description"]
    runs = report["runs"]
    assert [r["preset"] for r in runs] == ALL_PRESETS
    assert [r["seed"] for r in runs] == [int(n[-1]) if "_seed" in n else 0 for n in ALL_RUNS]
    for r in runs:
        for key in ("valid", "test", "test_sanitized"):
            if key == "valid" and r["preset"] == "deep_full":
                assert r[key] is None  # trained on it
                continue
            assert 0.0 <= r[key] <= 100.0, (r["preset"], key)
        assert r["steps"] == 60 and r["seconds"] > 0 and r["device"].endswith("CPU:0")
        assert r["dataset"] == report["dataset"]["tag"]
    course = {r["preset"]: r["course_test"] for r in runs}
    assert course["logreg_gd"] == 82.9 and course["logreg_sgd"] == 86.1 and course["relu1024"] is None
    logreg, relu, deep, full, keras = report["aggregated"]
    assert [logreg["preset"], relu["preset"]] == ["logreg_sgd", "relu1024"] and logreg["n"] == relu["n"] == 2
    assert deep["preset"] == "deep" and deep["seeds"] == [0, 1] and deep["n"] == 2
    assert full["preset"] == "deep_full" and full["n"] == 2 and full["valid"] is None
    assert keras["preset"] == "keras_baseline" and keras["n"] == 2 and keras["valid"] is not None
    keras_run = json.loads((workspace["runs"] / "keras_baseline_seed1" / "metrics.json").read_text())
    deep_config = json.loads((workspace["runs"] / "deep_seed1" / "metrics.json").read_text())["config"]
    jitter = ("max_shift", "max_rotation", "max_scale", "max_shear")
    assert keras_run["config"] == {**deep_config, **{k: 0 for k in jitter}}  # deep's net, without our jitter
    assert deep["test"]["min"] <= deep["test"]["mean"] <= deep["test"]["max"]
    extra = report["extra"]
    assert extra["total_seconds"] > 0 and extra["quick"] is True
    assert extra["prepare"]["sizes"]["train"] == 160 and extra["prepare"]["mode"] == "single-archive"
    prepared = json.loads((workspace["data"] / "prepare_report.json").read_text())
    assert extra["prepare"]["duplicates"] == prepared["duplicates"]
    data = dataset.load(workspace["data"] / "notMNIST.pickle")
    for split in ("train", "valid", "test"):  # exact repeats within a split: images minus distinct images
        images = data[f"{split}_dataset"].reshape(len(data[f"{split}_dataset"]), -1)
        repeats = len(images) - len(np.unique(images, axis=0))
        assert extra["prepare"]["duplicates"]["exact"]["within"][split] == repeats, split
    assert extra["run_names"] == ALL_RUNS and extra["deep_plots_run"] in ("deep_seed0", "deep_seed1")
    source = extra["prepare"]["sources"]["train"]
    archive = workspace["archive"]
    assert source == {"name": archive.name, "size": archive.stat().st_size, "sha256": files.sha256_file(archive),
                      "images": 203, "skipped_count": source["skipped_count"]}  # 200 + 3 planted copies
    assert extra["presets"] == list(reproduce.RUN_ORDER) and extra["seeds"] == [0, 1]
    assert sorted(extra["plots"]) == sorted(PLOTS)


@pytest.mark.parametrize("name", PLOTS)
def test_writes_png(workspace, name):
    path = workspace["results"] / name
    assert path.stat().st_size > MIN_PNG_BYTES
    with Image.open(path) as im:
        assert im.format == "PNG" and im.width > 200 and im.height > 200
        im.verify()


def test_run_folders_have_metrics_model_and_tensorboard(workspace):
    import tensorflow as tf

    for name in ALL_RUNS:
        run = workspace["runs"] / name
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["steps"] == 60 and metrics["name"] == name.split("_seed")[0]
        assert json.loads((run / "run.json").read_text())["config"] == metrics["config"]
        if name.startswith("keras_baseline"):  # model.fit's run: the metrics, nothing of our loop
            assert sorted(os.listdir(run)) == ["metrics.json", "run.json"]
            continue
        assert (run / "saved_model" / "saved_model.pb").is_file()
        events = sorted((run / "tb").glob("events.out.tfevents.*"))
        assert events, name
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(str(events[0])) for v in e.summary.value}
    assert {"loss", "valid_accuracy"} <= tags
    assert json.loads((workspace["runs"] / "deep_seed1" / "metrics.json").read_text())["config"]["seed"] == 1


def test_rerun_reuses_finished_runs(workspace, capsys):
    metrics = {n: workspace["runs"] / n / "metrics.json" for n in ALL_RUNS}
    before = {n: p.stat().st_mtime_ns for n, p in metrics.items()}
    old = json.loads((workspace["results"] / "results.json").read_text())["runs"]
    code, _, err = _run(capsys, *_args(workspace, "--seeds", "0,1", "--presets", "all",
                                       results=workspace["root"] / "again"))
    assert code == 0
    assert err.count("reusing finished run") == len(ALL_RUNS)
    assert "Training on" not in err
    assert {n: p.stat().st_mtime_ns for n, p in metrics.items()} == before
    new = json.loads((workspace["root"] / "again" / "results.json").read_text())
    assert [(r["valid"], r["test"]) for r in new["runs"]] == [(r["valid"], r["test"]) for r in old]
    assert new["extra"]["reused_runs"] == ALL_RUNS
    md = (workspace["root"] / "again" / "results.md").read_text()
    assert f"**Reused runs** (finished earlier with the same config, data and code): {', '.join(ALL_RUNS)}." in md


def test_a_run_trained_by_other_code_is_not_reused(workspace, capsys, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    shutil.copytree(workspace["runs"] / "logreg_gd", runs / "logreg_gd")
    ws = dict(workspace, runs=runs)
    trained_by = json.loads((runs / "logreg_gd" / "run.json").read_text())["code_id"]
    assert trained_by == run_dir.code_id() and len(trained_by) == 64
    code, _, err = _run(capsys, *_args(ws, "--presets", "logreg_gd", results=tmp_path / "res"))
    assert code == 0 and "reusing finished run" in err
    run_dir.code_id.cache_clear()
    monkeypatch.setattr(run_dir, "PACKAGE", tmp_path)  # as if the package's sources had changed
    (tmp_path / "changed.py").write_text("x = 1\n")
    try:
        assert run_dir.code_id() != trained_by
        code, _, err = _run(capsys, *_args(ws, "--presets", "logreg_gd", results=tmp_path / "res"))
        assert code == 0 and "training into" in err and "reusing finished run" not in err
    finally:
        run_dir.code_id.cache_clear()


def test_results_name_no_machine_path(workspace):
    for name in ("results.md", "results.json"):
        text = (workspace["results"] / name).read_text()
        assert str(workspace["root"]) not in text and os.path.expanduser("~") + "/" not in text, name


def test_force_retrains_and_presets_subset(workspace, capsys):
    results = workspace["root"] / "forced"
    path = workspace["runs"] / "logreg_sgd_seed0" / "metrics.json"
    before = path.stat().st_mtime_ns
    code, _, err = _run(capsys, *_args(workspace, "--presets", "logreg_sgd", "--seeds", "0", "--force",
                                       results=results))
    assert code == 0 and "Training on" in err and path.stat().st_mtime_ns != before
    report = json.loads((results / "results.json").read_text())
    assert [r["preset"] for r in report["runs"]] == ["logreg_sgd"]
    assert sorted(os.listdir(results)) == sorted(["results.md", "results.json", "samples.png",
                                                  "class_balance.png", "curves_assignment2.png",
                                                  "templates_logreg_sgd.png"])


def test_changed_config_is_retrained(workspace, capsys, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(workspace["runs"] / "logreg_gd", runs / "logreg_gd")
    ws = dict(workspace, runs=runs)
    code, _, err = _run(capsys, *_args(ws, "--presets", "logreg_gd", "--seed", "5", results=tmp_path / "res"))
    assert code == 0 and "training into" in err and "reusing finished run" not in err
    assert json.loads((runs / "logreg_gd" / "metrics.json").read_text())["config"]["seed"] == 5
    code, _, err = _run(capsys, *_args(ws, "--presets", "logreg_gd", "--seed", "5", results=tmp_path / "res"))
    assert code == 0 and "reusing finished run" in err


def test_resume_continues_an_interrupted_run(workspace, capsys):
    results = workspace["root"] / "resumed"
    metrics = workspace["runs"] / "relu1024_seed0" / "metrics.json"
    old = json.loads(metrics.read_text())
    metrics.unlink()  # as if the process died after the last checkpoint
    code, _, err = _run(capsys, *_args(workspace, "--presets", "relu1024", "--seeds", "0", "--resume", results=results))
    assert code == 0 and "resuming into" in err and "Resumed from" in err
    new = json.loads(metrics.read_text())
    assert (new["valid_accuracy"], new["test_accuracy"]) == (old["valid_accuracy"], old["test_accuracy"])


def test_defaults_are_the_course_presets_and_deep_once_each():
    args = reproduce.build_parser().parse_args([])
    assert args.presets == (*presets.COURSE_PRESETS, "deep") and args.seeds == (0,)
    assert "deep_full" not in args.presets and "keras_baseline" not in args.presets
    assert reproduce.build_parser().parse_args(["--presets", "all"]).presets == reproduce.RUN_ORDER
    runs = reproduce.run_configs(args.presets, args.seed, args.seeds, quick=False, num_train=1000)
    assert [name for name, _ in runs] == ["logreg_gd", "logreg_sgd_seed0", "relu1024_seed0", "logreg_l2",
                                          "relu1024_l2", "overfit_small", "relu1024_dropout", "deep_seed0"]


def test_a_smoke_run_writes_under_runs_quick_and_never_over_real_results(workspace, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    real = tmp_path / "results"
    real.mkdir()
    (real / "results.json").write_text(json.dumps({"extra": {"quick": False}, "runs": []}))
    before = (real / "results.json").read_text()
    base = ["--train-archive", str(workspace["archive"]), "--data-dir", str(workspace["data"]), "--workers", "1",
            "--quick", "--presets", "logreg_sgd"]
    code, out, _ = _run(capsys, *base)
    assert code == 0 and out.lstrip().startswith("SMOKE RUN")
    assert (tmp_path / "runs" / "quick" / "logreg_sgd_seed0" / "metrics.json").is_file()
    report = json.loads((tmp_path / "runs" / "quick" / "results" / "results.json").read_text())
    assert report["extra"]["quick"] is True and not (tmp_path / "runs" / "logreg_sgd_seed0").exists()
    code, _, err = _run(capsys, *base, "--results", str(real))  # asked to write over real results: refused
    assert code == 2 and "never overwrites" in err and err.count("\n") == 1
    assert (real / "results.json").read_text() == before and sorted(os.listdir(real)) == ["results.json"]


def test_every_figure_of_a_smoke_run_says_so(workspace, monkeypatch, tmp_path):
    texts = {}
    real_save = results_dir.plots.save_figure

    def save(fig, path):
        texts[os.path.basename(path)] = [t.get_text() for t in fig.texts]
        return real_save(fig, path)

    monkeypatch.setattr(results_dir.plots, "save_figure", save)
    data = dataset.load(workspace["data"] / "notMNIST.pickle")
    metrics = {n: json.loads((workspace["runs"] / n / "metrics.json").read_text())
               for n in ("logreg_sgd_seed0", "relu1024_seed0")}
    weights = {n: __import__("dnn_tf.training.inference", fromlist=["x"]).layer_weights(workspace["runs"] / n)
               for n in metrics}
    for smoke in (True, False):
        texts.clear()
        written, _ = results_dir.write_plots(data, metrics, str(tmp_path / str(smoke)), predict=None,
                                             layer_weights=weights.__getitem__, smoke=smoke)
        assert len(texts) == len(written) >= 4
        assert all((results_dir.SMOKE_MARK in t) == smoke for t in texts.values()), texts


def test_missing_archive_is_one_line_exit_2(tmp_path, capsys):
    code, out, err = _run(capsys, "--train-archive", str(tmp_path / "nope.tar.gz"), "--data-dir",
                          str(tmp_path / "data"), "--quick")
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("dnn-tf-reproduce: error:") and "nope.tar.gz" in err
    assert not (tmp_path / "data" / "notMNIST.pickle").exists()


@pytest.mark.parametrize("argv, word", [
    (["--presets", "logreg_gd,nope"], "nope"),
    (["--seeds", "0,x"], "integers"),
    (["--force", "--resume"], "not allowed"),
])
def test_bad_arguments_exit_2(argv, word, capsys):
    with pytest.raises(SystemExit) as e:
        reproduce.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and word in err


def test_console_script_bad_archive_subprocess(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "dnn_tf.cli.reproduce", "--train-archive",
                           str(tmp_path / "missing.tar.gz"), "--data-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "missing.tar.gz" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_finished_run_needs_same_config_and_data(tmp_path):
    cfg = presets.get("logreg_sgd").config
    run = RunDir(tmp_path)
    metrics = {"config": cfg.to_dict(), "valid_accuracy": 80.0, "test_accuracy": 85.0}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    assert run.finished(cfg, "abc") is None  # no run.json: unknown data
    (tmp_path / "run.json").write_text(json.dumps({"data_id": "abc"}))
    assert run.finished(cfg, "abc")["test_accuracy"] == 85.0
    assert run.finished(cfg, "other data") is None
    assert run.finished(cfg.replace(learning_rate=0.1), "abc") is None
    (tmp_path / "metrics.json").write_text('{"config": ')  # torn file
    assert run.finished(cfg, "abc") is None


def test_resumable_needs_checkpoints_of_the_same_config_and_data(tmp_path):
    cfg = presets.get("logreg_sgd").config
    run = RunDir(tmp_path)
    (tmp_path / "run.json").write_text(json.dumps({"data_id": "abc"}))
    assert not run.resumable(cfg, "abc")  # no checkpoints
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "history.json").write_text(json.dumps({"config": cfg.to_dict(), "history": []}))
    assert run.resumable(cfg, "abc") and run.resumable(cfg.replace(steps=9001), "abc")  # steps may grow
    assert not run.resumable(cfg, "other data")
    assert not run.resumable(cfg.replace(seed=1), "abc")


def test_run_configs_quick_and_seeds():
    runs = reproduce.run_configs(["logreg_gd", "overfit_small", "deep"], seed=3, deep_seeds=(0, 2), quick=True,
                                 num_train=100)
    assert [name for name, _ in runs] == ["logreg_gd", "overfit_small", "deep_seed0", "deep_seed2"]
    gd, small, deep0, deep2 = (p.config for _, p in runs)
    assert gd.seed == small.seed == 3 and (deep0.seed, deep2.seed) == (0, 2)
    assert all(p.config.steps == reproduce.QUICK_OVERRIDES["steps"] for _, p in runs)
    assert all(p.settings.log_every == reproduce.QUICK_OVERRIDES["log_every"] for _, p in runs)
    assert gd.batch_size is None and small.batch_size == 100  # cut to the tiny training set
    full = reproduce.run_configs(["deep"], seed=0, deep_seeds=(1,), quick=False, num_train=100)
    assert full == [("deep_seed1", presets.get("deep", seed=1))]


def test_representative_run_is_the_median():
    metrics = {"a": {"test_accuracy": 90.0}, "b": {"test_accuracy": 80.0}, "c": {"test_accuracy": 85.0}}
    assert results_dir.representative_run(["a", "b", "c"], metrics) == "c"
    assert results_dir.representative_run(["a", "b"], metrics) == "b"
    assert results_dir.representative_run(["a"], metrics) == "a"
