"""Results tables: our runs next to the course's published test accuracies.

Pure functions over ``TrainResult.to_dict()``-shaped dicts (no TensorFlow):

  rows = results_rows([r.to_dict() for r in results], dataset="notMNIST_small")
  aggregated = aggregate_seeds(rows)
  text = results_markdown(rows, describe_dataset(...), aggregated)
  write_json(path, results_json(rows, dataset, aggregated, extra={...}))

All accuracies are percentages (``dnn_tf.model.accuracy`` returns 100 * mean).
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from dnn_tf.notmnist import COURSE_TEST_SIZE, COURSE_TRAIN_SIZE, COURSE_VALID_SIZE

# The course's published test accuracy (%) per preset; presets not listed have none.
COURSE_FIGURES: Mapping[str, float] = {"logreg_gd": 82.9, "logreg_sgd": 86.1, "deep": 97.1}

# Where each published figure comes from (Udacity ud730 "Deep Learning", notMNIST assignments).
COURSE_NOTES: Mapping[str, str] = {
    "logreg_gd": "assignment 2 notebook output: logistic regression, full-batch gradient descent "
                 "on 10,000 training images, 801 steps",
    "logreg_sgd": "assignment 2 notebook output: logistic regression, SGD with minibatches of 128, "
                  "3,001 steps",
    "deep": "assignment 3, problem 4: the best deep-network test accuracy the course quotes, taken from "
            "a comment on the notMNIST dataset blog post (a target, not a course run with known settings)",
}

ACCURACY_KEYS = ("valid", "test", "test_sanitized")
ROW_COLUMNS = ("preset", "course_test", "valid", "test", "test_sanitized", "train_examples", "train_on_valid",
               "steps", "seconds", "device", "seed", "dataset")
MISSING = "—"
JSON_SCHEMA_VERSION = 1

# Markdown table: (header, row key, formatter name).
_TABLE = (
    ("Preset", "preset", "text"),
    ("Course test %", "course_test", "pct"),
    ("Valid %", "valid", "pct"),
    ("Test %", "test", "pct"),
    ("Test (sanitized) %", "test_sanitized", "pct"),
    ("Train images", "train_examples", "int"),
    ("Steps", "steps", "int"),
    ("Time (s)", "seconds", "secs"),
    ("Device", "device", "text"),
    ("Seed", "seed", "text"),
)


def course_figure(preset: str) -> float | None:
    """Returns the course's published test accuracy (%) for ``preset``, or None."""
    return COURSE_FIGURES.get(preset)


def _number(value: Any, what: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number or None, got {value!r}") from None
    return None if math.isnan(number) else number


def results_rows(results: Iterable[Mapping[str, Any]], dataset: str) -> list[dict[str, Any]]:
    """One table row per training run.

    Args:
      results: ``TrainResult.to_dict()``-shaped dicts: ``name`` (the preset), ``config`` (a dict;
        ``seed`` and ``steps`` used when present), ``valid_accuracy``, ``test_accuracy``,
        ``test_sanitized_accuracy`` (may be None/absent), ``train_examples`` (may be absent),
        ``steps``, ``seconds``, ``device``. A run with ``config.train_on_valid`` trained on the
        validation set: its row has no validation accuracy.
      dataset: a short tag of the data the runs used (e.g. ``"notMNIST_small"``).

    Returns:
      Dicts with the keys ``ROW_COLUMNS``: preset, course_test (published figure or None),
      valid, test, test_sanitized (percentages or None), train_examples, train_on_valid, steps,
      seconds, device, seed, dataset.

    Raises:
      ValueError: a result without ``name`` or with a non-numeric accuracy.
    """
    rows = []
    for i, result in enumerate(results):
        if not isinstance(result, Mapping):
            raise ValueError(f"result {i} must be a dict, got {type(result).__name__}")
        config = result.get("config")
        if not isinstance(config, Mapping) or not result.get("name"):
            raise ValueError(f"result {i} has no name or no config")
        name = str(result["name"])
        steps = result.get("steps", config.get("steps"))
        seed = config.get("seed")
        held_out = not config.get("train_on_valid")
        examples = result.get("train_examples")
        rows.append({
            "preset": name,
            "course_test": course_figure(name),
            "valid": _number(result.get("valid_accuracy"), f"{name}: valid_accuracy") if held_out else None,
            "test": _number(result.get("test_accuracy"), f"{name}: test_accuracy"),
            "test_sanitized": _number(result.get("test_sanitized_accuracy"),
                                      f"{name}: test_sanitized_accuracy"),
            "train_examples": None if examples is None else int(examples),
            "train_on_valid": not held_out,
            "steps": None if steps is None else int(steps),
            "seconds": _number(result.get("seconds"), f"{name}: seconds"),
            "device": result.get("device"),
            "seed": None if seed is None else int(seed),
            "dataset": dataset,
        })
    return rows


def _spread(values: Sequence[float]) -> dict[str, float]:
    """Mean, sample standard deviation (ddof=1), min and max of >= 2 values."""
    a = np.asarray(values, dtype=np.float64)
    return {"mean": float(a.mean()), "std": float(a.std(ddof=1)),
            "min": float(a.min()), "max": float(a.max())}


def aggregate_seeds(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Mean and spread over seeds for every preset run with two or more distinct seeds.

    Args:
      rows: rows from ``results_rows``.

    Returns:
      One dict per such preset, in first-seen order: ``preset``, ``course_test``, ``seeds``
      (sorted), ``n`` (runs), and for each of valid/test/test_sanitized either
      ``{"mean", "std", "min", "max"}`` (std is the sample std, ddof=1) or None when a run lacks
      that accuracy. Presets run with a single seed are left out.
    """
    groups: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["preset"], []).append(row)
    aggregated = []
    for preset, group in groups.items():
        seeds = sorted({r["seed"] for r in group if r.get("seed") is not None})
        if len(seeds) < 2:
            continue
        entry: dict[str, Any] = {"preset": preset, "course_test": course_figure(preset),
                                 "seeds": seeds, "n": len(group)}
        for key in ACCURACY_KEYS:
            values = [r.get(key) for r in group]
            entry[key] = None if any(v is None for v in values) else _spread(values)
        aggregated.append(entry)
    return aggregated


def describe_dataset(train_size: int, valid_size: int, test_size: int, train_source: str,
                     test_source: str | None = None, source_size: int | None = None) -> str:
    """An honest one-line description of the data, compared with the course's.

    Args:
      train_size, valid_size, test_size: images in each split.
      train_source: archive name the training images came from (e.g. ``"notMNIST_small"``).
      test_source: archive of the test images; None when all splits came from ``train_source``.
      source_size: images in ``train_source`` (used when everything was split from one archive).

    Returns:
      e.g. "Trained on 6,400 images split from the 8,000-image notMNIST_small sample
      (valid 800, test 800), not the course's 200,000."
    """
    for name, value in (("train_size", train_size), ("valid_size", valid_size), ("test_size", test_size)):
        if int(value) < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    train_source = _archive_name(train_source)
    sizes = f"valid {valid_size:,}, test {test_size:,}"
    course = f"the course's {COURSE_TRAIN_SIZE:,}"
    if test_source is None:
        kind = "" if train_source.lower().endswith("sample") else " archive"
        of = f"the {source_size:,}-image {train_source}{kind}" if source_size else train_source
        return f"Trained on {train_size:,} images split from {of} ({sizes}), not {course}."
    test_source = _archive_name(test_source)
    text = (f"Trained on {train_size:,} images from {train_source}, validated on {valid_size:,} "
            f"from {train_source} and tested on {test_size:,} from {test_source}")
    if (train_size, valid_size, test_size) == (COURSE_TRAIN_SIZE, COURSE_VALID_SIZE, COURSE_TEST_SIZE):
        return text + " (the course's sizes)."
    return (text + f"; the course used {COURSE_TRAIN_SIZE:,} / {COURSE_VALID_SIZE:,} / "
            f"{COURSE_TEST_SIZE:,}.")


def _archive_name(source: str) -> str:
    name = str(source).rstrip("/").rsplit("/", 1)[-1]
    for suffix in (".tar.gz", ".tgz", ".tar"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _format(value: Any, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if kind == "pct":
        return f"{float(value):.1f}"
    if kind == "int":
        return f"{int(value):,}"
    if kind == "secs":
        return f"{float(value):,.1f}"
    return str(value).replace("|", "\\|")


def _pm(stats: Mapping[str, float] | None) -> str:
    if stats is None:
        return MISSING
    return (f"{stats['mean']:.1f} ± {stats['std']:.1f} "
            f"(min {stats['min']:.1f}, max {stats['max']:.1f})")


def results_markdown(rows: Sequence[Mapping[str, Any]], dataset_description: str,
                     aggregated: Sequence[Mapping[str, Any]] | None = None) -> str:
    """A GitHub markdown report: dataset line, results table, seed spread, figure sources.

    Args:
      rows: rows from ``results_rows``.
      dataset_description: the honest dataset line (see ``describe_dataset``).
      aggregated: optional output of ``aggregate_seeds``; adds one "mean ± std" line per preset.

    Returns:
      Markdown text ending with a newline. Accuracies have 1 decimal; missing values are "—".

    Raises:
      ValueError: empty ``dataset_description``.
    """
    if not str(dataset_description).strip():
        raise ValueError("dataset_description must not be empty")
    lines = [f"**Dataset:** {dataset_description.strip()}", ""]
    lines.append("| " + " | ".join(h for h, _, _ in _TABLE) + " |")
    lines.append("|" + "|".join(":---" if kind == "text" else "---:" for _, _, kind in _TABLE) + "|")
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(key), kind) for _, key, kind in _TABLE) + " |")
    if aggregated:
        lines += ["", "Mean ± sample std over seeds (accuracy %):", ""]
        for entry in aggregated:
            seeds = ", ".join(str(s) for s in entry["seeds"])
            course = entry.get("course_test")
            course_text = "" if course is None else f"; course {course:.1f}"
            lines.append(f"- **{entry['preset']}** ({entry['n']} runs, seeds {seeds}): "
                         f"valid {_pm(entry['valid'])}; test {_pm(entry['test'])}; "
                         f"test sanitized {_pm(entry['test_sanitized'])}{course_text}")
    presets = list(dict.fromkeys(row["preset"] for row in rows))
    refits = list(dict.fromkeys(row["preset"] for row in rows if row.get("train_on_valid")))
    if refits:
        lines += [""] + [f"- **{p}** trained on the training and the validation images together (a refit after "
                         "choosing on validation): its validation accuracy is not a held-out measure and is "
                         "left out." for p in refits]
    notes = [p for p in presets if p in COURSE_NOTES]
    if notes:
        lines += ["", "Course figures:", ""]
        lines += [f"- {p} {COURSE_FIGURES[p]:.1f}%: {COURSE_NOTES[p]}" for p in notes]
    return "\n".join(lines) + "\n"


def summary_markdown(rows: Sequence[Mapping[str, Any]], aggregated: Sequence[Mapping[str, Any]]) -> str:
    """One row per preset: its accuracies, as mean ± sample std for a preset run over several seeds.

    Args:
      rows: rows from ``results_rows``.
      aggregated: output of ``aggregate_seeds`` for the same rows.

    Returns:
      A markdown table ending with a newline ("—" where a value is missing).
    """
    spread = {entry["preset"]: entry for entry in aggregated}
    lines = ["| Preset | Course test % | Valid % | Test % | Test (sanitized) % | Seeds |",
             "|:---|---:|---:|---:|---:|:---|"]
    for preset in dict.fromkeys(row["preset"] for row in rows):
        if preset in spread:
            entry = spread[preset]
            cells = [_mean_std(entry[key]) for key in ACCURACY_KEYS]
            seeds = ", ".join(str(s) for s in entry["seeds"])
        else:
            row = next(r for r in rows if r["preset"] == preset)
            cells = [_format(row.get(key), "pct") for key in ACCURACY_KEYS]
            seeds = str(row.get("seed", MISSING))
        lines.append(f"| {preset} | {_format(course_figure(preset), 'pct')} | " + " | ".join(cells) + f" | {seeds} |")
    return "\n".join(lines) + "\n"


def _mean_std(stats: Mapping[str, float] | None) -> str:
    return MISSING if stats is None else f"{stats['mean']:.1f} ± {stats['std']:.1f}"


def results_json(rows: Sequence[Mapping[str, Any]], dataset: Any,
                 aggregated: Sequence[Mapping[str, Any]] | None = None,
                 extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The machine-readable report (write it with ``dnn_tf.files.write_json``).

    Args:
      rows: rows from ``results_rows``.
      dataset: dataset tag or description (string or JSON-able dict).
      aggregated: output of ``aggregate_seeds`` (None: empty list).
      extra: anything else JSON-able the caller wants kept (versions, data report, ...).

    Returns:
      ``{"schema", "dataset", "course_figures", "runs", "aggregated", "extra"}`` with plain
      Python types only.
    """
    return {
        "schema": JSON_SCHEMA_VERSION,
        "dataset": _plain(dataset),
        "course_figures": {name: {"test_accuracy": value, "source": COURSE_NOTES.get(name, "")}
                           for name, value in COURSE_FIGURES.items()},
        "runs": [_plain(dict(row)) for row in rows],
        "aggregated": [_plain(dict(entry)) for entry in (aggregated or [])],
        "extra": _plain(dict(extra or {})),
    }


def _plain(obj: Any) -> Any:
    """Converts numpy scalars/arrays and tuples to JSON-able Python values; NaN -> None."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj

