"""PNG bytes -> uint8 (28, 28) grayscale pixels, or the reason they cannot be (Pillow, no TensorFlow).

8-bit grayscale (mode ``L``) is used as is. Other modes are converted to 8-bit grayscale:
``1``, ``P``, ``RGB``, ``RGBA``, ``LA`` and ``PA`` through Pillow's ``convert("L")``
(ITU-R 601-2 luma of the colour, alpha ignored); 16-bit grayscale (``I;16*``, or ``I`` with
values in 0..65535) is scaled to 8 bits with ``round(v / 257)``, the exact inverse of the usual
8 -> 16 bit widening ``v * 257``. 16-bit colour PNGs (RGB, RGBA, and 16-bit gray+alpha, which
Pillow opens as RGBA) are reduced by Pillow to the high byte of each sample (``v >> 8``) and then
converted like 8-bit colour. Any other mode is refused with a reason. The PNG header is checked
before Pillow decodes anything: no PNG signature -> "not a PNG image", IHDR size not 28x28 ->
"wrong size" (so a header claiming 60000x60000 pixels costs nothing).
"""

from __future__ import annotations

import io
import struct
import warnings

import numpy as np
from PIL import Image

from dnn_tf.archive import one_line
from dnn_tf.notmnist import IMAGE_SIZE

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The first chunk after the 8-byte signature: length (4 bytes), b"IHDR", width (4), height (4), ...
IHDR_TYPE = slice(12, 16)
IHDR_SIZE = slice(16, 24)
SIXTEEN_BIT_DIVISOR = 257  # 65535 / 255: 16-bit value v -> round(v / 257)
MAX_16BIT = 65535
CONVERTIBLE_MODES = ("1", "P", "RGB", "RGBA", "LA", "PA")
PALETTE_MODES = ("P", "PA")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def decode_png(data: bytes) -> tuple[np.ndarray | None, str]:
    """Decodes one PNG into a uint8 (28, 28) array, or says why it cannot.

    Args:
      data: the file's bytes.

    Returns:
      ``(pixels, "")`` on success, ``(None, reason)`` otherwise. Never raises for
      bad data (see the module docstring for the mode conversions).
    """
    if not data:
        return None, "empty file (0 bytes)"
    if not data.startswith(PNG_SIGNATURE):
        return None, "not a PNG image"
    size = _ihdr_size(data)
    if size is not None and size != (IMAGE_SIZE, IMAGE_SIZE):
        return None, _wrong_size(*size)
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                return None, _wrong_size(im.width, im.height)
            return _to_gray8(im)
    except Image.UnidentifiedImageError:  # it has the PNG signature, so the header after it is broken
        return None, "corrupt PNG (truncated or damaged header)"
    except Exception as e:  # noqa: BLE001 - any failure on untrusted bytes is a skip, not a crash
        return None, one_line(f"corrupt PNG ({type(e).__name__}: {e})")


def _wrong_size(width: int, height: int) -> str:
    return f"wrong size {width}x{height} (expected {IMAGE_SIZE}x{IMAGE_SIZE})"


def _ihdr_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk that must follow the PNG signature, or None if absent."""
    if len(data) >= IHDR_SIZE.stop and data[IHDR_TYPE] == b"IHDR":
        return struct.unpack(">II", data[IHDR_SIZE])
    return None


def _to_gray8(im: Image.Image) -> tuple[np.ndarray | None, str]:
    mode = im.mode
    if mode == "L":
        pixels = np.asarray(im)
    elif mode in PALETTE_MODES:
        with warnings.catch_warnings():  # "transparency expressed in bytes": irrelevant for gray, not worth a line
            warnings.simplefilter("ignore", UserWarning)
            pixels = np.asarray(im.convert("L"))
    elif mode in CONVERTIBLE_MODES:
        pixels = np.asarray(im.convert("L"))
    elif mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(im).astype(np.int64)
        if wide.min() < 0 or wide.max() > MAX_16BIT:
            return None, f"unsupported image mode {mode!r} (values outside 0..{MAX_16BIT})"
        pixels = ((2 * wide + SIXTEEN_BIT_DIVISOR) // (2 * SIXTEEN_BIT_DIVISOR)).astype(np.uint8)
    else:
        return None, f"unsupported image mode {mode!r}"
    if pixels.shape != (IMAGE_SIZE, IMAGE_SIZE) or pixels.dtype != np.uint8:
        return None, f"unexpected decoded shape {pixels.shape} {pixels.dtype}"
    return pixels, ""
