"""The restricted unpickler: a pickle may hold numpy arrays and plain containers, nothing else.

``notMNIST.pickle`` and the per-class pickles are files a user may download from anywhere,
and ``pickle.load`` runs whatever code a pickle names. ``load_pickle`` refuses every global
but numpy's own array reconstructors and a few harmless builtins, and guards those against
memory bombs. The allow-list names numpy's pickle constructors (some ``_``-prefixed): it is
data that is compared against, never a call into numpy's internals. No TensorFlow.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any

import numpy as np

from dnn_tf.notmnist import DataError, one_line

PICKLE_BUFFER = 1 << 20
# numpy 2 moved numpy.core under a private name (the quoted "numpy._core..." strings below); numpy 1, which
# TensorFlow 2.16 and 2.17 need, has only the old one. Those strings are data a pickle names, not calls.
NUMPY_1 = int(np.__version__.split(".")[0]) < 2

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
        if NUMPY_1 and module.startswith("numpy._core"):  # a pickle written by numpy 2, read by numpy 1
            module = "numpy.core" + module[len("numpy._core"):]
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
        raise DataError(f"not enough memory to load {path} ({one_line(f'{type(e).__name__}: {e}')})") from None
    except Exception as e:  # noqa: BLE001 - UnpicklingError, EOFError, ValueError, ... all mean "bad file"
        raise DataError(f"{path} is truncated or corrupt ({one_line(f'{type(e).__name__}: {e}')})") from None
