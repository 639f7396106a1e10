"""dnn-tf-reproduce: the whole course in one command (prepare, train every preset, report).

    dnn-tf-reproduce --train-archive ../shared/notmnist/notMNIST_sample.tar.gz --data-dir data
    dnn-tf-reproduce                      # downloads notMNIST_large + notMNIST_small (the course's data)
    dnn-tf-reproduce --quick ...          # every preset for a few steps: a smoke run

Steps: fetch/prepare the data (``data.prepare`` reuses what exists), load ``notMNIST.pickle``,
train each preset of ``config.PRESET_ORDER`` into ``runs/<preset>`` (``deep`` and ``deep_full`` once
per seed into ``runs/deep_seed<N>``, ``runs/deep_full_seed<N>``), then write ``results/results.md``,
``results/results.json`` and the plots.

Nothing is lost on a crash: a finished run keeps its ``metrics.json``; the next invocation reuses
every finished run whose config and data are unchanged (``--force`` retrains) and, with
``--resume``, continues interrupted runs from their last checkpoint.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from dnn_tf import config as cfg
from dnn_tf import io as dio
from dnn_tf.cli import ArgumentParser, run

PROG = "dnn-tf-reproduce"
DEFAULT_DATA_DIR = "data"
DEFAULT_RUNS_DIR = "runs"
DEFAULT_RESULTS_DIR = "results"
DEEP = "deep"
# Presets run once per seed of --seeds and reported as mean and spread.
MULTI_SEED = (DEEP, "deep_full")
DEFAULT_SEED = 0
DEFAULT_DEEP_SEEDS = (0, 1, 2)
# The course's data: train/valid from the large archive, test from the small one.
CANONICAL_TRAIN = "notMNIST_large.tar.gz"
CANONICAL_TEST = "notMNIST_small.tar.gz"
# --quick: every preset for a few steps (smoke runs and tests).
QUICK_OVERRIDES = {"steps": 60, "log_every": 20, "checkpoint_every": 30}
# Files of a run folder (metrics.json is train.py's; run.json is ours: the data the run used).
METRICS_FILE = "metrics.json"
RUN_FILE = "run.json"
CHECKPOINT_HISTORY = os.path.join("checkpoints", "history.json")
HASH_BLOCK = 1 << 20
# Results files.
RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
SAMPLES_PNG = "samples.png"
BALANCE_PNG = "class_balance.png"
CONFUSION_PNG = "confusion_deep.png"
MISTAKES_PNG = "mistakes_deep.png"
MISTAKES_SHOWN = 16
CURVE_PLOTS = (
    ("curves_assignment2.png", "Assignment 2: logistic regression and one hidden layer",
     ("logreg_gd", "logreg_sgd", "relu1024")),
    ("curves_assignment3.png", "Assignment 3: regularization, overfitting, dropout, deep",
     ("logreg_l2", "relu1024_l2", "overfit_small", "relu1024_dropout", DEEP)),
)
SPLIT_NAMES = ("train", "valid", "test")

Log = Callable[[str], Any]


# --------------------------------------------------------------------------- arguments


def _presets(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in cfg.PRESETS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown preset(s) {', '.join(unknown) or repr(text)}; choose from {', '.join(cfg.PRESET_ORDER)}")
    return tuple(n for n in cfg.PRESET_ORDER if n in names)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected seeds >= 0, got {text!r}")
    return seeds


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--train-archive", default=None,
                        help="archive/folder/URL of the training images (default: download "
                             f"{CANONICAL_TRAIN}); alone, train/valid/test are split from it")
    parser.add_argument("--test-archive", default=None,
                        help=f"archive/folder/URL of the test images (default: {CANONICAL_TEST} when "
                             "--train-archive is not given, else split from the training archive)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="downloads and prepared pickles (default: data)")
    parser.add_argument("--runs", default=DEFAULT_RUNS_DIR,
                        help="one folder per run: checkpoints, SavedModel, metrics.json, tb/ (default: runs)")
    parser.add_argument("--results", default=DEFAULT_RESULTS_DIR, help="results.md/json and plots (default: results)")
    parser.add_argument("--presets", type=_presets, default=cfg.PRESET_ORDER,
                        help="comma-separated presets (default: all, in order: " + ",".join(cfg.PRESET_ORDER) + ")")
    parser.add_argument("--seeds", type=_seeds, default=DEFAULT_DEEP_SEEDS,
                        help="seeds of deep and deep_full, reported as mean and spread (default: 0,1,2)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the other presets (default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help=f"every preset for {QUICK_OVERRIDES['steps']} steps (a smoke run, not results)")
    parser.add_argument("--workers", type=_positive, default=None, help="image decoding processes (default: CPUs)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="retrain runs even when finished with the same config")
    mode.add_argument("--resume", action="store_true",
                      help="continue interrupted runs from their last checkpoint (finished runs are always reused)")
    return parser


# --------------------------------------------------------------------------- data


def fetch_sources(train_archive: str | None, test_archive: str | None, data_dir: str,
                  log: Log) -> tuple[str, str | None]:
    """Local paths of the train and test sources, downloading canonical archives if needed.

    Raises:
      DownloadError (an OSError): a missing path or a failed download.
    """
    from dnn_tf import download

    progress = sys.stderr.isatty()
    train = download.fetch(train_archive or CANONICAL_TRAIN, data_dir, progress=progress, log=log)
    test = test_archive or (None if train_archive else CANONICAL_TEST)
    if test is not None:
        test = download.fetch(test, data_dir, progress=progress, log=log)
    return train, test


def file_sha256(path: str) -> str:
    """SHA-256 of a file (identifies the data a run was trained on)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def dataset_tag(report: Mapping[str, Any]) -> str:
    """Short name of the data: the archive stem, or ``train+test`` stems in two-archive mode."""
    from dnn_tf.data import archive_stem

    sources = report["sources"]
    tag = archive_stem(sources["train"]["path"])
    if "test" in sources:
        tag += "+" + archive_stem(sources["test"]["path"])
    return tag


def dataset_description(report: Mapping[str, Any], data: Mapping[str, np.ndarray]) -> str:
    """The honest one-line dataset description (``report.describe_dataset``)."""
    from dnn_tf import report as rep

    sources = report["sources"]
    sizes = [len(data[f"{split}_labels"]) for split in SPLIT_NAMES]
    test_source = sources["test"]["path"] if "test" in sources else None
    return rep.describe_dataset(*sizes, train_source=sources["train"]["path"], test_source=test_source,
                                source_size=sources["train"].get("images"))


def prepare_summary(report: Mapping[str, Any]) -> dict[str, Any]:
    """What results.json keeps of the prepare report: sources, sizes, duplicates, skipped files."""
    return {
        "mode": report.get("mode"),
        "seed": report.get("seed"),
        "sources": {role: {k: src.get(k) for k in ("path", "size", "sha256", "images", "skipped_count")}
                    for role, src in report.get("sources", {}).items()},
        "sizes": report.get("sizes"),
        "duplicates": report.get("duplicates"),
        "sanitized_rule": (report.get("sanitized") or {}).get("rule"),
        "skipped": (report.get("skipped") or {}).get("count"),
        "seconds": (report.get("seconds") or {}).get("total"),
        "reused_pickle": (report.get("reused") or {}).get("merged_pickle"),
    }


def prepare_line(summary: Mapping[str, Any]) -> str:
    """One markdown line about the prepared data (sizes, duplicates, skipped files)."""
    sizes = summary.get("sizes") or {}
    parts = [", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sizes.items())]
    dup = summary.get("duplicates") or {}
    for kind in ("exact", "near"):
        counts = dup.get(kind)
        if counts:
            within = ", ".join(f"{k} {v:,}" for k, v in counts["within"].items())
            across = ", ".join(f"{k.replace('-', '–')} {v:,}" for k, v in counts["across"].items())
            parts.append(f"{kind} duplicates within {within}; across {across}")
    parts.append(f"{summary.get('skipped') or 0:,} unreadable files skipped")
    return f"**Data preparation** ({summary.get('mode')}): " + "; ".join(parts) + "."


# --------------------------------------------------------------------------- runs


def run_configs(presets: Sequence[str], seed: int, deep_seeds: Sequence[int], quick: bool,
                num_train: int) -> list[tuple[str, cfg.TrainConfig]]:
    """``(run name, config)`` for every run, in preset order (``MULTI_SEED`` presets once per seed).

    With ``quick`` every preset runs ``QUICK_OVERRIDES`` steps and the batch size is cut to the
    training set when that is smaller (tiny fixture datasets).
    """
    runs = []
    for preset in presets:
        seeds = deep_seeds if preset in MULTI_SEED else (seed,)
        for s in seeds:
            config = cfg.get_preset(preset, seed=s)
            if quick:
                n = min(num_train, config.train_subset or num_train)
                overrides = dict(QUICK_OVERRIDES)
                if config.batch_size is not None and config.batch_size > n:
                    overrides["batch_size"] = n
                config = config.replace(**overrides)
            name = f"{preset}_seed{s}" if preset in MULTI_SEED else preset
            runs.append((name, config))
    return runs


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _plain_config(config: cfg.TrainConfig) -> dict[str, Any]:
    return json.loads(json.dumps(config.to_dict()))


def finished_run(run_dir: str, config: cfg.TrainConfig, data_id: str) -> dict[str, Any] | None:
    """The metrics of a finished run with this config on this data, else None."""
    metrics = _read_json(os.path.join(run_dir, METRICS_FILE))
    info = _read_json(os.path.join(run_dir, RUN_FILE))
    if not isinstance(metrics, dict) or not isinstance(info, dict):
        return None
    if metrics.get("config") != _plain_config(config) or info.get("data_sha256") != data_id:
        return None
    if not all(isinstance(metrics.get(k), (int, float)) for k in ("valid_accuracy", "test_accuracy")):
        return None
    return metrics


def resumable(run_dir: str, config: cfg.TrainConfig, data_id: str) -> bool:
    """Whether ``run_dir`` holds checkpoints of an interrupted run of this config on this data."""
    from dnn_tf import train

    info = _read_json(os.path.join(run_dir, RUN_FILE))
    saved = _read_json(os.path.join(run_dir, CHECKPOINT_HISTORY))
    if not isinstance(info, dict) or info.get("data_sha256") != data_id or not isinstance(saved, dict):
        return False
    old, new = saved.get("config") or {}, _plain_config(config)
    return all(old.get(k) == v for k, v in new.items() if k not in train.RESUMABLE_CHANGES)


def train_runs(runs: Sequence[tuple[str, cfg.TrainConfig]], data: Mapping[str, np.ndarray], runs_dir: str,
               data_id: str, force: bool, resume: bool, log: Log) -> tuple[dict[str, dict], list[str], list[str]]:
    """Trains (or reuses) every run.

    Returns:
      ``(metrics by run name, reused run names, failed run messages)``; a diverged run is
      reported and skipped, the others still run.
    """
    from dnn_tf import train

    progress = sys.stdout.isatty()
    metrics: dict[str, dict] = {}
    reused, failed = [], []
    for i, (name, config) in enumerate(runs, 1):
        run_dir = os.path.join(runs_dir, name)
        head = f"[{i}/{len(runs)}] {name}"
        previous = None if force else finished_run(run_dir, config, data_id)
        if previous is not None:
            log(f"{head}: reusing finished run {run_dir} (same config and data; --force retrains)")
            metrics[name] = previous
            reused.append(name)
            continue
        cont = resume and resumable(run_dir, config, data_id)
        log(f"{head}: {'resuming' if cont else 'training'} into {run_dir}")
        if os.path.exists(os.path.join(run_dir, METRICS_FILE)):
            os.remove(os.path.join(run_dir, METRICS_FILE))  # never mistake an old result for this run's
        dio.write_json(os.path.join(run_dir, RUN_FILE),
                       {"run": name, "config": config.to_dict(), "data_sha256": data_id})
        try:
            result = train.train_and_evaluate(config, data, out_dir=run_dir, resume=cont, log=log,
                                              progress=progress)
        except train.TrainingDiverged as e:
            failed.append(f"{name}: {e}")
            log(f"{head}: FAILED, {e}")
            continue
        metrics[name] = result.to_dict()
    return metrics, reused, failed


# --------------------------------------------------------------------------- results


def representative_run(names: Sequence[str], metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """The run of median test accuracy among ``names`` (lower middle for an even count)."""
    ordered = sorted(names, key=lambda n: (metrics[n]["test_accuracy"], n))
    return ordered[(len(ordered) - 1) // 2]


def write_plots(data: Mapping[str, np.ndarray], metrics: Mapping[str, Mapping[str, Any]],
                runs: Sequence[tuple[str, cfg.TrainConfig]], runs_dir: str, results_dir: str,
                log: Log) -> tuple[list[str], str | None]:
    """Draws every plot for what was run; returns (paths written, deep run used for the error plots)."""
    from dnn_tf import plots, train

    written = [plots.sample_grid(data["train_dataset"], data["train_labels"],
                                 os.path.join(results_dir, SAMPLES_PNG))]
    counts = {split: np.bincount(np.asarray(data[f"{split}_labels"]), minlength=plots.NUM_CLASSES)
              for split in SPLIT_NAMES}
    written.append(plots.class_balance(counts, os.path.join(results_dir, BALANCE_PNG)))

    deep_runs = [name for name, config in runs if config.name == DEEP and name in metrics]
    deep = representative_run(deep_runs, metrics) if deep_runs else None
    for filename, title, presets in CURVE_PLOTS:
        histories = {}
        for name, config in runs:
            if config.name in presets and name in metrics and metrics[name].get("history"):
                if config.name == DEEP and name != deep:
                    continue
                label = f"{config.name} (seed {config.seed})" if config.name == DEEP else config.name
                histories[label] = metrics[name]["history"]
        if histories:
            written.append(plots.learning_curves(histories, os.path.join(results_dir, filename), title=title))

    if deep is not None:
        seed = metrics[deep]["config"]["seed"]
        log(f"Predicting the test set with {deep} (median test accuracy of {len(deep_runs)} deep run(s))")
        probabilities = train.predict(os.path.join(runs_dir, deep), data["test_dataset"])
        written.append(plots.confusion_matrix(data["test_labels"], probabilities,
                                              os.path.join(results_dir, CONFUSION_PNG),
                                              title=f"deep, seed {seed}, test set"))
        written.append(plots.confident_mistakes(data["test_dataset"], data["test_labels"], probabilities,
                                                os.path.join(results_dir, MISTAKES_PNG), k=MISTAKES_SHOWN))
    else:
        log("No deep run: confusion_deep.png and mistakes_deep.png are not drawn")
    return written, deep


def markdown(rows, aggregated, description: str, summary: Mapping[str, Any], total_seconds: float,
             quick: bool, plot_paths: Sequence[str], failed: Sequence[str], deep: str | None) -> str:
    """results.md: title, the report module's table, data and timing lines, plot links."""
    from dnn_tf import report as rep

    lines = ["# notMNIST course reproduction: results", ""]
    if quick:
        lines += [f"> **Quick smoke run** ({QUICK_OVERRIDES['steps']} steps per preset): "
                  "these numbers test the pipeline and are not results.", ""]
    lines.append(rep.results_markdown(rows, description, aggregated).rstrip("\n"))
    train_seconds = sum(r["seconds"] or 0.0 for r in rows)
    lines += ["", prepare_line(summary), "",
              f"**Total wall time:** {total_seconds:,.1f} s for this invocation (data preparation, training, "
              f"evaluation, plots); the training loops of the {len(rows)} runs took {train_seconds:,.1f} s "
              "together (reused runs count their original time).", ""]
    if failed:
        lines += ["**Failed runs:**", ""] + [f"- {f}" for f in failed] + [""]
    if plot_paths:
        lines += ["## Plots", ""]
        for path in plot_paths:
            name = os.path.basename(path)
            note = f" ({deep})" if deep and name in (CONFUSION_PNG, MISTAKES_PNG) else ""
            lines.append(f"- [{name}]({name}){note}")
        lines.append("")
    return "\n".join(lines)


def text_table(rows: Sequence[Mapping[str, Any]], aggregated: Sequence[Mapping[str, Any]]) -> str:
    """The short table printed at the end."""
    def pct(v):
        return "—" if v is None else f"{v:.1f}"

    lines = [f"{'preset':<18}{'seed':>5}{'course':>8}{'valid':>8}{'test':>8}{'test(s)':>9}{'steps':>7}{'secs':>8}"]
    for r in rows:
        lines.append(f"{r['preset']:<18}{r['seed'] if r['seed'] is not None else '—':>5}{pct(r['course_test']):>8}"
                     f"{pct(r['valid']):>8}{pct(r['test']):>8}{pct(r['test_sanitized']):>9}"
                     f"{r['steps'] or 0:>7}{r['seconds'] or 0:>8.1f}")
    for a in aggregated:
        if a.get("test"):
            lines.append(f"{a['preset']}: test {a['test']['mean']:.1f} ± {a['test']['std']:.1f} "
                         f"over seeds {','.join(str(s) for s in a['seeds'])}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def _log(line: str) -> None:
    print(line, flush=True)


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    start = time.perf_counter()
    log = _log

    train_source, test_source = fetch_sources(args.train_archive, args.test_archive, args.data_dir, log)

    from dnn_tf import data as dat

    prep = dat.prepare(train_source, test_source, out_dir=args.data_dir, workers=args.workers,
                       progress=sys.stderr.isatty(), log=log)
    pickle_path = prep.get("pickle") or os.path.join(args.data_dir, dat.MERGED_PICKLE)
    data = dat.load_pickle(pickle_path)
    dat.validate_dataset(data)
    data_id = file_sha256(pickle_path)
    log(dat.format_report(prep))

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter
    from dnn_tf import report as rep

    runs = run_configs(args.presets, args.seed, args.seeds, args.quick, len(data["train_labels"]))
    log(f"{len(runs)} run(s): {', '.join(name for name, _ in runs)}" + (" (quick)" if args.quick else ""))
    metrics, reused, failed = train_runs(runs, data, args.runs, data_id, args.force, args.resume, log)
    if not metrics:
        raise ValueError("every run failed: " + "; ".join(failed))

    done = [(name, config) for name, config in runs if name in metrics]
    tag = dataset_tag(prep)
    description = dataset_description(prep, data)
    rows = rep.results_rows([metrics[name] for name, _ in done], dataset=tag)
    aggregated = rep.aggregate_seeds(rows)
    plot_paths, deep = write_plots(data, metrics, done, args.runs, args.results, log)

    total = time.perf_counter() - start
    summary = prepare_summary(prep)
    md_path = os.path.join(args.results, RESULTS_MD)
    json_path = os.path.join(args.results, RESULTS_JSON)
    dio.write_text(md_path, markdown(rows, aggregated, description, summary, total, args.quick,
                                     plot_paths, failed, deep))
    extra = {
        "total_seconds": total,
        "train_seconds_sum": sum(r["seconds"] or 0.0 for r in rows),
        "quick": args.quick,
        "prepare": summary,
        "runs_dir": os.path.abspath(args.runs),
        "run_names": [name for name, _ in done],
        "reused_runs": reused,
        "failed_runs": failed,
        "deep_plots_run": deep,
        "plots": [os.path.basename(p) for p in plot_paths],
        "versions": _versions(),
    }
    dio.write_json(json_path, rep.results_json(rows, {"tag": tag, "description": description},
                                               aggregated, extra=extra))

    print()
    print(text_table(rows, aggregated))
    print(f"\nTotal wall time: {total:,.1f} s ({len(reused)} run(s) reused)")
    print("Wrote:")
    for path in [md_path, json_path, *plot_paths]:
        print(f"  {path}")
    print(f"TensorBoard: tensorboard --logdir {args.runs}")
    if failed:
        print(f"{PROG}: {len(failed)} run(s) failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def _versions() -> dict[str, str]:
    import platform

    import tensorflow as tf

    from dnn_tf import __version__

    return {"dnn_tf": __version__, "tensorflow": tf.__version__, "numpy": np.__version__,
            "python": platform.python_version()}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dnn-tf-reproduce``; bad input -> one line on stderr, exit 2."""
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
