"""dnn-tf-demo: the page's folder, its weights, its JavaScript (run in node) against the SavedModel, its framing.

The browser itself: tests/test_demo_browser.py. Without node these tests skip, unless
DNN_TF_REQUIRE_BROWSER=1 (set by .ci/run), which makes them fail instead.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dnn_tf import files
from dnn_tf.cli import demo as demo_cli
from dnn_tf.cli import train as train_cli
from dnn_tf.data import dataset
from dnn_tf.demo import export, node, page
from dnn_tf.training import inference

SCRIPTS = Path(__file__).absolute().parents[1] / "scripts"
REQUIRE_TOOLS = os.environ.get("DNN_TF_REQUIRE_BROWSER") == "1"
FLOAT32_TOLERANCE = 1e-4  # largest probability difference, page vs SavedModel (docs/demo.md)
FLOAT16_TOLERANCE = 2e-3  # the same with float16 weights (docs/demo.md)
NOTMNIST_STROKE = 3.56  # median stroke width of notMNIST glyphs, scripts/notmnist_framing.py (docs/demo.md)
DEEP = [784, 2048, 1024, 512, 10]
FAST = ["--quiet", "--set", "log_every=1000", "--set", "checkpoint_every=1000"]
NO_JITTER = ["--set", "max_shift=0", "--set", "max_rotation=0", "--set", "max_scale=0", "--set", "max_shear=0"]


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def need_node() -> None:
    if node.node_binary() is None:
        if REQUIRE_TOOLS:
            pytest.fail("node is not installed, and DNN_TF_REQUIRE_BROWSER=1 requires it")
        pytest.skip("node is not installed: the page's JavaScript cannot run (Debian: apt-get install nodejs)")


def pixels_of(images: np.ndarray) -> np.ndarray:
    """The uint8 pixels of normalized images (normalize is exactly invertible)."""
    pixels = np.rint(images * 255 + 127.5).astype(np.uint8)
    assert np.array_equal((pixels.astype(np.float32) - 127.5) / 255, images)
    return pixels


def train(data_path: str, out: str, *argv: str) -> str:
    assert train_cli.main(["--data", data_path, "--out", out, *FAST, *argv]) == 0
    return out


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> tuple[str, dict]:
    """Fixture glyphs: 200 to train on, 200 test images for the parity checks."""
    from fixtures import make_dataset

    d = make_dataset(train_per_class=20, valid_per_class=5, test_per_class=20)
    path = tmp_path_factory.mktemp("data") / "notMNIST.pickle"
    files.save_pickle(path, d)
    return str(path), d


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory) -> dict[str, str]:
    """The deep preset's network (784-2048-1024-512-10), a few steps, and logistic regression."""
    root = tmp_path_factory.mktemp("runs")
    return {"deep": train(data[0], str(root / "deep"), "--preset", "deep", "--set", "steps=61", "--set",
                          "dropout_rate=0", *NO_JITTER),
            "logreg_sgd": train(data[0], str(root / "logreg_sgd"), "--preset", "logreg_sgd", "--set", "steps=401")}


@pytest.fixture(scope="module")
def pages(runs, tmp_path_factory) -> dict[str, page.Page]:
    root = tmp_path_factory.mktemp("pages")
    return {"deep": page.build_page(runs["deep"], root / "deep"),
            "deep16": page.build_page(runs["deep"], root / "deep16", "float16"),
            "logreg_sgd": page.build_page(runs["logreg_sgd"], root / "logreg_sgd")}


def weights_spec(page_dir: str) -> dict:
    """What weights.js assigns to dnnTfModel, parsed as JSON."""
    text = Path(page_dir, page.WEIGHTS_FILE).read_text()
    return json.loads(text[text.index(".dnnTfModel = ") + len(".dnnTfModel = "):].rstrip().rstrip(";"))


# ----------------------------------------------------------------------------- the folder and the weights


def test_page_is_self_contained_and_loads_its_scripts_in_order(pages):
    folder = pages["deep"].path
    assert sorted(os.listdir(folder)) == sorted(page.PAGE_FILES)
    html = Path(folder, "index.html").read_text()
    assert re.findall(r'<script src="([^"]+)"></script>', html) == list(page.SCRIPTS)
    assert re.findall(r'<link rel="stylesheet" href="([^"]+)">', html) == ["page.css"]
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    for name in page.PAGE_FILES:
        text = Path(folder, name).read_text()
        head = text if name != page.WEIGHTS_FILE else text[:2000]
        # No address outside the folder (no CDN, no font, no analytics) and nothing that fetches at all.
        assert not re.search(r"(src|href|url)\s*[=(]\s*[\"']?\s*(https?:|//)", head, re.I), name
        for call in ("fetch(", "XMLHttpRequest", "import(", "WebSocket", "sendBeacon", "EventSource"):
            assert call not in head, (name, call)
    assert oct(os.stat(folder).st_mode & 0o777) == oct(page.FOLDER_MODE)


def test_weights_js_holds_the_saved_models_variables(pages, runs):
    loaded = inference.load(runs["deep"])
    expected = [a.numpy() for pair in zip(loaded.model.weights, loaded.model.biases) for a in pair]
    for name, dtype in (("deep", np.float32), ("deep16", np.float16)):
        spec = weights_spec(pages[name].path)
        assert spec["format"] == export.FORMAT and spec["dtype"] == np.dtype(dtype).name
        assert spec["layers"] == [[a, b] for a, b in zip(DEEP[:-1], DEEP[1:])]
        assert spec["parameters"] == sum(a * b + b for a, b in zip(DEEP[:-1], DEEP[1:])) == 4_235_786
        assert spec["info"]["run"] == "deep" and spec["info"]["steps"] == 61
        decoded = export.decode(base64.b64decode(spec["data"]), DEEP, spec["dtype"])
        got = [a for pair in decoded for a in pair]
        assert all(np.array_equal(g, e.astype(dtype).astype(np.float32)) for g, e in zip(got, expected))
    assert pages["deep"].sizes == tuple(DEEP)
    assert pages["deep"].check_difference <= export.CHECK_TOLERANCE
    # base64 of 4 bytes a weight, and half that in float16
    assert 4_235_786 * 4 * 4 / 3 < pages["deep"].weights_bytes < 4_235_786 * 4 * 4 / 3 + 4000
    assert abs(pages["deep16"].weights_bytes / pages["deep"].weights_bytes - 0.5) < 0.01


# ----------------------------------------------------------------------------- window.dnnTf.classify in node


@pytest.mark.parametrize("name", ["deep", "logreg_sgd"])
def test_page_gives_the_saved_models_probabilities_on_200_test_images(name, pages, runs, data):
    need_node()
    images = data[1]["test_dataset"]
    assert len(images) == 200
    in_page = node.classify(pages[name].path, pixels_of(images))
    saved = inference.predict(runs[name], images)
    assert in_page.shape == (200, 10)
    assert np.allclose(in_page.sum(axis=1), 1.0, atol=1e-9)
    assert np.max(np.abs(in_page - saved)) <= FLOAT32_TOLERANCE
    assert np.array_equal(in_page.argmax(axis=1), saved.argmax(axis=1))
    assert saved.max(axis=1).min() < 0.9 < saved.max(axis=1).max()  # the network is not just saying one thing


def test_float16_page_stays_within_its_stated_tolerance(pages, runs, data):
    need_node()
    images = data[1]["test_dataset"]
    in_page = node.classify(pages["deep16"].path, pixels_of(images))
    saved = inference.predict(runs["deep"], images)
    assert np.max(np.abs(in_page - saved)) <= FLOAT16_TOLERANCE
    top2 = np.sort(saved, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 2 * FLOAT16_TOLERANCE  # where rounding cannot swap the first two
    assert clear.sum() >= 190
    assert np.array_equal(in_page.argmax(axis=1)[clear], saved.argmax(axis=1)[clear])


@pytest.mark.parametrize("value, error", [
    ([0] * 783, "RangeError: classify needs 784 pixels, got 783"),
    ([0] * 783 + [256], "RangeError: pixel 783 is 256, not a number in 0..255"),
    ([-1] + [0] * 783, "RangeError: pixel 0 is -1, not a number in 0..255"),
    (["7"] * 784, "RangeError: pixel 0 is 7, not a number in 0..255"),
    (None, "TypeError: classify needs 784 pixel values"),
])
def test_classify_refuses_anything_but_784_pixels(value, error, pages):
    need_node()
    assert node.classify_error(pages["logreg_sgd"].path, value) == error
    assert node.classify_error(pages["logreg_sgd"].path, [255] * 784) is None


# ----------------------------------------------------------------------------- framing a drawing


def ink_box(image: np.ndarray, threshold: int = 128) -> tuple[int, int, int, int]:
    rows, cols = np.flatnonzero((image >= threshold).any(axis=1)), np.flatnonzero((image >= threshold).any(axis=0))
    return rows[0], rows[-1], cols[0], cols[-1]


def test_frame_makes_any_drawing_fill_the_frame_like_notmnist(pages):
    need_node()
    letters, framing = script("demo_letters"), script("notmnist_framing")
    drawings, labels = letters.drawings(3, seed=1)
    first = drawings[0]
    bigger = [[[3 * x + 500, 3 * y - 40] for x, y in stroke] for stroke in first]  # another size and place
    images = node.frame(pages["logreg_sgd"].path, drawings + [bigger])
    assert np.array_equal(images[0], images[-1])  # the drawing's size and place do not matter
    images = images[:-1]
    assert images.min() == 0 and images.max() == 255
    assert ((images > 0) & (images < 255)).any() and (images == 0).mean() > 0.4  # anti-aliased, on black
    wide = labels != letters.NAMES.index("I")  # every letter but I (a single bar stays a bar)
    for image in images[wide]:
        assert ink_box(image) == (0, 27, 0, 27)
    widths = framing.stroke_widths(images)
    assert abs(np.median(widths) - NOTMNIST_STROKE) < 0.3


def test_frame_of_nothing_a_dot_and_a_bar(pages):
    need_node()
    empty, dot, bar, flat = node.frame(pages["logreg_sgd"].path, [[], [[[5, 5]]], [[[40, 10], [40, 200]]],
                                                                    [[[10, 40], [300, 40]]]])
    assert not empty.any()
    ys, xs = np.nonzero(dot)
    assert dot.max() == 255 and abs(ys.mean() - 13.5) < 0.01 and abs(xs.mean() - 13.5) < 0.01 and len(ys) <= 16
    top, bottom, left, right = ink_box(bar)
    assert (top, bottom) == (0, 27) and 2 <= right - left + 1 <= 5 and abs((left + right) / 2 - 13.5) <= 0.5
    assert np.array_equal(flat, bar.T)


# ----------------------------------------------------------------------------- the command


def test_cli_writes_the_page_and_says_where(runs, tmp_path, capsys):
    out = tmp_path / "site" / "demo"
    assert demo_cli.main(["--model", runs["logreg_sgd"], "--out", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"wrote {out / 'index.html'} (logreg_sgd: 784-10, float32 weights, 42 kB of ")
    assert lines[1] == f"open it in a browser, or serve the folder: python -m http.server -d {out}"
    assert sorted(os.listdir(out)) == sorted(page.PAGE_FILES)
    saved_model_only = tmp_path / "elsewhere" / "model"
    shutil.copytree(Path(runs["logreg_sgd"], "saved_model"), saved_model_only)  # no run.json beside it
    assert demo_cli.main(["--model", str(saved_model_only), "--out", str(tmp_path / "p2"), "--quiet"]) == 0
    assert weights_spec(str(tmp_path / "p2"))["info"] == {} and "(model: 784-10" in capsys.readouterr().out


def call(argv) -> int:
    try:
        return demo_cli.main(argv)
    except SystemExit as e:
        return e.code


@pytest.mark.parametrize("argv, words", [
    (["--out", "{tmp}/p"], "the following arguments are required: --model"),
    (["--model", "{tmp}/missing", "--out", "{tmp}/p"], "no SavedModel in {tmp}/missing"),
    (["--model", "{tmp}", "--out", "{tmp}/p"], "no SavedModel in {tmp}"),
    (["--model", "{run}", "--out", "{tmp}/file.txt"], "file.txt exists and is not a folder"),
    (["--model", "{run}", "--out", "{tmp}/notes"], "holds other files (mine.txt); choose a new or empty folder"),
    (["--model", "{run}", "--out", "{tmp}/p", "--float16", "--quiet", "--verbose"], "not allowed with argument"),
])
def test_cli_bad_input_is_one_line_and_exit_2(argv, words, runs, tmp_path, capsys):
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("mine")

    def fill(s):
        return s.format(tmp=tmp_path, run=runs["logreg_sgd"])

    assert call([fill(a) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("dnn-tf-demo: error: ") and fill(words) in err[0], err
    assert (tmp_path / "notes" / "mine.txt").read_text() == "mine" and not (tmp_path / "p").exists()


def test_installed_command_reports_a_bad_model_in_one_line(tmp_path):
    proc = subprocess.run([str(Path(sys.executable).parent / "dnn-tf-demo"), "--model", "nowhere", "--out", "p"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == "dnn-tf-demo: error: no SavedModel in nowhere\n"
    assert os.listdir(tmp_path) == []


def test_a_page_is_replaced_whole_or_not_at_all(runs, tmp_path, monkeypatch):
    out = tmp_path / "demo"
    page.build_page(runs["logreg_sgd"], out)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    real = page.static_text

    def broken(name):
        if name == "page.js":
            raise OSError("disk full")
        return real(name)

    monkeypatch.setattr(page, "static_text", broken)
    with pytest.raises(OSError, match="disk full"):
        page.build_page(runs["deep"], out)
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before
    assert os.listdir(tmp_path) == ["demo"]  # no temporary folder left behind
    monkeypatch.setattr(page, "static_text", real)
    rebuilt = page.build_page(runs["deep"], out)
    assert weights_spec(str(out))["info"]["run"] == "deep" and rebuilt.sizes == tuple(DEEP)
    assert sorted(os.listdir(tmp_path)) == ["demo"]


def test_a_deskewed_run_is_refused_from_run_json_and_from_its_numbers(data, tmp_path, capsys):
    run = train(data[0], str(tmp_path / "deskew"), "--preset", "relu1024", "--hidden-sizes", "16", "--set",
                "steps=3", "--set", "deskew=true")
    assert call(["--model", run, "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"dnn-tf-demo: error: {run} was trained with deskew=True, which the page cannot run (its "
                   "JavaScript does not deskew): use a run trained without it"]
    alone = tmp_path / "alone" / "saved_model"  # the SavedModel without its run.json: caught by the numbers
    shutil.copytree(Path(run, "saved_model"), alone)
    with pytest.raises(ValueError, match="the weights alone do not give the SavedModel's probabilities"):
        page.build_page(alone, tmp_path / "p")
    assert not (tmp_path / "p").exists()


# ----------------------------------------------------------------------------- real glyphs (../shared)


@pytest.mark.shared
def test_page_gives_the_saved_models_probabilities_on_real_glyphs(shared_sample, tmp_path):
    need_node()
    from dnn_tf.data.prepare import prepare

    prepare(shared_sample, out_dir=tmp_path / "data")
    pickle = str(tmp_path / "data" / "notMNIST.pickle")
    run = train(pickle, str(tmp_path / "run"), "--preset", "relu1024", "--set", "steps=201")
    images = dataset.load(pickle)["test_dataset"][:200]
    saved = inference.predict(run, images)
    for dtype, tolerance in (("float32", FLOAT32_TOLERANCE), ("float16", FLOAT16_TOLERANCE)):
        built = page.build_page(run, tmp_path / dtype, dtype)
        in_page = node.classify(built.path, pixels_of(images))
        assert np.max(np.abs(in_page - saved)) <= tolerance, dtype
        assert np.array_equal(in_page.argmax(axis=1), saved.argmax(axis=1)), dtype
    # The glyphs are framed as the page frames drawings: edge to edge, with strokes as wide.
    figures = script("notmnist_framing").measure(pixels_of(images))
    assert figures["height"]["p50"] == figures["width"]["p50"] == 28
    assert figures["margin_left"]["p50"] == figures["margin_top"]["p50"] == 0
    assert abs(figures["stroke_width"]["p50"] - NOTMNIST_STROKE) < 0.5
