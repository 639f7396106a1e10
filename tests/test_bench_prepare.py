"""benchmarks/prepare_throughput.py with --tiny sizes, and its course-style baseline reader."""

from __future__ import annotations

import sys
from pathlib import Path

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

    from dnn_tf.decode import read_images

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
