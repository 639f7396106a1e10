"""The page in a real browser: headless Chromium driven by selenium, drawing with mouse or touch events.

For the tests and scripts/demo_speed.py (selenium comes with the ``dev`` extra). It uses the
system's Chromium and ChromeDriver (Debian's ``chromium`` and ``chromium-driver``), never a
downloaded one: the driver's path is given, so selenium does not look for one. Chromium starts
with a fresh profile and without its background network traffic (update checks, sync, field
trials), which a machine without internet access would only refuse, and without its sandbox when
run as root (which it otherwise refuses to do).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVERS = ("chromedriver",)
FLAGS = ("--headless=new", "--disable-gpu", "--disable-quic", "--no-first-run", "--no-default-browser-check",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-default-apps", "--disable-extensions", "--disable-features=Translate,OptimizationHints",
         "--metrics-recording-only", "--disable-dev-shm-usage")
READY_TIMEOUT = 60.0  # seconds for the page to decode its weights
POLL = 0.01  # seconds between looks at the page


def find_chromium() -> tuple[str, str] | None:
    """``(browser, driver)`` paths of Chromium and ChromeDriver on PATH, or None if either is missing."""
    browser = next((p for p in map(shutil.which, BROWSERS) if p), None)
    driver = next((p for p in map(shutil.which, DRIVERS) if p), None)
    return (browser, driver) if browser and driver else None


@contextlib.contextmanager
def chromium(width: int = 1100, height: int = 900) -> Iterator:
    """A headless Chromium (``selenium.webdriver.Chrome``) with a window of ``width`` x ``height`` CSS pixels.

    Raises:
      FileNotFoundError: no Chromium or ChromeDriver on PATH.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    found = find_chromium()
    if found is None:
        raise FileNotFoundError("Chromium and ChromeDriver are not both installed (Debian: apt-get install chromium "
                                "chromium-driver)")
    profile = tempfile.mkdtemp(prefix="dnn-tf-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = found[0]
    for flag in FLAGS + (f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        options.add_argument("--no-sandbox")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = None
    try:
        driver = webdriver.Chrome(options=options, service=Service(executable_path=found[1]))
        driver.set_window_size(width, height)
        yield driver
    finally:
        if driver is not None:
            driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def open_page(driver, index: str | os.PathLike, url: str | None = None) -> None:
    """Opens the page (``index.html`` as a ``file://`` URL, or ``url``) and waits until its weights are decoded.

    Raises:
      RuntimeError: the page says it could not load the network. TimeoutError: not ready in time.
    """
    driver.get(url or Path(index).absolute().as_uri())
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        state = driver.execute_script("return window.dnnTf ? window.dnnTf.ready : null")
        if state:
            return
        if state is False:
            raise RuntimeError(driver.find_element("id", "model").text)
        time.sleep(POLL * 10)
    raise TimeoutError(f"the page was not ready after {READY_TIMEOUT:g} s")


def pad_box(driver) -> dict[str, float]:
    """The pad's box in CSS pixels: ``left``, ``top``, ``width``, ``height`` (viewport coordinates)."""
    return driver.execute_script("var r = document.getElementById('pad').getBoundingClientRect();"
                                 "return {left: r.left, top: r.top, width: r.width, height: r.height};")


def _scaled(strokes, box, side: float):
    """Stroke points given on a ``side``-pixel pad, as points of the real pad (its element's offsets)."""
    k = min(box["width"], box["height"]) / side
    return [[(x * k, y * k) for x, y in stroke] for stroke in strokes]


def draw_mouse(driver, strokes: Sequence[Sequence[Sequence[float]]], side: float = 300.0,
               after_stroke=None) -> None:
    """Draws ``strokes`` (points on a ``side``-pixel pad) on the page's pad with the mouse (WebDriver actions).

    ``after_stroke(i)`` runs after stroke ``i``'s button release, if given.
    """
    from selenium.webdriver.common.action_chains import ActionChains

    pad = driver.find_element("id", "pad")
    box = pad_box(driver)
    for i, stroke in enumerate(_scaled(strokes, box, side)):
        # Offsets from the element's centre, as whole pixels (what WebDriver moves by).
        points = [(round(x - box["width"] / 2), round(y - box["height"] / 2)) for x, y in stroke]
        chain = ActionChains(driver, duration=0).move_to_element_with_offset(pad, *points[0]).click_and_hold()
        for x, y in points[1:]:
            chain.move_to_element_with_offset(pad, x, y)
        chain.release().perform()
        if after_stroke is not None:
            after_stroke(i)


def draw_touch(driver, strokes: Sequence[Sequence[Sequence[float]]], side: float = 300.0) -> None:
    """Draws ``strokes`` with a finger: touch events through the DevTools protocol (Input.dispatchTouchEvent)."""
    box = pad_box(driver)
    for stroke in _scaled(strokes, box, side):
        for j, (x, y) in enumerate(stroke):
            kind = "touchStart" if j == 0 else "touchMove"
            driver.execute_cdp_cmd("Input.dispatchTouchEvent", {
                "type": kind, "touchPoints": [{"x": box["left"] + x, "y": box["top"] + y}]})
        driver.execute_cdp_cmd("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})


def wait_for(driver, script: str, timeout: float = 10.0):
    """The first truthy value of ``script`` (JavaScript, ``return ...``), polled until ``timeout`` seconds.

    Raises:
      TimeoutError: none in time.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = driver.execute_script(script)
        if value or time.monotonic() > deadline:
            break
        time.sleep(POLL)
    if not value:
        raise TimeoutError(f"no value from {script!r} after {timeout:g} s")
    return value


def browser_errors(driver) -> list[str]:
    """The page's console messages of level SEVERE (errors), as Chromium logged them."""
    return [entry["message"] for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
