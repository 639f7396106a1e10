"""Image arrays -> per-class pickles -> balanced train/valid/test -> ``notMNIST.pickle`` (numpy only).

This is the course's assignment 1 pipeline (``maybe_pickle``, ``merge_datasets``,
``randomize``, Problem 5's overlap check) as one function, ``prepare``:

1. Each source archive is decoded once (``archive.read_images``) into per-class
   pickles ``out_dir/<archive-stem>/A.pickle`` ... ``J.pickle`` (float32
   (n, 28, 28) of one letter, the course's format) plus ``manifest.json``
   recording the source (path, size, mtime) they came from.
2. Balanced splits (equal count per class) are drawn with
   ``np.random.default_rng(seed)``: each class is permuted and cut into valid,
   (test,) train; each merged split is then permuted again (course ``randomize``).
3. Exact and near duplicates are counted within and across the splits, and
   sanitized valid/test sets are made (see ``find_overlaps``).
4. ``out_dir/notMNIST.pickle`` (``COURSE_KEYS`` + ``SANITIZED_KEYS``; plain
   ``pickle.load`` gives a dict of numpy arrays) and
   ``out_dir/prepare_report.json`` are written atomically.

Re-running with the same inputs reuses what exists (per-class pickles when the
source's path/size/mtime match; ``notMNIST.pickle`` when sources, sizes and seed
match the manifest in the report) unless ``force=True``. Existing pickles are
always loaded and validated first; a truncated or corrupt one is rebuilt.

Crash safety: every file is written atomically (``dnn_tf.io``); the manifest
that vouches for the per-class pickles is deleted before they are rewritten and
written after them, and ``prepare_report.json`` (which vouches for
``notMNIST.pickle``) likewise, so a run killed at any point leaves nothing that
a rerun would take for a finished result. A run holds an exclusive lock on
``out_dir/.prepare.lock`` (POSIX), so a second prepare on the same folder fails
at once instead of interleaving writes, and the lock holder removes temporary
files left behind by killed runs.

Sizes: a split of size ``s`` takes ``s // 10`` images of every class, so a size
that is not a multiple of 10 is rounded down (and logged). Two-archive mode
(``test_source`` given, the course's): train and valid from ``train_source``
(default 200,000 / 10,000), test from ``test_source`` (default 10,000).
Single-archive mode: all three from ``train_source``, disjoint; by default all
images of the smallest class count ``m`` are used per class: ``m // 10`` valid,
``m // 10`` test, the rest train (the 8,000-image sample: 6,400 / 800 / 800).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import pickle
import re
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

try:  # POSIX: one prepare at a time per output folder
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from dnn_tf import io as atomic_io
from dnn_tf.archive import (
    IMAGE_SIZE,
    LETTERS,
    PIXEL_DEPTH,
    DataError,
    Images,
    ProgressBar,
    check_source,
    default_workers,
    read_images,
)

__all__ = [
    "COURSE_KEYS",
    "SANITIZED_KEYS",
    "DataError",
    "ProgressBar",
    "load_pickle",
    "validate_dataset",
    "find_overlaps",
    "near_signature",
    "prepare",
    "format_report",
]

COURSE_KEYS = ("train_dataset", "train_labels", "valid_dataset", "valid_labels", "test_dataset", "test_labels")
SANITIZED_KEYS = (
    "valid_dataset_sanitized", "valid_labels_sanitized", "test_dataset_sanitized", "test_labels_sanitized"
)
SPLITS = ("train", "valid", "test")
PAIRS = (("train", "valid"), ("train", "test"), ("valid", "test"))

COURSE_TRAIN_SIZE = 200_000
COURSE_VALID_SIZE = 10_000
COURSE_TEST_SIZE = 10_000
COURSE_SEED = 133
HOLDOUT_FRACTION = 0.1  # single-archive default: this fraction of each class for valid, and again for test
NUM_CLASSES = len(LETTERS)

MERGED_PICKLE = "notMNIST.pickle"
REPORT_JSON = "prepare_report.json"
SOURCE_MANIFEST = "manifest.json"
LOCK_FILE = ".prepare.lock"
# Temporary files of dnn_tf.io.atomic_path (".<name>.<random>.tmp") that a killed run can leave behind.
_STALE_TEMP = re.compile(
    r"^\.(?:" + "|".join(re.escape(n) for n in ("notMNIST.pickle", "prepare_report.json", "manifest.json"))
    + r"|[A-J]\.pickle)\.[A-Za-z0-9_]+\.tmp$"
)
FORMAT_VERSION = 1
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
MAX_REPORTED_SKIPS = 10_000
SHA256_BLOCK = 1 << 20

NEAR_POOL = 2  # near-duplicate signature: mean over 2x2 blocks (28x28 -> 14x14) ...
NEAR_LEVELS = 4  # ... quantized to 4 gray levels (bins of 64 on the 0..255 scale)
DIGEST_BYTES = 16  # blake2b digest per image: collisions are negligible (2**-128 per pair)
HASH_BATCH = 8192  # images converted to uint8 at once while hashing

NEAR_CRITERION = (
    f"near duplicates: the {IMAGE_SIZE // NEAR_POOL}x{IMAGE_SIZE // NEAR_POOL} means of "
    f"{NEAR_POOL}x{NEAR_POOL} pixel blocks, quantized to {NEAR_LEVELS} gray levels, are identical "
    "(exact duplicates are near duplicates too)"
)
SANITIZE_RULE = (
    "valid_sanitized drops valid images that exactly or nearly duplicate a train image; "
    "test_sanitized drops test images that exactly or nearly duplicate a train or valid image"
)

# What numpy arrays (protocols 2-5, numpy 1.x and 2.x) and plain containers need, nothing else.
# ("__builtin__" and "xrange" are the names protocol 2 pickles use.)
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("_codecs", "encode"),  # bytes in protocol 2 pickles
        ("collections", "OrderedDict"),
    }
    | {(m, n) for m in ("builtins", "__builtin__")
       for n in ("set", "frozenset", "bytearray", "bytes", "complex", "slice", "range")}
    | {("__builtin__", "xrange")}
)
# Arguments the size-taking builtins may get: data already in the pickle (so bounded by its size),
# never a count (bytes(10**12)) or a lazy sequence (set(range(10**12))).
_MATERIALIZED = (list, tuple, bytes, bytearray, str, set, frozenset)
_SIZED_BUILTINS = ("set", "frozenset", "bytearray", "bytes")
_PICKLE_ENCODINGS = ("latin1", "latin-1")  # what protocol 2 passes to _codecs.encode

Log = Callable[..., Any]


# ----------------------------------------------------------------------------- safe pickles


class _NdarrayToken:
    """Stands for ``numpy.ndarray`` in a pickle: real pickles only pass it to ``_reconstruct``.

    Calling ``ndarray(shape, dtype)`` directly could allocate (and, for object
    arrays, fill) any amount of memory, so the token refuses to be called.
    """

    def __init__(self, path: str):
        self._path = path

    def __call__(self, *args, **kwargs):
        raise DataError(f"refusing to load {self._path}: it calls numpy.ndarray directly, "
                        "which numpy's own pickles never do")


class _ArrayUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file)
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            alias = f" (os.{name})" if module in ("posix", "nt") else ""
            raise DataError(
                f"refusing to load {self._path}: it references {module}.{name}{alias}, "
                "which is not part of a numpy array or plain container"
            )
        obj = super().find_class(module, name)
        if name == "ndarray":
            return _NdarrayToken(self._path)
        if name == "_reconstruct":
            return self._guard_reconstruct(obj)
        if name in _SIZED_BUILTINS:
            return self._guard_sized(obj, f"{module}.{name}")
        if name == "encode":
            return self._guard_encode(obj)
        return obj

    def _refuse(self, what: str) -> DataError:
        return DataError(f"refusing to load {self._path}: {what}")

    def _guard_reconstruct(self, reconstruct):
        def guarded(subtype, shape, dtype):
            # numpy pickles an array as _reconstruct(ndarray, (0,), b"b") + __setstate__ with the real data
            if not isinstance(subtype, _NdarrayToken) or tuple(shape) != (0,):
                kind = "ndarray" if isinstance(subtype, _NdarrayToken) else type(subtype).__name__
                raise self._refuse(f"numpy _reconstruct({kind}, shape {shape!r}) is not how numpy pickles arrays")
            return reconstruct(np.ndarray, shape, dtype)
        return guarded

    def _guard_sized(self, builtin, qualname: str):
        def guarded(*args):
            if len(args) > 1 or (args and not isinstance(args[0], _MATERIALIZED)):
                kinds = ", ".join(type(a).__name__ for a in args)
                raise self._refuse(f"{qualname}({kinds}) could allocate unbounded memory")
            return builtin(*args)
        return guarded

    def _guard_encode(self, encode):
        def guarded(text, encoding="utf-8", *rest):
            if rest or not isinstance(text, str) or encoding not in _PICKLE_ENCODINGS:
                raise self._refuse(f"_codecs.encode with encoding {encoding!r}")
            return encode(text, encoding)
        return guarded


def load_pickle(path: str | os.PathLike) -> Any:
    """Loads a pickle that may only contain numpy arrays and plain containers.

    A restricted ``pickle.Unpickler`` admits numpy's array/dtype/scalar
    reconstructors and a few harmless builtins; any other global (``os.system``,
    ``subprocess.Popen``, ``builtins.eval``, ``numpy.load`` ...) is refused before
    it is called. The admitted ones are guarded against memory bombs: arrays
    only come from ``_reconstruct(ndarray, (0,), ...)`` plus their pickled data,
    ``set``/``bytes``/... only take data already in the pickle (not a count or a
    ``range``), and ``_codecs.encode`` only latin-1.

    Args:
      path: a ``notMNIST.pickle`` (returns the dict) or a per-class pickle (the array).

    Returns:
      The unpickled object.

    Raises:
      DataError: missing or unreadable file, truncated/corrupt pickle, a
        forbidden global, or not enough memory for what the pickle holds.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(io.BufferedReader(f, 1 << 20), path).load()
    except DataError:
        raise
    except FileNotFoundError:
        raise DataError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{path} is a folder, not a pickle") from None
    except MemoryError as e:
        raise DataError(f"not enough memory to load {path} ({type(e).__name__}: {e})") from None
    except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, ValueError, ... all mean "bad file"
        raise DataError(f"{path} is truncated or corrupt ({type(e).__name__}: {e})") from None


def _check_images(name: str, images: Any) -> None:
    if not isinstance(images, np.ndarray):
        raise DataError(f"{name} must be a numpy array, got {type(images).__name__}")
    if images.dtype != np.float32 or images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise DataError(f"{name} must be float32 (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.dtype} {images.shape}")


def _check_labels(name: str, labels: Any, n: int) -> None:
    if not isinstance(labels, np.ndarray):
        raise DataError(f"{name} must be a numpy array, got {type(labels).__name__}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
        raise DataError(f"{name} must be integer (n,), got {labels.dtype} {labels.shape}")
    if len(labels) != n:
        raise DataError(f"{name} has {len(labels)} labels for {n} images")
    if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{name} must be in 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}")


def validate_dataset(d: Mapping[str, Any]) -> None:
    """Checks a ``notMNIST.pickle`` dict.

    The course keys must be present (the sanitized keys are checked when
    present): images float32 (n, 28, 28), labels integer (n,) in 0..9, equal lengths.

    Raises:
      DataError: naming the first problem found.
    """
    if not isinstance(d, Mapping):
        raise DataError(f"dataset must be a dict, got {type(d).__name__}")
    missing = [k for k in COURSE_KEYS if k not in d]
    if missing:
        raise DataError(f"dataset is missing keys: {', '.join(missing)}")
    keys = list(COURSE_KEYS) + [k for k in SANITIZED_KEYS if k in d]
    for images_key in keys[::2]:
        labels_key = images_key.replace("_dataset", "_labels")
        if labels_key not in d:
            raise DataError(f"dataset has {images_key} but no {labels_key}")
        _check_images(images_key, d[images_key])
        _check_labels(labels_key, d[labels_key], len(d[images_key]))


# ----------------------------------------------------------------------------- overlap


def near_signature(images: np.ndarray) -> np.ndarray:
    """Coarse signature used for near-duplicate detection.

    The image (normalized float32 like the course, or uint8) is mean-pooled over
    2x2 blocks to 14x14 and quantized to 4 levels (``mean // 64``). Two images
    are near duplicates when their signatures are equal: small shifts in gray
    level or a few changed pixels usually keep every block in its bin.

    Args:
      images: (n, 28, 28) float32 normalized or uint8.

    Returns:
      uint8 (n, 196) with values 0..3.
    """
    n, side, area = len(images), IMAGE_SIZE // NEAR_POOL, NEAR_POOL * NEAR_POOL
    grid = images.reshape(n, side, NEAR_POOL, side, NEAR_POOL)
    if images.dtype == np.uint8:
        sums = grid.sum(axis=(2, 4), dtype=np.uint16)
    else:  # block sums of (p - 127.5) / 255, mapped back to integer sums of p (exact after rounding)
        total = sum(grid[:, :, i, :, j] for i in range(NEAR_POOL) for j in range(NEAR_POOL))
        sums = np.rint(total * np.float32(PIXEL_DEPTH) + np.float32(area * PIXEL_DEPTH / 2)).clip(0, area * 255)
    bin_width = area * 256 // NEAR_LEVELS  # block sums 0..1020 -> 4 bins of 256 (= mean // 64)
    return (sums // bin_width).astype(np.uint8).reshape(n, side * side)


def _digests(images: np.ndarray, near: bool) -> list[bytes]:
    out: list[bytes] = []
    for start in range(0, len(images), HASH_BATCH):
        batch = images[start : start + HASH_BATCH]
        rows = near_signature(batch) if near else np.ascontiguousarray(batch).reshape(len(batch), -1)
        out.extend(hashlib.blake2b(row, digest_size=DIGEST_BYTES).digest() for row in rows)
    return out


def _overlap_counts(digests: Mapping[str, list[bytes]]) -> dict:
    sets = {split: set(d) for split, d in digests.items()}
    within = {split: len(d) - len(sets[split]) for split, d in digests.items()}
    across = {f"{a}-{b}": sum(1 for x in digests[b] if x in sets[a]) for a, b in PAIRS}
    return {"within": within, "across": across}


def find_overlaps(train: np.ndarray, valid: np.ndarray, test: np.ndarray) -> tuple[dict, np.ndarray, np.ndarray]:
    """Counts exact and near duplicates (course Problem 5) and picks the sanitized valid/test images.

    Exact duplicates: equal raw bytes (blake2b of each image; hashing, not
    O(n^2) comparisons). Near duplicates: equal ``near_signature`` (see there).

    Counts: ``within[s]`` is the number of images of split ``s`` that repeat an
    earlier image of ``s`` (n - distinct); ``across["a-b"]`` is the number of
    images of ``b`` that also occur in ``a``. Near counts include exact ones.

    Args:
      train, valid, test: (n, 28, 28) float32 image arrays.

    Returns:
      ``(counts, valid_keep, test_keep)``: counts as
      ``{"exact": {"within": ..., "across": ...}, "near": {...}, "criterion": ...}``;
      boolean masks of the valid images that duplicate (exactly or nearly) no
      train image, and of the test images that duplicate no train or valid image.
    """
    arrays = {"train": train, "valid": valid, "test": test}
    exact = {s: _digests(a, near=False) for s, a in arrays.items()}
    near = {s: _digests(a, near=True) for s, a in arrays.items()}
    counts = {"exact": _overlap_counts(exact), "near": _overlap_counts(near), "criterion": NEAR_CRITERION}
    train_set = set(near["train"])
    valid_keep = np.fromiter((x not in train_set for x in near["valid"]), bool, len(valid))
    train_set.update(near["valid"])
    test_keep = np.fromiter((x not in train_set for x in near["test"]), bool, len(test))
    return counts, valid_keep, test_keep


# ----------------------------------------------------------------------------- sources and class pickles


def archive_stem(source: str | os.PathLike) -> str:
    """``notMNIST_large.tar.gz`` -> ``notMNIST_large`` (a folder keeps its name)."""
    name = Path(os.path.abspath(source)).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def source_fingerprint(source: str | os.PathLike) -> dict:
    """What identifies a source for reuse: absolute path, size and mtime.

    For a folder: the number, total size and newest mtime of the files in its
    A..J folders (directly or one level down).

    Raises:
      DataError: if the source does not exist.
    """
    path = Path(os.path.abspath(source))
    if not path.exists():
        raise DataError(f"{source} does not exist")
    if not path.is_dir():
        st = path.stat()
        return {"path": str(path), "kind": "archive", "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    files = size = newest = 0
    tops = [path] + sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink())
    for top in tops:
        for letter in LETTERS:
            d = top / letter
            if d.is_dir() and not d.is_symlink():
                with os.scandir(d) as it:
                    for e in it:
                        st = e.stat(follow_symlinks=False)
                        files, size, newest = files + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return {"path": str(path), "kind": "folder", "files": files, "size": size, "mtime_ns": newest}


def _sha256(path: str) -> str | None:
    if os.path.isdir(path):
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(SHA256_BLOCK):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return obj if isinstance(obj, dict) else None
    except (OSError, ValueError):
        return None


def _load_class_pickles(class_dir: Path, manifest: dict) -> list[np.ndarray]:
    """Loads and validates A.pickle..J.pickle against ``manifest``; DataError on any mismatch."""
    arrays = []
    for letter in LETTERS:
        arr = load_pickle(class_dir / f"{letter}.pickle")
        _check_images(f"{letter}.pickle", arr)
        expected = manifest["per_class"][letter]
        if len(arr) != expected:
            raise DataError(f"{letter}.pickle has {len(arr)} images, manifest says {expected}")
        arrays.append(arr)
    return arrays


def _class_pickles(
    source: str, class_dir: Path, force: bool, workers: int, progress: bool, log: Log
) -> tuple[list[np.ndarray], dict, bool]:
    """Per-class arrays of ``source`` (reused from ``class_dir`` or decoded and written there).

    Returns:
      (arrays A..J, manifest dict, reused?).
    """
    fingerprint = source_fingerprint(source)
    manifest_path = class_dir / SOURCE_MANIFEST
    manifest = None if force else _read_json(manifest_path)
    if manifest is not None:
        if manifest.get("format") == FORMAT_VERSION and manifest.get("source") == fingerprint:
            try:
                arrays = _load_class_pickles(class_dir, manifest)
                log(f"reusing {class_dir}/A..J.pickle (source unchanged; --force rebuilds)")
                return arrays, manifest, True
            except (DataError, KeyError, TypeError) as e:
                log(f"rebuilding {class_dir}: {e}")
        else:
            log(f"rebuilding {class_dir}: {source} changed since the pickles were made")
    if manifest_path.exists():
        manifest_path.unlink()  # a crash while rewriting must not leave an old manifest vouching for new files

    log(f"decoding {source} with {workers} worker{'s' if workers != 1 else ''}")
    start = time.perf_counter()
    images: Images = read_images(source, workers=workers, progress=progress)
    seconds = time.perf_counter() - start
    attempted = len(images.names) + len(images.skipped)
    arrays = [np.ascontiguousarray(images.images[images.labels == c]) for c in range(NUM_CLASSES)]
    images.images = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)  # free the big array early
    for letter, arr in zip(LETTERS, arrays):
        atomic_io.save_pickle(class_dir / f"{letter}.pickle", arr)
    manifest = {
        "format": FORMAT_VERSION,
        "source": fingerprint,
        "sha256": _sha256(source),
        "per_class": {letter: len(arr) for letter, arr in zip(LETTERS, arrays)},
        "images": int(sum(len(a) for a in arrays)),
        "skipped_count": len(images.skipped),
        "skipped": [[n, r] for n, r in images.skipped[:MAX_REPORTED_SKIPS]],
        "decode": {
            "members": attempted,
            "seconds": round(seconds, 3),
            "images_per_second": round(attempted / max(seconds, 1e-9), 1),
            "workers": workers,
        },
    }
    atomic_io.write_json(manifest_path, manifest)
    log(
        f"decoded {manifest['images']:,} images ({len(images.skipped)} skipped) in {seconds:.1f} s "
        f"= {manifest['decode']['images_per_second']:,.0f} images/s; wrote {class_dir}/A..J.pickle"
    )
    return arrays, manifest, False


# ----------------------------------------------------------------------------- split sizes


def _per_class(name: str, size: int | None, default: int | None, log: Log) -> int | None:
    if size is None:
        return None if default is None else default // NUM_CLASSES
    if isinstance(size, bool) or int(size) != size or size < 0:
        raise DataError(f"{name} must be a non-negative integer, got {size!r}")
    size = int(size)
    if 0 < size < NUM_CLASSES:
        raise DataError(f"{name}={size} is smaller than the {NUM_CLASSES} classes (need one image per class)")
    if size % NUM_CLASSES:
        log(f"note: {name}={size} is not a multiple of {NUM_CLASSES}: using {size // NUM_CLASSES} per class "
            f"({size // NUM_CLASSES * NUM_CLASSES} images)")
    return size // NUM_CLASSES


def _smallest(counts: Sequence[int]) -> tuple[int, str]:
    c = int(np.argmin(counts))
    return int(counts[c]), LETTERS[c]


def plan_sizes(
    train_counts: Sequence[int],
    test_counts: Sequence[int] | None,
    train_size: int | None = None,
    valid_size: int | None = None,
    test_size: int | None = None,
    log: Log = print,
) -> dict[str, int]:
    """Images per class of each split (see the module docstring for the defaults).

    Args:
      train_counts: images per class A..J of the train source.
      test_counts: same for the test source, or None (single-archive mode).
      train_size, valid_size, test_size: requested split sizes (None: default).

    Returns:
      ``{"train": per_class, "valid": per_class, "test": per_class}``.

    Raises:
      DataError: a size is negative, below 10, or larger than the data (naming the numbers).
    """
    m, letter = _smallest(train_counts)
    if test_counts is None:
        v = _per_class("valid_size", valid_size, None, log)
        te = _per_class("test_size", test_size, None, log)
        v = int(m * HOLDOUT_FRACTION) if v is None else v
        te = int(m * HOLDOUT_FRACTION) if te is None else te
        t = _per_class("train_size", train_size, None, log)
        t = m - v - te if t is None else t
        if t <= 0:
            raise DataError(
                f"no images left for training: valid {v * NUM_CLASSES:,} + test {te * NUM_CLASSES:,} images take "
                f"{v + te:,} per class, and class {letter} has only {m:,}"
            )
        if t + v + te > m:
            raise DataError(
                f"train {t * NUM_CLASSES:,} + valid {v * NUM_CLASSES:,} + test {te * NUM_CLASSES:,} images "
                f"need {t + v + te:,} per class, but class {letter} has only {m:,}"
            )
        return {"train": t, "valid": v, "test": te}
    t = _per_class("train_size", train_size, COURSE_TRAIN_SIZE, log)
    v = _per_class("valid_size", valid_size, COURSE_VALID_SIZE, log)
    te = _per_class("test_size", test_size, COURSE_TEST_SIZE, log)
    if t <= 0:
        raise DataError("train_size must be at least 10 (one image per class)")
    if t + v > m:
        raise DataError(
            f"train {t * NUM_CLASSES:,} + valid {v * NUM_CLASSES:,} images need {t + v:,} per class from the "
            f"train archive, but class {letter} has only {m:,}"
        )
    mt, lt = _smallest(test_counts)
    if te > mt:
        raise DataError(
            f"test {te * NUM_CLASSES:,} images need {te:,} per class from the test archive, "
            f"but class {lt} has only {mt:,}"
        )
    return {"train": t, "valid": v, "test": te}


def _merge(
    train_arrays: list[np.ndarray], test_arrays: list[np.ndarray] | None, per_class: Mapping[str, int], seed: int
) -> dict[str, np.ndarray]:
    """Balanced, disjoint, shuffled splits (course ``merge_datasets`` + ``randomize``)."""
    rng = np.random.default_rng(seed)
    picks: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    cuts = ("valid", "train") if test_arrays is not None else ("valid", "test", "train")
    for arr in train_arrays:
        perm = rng.permutation(len(arr))
        start = 0
        for split in cuts:
            picks[split].append(arr[np.sort(perm[start : start + per_class[split]])])
            start += per_class[split]
    if test_arrays is not None:
        for arr in test_arrays:
            perm = rng.permutation(len(arr))
            picks["test"].append(arr[np.sort(perm[: per_class["test"]])])
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        images = np.concatenate(picks[split]) if picks[split] else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        labels = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), per_class[split])
        order = rng.permutation(len(labels))
        out[f"{split}_dataset"] = np.ascontiguousarray(images[order])
        out[f"{split}_labels"] = labels[order]
    return out


def _class_counts(labels: np.ndarray) -> dict[str, int]:
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    return {letter: int(counts[c]) for c, letter in enumerate(LETTERS)}


# ----------------------------------------------------------------------------- prepare


def _merged_reusable(out: Path, manifest: dict) -> tuple[dict | None, str]:
    report = _read_json(out / REPORT_JSON)
    if report is None or not (out / MERGED_PICKLE).exists():
        return None, "no previous notMNIST.pickle/report"
    if report.get("manifest") != manifest:
        return None, "inputs (sources, sizes or seed) changed"
    try:
        d = load_pickle(out / MERGED_PICKLE)
        validate_dataset(d)
        for split in SPLITS:
            if len(d[f"{split}_labels"]) != report["sizes"][split]:
                n, expected = len(d[f"{split}_labels"]), report["sizes"][split]
                raise DataError(f"{split} has {n} images, the report says {expected}")
        if any(k not in d for k in SANITIZED_KEYS):
            raise DataError("the sanitized sets are missing")
    except (DataError, KeyError, TypeError) as e:
        return None, str(e)
    return report, ""


def _source_report(role: str, class_dir: Path, manifest: dict, reused: bool) -> dict:
    src = manifest["source"]
    return {
        "role": role,
        "path": src["path"],
        "kind": src["kind"],
        "size": src["size"],
        "mtime_ns": src["mtime_ns"],
        "sha256": manifest.get("sha256"),
        "class_pickles": str(class_dir),
        "images": manifest["images"],
        "per_class": manifest["per_class"],
        "skipped_count": manifest["skipped_count"],
        "decode": manifest["decode"],
        "reused": reused,
    }


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
    progress: bool = True,
    log: Log = print,
) -> dict:
    """Builds (or reuses) ``out_dir/notMNIST.pickle`` from one or two archives/folders.

    See the module docstring for the steps, the split sizes and reuse.

    Args:
      train_source: archive or folder for train and valid (and test when alone).
      test_source: archive or folder for test (two-archive mode), or None.
      out_dir: output folder (per-class pickles go to ``out_dir/<archive-stem>/``).
      train_size, valid_size, test_size: split sizes (None: the defaults).
      seed: shuffling seed (``np.random.default_rng(seed)``; 133 as in the course).
      workers: decoding processes (None: ``os.cpu_count()``).
      force: rebuild everything even if reusable.
      progress: progress bars on stderr.
      log: called with one-line status messages.

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
    seconds: dict[str, float] = {}
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise DataError(f"workers must be >= 1, got {workers}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DataError(f"seed must be a non-negative integer, got {seed!r}")
    for name, size in (("train_size", train_size), ("valid_size", valid_size), ("test_size", test_size)):
        _per_class(name, size, None, lambda *_: None)  # fail fast on negative / non-integer / 1..9
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
    with _out_dir_lock(out, [out / stem for stem in stems.values()], log):
        return _prepare_locked(roles, stems, out, train_size, valid_size, test_size, seed, workers, force,
                               progress, log, t0, seconds)


def _make_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"cannot create output folder {out}: {e.strerror or e}") from None


@contextlib.contextmanager
def _out_dir_lock(out: Path, class_dirs: Sequence[Path], log: Log):
    """Holds ``out/.prepare.lock`` while prepare writes to ``out``; removes temp files of killed runs.

    Raises:
      DataError: ``out`` is not writable, or another process holds the lock.
    """
    try:
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise DataError(f"cannot write to output folder {out}: {e.strerror or e}") from None
    try:
        locked = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                raise DataError(f"another prepare is writing to {out} (it holds {out / LOCK_FILE}); "
                                "wait for it to finish") from None
            except OSError:
                pass  # a filesystem without locks: go on, but leave temp files alone
        if locked:
            _remove_stale_temps([out, *class_dirs], log)
        yield
    finally:
        os.close(fd)  # also releases the lock (a killed process releases it too)


def _remove_stale_temps(folders: Sequence[Path], log: Log) -> None:
    for folder in folders:
        try:
            names = [n for n in os.listdir(folder) if _STALE_TEMP.match(n)]
        except OSError:
            continue
        for name in names:
            with contextlib.suppress(OSError):
                os.remove(folder / name)
        if names:
            log(f"removed {len(names)} temporary file{'s' if len(names) > 1 else ''} left in {folder} "
                "by an interrupted run")


def _prepare_locked(
    roles: dict[str, str], stems: dict[str, str], out: Path, train_size: int | None, valid_size: int | None,
    test_size: int | None, seed: int, workers: int, force: bool, progress: bool, log: Log, t0: float,
    seconds: dict[str, float],
) -> dict:
    """``prepare`` after the arguments are checked and ``out`` is locked."""
    # 1. per-class pickles (course maybe_pickle)
    arrays: dict[str, list[np.ndarray]] = {}
    manifests: dict[str, dict] = {}
    reused_classes: dict[str, bool] = {}
    start = time.perf_counter()
    for role, src in roles.items():
        class_dir = out / stems[role]
        arrays[role], manifests[role], reused_classes[role] = _class_pickles(
            src, class_dir, force, workers, progress, log
        )
        empty = [letter for letter, n in manifests[role]["per_class"].items() if n == 0]
        if empty:
            plural = "es" if len(empty) > 1 else ""
            raise DataError(f"{src} has no readable images for class{plural} {', '.join(empty)}")
    seconds["read"] = time.perf_counter() - start

    counts = {role: [len(a) for a in arrs] for role, arrs in arrays.items()}
    per_class = plan_sizes(counts["train"], counts.get("test"), train_size, valid_size, test_size, log)
    manifest = {
        "format": FORMAT_VERSION,
        "train": manifests["train"]["source"],
        "test": manifests["test"]["source"] if "test" in manifests else None,
        "train_size": train_size,
        "valid_size": valid_size,
        "test_size": test_size,
        "seed": seed,
    }
    sources = {
        role: _source_report(role, out / stems[role], manifests[role], reused_classes[role]) for role in roles
    }
    decoded = [m["decode"] for role, m in manifests.items() if not reused_classes[role]]
    decode = None
    if decoded:
        members = sum(d["members"] for d in decoded)
        secs = sum(d["seconds"] for d in decoded)
        decode = {"members": members, "seconds": round(secs, 3),
                  "images_per_second": round(members / max(secs, 1e-9), 1), "workers": workers}

    # 2. reuse notMNIST.pickle when the inputs match
    if not force:
        start = time.perf_counter()
        previous, why = _merged_reusable(out, manifest)
        seconds["check"] = time.perf_counter() - start
        if previous is not None:
            log(f"reusing {out / MERGED_PICKLE} (same sources, sizes and seed; --force rebuilds)")
            seconds["total"] = time.perf_counter() - t0
            report = dict(previous)
            report.update(
                sources=sources,
                seconds={k: round(v, 3) for k, v in seconds.items()},
                decode=decode,
                workers=workers,
                reused={"class_pickles": reused_classes, "merged_pickle": True},
            )
            atomic_io.write_json(out / REPORT_JSON, report)
            return report
        if (out / MERGED_PICKLE).exists():
            log(f"rebuilding {out / MERGED_PICKLE}: {why}")

    # 3. balanced splits (course merge_datasets + randomize)
    start = time.perf_counter()
    data = _merge(arrays["train"], arrays.get("test"), per_class, seed)
    del arrays
    seconds["merge"] = time.perf_counter() - start

    # 4. overlap (course Problem 5) and sanitized sets
    start = time.perf_counter()
    overlaps, valid_keep, test_keep = find_overlaps(data["train_dataset"], data["valid_dataset"], data["test_dataset"])
    for split, keep in (("valid", valid_keep), ("test", test_keep)):
        data[f"{split}_dataset_sanitized"] = data[f"{split}_dataset"][keep]
        data[f"{split}_labels_sanitized"] = data[f"{split}_labels"][keep]
    seconds["overlap"] = time.perf_counter() - start

    # 5. write
    start = time.perf_counter()
    validate_dataset(data)
    # The old report vouches for the old pickle: drop it first, so a crash between the two
    # writes below leaves a pickle without a report (rebuilt next time), never a mismatched pair.
    with contextlib.suppress(FileNotFoundError):
        (out / REPORT_JSON).unlink()
    atomic_io.save_pickle(out / MERGED_PICKLE, data)
    seconds["write"] = time.perf_counter() - start
    seconds["total"] = time.perf_counter() - t0

    skipped = [
        {"source": role, "name": n, "reason": r} for role in roles for n, r in manifests[role]["skipped"]
    ]
    skipped_count = sum(manifests[role]["skipped_count"] for role in roles)
    report = {
        "format": FORMAT_VERSION,
        "manifest": manifest,
        "mode": "two-archive" if "test" in roles else "single-archive",
        "seed": seed,
        "pickle": str(out / MERGED_PICKLE),
        "sources": sources,
        "sizes": {s: len(data[f"{s}_labels"]) for s in SPLITS}
        | {f"{s}_sanitized": len(data[f"{s}_labels_sanitized"]) for s in ("valid", "test")},
        "per_class": {s: _class_counts(data[f"{s}_labels"]) for s in SPLITS}
        | {f"{s}_sanitized": _class_counts(data[f"{s}_labels_sanitized"]) for s in ("valid", "test")},
        "skipped": {"count": skipped_count, "files": skipped, "listed": len(skipped)},
        "duplicates": overlaps,
        "sanitized": {"valid": int(valid_keep.sum()), "test": int(test_keep.sum()), "rule": SANITIZE_RULE},
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "decode": decode,
        "workers": workers,
        "reused": {"class_pickles": reused_classes, "merged_pickle": False},
    }
    atomic_io.write_json(out / REPORT_JSON, report)
    log(f"wrote {out / MERGED_PICKLE} and {out / REPORT_JSON}")
    return report


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
    sizes = report["sizes"]
    lines.append("  sizes: " + ", ".join(f"{k} {v:,}" for k, v in sizes.items()))
    dup = report["duplicates"]
    for kind in ("exact", "near"):
        w, a = dup[kind]["within"], dup[kind]["across"]
        lines.append(
            f"  {kind} duplicates: within " + ", ".join(f"{k} {v:,}" for k, v in w.items())
            + "; across " + ", ".join(f"{k} {v:,}" for k, v in a.items())
        )
    skipped = report["skipped"]
    if skipped["count"]:
        shown = "; ".join(f"{_printable(f['name'])}: {f['reason']}" for f in skipped["files"][:3])
        more = f" (+{skipped['count'] - 3} more)" if skipped["count"] > 3 else ""
        lines.append(f"  skipped {skipped['count']} files: {shown}{more}")
    secs = report["seconds"]
    lines.append("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in secs.items()))
    if report.get("decode"):
        d = report["decode"]
        plural = "s" if d["workers"] != 1 else ""
        lines.append(f"  decode: {d['members']:,} files in {d['seconds']:.2f} s = "
                     f"{d['images_per_second']:,.0f} images/s with {d['workers']} worker{plural}")
    cols = [c for c in ("train", "valid", "test", "valid_sanitized", "test_sanitized") if c in report["per_class"]]
    titles = [c.replace("_sanitized", "_san") for c in cols]
    widths = [max(len(t), 7) + 2 for t in titles]
    lines.append("  class" + "".join(f"{t:>{w}}" for t, w in zip(titles, widths)))
    for letter in LETTERS:
        cells = "".join(f"{report['per_class'][c][letter]:>{w},}" for c, w in zip(cols, widths))
        lines.append(f"  {letter:<5}{cells}")
    return "\n".join(lines)


def _printable(text: str) -> str:
    """Member names may hold undecodable bytes (surrogate escapes); show them as escapes."""
    return str(text).encode("utf-8", "backslashreplace").decode("utf-8")
