"""Source -> arrays: archive (members, refusals), the tar reader against tarfile alone, png (decoding, its
fast path against Pillow's full path), and decode.read_images (labels, normalization, errors,
parallelism, progress, storage)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time
import zlib

import numpy as np
import pytest
from fixtures import (
    ABSOLUTE_MEMBER,
    BAD_ARCHIVE_MEMBERS,
    make_fixture_archive,
    make_fixture_folder,
    make_glyph_images,
    png_bytes,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from dnn_tf.data.archive import MAX_MEMBER_BYTES, check_source, class_of
from dnn_tf.data.decode import read_images
from dnn_tf.data.png import decode_png
from dnn_tf.notmnist import LETTERS, DataError, normalize


def _write_tar(path, members: dict[str, bytes], mode: str = "w:gz") -> str:
    with tarfile.open(path, mode) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


def test_normalize_is_the_course_formula():
    pixels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    course = ((pixels.astype(np.float64) - 255.0 / 2) / 255.0).astype(np.float32)  # the notebook's
    out = normalize(pixels)
    assert out.dtype == np.float32 and out.shape == (16, 16)
    np.testing.assert_array_equal(out, course)
    assert out.min() == -0.5 and out.max() == 0.5
    with pytest.raises(ValueError, match="0..255"):
        normalize(np.array([300]))


def test_decoded_values_labels_and_names_exact(fixture_archive):
    got = read_images(fixture_archive["path"], workers=1)
    assert got.images.dtype == np.float32 and got.images.shape == (200, 28, 28)
    assert got.labels.dtype == np.int32
    assert got.names == fixture_archive["names"]  # sorted by name, tar order is shuffled
    np.testing.assert_array_equal(got.labels, fixture_archive["labels"])
    expected = ((fixture_archive["images"].astype(np.float64) - 127.5) / 255.0).astype(np.float32)
    np.testing.assert_array_equal(got.images, expected)
    assert np.bincount(got.labels).tolist() == [20] * 10
    for name, label in zip(got.names, got.labels):
        assert name.split("/")[-2] == LETTERS[label]


def test_every_bad_member_is_skipped_with_its_reason(fixture_archive):
    got = read_images(fixture_archive["path"], workers=1)
    skipped = dict(got.skipped)
    bad = fixture_archive["bad"]
    assert set(skipped) == set(bad)
    assert len(got.skipped) == len(BAD_ARCHIVE_MEMBERS) + 1
    for name, word in bad.items():
        assert word in skipped[name], (name, skipped[name])
    assert skipped[ABSOLUTE_MEMBER] == "absolute path refused"
    assert not set(bad) & set(got.names)


def test_path_traversal_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    glyph = make_glyph_images(1)[0][0]
    work = tmp_path / "work" / "deep"
    work.mkdir(parents=True)
    archive = _write_tar(
        tmp_path / "evil.tar.gz",
        {"notMNIST/A/../../evil.png": png_bytes(glyph), "notMNIST/A/ok.png": png_bytes(glyph),
         "../outside.png": png_bytes(glyph)},
    )
    monkeypatch.chdir(work)
    before = sorted(p for p in tmp_path.rglob("*"))
    got = read_images(archive, workers=1)
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing extracted anywhere
    assert got.names == ["notMNIST/A/ok.png"]
    assert dict(got.skipped) == {
        "notMNIST/A/../../evil.png": "path with '..' refused",
        "../outside.png": "path with '..' refused",
    }


@pytest.mark.parametrize(
    "name, label, reason",
    [
        ("notMNIST_small/A/x.png", 0, ""),
        ("J/x.png", 9, ""),
        ("./root/C/x.png", 2, ""),
        ("root/K/x.png", None, "not inside"),
        ("a/b/A/x.png", None, "not inside"),
        ("x.png", None, "not inside"),
        ("/etc/A/x.png", None, "absolute"),
        ("C:/A/x.png", None, "absolute"),
        ("root/A/../B/x.png", None, "'..'"),
    ],
)
def test_class_of(name, label, reason):
    got_label, got_reason = class_of(name)
    assert got_label == label
    assert reason in got_reason and bool(reason) == bool(got_reason)


def test_archive_without_root_folder(tmp_path):
    info = make_fixture_archive(tmp_path / "flat.tar", per_class=3, extra_bad=False, root="")
    got = read_images(info["path"], workers=1)
    assert got.names[0] == "A/a00000-s0.png"
    np.testing.assert_array_equal(got.labels, info["labels"])
    np.testing.assert_array_equal(got.images, normalize(info["images"]))


def test_folder_gives_the_same_arrays_as_the_tar(tmp_path):
    tar_info = make_fixture_archive(tmp_path / "s.tar.gz", per_class=6, extra_bad=True, seed=3)
    folder_info = make_fixture_folder(tmp_path / "extracted", per_class=6, extra_bad=True, seed=3)
    from_tar = read_images(tar_info["path"], workers=1)
    from_folder = read_images(folder_info["path"], workers=1)
    assert from_folder.names == from_tar.names
    np.testing.assert_array_equal(from_folder.images, from_tar.images)
    np.testing.assert_array_equal(from_folder.labels, from_tar.labels)
    # the root folder itself also works (names then start at A/...)
    direct = read_images(tmp_path / "extracted" / "notMNIST_small", workers=1)
    np.testing.assert_array_equal(direct.images, from_tar.images)
    skipped = dict(from_folder.skipped)
    assert set(skipped) == set(folder_info["bad"])
    for name, word in folder_info["bad"].items():
        assert word in skipped[name], (name, skipped[name])


def test_one_and_two_workers_give_identical_results(fixture_archive):
    serial = read_images(fixture_archive["path"], workers=1)
    parallel = read_images(fixture_archive["path"], workers=2, chunk_size=16)  # 13 chunks over 2 processes
    assert parallel.names == serial.names
    assert parallel.skipped == serial.skipped
    np.testing.assert_array_equal(parallel.images, serial.images)
    np.testing.assert_array_equal(parallel.labels, serial.labels)


def test_mode_conversions(tmp_path):
    glyph = make_glyph_images(1)[0][0]
    wide = glyph.astype(np.uint16) * 257
    odd = np.full((28, 28), 1000, np.uint16)  # round(1000 / 257) = 4
    members = {
        "r/A/gray.png": png_bytes(glyph),
        "r/A/rgb.png": png_bytes(glyph, "RGB"),
        "r/A/rgba.png": png_bytes(glyph, "RGBA"),
        "r/A/la.png": png_bytes(glyph, "LA"),
        "r/A/p.png": png_bytes(glyph, "P"),
        "r/A/i16.png": png_bytes(wide),
        "r/A/odd16.png": png_bytes(odd),
        "r/A/bw.png": png_bytes((glyph > 127).astype(np.uint8) * 255, "1"),
    }
    got = read_images(_write_tar(tmp_path / "modes.tar.gz", members), workers=1)
    assert got.skipped == []
    by_name = dict(zip(got.names, got.images))
    for name in ("gray", "rgb", "rgba", "la", "p", "i16"):
        np.testing.assert_array_equal(by_name[f"r/A/{name}.png"], normalize(glyph), err_msg=name)
    np.testing.assert_array_equal(by_name["r/A/odd16.png"], normalize(np.full((28, 28), 4, np.uint8)))
    np.testing.assert_array_equal(by_name["r/A/bw.png"], normalize((glyph > 127).astype(np.uint8) * 255))


def test_decode_png_reasons():
    glyph = make_glyph_images(1)[0][0]
    assert decode_png(png_bytes(glyph))[1] == ""
    assert decode_png(b"")[1] == "empty file (0 bytes)"
    assert decode_png(b"GIF89a....")[1] == "not a PNG image"
    assert "wrong size 28x32" in decode_png(png_bytes(np.zeros((32, 28), np.uint8)))[1]
    assert decode_png(png_bytes(glyph)[:60])[1].startswith("corrupt PNG")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text("just text, not an archive\n"), "not a tar archive"),
        (lambda p: p.write_bytes(b""), "empty, not a tar"),
        (lambda p: p.write_bytes(gzip.compress(b"x" * 5000)), "not a tar archive"),
        (lambda p: _write_tar(p, {"stuff/readme.txt": b"hi", "stuff/x.png": b"png?"}), "no A..J folders"),
    ],
)
def test_bad_sources_raise_one_clear_error(tmp_path, make, match):
    path = tmp_path / "src.tar.gz"
    make(path)
    with pytest.raises(DataError, match=match) as e:
        read_images(path, workers=1)
    assert "\n" not in str(e.value)
    if match != "no A..J folders":  # check_source opens the source, it does not read it all
        with pytest.raises(DataError, match=match):
            check_source(path)


def test_truncated_archive_is_an_error(tmp_path, fixture_archive):
    data = open(fixture_archive["path"], "rb").read()
    path = tmp_path / "cut.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="truncated or corrupt"):
        read_images(path, workers=1)


def test_oversized_member_is_not_read(tmp_path):
    glyph = make_glyph_images(1)[0][0]
    members = {"r/B/big.png": bytes(MAX_MEMBER_BYTES + 10), "r/B/ok.png": png_bytes(glyph)}
    archive = _write_tar(tmp_path / "big.tar", members, mode="w")
    got = read_images(archive, workers=1)
    assert got.names == ["r/B/ok.png"] and got.labels.tolist() == [1]
    reason = f"too large ({MAX_MEMBER_BYTES + 10} bytes > {MAX_MEMBER_BYTES} byte limit)"
    assert got.skipped == [("r/B/big.png", reason)]


def test_progress_bar(capsys, fixture_archive, tmp_path):
    read_images(fixture_archive["path"], workers=1, progress=True)
    err = capsys.readouterr().err
    assert "decode notMNIST_small.tar.gz" in err and "100%" in err and "211 images" in err
    assert err.endswith("\n")  # the bar's final line is left in place
    read_images(fixture_archive["path"], workers=1, progress=False)
    assert capsys.readouterr().err == ""
    folder = make_fixture_folder(tmp_path / "x", per_class=2, extra_bad=False)["path"]
    read_images(folder, workers=1, progress=True)
    err = capsys.readouterr().err
    assert "100%" in err and "20/20" in err and "files/s" in err and "20 images" in err  # folders count files


def test_bad_arguments(fixture_archive):
    with pytest.raises(ValueError, match="workers"):
        read_images(fixture_archive["path"], workers=0)


@pytest.mark.shared
def test_shared_sample_decodes_completely(shared_sample):
    start = time.perf_counter()
    got = read_images(shared_sample, workers=min(2, os.cpu_count() or 1))
    assert time.perf_counter() - start < 30
    assert got.images.shape == (8000, 28, 28) and got.images.dtype == np.float32
    assert got.skipped == []
    assert np.bincount(got.labels, minlength=10).tolist() == [800] * 10
    assert got.images.min() >= -0.5 and got.images.max() <= 0.5
    assert all(n.startswith("notMNIST_sample/") for n in got.names)
    from dnn_tf.data import png
    from dnn_tf.data.archive import open_source

    scan = open_source(shared_sample)
    try:  # the real PNGs all take png's plain path
        assert all(png._plain_idat(data) is not None for _, label, data in scan if label is not None)
    finally:
        scan.close()


@pytest.mark.parametrize("suffix, mode", [(".tar.bz2", "w:bz2"), (".tar.xz", "w:xz"), (".tar", "w")])
def test_other_compressions(tmp_path, suffix, mode):
    images, labels = make_glyph_images(1, seed=2)
    members = {f"r/{LETTERS[lab]}/{i}.png": png_bytes(img) for i, (img, lab) in enumerate(zip(images, labels))}
    got = read_images(_write_tar(tmp_path / f"x{suffix}", members, mode=mode), workers=1)
    assert got.labels.tolist() == list(range(10))
    np.testing.assert_array_equal(got.images, normalize(images))


_TEST_PROCESS = os.getpid()


def _die_in_worker(blobs):
    """Stand-in for decode._decode_chunk: a worker killed mid-chunk (OOM killer, decoder crash)."""
    from dnn_tf.data.png import decode_png

    if os.getpid() != _TEST_PROCESS:
        os._exit(3)
    results = [decode_png(b) for b in blobs]
    good = [i for i, (px, _) in enumerate(results) if px is not None]
    stacked = np.stack([results[i][0] for i in good]) if good else np.zeros((0, 28, 28), np.uint8)
    return stacked, good, [(i, r) for i, (px, r) in enumerate(results) if px is None]


def test_dead_worker_processes_fall_back_to_decoding_here(fixture_archive, monkeypatch):
    import multiprocessing

    from dnn_tf.data import decode

    monkeypatch.setattr(decode, "_decode_chunk", _die_in_worker)  # picklable by name, inherited by fork
    monkeypatch.setattr(decode, "_mp_context", lambda: multiprocessing.get_context("fork"))
    with pytest.warns(RuntimeWarning, match="decoded the rest in this process"):
        got = read_images(fixture_archive["path"], workers=2, chunk_size=16)
    assert got.names == fixture_archive["names"]
    np.testing.assert_array_equal(got.images, normalize(fixture_archive["images"]))
    assert len(got.skipped) == len(fixture_archive["bad"])


def test_a_progress_bar_made_earlier_does_not_turn_fork_into_spawn(monkeypatch):
    import multiprocessing
    import sys
    import threading

    from dnn_tf import progress
    from dnn_tf.data import decode

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    progress.bar(3, "x", enabled=True).close()  # tqdm would leave its idle monitor thread running
    assert "tqdm_monitor" not in [t.name for t in threading.enumerate()]
    others = [t for t in threading.enumerate() if t is not threading.current_thread()]
    if others:
        pytest.skip(f"other threads run in this test process: {others}")
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # another test file may have imported it
    assert decode._mp_context().get_start_method() == "fork"
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait, daemon=True)
    worker.start()  # any other thread: spawn
    try:
        assert decode._mp_context().get_start_method() == "spawn"
    finally:
        stop.set()
        worker.join()


# ----------------------------------------------------------------------------- the bulk tar reader


def _reader(raw: bytes):
    from dnn_tf.data.tar_stream import TarReader

    return TarReader(io.BufferedReader(io.BytesIO(raw)), 1 << 30, lambda: DataError("limit"))


def _reference_members(raw: bytes, with_data: bool = True) -> tuple[list, str | None]:
    """tarfile alone: one TarFile reads every header (through the same guarded reader), extractfile the data.
    (name, kind, size, data of files or "cut") per member, then the error if any."""
    from dnn_tf.data.tar_stream import kind

    out: list = []
    try:
        with tarfile.open(fileobj=_reader(raw), mode="r:") as tar:
            for m in tar:
                if m.size < 0:  # what tar_stream.members adds to tarfile (a pax record can say so)
                    raise DataError(f"member {m.name[:100]!r} has a negative size")
                data = None
                if with_data and kind(m) == "file":
                    f = tar.extractfile(m)
                    try:  # in blocks: the reader refuses one read of more than a tar header could need
                        data = b"".join(iter(lambda: f.read(512), b""))  # noqa: B023 - f of this member
                    except tarfile.ReadError:
                        return out + [(m.name, kind(m), m.size, "cut")], None
                out.append((m.name, kind(m), m.size, data))
    except Exception as e:  # noqa: BLE001 - compared with what tar_stream raises
        return out, f"{type(e).__name__}: {e}"
    return out, None


def _stream_members(raw: bytes, with_data: bool = True, fast: bool = True) -> tuple[list, str | None]:
    """The same read by dnn_tf.data.tar_stream.members (data with TarReader.take, as archive.py reads it)."""
    from dnn_tf.data.tar_stream import members

    out: list = []
    reader = _reader(raw)
    try:
        for (name, kind, size, at), _ in members(reader, fast):
            data = reader.take(at, size) if with_data and kind == "file" else None
            if data is not None and len(data) != size:
                return out + [(name, kind, size, "cut")], None
            out.append((name, kind, size, data))
    except Exception as e:  # noqa: BLE001 - compared with what tarfile raises
        return out, f"{type(e).__name__}: {e}"
    return out, None


def _assert_reads_like_tarfile(raw: bytes) -> list:
    """Both ways of tar_stream.members (bulk plain headers or not), reading the data or skipping it, give
    tarfile's members, data and error."""
    for with_data in (False, True):
        reference = _reference_members(raw, with_data)
        for fast in (True, False):
            assert _stream_members(raw, with_data, fast) == reference, (with_data, fast)
    return reference[0]


def _random_tar(draw_members, fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, size, extra in draw_members:
            info = tarfile.TarInfo(name)
            info.type = {"file": tarfile.REGTYPE, "old-file": tarfile.AREGTYPE, "dir": tarfile.DIRTYPE,
                         "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE, "chr": tarfile.CHRTYPE,
                         "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                info.linkname = "../" * extra + "target"
            if kind in ("file", "old-file"):
                info.size = size
            if extra and fmt == tarfile.PAX_FORMAT:
                info.pax_headers = {"comment": "x" * extra}
            info.mtime, info.uid = extra * 1000, extra
            tar.addfile(info, io.BytesIO(bytes([extra % 256]) * size) if info.size else None)
    return buf.getvalue()


_NAMES = st.one_of(
    st.sampled_from(["r/A/a.png", "A/b.png", "./r/B/c.png", "r/A/", "r/x.txt", "é/A/ü.png", "r/A/../x.png"]),
    st.builds(lambda n, tail: "r/" + "d/" * n + tail, st.integers(0, 90), st.sampled_from(["A/x.png", "y.png"])),
)
_MEMBERS = st.lists(st.tuples(_NAMES, st.sampled_from(["file", "file", "old-file", "dir", "sym", "hard", "chr",
                                                       "fifo"]),
                              st.sampled_from([0, 1, 511, 512, 513, 1500]), st.integers(0, 3)), min_size=1, max_size=8)
_HEADER_BYTES = st.sampled_from([b"0", b"7", b"8", b" ", b"\0", b"+", b"-", b"_", b"x", b"\x80", b"\xff", b"/"])


def _fix_checksum(raw: bytearray, at: int) -> None:
    """Rewrites the checksum of the header at ``at`` as tarfile writes it ("%06o\\0 ")."""
    raw[at + 148:at + 156] = b" " * 8
    raw[at + 148:at + 156] = b"%06o\0 " % sum(raw[at:at + 512])


@settings(max_examples=300, deadline=None, database=None)
@given(members=_MEMBERS, fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]),
       damage=st.sampled_from(["none", "header byte", "number field", "number field, checksum fixed", "any byte",
                               "cut"]),
       data=st.data())
def test_property_bulk_tar_reader_reads_what_tarfile_reads(members, fmt, damage, data):
    """Random layouts (long names, prefixes, pax records, every member type), intact or damaged: a header
    byte flipped, a number field rewritten with odd characters (checksum fixed or not), any byte
    flipped, the archive cut anywhere. Members, sizes, data and the error (type and message) must be
    tarfile's."""
    try:
        raw = bytearray(_random_tar(members, fmt))
    except ValueError:  # a name the ustar format cannot hold
        assume(False)
    headers = [at for at in range(0, len(raw), 512) if raw[at + 257:at + 262] == b"ustar"]
    at = headers[data.draw(st.integers(0, len(headers) - 1))] if headers else 0
    if damage == "header byte":
        raw[at + data.draw(st.integers(0, 511))] ^= data.draw(st.integers(1, 255))
    elif damage.startswith("number field"):
        pos = at + data.draw(st.integers(100, 155))
        raw[pos:pos + 1] = data.draw(_HEADER_BYTES)
        if damage.endswith("fixed"):
            _fix_checksum(raw, at)
    elif damage == "any byte":
        raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    elif damage == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    _assert_reads_like_tarfile(bytes(raw))


@pytest.mark.parametrize("field", [(100, 108), (108, 116), (116, 124), (124, 136), (136, 148), (148, 156),
                                   (329, 337), (337, 345)],
                         ids=["mode", "uid", "gid", "size", "mtime", "chksum", "devmajor", "devminor"])
def test_bulk_tar_reader_on_every_number_field_rewritten(field):
    """Each number field of the third header rewritten with an odd character (checksum fixed): what
    tarfile reads, whether it takes the header (spaces, NULs, underscores) or ends the archive there."""
    good = _random_tar([(f"r/A/{i}.png", "file", 600, 1) for i in range(5)], tarfile.GNU_FORMAT)
    at = 2 * (512 + 1024)
    for char in (b" ", b"\0", b"+", b"-", b"_", b"x", b"8", b"\x80", b"\xff"):  # "-": a negative size
        for pos in (field[0], (field[0] + field[1]) // 2, field[1] - 1):
            raw = bytearray(good)
            raw[at + pos:at + pos + 1] = char
            if field != (148, 156):
                _fix_checksum(raw, at)
            _assert_reads_like_tarfile(bytes(raw))


def test_bulk_tar_reader_on_long_names_and_many_members():
    members = [(f"notMNIST/{'ABCDEFGHIJ'[i % 10]}/{'n' * (i % 150)}{i}.png", "file", i % 700, i % 3)
               for i in range(3000)]
    for fmt in (tarfile.GNU_FORMAT, tarfile.PAX_FORMAT):
        raw = _random_tar(members, fmt)
        got, error = _stream_members(raw)
        assert error is None and len(got) == 3000
        assert _assert_reads_like_tarfile(raw) == got


def test_plain_headers_are_frombuf_on_the_headers_they_take():
    from dnn_tf.data.tar_stream import plain_headers

    members = [(f"r/{'dd/' * k}A/{'x' * m}.png", kind, m * 7, 1) for k in (0, 20, 45) for m in range(0, 95, 19)
               for kind in ("file", "old-file", "dir")]  # some need the ustar prefix field: left to tarfile
    raw = _random_tar(members, tarfile.USTAR_FORMAT)
    reader, taken = _reader(raw), 0
    for at in range(0, len(raw) - 512, 512):  # every block, headers or not
        for (name, kind, size, data_at), after in plain_headers(reader, at)[:1]:
            info = tarfile.TarInfo.frombuf(raw[at:at + 512], tarfile.ENCODING, "surrogateescape")
            assert (name, kind, size, data_at) == (info.name, "dir" if info.isdir() else "file", info.size, at + 512)
            assert after == at + 512 + (0 if info.isdir() else -(-size // 512) * 512)
            taken += 1
    plain = [at for at in range(0, len(raw), 512) if raw[at + 257:at + 262] == b"ustar" and not raw[at + 345]]
    assert taken == len(plain) and 0 < taken < len(members)


# ----------------------------------------------------------------------------- PNG fast path, batches, storage


def _with_crcs(png: bytes) -> bytes:
    """``png`` with every chunk's CRC recomputed (so damaged chunk data reaches the decoders)."""
    out, pos = bytearray(png[:8]), 8
    while pos + 12 <= len(png):
        n = int.from_bytes(png[pos:pos + 4], "big")
        body = png[pos + 4:pos + 8 + n]
        out += png[pos:pos + 8 + n] + zlib.crc32(body).to_bytes(4, "big")
        pos += 12 + n
    return bytes(out + png[pos:])


@settings(max_examples=150, deadline=None, database=None)
@given(data=st.data())
def test_property_png_fast_path_gives_the_full_paths_answer(monkeypatch_png, data):
    glyph = make_glyph_images(1, seed=data.draw(st.integers(0, 3)))[0][data.draw(st.integers(0, 9))]
    raw = bytearray(png_bytes(glyph))
    for pos, x in data.draw(st.lists(st.tuples(st.integers(8, len(raw) - 1), st.integers(1, 255)), max_size=3)):
        raw[pos] ^= x
    if data.draw(st.booleans()):
        raw = raw[:data.draw(st.integers(8, len(raw)))]
    raw = bytes(raw)
    if data.draw(st.booleans()):
        raw = _with_crcs(raw)
    if data.draw(st.booleans()):
        raw += data.draw(st.binary(max_size=40))
    fast = decode_png(raw)
    full = monkeypatch_png(raw)
    assert fast[1] == full[1] and (fast[0] is None) == (full[0] is None)
    if fast[0] is not None:
        np.testing.assert_array_equal(fast[0], full[0])


def test_png_cut_at_every_length_is_a_reason_not_a_crash(monkeypatch_png):
    """Every prefix (e.g. cut just after IHDR's data, before its CRC) gives the full path's answer."""
    raw = png_bytes(make_glyph_images(1)[0][0])
    at = raw.index(b"IDAT")
    # Cut inside the compressed pixels: corrupt. The compressed data complete: decoded (IDAT's CRC and IEND
    # may be cut). Cut inside zlib's trailing Adler-32 (4 bytes): whether Pillow decodes depends on its
    # version (13 does, 12.3 from its second byte); only the equality above is asserted there.
    adler = at + 4 + int.from_bytes(raw[at - 4:at], "big") - 4
    for n in range(8, len(raw)):
        fast, full = decode_png(raw[:n]), monkeypatch_png(raw[:n])
        assert fast[1] == full[1] and (fast[0] is None) == (full[0] is None), n
        if n < adler:
            assert fast[1].startswith("corrupt PNG"), n
        elif n >= adler + 4:
            assert fast[0] is not None, n
    assert decode_png(raw)[1] == ""


def test_png_with_damaged_image_data_gives_the_full_paths_answer(monkeypatch_png):
    """Every byte of the image data changed, the CRCs made right again: the plain path's decoder fails
    where Pillow's full path does, with the same reason, and decodes the same pixels where it does not."""
    raw = png_bytes(make_glyph_images(1)[0][0])
    at = raw.index(b"IDAT")
    failed = 0
    for pos in range(at + 4, at + 4 + int.from_bytes(raw[at - 4:at], "big")):
        damaged = bytearray(raw)
        damaged[pos] ^= 0x40
        damaged = _with_crcs(bytes(damaged))
        fast, full = decode_png(damaged), monkeypatch_png(damaged)
        assert fast[1] == full[1], pos
        if fast[0] is None:
            failed += 1
        else:
            np.testing.assert_array_equal(fast[0], full[0])
    assert failed > 0


@pytest.fixture(scope="module")
def monkeypatch_png():
    """decode_png with the plain fast path turned off (Pillow's Image.open path only)."""
    from dnn_tf.data import png

    def full(data):
        png.PLAIN_FAST_PATH = False
        try:
            return png.decode_png(data)
        finally:
            png.PLAIN_FAST_PATH = True
    return full


def test_decode_pngs_is_decode_png_on_each(fixture_archive):
    from dnn_tf.data import png
    from dnn_tf.data.png import decode_pngs

    glyphs = make_glyph_images(3, seed=4)[0]
    blobs = [png_bytes(g) for g in glyphs[:12]] + [b"", b"GIF89a", png_bytes(glyphs[0])[:70],
                                                   png_bytes(glyphs[1], "RGB"), png_bytes(glyphs[2], "P")]
    blobs.insert(3, blobs.pop(13))
    stacked, good, bad = decode_pngs(blobs)
    one_by_one = [decode_png(b) for b in blobs]
    assert all(png._plain_idat(png_bytes(g)) for g in glyphs)  # Pillow's 28x28 gray PNGs take the plain path
    assert good == [i for i, (px, _) in enumerate(one_by_one) if px is not None]
    assert bad == [(i, r) for i, (px, r) in enumerate(one_by_one) if px is None] and len(bad) == 3
    assert stacked.dtype == np.uint8 and stacked.flags.writeable
    np.testing.assert_array_equal(stacked, np.stack([one_by_one[i][0] for i in good]))
    assert decode_pngs([])[0].shape == (0, 28, 28)


def test_storage_blocks_gather_any_rows():
    from dnn_tf.data.decode import FIRST_BLOCK_ROWS, _Blocks

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (5 * FIRST_BLOCK_ROWS + 17, 28, 28), dtype=np.uint8)
    store, start = _Blocks(), 0
    for size in (1, FIRST_BLOCK_ROWS - 1, 3, 2 * FIRST_BLOCK_ROWS, 5, len(images)):
        store.append(images[start:start + size])
        start += size
    assert store.n == len(images) and [len(b) for b in store.blocks][:3] == [FIRST_BLOCK_ROWS, 2 * FIRST_BLOCK_ROWS,
                                                                            4 * FIRST_BLOCK_ROWS]
    index = rng.permutation(len(images))[:3000]
    np.testing.assert_array_equal(store.gather(index), images[index])
    assert store.gather(np.zeros(0, np.int64)).shape == (0, 28, 28)


def test_raw_pixels_classes_and_a_shared_pool(fixture_archive):
    from dnn_tf.data.decode import Workers

    reference = read_images(fixture_archive["path"], workers=1)
    with Workers(2) as pool:
        raw = read_images(fixture_archive["path"], normalized=False, pool=pool, chunk_size=16)
        executor = pool.executor()
        again = read_images(fixture_archive["path"], pool=pool, chunk_size=16)
        assert pool.executor() is executor  # the same processes served both reads
    assert raw.images.dtype == np.uint8 and raw.names == reference.names and raw.skipped == reference.skipped
    np.testing.assert_array_equal(normalize(raw.images), reference.images)
    np.testing.assert_array_equal(again.images, reference.images)
    for c in range(10):
        rows = raw.class_rows(c)
        assert [raw.names[i] for i in rows] == sorted(n for n, lab in zip(raw.names, raw.labels) if lab == c)
        np.testing.assert_array_equal(raw.take(rows), fixture_archive["images"][fixture_archive["labels"] == c])


def test_decoding_a_source_holds_it_as_uint8(tmp_path):
    """Memory: the decoded pixels as uint8 (with their blocks' slack), not as float32 (4x)."""
    import tracemalloc

    info = make_fixture_archive(tmp_path / "m.tar.gz", per_class=500, extra_bad=False, seed=8)
    tracemalloc.start()
    try:
        got = read_images(info["path"], workers=1, normalized=False)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    n = len(got.names)
    assert n == 5000 and peak < n * 28 * 28 * 4 * 0.75, peak  # float32 arrays alone would be n * 3136 bytes
