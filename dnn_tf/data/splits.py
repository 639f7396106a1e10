"""Balanced train/valid/test splits: how many images per class, and the course's shuffled merge.

Sizes: a split of size ``s`` takes ``s // 10`` images of every class, so a size that is not a
multiple of 10 is rounded down (with a warning). Two-archive mode (a test source given, the
course's): train and valid from the train source (default 200,000 / 10,000), test from the test
source (default 10,000). Single-archive mode: all three from the train source, disjoint; by
default all images of the smallest class count ``m`` are used per class: ``m // 10`` valid,
``m // 10`` test, the rest train (the 8,000-image sample: 6,400 / 800 / 800).

The merge (course ``merge_datasets`` + ``randomize``) draws with ``np.random.default_rng(seed)``:
each class is permuted and cut into valid, (test,) train; each merged split is permuted again.
It reads one class at a time, so the sources need not be in memory all at once.
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np

from dnn_tf.notmnist import (
    COURSE_TEST_SIZE,
    COURSE_TRAIN_SIZE,
    COURSE_VALID_SIZE,
    IMAGE_SIZE,
    LETTERS,
    NUM_CLASSES,
    SPLITS,
    DataError,
    keys,
)

HOLDOUT_FRACTION = 0.1  # single-archive default: this fraction of each class for valid, and again for test

logger = logging.getLogger(__name__)


def check_size(name: str, size: int | None) -> None:
    """Fails fast on a split size that can never work (None, the default, is fine).

    Raises:
      DataError: ``size`` is negative, not an integer, or 1..9.
    """
    if size is None:
        return
    if isinstance(size, bool) or int(size) != size or size < 0:
        raise DataError(f"{name} must be a non-negative integer, got {size!r}")
    if 0 < size < NUM_CLASSES:
        raise DataError(f"{name}={size} is smaller than the {NUM_CLASSES} classes (need one image per class)")


def _per_class(name: str, size: int | None, default: int | None = None) -> int | None:
    """Images per class for a requested split size (``size // 10``; None: ``default // 10`` or None)."""
    if size is None:
        return None if default is None else default // NUM_CLASSES
    check_size(name, size)
    size = int(size)
    if size % NUM_CLASSES:
        logger.warning(f"note: {name}={size} is not a multiple of {NUM_CLASSES}: using {size // NUM_CLASSES} "
                       f"per class ({size // NUM_CLASSES * NUM_CLASSES} images)")
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
        v = _per_class("valid_size", valid_size)
        te = _per_class("test_size", test_size)
        v = int(m * HOLDOUT_FRACTION) if v is None else v
        te = int(m * HOLDOUT_FRACTION) if te is None else te
        t = _per_class("train_size", train_size)
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
    t = _per_class("train_size", train_size, COURSE_TRAIN_SIZE)
    v = _per_class("valid_size", valid_size, COURSE_VALID_SIZE)
    te = _per_class("test_size", test_size, COURSE_TEST_SIZE)
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


def merge(
    train_arrays: Sequence[Any], test_arrays: Sequence[Any] | None, sizes: Mapping[str, int], seed: int,
) -> dict[str, np.ndarray]:
    """Balanced, disjoint, shuffled splits (course ``merge_datasets`` + ``randomize``).

    Each class is read once (``arrays[c][rows]``) and its picks are written straight to their places in
    the shuffled splits: no concatenated or permuted copy of a split is made. The random draws depend
    on the class sizes only and are made first, in the order the course's code makes them.

    Args:
      train_arrays: the images of each class A..J of the train source: arrays, or anything with
        ``len()`` and ``[rows]`` indexing (``class_pickles`` reads classes this way, one at a time).
      test_arrays: the same of the test source, or None (test is cut from the train source).
      sizes: images per class of each split (``plan_sizes``).
      seed: seed of ``np.random.default_rng``.

    Returns:
      The course keys: ``{split}_dataset`` (n, 28, 28) of the sources' dtype (float32 for normalized
      images), ``{split}_labels`` int32.
    """
    rng = np.random.default_rng(seed)
    sources = [(train_arrays, ("valid", "train") if test_arrays is not None else ("valid", "test", "train"))]
    if test_arrays is not None:
        sources.append((test_arrays, ("test",)))
    perms = [[rng.permutation(len(arr)) for arr in arrays] for arrays, _ in sources]
    orders = {split: rng.permutation(NUM_CLASSES * sizes[split]) for split in SPLITS}
    places = {split: np.argsort(order) for split, order in orders.items()}  # unshuffled position -> shuffled
    images: dict[str, np.ndarray] = {}
    for (arrays, cuts), class_perms in zip(sources, perms):
        for c, (arr, perm) in enumerate(zip(arrays, class_perms)):
            bounds = np.cumsum([0] + [sizes[split] for split in cuts])
            rows = [np.sort(perm[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
            picked = arr[np.concatenate(rows)]
            for split, a, b in zip(cuts, bounds[:-1], bounds[1:]):
                n = sizes[split]
                if split not in images:
                    images[split] = np.empty((NUM_CLASSES * n, IMAGE_SIZE, IMAGE_SIZE), picked.dtype)
                images[split][places[split][c * n:(c + 1) * n]] = picked[a:b]
    out: dict[str, np.ndarray] = {}
    for split in SPLITS:
        images_key, labels_key = keys(split)
        out[images_key] = images.get(split, np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32))
        out[labels_key] = np.repeat(np.arange(NUM_CLASSES, dtype=np.int32), sizes[split])[orders[split]]
    return out


def class_counts(labels: np.ndarray) -> dict[str, int]:
    """``{"A": n, ..., "J": n}``: images per class of a label array."""
    counts = np.bincount(labels, minlength=NUM_CLASSES)
    return {letter: int(counts[c]) for c, letter in enumerate(LETTERS)}
