"""dataset: the one schema of notMNIST.pickle — keys, NaN/range validation with hints, the safe loader."""

from __future__ import annotations

import numpy as np
import pytest

from dnn_tf import files, notmnist
from dnn_tf.data import dataset
from dnn_tf.notmnist import DataError


@pytest.fixture
def good(tiny_dataset) -> dict:
    return {k: v.copy() for k, v in tiny_dataset.items()}


def test_keys_of_every_split():
    assert dataset.keys("train") == ("train_dataset", "train_labels")
    assert dataset.keys("test_sanitized") == ("test_dataset_sanitized", "test_labels_sanitized")
    assert dataset.COURSE_KEYS == ("train_dataset", "train_labels", "valid_dataset", "valid_labels",
                                   "test_dataset", "test_labels")
    with pytest.raises(ValueError, match="unknown split 'tests'"):
        dataset.keys("tests")


def test_nan_and_inf_pixels_name_the_split_and_the_first_image(good):
    good["valid_dataset"][7, 3, 3] = np.nan
    good["valid_dataset"][9, 0, 0] = np.inf
    with pytest.raises(DataError) as e:
        dataset.validate(good)
    assert str(e.value) == ("valid_dataset[7] has NaN or infinite pixels (2 such images); "
                            "rebuild the pickle with dnn-tf-prepare")


def test_nan_in_a_later_block_is_found(good):
    big = np.full((notmnist.CHECK_BLOCK + 5, 28, 28), -0.5, np.float32)
    big[notmnist.CHECK_BLOCK + 3, 27, 27] = -np.inf
    with pytest.raises(DataError, match=rf"x\[{notmnist.CHECK_BLOCK + 3}\] has NaN or infinite pixels \(1 such"):
        notmnist.check_images("x", big)


@pytest.mark.parametrize("images, words, raw", [
    (lambda x: np.round(x * 255 + 127.5).astype(np.uint8),
     "train_dataset must be float32 (n, 28, 28), got uint8 (200, 28, 28): looks like raw 0..255 pixels", True),
    (lambda x: np.round(x * 255 + 127.5).astype(np.int64), "got int64 (200, 28, 28): looks like raw", True),
    (lambda x: (x * 255 + 127.5).astype(np.float32), "train_dataset must hold normalized pixels in [-1, 1], got 0..",
     True),
    (lambda x: x * 4, "train_dataset must hold normalized pixels in [-1, 1], got -2..2: run dnn-tf-prepare", False),
    (lambda x: x.astype(np.float64), "train_dataset must be float32 (n, 28, 28), got float64 (200, 28, 28)", False),
])
def test_unnormalized_images_are_refused_with_a_hint(good, images, words, raw):
    good["train_dataset"] = images(good["train_dataset"])
    with pytest.raises(DataError) as e:
        dataset.validate(good)
    assert words in str(e.value) and "\n" not in str(e.value)
    assert ("looks like raw 0..255 pixels: run dnn-tf-prepare" in str(e.value)) == raw


def test_the_prepared_range_and_its_bounds_pass(good):
    dataset.validate(good)
    good["train_dataset"][0, 0, :2] = -1.0, 1.0  # the bound itself is allowed
    dataset.validate(good)


def test_split_arrays_gives_int32_labels_and_only_present_splits(good):
    arrays = dataset.split_arrays(good)
    assert list(arrays) == ["train", "valid", "test", "valid_sanitized", "test_sanitized"]
    assert all(y.dtype == np.int32 and x.dtype == np.float32 for x, y in arrays.values())
    plain = {k: good[k] for k in dataset.COURSE_KEYS}
    assert list(dataset.split_arrays(plain)) == ["train", "valid", "test"]
    empty = dict(plain, test_dataset=plain["test_dataset"][:0], test_labels=plain["test_labels"][:0])
    with pytest.raises(DataError, match="test_dataset is empty"):
        dataset.split_arrays(empty)


def test_load_validates_and_names_the_file(good, tmp_path):
    path = tmp_path / "d.pickle"
    files.save_pickle(path, good)
    loaded = dataset.load(path)
    assert all(np.array_equal(loaded[k], good[k]) for k in good)
    good["test_labels"] = good["test_labels"] + 10
    files.save_pickle(path, good)
    with pytest.raises(DataError, match=rf"^{path}: test_labels must be in 0..9, got 10..19$"):
        dataset.load(path)
    files.save_pickle(path, good["train_dataset"])
    with pytest.raises(DataError, match="does not hold a dataset dict, but a ndarray"):
        dataset.load(path)


@pytest.mark.parametrize("module", [b"numpy.core.", b"numpy._core."])
def test_pickles_of_numpy_1_and_numpy_2_load_under_either(tmp_path, tiny_dataset, module):
    """numpy 2 renamed numpy.core to numpy._core; a notMNIST.pickle from either loads on both."""
    import pickle

    from dnn_tf.data.safe_pickle import load_pickle

    raw = pickle.dumps(tiny_dataset, protocol=2)  # protocol 2 names modules in plain text
    raw = raw.replace(b"cnumpy._core.", b"cnumpy.core.").replace(b"cnumpy.core.", b"c" + module)  # GLOBAL opcodes
    assert b"c" + module + b"multiarray" in raw
    path = tmp_path / "dataset.pickle"
    path.write_bytes(raw)
    got = load_pickle(path)
    dataset.validate(got)
    np.testing.assert_array_equal(got["valid_dataset"], tiny_dataset["valid_dataset"])
