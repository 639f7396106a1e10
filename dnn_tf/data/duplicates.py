"""Exact and near duplicates within and across the splits (the course's Problem 5), by hashing.

Exact duplicates: equal raw bytes (a blake2b digest per image, so no O(n^2) comparisons).
Near duplicates: equal ``near_signature``, a coarse 14x14, 4-level version of the image.
``find_overlaps`` counts both and picks the sanitized valid/test images (numpy only).
"""

from __future__ import annotations

import hashlib
from typing import Mapping

import numpy as np

from dnn_tf.notmnist import IMAGE_SIZE, PIXEL_DEPTH

PAIRS = (("train", "valid"), ("train", "test"), ("valid", "test"))
NEAR_POOL = 2  # near-duplicate signature: mean over 2x2 blocks (28x28 -> 14x14) ...
NEAR_LEVELS = 4  # ... quantized to 4 gray levels (bins of 64 on the 0..255 scale)
GRAY_LEVELS = 256  # values of an 8-bit pixel
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
    blocks = [grid[:, :, i, :, j] for i in range(NEAR_POOL) for j in range(NEAR_POOL)]
    if images.dtype == np.uint8:  # term by term in uint16: numpy's sum over two strided axes is 4x slower
        sums = sum(block.astype(np.uint16) for block in blocks)
    else:  # block sums of (p - 127.5) / 255, mapped back to integer sums of p (exact after rounding)
        total = sum(blocks)
        sums = np.rint(total * np.float32(PIXEL_DEPTH) + np.float32(area * PIXEL_DEPTH / 2)).clip(0, area * PIXEL_DEPTH)
    bin_width = area * GRAY_LEVELS // NEAR_LEVELS  # block sums 0..1020 -> 4 bins of 256 (= mean // 64)
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

    Counts: ``within[s]`` is the number of images of split ``s`` that repeat an
    earlier image of ``s`` (n - distinct); ``across["a-b"]`` is the number of
    images of ``b`` that also occur in ``a``. Near counts include exact ones.

    Args:
      train, valid, test: (n, 28, 28) float32 image arrays.

    Returns:
      ``(counts, valid_keep, test_keep)``: counts as
      ``{"exact": {"within": ..., "across": ...}, "near": {...}, "criterion": ...}``;
      boolean masks of the valid images that duplicate (exactly or nearly) no
      train image, and of the test images that duplicate no train or valid image
      (``SANITIZE_RULE``).
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
