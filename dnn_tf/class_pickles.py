"""Per-class pickles (the course's ``maybe_pickle``): one source -> ``<dir>/A.pickle`` .. ``J.pickle``.

Each pickle holds the float32 (n, 28, 28) images of one letter (the course's format); beside
them ``manifest.json`` records the source they came from (``source_fingerprint``: path, size,
mtime), its SHA-256, the images per class, the skipped files and decode statistics. They are
reused while the source is unchanged; existing pickles are always loaded and checked first, and a
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
from dnn_tf.dataset import check_images, load_pickle
from dnn_tf.decode import Images, read_images
from dnn_tf.notmnist import IMAGE_SIZE, LETTERS, NUM_CLASSES, DataError

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
    source: str, class_dir: Path, force: bool = False, workers: int = 1, progress: bool = False
) -> tuple[list[np.ndarray], dict, bool]:
    """Per-class arrays of ``source``, reused from ``class_dir`` or decoded and written there.

    Args:
      source: archive or folder.
      class_dir: folder of the A..J pickles and ``manifest.json``.
      force: decode again even if the pickles match the source.
      workers: decoding processes.
      progress: a progress bar while decoding.

    Returns:
      ``(arrays A..J, manifest dict, reused?)``.

    Raises:
      DataError: a bad source (see ``decode.read_images``).
    """
    fingerprint = source_fingerprint(source)
    manifest_path = class_dir / SOURCE_MANIFEST
    manifest = None if force else files.read_json(manifest_path)
    if isinstance(manifest, dict):
        if manifest.get("format") == FORMAT_VERSION and manifest.get("source") == fingerprint:
            try:
                arrays = _load(class_dir, manifest)
                logger.info(f"reusing {class_dir}/A..J.pickle (source unchanged; --force rebuilds)")
                return arrays, manifest, True
            except (DataError, KeyError, TypeError) as e:
                logger.info(f"rebuilding {class_dir}: {e}")
        else:
            logger.info(f"rebuilding {class_dir}: {source} changed since the pickles were made")
    if manifest_path.exists():
        manifest_path.unlink()  # a crash while rewriting must not leave an old manifest vouching for new files

    logger.info(f"decoding {source} with {workers} worker{'s' if workers != 1 else ''}")
    start = time.perf_counter()
    images: Images = read_images(source, workers=workers, progress=progress)
    seconds = time.perf_counter() - start
    arrays = [np.ascontiguousarray(images.images[images.labels == c]) for c in range(NUM_CLASSES)]
    images.images = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32)  # free the big array early
    for name, arr in zip(CLASS_PICKLES, arrays):
        files.save_pickle(class_dir / name, arr)
    manifest = _manifest(source, fingerprint, arrays, images, seconds, workers)
    files.write_json(manifest_path, manifest)
    logger.info(
        f"decoded {manifest['images']:,} images ({len(images.skipped)} skipped) in {seconds:.1f} s "
        f"= {manifest['decode']['images_per_second']:,.0f} images/s; wrote {class_dir}/A..J.pickle"
    )
    return arrays, manifest, False


def _load(class_dir: Path, manifest: dict) -> list[np.ndarray]:
    """Loads and checks A.pickle..J.pickle against ``manifest``; DataError on any mismatch."""
    arrays = []
    for letter, name in zip(LETTERS, CLASS_PICKLES):
        arr = load_pickle(class_dir / name)
        check_images(name, arr)
        expected = manifest["per_class"][letter]
        if len(arr) != expected:
            raise DataError(f"{name} has {len(arr)} images, manifest says {expected}")
        arrays.append(arr)
    return arrays


def _manifest(source: str, fingerprint: dict, arrays: list[np.ndarray], images: Images, seconds: float,
              workers: int) -> dict:
    attempted = len(images.names) + len(images.skipped)
    return {
        "format": FORMAT_VERSION,
        "source": fingerprint,
        "sha256": None if os.path.isdir(source) else files.sha256_file(source),
        "per_class": {letter: len(arr) for letter, arr in zip(LETTERS, arrays)},
        "images": int(sum(len(a) for a in arrays)),
        "skipped_count": len(images.skipped),
        "skipped": [[n, r] for n, r in images.skipped[:MAX_REPORTED_SKIPS]],
        "decode": decode_stats(attempted, seconds, workers),
    }


def decode_stats(members: int, seconds: float, workers: int) -> dict:
    """The ``decode`` entry of a manifest or report: members read, seconds, images per second, workers."""
    return {"members": members, "seconds": round(seconds, SECONDS_DIGITS),
            "images_per_second": round(members / max(seconds, MIN_SECONDS), RATE_DIGITS), "workers": workers}
