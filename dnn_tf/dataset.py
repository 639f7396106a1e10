"""The dataset: the keys of ``notMNIST.pickle``, their validation, and a safe loader.

One schema for the whole package (prepare writes it, train / evaluate / the notebooks
read it). A dataset is a dict of numpy arrays, the course's keys::

    train_dataset  float32 (n, 28, 28), pixels normalized (p - 127.5) / 255, so in [-0.5, 0.5]
    train_labels   integer (n,), 0..9 for A..J
    valid_dataset, valid_labels, test_dataset, test_labels    (the same)

plus, optionally, the sanitized splits ``valid_dataset_sanitized`` /
``valid_labels_sanitized`` and ``test_dataset_sanitized`` / ``test_labels_sanitized``
(valid and test without the images that duplicate a training image).

``load`` opens a pickle with a restricted unpickler that admits numpy arrays and plain
containers only, and validates it: every problem is a one-line ``DataError`` that names
the key (and, for NaN/inf pixels, the image). No TensorFlow.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any, Mapping

import numpy as np

from dnn_tf.notmnist import IMAGE_SIZE, NUM_CLASSES, DataError

SPLITS = ("train", "valid", "test")
SANITIZED_SPLITS = ("valid_sanitized", "test_sanitized")
# Images of a prepared dataset lie in [-0.5, 0.5]; anything beyond [-1, 1] was not normalized.
PIXEL_BOUND = 1.0
RAW_PIXELS_HINT = "looks like raw 0..255 pixels: run dnn-tf-prepare, which normalizes them to (p - 127.5) / 255"
PICKLE_BUFFER = 1 << 20
CHECK_BLOCK = 8192  # images checked for NaN/inf at a time


def keys(split: str) -> tuple[str, str]:
    """The pickle keys of ``split``: ``("test_dataset", "test_labels")``, ``("test_dataset_sanitized", ...)``.

    Raises:
      ValueError: an unknown split.
    """
    if split not in SPLITS + SANITIZED_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose from {', '.join(SPLITS + SANITIZED_SPLITS)}")
    base, _, suffix = split.partition("_")
    suffix = "_" + suffix if suffix else ""
    return f"{base}_dataset{suffix}", f"{base}_labels{suffix}"


COURSE_KEYS = tuple(k for split in SPLITS for k in keys(split))
SANITIZED_KEYS = tuple(k for split in SANITIZED_SPLITS for k in keys(split))


# ----------------------------------------------------------------------------- validation


def validate(d: Any) -> None:
    """Checks a dataset dict against the schema of the module docstring.

    The course keys must be present; each sanitized split is checked when its images are.

    Raises:
      DataError: naming the first problem found (key, and image index for NaN/inf pixels).
    """
    if not isinstance(d, Mapping):
        raise DataError(f"dataset must be a dict, got {type(d).__name__}")
    missing = [k for k in COURSE_KEYS if k not in d]
    if missing:
        raise DataError(f"dataset is missing keys: {', '.join(missing)}")
    for split in SPLITS + SANITIZED_SPLITS:
        images_key, labels_key = keys(split)
        if images_key not in d:
            continue
        if labels_key not in d:
            raise DataError(f"dataset has {images_key} but no {labels_key}")
        check_images(images_key, d[images_key])
        _check_labels(labels_key, d[labels_key], len(d[images_key]))


def check_images(name: str, images: Any) -> None:
    """Checks one image array: float32 (n, 28, 28), finite, normalized.

    Raises:
      DataError: naming ``name`` (and the first bad image for NaN/inf), with a hint for raw pixels.
    """
    if not isinstance(images, np.ndarray):
        raise DataError(f"{name} must be a numpy array, got {type(images).__name__}")
    shape_ok = images.ndim == 3 and images.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE)
    if images.dtype != np.float32 or not shape_ok:
        hint = f": {RAW_PIXELS_HINT}" if np.issubdtype(images.dtype, np.integer) and shape_ok else ""
        raise DataError(f"{name} must be float32 (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.dtype} "
                        f"{images.shape}{hint}")
    if not images.size:
        return
    # In blocks of images: a boolean copy of 200,000 images would cost 160 MB at once.
    finite = np.concatenate([np.isfinite(images[i:i + CHECK_BLOCK]).all(axis=(1, 2))
                             for i in range(0, len(images), CHECK_BLOCK)])
    if not finite.all():
        bad = int(np.argmin(finite))
        raise DataError(f"{name}[{bad}] has NaN or infinite pixels ({int((~finite).sum())} such images); "
                        "rebuild the pickle with dnn-tf-prepare")
    low, high = float(images.min()), float(images.max())
    if low < -PIXEL_BOUND or high > PIXEL_BOUND:
        hint = RAW_PIXELS_HINT if low >= 0 and high > PIXEL_BOUND else "run dnn-tf-prepare"
        raise DataError(f"{name} must hold normalized pixels in [-{PIXEL_BOUND:g}, {PIXEL_BOUND:g}], got "
                        f"{low:g}..{high:g}: {hint}")


def _check_labels(name: str, labels: Any, n: int) -> None:
    if not isinstance(labels, np.ndarray):
        raise DataError(f"{name} must be a numpy array, got {type(labels).__name__}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.ndim != 1:
        raise DataError(f"{name} must be integer (n,), got {labels.dtype} {labels.shape}")
    if len(labels) != n:
        raise DataError(f"{name} has {len(labels)} labels for {n} images")
    if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        raise DataError(f"{name} must be in 0..{NUM_CLASSES - 1}, got {labels.min()}..{labels.max()}")


def split_arrays(d: Mapping[str, np.ndarray]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{split: (images float32, labels int32)}`` of a valid dataset, sanitized splits when present.

    Raises:
      DataError: ``d`` is not a valid dataset (see ``validate``), or a split is empty.
    """
    validate(d)
    out = {}
    for split in SPLITS + SANITIZED_SPLITS:
        images_key, labels_key = keys(split)
        if images_key in d:
            if not len(d[images_key]):
                raise DataError(f"{images_key} is empty")
            out[split] = (d[images_key], np.asarray(d[labels_key], np.int32))
    return out


def load(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Opens and validates a ``notMNIST.pickle`` (restricted unpickler, see ``load_pickle``).

    Raises:
      DataError: an unreadable, unsafe or invalid file (one line naming the problem).
    """
    d = load_pickle(path)
    if not isinstance(d, dict):
        raise DataError(f"{os.fspath(path)} does not hold a dataset dict, but a {type(d).__name__} "
                        "(is it a per-class pickle?)")
    try:
        validate(d)
    except DataError as e:
        raise DataError(f"{os.fspath(path)}: {e}") from None
    return d


# ----------------------------------------------------------------------------- safe pickles

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
      The unpickled object (not validated: ``load`` validates a dataset).

    Raises:
      DataError: missing or unreadable file, truncated/corrupt pickle, a
        forbidden global, or not enough memory for what the pickle holds.
    """
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            return _ArrayUnpickler(io.BufferedReader(f, PICKLE_BUFFER), path).load()
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
