"""What notMNIST is: ten letters A..J as 28x28 8-bit grayscale images, and the course's numbers.

Every stage of the package (archive -> arrays -> pickle -> tensors -> model -> report) takes
these facts from here, so they are written once. No TensorFlow.
"""

from __future__ import annotations

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


class DataError(ValueError):
    """Bad input data: a missing file, not a tar archive, no A..J folders, a bad pickle, ..."""


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
