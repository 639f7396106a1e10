"""Per-class pickles (the course's ``maybe_pickle``): one source -> ``<dir>/A.pickle`` .. ``J.pickle``.

Each pickle holds the float32 (n, 28, 28) images of one letter (the course's format, read by a plain
``pickle.load``); they are decoded as uint8 and written one class at a time. Beside them
``manifest.json`` records the source they came from (``source_fingerprint``: path, size, mtime), its
SHA-256, the images per class, the skipped files and decode statistics. They are reused while the
source is unchanged; existing pickles are always loaded and checked first (one at a time), and a
truncated or corrupt one is rebuilt. Crash safety: the manifest that vouches for the pickles is
deleted before they are rewritten and written (atomically, like them) after them.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

from dnn_tf import files
from dnn_tf.data.decode import Images, Workers, read_images
from dnn_tf.data.safe_pickle import load_pickle
from dnn_tf.notmnist import LETTERS, NUM_CLASSES, DataError, check_images, normalize

SOURCE_MANIFEST = "manifest.json"
CLASS_PICKLES = tuple(f"{letter}.pickle" for letter in LETTERS)
FORMAT_VERSION = 1
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".tar")
MAX_REPORTED_SKIPS = 10_000
MIN_SECONDS = 1e-9  # guards the images/s division
SECONDS_DIGITS, RATE_DIGITS = 3, 1  # decimals kept in the decode statistics

logger = logging.getLogger(__name__)


def archive_stem(source: str | os.PathLike) -> str:
    """``notMNIST_large.tar.gz`` -> ``notMNIST_large`` (a folder keeps its name)."""
    name = Path(os.path.abspath(source)).name
    for suffix in ARCHIVE_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def source_fingerprint(source: str | os.PathLike) -> dict:
    """What identifies a source for reuse: absolute path, size and mtime.

    For a folder: the number, total size and newest mtime of the files in its
    A..J folders (directly or one level down).

    Raises:
      DataError: if the source does not exist.
    """
    path = Path(os.path.abspath(source))
    if not path.exists():
        raise DataError(f"{source} does not exist")
    if not path.is_dir():
        st = path.stat()
        return {"path": str(path), "kind": "archive", "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    count = size = newest = 0
    tops = [path] + sorted(p for p in path.iterdir() if p.is_dir() and not p.is_symlink())
    for top in tops:
        for letter in LETTERS:
            d = top / letter
            if d.is_dir() and not d.is_symlink():
                with os.scandir(d) as it:
                    for e in it:
                        st = e.stat(follow_symlinks=False)
                        count, size, newest = count + 1, size + st.st_size, max(newest, st.st_mtime_ns)
    return {"path": str(path), "kind": "folder", "files": count, "size": size, "mtime_ns": newest}


def maybe_pickle(
    source: str, class_dir: Path, force: bool = False, workers: int = 1, progress: bool = False,
    pool: Workers | None = None,
) -> tuple[list, dict, bool]:
    """Per-class images of ``source``, reused from ``class_dir`` or decoded and written there.

    Args:
      source: archive or folder.
      class_dir: folder of the A..J pickles and ``manifest.json``.
      force: decode again even if the pickles match the source.
      workers: decoding processes (when no ``pool`` is given).
      progress: a progress bar while decoding.
      pool: decoding processes shared with other calls (``decode.Workers``).

    Returns:
      ``(classes A..J, manifest dict, reused?)``. A class has ``len()`` and ``[rows]``: uint8 pixels
      when just decoded, else float32 read from its pickle at each use (so notMNIST_large's 1.7 GB
      of pickles are never all in memory).

    Raises:
      DataError: a bad source (see ``decode.read_images``).
    """
    fingerprint = source_fingerprint(source)
    manifest_path = class_dir / SOURCE_MANIFEST
    manifest = None if force else files.read_json(manifest_path)
    if isinstance(manifest, dict):
        if manifest.get("format") == FORMAT_VERSION and manifest.get("source") == fingerprint:
            try:
                classes = [PickledClass(class_dir / name, manifest["per_class"][letter])
                           for letter, name in zip(LETTERS, CLASS_PICKLES)]
                for cls in classes:
                    cls.load()  # every pickle is checked before it is trusted
                logger.info(f"reusing {class_dir}/A..J.pickle (source unchanged; --force rebuilds)")
                return classes, manifest, True
            except (DataError, KeyError, TypeError) as e:
                logger.info(f"rebuilding {class_dir}: {e}")
        else:
            logger.info(f"rebuilding {class_dir}: {source} changed since the pickles were made")
    if manifest_path.exists():
        manifest_path.unlink()  # a crash while rewriting must not leave an old manifest vouching for new files

    logger.info(f"decoding {source} with {workers} worker{'s' if workers != 1 else ''}")
    start = time.perf_counter()
    images: Images = read_images(source, workers=workers, progress=progress, normalized=False, pool=pool)
    seconds = time.perf_counter() - start
    classes = [DecodedClass(images, c) for c in range(NUM_CLASSES)]
    for name, cls in zip(CLASS_PICKLES, classes):
        files.save_pickle(class_dir / name, normalize(cls[:]))
    manifest = _manifest(source, fingerprint, classes, images, seconds, workers)
    files.write_json(manifest_path, manifest)
    logger.info(
        f"decoded {manifest['images']:,} images ({len(images.skipped)} skipped) in {seconds:.1f} s "
        f"= {manifest['decode']['images_per_second']:,.0f} images/s; wrote {class_dir}/A..J.pickle"
    )
    return classes, manifest, False


class DecodedClass:
    """One class of a source just decoded: ``len()``, and ``[rows]`` -> uint8 pixels (in member-name order)."""

    def __init__(self, images: Images, label: int):
        self._images, self._rows = images, images.class_rows(label)

    def __len__(self) -> int:
        return len(self._rows)

    def __getitem__(self, rows) -> np.ndarray:
        return self._images.take(self._rows[rows])


class PickledClass:
    """One class in its pickle: ``len()`` (the manifest's count), and ``[rows]`` -> float32, loaded and checked."""

    def __init__(self, path: Path, count: int):
        self._path, self._count = path, count

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, rows) -> np.ndarray:
        return self.load()[rows]

    def load(self) -> np.ndarray:
        """The whole class. Raises DataError: a missing, corrupt or wrong pickle."""
        arr = load_pickle(self._path)
        check_images(self._path.name, arr)
        if len(arr) != self._count:
            raise DataError(f"{self._path.name} has {len(arr)} images, manifest says {self._count}")
        return arr


def _manifest(source: str, fingerprint: dict, classes: list, images: Images, seconds: float, workers: int) -> dict:
    attempted = len(images.names) + len(images.skipped)
    return {
        "format": FORMAT_VERSION,
        "source": fingerprint,
        "sha256": None if os.path.isdir(source) else files.sha256_file(source),
        "per_class": {letter: len(cls) for letter, cls in zip(LETTERS, classes)},
        "images": int(sum(len(cls) for cls in classes)),
        "skipped_count": len(images.skipped),
        "skipped": [[n, r] for n, r in images.skipped[:MAX_REPORTED_SKIPS]],
        "decode": decode_stats(attempted, seconds, workers),
    }


def decode_stats(members: int, seconds: float, workers: int) -> dict:
    """The ``decode`` entry of a manifest or report: members read, seconds, images per second, workers."""
    return {"members": members, "seconds": round(seconds, SECONDS_DIGITS),
            "images_per_second": round(members / max(seconds, MIN_SECONDS), RATE_DIGITS), "workers": workers}
