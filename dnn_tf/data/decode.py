"""Source -> labelled image arrays: the parallel decode of an archive or folder (numpy + Pillow only).

``read_images`` streams the members of a source (``archive.open_source``) in chunks to a pool of
processes that decode them (``png.decode_png``) and returns them sorted by member name, so the
result does not depend on the number of workers, on member order, or on tar vs. extracted folder,
normalized the way the course did (or as raw uint8 pixels with ``normalized=False``)::

    float32 (pixel - 127.5) / 255, shape (n, 28, 28); labels int32 0..9 (A..J)

The decoded pixels are kept as uint8 in blocks (``Images``): one class or any rows can be taken
without building the whole array, which ``Images.images`` builds on first use. Nothing is written
anywhere. Refused and undecodable members are listed in ``Images.skipped`` as ``(name, reason)``;
only a bad source raises ``DataError``.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing
import os
import sys
import threading
import warnings
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from dnn_tf import progress as progress_bars
from dnn_tf.data.archive import MAX_MEMBER_BYTES, MAX_TOTAL_BYTES, Member, open_source
from dnn_tf.data.png import decode_pngs
from dnn_tf.notmnist import IMAGE_SIZE, DataError, normalize

CHUNK_SIZE = 2048  # members sent to a worker process at once
INFLIGHT_PER_WORKER = 2  # chunks queued per worker (bounds memory while streaming)
FIRST_BLOCK_ROWS = 1 << 10  # decoded images in the first storage block (0.8 MB of uint8) ...
MAX_BLOCK_ROWS = 1 << 16  # ... doubling up to this many (51 MB, above glibc's largest mmap threshold)
NORMALIZE_ROWS = 1 << 11  # images normalized at a time when building Images.images (small temporaries)

Chunk = tuple[list[tuple[str, int]], list[bytes]]  # ((name, label) per member, their bytes)
Decoded = tuple[np.ndarray, list[int], list[tuple[int, str]]]  # uint8 (k, 28, 28), good indices, (index, reason)


class _Blocks:
    """uint8 images appended in arrival order, in blocks that double from ``FIRST_BLOCK_ROWS`` to
    ``MAX_BLOCK_ROWS`` images: no array is ever regrown, a small source takes little memory, and the
    large blocks are big enough to be mapped on their own (freed, they go back to the system)."""

    def __init__(self):
        self.blocks: list[np.ndarray] = []
        self.starts: list[int] = []  # index of each block's first image
        self.n = 0

    def append(self, images: np.ndarray) -> None:
        done = 0
        while done < len(images):
            if not self.blocks or self.n == self.starts[-1] + len(self.blocks[-1]):
                rows = min(2 * len(self.blocks[-1]), MAX_BLOCK_ROWS) if self.blocks else FIRST_BLOCK_ROWS
                self.blocks.append(np.empty((rows, IMAGE_SIZE, IMAGE_SIZE), np.uint8))
                self.starts.append(self.n)
            at = self.n - self.starts[-1]
            k = min(len(images) - done, len(self.blocks[-1]) - at)
            self.blocks[-1][at:at + k] = images[done:done + k]
            done, self.n = done + k, self.n + k

    def gather(self, index: np.ndarray) -> np.ndarray:
        """The images at arrival positions ``index``, as one new uint8 array."""
        index = np.asarray(index, np.int64)
        out = np.empty((len(index), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        block = np.searchsorted(self.starts, index, side="right") - 1
        for b in np.unique(block):
            take = block == b
            out[take] = self.blocks[b][index[take] - self.starts[b]]
        return out


class Images:
    """Decoded images of one source, sorted by member name.

    Attributes:
      labels: int32 (n,), 0..9 for A..J (from the folder name).
      names: member paths (``notMNIST_small/A/xxx.png``), one per image.
      skipped: ``(name, reason)`` for every member that was refused or unreadable.
      normalized: whether ``images`` is float32 ``(p - 127.5) / 255`` (else uint8 pixels).
    """

    def __init__(self, store: _Blocks, order: np.ndarray, labels: np.ndarray, names: list[str],
                 skipped: list[tuple[str, str]], normalized: bool = True):
        self._store, self._order, self._images = store, order, None
        self.labels, self.names, self.skipped, self.normalized = labels, names, skipped, normalized

    def take(self, rows: np.ndarray) -> np.ndarray:
        """uint8 pixels of the images at ``rows`` (positions in name order), a new array."""
        return self._store.gather(self._order[rows])

    def class_rows(self, label: int) -> np.ndarray:
        """Positions (in name order) of the images of class ``label``: ``take(class_rows(c))`` is class c."""
        return np.flatnonzero(self.labels == label)

    @property
    def images(self) -> np.ndarray:
        """(n, 28, 28): float32 normalized, or uint8 pixels if not ``normalized`` (built on first use)."""
        if self._images is None:
            out = np.empty((len(self.labels), IMAGE_SIZE, IMAGE_SIZE), np.float32 if self.normalized else np.uint8)
            for start in range(0, len(out), NORMALIZE_ROWS):
                pixels = self.take(np.arange(start, min(start + NORMALIZE_ROWS, len(out))))
                out[start:start + len(pixels)] = normalize(pixels) if self.normalized else pixels
            self._images = out
        return self._images


class Workers:
    """Decoding processes that several ``read_images`` calls share (``with Workers(n) as pool: ...``).

    They start at the first chunk that needs them and are forked (see ``_mp_context``) then, so
    starting them before a caller holds large arrays keeps those out of the workers' memory.
    """

    def __init__(self, workers: int | None = None):
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        self._executor: concurrent.futures.ProcessPoolExecutor | None = None

    def executor(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._executor is None:
            self._executor = concurrent.futures.ProcessPoolExecutor(self.workers, mp_context=_mp_context())
        return self._executor

    def discard(self) -> None:
        """Shuts the processes down (a pool that broke is replaced at the next use)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def default_workers() -> int:
    """Number of decoding processes used when ``workers`` is None (``os.cpu_count()``)."""
    return max(os.cpu_count() or 1, 1)


def read_images(
    source: str | os.PathLike,
    workers: int | None = None,
    progress: bool = False,
    chunk_size: int = CHUNK_SIZE,
    *,
    normalized: bool = True,
    pool: Workers | None = None,
    max_member_bytes: int = MAX_MEMBER_BYTES,
    max_total_bytes: int = MAX_TOTAL_BYTES,
) -> Images:
    """Reads every A..J image of an archive or folder.

    The main process streams member bytes (never extracting anything) in chunks of
    ``chunk_size`` to ``workers`` processes that decode them with Pillow into uint8.

    Args:
      source: a ``.tar.gz``/``.tgz``/``.tar`` file (or ``.tar.bz2``/``.tar.xz``),
        or a folder holding the A..J folders directly or one level down
        (``notMNIST_small/A/*.png``). Labels come from the folder names.
      workers: decoding processes (None: ``os.cpu_count()``; 1: decode in this
        process). A source that fits in one chunk is always decoded in-process.
      progress: draw a progress bar on stderr.
      chunk_size: members per work unit.
      normalized: ``Images.images`` as float32 ``(p - 127.5) / 255`` (False: uint8 pixels).
      pool: decoding processes to use (``Workers``; then ``workers`` is ignored).
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
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    if max_member_bytes < 1 or max_total_bytes < 1:
        raise ValueError(f"max_member_bytes and max_total_bytes must be >= 1, got {max_member_bytes}, "
                         f"{max_total_bytes}")
    own_pool = pool is None
    pool = Workers(workers) if own_pool else pool
    try:
        return _read(source, pool, progress, chunk_size, normalized, max_member_bytes, max_total_bytes)
    finally:
        if own_pool:
            pool.discard()


def _read(source, pool: Workers, progress: bool, chunk_size: int, normalized: bool, max_member_bytes: int,
          max_total_bytes: int) -> Images:
    scan = open_source(source, max_member_bytes, max_total_bytes)
    bar = progress_bars.bar(scan.total, f"decode {Path(source).name}", unit=scan.unit, enabled=progress,
                            unit_scale=scan.unit == "B")
    store = _Blocks()
    names: list[str] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []

    def collect(meta: list[tuple[str, int]], result: Decoded) -> None:
        stacked, good_idx, bad = result
        store.append(stacked)
        names.extend(meta[i][0] for i in good_idx)
        labels.extend(meta[i][1] for i in good_idx)
        skipped.extend((meta[i][0], reason) for i, reason in bad)
        advance(scan.done)

    def advance(done: int) -> None:
        bar.set_postfix_str(f"{len(names) + len(skipped):,} images", refresh=False)
        bar.update(done - bar.n)

    try:
        _decode_all(_chunks(scan, chunk_size, skipped), pool, collect)
        if not scan.found_class_folder:
            raise DataError(f"no A..J folders found in {source}")
        advance(scan.total)
    finally:
        bar.close()
        scan.close()
    order = np.asarray(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64)
    sorted_labels = np.asarray(labels, dtype=np.int32)[order] if labels else np.zeros(0, np.int32)
    return Images(store, order, sorted_labels, [names[i] for i in order], sorted(skipped), normalized)


def _decode_all(chunks: Iterator[Chunk], pool: Workers, collect: Callable[[list, Decoded], None]) -> None:
    """Decodes every chunk (in the pool's processes when there are two or more chunks) into ``collect``."""
    first = next(chunks, None)
    second = next(chunks, None) if first is not None else None
    if second is None or pool.workers == 1:
        for meta, blobs in _prepend(first, second, chunks):
            collect(meta, _decode_chunk(blobs))
        return
    executor = pool.executor()
    pending: collections.deque = collections.deque()
    broken = False
    try:
        for meta, blobs in _prepend(first, second, chunks):
            if not broken:
                try:
                    pending.append((meta, blobs, executor.submit(_decode_chunk, blobs)))
                except BrokenProcessPool:
                    broken = True
                else:
                    while len(pending) > INFLIGHT_PER_WORKER * pool.workers:
                        broken = _collect_next(pending, collect) or broken
                    continue
            collect(meta, _decode_chunk(blobs))  # the pool died: decode the rest here
        while pending:
            broken = _collect_next(pending, collect) or broken
    except BaseException:
        pool.discard()  # do not leave queued chunks decoding for nobody
        raise
    if broken:
        pool.discard()
        warnings.warn("a decoding process died; decoded the rest in this process", RuntimeWarning, stacklevel=4)


def _decode_chunk(blobs: list[bytes]) -> Decoded:
    """Worker: decodes a list of PNGs -> (uint8 (k,28,28) of the good ones, their indices, (index, reason))."""
    return decode_pngs(blobs)


def _collect_next(pending: collections.deque, collect: Callable[[list, Decoded], None]) -> bool:
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
    (``progress`` turns tqdm's monitor thread off, so a progress bar does not count.)
    """
    threaded = threading.active_count() > 1 or "tensorflow" in sys.modules
    if "fork" in multiprocessing.get_all_start_methods() and not threaded:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def _chunks(scan: Iterable[Member], chunk_size: int, skipped: list[tuple[str, str]]) -> Iterator[Chunk]:
    """Groups the candidate members of ``scan`` into chunks; refusals go straight to ``skipped``."""
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
