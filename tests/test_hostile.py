"""Hostile and malformed input on the data side: tar members, decompression bombs, odd PNGs, pickle gadgets.

Complements test_archive.py (which covers the fixture's planted bad members and the basic mode
conversions). The pickle section starts with the basics of ``dataset.load_pickle`` / ``validate``
(a ``__reduce__`` -> ``os.system`` payload, protocols 2-5, the schema's messages). The
property-based tests at the end throw random bytes and random tar layouts at ``read_images``.
"""

from __future__ import annotations

import functools
import gzip
import inspect
import io
import os
import pickle
import re
import struct
import subprocess
import tarfile
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest
from fixtures import make_glyph_images, png_bytes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dnn_tf.data import decode
from dnn_tf.data.archive import MAX_HEADER_BYTES, MAX_MEMBER_BYTES, MAX_TOTAL_BYTES, class_of
from dnn_tf.data.dataset import COURSE_KEYS, validate
from dnn_tf.data.decode import read_images
from dnn_tf.data.png import decode_png
from dnn_tf.data.safe_pickle import load_pickle
from dnn_tf.notmnist import LETTERS, MAX_REASON_CHARS, DataError, normalize

GLYPHS = make_glyph_images(2, seed=11)[0]  # 20 distinct uint8 28x28 glyphs
GLYPH = GLYPHS[0]
GOOD_PNG = png_bytes(GLYPH)
BOMB_BYTES = 200 << 20  # a 200 MB zero-filled member: ~0.9 MB of gzip


# ----------------------------------------------------------------------------- helpers


def _info(name: str, data: bytes = b"", type_: bytes = tarfile.REGTYPE, linkname: str = "", **kw) -> tuple:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = type_, linkname, 0o644
    info.size = len(data) if type_ in (tarfile.REGTYPE, b"Z") else 0
    for k, v in kw.items():
        setattr(info, k, v)
    return info, data


def _write_tar(path, entries, mode: str = "w:gz", fmt=tarfile.GNU_FORMAT) -> str:
    with tarfile.open(path, mode, format=fmt) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data) if info.size else None)
    return str(path)


def _tree(*roots: Path) -> dict[str, tuple]:
    """Every path under ``roots`` (files, dirs, links; links not followed) with type, size and mtime."""
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            for name in dirnames + filenames:
                p = os.path.join(dirpath, name)
                st_ = os.lstat(p)
                out[p] = (st_.st_mode, st_.st_size if not os.path.isdir(p) else 0, st_.st_mtime_ns)
    return out


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png(width: int, height: int, depth: int, color: int, rows: list[bytes], chunks=(), idat: bytes | None = None):
    """A PNG written by hand (Pillow cannot write 16-bit colour, 2/4-bit gray or crafted chunks)."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    body = idat if idat is not None else zlib.compress(b"".join(b"\0" + r for r in rows))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + b"".join(_chunk(k, d) for k, d in chunks)
            + _chunk(b"IDAT", body) + _chunk(b"IEND", b""))


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601-2 luma ``R*299/1000 + G*587/1000 + B*114/1000`` as Pillow's convert("L") computes it
    (16-bit fixed point, rounded; differs from the float formula rounded in ~0.1% of colours)."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)


@pytest.fixture
def sandbox(tmp_path, monkeypatch):
    """cwd deep inside tmp_path, a victim folder beside it; returns (tmp_path, victim)."""
    victim = tmp_path / "victim"
    (victim / "A").mkdir(parents=True)
    (victim / "secret.txt").write_text("keep me\n")
    cwd = tmp_path / "work" / "a" / "b"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    return tmp_path, victim


# ----------------------------------------------------------------------------- hostile tar members


def _hostile_cases(victim: Path) -> dict[str, tuple[tuple, str]]:
    """case id -> ((TarInfo, data), word expected in the skip reason)."""
    return {
        "absolute-into-victim": (_info(f"{victim}/A/evil.png", GOOD_PNG), "absolute path refused"),
        "windows-drive": (_info("C:\\evil\\A\\x.png", GOOD_PNG), "absolute path refused"),
        "unc-path": (_info("\\\\server\\share\\A\\x.png", GOOD_PNG), "absolute path refused"),
        "dotdot-climb-to-victim": (_info("r/A/../../../../victim/A/evil.png", GOOD_PNG), "'..'"),
        "dotdot-backslash": (_info("..\\..\\A\\x.png", GOOD_PNG), "'..'"),
        "dotdot-after-dot": (_info("r/A/./../B/x.png", GOOD_PNG), "'..'"),
        "dotdot-long-gnu-name": (_info("r/A/" + "../" * 60 + "evil.png", GOOD_PNG), "'..'"),
        "absolute-symlink": (_info("r/A/link.png", type_=tarfile.SYMTYPE, linkname=f"{victim}/secret.txt"),
                             "symbolic link refused"),
        "relative-symlink-out": (_info("r/A/up.png", type_=tarfile.SYMTYPE, linkname="../../../victim/secret.txt"),
                                 "symbolic link refused"),
        "symlinked-class-dir": (_info("r/B", type_=tarfile.SYMTYPE, linkname=str(victim)), "symbolic link refused"),
        "hardlink-to-system-file": (_info("r/A/hard.png", type_=tarfile.LNKTYPE, linkname="/etc/passwd"),
                                    "hard link refused"),
        "char-device": (_info("r/A/null.png", type_=tarfile.CHRTYPE, devmajor=1, devminor=3), "device"),
        "block-device": (_info("r/A/sda.png", type_=tarfile.BLKTYPE, devmajor=8, devminor=0), "device"),
        "fifo": (_info("r/A/pipe.png", type_=tarfile.FIFOTYPE), "device"),
        "unknown-member-type": (_info("r/A/odd.png", GOOD_PNG, type_=b"Z"), "not a regular file"),
        "deep-path": (_info("r/x/y/A/deep.png", GOOD_PNG), "not inside an A..J folder"),
        "lowercase-class": (_info("r/a/x.png", GOOD_PNG), "not inside an A..J folder"),
        "file-named-like-class": (_info("r/C", GOOD_PNG), "not inside an A..J folder"),
    }


@pytest.mark.parametrize("case", sorted(_hostile_cases(Path("/v"))))
@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_hostile_member_is_refused_with_reason_and_nothing_is_written(sandbox, case, fmt):
    tmp, victim = sandbox
    (info, data), word = _hostile_cases(victim)[case]
    archive_path = _write_tar(tmp / "evil.tar.gz", [_info("r/A/ok.png", GOOD_PNG), (info, data)], fmt=fmt)
    before = _tree(tmp)
    parent_before = sorted(os.listdir(tmp.parent))

    got = read_images(archive_path, workers=1)

    assert _tree(tmp) == before, "read_images created, changed or removed files"
    assert sorted(os.listdir(tmp.parent)) == parent_before
    assert (victim / "secret.txt").read_text() == "keep me\n" and not (victim / "A" / "evil.png").exists()
    assert got.names == ["r/A/ok.png"]
    np.testing.assert_array_equal(got.images, normalize(GLYPH[None]))
    assert len(got.skipped) == 1
    name, reason = got.skipped[0]
    assert word in reason, (name, reason)


def test_members_over_a_custom_per_member_cap_are_skipped_unread(tmp_path, monkeypatch):
    sizes = []
    real = decode.decode_pngs  # what the decoding workers run on every chunk of member bytes
    monkeypatch.setattr(decode, "decode_pngs", lambda blobs: (sizes.extend(map(len, blobs)), real(blobs))[1])
    limit = len(GOOD_PNG) + 10
    padded = GOOD_PNG + b"\0" * 11  # a decodable PNG (trailing bytes are ignored), one byte over the cap
    path = _write_tar(tmp_path / "x.tar", [_info("r/A/ok.png", GOOD_PNG), _info("r/B/big.png", padded)], mode="w")
    got = read_images(path, workers=1, max_member_bytes=limit)
    assert got.names == ["r/A/ok.png"]
    assert got.skipped == [("r/B/big.png", f"too large ({len(padded)} bytes > {limit} byte limit)")]
    assert max(sizes) <= limit  # the refused member never reached the decoder


def test_cap_defaults_are_documented_and_arguments_checked(fixture_archive):
    params = inspect.signature(read_images).parameters
    assert params["max_member_bytes"].default == MAX_MEMBER_BYTES == 1 << 20
    assert params["max_total_bytes"].default == MAX_TOTAL_BYTES == 4 << 30  # ~6x notMNIST_large's 0.63 GB tar
    doc = inspect.getdoc(read_images)
    assert "Raises:" in doc and "DataError" in doc and "Nothing else is raised" in doc
    for kw in ({"max_member_bytes": 0}, {"max_total_bytes": 0}):
        with pytest.raises(ValueError, match="must be >= 1"):
            read_images(fixture_archive["path"], workers=1, **kw)


# ----------------------------------------------------------------------------- decompression bombs


def _gzip_tar(path: Path, before: list[tuple[str, bytes]], bomb: tuple[str, int] | None,
              after: list[tuple[str, bytes]], tail_zeros: int = 0) -> str:
    """A .tar.gz streamed through zlib: members, a zero-filled member of ``bomb[1]`` bytes, more members,
    the end-of-archive blocks, then ``tail_zeros`` more zero bytes inside the gzip stream."""
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    parts: list[bytes] = []
    mb = bytes(1 << 20)

    def zeros(n: int) -> None:
        for _ in range(n >> 20):
            parts.append(comp.compress(mb))
        parts.append(comp.compress(bytes(n & ((1 << 20) - 1))))

    def member(name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        parts.append(comp.compress(info.tobuf(tarfile.GNU_FORMAT) + data + bytes(-len(data) % 512)))

    for name, data in before:
        member(name, data)
    if bomb is not None:
        info = tarfile.TarInfo(bomb[0])
        info.size = bomb[1]
        parts.append(comp.compress(info.tobuf(tarfile.GNU_FORMAT)))
        zeros(bomb[1])
    for name, data in after:
        member(name, data)
    zeros(1024 + tail_zeros)
    parts.append(comp.flush())
    path.write_bytes(b"".join(parts))
    return str(path)


@pytest.fixture(scope="module")
def gzip_bomb(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("bomb") / "bomb.tar.gz"
    return _gzip_tar(path, [("r/A/ok.png", GOOD_PNG)], ("r/B/bomb.png", BOMB_BYTES), [("r/C/ok.png", GOOD_PNG)])


def test_gzip_bomb_member_is_skipped_without_reading_it(gzip_bomb, monkeypatch):
    assert os.path.getsize(gzip_bomb) < 2 << 20  # 200 MB of zeros in < 2 MB
    sizes = []
    real = decode.decode_pngs  # what the decoding workers run on every chunk of member bytes
    monkeypatch.setattr(decode, "decode_pngs", lambda blobs: (sizes.extend(map(len, blobs)), real(blobs))[1])
    tracemalloc.start()
    start = time.process_time()
    try:
        got = read_images(gzip_bomb, workers=1)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.process_time() - start < 20  # decompressing 200 MB of zeros to skip them: ~1 s
    assert peak < 16 << 20, peak  # streamed past in small blocks, never held
    assert got.names == ["r/A/ok.png", "r/C/ok.png"]
    assert got.skipped == [("r/B/bomb.png", f"too large ({BOMB_BYTES} bytes > {MAX_MEMBER_BYTES} byte limit)")]
    assert sizes and max(sizes) == len(GOOD_PNG)  # only the two small PNGs were read


def test_total_cap_stops_a_bomb_member_before_decompressing_it(gzip_bomb):
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(DataError) as e:
            read_images(gzip_bomb, workers=1, max_total_bytes=16 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - start < 2  # the header's claim is enough: nothing decompressed
    assert peak < 4 << 20
    msg = str(e.value)
    assert "r/B/bomb.png" in msg and f"claims {BOMB_BYTES:,} bytes" in msg and "decompression bomb" in msg
    assert "16,777,216" in msg and "\n" not in msg


def test_total_cap_counts_trailing_bytes_after_the_last_member(tmp_path):
    path = _gzip_tar(tmp_path / "tail.tar.gz", [("r/A/ok.png", GOOD_PNG)], None, [], tail_zeros=64 << 20)
    start = time.perf_counter()
    with pytest.raises(DataError, match="unpacks to more bytes than the limit"):
        read_images(path, workers=1, max_total_bytes=8 << 20)
    assert time.perf_counter() - start < 5
    got = read_images(path, workers=1)  # under the default cap the same archive is fine
    assert got.names == ["r/A/ok.png"]


def test_total_cap_counts_ordinary_members_too(tmp_path):
    entries = [_info(f"r/{LETTERS[i % 10]}/{i}.png", png_bytes(g)) for i, g in enumerate(GLYPHS)]
    path = _write_tar(tmp_path / "many.tar", entries, mode="w")
    assert len(read_images(path, workers=1).names) == len(GLYPHS)
    with pytest.raises(DataError, match="decompression bomb"):
        read_images(path, workers=1, max_total_bytes=os.path.getsize(path) // 2)


def _raw_header(name: str, size_field: bytes, type_: bytes) -> bytes:
    """One 512-byte tar header with a hand-written size field and a valid checksum."""
    buf = bytearray(512)
    buf[0:len(name)] = name.encode()
    buf[100:108] = b"0000644\0"
    buf[124:136] = size_field
    buf[136:148] = b"00000000000\0"
    buf[156:157] = type_
    buf[257:265] = b"ustar  \0"
    buf[148:156] = b" " * 8
    buf[148:156] = b"%06o\0 " % sum(buf)
    return bytes(buf)


@functools.lru_cache(maxsize=None)
def _zeros_gz(size: int) -> bytes:
    comp = zlib.compressobj(1, zlib.DEFLATED, 31)
    return b"".join(comp.compress(bytes(1 << 20)) for _ in range(size >> 20)) + comp.flush()


HOSTILE_HEADERS = {
    "pax-header-bomb": (_raw_header("././@PaxHeader", b"%011o\0" % (100 << 20), tarfile.XHDTYPE), "pax header"),
    "gnu-longname-bomb": (_raw_header("././@LongLink", b"%011o\0" % (100 << 20), tarfile.GNUTYPE_LONGNAME),
                          "long-name"),
    "negative-size": (_raw_header("r/A/neg.png", b"\xff" * 11 + b"\xfb", tarfile.REGTYPE), "negative size"),
    "negative-octal-size": (_raw_header("r/A/neg.png", b"-0000000005\0", tarfile.REGTYPE), "negative size"),
    # minus one block and more: a reader that moved on by its size would never move on
    "negative-octal-size-over-a-block": (_raw_header("r/A/neg.png", b"-0000001130\0", tarfile.REGTYPE),
                                         "negative size"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_HEADERS))
@pytest.mark.parametrize("payload", ["absent", "present"])
def test_hostile_headers_are_refused_before_tarfile_reads_them(tmp_path, case, payload):
    """The header's claim is refused before anything is allocated for it, whether the archive holds the
    100 MB it claims (zeros, 0.1 MB of gzip) or ends right after it."""
    header, words = HOSTILE_HEADERS[case]
    good = tarfile.TarInfo("r/A/ok.png")
    good.size = len(GOOD_PNG)
    lead = good.tobuf(tarfile.GNU_FORMAT) + GOOD_PNG + bytes(-len(GOOD_PNG) % 512) + header
    if payload == "absent":
        archives = {"h.tar": lead + bytes(2048), "h.tar.gz": gzip.compress(lead + bytes(2048))}
    else:  # a second gzip member (gzip reads them as one stream) holds the claimed bytes
        archives = {"h.tar.gz": gzip.compress(lead) + _zeros_gz(101 << 20)}
    for name, data in archives.items():
        path = tmp_path / name
        path.write_bytes(data)
        tracemalloc.start()
        try:
            with pytest.raises(DataError, match="truncated or corrupt") as e:
                read_images(path, workers=1)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert words in str(e.value) and "\n" not in str(e.value)
        assert peak < 2 << 20  # the 100 MB the header claims were never allocated
    assert MAX_HEADER_BYTES < 100 << 20


def test_the_reader_refuses_hostile_headers_itself():
    """tar_stream.refuse_hostile, what TarReader.read runs on every header tarfile reads: the refusals
    above do not depend on what this Python's tarfile makes of such a header (newer patch releases reject
    some themselves)."""
    from dnn_tf.data.tar_stream import refuse_hostile

    for header, words in HOSTILE_HEADERS.values():
        with pytest.raises(DataError, match=words):
            refuse_hostile(header)
    good = tarfile.TarInfo("r/A/ok.png")
    good.size = 100
    refuse_hostile(good.tobuf(tarfile.GNU_FORMAT))  # a plain header passes
    refuse_hostile(_raw_header("././@LongLink", b"%011o\0" % 200, tarfile.GNUTYPE_LONGNAME))  # a small long name
    bad_checksum = bytearray(HOSTILE_HEADERS["negative-size"][0])
    bad_checksum[150] ^= 1
    refuse_hostile(bytes(bad_checksum))  # not a header tarfile would take: tarfile's own error decides


def test_pax_size_override_claiming_a_terabyte_is_stopped_at_once(tmp_path):
    info = tarfile.TarInfo("r/A/tera.png")
    info.size = 10
    info.pax_headers = {"size": str(1 << 40)}
    raw = info.tobuf(tarfile.PAX_FORMAT) + bytes(512) + bytes(1024)
    (tmp_path / "p.tar").write_bytes(raw)
    start = time.perf_counter()
    with pytest.raises(DataError, match=f"claims {1 << 40:,} bytes"):
        read_images(tmp_path / "p.tar", workers=1)
    assert time.perf_counter() - start < 2


def test_folder_total_cap(tmp_path):
    for i, g in enumerate(GLYPHS):
        (tmp_path / "src" / LETTERS[i % 10]).mkdir(parents=True, exist_ok=True)
        (tmp_path / "src" / LETTERS[i % 10] / f"{i}.png").write_bytes(png_bytes(g))
    assert len(read_images(tmp_path / "src", workers=1).names) == len(GLYPHS)
    with pytest.raises(DataError, match="image files hold more bytes than the limit"):
        read_images(tmp_path / "src", workers=1, max_total_bytes=3 * len(GOOD_PNG))


def test_unreadable_folder_file_is_skipped_not_fatal(tmp_path, monkeypatch):
    (tmp_path / "A").mkdir()
    (tmp_path / "A" / "ok.png").write_bytes(GOOD_PNG)
    (tmp_path / "A" / "locked.png").write_bytes(GOOD_PNG)
    real_open = os.open

    def open_(path, flags, *args):  # chmod 0 does not stop root, so deny the open itself
        if str(path).endswith("locked.png"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", open_)
    got = read_images(tmp_path, workers=1)
    assert got.names == ["A/ok.png"]
    assert got.skipped == [("A/locked.png", "unreadable (Permission denied)")]


# ----------------------------------------------------------------------------- PNG variants


def _rows16(a: np.ndarray) -> list[bytes]:
    return [row.astype(">u2").tobytes() for row in a]


def _pack(values: np.ndarray, bits: int) -> list[bytes]:
    """Rows of small integers packed ``bits`` per pixel, most significant first (PNG order)."""
    out = []
    for row in values:
        bitrows = np.unpackbits(row.astype(np.uint8)[:, None], axis=1)[:, 8 - bits:]
        out.append(np.packbits(bitrows.ravel()).tobytes())
    return out


RNG = np.random.default_rng(5)
RGB = RNG.integers(0, 256, (28, 28, 3), dtype=np.uint8)
RGB16 = RNG.integers(0, 65536, (28, 28, 3), dtype=np.uint16)
GRAY16_ALPHA = RNG.integers(0, 65536, (28, 28, 2), dtype=np.uint16)
PALETTE = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255], [12, 200, 99]], np.uint8)
INDICES = RNG.integers(0, len(PALETTE), (28, 28))
GRAY2 = RNG.integers(0, 4, (28, 28))
GRAY4 = RNG.integers(0, 16, (28, 28))

# member name -> (PNG bytes, exact expected 8-bit gray pixels)
CONVERTED = {
    "rgb8": (png_bytes(RGB), _luma(RGB)),
    "rgba8-alpha-ignored": (png_bytes(np.dstack([RGB, RGB[..., :1]]), "RGBA"), _luma(RGB)),
    "rgb16": (_png(28, 28, 16, 2, _rows16(RGB16)), _luma((RGB16 >> 8).astype(np.uint8))),
    "gray16-alpha": (_png(28, 28, 16, 4, _rows16(GRAY16_ALPHA)), (GRAY16_ALPHA[..., 0] >> 8).astype(np.uint8)),
    "palette-4bit-colours": (_png(28, 28, 4, 3, _pack(INDICES, 4), chunks=[(b"PLTE", PALETTE.tobytes())]),
                             _luma(PALETTE[INDICES])),
    "palette-with-trns": (_png(28, 28, 8, 3, [r.astype(np.uint8).tobytes() for r in INDICES],
                               chunks=[(b"PLTE", PALETTE.tobytes()), (b"tRNS", bytes([0, 128]))]),
                          _luma(PALETTE[INDICES])),
    "gray2": (_png(28, 28, 2, 0, _pack(GRAY2, 2)), (GRAY2 * 85).astype(np.uint8)),
    "gray4": (_png(28, 28, 4, 0, _pack(GRAY4, 4)), (GRAY4 * 17).astype(np.uint8)),
    # round(v / 257) at the rounding edge: 33024 / 257 = 128.498 -> 128, 33025 / 257 = 128.502 -> 129
    "gray16-rounding-edge": (_png(28, 28, 16, 0, _rows16(np.repeat([[33024] * 14 + [33025] * 14], 28, 0))),
                             np.repeat([[128] * 14 + [129] * 14], 28, 0).astype(np.uint8)),
    "png-with-trailing-garbage": (GOOD_PNG + b"garbage after IEND", GLYPH),
}


def test_colour_palette_and_16bit_pngs_decode_to_exact_course_values(tmp_path):
    entries = [_info(f"r/{LETTERS[i]}/{name}.png", data) for i, (name, (data, _)) in enumerate(CONVERTED.items())]
    got = read_images(_write_tar(tmp_path / "modes.tar.gz", entries), workers=1)
    assert got.skipped == []
    by_name = dict(zip(got.names, got.images))
    for i, (name, (_, expected)) in enumerate(CONVERTED.items()):
        image = by_name[f"r/{LETTERS[i]}/{name}.png"]
        assert image.dtype == np.float32
        np.testing.assert_array_equal(image, normalize(expected), err_msg=name)
    assert got.labels.tolist() == list(range(len(CONVERTED)))


def _pil_bytes(pixels: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


def _bad_crc() -> bytes:
    data = bytearray(GOOD_PNG)
    data[37] ^= 0xFF  # inside the IHDR chunk's data: its CRC no longer matches
    return bytes(data)


def _ztxt_bomb() -> bytes:  # a 28x28 PNG whose compressed text chunk inflates to 100 MB
    return _png(28, 28, 8, 0, [bytes(28)] * 28, chunks=[(b"zTXt", b"c\0\0" + zlib.compress(bytes(100 << 20), 9))])


SKIPPED = {  # case -> (bytes factory, word the skip reason must contain)
    "jpeg-28x28": (lambda: _pil_bytes(GLYPH, "JPEG"), "not a PNG image"),
    "bmp-28x28": (lambda: _pil_bytes(GLYPH, "BMP"), "not a PNG image"),
    "gif-28x28": (lambda: _pil_bytes(GLYPH, "GIF"), "not a PNG image"),
    "text-file": (lambda: b"A\n" * 40, "not a PNG image"),
    "png-signature-only": (lambda: GOOD_PNG[:8], "corrupt PNG (truncated or damaged header)"),
    "cut-in-ihdr": (lambda: GOOD_PNG[:20], "corrupt PNG"),
    "cut-after-ihdr": (lambda: GOOD_PNG[:33], "corrupt PNG"),
    "cut-in-idat": (lambda: GOOD_PNG[: len(GOOD_PNG) // 2], "corrupt PNG"),
    "bad-crc": (_bad_crc, "corrupt PNG"),
    "header-claims-60000x60000": (lambda: _png(60000, 60000, 8, 0, [b"\0" * 10]), "wrong size 60000x60000"),
    "zero-width": (lambda: _png(0, 28, 8, 0, [b""]), "wrong size 0x28"),
    "28x27": (lambda: png_bytes(np.zeros((27, 28), np.uint8)), "wrong size 28x27"),
    "1x1": (lambda: png_bytes(np.zeros((1, 1), np.uint8)), "wrong size 1x1"),
    "ztxt-bomb": (_ztxt_bomb, "corrupt PNG"),
}


@pytest.mark.parametrize("case", sorted(SKIPPED))
def test_unusable_pngs_are_skipped_and_listed_with_a_reason(case):
    data, word = SKIPPED[case][0](), SKIPPED[case][1]
    start = time.process_time()
    pixels, reason = decode_png(data)
    assert time.process_time() - start < 2
    assert pixels is None and word in reason, reason
    assert "\n" not in reason and len(reason) <= MAX_REASON_CHARS


def test_unusable_pngs_are_listed_by_read_images_and_do_not_stop_it(tmp_path):
    entries = [_info(f"r/A/{case}.png", make()) for case, (make, _) in SKIPPED.items() if case != "ztxt-bomb"]
    entries.append(_info("r/B/ok.png", GOOD_PNG))
    got = read_images(_write_tar(tmp_path / "bad.tar.gz", entries), workers=1)
    assert got.names == ["r/B/ok.png"]
    skipped = dict(got.skipped)
    assert set(skipped) == {info.name for info, _ in entries[:-1]}
    for case, (_, word) in SKIPPED.items():
        if f"r/A/{case}.png" in skipped:
            assert word in skipped[f"r/A/{case}.png"]


def test_idat_bomb_inside_a_28x28_png_is_not_inflated():
    stream = zlib.compress(bytes(200 << 20), 9)  # 200 MB of zero rows in ~0.2 MB
    bomb = _png(28, 28, 8, 0, [], idat=stream)
    assert len(bomb) < MAX_MEMBER_BYTES  # passes the member cap: the decoder must stop by itself
    start = time.process_time()
    zlib.decompressobj().decompress(stream, 50 << 20)  # reference: CPU time to inflate 50 MB of it
    inflate_50mb = time.process_time() - start
    start = time.process_time()
    pixels, reason = decode_png(bomb)
    assert time.process_time() - start < inflate_50mb  # Pillow stops after the 28 rows it needs
    assert reason == "" and pixels.shape == (28, 28) and not pixels.any()


# ----------------------------------------------------------------------------- safe pickles: the basics


class _Payload:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def test_restricted_unpickler_refuses_and_does_not_run_a_reduce_payload(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pickle"
    payload = {"train_dataset": np.zeros((2, 28, 28), np.float32), "x": _Payload(f"touch {marker}")}
    path.write_bytes(pickle.dumps(payload, protocol=4))
    with pytest.raises(DataError, match=r"refusing to load .*evil\.pickle: it references (os|posix)\.system"):
        load_pickle(path)
    assert not marker.exists()


@pytest.mark.parametrize("target", [eval, getattr, __import__])
def test_restricted_unpickler_refuses_builtins_that_run_code(tmp_path, target):
    class Sneaky:
        def __reduce__(self):
            return target, ("1",) if target is not getattr else (1, "real")

    path = tmp_path / "b.pickle"
    path.write_bytes(pickle.dumps(Sneaky(), protocol=4))
    with pytest.raises(DataError, match=f"builtins.{target.__name__}"):
        load_pickle(path)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_load_pickle_reads_numpy_dicts(tmp_path, protocol, tiny_dataset):
    path = tmp_path / "d.pickle"
    obj = dict(tiny_dataset, extra=[1, 2.5, "s", (3,), {4}, b"raw", np.float32(1.5)])
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    got = load_pickle(path)
    assert set(got) == set(obj)
    for key in tiny_dataset:
        np.testing.assert_array_equal(got[key], tiny_dataset[key])
        assert got[key].dtype == tiny_dataset[key].dtype
    assert got["extra"] == obj["extra"]


def test_truncated_or_missing_pickle_is_a_data_error(tmp_path, tiny_dataset):
    path = tmp_path / "t.pickle"
    data = pickle.dumps(tiny_dataset, protocol=4)
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_pickle(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="truncated or corrupt"):
        load_pickle(path)
    with pytest.raises(DataError, match="does not exist"):
        load_pickle(tmp_path / "missing.pickle")


def test_validate_accepts_the_format(tiny_dataset):
    validate(tiny_dataset)
    validate({k: tiny_dataset[k] for k in COURSE_KEYS})  # sanitized keys are optional


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda d: d.pop("test_labels"), "missing keys: test_labels"),
        (lambda d: d.update(train_dataset=d["train_dataset"].astype(np.float64)), "train_dataset must be float32"),
        (lambda d: d.update(valid_dataset=d["valid_dataset"].reshape(-1, 784)), "valid_dataset must be float32"),
        (lambda d: d.update(train_labels=d["train_labels"].astype(np.float32)), "train_labels must be integer"),
        (lambda d: d.update(test_labels=d["test_labels"] + 1), r"test_labels must be in 0..9"),
        (lambda d: d.update(valid_labels=d["valid_labels"][:-1]), "valid_labels has 49 labels for 50 images"),
        (lambda d: d.pop("test_labels_sanitized"), "test_dataset_sanitized but no test_labels_sanitized"),
        (lambda d: d.update(train_dataset=list(d["train_dataset"])), "must be a numpy array"),
    ],
)
def test_validate_rejects(tiny_dataset, change, match):
    d = dict(tiny_dataset)
    change(d)
    with pytest.raises(DataError, match=match):
        validate(d)


# ----------------------------------------------------------------------------- pickle gadgets


class _Gadget:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _gadgets(marker: Path) -> dict[str, tuple[bytes, str]]:
    """case -> (pickle bytes, the global the refusal must name). Each would touch ``marker`` if it ran."""
    import numpy.testing

    np_save = _Gadget(np.save, str(marker), np.zeros(1))
    return {
        "subprocess.Popen": (pickle.dumps(_Gadget(subprocess.Popen, ["touch", str(marker)]), 4), "subprocess.Popen"),
        "builtins.exec": (pickle.dumps(_Gadget(exec, f"open({str(marker)!r}, 'w')"), 4), "builtins.exec"),
        "io.open": (pickle.dumps(_Gadget(open, str(marker), "w"), 4), "open"),
        "numpy.save (allowed module)": (pickle.dumps({"train_dataset": np_save}, 4), "numpy.save"),
        "numpy.load (allowed module)": (pickle.dumps(_Gadget(np.load, str(marker), True), 4), "numpy.load"),
        "numpy.testing": (pickle.dumps(_Gadget(numpy.testing.assert_equal, 1, 1), 2), "numpy.testing"),
        "collections.namedtuple (allowed module)": (
            b"\x80\x02ccollections\nnamedtuple\nX\x01\x00\x00\x00TX\x01\x00\x00\x00a\x86R.", "collections.namedtuple"),
        "_codecs.decode (allowed module)": (b"\x80\x02c_codecs\ndecode\nX\x01\x00\x00\x00xX\x04\x00\x00\x00hex_\x86R.",
                                            "_codecs.decode"),
        "nested in a valid dataset": (
            pickle.dumps({"train_dataset": np.zeros((1, 28, 28), np.float32),
                          "x": [1, {"y": _Gadget(os.system, f"touch {marker}")}]}, 5), "system"),
    }


@pytest.mark.parametrize("case", sorted(_gadgets(Path("/m"))))
def test_code_execution_gadgets_are_refused_before_running(tmp_path, case):
    marker = tmp_path / "pwned"
    data, global_name = _gadgets(marker)[case]
    path = tmp_path / "evil.pickle"
    path.write_bytes(data)
    with pytest.raises(DataError, match="refusing to load") as e:
        load_pickle(path)
    assert global_name in str(e.value)
    assert not marker.exists() and not (tmp_path / "pwned.npy").exists()


MEMORY_GADGETS = {  # allowed globals with arguments that would allocate gigabytes from a 40-byte pickle
    "bytes(int)": b"c__builtin__\nbytes\n(I10000000000\ntR.",
    "bytearray(int)": b"cbuiltins\nbytearray\n(I10000000000\ntR.",
    "set(range)": b"c__builtin__\nset\n(c__builtin__\nxrange\n(I10000000000\ntRtR.",
    "frozenset(range)": b"cbuiltins\nfrozenset\n(cbuiltins\nrange\n(I10000000000\ntRtR.",
    "ndarray(shape, object)": b"cnumpy\nndarray\n((I1000000000\ntS'O'\ntR.",
    "_reconstruct(big shape)": b"cnumpy._core.multiarray\n_reconstruct\n(cnumpy\nndarray\n(I1000000000\ntS'b'\ntR.",
    "_codecs.encode(zlib)": b"c_codecs\nencode\n(Vabc\nVzlib\ntR.",
}


@pytest.mark.parametrize("case", sorted(MEMORY_GADGETS))
def test_memory_bomb_gadgets_through_allowed_globals_are_refused(tmp_path, case):
    path = tmp_path / "bomb.pickle"
    path.write_bytes(MEMORY_GADGETS[case])
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="refusing to load"):
            load_pickle(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the reader's 1 MiB buffer, not gigabytes


def test_legitimate_pickles_still_load_including_numpy1_names_and_empty_bytes(tmp_path, tiny_dataset):
    obj = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": b"", "c": bytearray(b"xy"), "d": {1, 2},
           "e": frozenset([3]), "f": range(4), "g": np.array(["s", 1], dtype=object), "h": np.int64(7)}
    for protocol in (2, 3, 4, 5):
        path = tmp_path / f"p{protocol}.pickle"
        path.write_bytes(pickle.dumps(obj, protocol=protocol))
        got = load_pickle(path)
        assert got.keys() == obj.keys()
        np.testing.assert_array_equal(got["a"], obj["a"])
        assert got["b"] == b"" and got["c"] == bytearray(b"xy") and got["d"] == {1, 2} and got["f"] == range(4)
        assert got["g"].tolist() == ["s", 1] and got["h"] == 7
    # a pickle written by numpy 1.x names numpy.core.multiarray instead of numpy._core.multiarray
    old = pickle.dumps(tiny_dataset, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray" in old
    path = tmp_path / "numpy1.pickle"
    path.write_bytes(old)
    got = load_pickle(path)
    validate(got)
    np.testing.assert_array_equal(got["train_dataset"], tiny_dataset["train_dataset"])


@pytest.mark.parametrize(
    "change, key",
    [
        (lambda d: d.update(train_dataset=np.zeros((200, 32, 32), np.float32)), "train_dataset"),
        (lambda d: d.update(valid_labels=np.eye(10, dtype=np.int32)[d["valid_labels"]]), "valid_labels"),
        (lambda d: d.update(test_dataset=d["test_dataset"].astype(object)), "test_dataset"),
        (lambda d: d.update(valid_dataset_sanitized=d["valid_dataset_sanitized"].astype(np.float16)),
         "valid_dataset_sanitized"),
        (lambda d: d.update(test_labels_sanitized=d["test_labels_sanitized"].astype(bool)), "test_labels_sanitized"),
        (lambda d: d.update(train_labels=d["train_labels"] - 1), "train_labels"),
        (lambda d: d.update(test_dataset="not an array"), "test_dataset"),
    ],
    ids=["image-size", "one-hot-labels", "object-images", "float16-sanitized", "bool-labels", "label-minus-one",
         "string"],
)
def test_wrong_shapes_and_dtypes_name_the_key_after_a_pickle_roundtrip(tmp_path, tiny_dataset, change, key):
    d = dict(tiny_dataset)
    change(d)
    path = tmp_path / "d.pickle"
    path.write_bytes(pickle.dumps(d, protocol=4))
    with pytest.raises(DataError) as e:
        validate(load_pickle(path))
    assert str(e.value).startswith(key + " "), str(e.value)


def test_a_per_class_pickle_is_not_taken_for_a_dataset(tmp_path):
    path = tmp_path / "A.pickle"
    path.write_bytes(pickle.dumps(np.zeros((3, 28, 28), np.float32), protocol=4))
    with pytest.raises(DataError, match="dataset must be a dict, got ndarray"):
        validate(load_pickle(path))
    with pytest.raises(DataError, match="is a folder, not a pickle"):
        load_pickle(tmp_path)


def test_a_multi_line_unpickling_error_is_reported_on_one_line(tmp_path):
    """Python's message for a persistent id (opcode Q) spans two lines; the DataError keeps to one."""
    path = tmp_path / "persistent.pickle"
    path.write_bytes(b"\x80\x04Q.")
    with pytest.raises(DataError, match="truncated or corrupt .UnpicklingError: A load persistent id") as e:
        load_pickle(path)
    assert "\n" not in str(e.value)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_damaged_pickles_give_data_error_or_a_value(tmp_path, tiny_dataset, data):
    raw = bytearray(pickle.dumps({k: tiny_dataset[k][:3] for k in ("train_dataset", "train_labels")},
                                 protocol=data.draw(st.sampled_from([2, 4, 5]))))
    cut = data.draw(st.integers(0, len(raw)))
    flips = data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)), max_size=3))
    for pos, x in flips:
        raw[pos] ^= x
    path = tmp_path / "damaged.pickle"
    path.write_bytes(bytes(raw[:cut]) if cut < len(raw) else bytes(raw))
    try:
        load_pickle(path)
    except DataError as e:
        assert "\n" not in str(e).strip()
    if cut < len(raw) and not flips:
        with pytest.raises(DataError, match="truncated or corrupt"):
            load_pickle(path)


# ----------------------------------------------------------------------------- property-based: read_images

PNG_POOL = [png_bytes(g) for g in GLYPHS[:4]]
NAME_CHARS = st.sampled_from(list("ABCJKabz09._-/\\ ") + ["..", "é"])
SAFE_FILE = st.text(alphabet=st.sampled_from(list("abcxyz019_-.")), min_size=1, max_size=10).filter(
    lambda s: s not in (".", ".."))
ROOTS = st.sampled_from(["", "r/", "./r/", "notMNIST_small/", "a/b/", "../", "/ABS/", "C:/", "r/A/../"])
CLASS = st.sampled_from(list(LETTERS) + ["K", "a", "..", ".", "AB"])
NAMES = st.one_of(
    st.builds(lambda root, c, f: f"{root}{c}/{f}", ROOTS, CLASS, SAFE_FILE),
    st.lists(st.sampled_from(["A", "B", "J", "..", ".", "r", "x", ""]), min_size=1, max_size=7).map("/".join),
    st.lists(NAME_CHARS, min_size=1, max_size=30).map("".join),
    st.builds(lambda n: "r/A/" + "d/" * n + "x.png", st.integers(40, 80)),  # > 100 chars: long-name headers
)
KINDS = st.sampled_from(["png", "png", "png", "bytes", "empty", "dir", "sym", "hard", "chr", "fifo", "wrongsize"])
MEMBERS = st.lists(st.tuples(NAMES, KINDS, st.integers(0, len(PNG_POOL) - 1), st.binary(max_size=200)),
                   max_size=12)
WRONG_SIZE_PNG = png_bytes(np.zeros((30, 28), np.uint8))


def _layout_tar(path: Path, members, victim: Path, mode: str, fmt: int) -> list[tuple[str, str, bytes]]:
    """Writes the drawn members; returns (name as written, kind, data) for every member."""
    written = []
    with tarfile.open(path, mode, format=fmt) as tar:
        for name, kind, k, blob in members:
            name = name.replace("/ABS/", f"{victim}/")
            data = {"png": PNG_POOL[k], "bytes": blob, "empty": b"", "wrongsize": WRONG_SIZE_PNG}.get(kind, b"")
            info = tarfile.TarInfo(name)
            if kind == "dir":
                info.type = tarfile.DIRTYPE
            elif kind == "sym":
                info.type, info.linkname = tarfile.SYMTYPE, f"{victim}/secret.txt"
            elif kind == "hard":
                info.type, info.linkname = tarfile.LNKTYPE, "../../victim/secret.txt"
            elif kind == "chr":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            elif kind == "fifo":
                info.type = tarfile.FIFOTYPE
            else:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if info.size else None)
            written.append((name, kind, data))
    return written


def _check_images(got) -> None:
    n = len(got.names)
    assert got.images.shape == (n, 28, 28) and got.images.dtype == np.float32
    assert got.labels.shape == (n,) and got.labels.dtype == np.int32
    assert got.names == sorted(got.names)
    if n:
        assert got.images.min() >= -0.5 and got.images.max() <= 0.5
    for name, label in zip(got.names, got.labels):
        assert class_of(name) == (label, ""), name
    for _, reason in got.skipped:
        assert reason and "\n" not in reason


@pytest.fixture(scope="module")
def prop_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop")
    victim = root / "victim"
    victim.mkdir()
    (victim / "secret.txt").write_text("keep me\n")
    cwd = root / "cwd" / "deep"
    cwd.mkdir(parents=True)
    return root, victim, cwd


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(members=MEMBERS, mode=st.sampled_from(["w:gz", "w"]), fmt=st.sampled_from([tarfile.GNU_FORMAT,
                                                                                    tarfile.PAX_FORMAT]),
       cut=st.one_of(st.none(), st.floats(0, 1)))
def test_property_random_tar_layouts(prop_root, monkeypatch, members, mode, fmt, cut):
    root, victim, cwd = prop_root
    monkeypatch.chdir(cwd)
    path = root / ("layout.tar.gz" if mode == "w:gz" else "layout.tar")
    written = _layout_tar(path, members, victim, mode, fmt)
    if cut is not None:
        raw = path.read_bytes()
        path.write_bytes(raw[: int(len(raw) * cut)])
    before = _tree(root)
    try:
        got = read_images(path, workers=1)
    except DataError as e:
        assert "\n" not in str(e)
        if cut is None:  # an intact archive is only refused for having no A..J content
            assert "no A..J folders found" in str(e), str(e)
        got = None
    assert _tree(root) == before  # nothing written, changed or removed anywhere
    assert (victim / "secret.txt").read_text() == "keep me\n"
    if got is None:
        return
    _check_images(got)
    if cut is not None:
        return
    # every non-directory member is either decoded or listed as skipped
    non_dirs = [w for w in written if w[1] != "dir"]
    assert len(got.names) + len(got.skipped) == len(non_dirs)
    # every valid PNG at a safe A..J path was decoded to its exact pixels
    decoded = list(zip(got.names, got.images))
    for name, kind, data in non_dirs:
        clean = name
        while clean.startswith("./"):
            clean = clean[2:]
        if kind == "png" and class_of(clean)[0] is not None:
            expected = normalize(GLYPHS[PNG_POOL.index(data)])
            assert any(n == clean and np.array_equal(img, expected) for n, img in decoded), clean


@settings(max_examples=80, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_property_random_bytes_as_archive(prop_root, monkeypatch, data):
    root, victim, cwd = prop_root
    monkeypatch.chdir(cwd)
    valid = _valid_archive_bytes()
    kind = data.draw(st.sampled_from(["random", "magic+random", "mutated"]))
    if kind == "random":
        raw = data.draw(st.binary(max_size=4096))
    elif kind == "magic+random":
        magic = data.draw(st.sampled_from([b"\x1f\x8b", b"\x1f\x8b\x08\x00", b"BZh9", b"\xfd7zXZ\x00",
                                           valid[:512], gzip.compress(valid)[:20]]))
        raw = magic + data.draw(st.binary(max_size=2048))
    else:
        raw = bytearray(gzip.compress(valid) if data.draw(st.booleans()) else valid)
        for pos, x in data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                                         min_size=1, max_size=4)):
            raw[pos] ^= x
        raw = bytes(raw[: data.draw(st.integers(0, len(raw)))])
    path = root / "random.tar.gz"
    path.write_bytes(raw)
    before = _tree(root)
    try:
        got = read_images(path, workers=1)
    except DataError as e:
        assert "\n" not in str(e)
    else:
        _check_images(got)
    assert _tree(root) == before


_VALID: list[bytes] = []


def _valid_archive_bytes() -> bytes:
    """A small uncompressed tar with good, bad and hostile members (built once)."""
    if not _VALID:
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
            for info, data in [_info("r/A/a.png", PNG_POOL[0]), _info("r/B/b.png", PNG_POOL[1]),
                               _info("r/C/../../x.png", PNG_POOL[2]), _info("r/D/l.png", type_=tarfile.SYMTYPE,
                                                                          linkname="/etc/passwd"),
                               _info("r/E/e.txt", b"text")]:
                tar.addfile(info, io.BytesIO(data) if info.size else None)
        _VALID.append(buf.getvalue())
    return _VALID[0]


def _pax(records: bytes) -> bytes:
    return _raw_header("././@PaxHeader", b"%011o\0" % len(records), tarfile.XHDTYPE) + records + bytes(
        -len(records) % 512)


# Headers on which tarfile itself raises UnicodeDecodeError / ValueError (these used to escape read_images),
# or takes a negative size from a pax record.
MALFORMED_HEADERS = {
    "pax-hdrcharset-not-utf8": _pax(b"25 hdrcharset=\xff\xfe\xfd\n") + _raw_header("r/A/x.png", b"%011o\0" % 0,
                                                                                     tarfile.REGTYPE),
    "pax-size-negative": _pax(b"11 size=-5\n") + _raw_header("r/A/x.png", b"%011o\0" % 0, tarfile.REGTYPE),
    "gnu-sparse-1.0-garbage-map": _pax(b"22 GNU.sparse.major=1\n22 GNU.sparse.minor=0\n") + _raw_header(
        "r/A/s.png", b"%011o\0" % 512, tarfile.REGTYPE) + b"zz\nqq\n".ljust(512, b"\0"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_HEADERS))
@pytest.mark.parametrize("after_a_good_member", [False, True])
def test_headers_tarfile_chokes_on_become_data_errors(tmp_path, case, after_a_good_member):
    """Either one DataError line, or a correct read: the good member's pixels, nothing else decoded."""
    good = tarfile.TarInfo("r/B/ok.png")
    good.size = len(GOOD_PNG)
    lead = good.tobuf(tarfile.GNU_FORMAT) + GOOD_PNG + bytes(-len(GOOD_PNG) % 512) if after_a_good_member else b""
    path = tmp_path / "m.tar"
    path.write_bytes(lead + MALFORMED_HEADERS[case] + bytes(1024))
    try:
        got = read_images(path, workers=1)
    except DataError as e:
        assert re.search("not a tar archive|truncated or corrupt", str(e)) and "\n" not in str(e), str(e)
        return
    assert got.names == (["r/B/ok.png"] if after_a_good_member else [])
    np.testing.assert_array_equal(got.images, normalize(GLYPH[None])[:len(got.names)])
    # the odd member skipped with a reason, or not there (3.13 rejects a bad hdrcharset: after the first
    # member, tarfile takes a header it rejects for the end of the archive)
    assert all(name in ("r/A/x.png", "r/A/s.png") and reason and "\n" not in reason for name, reason in got.skipped)
