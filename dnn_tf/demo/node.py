"""The page's own JavaScript, run in node: ``dnnTf.classify`` and ``dnnTf.frame`` outside a browser.

The tests compare what the page computes with the SavedModel this way, and scripts/ measure the
page's framing with it: node loads the very files ``index.html`` loads (all but ``page.js``, the
DOM part), in the same order, and calls the same ``window.dnnTf`` functions the page calls.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any, Sequence

import numpy as np

from dnn_tf.demo.page import CORE_SCRIPTS

TIMEOUT = 300  # seconds for one node run
# Reads {"images": [[784 pixels], ...], "strokes": [[[[x, y], ...], ...], ...]} on stdin; writes
# {"probabilities": [[10], ...], "pixels": [[784], ...]} on stdout.
HARNESS = r"""
const fs = require("fs"), path = require("path");
const [dir, ...scripts] = process.argv.slice(1);
for (const s of scripts) require(path.resolve(dir, s));
const request = JSON.parse(fs.readFileSync(0, "utf8"));
const api = globalThis.dnnTf, out = {};
if (request.images) out.probabilities = request.images.map((p) => api.classify(p));
if (request.strokes) out.pixels = request.strokes.map((s) => api.frame(s, request.framing));
if ("error" in request) {
  try { api.classify(request.error); out.error = null; } catch (e) { out.error = e.name + ": " + e.message; }
}
process.stdout.write(JSON.stringify(out));
"""


def node_binary() -> str | None:
    """The ``node`` on PATH, or None."""
    return shutil.which("node") or shutil.which("nodejs")


def run_page(page_dir: str | os.PathLike, request: dict[str, Any], node: str | None = None) -> dict[str, Any]:
    """Runs ``HARNESS`` on a page folder in node and returns what it printed.

    Raises:
      FileNotFoundError: no node. RuntimeError: node failed (its stderr's last line).
    """
    node = node or node_binary()
    if node is None:
        raise FileNotFoundError("node is not installed")
    proc = subprocess.run([node, "-e", HARNESS, os.fspath(page_dir), *CORE_SCRIPTS], input=json.dumps(request),
                          capture_output=True, text=True, timeout=TIMEOUT)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        raise RuntimeError(f"node failed: {lines[-1] if lines else proc.returncode}")
    return json.loads(proc.stdout)


def classify(page_dir: str | os.PathLike, pixels: np.ndarray) -> np.ndarray:
    """``dnnTf.classify`` of each image: uint8 pixels ``(n, 28, 28)`` (white ink on black) -> float64 ``(n, 10)``."""
    images = np.asarray(pixels).reshape(len(pixels), -1).astype(int).tolist()
    return np.asarray(run_page(page_dir, {"images": images})["probabilities"], np.float64)


def frame(page_dir: str | os.PathLike, drawings: Sequence[Sequence[Sequence[Sequence[float]]]],
          framing: dict[str, float] | None = None) -> np.ndarray:
    """``dnnTf.frame`` of each drawing (a list of strokes of ``[x, y]``) -> uint8 ``(n, 28, 28)``."""
    out = run_page(page_dir, {"strokes": [[[list(map(float, p)) for p in s] for s in d] for d in drawings],
                              "framing": framing})
    return np.asarray(out["pixels"], np.uint8).reshape(-1, 28, 28)


def classify_error(page_dir: str | os.PathLike, value: Any) -> str | None:
    """The error ``dnnTf.classify(value)`` throws (``"RangeError: ..."``), or None."""
    return run_page(page_dir, {"error": value})["error"]
