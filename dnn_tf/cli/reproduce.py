"""``dnn-tf-reproduce``: the whole course in one command (prepare, train every preset, report).

    dnn-tf-reproduce                      # downloads notMNIST_large + notMNIST_small (the course's data)
    dnn-tf-reproduce --train-archive path/to/notMNIST_small.tar.gz    # offline: one archive, split three ways
    dnn-tf-reproduce --seeds 0,1,2 --presets all ...                 # the committed table: mean and spread
    dnn-tf-reproduce --quick ...          # every preset for a few steps: a smoke run, into runs/quick/

Steps: fetch/prepare the data (reusing what is prepared), train each preset (by default the
course's and ours, ``deep``, seed 0) into ``runs/<preset>`` (``MULTI_SEED`` presets once per
seed, into ``runs/<preset>_seed<N>``), then write ``results/results.md``,
``results/results.json`` and the plots.

Nothing is lost on a crash or Ctrl-C: a finished run keeps its ``metrics.json`` and the
next invocation reuses every finished run whose config, data and code are unchanged
(``--force`` retrains); ``--resume`` continues interrupted runs from their last checkpoint.
A smoke run writes only under ``runs/quick/`` and never over a results folder of real runs.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from typing import Sequence

from dnn_tf import files
from dnn_tf.cli import (
    EXIT_INTERRUPTED,
    ArgumentParser,
    add_output_flags,
    import_tensorflow,
    positive_int,
    run,
    setup_output,
    show_progress,
)
from dnn_tf.data import dataset, download
from dnn_tf.training import presets
from dnn_tf.training.run_dir import RunDir

PROG = "dnn-tf-reproduce"
DEFAULT_DATA_DIR = "data"
DEFAULT_RUNS_DIR = "runs"
DEFAULT_RESULTS_DIR = "results"
KERAS_BASELINE = "keras_baseline"  # deep's net, optimizer and step budget in plain Keras (reference/keras_mlp.py)
RUN_ORDER = (*presets.PRESET_ORDER, KERAS_BASELINE)
ALL = "all"  # --presets all: RUN_ORDER
DEFAULT_PRESETS = (*presets.COURSE_PRESETS, "deep")  # the course's models and ours, once each
# Run once per seed of --seeds, reported as mean and spread (the presets with a target in the README).
MULTI_SEED = ("logreg_sgd", "relu1024", "deep", "deep_full", KERAS_BASELINE)
DEFAULT_SEED = 0
DEFAULT_SEEDS = (0,)
QUICK_OVERRIDES = presets.QUICK_OVERRIDES  # --quick: every preset for a few steps (smoke runs and tests)
QUICK_STEPS = QUICK_OVERRIDES["steps"]
QUICK_DIR = "quick"  # --quick: runs/quick/<run> and runs/quick/results

logger = logging.getLogger("dnn_tf.cli.reproduce")


def _presets(text: str) -> tuple[str, ...]:
    if text.strip() == ALL:
        return RUN_ORDER
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in RUN_ORDER]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown preset(s) {', '.join(unknown) or repr(text)}; choose from {', '.join(RUN_ORDER)}")
    return tuple(n for n in RUN_ORDER if n in names)


def _seeds(text: str) -> tuple[int, ...]:
    try:
        seeds = tuple(dict.fromkeys(int(s) for s in text.split(",") if s.strip()))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected seeds >= 0, got {text!r}")
    return seeds


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0],
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--train-archive", default=None,
                        help="archive/folder/URL of the training images (default: download "
                             f"{download.CANONICAL_TRAIN}); alone, train/valid/test are split from it")
    parser.add_argument("--test-archive", default=None,
                        help=f"archive/folder/URL of the test images (default: {download.CANONICAL_TEST} when "
                             "--train-archive is not given, else split from the training archive)")
    parser.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="downloads and prepared pickles (default: data)")
    parser.add_argument("--runs", default=None,
                        help="one folder per run: checkpoints, SavedModel, metrics.json, tb/ (default: runs; "
                             f"with --quick: runs/{QUICK_DIR})")
    parser.add_argument("--results", default=None,
                        help=f"results.md/json and plots (default: results; with --quick: runs/{QUICK_DIR}/results)")
    parser.add_argument("--presets", type=_presets, default=DEFAULT_PRESETS,
                        help=f"comma-separated presets, or '{ALL}' (default: {','.join(DEFAULT_PRESETS)}; all: "
                             + ",".join(RUN_ORDER) + ")")
    parser.add_argument("--seeds", type=_seeds, default=DEFAULT_SEEDS,
                        help=f"seeds of {', '.join(MULTI_SEED)}, reported as mean and spread (default: 0)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the other presets (default: 0)")
    parser.add_argument("--quick", action="store_true",
                        help=f"every preset for {QUICK_STEPS} steps: a smoke run, not results, written under "
                             f"runs/{QUICK_DIR}/")
    parser.add_argument("--workers", type=positive_int, default=None, help="image decoding processes (default: CPUs)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--force", action="store_true", help="retrain runs even when finished with the same config")
    mode.add_argument("--resume", action="store_true",
                      help="continue interrupted runs from their last checkpoint (finished runs are always reused)")
    add_output_flags(parser)
    return parser


def run_configs(names: Sequence[str], seed: int, deep_seeds: Sequence[int], quick: bool,
                num_train: int) -> list[tuple[str, presets.Preset]]:
    """``(run name, preset)`` for every run, in preset order (``MULTI_SEED`` presets once per seed).

    With ``quick`` every preset is a smoke run (``presets.quick``).
    """
    runs = []
    for name in names:
        for s in deep_seeds if name in MULTI_SEED else (seed,):
            preset = keras_preset(s) if name == KERAS_BASELINE else presets.get(name, seed=s)
            if quick:
                preset = presets.quick(preset, num_train)
            runs.append((f"{name}_seed{s}" if name in MULTI_SEED else name, preset))
    return runs


def keras_preset(seed: int) -> presets.Preset:
    """The ``keras_baseline`` run as a preset: deep's config without jitter (``keras_baseline.baseline_config``)."""
    from dnn_tf.reference.keras_mlp import baseline_config

    deep = presets.get("deep", seed=seed)
    return presets.Preset(KERAS_BASELINE, baseline_config(deep.config), deep.settings)


def output_dirs(args: argparse.Namespace) -> tuple[str, str]:
    """``(runs, results)`` folders; a smoke run's default under ``runs/quick``.

    Raises:
      ValueError: a smoke run asked to write into a results folder that holds real runs' results.
    """
    runs = args.runs or (os.path.join(DEFAULT_RUNS_DIR, QUICK_DIR) if args.quick else DEFAULT_RUNS_DIR)
    results = args.results or (os.path.join(runs, "results") if args.quick else DEFAULT_RESULTS_DIR)
    if args.quick:
        from dnn_tf.report.results_dir import RESULTS_JSON

        previous = files.read_json(os.path.join(results, RESULTS_JSON))
        if isinstance(previous, dict) and not previous.get("extra", {}).get("quick", False):
            raise ValueError(f"{results} holds the results of real runs; a smoke run (--quick) never overwrites "
                             "them: drop --results or give another folder")
    return runs, results


def train_runs(runs, data, runs_dir: str, data_id: str, force: bool, resume: bool,
               progress: bool) -> tuple[dict[str, dict], list[str], list[str]]:
    """Trains (or reuses) every run; a finished run is reused when its config, data and code are the same.

    Returns:
      ``(metrics by run name, reused run names, failed run messages)``; a diverged run is
      reported and skipped, the others still run.
    """
    from dnn_tf.reference.keras_mlp import fit_keras
    from dnn_tf.training.loop import TrainingDiverged, train_and_evaluate
    from dnn_tf.training.run_dir import code_id

    metrics: dict[str, dict] = {}
    reused, failed = [], []
    for i, (name, preset) in enumerate(runs, 1):
        run_dir = RunDir(os.path.join(runs_dir, name))
        head = f"[{i}/{len(runs)}] {name}"
        previous = None if force else run_dir.finished(preset.config, data_id, code_id())
        if previous is not None:
            logger.info(f"{head}: reusing finished run {run_dir.path} (same config, data and code; --force "
                        "retrains)")
            metrics[name], reused = previous, reused + [name]
            continue
        if preset.name == KERAS_BASELINE:  # model.fit, no checkpoints: always from the start
            logger.info(f"{head}: training with Keras model.fit into {run_dir.path}")
            run_dir.start(preset.config, preset.settings, preset.name, data_id, resume=False)
            metrics[name] = fit_keras(preset.config, data, name=preset.name)
            run_dir.write_metrics(metrics[name])
            continue
        cont = resume and run_dir.resumable(preset.config, data_id)
        logger.info(f"{head}: {'resuming' if cont else 'training'} into {run_dir.path}")
        try:
            result = train_and_evaluate(preset.config, data, preset.settings, out_dir=run_dir.path, resume=cont,
                                        name=preset.name, data_id=data_id, progress=progress)
        except TrainingDiverged as e:
            failed.append(f"{name}: {e}")
            logger.error(f"{head}: FAILED, {e}")
            continue
        metrics[name] = result.to_dict()
    return metrics, reused, failed


def _body(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    setup_output(args)
    runs_dir, results = output_dirs(args)
    start = time.perf_counter()
    progress = show_progress(args)
    train_source, test_source = download.resolve_sources(args.train_archive, args.test_archive, args.data_dir,
                                                         progress=progress)
    from dnn_tf.data import prepare

    prep = prepare.prepare(train_source, test_source, out_dir=args.data_dir, workers=args.workers, progress=progress)
    data = dataset.load(prep["pickle"])
    data_id = files.sha256_file(prep["pickle"])
    logger.info(prepare.format_report(prep))
    import_tensorflow(args)
    from dnn_tf.report import results_dir
    from dnn_tf.training import inference
    from dnn_tf.training.interrupt import TrainingInterrupted

    runs = run_configs(args.presets, args.seed, args.seeds, args.quick, len(data["train_labels"]))
    logger.info(f"{len(runs)} run(s): {', '.join(name for name, _ in runs)}" + (" (quick)" if args.quick else ""))
    try:
        metrics, reused, failed = train_runs(runs, data, runs_dir, data_id, args.force, args.resume, progress)
    except TrainingInterrupted as e:
        again = shlex.join([PROG, *[a for a in argv if a not in ("--resume", "--force")], "--resume"])
        print(f"{PROG}: {e}; finished runs are kept, continue with: {again}", file=sys.stderr)
        return EXIT_INTERRUPTED
    if not metrics:
        raise ValueError("every run failed: " + "; ".join(failed))

    def run_path(run_name: str) -> str:
        return os.path.join(runs_dir, run_name)

    table, written = results_dir.write_results(
        results, data, prep, metrics, lambda run_name, images: inference.predict(run_path(run_name), images),
        lambda run_name: inference.layer_weights(run_path(run_name)), time.perf_counter() - start,
        extra={"reused_runs": reused, "presets": list(args.presets), "seeds": list(args.seeds)},
        quick_steps=QUICK_STEPS if args.quick else None, failed=failed)
    print()
    print(table)
    print(f"\nTotal wall time: {time.perf_counter() - start:,.1f} s ({len(reused)} run(s) reused)")
    print("Wrote:\n" + "\n".join(f"  {path}" for path in written))
    print(f"TensorBoard: tensorboard --logdir {runs_dir}")
    if failed:
        print(f"{PROG}: {len(failed)} run(s) failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``dnn-tf-reproduce``; bad input -> one line on stderr, exit 2."""
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
