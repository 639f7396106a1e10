"""notMNIST archives -> labelled image arrays (numpy + Pillow only, no TensorFlow).

``read_images`` streams PNGs straight out of a ``.tar.gz`` / ``.tgz`` / ``.tar``
(also ``.tar.bz2`` / ``.tar.xz``) or an already-extracted folder, decodes them in
parallel and returns them normalized the way the course did::

    float32 (pixel - 127.5) / 255, shape (n, 28, 28); labels int32 0..9 (A..J)

Nothing is ever written to disk. The archive is untrusted input: absolute paths,
``..`` components, links, devices and members over ``max_member_bytes``
(default ``MAX_MEMBER_BYTES``, 1 MiB) are refused unread, and unreadable images
(corrupt, empty, not a PNG, not 28x28) are skipped. Every refused or skipped
member is listed in ``Images.skipped`` as ``(name, reason)``; none of them is
fatal. Only a bad *source* raises ``DataError``: a missing or unreadable path, a
file that is not a tar archive, a truncated or corrupt archive, no A..J folders
at all, or a decompression bomb: more than ``max_total_bytes`` (default
``MAX_TOTAL_BYTES``, 4 GiB) of uncompressed data, counting skipped members and
trailing bytes, or a GNU long-name / pax header over ``MAX_HEADER_BYTES``. A
member whose header claims more bytes than are left of ``max_total_bytes`` stops
the read at once, without decompressing it.

Decoding (``decode_png``): 8-bit grayscale (mode ``L``) is used as is. Other
modes are converted to 8-bit grayscale: ``1``, ``P``, ``RGB``, ``RGBA``, ``LA``
and ``PA`` through Pillow's ``convert("L")`` (ITU-R 601-2 luma of the colour,
alpha ignored); 16-bit grayscale (``I;16*``, or ``I`` with values in 0..65535) is
scaled to 8 bits with ``round(v / 257)``, the exact inverse of the usual
8 -> 16 bit widening ``v * 257``. 16-bit colour PNGs (RGB, RGBA, and 16-bit
gray+alpha, which Pillow opens as RGBA) are reduced by Pillow to the high byte
of each sample (``v >> 8``) and then converted like 8-bit colour. Any other mode
is skipped with a reason. The PNG header is checked before Pillow decodes
anything: no PNG signature -> "not a PNG image", IHDR size not 28x28 -> "wrong
size" (so a header claiming 60000x60000 pixels costs nothing).
"""

from __future__ import annotations

import bz2
import collections
import concurrent.futures
import gzip
import io
import lzma
import multiprocessing
import os
import stat
import struct
import sys
import tarfile
import threading
import time
import warnings
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np
from PIL import Image

LETTERS = "ABCDEFGHIJ"
IMAGE_SIZE = 28
PIXEL_DEPTH = 255.0

MAX_MEMBER_BYTES = 1 << 20  # a 28x28 PNG is < 2 KB; anything above 1 MiB is refused unread
# Uncompressed bytes read from one source (tar headers, data, skipped members, trailing bytes).
# notMNIST_large.tar.gz unpacks to a ~0.63 GB tar (529,114 PNGs at ~1.2 KB each with headers).
MAX_TOTAL_BYTES = 4 << 30
MAX_HEADER_BYTES = 1 << 16  # GNU long-name / pax extended header payload (real ones are < 1 KB)
TAIL_READ_BYTES = 1 << 16  # read size when draining the stream after the last member
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHUNK_SIZE = 2048  # members sent to a worker process at once
INFLIGHT_PER_WORKER = 2  # chunks queued per worker (bounds memory while streaming)
MAX_REASON_CHARS = 160
SIXTEEN_BIT_DIVISOR = 257  # 65535 / 255: 16-bit value v -> round(v / 257)
MAX_16BIT = 65535
CONVERTIBLE_MODES = ("1", "P", "RGB", "RGBA", "LA", "PA")
SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

_COMPRESSED_MAGIC = {  # leading bytes -> reader over the raw file (these verify CRCs and notice truncation)
    b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    b"BZh": lambda raw: bz2.BZ2File(raw, mode="rb"),
    b"\xfd7zXZ\x00": lambda raw: lzma.LZMAFile(raw, mode="rb"),
}


class DataError(ValueError):
    """Bad input data: missing file, not a tar archive, no A..J folders, bad pickle, ..."""


@dataclass
class Images:
    """Decoded images of one source, sorted by member name.

    Attributes:
      images: float32 (n, 28, 28), normalized ``(p - 127.5) / 255``.
      labels: int32 (n,), 0..9 for A..J (from the folder name).
      names: member paths (``notMNIST_small/A/xxx.png``), one per image.
      skipped: ``(name, reason)`` for every member that was refused or unreadable.
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)


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


# ----------------------------------------------------------------------------- decoding


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
        return None, f"wrong size {size[0]}x{size[1]} (expected {IMAGE_SIZE}x{IMAGE_SIZE})"
    try:
        with Image.open(io.BytesIO(data), formats=("PNG",)) as im:
            if im.size != (IMAGE_SIZE, IMAGE_SIZE):
                return None, f"wrong size {im.width}x{im.height} (expected {IMAGE_SIZE}x{IMAGE_SIZE})"
            return _to_gray8(im)
    except Image.UnidentifiedImageError:  # it has the PNG signature, so the header after it is broken
        return None, "corrupt PNG (truncated or damaged header)"
    except Exception as e:  # noqa: BLE001 - any failure on untrusted bytes is a skip, not a crash
        return None, _one_line(f"corrupt PNG ({type(e).__name__}: {e})")


def _ihdr_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the IHDR chunk that must follow the PNG signature, or None if absent."""
    if len(data) >= 24 and data[12:16] == b"IHDR":
        return struct.unpack(">II", data[16:24])
    return None


def _to_gray8(im: Image.Image) -> tuple[np.ndarray | None, str]:
    mode = im.mode
    if mode == "L":
        pixels = np.asarray(im)
    elif mode in ("P", "PA"):
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


def _decode_chunk(blobs: list[bytes]) -> tuple[np.ndarray, list[int], list[tuple[int, str]]]:
    """Worker: decodes a list of PNGs -> (uint8 (k,28,28) of the good ones, their indices, (index, reason))."""
    good: list[np.ndarray] = []
    good_idx: list[int] = []
    bad: list[tuple[int, str]] = []
    for i, data in enumerate(blobs):
        pixels, reason = decode_png(data)
        if pixels is None:
            bad.append((i, reason))
        else:
            good.append(pixels)
            good_idx.append(i)
    stacked = np.stack(good) if good else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return stacked, good_idx, bad


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


# ----------------------------------------------------------------------------- member paths


def class_of(name: str) -> tuple[int | None, str]:
    """Label of a member path, or why it is refused.

    Args:
      name: a path inside the archive (``/`` separated).

    Returns:
      ``(label, "")`` for ``L/file`` or ``root/L/file`` with ``L`` in A..J;
      ``(None, reason)`` for unsafe paths or files outside the A..J folders.
    """
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":" and name[0].isalpha()):
        return None, "absolute path refused"
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return None, "path with '..' refused"
    if len(parts) in (2, 3) and parts[-2] in LETTERS and len(parts[-2]) == 1:
        return LETTERS.index(parts[-2]), ""
    return None, "not inside an A..J folder"


def _is_class_dir(name: str) -> bool:
    label, reason = class_of(name.rstrip("/") + "/x")
    return label is not None


# ----------------------------------------------------------------------------- sources


class _Scan:
    """Iterates a source as (name, label, data) for candidates and (name, None, reason) for refusals."""

    def __init__(self, path: Path, max_member_bytes: int, max_total_bytes: int):
        self.path = path
        self.max_member_bytes = max_member_bytes
        self.max_total_bytes = max_total_bytes
        self.found_class_folder = False
        self.total = 1  # progress units (bytes for archives, files for folders)
        self.done = 0

    def __iter__(self) -> Iterator[tuple[str, int | None, bytes | str]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def _too_large(self, size: int) -> str:
        return f"too large ({size} bytes > {self.max_member_bytes} byte limit)"

    def _bomb(self, detail: str) -> DataError:
        return DataError(
            f"{self.path}: {detail} (limit: {self.max_total_bytes:,} uncompressed bytes, max_total_bytes); "
            "refused as a possible decompression bomb"
        )


class _Budget:
    """Read-only file wrapper that counts the (uncompressed) bytes read and stops past ``limit``."""

    def __init__(self, raw, limit: int, scan: _Scan):
        self._raw = raw
        self._limit = limit
        self._scan = scan
        self.count = 0

    def read(self, size: int | None = -1) -> bytes:
        room = self._limit - self.count + 1  # one byte more than allowed shows that the limit is crossed
        if size is None or size < 0 or size > room:
            size = room
        data = self._raw.read(size)
        self.count += len(data)
        if self.count > self._limit:
            raise self._scan._bomb("it unpacks to more bytes than the limit")
        return data


class _SafeTarInfo(tarfile.TarInfo):
    """TarInfo that refuses negative sizes and oversized long-name / pax headers before tarfile reads them.

    (tarfile reads such a header's whole payload into memory; ``_proc_member`` is
    tarfile's documented hook for subclasses.)
    """

    _HEADER_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                     tarfile.SOLARIS_XHDTYPE)

    def _proc_member(self, tarfile_):
        if self.size < 0:
            raise DataError(f"member {_one_line(self.name)!r} has a negative size")
        if self.type in self._HEADER_TYPES and self.size > MAX_HEADER_BYTES:
            raise DataError(f"a long-name/pax header of {self.size:,} bytes (limit {MAX_HEADER_BYTES:,})")
        return super()._proc_member(tarfile_)


class _TarScan(_Scan):
    def __init__(self, path: Path, max_member_bytes: int, max_total_bytes: int):
        super().__init__(path, max_member_bytes, max_total_bytes)
        try:
            size = path.stat().st_size
            self._raw = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as e:
            raise DataError(f"cannot read {path}: {e.strerror or e}") from None
        self.total = max(size, 1)
        if size == 0:
            self.close()
            raise DataError(f"{path} is empty, not a tar archive")
        try:
            magic = self._raw.read(6)
            self._raw.seek(0)
            opener = next((op for m, op in _COMPRESSED_MAGIC.items() if magic.startswith(m)), None)
            self._stream = opener(self._raw) if opener else self._raw
            self._budget = _Budget(self._stream, max_total_bytes, self)
            self._tar = tarfile.open(fileobj=self._budget, mode="r|", tarinfo=_SafeTarInfo)
        except Exception as e:  # noqa: BLE001 - anything tarfile/gzip/bz2/lzma raise on bad bytes
            self.close()
            if isinstance(e, MemoryError) or (isinstance(e, DataError) and self._budget_crossed()):
                raise
            if isinstance(e, DataError):  # a hostile first header (see _SafeTarInfo)
                raise DataError(f"{path} is truncated or corrupt ({_one_line(e)})") from None
            raise DataError(f"{path} is not a tar archive ({_describe(e)})") from None

    def _budget_crossed(self) -> bool:
        budget = getattr(self, "_budget", None)
        return budget is not None and budget.count > self.max_total_bytes

    def __iter__(self) -> Iterator[tuple[str, int | None, bytes | str]]:
        try:
            while (member := self._tar.next()) is not None:
                self._tar.members.clear()  # stream mode keeps every TarInfo otherwise (~0.5 KB each)
                self.done = self._raw.tell()
                if self._tar.offset > self.max_total_bytes:  # its header claims more than the budget: stop now
                    raise self._bomb(f"member {_one_line(member.name)!r} claims {member.size:,} bytes, "
                                     "more than are left of the limit")
                item = self._member(member)
                if item is not None:
                    yield item
            # Read to the end (within the budget) so a truncated or corrupt compressed stream is noticed.
            while self._budget.read(TAIL_READ_BYTES):
                pass
        except DataError as e:
            if self._budget_crossed() or str(e).startswith(f"{self.path}: "):
                raise
            raise DataError(f"{self.path} is truncated or corrupt ({_one_line(e)})") from None
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - tarfile raises ValueError/UnicodeError/... on malformed headers
            raise DataError(f"{self.path} is truncated or corrupt ({_describe(e)})") from None
        self.done = self.total

    def _member(self, member: tarfile.TarInfo) -> tuple[str, int | None, bytes | str] | None:
        name = member.name
        while name.startswith("./"):
            name = name[2:]
        if member.isdir():
            if _is_class_dir(name):
                self.found_class_folder = True
            return None
        label, reason = class_of(name)
        if reason and reason != "not inside an A..J folder":
            return name, None, reason
        if member.issym():
            return name, None, "symbolic link refused"
        if member.islnk():
            return name, None, "hard link refused"
        if member.ischr() or member.isblk() or member.isfifo():
            return name, None, "device or special file refused"
        if not member.isfile() or member.issparse():
            return name, None, "not a regular file"
        if label is None:
            return name, None, reason
        self.found_class_folder = True
        if member.size > self.max_member_bytes:
            return name, None, self._too_large(member.size)
        # In stream mode the tar stream sits at this member's data: read it directly
        # (``extractfile`` does the same through two more layers); ``next()`` skips the padding.
        data = self._tar.fileobj.read(member.size)
        if len(data) != member.size:
            raise EOFError(f"member {name} ends early")
        return name, label, data

    def close(self) -> None:
        for obj in (getattr(self, "_tar", None), getattr(self, "_stream", None), getattr(self, "_raw", None)):
            if obj is not None:
                obj.close()


class _FolderScan(_Scan):
    def __init__(self, path: Path, max_member_bytes: int, max_total_bytes: int):
        super().__init__(path, max_member_bytes, max_total_bytes)
        self._entries: list[tuple[str, int, os.DirEntry]] = []
        try:
            self._class_dirs = self._find_class_dirs(path)
            for rel, label in self._class_dirs:
                with os.scandir(path / rel) as it:
                    self._entries.extend((f"{rel}/{e.name}", label, e) for e in it)
        except OSError as e:
            raise DataError(f"cannot read folder {path}: {e.strerror or e}") from None
        self.found_class_folder = bool(self._class_dirs)
        self._entries.sort(key=lambda t: t[0])
        self.total = max(len(self._entries), 1)
        self._read = 0

    @staticmethod
    def _find_class_dirs(path: Path) -> list[tuple[str, int]]:
        found: list[tuple[str, int]] = []
        for prefix in [""] + sorted(e.name + "/" for e in os.scandir(path) if e.is_dir(follow_symlinks=False)):
            for label, letter in enumerate(LETTERS):
                d = path / (prefix + letter)
                if d.is_dir() and not d.is_symlink():
                    found.append((prefix + letter, label))
            if found and not prefix:
                break  # A..J directly inside: don't look one level down
        return found

    def __iter__(self) -> Iterator[tuple[str, int | None, bytes | str]]:
        for i, (name, label, entry) in enumerate(self._entries):
            self.done = i
            try:
                if entry.is_symlink():
                    yield name, None, "symbolic link refused"
                elif entry.is_dir(follow_symlinks=False):
                    yield name, None, "not inside an A..J folder"
                elif not entry.is_file(follow_symlinks=False):
                    yield name, None, "device or special file refused"
                else:
                    yield self._read_file(name, label, entry.path)
            except OSError as e:
                yield name, None, _one_line(f"unreadable ({e.strerror or e})")
        self.done = self.total

    def _read_file(self, name: str, label: int, path: str) -> tuple[str, int | None, bytes | str]:
        # O_NOFOLLOW | O_NONBLOCK: a file swapped for a link or FIFO after the scan neither redirects nor blocks.
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return name, None, "device or special file refused"
            if st.st_size > self.max_member_bytes:
                return name, None, self._too_large(st.st_size)
            data = f.read(self.max_member_bytes + 1)
        if len(data) > self.max_member_bytes:  # grew after the size check
            return name, None, self._too_large(len(data))
        self._read += len(data)
        if self._read > self.max_total_bytes:
            raise self._bomb("its image files hold more bytes than the limit")
        return name, label, data


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return _one_line(f"{type(e).__name__}: {text}" if text else type(e).__name__)


def _open_source(
    source: str | os.PathLike, max_member_bytes: int = MAX_MEMBER_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES
) -> _Scan:
    path = Path(source)
    if not path.exists():
        raise DataError(f"{path} does not exist")
    if path.is_dir():
        return _FolderScan(path, max_member_bytes, max_total_bytes)
    if not path.is_file():
        raise DataError(f"{path} is not a file or folder")
    return _TarScan(path, max_member_bytes, max_total_bytes)


def check_source(source: str | os.PathLike) -> None:
    """Fails fast on a bad source without reading it all.

    Raises:
      DataError: the path is missing or unreadable, or a file that is not a tar archive.
    """
    _open_source(source).close()


# ----------------------------------------------------------------------------- progress


class ProgressBar:
    """A tiny text progress bar on stderr (redrawn in place on a terminal, one final line otherwise).

    Args:
      total: units of work (bytes, files, ...); progress is ``done / total``.
      label: text in front of the bar.
      unit: name of the counted items shown after the bar.
      stream: where to draw (default ``sys.stderr``).
    """

    WIDTH = 24
    MIN_INTERVAL = 0.2

    def __init__(self, total: float, label: str, unit: str = "images", stream: TextIO | None = None):
        self.total = max(float(total), 1.0)
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self._last = 0.0
        self._line = ""

    def update(self, done: float, count: int | None = None) -> None:
        """Sets progress to ``done`` units; ``count`` items so far (for the rate)."""
        now = time.perf_counter()
        self._line = self._render(done, count, now)
        if self.tty and now - self._last >= self.MIN_INTERVAL:
            self._last = now
            self.stream.write("\r" + self._line)
            self.stream.flush()

    def close(self, count: int | None = None) -> None:
        """Draws the final state and ends the line."""
        self._line = self._render(self.total, count, time.perf_counter())
        self.stream.write(("\r" if self.tty else "") + self._line + "\n")
        self.stream.flush()

    def _render(self, done: float, count: int | None, now: float) -> str:
        frac = min(max(done / self.total, 0.0), 1.0)
        filled = int(round(frac * self.WIDTH))
        text = f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] {100 * frac:3.0f}%"
        if count is not None:
            rate = count / max(now - self.start, 1e-9)
            text += f" {count:,} {self.unit} ({rate:,.0f}/s)"
        return text


# ----------------------------------------------------------------------------- reading


def default_workers() -> int:
    """Number of decoding processes used when ``workers`` is None (``os.cpu_count()``)."""
    return max(os.cpu_count() or 1, 1)


def read_images(
    source: str | os.PathLike,
    workers: int | None = None,
    progress: bool = False,
    chunk_size: int = CHUNK_SIZE,
    *,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Images:
    """Reads every A..J image of an archive or folder.

    The main process streams member bytes (never extracting anything) in chunks of
    ``chunk_size`` to ``workers`` processes that decode them with Pillow; the
    uint8 results are normalized at the end in one vectorized step. Results are
    sorted by member name, so they do not depend on ``workers``, on member
    order, or on tar vs. extracted folder.

    Args:
      source: a ``.tar.gz``/``.tgz``/``.tar`` file (or ``.tar.bz2``/``.tar.xz``),
        or a folder holding the A..J folders directly or one level down
        (``notMNIST_small/A/*.png``). Labels come from the folder names.
      workers: decoding processes (None: ``os.cpu_count()``; 1: decode in this
        process). A source that fits in one chunk is always decoded in-process.
      progress: draw a progress bar on stderr.
      chunk_size: members per work unit.
      max_member_bytes: larger members are skipped unread ("too large").
      max_total_bytes: cap on the uncompressed bytes read from the source
        (decompression bombs); crossing it raises ``DataError``.

    Returns:
      ``Images`` (see its docstring); refused/unreadable members are in ``skipped``.

    Raises:
      DataError: for every problem with the source: missing or unreadable path,
        not a tar archive, truncated or corrupt archive (whatever tarfile, gzip,
        bz2 or lzma raise on it), no A..J folders, more than ``max_total_bytes``
        uncompressed bytes, or an oversized tar header. Bad members never raise.
      ValueError: ``workers``, ``chunk_size``, ``max_member_bytes`` or
        ``max_total_bytes`` < 1 (bad arguments, not bad data).

    Nothing else is raised for any content of ``source`` (short of running out
    of memory); nothing is written anywhere.
    """
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if max_member_bytes < 1 or max_total_bytes < 1:
        raise ValueError(f"max_member_bytes and max_total_bytes must be >= 1, got {max_member_bytes}, "
                         f"{max_total_bytes}")
    scan = _open_source(source, max_member_bytes, max_total_bytes)
    bar = ProgressBar(scan.total, f"decode {Path(source).name}") if progress else None
    pixels: list[np.ndarray] = []
    names: list[str] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []
    executor: concurrent.futures.ProcessPoolExecutor | None = None
    pending: collections.deque = collections.deque()

    def collect(meta: list[tuple[str, int]], result: tuple[np.ndarray, list[int], list[tuple[int, str]]]) -> None:
        stacked, good_idx, bad = result
        pixels.append(stacked)
        names.extend(meta[i][0] for i in good_idx)
        labels.extend(meta[i][1] for i in good_idx)
        skipped.extend((meta[i][0], reason) for i, reason in bad)
        if bar is not None:
            bar.update(scan.done, len(names) + len(skipped))

    try:
        chunks = _chunks(scan, chunk_size, skipped)
        first = next(chunks, None)
        second = next(chunks, None) if first is not None else None
        if second is None or workers == 1:
            for meta, blobs in _prepend(first, second, chunks):
                collect(meta, _decode_chunk(blobs))
        else:
            executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=_mp_context())
            broken = False
            for meta, blobs in _prepend(first, second, chunks):
                if not broken:
                    try:
                        pending.append((meta, blobs, executor.submit(_decode_chunk, blobs)))
                    except BrokenProcessPool:
                        broken = True
                    else:
                        while len(pending) > INFLIGHT_PER_WORKER * workers:
                            broken = _collect_next(pending, collect) or broken
                        continue
                collect(meta, _decode_chunk(blobs))  # the pool died: decode the rest here
            while pending:
                broken = _collect_next(pending, collect) or broken
            if broken:
                warnings.warn("a decoding process died; decoded the rest in this process", RuntimeWarning,
                              stacklevel=2)
    finally:
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        scan.close()
    if not scan.found_class_folder:
        raise DataError(f"no A..J folders found in {source}")
    if bar is not None:
        bar.close(len(names) + len(skipped))

    order = sorted(range(len(names)), key=names.__getitem__)
    index = np.asarray(order, dtype=np.int64)
    # Normalize chunk by chunk straight into the sorted float32 array: no concatenated uint8 copy,
    # and each decoded chunk is freed as soon as it is written (peak ~ the float32 result).
    position = np.empty_like(index)
    position[index] = np.arange(len(index))
    images = np.empty((len(index), IMAGE_SIZE, IMAGE_SIZE), np.float32)
    start = 0
    pixels.reverse()
    while pixels:
        chunk = pixels.pop()
        images[position[start:start + len(chunk)]] = normalize(chunk)
        start += len(chunk)
    return Images(
        images=images,
        labels=np.asarray(labels, dtype=np.int32)[index] if labels else np.zeros(0, np.int32),
        names=[names[i] for i in order],
        skipped=sorted(skipped),
    )


def _collect_next(pending: collections.deque, collect) -> bool:
    """Collects the oldest chunk; if the pool died, decodes it here instead and returns True."""
    meta, blobs, fut = pending.popleft()
    try:
        result = fut.result()
    except BrokenProcessPool:
        collect(meta, _decode_chunk(blobs))
        return True
    collect(meta, result)
    return False


def _mp_context() -> multiprocessing.context.BaseContext:
    """``fork`` when this process runs no other threads (fast, needs no ``__main__`` guard), else ``spawn``.

    Forking a process that runs other threads (TensorFlow's native pools, a
    notebook's) can copy a held lock into the child; ``spawn`` starts clean children.
    """
    threaded = threading.active_count() > 1 or "tensorflow" in sys.modules
    if "fork" in multiprocessing.get_all_start_methods() and not threaded:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _chunks(
    scan: _Scan, chunk_size: int, skipped: list[tuple[str, str]]
) -> Iterator[tuple[list[tuple[str, int]], list[bytes]]]:
    meta: list[tuple[str, int]] = []
    blobs: list[bytes] = []
    for name, label, payload in scan:
        if label is None:
            skipped.append((name, str(payload)))
            continue
        meta.append((name, label))
        blobs.append(payload)  # type: ignore[arg-type]
        if len(blobs) >= chunk_size:
            yield meta, blobs
            meta, blobs = [], []
    if blobs:
        yield meta, blobs


def _prepend(first, second, rest) -> Iterator:
    for item in (first, second):
        if item is not None:
            yield item
    yield from rest
