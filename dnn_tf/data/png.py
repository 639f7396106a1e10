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

notMNIST's PNGs are 8-bit grayscale with just IHDR, IDAT and IEND chunks. For such a file, with
every CRC right, ``_plain_idat`` takes the image data and Pillow's own PNG pixel decoder (its "zip"
decoder, through the public ``Image.frombytes``) decodes it, skipping ``PngImagePlugin``'s chunk
parsing in Python, which costs more than the pixels (docs/performance.md has the measurement).
Anything else, and any failure there, takes the full ``Image.open`` path, so pixels and reasons are
the same either way (``tests/test_archive.py`` checks it on random and damaged PNGs).
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from typing import Sequence

import numpy as np
from PIL import Image

from dnn_tf.notmnist import IMAGE_SIZE, one_line

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The first chunk after the 8-byte signature: length (4 bytes), b"IHDR", width (4), height (4), ...
IHDR_TYPE = slice(12, 16)
IHDR_SIZE = slice(16, 24)
SIXTEEN_BIT_DIVISOR = 257  # 65535 / 255: 16-bit value v -> round(v / 257)
MAX_16BIT = 65535
CONVERTIBLE_MODES = ("1", "P", "RGB", "RGBA", "LA", "PA")
PALETTE_MODES = ("P", "PA")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")
CHUNK_HEAD, CHUNK_CRC = 8, 4  # length + type; CRC
_U32 = struct.Struct(">I")
# The plain layout: signature, IHDR of 28x28 8-bit gray (no interlace), IDAT chunks, IEND (as these bytes,
# CRCs included).
PLAIN_IHDR = struct.pack(">I4sIIBBBBB", 13, b"IHDR", IMAGE_SIZE, IMAGE_SIZE, 8, 0, 0, 0, 0)
PLAIN_HEAD = PNG_SIGNATURE + PLAIN_IHDR + _U32.pack(zlib.crc32(PLAIN_IHDR[4:]))
PLAIN_END = _U32.pack(0) + b"IEND" + _U32.pack(zlib.crc32(b"IEND"))
PLAIN_FAST_PATH = True  # False: every PNG through Image.open (to measure what the plain path buys)


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
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE))
    if _decode_plain(canvas, data):
        return np.asarray(canvas), ""
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                return None, _wrong_size(im.width, im.height)
            return _to_gray8(im)
    except Image.UnidentifiedImageError:  # it has the PNG signature, so the header after it is broken
        return None, "corrupt PNG (truncated or damaged header)"
    except Exception as e:  # noqa: BLE001 - any failure on untrusted bytes is a skip, not a crash
        return None, one_line(f"corrupt PNG ({type(e).__name__}: {e})")


def decode_pngs(blobs: Sequence[bytes]) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Decodes a batch of PNGs: the pixels and reasons of ``decode_png`` on each, faster (one image object
    decodes every plain PNG in turn, pasted into one image of the whole batch).

    Returns:
      ``(uint8 (k, 28, 28) of the decodable ones, their indices in blobs, (index, reason) of the others)``.
    """
    canvas = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE))
    batch = Image.new("L", (IMAGE_SIZE, IMAGE_SIZE * len(blobs)))
    good: list[int] = []
    bad: list[tuple[int, str]] = []
    others: dict[int, np.ndarray] = {}
    for i, data in enumerate(blobs):
        if _decode_plain(canvas, data):
            batch.paste(canvas, (0, IMAGE_SIZE * len(good)))
        else:
            pixels, reason = decode_png(data)
            if pixels is None:
                bad.append((i, reason))
                continue
            others[len(good)] = pixels
        good.append(i)
    stacked = np.frombuffer(bytearray(batch.tobytes()), np.uint8).reshape(len(blobs), IMAGE_SIZE, IMAGE_SIZE)
    stacked = stacked[:len(good)]
    for row, pixels in others.items():
        stacked[row] = pixels
    return stacked, good, bad


def _plain_idat(data: bytes) -> bytes | None:
    """The image data of a plain 8-bit gray PNG (see the module docstring), or None for any other file."""
    if not data.startswith(PLAIN_HEAD):
        return None
    pos, parts = len(PLAIN_HEAD), []
    while not data.startswith(PLAIN_END, pos):
        if pos + CHUNK_HEAD + CHUNK_CRC > len(data):
            return None
        end = pos + CHUNK_HEAD + _U32.unpack_from(data, pos)[0]
        if data[pos + 4:pos + CHUNK_HEAD] != b"IDAT" or _crc(data, pos + 4, end):
            return None
        parts.append(data[pos + CHUNK_HEAD:end])
        pos = end + CHUNK_CRC
    return b"".join(parts) if parts else None


def _decode_plain(canvas: Image.Image, data: bytes) -> bool:
    """Decodes a plain 8-bit gray PNG (see the module docstring) into ``canvas`` with Pillow's PNG pixel
    decoder; False for any other file, or a failure (truncated or broken data: the full path says why)."""
    idat = _plain_idat(data) if PLAIN_FAST_PATH else None
    if idat is None:
        return False
    try:
        canvas.frombytes(idat, "zip", "L")  # raw mode "L", as PngImagePlugin gives it for 8-bit gray
    except Exception:  # noqa: BLE001 - any failure here means: take the full path
        return False
    return True


def _crc(data: bytes, start: int, end: int) -> bool:
    """True if the CRC stored at ``end`` does not match ``data[start:end]`` (a chunk's type and data).

    A file cut before the end of that CRC does not match either.
    """
    if end + CHUNK_CRC > len(data):
        return True
    return zlib.crc32(memoryview(data)[start:end]) != _U32.unpack_from(data, end)[0]


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
