"""prepare: per-class pickles, balanced course splits, duplicates, reuse and rebuilds, the report."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle

import numpy as np
import pytest
from fixtures import make_fixture_archive, make_fixture_folder, make_glyph_images

from dnn_tf import files
from dnn_tf.data.dataset import COURSE_KEYS, SANITIZED_KEYS, validate
from dnn_tf.data.prepare import format_report, prepare
from dnn_tf.data.safe_pickle import load_pickle
from dnn_tf.notmnist import LETTERS, DataError, normalize


@pytest.fixture
def archive(tmp_path):
    return make_fixture_archive(tmp_path / "notMNIST_small.tar.gz", per_class=20, seed=1)


def _names_by_bytes(info: dict) -> dict[bytes, str]:
    return {normalize(img).tobytes(): name for img, name in zip(info["images"], info["names"])}


def test_prepare_single_archive_writes_course_pickles(tmp_path, archive):
    out = tmp_path / "out"
    report = prepare(archive["path"], out_dir=out, workers=1, progress=False)

    # per-class pickles, course format, readable with plain pickle
    for c, letter in enumerate(LETTERS):
        with open(out / "notMNIST_small" / f"{letter}.pickle", "rb") as f:
            arr = pickle.load(f)
        np.testing.assert_array_equal(arr, normalize(archive["images"][archive["labels"] == c]))
        assert arr.dtype == np.float32

    with open(out / "notMNIST.pickle", "rb") as f:
        d = pickle.load(f)
    assert list(d) == list(COURSE_KEYS) + list(SANITIZED_KEYS)
    validate(d)
    sizes = {"train": 160, "valid": 20, "test": 20}
    for split, n in sizes.items():
        assert d[f"{split}_dataset"].shape == (n, 28, 28) and d[f"{split}_dataset"].dtype == np.float32
        assert d[f"{split}_labels"].dtype == np.int32
        assert np.bincount(d[f"{split}_labels"], minlength=10).tolist() == [n // 10] * 10
    assert report["sizes"] == dict(sizes, valid_sanitized=20, test_sanitized=20)
    assert report["per_class"]["train"] == {letter: 16 for letter in LETTERS}

    # labels still match the images; splits are disjoint by member name and use every image
    by_bytes = _names_by_bytes(archive)
    names = {}
    for split in sizes:
        names[split] = [by_bytes[img.tobytes()] for img in d[f"{split}_dataset"]]
        assert [n.split("/")[-2] for n in names[split]] == [LETTERS[lab] for lab in d[f"{split}_labels"]]
        assert len(set(names[split])) == len(names[split])
    assert not set(names["train"]) & set(names["valid"])
    assert not set(names["train"]) & set(names["test"])
    assert not set(names["valid"]) & set(names["test"])
    assert set(names["train"]) | set(names["valid"]) | set(names["test"]) == set(archive["names"])

    # report: sources, skipped files, json on disk
    src = report["sources"]["train"]
    assert src["sha256"] == hashlib.sha256(open(archive["path"], "rb").read()).hexdigest()
    assert src["size"] == os.path.getsize(archive["path"])
    assert src["per_class"] == {letter: 20 for letter in LETTERS}
    assert report["skipped"]["count"] == len(archive["bad"])
    assert {f["name"] for f in report["skipped"]["files"]} == set(archive["bad"])
    assert all(f["reason"] for f in report["skipped"]["files"])
    assert report["workers"] == 1 and report["decode"]["images_per_second"] > 0
    assert {"read", "merge", "overlap", "write", "total"} <= set(report["seconds"])
    assert json.loads((out / "prepare_report.json").read_text()) == json.loads(json.dumps(report))


def test_prepare_is_deterministic_and_seeded(tmp_path, archive):
    a = prepare(archive["path"], out_dir=tmp_path / "a", workers=1, progress=False)
    b = prepare(archive["path"], out_dir=tmp_path / "b", workers=2, progress=False, seed=133)
    c = prepare(archive["path"], out_dir=tmp_path / "c", workers=1, progress=False, seed=7)
    da, db, dc = (load_pickle(tmp_path / x / "notMNIST.pickle") for x in "abc")
    for key in COURSE_KEYS:
        np.testing.assert_array_equal(da[key], db[key])
    assert not np.array_equal(da["train_labels"], dc["train_labels"])
    assert a["sizes"] == b["sizes"] == c["sizes"]


def test_folder_source_gives_the_same_pickle_as_the_tar(tmp_path):
    tar = make_fixture_archive(tmp_path / "notMNIST_small.tar.gz", per_class=10, seed=4)
    folder = make_fixture_folder(tmp_path / "x", per_class=10, seed=4)
    prepare(tar["path"], out_dir=tmp_path / "t", workers=1, progress=False)
    prepare(folder["path"] + "/notMNIST_small", out_dir=tmp_path / "f", workers=1, progress=False)
    dt, df = load_pickle(tmp_path / "t" / "notMNIST.pickle"), load_pickle(tmp_path / "f" / "notMNIST.pickle")
    for key in COURSE_KEYS + SANITIZED_KEYS:
        np.testing.assert_array_equal(dt[key], df[key])
    assert (tmp_path / "f" / "notMNIST_small" / "A.pickle").exists()


def test_duplicate_counts_equal_the_planted_ones(tmp_path):
    train = make_fixture_archive(tmp_path / "big.tar.gz", per_class=10, extra_bad=False, duplicates=10, seed=2)
    glyphs, labels = make_glyph_images(5, seed=3)
    copied = [train["names"].index(f"notMNIST_small/{letter}/{letter.lower()}00003-s2.png") for letter in LETTERS]
    test_images = np.concatenate([glyphs, train["images"][copied]])
    test_labels = np.concatenate([labels, train["labels"][copied]])
    test = make_fixture_archive(tmp_path / "small.tar.gz", extra_bad=False, seed=3, images=test_images,
                                labels=test_labels)
    report = prepare(train["path"], test["path"], out_dir=tmp_path / "out", train_size=110, valid_size=0,
                     test_size=60, workers=1, progress=False)
    exact, near = report["duplicates"]["exact"], report["duplicates"]["near"]
    assert exact["within"] == {"train": 10, "valid": 0, "test": 0}
    assert exact["across"] == {"train-valid": 0, "train-test": 10, "valid-test": 0}
    assert near["within"]["train"] >= 10 and near["across"]["train-test"] >= 10
    assert report["sizes"]["test_sanitized"] == 60 - near["across"]["train-test"]
    assert report["mode"] == "two-archive"
    assert (tmp_path / "out" / "big" / "J.pickle").exists() and (tmp_path / "out" / "small" / "J.pickle").exists()
    d = load_pickle(tmp_path / "out" / "notMNIST.pickle")
    train_rows = {img.tobytes() for img in d["train_dataset"]}
    assert not any(img.tobytes() in train_rows for img in d["test_dataset_sanitized"])
    assert sum(img.tobytes() in train_rows for img in d["test_dataset"]) == 10


def test_single_archive_duplicate_counts_match_brute_force(tmp_path):
    info = make_fixture_archive(tmp_path / "dups.tar.gz", per_class=10, extra_bad=False, duplicates=20, seed=6)
    report = prepare(info["path"], out_dir=tmp_path / "o", valid_size=30, test_size=30, workers=1, progress=False)
    d = load_pickle(tmp_path / "o" / "notMNIST.pickle")
    rows = {s: [img.tobytes() for img in d[f"{s}_dataset"]] for s in ("train", "valid", "test")}
    exact = report["duplicates"]["exact"]
    for s, r in rows.items():
        assert exact["within"][s] == len(r) - len(set(r))
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert exact["across"][f"{a}-{b}"] == sum(x in set(rows[a]) for x in rows[b])
    total = sum(exact["within"].values()) + sum(exact["across"].values())
    assert total >= 20  # every planted copy shows up somewhere (more if one image repeats across splits)


def test_reuse_without_force_and_rebuild_with_force(tmp_path, archive, caplog):
    caplog.set_level(logging.INFO, logger="dnn_tf")
    out = tmp_path / "out"
    merged, class_a = out / "notMNIST.pickle", out / "notMNIST_small" / "A.pickle"
    first = prepare(archive["path"], out_dir=out, workers=1, progress=False)
    assert first["reused"] == {"class_pickles": {"train": False}, "merged_pickle": False}
    old = 1_000_000_000
    for p in (merged, class_a):
        os.utime(p, (old, old))

    caplog.clear()
    again = prepare(archive["path"], out_dir=out, workers=1, progress=False)
    assert again["reused"] == {"class_pickles": {"train": True}, "merged_pickle": True}
    assert again["sizes"] == first["sizes"] and again["duplicates"] == first["duplicates"]
    assert os.stat(merged).st_mtime == old and os.stat(class_a).st_mtime == old
    assert any("reusing" in m for m in caplog.messages)

    other = prepare(archive["path"], out_dir=out, train_size=100, workers=1, progress=False)
    assert other["reused"] == {"class_pickles": {"train": True}, "merged_pickle": False}
    assert other["sizes"]["train"] == 100 and os.stat(merged).st_mtime != old
    assert os.stat(class_a).st_mtime == old

    forced = prepare(archive["path"], out_dir=out, train_size=100, workers=1, progress=False, force=True)
    assert forced["reused"] == {"class_pickles": {"train": False}, "merged_pickle": False}
    assert os.stat(class_a).st_mtime != old


def test_changed_source_rebuilds_class_pickles(tmp_path, archive):
    out = tmp_path / "out"
    prepare(archive["path"], out_dir=out, workers=1, progress=False)
    st = os.stat(archive["path"])
    os.utime(archive["path"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    report = prepare(archive["path"], out_dir=out, workers=1, progress=False)
    assert report["reused"] == {"class_pickles": {"train": False}, "merged_pickle": False}


@pytest.mark.parametrize("victim", ["notMNIST.pickle", "notMNIST_small/C.pickle"])
def test_truncated_existing_pickle_is_rebuilt_not_trusted(tmp_path, archive, victim, caplog):
    caplog.set_level(logging.INFO, logger="dnn_tf")
    out = tmp_path / "out"
    prepare(archive["path"], out_dir=out, workers=1, progress=False)
    path = out / victim
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    caplog.clear()
    report = prepare(archive["path"], out_dir=out, workers=1, progress=False)
    assert any("rebuilding" in m for m in caplog.messages)
    if victim == "notMNIST.pickle":
        assert report["reused"] == {"class_pickles": {"train": True}, "merged_pickle": False}
    else:
        assert report["reused"]["class_pickles"] == {"train": False}
    validate(load_pickle(out / "notMNIST.pickle"))
    assert len(load_pickle(out / "notMNIST_small" / "C.pickle")) == 20


def test_prepare_errors(tmp_path, archive):
    with pytest.raises(DataError, match="does not exist"):
        prepare(tmp_path / "nope.tar.gz", out_dir=tmp_path / "o", progress=False)
    with pytest.raises(DataError, match=r"train 200,000 \+ valid 10,000 images need 21,000 per class"):
        prepare(archive["path"], archive["path"], out_dir=tmp_path / "o", workers=1, progress=False)
    too_big = r"train 280 \+ valid 20 \+ test 20 images need 32 per class, but class A has only 20"
    with pytest.raises(DataError, match=too_big):
        prepare(archive["path"], out_dir=tmp_path / "o", train_size=280, workers=1, progress=False)
    assert not (tmp_path / "o" / "notMNIST.pickle").exists()


def test_format_report(tmp_path, archive):
    report = prepare(archive["path"], out_dir=tmp_path, workers=1, progress=False)
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0].startswith("wrote ") and "single-archive" in lines[0]
    assert "train 160, valid 20, test 20" in text
    assert "skipped 11 files" in text and "exact duplicates" in text and "near duplicates" in text
    table = lines[-10:]
    assert [row.split()[0] for row in table] == list(LETTERS)
    assert all(row.split()[1:4] == ["16", "2", "2"] for row in table)
    assert len(lines) < 25


def test_prepare_memory_stays_near_one_copy_of_the_splits(tmp_path):
    """Peak traced memory of a whole prepare (decode in this process) against the float32 images it
    writes: the pixels are held as uint8, the classes are written one at a time, the splits are filled
    in place and pickled without a copy. (The first version peaked at 3.7x, its maybe_pickle at 2x.)"""
    import tracemalloc

    from dnn_tf.data.class_pickles import maybe_pickle

    info = make_fixture_archive(tmp_path / "notMNIST_small.tar.gz", per_class=600, extra_bad=False, seed=3)
    float_bytes = 6000 * 28 * 28 * 4
    tracemalloc.start()
    try:
        prepare(info["path"], out_dir=tmp_path / "out", workers=1, progress=False)
        prepare_peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        maybe_pickle(info["path"], tmp_path / "classes", force=True, workers=1)
        classes_peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert prepare_peak < 2 * float_bytes, prepare_peak / float_bytes
    assert classes_peak < float_bytes, classes_peak / float_bytes


def test_pickles_are_protocol_5_synced_in_blocks_and_load_with_plain_pickle(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "WRITE_BLOCK", 1000)  # many blocks: every sync and its page-cache drop
    synced = []
    real_sync = files._Synced.sync
    monkeypatch.setattr(files._Synced, "sync", lambda self: (synced.append(self._written), real_sync(self)))
    obj = {"a": np.arange(5000, dtype=np.float32).reshape(-1, 10), "b": np.arange(7, dtype=np.int32), "c": b"x" * 3}
    files.save_pickle(tmp_path / "d.pickle", obj)
    raw = (tmp_path / "d.pickle").read_bytes()
    assert raw == pickle.dumps(obj, protocol=5) and raw[1] == 5  # what a plain pickle.dump writes
    assert len(synced) >= len(raw) // 1000 and synced[-1] == len(raw)
    with open(tmp_path / "d.pickle", "rb") as f:
        back = pickle.load(f)
    assert back.keys() == obj.keys() and back["c"] == obj["c"]
    for key in ("a", "b"):
        assert back[key].dtype == obj[key].dtype
        np.testing.assert_array_equal(back[key], obj[key])
    assert not list(tmp_path.glob("*.tmp"))
