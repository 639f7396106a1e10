"""Source -> arrays: archive (members, refusals), png (decoding) and decode.read_images (labels,
normalization, errors, parallelism, progress)."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import time

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

from dnn_tf.archive import MAX_MEMBER_BYTES, check_source, class_of
from dnn_tf.decode import read_images
from dnn_tf.notmnist import LETTERS, DataError, normalize
from dnn_tf.png import decode_png


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


@pytest.mark.parametrize("suffix, mode", [(".tar.bz2", "w:bz2"), (".tar.xz", "w:xz"), (".tar", "w")])
def test_other_compressions(tmp_path, suffix, mode):
    images, labels = make_glyph_images(1, seed=2)
    members = {f"r/{LETTERS[l]}/{i}.png": png_bytes(img) for i, (img, l) in enumerate(zip(images, labels))}
    got = read_images(_write_tar(tmp_path / f"x{suffix}", members, mode=mode), workers=1)
    assert got.labels.tolist() == list(range(10))
    np.testing.assert_array_equal(got.images, normalize(images))


_TEST_PROCESS = os.getpid()


def _die_in_worker(blobs):
    """Stand-in for decode._decode_chunk: a worker killed mid-chunk (OOM killer, decoder crash)."""
    from dnn_tf.png import decode_png

    if os.getpid() != _TEST_PROCESS:
        os._exit(3)
    results = [decode_png(b) for b in blobs]
    good = [i for i, (px, _) in enumerate(results) if px is not None]
    stacked = np.stack([results[i][0] for i in good]) if good else np.zeros((0, 28, 28), np.uint8)
    return stacked, good, [(i, r) for i, (px, r) in enumerate(results) if px is None]


def test_dead_worker_processes_fall_back_to_decoding_here(fixture_archive, monkeypatch):
    import multiprocessing

    from dnn_tf import decode

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

    from dnn_tf import decode, progress

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
