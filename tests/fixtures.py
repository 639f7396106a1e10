"""Small synthetic notMNIST stand-ins for tests (importable as ``from fixtures import ...``).

* ``make_glyph_images(per_class, seed)``: uint8 (n, 28, 28) glyphs of the letters
  A..J rendered with matplotlib's bundled DejaVu fonts, all distinct.
* ``make_fixture_archive(path, ...)``: a ``.tar.gz`` laid out like the real
  archives (``root/A/*.png`` ...), members shuffled, plus planted bad members.
* ``make_fixture_folder(path, ...)``: the same files extracted into a folder.
* ``make_dataset(...)``: a ready dict with the course keys (what
  ``notMNIST.pickle`` holds), for training/report tests.
* ``make_stripes_dataset(...)``: course keys holding float "stripe" images that
  a tiny net learns in a few steps, for training-loop tests.

Everything is deterministic in ``seed`` and fast (``per_class=20`` builds in
well under a second).
"""

from __future__ import annotations

import functools
import io
import os
import tarfile
from pathlib import Path

import numpy as np
from matplotlib import font_manager
from matplotlib.ft2font import FT2Font
from PIL import Image

from dnn_tf.data.archive import MAX_MEMBER_BYTES
from dnn_tf.notmnist import IMAGE_SIZE, LETTERS, normalize

# The keys of metrics.json (TrainResult.to_dict()).
RESULT_KEYS = frozenset({"name", "config", "history", "valid_accuracy", "test_accuracy", "valid_sanitized_accuracy",
                         "test_sanitized_accuracy", "steps", "train_examples", "seconds", "device"})
FONT_FAMILIES = (
    ("DejaVu Sans", "normal", "normal"),
    ("DejaVu Sans", "normal", "bold"),
    ("DejaVu Sans", "italic", "normal"),
    ("DejaVu Serif", "normal", "normal"),
    ("DejaVu Serif", "normal", "bold"),
    ("DejaVu Sans Mono", "normal", "normal"),
)
SIZE_RANGE = (13.0, 21.0)  # glyph size in pixels (points at 72 dpi)
ANGLE_RANGE = (-12.0, 12.0)  # degrees
INTENSITY_RANGE = (150, 256)  # peak gray value of the glyph

# Planted bad members: name suffix (under root) -> a word the skip reason must contain.
BAD_ARCHIVE_MEMBERS = {
    "A/corrupt.png": "corrupt",
    "B/empty.png": "empty",
    "C/readme.txt": "not a PNG",
    "D/big32.png": "wrong size",
    "A/../../evil.png": "'..'",
    "E/link.png": "symbolic link",
    "F/hard.png": "hard link",
    "G/device.png": "device",
    "H/huge.png": "too large",
    "README.txt": "not inside",
}
ABSOLUTE_MEMBER = "/tmp/evil-absolute.png"  # planted too, reason "absolute"
BAD_FOLDER_FILES = {
    "A/corrupt.png": "corrupt",
    "B/empty.png": "empty",
    "C/readme.txt": "not a PNG",
    "D/big32.png": "wrong size",
    "E/link.png": "symbolic link",
    "G/fifo.png": "device",
    "H/huge.png": "too large",
}


@functools.lru_cache(maxsize=None)
def _font(index: int) -> FT2Font:
    family, style, weight = FONT_FAMILIES[index]
    prop = font_manager.FontProperties(family=family, style=style, weight=weight)
    return FT2Font(font_manager.findfont(prop, fallback_to_default=True))


def _render(letter: str, rng: np.random.Generator) -> np.ndarray:
    font = _font(int(rng.integers(len(FONT_FAMILIES))))
    font.set_size(float(rng.uniform(*SIZE_RANGE)), 72)
    font.set_text(letter, angle=float(rng.uniform(*ANGLE_RANGE)))
    font.draw_glyphs_to_bitmap(antialiased=True)
    glyph = np.asarray(font.get_image())[:IMAGE_SIZE, :IMAGE_SIZE]
    h, w = glyph.shape
    canvas = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    top = int(rng.integers(0, IMAGE_SIZE - h + 1))
    left = int(rng.integers(0, IMAGE_SIZE - w + 1))
    peak = int(rng.integers(*INTENSITY_RANGE))
    canvas[top : top + h, left : left + w] = (glyph.astype(np.uint16) * peak // 255).astype(np.uint8)
    return canvas


def make_glyph_images(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Renders ``per_class`` distinct images of each letter A..J.

    Font (DejaVu Sans/Serif/Mono, regular/bold/italic), size, rotation, position
    and brightness vary with ``seed``; no two returned images are identical.

    Args:
      per_class: images per letter.
      seed: random seed.

    Returns:
      ``(images, labels)``: uint8 (10 * per_class, 28, 28), class-major (all A's,
      then all B's, ...), and int32 labels 0..9.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((len(LETTERS) * per_class, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    seen: set[bytes] = set()
    for c, letter in enumerate(LETTERS):
        for i in range(per_class):
            while True:
                img = _render(letter, rng)
                if img.tobytes() not in seen and img.any():
                    break
            seen.add(img.tobytes())
            images[c * per_class + i] = img
    labels = np.repeat(np.arange(len(LETTERS), dtype=np.int32), per_class)
    return images, labels


def png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    """Encodes a uint8/uint16 array as PNG bytes (``mode`` converts first, e.g. ``"RGB"``)."""
    im = Image.fromarray(np.asarray(pixels))
    if mode is not None:
        im = im.convert(mode)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _plan(per_class, duplicates, root, seed, images, labels):
    """Good members (name, pixels) and planted duplicates for the archive/folder builders."""
    if images is None:
        images, labels = make_glyph_images(per_class, seed)
    images = np.asarray(images, np.uint8)
    labels = np.asarray(labels, np.int32)
    prefix = f"{root}/" if root else ""
    members: list[tuple[str, np.ndarray]] = []
    by_class: list[list[int]] = [[] for _ in LETTERS]
    for img, lab in zip(images, labels):
        letter = LETTERS[int(lab)]
        name = f"{prefix}{letter}/{letter.lower()}{len(by_class[lab]):05d}-s{seed}.png"
        by_class[lab].append(len(members))
        members.append((name, img))
    planted: list[tuple[str, str]] = []
    for j in range(duplicates):
        c = j % len(LETTERS)
        original = members[by_class[c][j // len(LETTERS)]]
        copy_name = f"{prefix}{LETTERS[c]}/dup{j:05d}-s{seed}.png"
        members.append((copy_name, original[1]))
        planted.append((copy_name, original[0]))
    return members, planted


def _summary(path, root, members, planted, bad) -> dict:
    members = sorted(members, key=lambda m: m[0])
    names = [m[0] for m in members]
    labels = np.array([LETTERS.index(n.split("/")[-2]) for n in names], np.int32)
    return {
        "path": str(path),
        "root": root,
        "names": names,
        "images": np.stack([m[1] for m in members]),
        "labels": labels,
        "per_class": [int((labels == c).sum()) for c in range(len(LETTERS))],
        "duplicates": planted,
        "bad": bad,
    }


def make_fixture_archive(
    path: str | os.PathLike,
    per_class: int = 20,
    extra_bad: bool = True,
    duplicates: int = 0,
    root: str = "notMNIST_small",
    seed: int = 0,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict:
    """Writes a notMNIST-like ``.tar.gz`` (or ``.tar`` if ``path`` ends so).

    Layout ``root/A/*.png`` ... ``root/J/*.png`` with directory entries; members are
    shuffled (not grouped by folder), like the real archives.

    Args:
      path: archive to write.
      per_class: glyphs per letter (ignored when ``images`` is given).
      extra_bad: also plant the members of ``BAD_ARCHIVE_MEMBERS`` (corrupt PNG,
        empty file, non-image, 32x32 PNG, ``root/A/../../evil.png``, symlink,
        hard link, device, > 1 MiB member, file outside A..J) and ``ABSOLUTE_MEMBER``.
      duplicates: number of extra exact copies; copy ``j`` goes to class ``j % 10``
        and repeats that class's image ``j // 10``.
      root: top folder inside the archive ("" for ``A/*.png`` at the top).
      seed: glyph and member-order seed.
      images, labels: use these uint8 images / int labels instead of rendering.

    Returns:
      dict with ``path``; ``names``, ``images`` (uint8), ``labels`` (int32) of the
      good members sorted by name (``read_images`` order); ``per_class`` counts;
      ``duplicates`` as ``(copy_name, original_name)``; ``bad``: planted
      ``{member name: word expected in the skip reason}``.
    """
    prefix = f"{root}/" if root else ""
    members, planted = _plan(per_class, duplicates, root, seed, images, labels)
    rng = np.random.default_rng(seed + 1)
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for name, pixels in members:
        entries.append(_file_info(name, png_bytes(pixels)))
    bad: dict[str, str] = {}
    if extra_bad:
        glyph = members[0][1]
        for suffix, word in BAD_ARCHIVE_MEMBERS.items():
            name = prefix + suffix
            bad[name] = word
            entries.append(_bad_member(name, suffix, glyph, members[0][0]))
        bad[ABSOLUTE_MEMBER] = "absolute"
        entries.append(_file_info(ABSOLUTE_MEMBER, png_bytes(glyph)))
    order = rng.permutation(len(entries))
    dirs = ([root] if root else []) + [prefix + letter for letter in LETTERS]
    mode = "w:gz" if not str(path).endswith(".tar") else "w"
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tar:
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for k in order:
            info, data = entries[k]
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return _summary(path, root, members, planted, bad)


def _file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


def _bad_member(name: str, suffix: str, glyph: np.ndarray, target: str) -> tuple[tarfile.TarInfo, bytes | None]:
    good = png_bytes(glyph)
    if suffix.endswith("corrupt.png"):
        return _file_info(name, good[: len(good) // 2])
    if suffix.endswith("empty.png"):
        return _file_info(name, b"")
    if suffix.endswith(".txt"):
        return _file_info(name, b"this is not an image\n")
    if suffix.endswith("big32.png"):
        return _file_info(name, png_bytes(np.full((32, 32), 200, np.uint8)))
    if suffix.endswith("evil.png"):
        return _file_info(name, good)
    info = tarfile.TarInfo(name)
    if suffix.endswith("link.png"):
        info.type, info.linkname = tarfile.SYMTYPE, "../A/" + target.split("/")[-1]
    elif suffix.endswith("hard.png"):
        info.type, info.linkname = tarfile.LNKTYPE, target
    elif suffix.endswith("device.png"):
        info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    elif suffix.endswith("huge.png"):
        return _file_info(name, bytes(MAX_MEMBER_BYTES + 1))
    return info, None


def make_fixture_folder(
    path: str | os.PathLike,
    per_class: int = 20,
    extra_bad: bool = True,
    duplicates: int = 0,
    root: str = "notMNIST_small",
    seed: int = 0,
    images: np.ndarray | None = None,
    labels: np.ndarray | None = None,
) -> dict:
    """Writes the files of ``make_fixture_archive`` (same arguments) as a folder tree.

    ``path/root/A/*.png`` ...; with ``extra_bad`` the on-disk subset of bad files
    (``BAD_FOLDER_FILES``: corrupt, empty, non-image, 32x32, symlink, FIFO,
    > 1 MiB). Returns the same dict (``path`` is the folder
    to pass to ``read_images``; member names are relative to it).
    """
    base = Path(path)
    prefix = f"{root}/" if root else ""
    members, planted = _plan(per_class, duplicates, root, seed, images, labels)
    for letter in LETTERS:
        (base / prefix / letter).mkdir(parents=True, exist_ok=True)
    for name, pixels in members:
        (base / name).write_bytes(png_bytes(pixels))
    bad: dict[str, str] = {}
    if extra_bad:
        glyph = members[0][1]
        for suffix, word in BAD_FOLDER_FILES.items():
            name = prefix + suffix
            bad[name] = word
            target = base / name
            if suffix.endswith("link.png"):
                os.symlink(base / members[0][0], target)
            elif suffix.endswith("fifo.png"):
                os.mkfifo(target)
            else:
                info, data = _bad_member(name, suffix, glyph, members[0][0])
                target.write_bytes(data or b"")
    return _summary(base, root, members, planted, bad)


def make_dataset(
    train_per_class: int = 20, valid_per_class: int = 5, test_per_class: int = 5, seed: int = 0
) -> dict[str, np.ndarray]:
    """A small dataset in the ``notMNIST.pickle`` format, from distinct glyphs.

    Returns:
      dict with the course keys (``train_dataset`` float32 (n,28,28) normalized
      like the course, ``train_labels`` int32, valid/test likewise, shuffled) and
      the ``*_sanitized`` keys (equal to valid/test: the glyphs are all distinct).
    """
    per = train_per_class + valid_per_class + test_per_class
    images, labels = make_glyph_images(per, seed)
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    bounds = {"valid": (0, valid_per_class), "test": (valid_per_class, valid_per_class + test_per_class),
              "train": (valid_per_class + test_per_class, per)}
    for split, (lo, hi) in bounds.items():
        idx = np.concatenate([np.arange(c * per + lo, c * per + hi) for c in range(len(LETTERS))]).astype(np.int64)
        idx = idx[rng.permutation(len(idx))]
        out[f"{split}_dataset"] = normalize(images[idx])
        out[f"{split}_labels"] = labels[idx].astype(np.int32)
    for split in ("valid", "test"):
        out[f"{split}_dataset_sanitized"] = out[f"{split}_dataset"].copy()
        out[f"{split}_labels_sanitized"] = out[f"{split}_labels"].copy()
    return {k: out[k] for k in sorted(out, key=_key_order)}


def _key_order(key: str) -> tuple[int, str]:
    order = ("train_dataset", "train_labels", "valid_dataset", "valid_labels", "test_dataset", "test_labels")
    return (order.index(key), key) if key in order else (len(order), key)


def stripes(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Class c = a brighter band on rows 2c..2c+1, plus noise, pixels in [-0.5, 0.5] like notMNIST's:
    learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.int32)
    images = rng.normal(-0.3, 0.1, (n, 28, 28)).astype(np.float32)
    for row in (0, 1):
        images[np.arange(n), 2 * labels + row, :] += 0.7
    return np.clip(images, -0.5, 0.5), labels


def make_stripes_dataset(n_train: int = 640, n_eval: int = 200, sanitized: bool = False,
                         seed: int = 0) -> dict[str, np.ndarray]:
    """Course keys filled with ``stripes``; ``sanitized`` adds the first half of valid/test as the sanitized keys."""
    data = {}
    for i, (split, n) in enumerate([("train", n_train), ("valid", n_eval), ("test", n_eval)]):
        data[f"{split}_dataset"], data[f"{split}_labels"] = stripes(n, seed * 10 + i)
    if sanitized:
        for split in ("valid", "test"):
            data[f"{split}_dataset_sanitized"] = data[f"{split}_dataset"][: n_eval // 2]
            data[f"{split}_labels_sanitized"] = data[f"{split}_labels"][: n_eval // 2]
    return data
