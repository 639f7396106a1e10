"""The ``results/`` folder of ``dnn-tf-reproduce``: results.md, results.json and the plots.

Composes ``report`` (tables, seed spread) and ``plots`` (figures) from what the runs
produced (their ``metrics.json`` dicts) and the prepare report; writes every file
atomically. The end of the data flow: nothing here trains or reads archives.
"""

from __future__ import annotations

import logging
import os
import platform
from typing import Any, Mapping, Sequence

import numpy as np

from dnn_tf import files
from dnn_tf.data.dataset import SPLITS
from dnn_tf.data.prepare import archive_stem
from dnn_tf.notmnist import NUM_CLASSES
from dnn_tf.report import plots, tables

RESULTS_MD = "results.md"
RESULTS_JSON = "results.json"
SAMPLES_PNG = "samples.png"
BALANCE_PNG = "class_balance.png"
CONFUSION_PNG = "confusion_deep.png"
MISTAKES_PNG = "mistakes_deep.png"
TEMPLATES = ("templates_logreg_sgd.png", "logreg_sgd")  # logistic regression's ten weight images
HIDDEN_UNITS = ("hidden_units_relu1024.png", "relu1024")  # the one-hidden-layer net's strongest units
MISTAKES_SHOWN = 16
SMOKE_MARK = "SMOKE RUN: not results"  # across every figure of a --quick run
DEEP = "deep"  # the preset whose errors are plotted (its median-seed run, like every multi-seed preset's plots)
CURVE_PLOTS = (
    ("curves_assignment2.png", "Assignment 2: logistic regression and one hidden layer",
     ("logreg_gd", "logreg_sgd", "relu1024")),
    ("curves_assignment3.png", "Assignment 3: regularization, overfitting, dropout, deep",
     ("logreg_l2", "relu1024_l2", "overfit_small", "relu1024_dropout", DEEP)),
)

logger = logging.getLogger(__name__)


def dataset_tag(prepare_report: Mapping[str, Any]) -> str:
    """Short name of the data: the archive stem, or ``train+test`` stems in two-archive mode."""
    sources = prepare_report["sources"]
    tag = archive_stem(sources["train"]["path"])
    return tag + "+" + archive_stem(sources["test"]["path"]) if "test" in sources else tag


def dataset_description(prepare_report: Mapping[str, Any]) -> str:
    """The honest one-line dataset description (``report.describe_dataset``)."""
    sources, sizes = prepare_report["sources"], prepare_report["sizes"]
    return tables.describe_dataset(*(sizes[s] for s in SPLITS), train_source=sources["train"]["path"],
                                   test_source=sources["test"]["path"] if "test" in sources else None,
                                   source_size=sources["train"].get("images"))


def prepare_summary(prepare_report: Mapping[str, Any]) -> dict[str, Any]:
    """What results.json keeps of the prepare report: sources, sizes, duplicates, skipped files.

    A source is named by its file name, size and SHA-256, never by where it lay on the machine.
    """
    return {
        "mode": prepare_report.get("mode"),
        "seed": prepare_report.get("seed"),
        "sources": {role: {"name": os.path.basename(str(src.get("path", "")).rstrip("/")),
                           **{k: src.get(k) for k in ("size", "sha256", "images", "skipped_count")}}
                    for role, src in prepare_report.get("sources", {}).items()},
        "sizes": prepare_report.get("sizes"),
        "duplicates": prepare_report.get("duplicates"),
        "sanitized_rule": (prepare_report.get("sanitized") or {}).get("rule"),
        "skipped": (prepare_report.get("skipped") or {}).get("count"),
        "seconds": (prepare_report.get("seconds") or {}).get("total"),
        "reused_pickle": (prepare_report.get("reused") or {}).get("merged_pickle"),
    }


def prepare_line(summary: Mapping[str, Any]) -> str:
    """One markdown line about the prepared data (sizes, duplicates, skipped files)."""
    sizes = summary.get("sizes") or {}
    parts = [", ".join(f"{k.replace('_', ' ')} {v:,}" for k, v in sizes.items())]
    for kind in ("exact", "near"):
        counts = (summary.get("duplicates") or {}).get(kind)
        if counts:
            within = ", ".join(f"{k} {v:,}" for k, v in counts["within"].items())
            across = ", ".join(f"{k.replace('-', '–')} {v:,}" for k, v in counts["across"].items())
            parts.append(f"{kind} duplicates within {within}; across {across}")
    parts.append(f"{summary.get('skipped') or 0:,} unreadable files skipped")
    return f"**Data preparation** ({summary.get('mode')}): " + "; ".join(parts) + "."


def representative_run(names: Sequence[str], metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """The run of median test accuracy among ``names`` (lower middle for an even count)."""
    ordered = sorted(names, key=lambda n: (metrics[n]["test_accuracy"], n))
    return ordered[(len(ordered) - 1) // 2]


def mark_smoke_run(fig) -> None:
    """Writes ``SMOKE_MARK`` across a figure, so that no smoke-run plot passes for a result."""
    fig.text(0.5, 0.5, SMOKE_MARK, ha="center", va="center", rotation=20, fontsize=28, color="red", alpha=0.35,
             fontweight="bold")


def write_plots(data: Mapping[str, np.ndarray], metrics: Mapping[str, Mapping[str, Any]], results_dir: str,
                predict, layer_weights, smoke: bool = False) -> tuple[list[str], str | None]:
    """Draws every plot for what was run.

    Args:
      data: the dataset.
      metrics: ``{run name: metrics.json dict}`` in run order (``name`` is the preset).
      results_dir: where the PNGs go.
      predict: ``predict(run_name, images) -> probabilities`` of a run's model.
      layer_weights: ``layer_weights(run_name) -> [weight matrices]`` of a run's model.
      smoke: a smoke run: every figure says so (``mark_smoke_run``).

    Returns:
      (paths written, the deep run used for the error plots, or None).
    """
    written = []

    def save(fig, name):
        if smoke:
            mark_smoke_run(fig)
        written.append(plots.save_figure(fig, os.path.join(results_dir, name)))

    save(plots.sample_grid_figure(data["train_dataset"], data["train_labels"]), SAMPLES_PNG)
    counts = {s: np.bincount(np.asarray(data[f"{s}_labels"]), minlength=NUM_CLASSES) for s in SPLITS}
    save(plots.class_balance_figure(counts), BALANCE_PNG)
    runs_of: dict[str, list[str]] = {}  # preset -> its runs (one per seed for a multi-seed preset)
    for run, m in metrics.items():
        runs_of.setdefault(m["name"], []).append(run)
    chosen = {preset: representative_run(runs, metrics) for preset, runs in runs_of.items()}  # its plots' run
    deep = chosen.get(DEEP)
    for filename, title, names in CURVE_PLOTS:
        histories = {}
        for run, m in metrics.items():
            if m["name"] in names and m.get("history") and run == chosen[m["name"]]:
                several = len(runs_of[m["name"]]) > 1
                histories[f"{m['name']} (seed {m['config']['seed']})" if several else m["name"]] = m["history"]
        if histories:
            save(plots.learning_curves_figure(histories, title=title), filename)
    if TEMPLATES[1] in chosen:
        save(plots.templates_figure(layer_weights(chosen[TEMPLATES[1]])[0]), TEMPLATES[0])
    if HIDDEN_UNITS[1] in chosen:
        save(plots.hidden_units_figure(*layer_weights(chosen[HIDDEN_UNITS[1]])[:2]), HIDDEN_UNITS[0])
    if deep is None:
        logger.info("No deep run: %s and %s are not drawn", CONFUSION_PNG, MISTAKES_PNG)
        return written, None
    logger.info(f"Predicting the test set with {deep} (median test accuracy of {len(runs_of[DEEP])} deep run(s))")
    probabilities = predict(deep, data["test_dataset"])
    seed = metrics[deep]["config"]["seed"]
    save(plots.confusion_matrix_figure(data["test_labels"], probabilities, title=f"deep, seed {seed}, test set"),
         CONFUSION_PNG)
    save(plots.confident_mistakes_figure(data["test_dataset"], data["test_labels"], probabilities, k=MISTAKES_SHOWN),
         MISTAKES_PNG)
    return written, deep


def smoke_banner(quick_steps: int) -> str:
    return f"SMOKE RUN ({quick_steps} steps per preset): these numbers test the pipeline and are not results."


def markdown(rows, aggregated, description: str, summary: Mapping[str, Any], total_seconds: float,
             quick_steps: int | None, plot_paths: Sequence[str], failed: Sequence[str], deep: str | None,
             reused: Sequence[str] = ()) -> str:
    """results.md: title, the report module's table, data and timing lines, what was reused, plot links."""
    lines = ["# notMNIST course reproduction: results", ""]
    if quick_steps:
        lines += [f"> **{smoke_banner(quick_steps)}**", ""]
    lines += ["## Summary", "", "One row per preset; mean ± sample std over the seeds of a multi-seed preset.", "",
              tables.summary_markdown(rows, aggregated).rstrip("\n"), "", "## Every run", ""]
    lines.append(tables.results_markdown(rows, description, aggregated).rstrip("\n"))
    train_seconds = sum(r["seconds"] or 0.0 for r in rows)
    lines += ["", prepare_line(summary), "",
              f"**Total wall time:** {total_seconds:,.1f} s for this invocation (data preparation, training, "
              f"evaluation, plots); the training loops of the {len(rows)} runs took {train_seconds:,.1f} s "
              "together (reused runs count their original time).", ""]
    sources = ", ".join(f"{s['name']} ({s['size']:,} bytes, SHA-256 {s['sha256']})"
                        for s in (summary.get("sources") or {}).values() if s.get("sha256"))
    if sources:
        lines += [f"**Archives:** {sources}.", ""]
    lines += [f"**Reused runs** (finished earlier with the same config, data and code): {', '.join(reused)}."
              if reused else "**Every run trained in this invocation** (none reused).", ""]
    if failed:
        lines += ["**Failed runs:**", ""] + [f"- {f}" for f in failed] + [""]
    if plot_paths:
        lines += ["## Plots", ""]
        for p in plot_paths:
            name = os.path.basename(p)
            note = f" ({deep})" if deep and name in (CONFUSION_PNG, MISTAKES_PNG) else ""
            lines.append(f"- [{name}]({name}){note}")
        lines.append("")
    return "\n".join(lines)


def text_table(rows: Sequence[Mapping[str, Any]], aggregated: Sequence[Mapping[str, Any]],
               quick_steps: int | None = None) -> str:
    """The short table printed at the end (headed by the smoke-run banner for a smoke run)."""
    def pct(v):
        return "—" if v is None else f"{v:.1f}"

    lines = [smoke_banner(quick_steps)] if quick_steps else []
    lines.append(f"{'preset':<18}{'seed':>5}{'course':>8}{'valid':>8}{'test':>8}{'test(s)':>9}{'steps':>7}{'secs':>8}")
    for r in rows:
        lines.append(f"{r['preset']:<18}{r['seed'] if r['seed'] is not None else '—':>5}{pct(r['course_test']):>8}"
                     f"{pct(r['valid']):>8}{pct(r['test']):>8}{pct(r['test_sanitized']):>9}"
                     f"{r['steps'] or 0:>7}{r['seconds'] or 0:>8.1f}")
    for a in aggregated:
        if a.get("test"):
            lines.append(f"{a['preset']}: test {a['test']['mean']:.1f} ± {a['test']['std']:.1f} "
                         f"over seeds {','.join(str(s) for s in a['seeds'])}")
    return "\n".join(lines)


def versions() -> dict[str, str]:
    """Versions of what computed the numbers (kept in results.json)."""
    import tensorflow as tf

    from dnn_tf import __version__

    return {"dnn_tf": __version__, "tensorflow": tf.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "machine": platform.machine()}


def write_results(results_dir: str, data: Mapping[str, np.ndarray], prepare_report: Mapping[str, Any],
                  metrics: Mapping[str, Mapping[str, Any]], predict, layer_weights, total_seconds: float,
                  extra: Mapping[str, Any], quick_steps: int | None = None,
                  failed: Sequence[str] = ()) -> tuple[str, list[str]]:
    """Writes results.md, results.json and the plots.

    Returns:
      (the text table to print, the paths written).
    """
    rows = tables.results_rows(list(metrics.values()), dataset=dataset_tag(prepare_report))
    aggregated = tables.aggregate_seeds(rows)
    plot_paths, deep = write_plots(data, metrics, results_dir, predict, layer_weights, smoke=bool(quick_steps))
    description = dataset_description(prepare_report)
    summary = prepare_summary(prepare_report)
    md_path, json_path = os.path.join(results_dir, RESULTS_MD), os.path.join(results_dir, RESULTS_JSON)
    files.write_text(md_path, markdown(rows, aggregated, description, summary, total_seconds, quick_steps,
                                       plot_paths, failed, deep, extra.get("reused_runs", ())))
    extra = {"total_seconds": total_seconds, "train_seconds_sum": sum(r["seconds"] or 0.0 for r in rows),
             "quick": bool(quick_steps), "prepare": summary, "run_names": list(metrics), "failed_runs": list(failed),
             "deep_plots_run": deep, "plots": [os.path.basename(p) for p in plot_paths], "versions": versions(),
             **extra}
    files.write_json(json_path, tables.results_json(rows, {"tag": dataset_tag(prepare_report),
                                                           "description": description}, aggregated, extra=extra))
    return text_table(rows, aggregated, quick_steps), [md_path, json_path, *plot_paths]
