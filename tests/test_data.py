"""data: safe pickles, validation, overlap, split sizes, prepare (pickles, balance, reuse, report)."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import time

import numpy as np
import pytest
from fixtures import make_fixture_archive, make_fixture_folder, make_glyph_images

from dnn_tf.archive import LETTERS, normalize
from dnn_tf.data import (
    COURSE_KEYS,
    SANITIZED_KEYS,
    DataError,
    find_overlaps,
    format_report,
    load_pickle,
    near_signature,
    plan_sizes,
    prepare,
    validate_dataset,
)


def quiet(*args, **kwargs):
    pass


# ----------------------------------------------------------------------------- load_pickle


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


# ----------------------------------------------------------------------------- validate_dataset


def test_validate_dataset_accepts_the_format(tiny_dataset):
    validate_dataset(tiny_dataset)
    validate_dataset({k: tiny_dataset[k] for k in COURSE_KEYS})  # sanitized keys are optional


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
def test_validate_dataset_rejects(tiny_dataset, change, match):
    d = dict(tiny_dataset)
    change(d)
    with pytest.raises(DataError, match=match):
        validate_dataset(d)


# ----------------------------------------------------------------------------- overlap


def _distinct_pool(n: int, seed: int = 5) -> np.ndarray:
    """n glyphs (uint8) whose near signatures are pairwise different."""
    images, _ = make_glyph_images(n // 10 + 4, seed)
    sig = near_signature(images)
    _, first = np.unique(sig, axis=0, return_index=True)
    pool = images[np.sort(first)]
    assert len(pool) >= n
    return pool[np.random.default_rng(seed).permutation(len(pool))[:n]]


def _perturb(img: np.ndarray) -> np.ndarray:
    """A near copy: a few background pixels raised slightly (each 2x2 block mean stays in its bin)."""
    out = img.copy()
    blocks = img.reshape(14, 2, 14, 2).sum(axis=(1, 3))
    rows, cols = np.nonzero(blocks == 0)
    for r, c in list(zip(rows, cols))[:5]:
        out[2 * r, 2 * c] = 9
    assert (out != img).sum() == 5
    return out


def test_overlap_counts_exact_and_near():
    pool = _distinct_pool(60)
    train = np.concatenate([pool[:30], pool[[0, 1]]])  # 2 within-train copies
    valid = np.concatenate([pool[30:40], pool[[2, 3, 4]]])  # 3 copies of train
    near_copy = _perturb(pool[5])
    test = np.concatenate([pool[40:50], pool[[6, 7, 8, 9]], pool[[30]], near_copy[None]])  # 4 train, 1 valid, 1 near
    counts, valid_keep, test_keep = find_overlaps(normalize(train), normalize(valid), normalize(test))
    assert counts["exact"] == {
        "within": {"train": 2, "valid": 0, "test": 0},
        "across": {"train-valid": 3, "train-test": 4, "valid-test": 1},
    }
    assert counts["near"] == {
        "within": {"train": 2, "valid": 0, "test": 0},
        "across": {"train-valid": 3, "train-test": 5, "valid-test": 1},
    }
    assert "2x2" in counts["criterion"] and "4 gray levels" in counts["criterion"]
    assert valid_keep.tolist() == [True] * 10 + [False] * 3
    assert test_keep.tolist() == [True] * 10 + [False] * 6


def test_near_signature_separates_different_glyphs_and_groups_perturbed_ones():
    pool = _distinct_pool(20)
    sig = near_signature(normalize(pool))
    assert sig.shape == (20, 196) and sig.dtype == np.uint8 and sig.max() <= 3
    assert len(np.unique(sig, axis=0)) == 20
    np.testing.assert_array_equal(near_signature(_perturb(pool[0])[None]), near_signature(pool[:1]))
    np.testing.assert_array_equal(near_signature(pool), sig)  # uint8 input gives the same signature
    every = np.random.default_rng(1).integers(0, 256, (500, 28, 28), dtype=np.uint8)
    every[:, :2, :2] = [[0, 64], [128, 63]]  # a block summing exactly to the bin edge 255 | 256
    np.testing.assert_array_equal(near_signature(normalize(every)), near_signature(every))


def test_overlap_is_fast_on_course_sized_arrays():
    rng = np.random.default_rng(0)
    train = normalize(rng.integers(0, 256, (200_000, 28, 28), dtype=np.uint8))
    small = normalize(rng.integers(0, 256, (10_000, 28, 28), dtype=np.uint8))
    test = small.copy()
    test[:7] = train[:7]
    start = time.process_time()  # CPU seconds: not inflated by other jobs sharing the machine
    counts, valid_keep, test_keep = find_overlaps(train, small, test)
    seconds = time.process_time() - start
    assert seconds < 10, seconds
    assert counts["exact"]["across"] == {"train-valid": 0, "train-test": 7, "valid-test": 10_000 - 7}
    assert test_keep.sum() == 0 and valid_keep.all()


# ----------------------------------------------------------------------------- plan_sizes


def test_plan_sizes_single_archive_defaults_and_options():
    assert plan_sizes([800] * 10, None, log=quiet) == {"train": 640, "valid": 80, "test": 80}
    assert plan_sizes([800] * 9 + [790], None, log=quiet) == {"train": 632, "valid": 79, "test": 79}
    assert plan_sizes([800] * 10, None, train_size=1000, log=quiet) == {"train": 100, "valid": 80, "test": 80}
    assert plan_sizes([800] * 10, None, 6000, 1000, 1000, log=quiet) == {"train": 600, "valid": 100, "test": 100}
    notes = []
    assert plan_sizes([800] * 10, None, 1005, log=notes.append)["train"] == 100
    assert "not a multiple of 10: using 100 per class (1000 images)" in notes[0]


def test_plan_sizes_two_archives_defaults_are_the_course_sizes():
    assert plan_sizes([52_900] * 10, [1_870] * 10, log=quiet) == {"train": 20_000, "valid": 1_000, "test": 1_000}
    assert plan_sizes([30] * 10, [10] * 10, 200, 0, 50, log=quiet) == {"train": 20, "valid": 0, "test": 5}


@pytest.mark.parametrize(
    "args, match",
    [
        (([800] * 10, None, 8000),
         r"train 8,000 \+ valid 800 \+ test 800 images need 960 per class, but class A has only 800"),
        (([800] * 10, None, None, 4000, 4000), "no images left for training"),
        (([30] * 10, [10] * 10), r"train 200,000 \+ valid 10,000 images need 21,000 per class"),
        (([30] * 10, [10] * 5 + [4] * 5, 200, 0, 100),
         "test 100 images need 10 per class from the test archive, but class F has only 4"),
        (([800] * 10, None, 5), "train_size=5 is smaller than the 10 classes"),
        (([800] * 10, None, -10), "train_size must be a non-negative integer"),
    ],
)
def test_plan_sizes_errors_name_the_numbers(args, match):
    with pytest.raises(DataError, match=match):
        plan_sizes(*args, log=quiet)


# ----------------------------------------------------------------------------- prepare


@pytest.fixture
def archive(tmp_path):
    return make_fixture_archive(tmp_path / "notMNIST_small.tar.gz", per_class=20, seed=1)


def _names_by_bytes(info: dict) -> dict[bytes, str]:
    return {normalize(img).tobytes(): name for img, name in zip(info["images"], info["names"])}


def test_prepare_single_archive_writes_course_pickles(tmp_path, archive):
    out = tmp_path / "out"
    report = prepare(archive["path"], out_dir=out, workers=1, progress=False, log=quiet)

    # per-class pickles, course format, readable with plain pickle
    for c, letter in enumerate(LETTERS):
        with open(out / "notMNIST_small" / f"{letter}.pickle", "rb") as f:
            arr = pickle.load(f)
        np.testing.assert_array_equal(arr, normalize(archive["images"][archive["labels"] == c]))
        assert arr.dtype == np.float32

    with open(out / "notMNIST.pickle", "rb") as f:
        d = pickle.load(f)
    assert list(d) == list(COURSE_KEYS) + list(SANITIZED_KEYS)
    validate_dataset(d)
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
        assert [n.split("/")[-2] for n in names[split]] == [LETTERS[l] for l in d[f"{split}_labels"]]
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
    a = prepare(archive["path"], out_dir=tmp_path / "a", workers=1, progress=False, log=quiet)
    b = prepare(archive["path"], out_dir=tmp_path / "b", workers=2, progress=False, log=quiet, seed=133)
    c = prepare(archive["path"], out_dir=tmp_path / "c", workers=1, progress=False, log=quiet, seed=7)
    da, db, dc = (load_pickle(tmp_path / x / "notMNIST.pickle") for x in "abc")
    for key in COURSE_KEYS:
        np.testing.assert_array_equal(da[key], db[key])
    assert not np.array_equal(da["train_labels"], dc["train_labels"])
    assert a["sizes"] == b["sizes"] == c["sizes"]


def test_folder_source_gives_the_same_pickle_as_the_tar(tmp_path):
    tar = make_fixture_archive(tmp_path / "notMNIST_small.tar.gz", per_class=10, seed=4)
    folder = make_fixture_folder(tmp_path / "x", per_class=10, seed=4)
    prepare(tar["path"], out_dir=tmp_path / "t", workers=1, progress=False, log=quiet)
    prepare(folder["path"] + "/notMNIST_small", out_dir=tmp_path / "f", workers=1, progress=False, log=quiet)
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
                     test_size=60, workers=1, progress=False, log=quiet)
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
    report = prepare(info["path"], out_dir=tmp_path / "o", valid_size=30, test_size=30, workers=1, progress=False,
                     log=quiet)
    d = load_pickle(tmp_path / "o" / "notMNIST.pickle")
    rows = {s: [img.tobytes() for img in d[f"{s}_dataset"]] for s in ("train", "valid", "test")}
    exact = report["duplicates"]["exact"]
    for s, r in rows.items():
        assert exact["within"][s] == len(r) - len(set(r))
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert exact["across"][f"{a}-{b}"] == sum(x in set(rows[a]) for x in rows[b])
    total = sum(exact["within"].values()) + sum(exact["across"].values())
    assert total >= 20  # every planted copy shows up somewhere (more if one image repeats across splits)


def test_reuse_without_force_and_rebuild_with_force(tmp_path, archive):
    out = tmp_path / "out"
    merged, class_a = out / "notMNIST.pickle", out / "notMNIST_small" / "A.pickle"
    first = prepare(archive["path"], out_dir=out, workers=1, progress=False, log=quiet)
    assert first["reused"] == {"class_pickles": {"train": False}, "merged_pickle": False}
    old = 1_000_000_000
    for p in (merged, class_a):
        os.utime(p, (old, old))

    messages = []
    again = prepare(archive["path"], out_dir=out, workers=1, progress=False, log=messages.append)
    assert again["reused"] == {"class_pickles": {"train": True}, "merged_pickle": True}
    assert again["sizes"] == first["sizes"] and again["duplicates"] == first["duplicates"]
    assert os.stat(merged).st_mtime == old and os.stat(class_a).st_mtime == old
    assert any("reusing" in m for m in messages)

    other = prepare(archive["path"], out_dir=out, train_size=100, workers=1, progress=False, log=quiet)
    assert other["reused"] == {"class_pickles": {"train": True}, "merged_pickle": False}
    assert other["sizes"]["train"] == 100 and os.stat(merged).st_mtime != old
    assert os.stat(class_a).st_mtime == old

    forced = prepare(archive["path"], out_dir=out, train_size=100, workers=1, progress=False, log=quiet, force=True)
    assert forced["reused"] == {"class_pickles": {"train": False}, "merged_pickle": False}
    assert os.stat(class_a).st_mtime != old


def test_changed_source_rebuilds_class_pickles(tmp_path, archive):
    out = tmp_path / "out"
    prepare(archive["path"], out_dir=out, workers=1, progress=False, log=quiet)
    st = os.stat(archive["path"])
    os.utime(archive["path"], ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    report = prepare(archive["path"], out_dir=out, workers=1, progress=False, log=quiet)
    assert report["reused"] == {"class_pickles": {"train": False}, "merged_pickle": False}


@pytest.mark.parametrize("victim", ["notMNIST.pickle", "notMNIST_small/C.pickle"])
def test_truncated_existing_pickle_is_rebuilt_not_trusted(tmp_path, archive, victim):
    out = tmp_path / "out"
    prepare(archive["path"], out_dir=out, workers=1, progress=False, log=quiet)
    path = out / victim
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    messages = []
    report = prepare(archive["path"], out_dir=out, workers=1, progress=False, log=messages.append)
    assert any("rebuilding" in m for m in messages)
    if victim == "notMNIST.pickle":
        assert report["reused"] == {"class_pickles": {"train": True}, "merged_pickle": False}
    else:
        assert report["reused"]["class_pickles"] == {"train": False}
    validate_dataset(load_pickle(out / "notMNIST.pickle"))
    assert len(load_pickle(out / "notMNIST_small" / "C.pickle")) == 20


def test_prepare_errors(tmp_path, archive):
    with pytest.raises(DataError, match="does not exist"):
        prepare(tmp_path / "nope.tar.gz", out_dir=tmp_path / "o", progress=False, log=quiet)
    with pytest.raises(DataError, match=r"train 200,000 \+ valid 10,000 images need 21,000 per class"):
        prepare(archive["path"], archive["path"], out_dir=tmp_path / "o", workers=1, progress=False, log=quiet)
    too_big = r"train 280 \+ valid 20 \+ test 20 images need 32 per class, but class A has only 20"
    with pytest.raises(DataError, match=too_big):
        prepare(archive["path"], out_dir=tmp_path / "o", train_size=280, workers=1, progress=False, log=quiet)
    assert not (tmp_path / "o" / "notMNIST.pickle").exists()


def test_format_report(tmp_path, archive):
    report = prepare(archive["path"], out_dir=tmp_path, workers=1, progress=False, log=quiet)
    text = format_report(report)
    lines = text.splitlines()
    assert lines[0].startswith("wrote ") and "single-archive" in lines[0]
    assert "train 160, valid 20, test 20" in text
    assert "skipped 11 files" in text and "exact duplicates" in text and "near duplicates" in text
    table = lines[-10:]
    assert [row.split()[0] for row in table] == list(LETTERS)
    assert all(row.split()[1:4] == ["16", "2", "2"] for row in table)
    assert len(lines) < 25
