"""The draw-a-letter page in a real browser: headless Chromium draws letters with the mouse and a finger.

Needs Chromium and ChromeDriver (Debian: chromium, chromium-driver). Without them the tests
skip, unless DNN_TF_REQUIRE_BROWSER=1 (set by .ci/run, which installs them), which makes them fail.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dnn_tf import files
from dnn_tf.cli import train as train_cli
from dnn_tf.demo import browser, page
from dnn_tf.training import inference

SCRIPTS = Path(__file__).absolute().parents[1] / "scripts"
REQUIRE_TOOLS = os.environ.get("DNN_TF_REQUIRE_BROWSER") == "1"
TOLERANCE = 1e-4
GUESS = re.compile(r"^(That's|Probably|Maybe) an? ([A-J])\b")
PHONE = (390, 844)
LAPTOP = (1100, 900)
BARS = ("return Array.from(document.querySelectorAll('#bars li')).map(function (li) {"
        " var track = li.querySelector('.track').getBoundingClientRect();"
        " var fill = li.querySelector('.fill').getBoundingClientRect();"
        " return {letter: li.dataset.letter, p: +li.dataset.p, top: li.className === 'top',"
        " value: li.querySelector('.value').textContent, shown: fill.width / track.width}; })")
SEEN = ("var c = document.getElementById('seen'), d = c.getContext('2d').getImageData(0, 0, 28, 28).data;"
        "var out = []; for (var i = 0; i < d.length; i += 4) out.push(d[i]); return out;")


def letters_module():
    spec = importlib.util.spec_from_file_location("demo_letters", SCRIPTS / "demo_letters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A one-hidden-layer net that fits the fixture glyphs, its page, and 20 test images."""
    from fixtures import make_dataset

    root = tmp_path_factory.mktemp("browser")
    data = make_dataset(train_per_class=20, valid_per_class=2, test_per_class=2)
    files.save_pickle(root / "notMNIST.pickle", data)
    run = str(root / "relu")
    assert train_cli.main(["--data", str(root / "notMNIST.pickle"), "--preset", "relu1024", "--hidden-sizes", "64",
                           "--optimizer", "adam", "--learning-rate", "0.003", "--steps", "401", "--batch-size", "50",
                           "--out", run, "--quiet", "--set", "checkpoint_every=1000"]) == 0
    return page.build_page(run, root / "page"), run, data["test_dataset"]


@pytest.fixture(scope="module")
def driver():
    if browser.find_chromium() is None:
        message = "Chromium and ChromeDriver are not installed (Debian: apt-get install chromium chromium-driver)"
        if REQUIRE_TOOLS:
            pytest.fail(message + ", and DNN_TF_REQUIRE_BROWSER=1 requires them")
        pytest.skip(message)
    with browser.chromium(*LAPTOP) as d:
        yield d


@pytest.fixture
def opened(driver, built):
    driver.set_window_size(*LAPTOP)
    browser.open_page(driver, built[0].index)
    yield driver
    assert browser.browser_errors(driver) == []


def draw(driver, letter: str, touch: bool = False) -> None:
    """Draws ``letter`` (scripts/demo_letters.py, no jitter) and waits for the answer to its last stroke."""
    strokes = letters_module().drawing(letter, np.random.default_rng(0), jitter=0)
    strokes = [stroke[:-1:3] + stroke[-1:] for stroke in strokes]  # every third point: quicker, the same letter
    driver.execute_script("dnnTf.lastStroke = null")
    if touch:
        browser.draw_touch(driver, strokes)
    else:
        browser.draw_mouse(driver, strokes)
    browser.wait_for(driver, "return dnnTf.lastStroke")


def test_drawing_with_the_mouse_shows_a_guess_and_ten_bars(opened, built):
    assert opened.find_element("id", "guess").text == "Draw a letter from A to J."
    before = opened.execute_script(BARS)
    assert [b["letter"] for b in before] == list("ABCDEFGHIJ") and all(b["p"] == 0 for b in before)
    accuracy = files.read_json(os.path.join(built[1], "metrics.json"))["test_accuracy"]
    assert opened.find_element("id", "model").text == (f"relu1024: 784-64-10 · test accuracy {accuracy:.1f}% · "
                                                       "float32 weights, 0.2 MB")
    draw(opened, "A")
    guess = GUESS.match(opened.find_element("id", "guess").text)
    bars = opened.execute_script(BARS)
    p = np.array([b["p"] for b in bars])
    assert guess and len(bars) == 10 and abs(p.sum() - 1) < 1e-9
    top = int(np.argmax(p))
    assert guess.group(2) == "ABCDEFGHIJ"[top] and [b["top"] for b in bars] == [i == top for i in range(10)]
    assert [b["value"] for b in bars] == [f"{round(100 * q)}%" for q in p]
    assert np.allclose([b["shown"] for b in bars], p, atol=0.01)  # the bars' lengths are the probabilities
    pixels = np.array(opened.execute_script("return dnnTf.preprocess()"))
    assert pixels.shape == (784,) and pixels.min() == 0 and pixels.max() == 255
    image = pixels.reshape(28, 28) >= 128
    assert image.any(axis=1).all() and image.any(axis=0).all()  # the A fills the frame
    assert opened.execute_script(SEEN) == pixels.tolist()  # the image shown is the one classified
    again = opened.execute_script("return dnnTf.classify(dnnTf.preprocess())")
    assert np.max(np.abs(np.array(again) - p)) < 1e-12
    timing = opened.execute_script("return dnnTf.lastStroke")
    assert 0 <= timing["classifyMs"] <= timing["endToBarsMs"]


def test_classify_in_the_browser_gives_the_saved_models_probabilities(opened, built):
    _, run, images = built
    pixels = np.rint(images * 255 + 127.5).astype(int).reshape(len(images), 784)
    in_page = np.array(opened.execute_script("return arguments[0].map(function (p) { return dnnTf.classify(p); })",
                                             pixels.tolist()))
    saved = inference.predict(run, images)
    assert in_page.shape == (20, 10) and np.max(np.abs(in_page - saved)) <= TOLERANCE
    assert np.array_equal(in_page.argmax(axis=1), saved.argmax(axis=1))


def test_clear_empties_the_pad_the_image_and_the_bars(opened):
    draw(opened, "E")
    assert GUESS.match(opened.find_element("id", "guess").text)
    opened.find_element("id", "clear").click()
    assert opened.find_element("id", "guess").text == "Draw a letter from A to J."
    assert all(b["p"] == 0 and b["value"] == "0%" for b in opened.execute_script(BARS))
    assert opened.execute_script("return dnnTf.preprocess()") == [0] * 784
    assert opened.execute_script(SEEN) == [0] * 784
    ink = opened.execute_script("var c = document.getElementById('pad');"
                                "var d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                                "for (var i = 3; i < d.length; i += 4) if (d[i]) return true; return false;")
    assert ink is False


def test_drawing_with_a_finger(opened):
    opened.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
    try:
        draw(opened, "H", touch=True)
    finally:
        opened.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
    assert GUESS.match(opened.find_element("id", "guess").text)
    pixels = np.array(opened.execute_script("return dnnTf.preprocess()")).reshape(28, 28)
    assert (pixels[:, :4] >= 128).sum() > 20 and (pixels[:, -4:] >= 128).sum() > 20  # the H's two legs


def test_on_a_phone_the_pad_and_the_whole_answer_fit_on_one_screen(opened, built):
    opened.set_window_size(*PHONE)
    browser.open_page(opened, built[0].index)
    draw(opened, "C")
    layout = opened.execute_script(
        "function box(e) { var r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"
        "return {width: innerWidth, height: innerHeight, scroll: document.documentElement.scrollWidth,"
        " pad: box(document.getElementById('pad')), guess: box(document.getElementById('guess')),"
        " bars: Array.from(document.querySelectorAll('#bars li')).map(box)};")
    assert layout["width"] <= PHONE[0] and layout["scroll"] <= layout["width"]  # nothing sticks out sideways
    assert layout["pad"][2] - layout["pad"][0] >= 0.8 * layout["width"]  # a pad you can draw on
    for left, top, right, bottom in [layout["pad"], layout["guess"], *layout["bars"]]:
        assert 0 <= left and right <= layout["width"] and 0 <= top and bottom <= layout["height"]
    assert GUESS.match(opened.find_element("id", "guess").text)


def test_served_by_python_http_server_it_asks_for_its_own_files_only(driver, built):
    server = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "0", "--bind", "127.0.0.1", "--directory",
                               built[0].path], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(re.search(r"port (\d+)", server.stdout.readline()).group(1))
        origin = f"http://127.0.0.1:{port}"
        driver.set_window_size(*LAPTOP)
        browser.open_page(driver, None, url=f"{origin}/index.html")
        draw(driver, "J")
        assert GUESS.match(driver.find_element("id", "guess").text)
        resources = driver.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
        assert resources and all(r.startswith(origin + "/") for r in resources)
        assert browser.browser_errors(driver) == []
    finally:
        server.terminate()
        _, log = server.communicate(timeout=30)
    requested = re.findall(r'"GET (\S+) HTTP/1\.[01]" (\d+)', log)
    assert sorted(set(requested)) == sorted((f"/{name}", "200") for name in ["index.html", *page.SCRIPTS, "page.css"])


def test_a_page_without_its_weights_says_so(driver, built, tmp_path):
    broken = tmp_path / "page"
    shutil.copytree(built[0].path, broken)
    (broken / page.WEIGHTS_FILE).unlink()
    with pytest.raises(RuntimeError, match=r"^The network could not be loaded: the weights \(weights.js\) are not "
                                           r"loaded$"):
        browser.open_page(driver, broken / "index.html")
    assert driver.find_element("id", "model").get_attribute("class") == "error"
    driver.get_log("browser")  # the missing file's error, expected here


def test_without_pointer_events_mouse_and_touch_events_still_draw(driver, built):
    """Browsers without pointer events (older Safari): the page falls back to mouse and touch events."""
    script = driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": "delete window.PointerEvent;"})
    try:
        driver.set_window_size(*LAPTOP)
        browser.open_page(driver, built[0].index)
        assert driver.execute_script("return 'PointerEvent' in window") is False
        draw(driver, "F")
        assert GUESS.match(driver.find_element("id", "guess").text)
        driver.execute_script("dnnTf.clear()")
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": True, "maxTouchPoints": 1})
        draw(driver, "D", touch=True)
        pixels = np.array(driver.execute_script("return dnnTf.preprocess()")).reshape(28, 28)
        assert (pixels >= 128).any(axis=0).all() and (pixels >= 128).any(axis=1).all()
    finally:
        driver.execute_cdp_cmd("Emulation.setTouchEmulationEnabled", {"enabled": False})
        driver.execute_cdp_cmd("Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]})
    assert browser.browser_errors(driver) == []
