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

import os
from typing import Any, Mapping

import numpy as np

from dnn_tf.data.safe_pickle import load_pickle
from dnn_tf.notmnist import NUM_CLASSES, SANITIZED_SPLITS, SPLITS, DataError, check_images, keys

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
