"""splits: images per class of each split (plan_sizes) and the balanced shuffled merge."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from dnn_tf.data.dataset import COURSE_KEYS
from dnn_tf.data.splits import class_counts, merge, plan_sizes
from dnn_tf.notmnist import DataError


def test_plan_sizes_single_archive_defaults_and_options(caplog):
    assert plan_sizes([800] * 10, None) == {"train": 640, "valid": 80, "test": 80}
    assert plan_sizes([800] * 9 + [790], None) == {"train": 632, "valid": 79, "test": 79}
    assert plan_sizes([800] * 10, None, train_size=1000) == {"train": 100, "valid": 80, "test": 80}
    assert plan_sizes([800] * 10, None, 6000, 1000, 1000) == {"train": 600, "valid": 100, "test": 100}
    caplog.set_level(logging.INFO, logger="dnn_tf")
    assert plan_sizes([800] * 10, None, 1005)["train"] == 100
    [note] = caplog.records
    assert note.levelno == logging.WARNING and note.name == "dnn_tf.data.splits"
    assert "not a multiple of 10: using 100 per class (1000 images)" in note.getMessage()


def test_plan_sizes_two_archives_defaults_are_the_course_sizes():
    assert plan_sizes([52_900] * 10, [1_870] * 10) == {"train": 20_000, "valid": 1_000, "test": 1_000}
    assert plan_sizes([30] * 10, [10] * 10, 200, 0, 50) == {"train": 20, "valid": 0, "test": 5}


@pytest.mark.parametrize(
    "args, match",
    [
        (([800] * 10, None, 8000),
         r"train 8,000 \+ valid 800 \+ test 800 images need 960 per class, but class A has only 800"),
        (([800] * 10, None, None, 4000, 4000), "no images left for training"),
        (([30] * 10, [10] * 10), r"train 200,000 \+ valid 10,000 images need 21,000 per class"),
        (([30] * 10, [10] * 5 + [4] * 5, 200, 0, 100),
         "test 100 images need 10 per class from the test archive, but class F has only 4"),
        (([800] * 10, None, 5), "train_size=5 is smaller than the 10 classes"),
        (([800] * 10, None, -10), "train_size must be a non-negative integer"),
    ],
)
def test_plan_sizes_errors_name_the_numbers(args, match):
    with pytest.raises(DataError, match=match):
        plan_sizes(*args)


def test_merge_is_balanced_disjoint_shuffled_and_seeded():
    arrays = [np.full((12, 28, 28), c, np.float32) + np.arange(12, dtype=np.float32)[:, None, None] / 100
              for c in range(10)]
    sizes = {"train": 6, "valid": 3, "test": 2}
    d = merge(arrays, None, sizes, seed=133)
    assert list(d) == list(COURSE_KEYS)
    rows = {}
    for split, n in sizes.items():
        images, labels = d[f"{split}_dataset"], d[f"{split}_labels"]
        assert images.dtype == np.float32 and labels.dtype == np.int32 and images.flags.c_contiguous
        assert class_counts(labels) == {letter: n for letter in "ABCDEFGHIJ"}
        np.testing.assert_array_equal(np.floor(images[:, 0, 0]), labels)  # each image kept its label
        rows[split] = {img.tobytes() for img in images}
        assert len(rows[split]) == len(images)
    assert not rows["train"] & rows["valid"] and not rows["train"] & rows["test"] and not rows["valid"] & rows["test"]
    assert not np.array_equal(np.sort(d["train_labels"]), d["train_labels"])  # shuffled, not class by class
    again, other = merge(arrays, None, sizes, seed=133), merge(arrays, None, sizes, seed=7)
    for key in COURSE_KEYS:
        np.testing.assert_array_equal(again[key], d[key])
    assert not np.array_equal(other["train_dataset"], d["train_dataset"])
    two = merge(arrays, [a[:4] for a in arrays], sizes, seed=133)  # test from its own source
    assert {img.tobytes() for img in two["test_dataset"]} <= {img.tobytes() for a in arrays for img in a[:4]}


def _course_merge(train_arrays, test_arrays, sizes, seed):
    """The merge as first written (course merge_datasets + randomize, concatenate then permute): the reference."""
    from dnn_tf.data.dataset import SPLITS, keys

    rng = np.random.default_rng(seed)
    picks = {s: [] for s in SPLITS}
    cuts = ("valid", "train") if test_arrays is not None else ("valid", "test", "train")
    for arr in train_arrays:
        perm = rng.permutation(len(arr))
        start = 0
        for split in cuts:
            picks[split].append(arr[np.sort(perm[start:start + sizes[split]])])
            start += sizes[split]
    if test_arrays is not None:
        for arr in test_arrays:
            perm = rng.permutation(len(arr))
            picks["test"].append(arr[np.sort(perm[:sizes["test"]])])
    out = {}
    for split in SPLITS:
        images = np.concatenate(picks[split])
        labels = np.repeat(np.arange(10, dtype=np.int32), sizes[split])
        order = rng.permutation(len(labels))
        out[keys(split)[0]], out[keys(split)[1]] = np.ascontiguousarray(images[order]), labels[order]
    return out


class _OneRead:
    """A class read like class_pickles' classes: len() without the data, each [rows] counted."""

    def __init__(self, arr):
        self.arr, self.reads = arr, 0

    def __len__(self):
        return len(self.arr)

    def __getitem__(self, rows):
        self.reads += 1
        return self.arr[rows]


@pytest.mark.parametrize("two_archives", [False, True])
@pytest.mark.parametrize("seed", [0, 133, 2024])
def test_merge_gives_the_course_algorithms_arrays_reading_each_class_once(two_archives, seed):
    rng = np.random.default_rng(seed)
    train = [rng.integers(0, 256, (int(n), 28, 28), dtype=np.uint8) for n in rng.integers(30, 60, 10)]
    test = [rng.integers(0, 256, (int(n), 28, 28), dtype=np.uint8) for n in rng.integers(8, 20, 10)]
    sizes = {"train": 20, "valid": 6, "test": 8} if two_archives else {"train": 17, "valid": 5, "test": 7}
    expected = _course_merge(train, test if two_archives else None, sizes, seed)
    lazy_train, lazy_test = [_OneRead(a) for a in train], [_OneRead(a) for a in test]
    got = merge(lazy_train, lazy_test if two_archives else None, sizes, seed)
    assert list(got) == list(expected)
    for key in expected:
        assert got[key].dtype == expected[key].dtype and got[key].flags.c_contiguous
        np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    assert [c.reads for c in lazy_train] == [1] * 10
    assert [c.reads for c in lazy_test] == ([1] * 10 if two_archives else [0] * 10)
    sources = (train, test) if two_archives else (train, None)
    floats = merge([a.astype(np.float32) / 255 for a in sources[0]], sources[1] and [a.astype(np.float32) / 255
                                                                                    for a in sources[1]], sizes, seed)
    for split in ("train", "valid", "test"):  # the images keep their sources' dtype
        assert floats[f"{split}_dataset"].dtype == np.float32
        np.testing.assert_array_equal(floats[f"{split}_dataset"], got[f"{split}_dataset"] / np.float32(255))
