"""benchmarks/prepare_throughput.py and prepare_full_scale.py with --tiny sizes, the course-style baseline
reader, and the full-scale archives (their shapes, cache and atomic build)."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from bench_support import RATIO_LINE, read


def test_prepare_throughput(tiny, capsys):
    out, lines = tiny("prepare_throughput", capsys)
    m = RATIO_LINE.match(lines[-1])
    assert m and m["name"] == "prepare_ours/course" and float(m["value"]) > 0
    data = read(out, "prepare_throughput")
    big = data["sources"][-1]
    assert big["images"] == 3000
    for name in ("course", "ours w=1", "ours w=2"):
        c = big["contenders"][name]
        assert c["images"] == 3000 and c["images_per_s"] > 0 and c["peak_rss"] > data["import_rss"] > 0
        assert c["array_bytes"] == 3000 * 28 * 28 * 4 + (3000 * 4 if name != "course" else 0)
    assert data["large_seconds"] == pytest.approx(529_114 / big["contenders"]["ours w=2"]["images_per_s"])
    d = data["dedup"]
    assert d["found"] == {"train-valid": d["planted"], "train-test": d["planted"]} and d["seconds"] > 0


def test_prepare_baseline_reads_like_the_course(tmp_path):
    import numpy as np
    import prepare_throughput as pt

    from dnn_tf.data.decode import read_images

    sys.path.insert(0, str(Path(__file__).parent))
    from fixtures import make_fixture_archive

    archive = tmp_path / "a.tar.gz"
    make_fixture_archive(archive, per_class=3, extra_bad=False)
    letters = pt.course_read(str(archive), str(tmp_path / "x"))
    ours = read_images(archive, workers=1)
    course = np.concatenate(letters)
    assert course.shape == ours.images.shape == (30, 28, 28)
    # Same pixels, same normalization (order differs: listdir vs sorted names).
    assert np.allclose(np.sort(course.reshape(30, -1), axis=0), np.sort(ours.images.reshape(30, -1), axis=0))


def test_full_scale_archive_shapes_are_the_real_ones():
    import prepare_full_scale as fs

    assert sum(fs.COUNTS[fs.LARGE]) == 529_119 and fs.readable(fs.LARGE, False) == 529_114
    assert sum(fs.COUNTS[fs.SMALL]) == 18_726 and fs.readable(fs.SMALL, False) == 18_724
    assert len(fs.BROKEN[fs.LARGE]) + len(fs.BROKEN[fs.SMALL]) == 7


def test_prepare_full_scale_tiny_builds_caches_and_measures(tmp_path, capsys):
    import prepare_full_scale as fs

    from dnn_tf.data.decode import read_images

    cache, out = tmp_path / "cache", tmp_path / "out"
    argv = ["--tiny", "--out", str(out), "--cache", str(cache), "--compare-with", str(fs.common.REPO)]
    assert fs.main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"full_scale prepare_seconds=\d+\.\d peak_rss_mib=\d+ decode_images_per_s=\d+", lines[-6])
    assert lines[-1] == "full_scale identical_arrays=yes" and "GENERATED glyphs" in "\n".join(lines)
    data = read(out, "prepare_full_scale")
    ours, course = data["contenders"]["ours"], data["contenders"]["course"]
    assert ours["sizes"] == {"train": 500, "valid": 50, "test": 50, "valid_sanitized": ours["sizes"]["valid_sanitized"],
                             "test_sanitized": ours["sizes"]["test_sanitized"]} and ours["skipped"] == 7
    assert ours["tree_rss"] > 0 and ours["largest_process_rss"] > 0 and ours["decode_images_per_s"] > 0
    assert course["decode_images_per_s"] > 0 and data["identity"]["compared"] == 21
    assert data["archives"]["built_seconds"] > 0
    # the archives: the real layout at a 500th of the size, exactly the broken members planted
    paths, info = fs.cached_archives(cache, True, None)
    assert info["built_seconds"] is None and {k: fs.shown(v) for k, v in paths.items()} == data["archives"]["paths"]
    for name in (fs.LARGE, fs.SMALL):
        got = read_images(paths[name], workers=1)
        per_class = [n - sum(1 for letter, _ in fs.BROKEN[name] if letter == "ABCDEFGHIJ"[c])
                     for c, n in enumerate(fs.counts(name, True))]
        assert np.bincount(got.labels, minlength=10).tolist() == per_class
        assert len(got.skipped) == len(fs.BROKEN[name]) and all(n.startswith(f"{name}/") for n in got.names)
        assert len({img.tobytes() for img in got.images}) > 0.9 * len(got.names)  # scaled and shifted: distinct
    # cached: a second run builds nothing (above), and takes the course's figures measured the first time
    assert fs.course_baseline(paths, tmp_path, again=False) == course
    assert data["compare_with"] == fs.checkout_name(fs.common.REPO) and "/" not in data["compare_with"]


def test_prepare_full_scale_variants_and_a_tiny_run_leaves_results_alone(tmp_path, capsys, monkeypatch):
    """--variants: ours with each fast path off, same arrays; without --out, --tiny writes to a temporary
    folder, never over the committed results/prepare_full_scale.*."""
    import tempfile

    import prepare_full_scale as fs

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    committed = {p: p.read_bytes() for p in fs.common.DEFAULT_OUT.glob(f"{fs.STEM}.*")}
    assert fs.main(["--tiny", "--cache", str(tmp_path / "cache"), "--no-course", "--variants"]) == 0
    assert {p: p.read_bytes() for p in fs.common.DEFAULT_OUT.glob(f"{fs.STEM}.*")} == committed
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "full_scale identical_arrays=yes"
    for attribute in ("FAST_HEADERS", "PLAIN_FAST_PATH"):
        assert any(line.startswith(f"ratio full_scale_{attribute}_off/ours_seconds=") for line in lines[-3:-1])
    (out,) = tmp_path.glob(f"{fs.STEM}_tiny_*")
    data = read(out, fs.STEM)
    assert set(data["identities"]) == set(fs.VARIANTS) and all(i["identical"] for i in data["identities"].values())
    assert all(len(c["load_averages"]) == 1 for c in data["contenders"].values())


def test_the_cache_is_keyed_by_the_glyphs_content_not_their_path_or_mtime(tmp_path):
    import prepare_full_scale as fs
    from fixtures import make_fixture_archive

    a, b, c = tmp_path / "a.tar.gz", tmp_path / "copy" / "b.tar.gz", tmp_path / "c.tar.gz"
    make_fixture_archive(a, per_class=2, extra_bad=False)
    b.parent.mkdir()
    b.write_bytes(a.read_bytes())
    os.utime(b, ns=(1, 1))
    c.write_bytes(a.read_bytes() + b"\0")
    folder = fs.cache_folder(tmp_path, False, str(a))
    assert fs.cache_folder(tmp_path, False, str(b)) == folder != fs.cache_folder(tmp_path, False, str(c))
    assert fs.cache_folder(tmp_path, True, str(a)) != folder != fs.cache_folder(tmp_path, False, None)


def test_results_name_no_machine_paths(tmp_path):
    import prepare_full_scale as fs

    assert fs.shown(Path.home() / ".cache" / "dnn_tf" / "bench") == "~/.cache/dnn_tf/bench"
    assert fs.checkout_name(tmp_path) == tmp_path.name  # not a git checkout: its folder's name
    assert fs.checkout_name(fs.common.REPO) not in ("", str(fs.common.REPO))


def _killed_render(task):
    """Stand-in for the build pool's renderer: the build dies midway."""
    raise RuntimeError("killed")


def test_a_failed_build_leaves_no_archive_that_a_later_run_would_take(tmp_path, monkeypatch):
    import prepare_full_scale as fs

    glyphs = [np.zeros((1, 28, 28), np.uint8)] * 10
    monkeypatch.setattr(fs, "_render", _killed_render)
    target = tmp_path / "notMNIST_small.tar.gz"
    with pytest.raises(RuntimeError, match="killed"):
        fs.build(target, fs.SMALL, True, glyphs)
    assert not target.exists() and not list(tmp_path.iterdir())  # atomic: the temporary file is gone too
