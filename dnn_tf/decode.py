"""Source -> labelled image arrays: the parallel decode of an archive or folder (numpy + Pillow only).

``read_images`` streams the members of a source (``archive.open_source``) in chunks to a pool of
processes that decode them (``png.decode_png``) and returns them normalized the way the course
did::

    float32 (pixel - 127.5) / 255, shape (n, 28, 28); labels int32 0..9 (A..J)

sorted by member name, so the result does not depend on the number of workers, on member order,
or on tar vs. extracted folder. Nothing is written anywhere. Refused and undecodable members are
listed in ``Images.skipped`` as ``(name, reason)``; only a bad source raises ``DataError``.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np

from dnn_tf import progress as progress_bars
from dnn_tf.archive import MAX_MEMBER_BYTES, MAX_TOTAL_BYTES, Member, open_source
from dnn_tf.notmnist import IMAGE_SIZE, DataError, normalize
from dnn_tf.png import decode_png

CHUNK_SIZE = 2048  # members sent to a worker process at once
INFLIGHT_PER_WORKER = 2  # chunks queued per worker (bounds memory while streaming)

Chunk = tuple[list[tuple[str, int]], list[bytes]]  # ((name, label) per member, their bytes)
Decoded = tuple[np.ndarray, list[int], list[tuple[int, str]]]  # uint8 (k, 28, 28), good indices, (index, reason)


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
    uint8 results are normalized at the end in one vectorized step.

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
    scan = open_source(source, max_member_bytes, max_total_bytes)
    bar = progress_bars.bar(scan.total, f"decode {Path(source).name}", unit=scan.unit, enabled=progress,
                            unit_scale=scan.unit == "B")
    pixels: list[np.ndarray] = []
    names: list[str] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []

    def collect(meta: list[tuple[str, int]], result: Decoded) -> None:
        stacked, good_idx, bad = result
        pixels.append(stacked)
        names.extend(meta[i][0] for i in good_idx)
        labels.extend(meta[i][1] for i in good_idx)
        skipped.extend((meta[i][0], reason) for i, reason in bad)
        advance(scan.done)

    def advance(done: int) -> None:
        bar.set_postfix_str(f"{len(names) + len(skipped):,} images", refresh=False)
        bar.update(done - bar.n)

    try:
        _decode_all(_chunks(scan, chunk_size, skipped), workers, collect)
        if not scan.found_class_folder:
            raise DataError(f"no A..J folders found in {source}")
        advance(scan.total)
    finally:
        bar.close()
        scan.close()
    return _sorted_images(pixels, names, labels, skipped)


def _decode_all(chunks: Iterator[Chunk], workers: int, collect: Callable[[list, Decoded], None]) -> None:
    """Decodes every chunk (in ``workers`` processes when there are two or more chunks) into ``collect``."""
    first = next(chunks, None)
    second = next(chunks, None) if first is not None else None
    if second is None or workers == 1:
        for meta, blobs in _prepend(first, second, chunks):
            collect(meta, _decode_chunk(blobs))
        return
    executor = concurrent.futures.ProcessPoolExecutor(workers, mp_context=_mp_context())
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
                    while len(pending) > INFLIGHT_PER_WORKER * workers:
                        broken = _collect_next(pending, collect) or broken
                    continue
            collect(meta, _decode_chunk(blobs))  # the pool died: decode the rest here
        while pending:
            broken = _collect_next(pending, collect) or broken
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
    if broken:
        warnings.warn("a decoding process died; decoded the rest in this process", RuntimeWarning, stacklevel=3)


def _decode_chunk(blobs: list[bytes]) -> Decoded:
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


def _sorted_images(pixels: list[np.ndarray], names: list[str], labels: list[int],
                   skipped: list[tuple[str, str]]) -> Images:
    """The decoded chunks as one ``Images``, sorted by member name.

    Normalizes chunk by chunk straight into the sorted float32 array: no concatenated
    uint8 copy, and each decoded chunk is freed as soon as it is written (peak ~ the result).
    """
    order = sorted(range(len(names)), key=names.__getitem__)
    index = np.asarray(order, dtype=np.int64)
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
