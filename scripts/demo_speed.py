#!/usr/bin/env python3
"""How fast the draw-a-letter page answers: from the end of a stroke to the updated bars, in headless Chromium.

    python scripts/demo_speed.py --model runs/deep [--drawings 20] [--screenshot docs/demo.png] [--json out.json]

Builds the page of ``--model`` (``dnn-tf-demo``) in a temporary folder, opens it from ``file://`` in
headless Chromium (``dnn_tf.demo.browser``) and draws ``--drawings`` letters (scripts/demo_letters.py)
with the mouse, stroke by stroke, through WebDriver. After each stroke it reads the page's own
``dnnTf.lastStroke``: ``endToBarsMs`` runs from the stroke's pointerup event (its timestamp, taken
when the browser received it) to a task after the next animation frame, the frame that paints the
new bars; ``classifyMs`` is the framing and forward pass alone. After each stroke, the control: the
same wait with no work before it (``FRAME_ONLY``), what the browser and a busy machine add by
themselves. Also measured: the time until the page is ready (weights decoded) and ``dnnTf.classify``
alone, called in a loop in the page.
Prints the median, 95th percentile and maximum, and whether the maximum is within ``--limit`` ms.
``--screenshot`` saves the page with the last drawing on it (a laptop-sized window);
``--phone-screenshot`` the same at a phone's width.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dnn_tf.cli import ArgumentParser, UsageError, import_tensorflow, positive_int, run  # noqa: E402

PROG = "demo_speed"
LIMIT_MS = 50.0
CLASSIFY_CALLS = 50
LAPTOP = (1100, 760)
PHONE = (390, 844)
SHOT_LETTER = "G"  # the letter left on the pad for the screenshot


# The control: the same wait as endToBarsMs (to a task after the next animation frame) with no work
# before it, measured after each stroke: what the browser and the machine take without the page.
FRAME_ONLY = ("var done = arguments[arguments.length - 1], t = performance.now();"
              "requestAnimationFrame(function () { setTimeout(function () { done(performance.now() - t); }, 0); });")


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, np.float64), q))


def measure(driver, drawings) -> dict[str, list[float]]:
    """Draws each drawing stroke by stroke; the page's ``lastStroke`` timings of every stroke."""
    from dnn_tf.demo import browser

    times: dict[str, list[float]] = {"endToBarsMs": [], "classifyMs": [], "frameMs": []}

    def read(_):
        found = browser.wait_for(driver, "return dnnTf.lastStroke")
        driver.execute_script("dnnTf.lastStroke = null")
        for key in ("endToBarsMs", "classifyMs"):
            times[key].append(float(found[key]))
        times["frameMs"].append(float(driver.execute_async_script(FRAME_ONLY)))

    for strokes in drawings:
        driver.execute_script("dnnTf.clear(); dnnTf.lastStroke = null")
        browser.draw_mouse(driver, strokes, after_stroke=read)
    return times


def body(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder or SavedModel folder")
    parser.add_argument("--drawings", type=positive_int, default=20, help="letters drawn (default 20)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=float, default=LIMIT_MS, help="ms allowed, stroke end to bars (default 50)")
    parser.add_argument("--float16", action="store_true", help="the page with float16 weights")
    parser.add_argument("--screenshot", help="save the page with a drawn letter as this PNG")
    parser.add_argument("--phone-screenshot", help="the same at a phone's width")
    parser.add_argument("--json", help="also write the figures as JSON")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    import_tensorflow(args)
    import demo_letters

    from dnn_tf.demo import browser, page

    if browser.find_chromium() is None:
        raise UsageError("Chromium and ChromeDriver are needed (Debian: apt-get install chromium chromium-driver)")
    rng = np.random.default_rng(args.seed)
    letters = [demo_letters.NAMES[i % len(demo_letters.NAMES)] for i in range(args.drawings)]
    drawings = [demo_letters.drawing(letter, rng) for letter in letters]
    with tempfile.TemporaryDirectory() as tmp:
        built = page.build_page(args.model, Path(tmp) / "page", "float16" if args.float16 else "float32")
        with browser.chromium(*LAPTOP) as driver:
            t0 = time.perf_counter()
            browser.open_page(driver, built.index)
            ready = time.perf_counter() - t0
            compute = driver.execute_script(
                f"var p = dnnTf.frame([[[0, 0], [10, 20]]]), t = performance.now();"
                f"for (var i = 0; i < {CLASSIFY_CALLS}; i++) dnnTf.classify(p);"
                f"return (performance.now() - t) / {CLASSIFY_CALLS};")
            times = measure(driver, drawings)
            if args.screenshot or args.phone_screenshot:
                shot = demo_letters.drawing(SHOT_LETTER, np.random.default_rng(1), jitter=0.5)
                driver.execute_script("dnnTf.clear()")
                browser.draw_mouse(driver, shot)
                browser.wait_for(driver, "return dnnTf.lastStroke")
                if args.screenshot:
                    driver.save_screenshot(args.screenshot)
                if args.phone_screenshot:
                    driver.set_window_size(*PHONE)
                    time.sleep(0.5)  # the page redraws the pad at its new size
                    driver.save_screenshot(args.phone_screenshot)
            errors = browser.browser_errors(driver)
            version = driver.capabilities.get("browserVersion", "?")
    end = times["endToBarsMs"]
    figures = {
        "model": built.name, "sizes": list(built.sizes), "dtype": built.dtype, "weights_bytes": built.weights_bytes,
        "chromium": version, "cores": os.cpu_count(), "load_average": list(os.getloadavg()),
        "strokes": len(end), "drawings": args.drawings, "ready_seconds": ready, "classify_alone_ms": compute,
        "end_to_bars_ms": {"median": statistics.median(end), "p95": percentile(end, 95), "max": max(end)},
        "classify_ms": {"median": statistics.median(times["classifyMs"]), "max": max(times["classifyMs"])},
        "frame_only_ms": {"median": statistics.median(times["frameMs"]), "p95": percentile(times["frameMs"], 95),
                          "max": max(times["frameMs"])},
        "limit_ms": args.limit, "within_limit": max(end) <= args.limit, "console_errors": errors,
    }
    e, c, f = figures["end_to_bars_ms"], figures["classify_ms"], figures["frame_only_ms"]
    print(f"{built.name} ({'-'.join(map(str, built.sizes))}, {built.dtype}, weights.js "
          f"{built.weights_bytes / 1e6:.1f} MB) in headless Chromium {version}, {os.cpu_count()} cores, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"page ready (weights decoded) {ready:.2f} s after navigation; dnnTf.classify alone {compute:.2f} ms")
    print(f"{len(end)} strokes of {args.drawings} letters: stroke end to bars median {e['median']:.1f} ms, "
          f"p95 {e['p95']:.1f} ms, max {e['max']:.1f} ms (limit {args.limit:g} ms: "
          f"{'met' if figures['within_limit'] else 'MISSED'}); framing + classify median {c['median']:.1f} ms, "
          f"max {c['max']:.1f} ms")
    print(f"control, the next frame with no work before it: median {f['median']:.1f} ms, p95 {f['p95']:.1f} ms, "
          f"max {f['max']:.1f} ms")
    if errors:
        print(f"console errors: {errors}")
    if args.json:
        from dnn_tf import files

        files.write_json(args.json, figures)
    return 0 if figures["within_limit"] and not errors else 1


def main(argv: Sequence[str] | None = None) -> int:
    return run(body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
