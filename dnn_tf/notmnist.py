"""What notMNIST is: ten letters A..J as 28x28 8-bit grayscale images, and the course's numbers.

Every stage of the package (archive -> arrays -> pickle -> tensors -> model -> report) takes
these facts from here, so they are written once. No TensorFlow.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LETTERS = "ABCDEFGHIJ"
NUM_CLASSES = len(LETTERS)
IMAGE_SIZE = 28
IMAGE_PIXELS = IMAGE_SIZE * IMAGE_SIZE
PIXEL_DEPTH = 255.0
# normalize(0): empty glyph background; what image jitter pads in from outside an image.
BACKGROUND = -0.5

# The course's split: train/valid from notMNIST_large, test from notMNIST_small, and its seed.
COURSE_TRAIN_SIZE = 200_000
COURSE_VALID_SIZE = 10_000
COURSE_TEST_SIZE = 10_000
COURSE_SEED = 133

# The splits of notMNIST.pickle (its keys: keys(split)).
SPLITS = ("train", "valid", "test")
SANITIZED_SPLITS = ("valid_sanitized", "test_sanitized")  # valid, test without train's duplicates

# Images of a prepared dataset lie in [-0.5, 0.5]; anything beyond [-1, 1] was not normalized.
PIXEL_BOUND = 1.0
RAW_PIXELS_HINT = "looks like raw 0..255 pixels: run dnn-tf-prepare, which normalizes them to (p - 127.5) / 255"
CHECK_BLOCK = 8192  # images checked for NaN/inf at a time
MAX_REASON_CHARS = 160  # a skip reason or error detail is cut to this many characters


class DataError(ValueError):
    """Bad input data: a missing file, not a tar archive, no A..J folders, a bad pickle, ..."""


def one_line(text: object) -> str:
    """``text`` on one line, at most ``MAX_REASON_CHARS`` characters (for skip reasons and errors)."""
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def normalize(pixels: np.ndarray) -> np.ndarray:
    """Normalizes 8-bit pixels like the course: float32 ``(p - 127.5) / 255``.

    Args:
      pixels: uint8 array of any shape (other integer types must lie in 0..255).

    Returns:
      float32 array of the same shape, values in [-0.5, 0.5]. (float32 arithmetic
      on the 256 possible values gives exactly the course's float64 result stored
      as float32; the tests check all of them.)

    Raises:
      ValueError: if the values are not in 0..255.
    """
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        if pixels.size and (pixels.min() < 0 or pixels.max() > PIXEL_DEPTH):
            raise ValueError("normalize expects pixel values in 0..255")
    out = pixels.astype(np.float32)  # one float32 array, then in place: no big temporaries
    out -= np.float32(PIXEL_DEPTH / 2)
    out /= np.float32(PIXEL_DEPTH)
    return out


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
