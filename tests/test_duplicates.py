"""duplicates: exact and near duplicates within and across splits (course Problem 5), near_signature."""

from __future__ import annotations

import time

import numpy as np
from fixtures import make_glyph_images

from dnn_tf.data.duplicates import find_overlaps, near_signature
from dnn_tf.notmnist import normalize


def _distinct_pool(n: int, seed: int = 5) -> np.ndarray:
    """n glyphs (uint8) whose near signatures are pairwise different."""
    images, _ = make_glyph_images(n // 10 + 4, seed)
    sig = near_signature(images)
    _, first = np.unique(sig, axis=0, return_index=True)
    pool = images[np.sort(first)]
    assert len(pool) >= n
    return pool[np.random.default_rng(seed).permutation(len(pool))[:n]]


def _perturb(img: np.ndarray) -> np.ndarray:
    """A near copy: a few background pixels raised slightly (each 2x2 block mean stays in its bin)."""
    out = img.copy()
    blocks = img.reshape(14, 2, 14, 2).sum(axis=(1, 3))
    rows, cols = np.nonzero(blocks == 0)
    for r, c in list(zip(rows, cols))[:5]:
        out[2 * r, 2 * c] = 9
    assert (out != img).sum() == 5
    return out


def test_overlap_counts_exact_and_near():
    pool = _distinct_pool(60)
    train = np.concatenate([pool[:30], pool[[0, 1]]])  # 2 within-train copies
    valid = np.concatenate([pool[30:40], pool[[2, 3, 4]]])  # 3 copies of train
    near_copy = _perturb(pool[5])
    test = np.concatenate([pool[40:50], pool[[6, 7, 8, 9]], pool[[30]], near_copy[None]])  # 4 train, 1 valid, 1 near
    counts, valid_keep, test_keep = find_overlaps(normalize(train), normalize(valid), normalize(test))
    assert counts["exact"] == {
        "within": {"train": 2, "valid": 0, "test": 0},
        "across": {"train-valid": 3, "train-test": 4, "valid-test": 1},
    }
    assert counts["near"] == {
        "within": {"train": 2, "valid": 0, "test": 0},
        "across": {"train-valid": 3, "train-test": 5, "valid-test": 1},
    }
    assert "2x2" in counts["criterion"] and "4 gray levels" in counts["criterion"]
    assert valid_keep.tolist() == [True] * 10 + [False] * 3
    assert test_keep.tolist() == [True] * 10 + [False] * 6


def test_near_signature_separates_different_glyphs_and_groups_perturbed_ones():
    pool = _distinct_pool(20)
    sig = near_signature(normalize(pool))
    assert sig.shape == (20, 196) and sig.dtype == np.uint8 and sig.max() <= 3
    assert len(np.unique(sig, axis=0)) == 20
    np.testing.assert_array_equal(near_signature(_perturb(pool[0])[None]), near_signature(pool[:1]))
    np.testing.assert_array_equal(near_signature(pool), sig)  # uint8 input gives the same signature
    every = np.random.default_rng(1).integers(0, 256, (500, 28, 28), dtype=np.uint8)
    every[:, :2, :2] = [[0, 64], [128, 63]]  # a block summing exactly to the bin edge 255 | 256
    np.testing.assert_array_equal(near_signature(normalize(every)), near_signature(every))


def test_overlap_is_fast_on_course_sized_arrays():
    rng = np.random.default_rng(0)
    train = normalize(rng.integers(0, 256, (200_000, 28, 28), dtype=np.uint8))
    small = normalize(rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8))
    test = small.copy()
    test[:7] = train[:7]
    start = time.process_time()  # CPU seconds: not inflated by other jobs sharing the machine
    counts, valid_keep, test_keep = find_overlaps(train, small, test)
    seconds = time.process_time() - start
    assert seconds < 10, seconds
    assert counts["exact"]["across"] == {"train-valid": 0, "train-test": 7, "valid-test": 10_000 - 7}
    assert test_keep.sum() == 0 and valid_keep.all()


def test_uint8_pixels_give_the_answers_of_their_normalized_images():
    """prepare counts duplicates on the decoded uint8 pixels: the counts and kept images must be those
    of the normalized float32 images."""
    rng = np.random.default_rng(2)
    pool = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    pool[:100] = np.repeat(np.repeat(rng.integers(0, 4, (100, 7, 7), dtype=np.uint8) * 60, 4, 1), 4, 2)  # near twins
    train, valid, test = pool[rng.integers(0, 300, 400)], pool[rng.integers(0, 300, 80)], pool[rng.integers(0, 300, 80)]
    near = train[:20].copy()
    near[:, 0, 0] ^= 1  # one pixel off by one: no longer exact copies, still near ones (mostly)
    test = np.concatenate([test, near])
    as_bytes = find_overlaps(train, valid, test)
    as_floats = find_overlaps(normalize(train), normalize(valid), normalize(test))
    assert as_bytes[0] == as_floats[0] and as_bytes[0]["exact"]["within"]["train"] > 0
    assert as_bytes[0]["near"]["across"]["train-test"] > as_bytes[0]["exact"]["across"]["train-test"]
    np.testing.assert_array_equal(as_bytes[1], as_floats[1])
    np.testing.assert_array_equal(as_bytes[2], as_floats[2])
