"""One or two archives -> ``notMNIST.pickle`` + ``prepare_report.json``: the course's assignment 1 as one call.

``prepare`` runs the stages in order, each in its own module:

1. each source is decoded once (as uint8, by processes shared by both sources) into per-class
   pickles ``out_dir/<archive-stem>/A..J.pickle`` (``class_pickles``; reused while the source is
   unchanged);
2. balanced splits are planned and drawn, one class at a time (``splits``);
3. exact and near duplicates are counted and sanitized valid/test sets made (``duplicates``);
   only the splits are normalized to float32;
4. ``out_dir/notMNIST.pickle`` (``dataset.COURSE_KEYS`` + ``SANITIZED_KEYS``; plain
   ``pickle.load`` gives a dict of numpy arrays) and ``out_dir/prepare_report.json`` are
   written atomically.

Re-running with the same inputs reuses ``notMNIST.pickle`` when sources, sizes and seed match
the manifest in the report, unless ``force=True``; it is loaded and validated first, and a
truncated or corrupt one is rebuilt. Crash safety: ``prepare_report.json`` (which vouches for
``notMNIST.pickle``) is deleted before the pickle is rewritten and written after it, so a run
killed at any point leaves nothing that a rerun would take for a finished result. A run holds an
exclusive lock on ``out_dir/.prepare.lock`` (POSIX), so a second prepare on the same folder fails
at once instead of interleaving writes, and the lock holder removes temporary files left behind
by killed runs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from dnn_tf import files
from dnn_tf.data.archive import check_source
from dnn_tf.data.class_pickles import (
    CLASS_PICKLES,
    SECONDS_DIGITS,
    SOURCE_MANIFEST,
    archive_stem,
    decode_stats,
    maybe_pickle,
)
from dnn_tf.data.dataset import SANITIZED_KEYS, SANITIZED_SPLITS, SPLITS, keys, load_pickle, validate
from dnn_tf.data.decode import Workers, default_workers
from dnn_tf.data.duplicates import SANITIZE_RULE, find_overlaps
from dnn_tf.data.splits import check_size, class_counts, merge, plan_sizes
from dnn_tf.notmnist import COURSE_SEED, LETTERS, DataError, normalize

__all__ = ["MERGED_PICKLE", "REPORT_JSON", "LOCK_FILE", "archive_stem", "prepare", "format_report"]

MERGED_PICKLE = "notMNIST.pickle"
REPORT_JSON = "prepare_report.json"
LOCK_FILE = ".prepare.lock"
LOCK_MODE = 0o666
FORMAT_VERSION = 1
# Temporary files of dnn_tf.files.atomic_path (".<name>.<random>.tmp") that a killed run can leave behind.
_STALE_TEMP = re.compile(
    r"^\.(?:" + "|".join(re.escape(n) for n in (MERGED_PICKLE, REPORT_JSON, SOURCE_MANIFEST, *CLASS_PICKLES))
    + r")\.[A-Za-z0-9_]+\.tmp$"
)
SANITIZED_OF = {"valid": "valid_sanitized", "test": "test_sanitized"}
SHOWN_SKIPS = 3  # skipped files named in format_report
MIN_COLUMN = 7  # width of a per-class table column, before its padding
COLUMN_PAD = 2

logger = logging.getLogger(__name__)


def prepare(
    train_source: str | os.PathLike,
    test_source: str | os.PathLike | None = None,
    out_dir: str | os.PathLike = "data",
    train_size: int | None = None,
    valid_size: int | None = None,
    test_size: int | None = None,
    seed: int = COURSE_SEED,
    workers: int | None = None,
    force: bool = False,
    progress: bool = False,
) -> dict:
    """Builds (or reuses) ``out_dir/notMNIST.pickle`` from one or two archives/folders.

    See the module docstring for the steps and reuse, ``splits`` for the split sizes.

    Args:
      train_source: archive or folder for train and valid (and test when alone).
      test_source: archive or folder for test (two-archive mode), or None.
      out_dir: output folder (per-class pickles go to ``out_dir/<archive-stem>/``).
      train_size, valid_size, test_size: split sizes (None: the defaults).
      seed: shuffling seed (``np.random.default_rng(seed)``; 133 as in the course).
      workers: decoding processes (None: ``os.cpu_count()``).
      force: rebuild everything even if reusable.
      progress: progress bars on stderr.

    Returns:
      The report dict (also written to ``out_dir/prepare_report.json``): sources
      (path, size, sha256, images per class, skipped count), sizes and
      images per class per split, skipped files (name, reason), duplicate
      counts (exact and near, within and across splits), sanitized sizes,
      seconds per phase, decode throughput, workers, what was reused.

    Raises:
      DataError: missing/bad source, no A..J folders, sizes larger than the data,
        bad sizes/seed/workers, an output folder that cannot be created or
        written, or another prepare already writing to ``out_dir``. Everything
        that can be checked without decoding is checked first.
    """
    t0 = time.perf_counter()
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise DataError(f"workers must be >= 1, got {workers}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    sizes = {"train_size": train_size, "valid_size": valid_size, "test_size": test_size}
    for name, size in sizes.items():
        check_size(name, size)
    out = Path(out_dir)
    roles = {"train": os.fspath(train_source)}
    if test_source is not None:
        roles["test"] = os.fspath(test_source)
    for role, src in roles.items():
        if not os.path.exists(src):
            raise DataError(f"{role} source {src} does not exist")
        check_source(src)
    stems = {"train": archive_stem(roles["train"])}
    if "test" in roles:
        stem = archive_stem(roles["test"])
        same = os.path.abspath(roles["test"]) == os.path.abspath(roles["train"])
        stems["test"] = stem if stem != stems["train"] or same else f"{stem}-test"
    _make_out_dir(out)
    with _out_dir_lock(out, [out / stem for stem in stems.values()]):
        return _prepare_locked(roles, stems, out, sizes, seed, workers, force, progress, t0)


def _make_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create output folder {out}: {e.strerror or e}") from None


@contextlib.contextmanager
def _out_dir_lock(out: Path, class_dirs: Sequence[Path]):
    """Holds ``out/.prepare.lock`` while prepare writes to ``out``; removes temp files of killed runs.

    Raises:
      DataError: ``out`` is not writable, or another process holds the lock.
    """
    try:
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, LOCK_MODE)
    except OSError as e:
        raise DataError(f"cannot write to output folder {out}: {e.strerror or e}") from None

    def busy() -> DataError:
        return DataError(f"another prepare is writing to {out} (it holds {out / LOCK_FILE}); wait for it to finish")

    try:
        with files.exclusive_lock(fd, busy) as locked:
            if locked:  # a filesystem without locks: go on, but leave temp files alone
                _remove_stale_temps([out, *class_dirs])
            yield
    finally:
        os.close(fd)  # a killed process releases the lock too


def _remove_stale_temps(folders: Sequence[Path]) -> None:
    for folder in folders:
        try:
            names = [n for n in os.listdir(folder) if _STALE_TEMP.match(n)]
        except OSError:
            continue
        for name in names:
            with contextlib.suppress(OSError):
                os.remove(folder / name)
        if names:
            logger.info(f"removed {len(names)} temporary file{'s' if len(names) > 1 else ''} left in {folder} "
                        "by an interrupted run")


def _prepare_locked(roles: dict[str, str], stems: dict[str, str], out: Path, sizes: dict[str, int | None],
                    seed: int, workers: int, force: bool, progress: bool, t0: float) -> dict:
    """``prepare`` after the arguments are checked and ``out`` is locked."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    with Workers(workers) as pool:  # started before any large array exists, shared by both sources
        classes, manifests, reused_classes = _read_classes(roles, stems, out, force, progress, pool)
    seconds["read"] = time.perf_counter() - start
    counts = {role: [len(c) for c in role_classes] for role, role_classes in classes.items()}
    per_split = plan_sizes(counts["train"], counts.get("test"), *sizes.values())
    manifest = {"format": FORMAT_VERSION, "train": manifests["train"]["source"],
                "test": manifests["test"]["source"] if "test" in manifests else None, **sizes, "seed": seed}
    sources = {role: _source_report(role, out / stems[role], manifests[role], reused_classes[role])
               for role in roles}
    decode = _decode_report([m["decode"] for role, m in manifests.items() if not reused_classes[role]], workers)

    # reuse notMNIST.pickle when the inputs match
    if not force:
        start = time.perf_counter()
        previous, why = _merged_reusable(out, manifest)
        seconds["check"] = time.perf_counter() - start
        if previous is not None:
            logger.info(f"reusing {out / MERGED_PICKLE} (same sources, sizes and seed; --force rebuilds)")
            seconds["total"] = time.perf_counter() - t0
            report = dict(previous)
            report.update(sources=sources, seconds=_rounded(seconds), decode=decode, workers=workers,
                          reused={"class_pickles": reused_classes, "merged_pickle": True})
            files.write_json(out / REPORT_JSON, report)
            return report
        if (out / MERGED_PICKLE).exists():
            logger.info(f"rebuilding {out / MERGED_PICKLE}: {why}")

    start = time.perf_counter()
    data = merge(classes["train"], classes.get("test"), per_split, seed)  # course merge_datasets + randomize
    del classes  # the decoded uint8 pixels (0.4 GB for notMNIST_large): only the splits are normalized
    seconds["merge"] = time.perf_counter() - start
    start = time.perf_counter()
    # On the uint8 pixels of a fresh decode (a quarter of the bytes to hash), with the answers of the
    # normalized images: normalize maps the 256 pixel values to 256 distinct floats, and near_signature
    # gives the same signature for both.
    overlaps, valid_keep, test_keep = find_overlaps(*(data[keys(s)[0]] for s in SPLITS))
    seconds["overlap"] = time.perf_counter() - start
    start = time.perf_counter()
    for split in SPLITS:
        images_key = keys(split)[0]
        if data[images_key].dtype != np.float32:
            data[images_key] = normalize(data[images_key])
    sanitized = _add_sanitized(data, valid_keep, test_keep)
    seconds["normalize"] = time.perf_counter() - start
    start = time.perf_counter()
    validate(data)
    seconds["validate"] = time.perf_counter() - start
    start = time.perf_counter()
    # The old report vouches for the old pickle: drop it first, so a crash between the two
    # writes below leaves a pickle without a report (rebuilt next time), never a mismatched pair.
    with contextlib.suppress(FileNotFoundError):
        (out / REPORT_JSON).unlink()
    files.save_pickle(out / MERGED_PICKLE, data)
    seconds["write"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - t0

    skipped = [{"source": role, "name": n, "reason": r} for role in roles for n, r in manifests[role]["skipped"]]
    splits = SPLITS + SANITIZED_SPLITS
    report = {
        "format": FORMAT_VERSION,
        "manifest": manifest,
        "mode": "two-archive" if "test" in roles else "single-archive",
        "seed": seed,
        "pickle": str(out / MERGED_PICKLE),
        "sources": sources,
        "sizes": {s: len(data[keys(s)[1]]) for s in splits},
        "per_class": {s: class_counts(data[keys(s)[1]]) for s in splits},
        "skipped": {"count": sum(manifests[role]["skipped_count"] for role in roles), "files": skipped,
                    "listed": len(skipped)},
        "duplicates": overlaps,
        "sanitized": dict(sanitized, rule=SANITIZE_RULE),
        "seconds": _rounded(seconds),
        "decode": decode,
        "workers": workers,
        "reused": {"class_pickles": reused_classes, "merged_pickle": False},
    }
    files.write_json(out / REPORT_JSON, report)
    logger.info(f"wrote {out / MERGED_PICKLE} and {out / REPORT_JSON}")
    return report


def _read_classes(roles: Mapping[str, str], stems: Mapping[str, str], out: Path, force: bool, progress: bool,
                  pool: Workers) -> tuple[dict[str, list], dict[str, dict], dict[str, bool]]:
    """Per-class images, manifests and reuse of every source (course ``maybe_pickle``).

    Raises:
      DataError: a bad source, or one without a readable image of some class.
    """
    classes, manifests, reused = {}, {}, {}
    for role, src in roles.items():
        classes[role], manifests[role], reused[role] = maybe_pickle(src, out / stems[role], force, pool.workers,
                                                                    progress, pool)
        empty = [letter for letter, n in manifests[role]["per_class"].items() if n == 0]
        if empty:
            plural = "es" if len(empty) > 1 else ""
            raise DataError(f"{src} has no readable images for class{plural} {', '.join(empty)}")
    return classes, manifests, reused


def _add_sanitized(data: dict[str, np.ndarray], valid_keep: np.ndarray, test_keep: np.ndarray) -> dict[str, int]:
    """Adds the sanitized valid/test splits (course Problem 5: the images ``find_overlaps`` keeps) to ``data``.

    Returns:
      The sanitized sizes ``{"valid": n, "test": n}``.
    """
    for split, keep in (("valid", valid_keep), ("test", test_keep)):
        images_key, labels_key = keys(split)
        sanitized_images, sanitized_labels = keys(SANITIZED_OF[split])
        data[sanitized_images], data[sanitized_labels] = data[images_key][keep], data[labels_key][keep]
    return {"valid": int(valid_keep.sum()), "test": int(test_keep.sum())}


def _rounded(seconds: Mapping[str, float]) -> dict[str, float]:
    return {k: round(v, SECONDS_DIGITS) for k, v in seconds.items()}


def _decode_report(decoded: Sequence[Mapping[str, Any]], workers: int) -> dict | None:
    """Decode throughput of the sources decoded by this run (None when every source was reused)."""
    if not decoded:
        return None
    return decode_stats(sum(d["members"] for d in decoded), sum(d["seconds"] for d in decoded), workers)


def _source_report(role: str, class_dir: Path, manifest: dict, reused: bool) -> dict:
    src = manifest["source"]
    return {
        "role": role,
        **{k: src[k] for k in ("path", "kind", "size", "mtime_ns")},
        "sha256": manifest.get("sha256"),
        "class_pickles": str(class_dir),
        **{k: manifest[k] for k in ("images", "per_class", "skipped_count", "decode")},
        "reused": reused,
    }


def _merged_reusable(out: Path, manifest: dict) -> tuple[dict | None, str]:
    """The previous report if ``notMNIST.pickle`` was made from the same inputs and is intact, else why not."""
    report = files.read_json(out / REPORT_JSON)
    if not isinstance(report, dict) or not (out / MERGED_PICKLE).exists():
        return None, "no previous notMNIST.pickle/report"
    if report.get("manifest") != manifest:
        return None, "inputs (sources, sizes or seed) changed"
    try:
        d = load_pickle(out / MERGED_PICKLE)
        validate(d)
        for split in SPLITS:
            n, expected = len(d[keys(split)[1]]), report["sizes"][split]
            if n != expected:
                raise DataError(f"{split} has {n} images, the report says {expected}")
        if any(k not in d for k in SANITIZED_KEYS):
            raise DataError("the sanitized sets are missing")
    except (DataError, KeyError, TypeError) as e:
        return None, str(e)
    return report, ""


# ----------------------------------------------------------------------------- report text


def format_report(report: Mapping[str, Any]) -> str:
    """A short human summary of a ``prepare`` report: a few lines and a per-class table."""
    lines = []
    reused = report.get("reused", {})
    state = "reused" if reused.get("merged_pickle") else "wrote"
    lines.append(f"{state} {_printable(report['pickle'])} ({report['mode']}, seed {report['seed']})")
    for role, src in report["sources"].items():
        sha = (src.get("sha256") or "")[:12]
        dec = src.get("decode") or {}
        earlier = (f"; class pickles reused (decoded earlier at {dec['images_per_second']:,.0f} images/s)"
                   if src.get("reused") and dec else "")
        lines.append(
            f"  {role} source: {_printable(src['path'])} ({src['size']:,} bytes{', sha256 ' + sha if sha else ''}): "
            f"{src['images']:,} images, {src['skipped_count']} skipped{earlier}"
        )
    lines.append("  sizes: " + ", ".join(f"{k} {v:,}" for k, v in report["sizes"].items()))
    dup = report["duplicates"]
    for kind in ("exact", "near"):
        w, a = dup[kind]["within"], dup[kind]["across"]
        lines.append(
            f"  {kind} duplicates: within " + ", ".join(f"{k} {v:,}" for k, v in w.items())
            + "; across " + ", ".join(f"{k} {v:,}" for k, v in a.items())
        )
    skipped = report["skipped"]
    if skipped["count"]:
        shown = "; ".join(f"{_printable(f['name'])}: {f['reason']}" for f in skipped["files"][:SHOWN_SKIPS])
        more = f" (+{skipped['count'] - SHOWN_SKIPS} more)" if skipped["count"] > SHOWN_SKIPS else ""
        lines.append(f"  skipped {skipped['count']} files: {shown}{more}")
    lines.append("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in report["seconds"].items()))
    if report.get("decode"):
        d = report["decode"]
        plural = "s" if d["workers"] != 1 else ""
        lines.append(f"  decode: {d['members']:,} files in {d['seconds']:.2f} s = "
                     f"{d['images_per_second']:,.0f} images/s with {d['workers']} worker{plural}")
    cols = [c for c in SPLITS + SANITIZED_SPLITS if c in report["per_class"]]
    titles = [c.replace("_sanitized", "_san") for c in cols]
    widths = [max(len(t), MIN_COLUMN) + COLUMN_PAD for t in titles]
    lines.append("  class" + "".join(f"{t:>{w}}" for t, w in zip(titles, widths)))
    for letter in LETTERS:
        cells = "".join(f"{report['per_class'][c][letter]:>{w},}" for c, w in zip(cols, widths))
        lines.append(f"  {letter:<5}{cells}")
    return "\n".join(lines)


def _printable(text: str) -> str:
    """Member names may hold undecodable bytes (surrogate escapes); show them as escapes."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")
