"""Archive sources: the members of a notMNIST ``.tar.gz`` / ``.tgz`` / ``.tar`` (also ``.tar.bz2`` /
``.tar.xz``) or extracted folder, read safely as ``(name, label, bytes)`` (no decoding; tar headers are
read by ``tarfile``, see ``tar_stream``).

Nothing is ever extracted or written. The source is untrusted input: absolute paths, ``..``
components, links, devices and members over ``max_member_bytes`` (default ``MAX_MEMBER_BYTES``,
1 MiB) are refused unread and yielded as ``(name, None, reason)``; none of them is fatal. Only a
bad *source* raises ``DataError``: a missing or unreadable path, a file that is not a tar archive,
a truncated or corrupt archive, or a decompression bomb: more than ``max_total_bytes`` (default
``MAX_TOTAL_BYTES``, 4 GiB) of uncompressed data, counting skipped members and trailing bytes, or a
GNU long-name / pax header over ``MAX_HEADER_BYTES``. A member whose header claims more bytes than
are left of ``max_total_bytes`` stops the read at once, without decompressing it.
"""

from __future__ import annotations

import bz2
import gzip
import itertools
import lzma
import os
import stat
from pathlib import Path
from typing import Iterator

from dnn_tf.data import tar_stream
from dnn_tf.data.tar_stream import MAX_HEADER_BYTES, TarReader  # noqa: F401 - MAX_HEADER_BYTES: part of this API
from dnn_tf.notmnist import LETTERS, DataError, one_line

MAX_MEMBER_BYTES = 1 << 20  # a 28x28 PNG is < 2 KB; anything above 1 MiB is refused unread
# Uncompressed bytes read from one source (tar headers, data, skipped members, trailing bytes).
# notMNIST_large.tar.gz unpacks to a ~0.63 GB tar (529,114 PNGs at ~1.2 KB each with headers).
MAX_TOTAL_BYTES = 4 << 30
OUTSIDE_CLASSES = "not inside an A..J folder"
CLASS_PATH_DEPTHS = (2, 3)  # "A/x.png" or "root/A/x.png"
PROGRESS_EVERY = 256  # members between updates of a tar scan's progress
FAST_HEADERS = True  # plain tar headers read in bulk (tar_stream.plain_headers); False: every header by tarfile
_KIND_REASONS = {"symbolic link": "symbolic link refused", "hard link": "hard link refused",
                 "device": "device or special file refused", "other": "not a regular file"}

_COMPRESSED_MAGIC = {  # leading bytes -> reader over the raw file (these verify CRCs and notice truncation)
    b"\x1f\x8b": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    b"BZh": lambda raw: bz2.BZ2File(raw, mode="rb"),
    b"\xfd7zXZ\x00": lambda raw: lzma.LZMAFile(raw, mode="rb"),
}
_MAGIC_BYTES = max(len(m) for m in _COMPRESSED_MAGIC)

# What a source yields: (name, label, data) for a candidate image, (name, None, reason) for a refusal.
Member = tuple[str, int | None, bytes | str]


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return one_line(f"{type(e).__name__}: {text}" if text else type(e).__name__)


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
    if len(parts) in CLASS_PATH_DEPTHS and parts[-2] in LETTERS and len(parts[-2]) == 1:
        return LETTERS.index(parts[-2]), ""
    return None, OUTSIDE_CLASSES


def _is_class_dir(name: str) -> bool:
    label, _ = class_of(name.rstrip("/") + "/x")
    return label is not None


# ----------------------------------------------------------------------------- sources


class _Scan:
    """Iterates a source as (name, label, data) for candidates and (name, None, reason) for refusals.

    Attributes:
      found_class_folder: an A..J folder was seen (set while iterating archives).
      total, done: progress in ``unit`` (bytes of the file for archives, files for folders).
    """

    unit = "B"

    def __init__(self, path: Path, max_member_bytes: int, max_total_bytes: int):
        self.path = path
        self.max_member_bytes = max_member_bytes
        self.max_total_bytes = max_total_bytes
        self.found_class_folder = False
        self.total = 1
        self.done = 0

    def __iter__(self) -> Iterator[Member]:
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


class _TarScan(_Scan):
    """A tar file (plain, gzip, bzip2 or xz, told by its magic bytes) read as one stream (``tar_stream``)."""

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
            magic = self._raw.read(_MAGIC_BYTES)
            self._raw.seek(0)
            opener = next((op for m, op in _COMPRESSED_MAGIC.items() if magic.startswith(m)), None)
            self._stream = opener(self._raw) if opener else self._raw
            self._tar = TarReader(self._stream, max_total_bytes,
                                  lambda: self._bomb("it unpacks to more bytes than the limit"))
            self._members = tar_stream.members(self._tar, fast=FAST_HEADERS)
            self._first = next(self._members, None)  # as tarfile.open: a bad first header is "not a tar archive"
        except Exception as e:  # noqa: BLE001 - anything tarfile/gzip/bz2/lzma raise on bad bytes
            self.close()
            if isinstance(e, MemoryError) or (isinstance(e, DataError) and self._budget_crossed()):
                raise
            if isinstance(e, DataError):  # a hostile first header (see tar_stream.TarReader.read)
                raise DataError(f"{path} is truncated or corrupt ({one_line(e)})") from None
            raise DataError(f"{path} is not a tar archive ({_describe(e)})") from None

    def _budget_crossed(self) -> bool:
        tar = getattr(self, "_tar", None)
        return tar is not None and tar.count > self.max_total_bytes

    def __iter__(self) -> Iterator[Member]:
        try:
            members = itertools.chain([self._first], self._members) if self._first is not None else ()
            for count, (member, after) in enumerate(members):
                if count % PROGRESS_EVERY == 0:
                    self.done = self._raw.tell()
                if after is not None and after > self.max_total_bytes:  # it claims more than the budget: stop now
                    raise self._bomb(f"member {one_line(member[0])!r} claims {member[2]:,} bytes, "
                                     "more than are left of the limit")
                item = self._member(*member)
                if item is not None:
                    yield item
            self._tar.drain()
        except DataError as e:
            if self._budget_crossed() or str(e).startswith(f"{self.path}: "):
                raise
            raise DataError(f"{self.path} is truncated or corrupt ({one_line(e)})") from None
        except MemoryError:
            raise
        except Exception as e:  # noqa: BLE001 - tarfile raises ValueError/UnicodeError/... on malformed headers
            raise DataError(f"{self.path} is truncated or corrupt ({_describe(e)})") from None
        self.done = self.total

    def _member(self, name: str, kind: str, size: int, data_at: int) -> Member | None:
        while name.startswith("./"):
            name = name[2:]
        if kind == "dir":
            self.found_class_folder = self.found_class_folder or _is_class_dir(name)
            return None
        label, reason = class_of(name)
        if reason and reason != OUTSIDE_CLASSES:
            return name, None, reason
        if kind != "file" or label is None:
            return name, None, _KIND_REASONS.get(kind, reason)
        self.found_class_folder = True
        if size > self.max_member_bytes:
            return name, None, self._too_large(size)
        data = self._tar.take(data_at, size)
        if len(data) != size:
            raise EOFError(f"member {name} ends early")
        return name, label, data

    def close(self) -> None:
        for obj in (getattr(self, "_stream", None), getattr(self, "_raw", None)):
            if obj is not None:
                obj.close()


class _FolderScan(_Scan):
    """An extracted folder: A..J directly inside, or one level down (``notMNIST_small/A``)."""

    unit = "files"

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

    def __iter__(self) -> Iterator[Member]:
        for i, (name, label, entry) in enumerate(self._entries):
            self.done = i
            try:
                if entry.is_symlink():
                    yield name, None, "symbolic link refused"
                elif entry.is_dir(follow_symlinks=False):
                    yield name, None, OUTSIDE_CLASSES
                elif not entry.is_file(follow_symlinks=False):
                    yield name, None, "device or special file refused"
                else:
                    yield self._read_file(name, label, entry.path)
            except OSError as e:
                yield name, None, one_line(f"unreadable ({e.strerror or e})")
        self.done = self.total

    def _read_file(self, name: str, label: int, path: str) -> Member:
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


def open_source(
    source: str | os.PathLike, max_member_bytes: int = MAX_MEMBER_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES
) -> _Scan:
    """Opens a tar file (plain, .gz, .bz2, .xz) or a folder holding the A..J folders for one pass.

    Larger members than ``max_member_bytes`` are refused unread ("too large"); more than
    ``max_total_bytes`` uncompressed bytes are a decompression bomb. Returns a scan: iterate it for
    ``(name, label, data)`` / ``(name, None, reason)``; it has ``found_class_folder``, ``total``,
    ``done``, ``unit`` and ``close()`` (close it when done).

    Raises:
      DataError: a missing or unreadable path, or a file that is not a tar archive
        (later problems are raised while iterating, also as DataError).
    """
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
    open_source(source).close()
