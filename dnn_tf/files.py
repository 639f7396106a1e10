"""File plumbing every stage shares: atomic writes, JSON, SHA-256 and an exclusive lock.

Atomic: a crash or Ctrl-C leaves the old file or the new one, never half of one
(write a temporary file in the same folder, fsync, rename).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import shutil
import tempfile
from typing import Any, Callable, Iterator

try:  # POSIX advisory locks; elsewhere locking is skipped
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

HASH_BLOCK = 1 << 20  # bytes read at a time while hashing
PICKLE_PROTOCOL = 5  # see save_pickle (Python 3.8+ reads it with a plain pickle.load)
WRITE_BLOCK = 32 << 20  # bytes of a pickle written between syncs (see _Synced)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """Yields a temporary path next to ``path``; renames it onto ``path`` on success.

    Args:
      path: the final file path.

    Yields:
      A temporary file path in the same folder (so the rename is atomic).
      On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual mode
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    fsync_dir(folder)


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[str]:
    """Yields a new empty folder next to ``path``; on success it replaces ``path`` by a rename.

    An old folder at ``path`` is moved aside first and removed after, so a reader finds the old
    folder or the new one, never a mix. On an exception the new folder is removed and ``path``
    is untouched.
    """
    path = os.path.abspath(os.fspath(path))
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".", dir=parent)
    old = None
    try:
        yield tmp
        if os.path.exists(path):
            old = tempfile.mkdtemp(prefix="." + os.path.basename(path) + ".old.", dir=parent)
            os.rmdir(old)
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    fsync_dir(parent)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def fsync_dir(folder: str | os.PathLike) -> None:
    """Makes a rename into ``folder`` durable (POSIX); a no-op where folders cannot be opened or synced."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Writes ``obj`` as indented JSON to ``path`` atomically (numpy values become plain ones)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value in ``path``, or None when the file is missing, unreadable or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def save_pickle(path: str | os.PathLike, obj: Any) -> None:
    """Pickles ``obj`` (an array, or a dict of arrays) to ``path`` atomically, for a plain ``pickle.load``.

    Protocol 5 writes an array's buffer as it is, where protocol 4 first copies it into a bytes
    object: 166 MB more per notMNIST_large class, 627 MB for the course's train_dataset. The file
    is synced and dropped from the page cache every ``WRITE_BLOCK`` bytes (``_Synced``): nothing
    reads it back in the same run, and prepare writes 2.4 GB.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        synced = _Synced(f)
        pickle.dump(obj, synced, protocol=PICKLE_PROTOCOL)
        synced.sync()


class _Synced:
    """A file for ``pickle.dump`` that syncs every ``WRITE_BLOCK`` bytes and drops them from the page cache.

    So the page cache holds at most a block of the file: its pages are reused from block to block
    instead of taking fresh memory for every byte written (slow on a virtual machine whose host backs
    guest memory lazily), and the final sync has little left to wait for.
    """

    def __init__(self, f):
        self._f, self._fd, self._written, self._synced = f, f.fileno(), 0, 0

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        for start in range(0, len(view), WRITE_BLOCK):
            self._written += self._f.write(view[start:start + WRITE_BLOCK])
            if self._written - self._synced >= WRITE_BLOCK:
                self.sync()
        return len(view)

    def sync(self) -> None:
        self._f.flush()
        getattr(os, "fdatasync", os.fsync)(self._fd)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(self._fd, self._synced, self._written - self._synced, os.POSIX_FADV_DONTNEED)
        self._synced = self._written


def sha256_file(path: str | os.PathLike) -> str:
    """The hex SHA-256 digest of a file (64 lowercase characters), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def exclusive_lock(fd: int, busy: Callable[[], Exception]) -> Iterator[bool]:
    """Holds a non-blocking exclusive ``flock`` on the open file ``fd`` (released on exit or death).

    Args:
      fd: an open file descriptor.
      busy: makes the exception raised when another process holds the lock.

    Yields:
      True when the lock is held, False where the platform or filesystem has no locks.

    Raises:
      What ``busy()`` returns, when another process holds the lock.
    """
    locked = False
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked = True
        except BlockingIOError:
            raise busy() from None
        except OSError:
            pass  # a filesystem without locks: go on unlocked
    try:
        yield locked
    finally:
        if locked:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")
