"""A run's network as the page needs it: its weight matrices and biases, checked and encoded.

The page computes ``x @ W + b`` per layer with ReLUs between, which is all ``dnn_tf.model.MLP``
does at inference, except for ``deskew=True`` (straightening each image first), which the page
does not reproduce: such a run is refused. So that nothing else can slip through, the weights
are checked against the SavedModel itself: a numpy forward pass of them must give the
SavedModel's probabilities on probe images, or the export fails.

The encoding (``weights_script``) is a JavaScript file, not a binary one, because a page opened
from ``file://`` may load scripts but not fetch files: each layer's W then b, little-endian
float32 (or float16, half the download), base64 in one string.
"""

from __future__ import annotations

import base64
import json
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dnn_tf import files
from dnn_tf.notmnist import IMAGE_PIXELS, IMAGE_SIZE, NUM_CLASSES, normalize

FORMAT = "dnn-tf-demo/1"  # what the page's loadModel accepts
DTYPES = ("float32", "float16")
RUN_FILE, METRICS_FILE = "run.json", "metrics.json"  # in a run folder (training.run_dir)
CHECK_TOLERANCE = 1e-4  # largest difference of probabilities, numpy vs SavedModel, on the probe images
PROBES = 64  # random probe images (plus an empty and a full one)
FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass
class Network:
    """A run's weights, ``(W, b)`` per layer first to last (float32), and what is known of the run."""

    layers: list[tuple[np.ndarray, np.ndarray]]
    name: str
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def sizes(self) -> list[int]:
        return [int(self.layers[0][0].shape[0])] + [int(w.shape[1]) for w, _ in self.layers]

    @property
    def parameters(self) -> int:
        return sum(w.size + b.size for w, b in self.layers)


def run_folder(saved_model_dir: str) -> str | None:
    """The run folder holding a SavedModel folder (it has ``run.json``), or None."""
    parent = os.path.dirname(os.path.abspath(saved_model_dir))
    return parent if os.path.isfile(os.path.join(parent, RUN_FILE)) else None


def run_info(run_dir: str | None) -> dict[str, Any]:
    """What the page shows of a run: name, preset config's hidden sizes, accuracies, steps (from its JSON files).

    Raises:
      ValueError: the run was trained with ``deskew=True``.
    """
    if run_dir is None:
        return {}
    run = _json_dict(os.path.join(run_dir, RUN_FILE))
    metrics = _json_dict(os.path.join(run_dir, METRICS_FILE))
    config = run.get("config") or metrics.get("config") or {}
    if isinstance(config, dict) and config.get("deskew"):
        raise ValueError(f"{run_dir} was trained with deskew=True, which the page cannot run (its JavaScript "
                         "does not deskew): use a run trained without it")
    info = {"run": run.get("name") or metrics.get("name") or os.path.basename(run_dir)}
    for key in ("valid_accuracy", "test_accuracy", "steps"):
        if isinstance(metrics.get(key), (int, float)):
            info[key] = metrics[key]
    return info


def from_saved_model(loaded, name: str, info: dict[str, Any] | None = None) -> Network:
    """The weights of a loaded SavedModel (``tf.saved_model.load``: its ``model.weights`` and ``model.biases``).

    Raises:
      ValueError: no such variables (not a dnn_tf SavedModel), or shapes that do not chain 784 -> ... -> 10.
    """
    model = getattr(loaded, "model", None)
    weights, biases = getattr(model, "weights", None), getattr(model, "biases", None)
    if weights is None or biases is None:
        raise ValueError("this SavedModel has no model.weights and model.biases: not saved by dnn-tf-train")
    layers = [(np.asarray(w.numpy(), np.float32), np.asarray(b.numpy(), np.float32))
              for w, b in zip(list(weights), list(biases))]
    check_shapes(layers, len(list(weights)), len(list(biases)))
    return Network(layers, name, dict(info or {}))


def check_shapes(layers: list[tuple[np.ndarray, np.ndarray]], n_weights: int, n_biases: int) -> None:
    """Raises ValueError unless the layers map 784 pixels to 10 logits: W ``(fan_in, fan_out)``, b ``(fan_out,)``."""
    if not layers or n_weights != n_biases:
        raise ValueError(f"expected as many weight matrices as bias vectors, got {n_weights} and {n_biases}")
    fan_in = IMAGE_PIXELS
    for i, (w, b) in enumerate(layers):
        if w.ndim != 2 or w.shape[0] != fan_in or b.shape != (w.shape[1],):
            raise ValueError(f"layer {i}: weights {w.shape} and biases {b.shape} do not follow a layer of "
                             f"{fan_in} units")
        fan_in = w.shape[1]
    if fan_in != NUM_CLASSES:
        raise ValueError(f"the last layer has {fan_in} outputs, not {NUM_CLASSES}")


def probabilities(network: Network, images: np.ndarray) -> np.ndarray:
    """Softmax of the plain forward pass (numpy, float32) on normalized images ``(n, 28, 28)``."""
    x = np.asarray(images, np.float32).reshape(len(images), IMAGE_PIXELS)
    for i, (w, b) in enumerate(network.layers):
        x = x @ w + b
        if i < len(network.layers) - 1:
            x = np.maximum(x, 0)
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x.astype(np.float64))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def probe_images(count: int = PROBES, seed: int = 0) -> np.ndarray:
    """Normalized probe images: ``count`` of random pixels, then an all-black and an all-white one."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (count, IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    pixels = np.concatenate([pixels, np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.uint8),
                             np.full((1, IMAGE_SIZE, IMAGE_SIZE), 255, np.uint8)])
    return normalize(pixels)


def check_against(network: Network, saved_probabilities) -> float:
    """Compares ``probabilities(network, probes)`` with the SavedModel's on the same probes.

    Args:
      network: the exported weights.
      saved_probabilities: a function of normalized images ``(n, 28, 28)`` -> the SavedModel's ``(n, 10)``.

    Returns:
      The largest difference (at most ``CHECK_TOLERANCE``).

    Raises:
      ValueError: a larger difference: the SavedModel computes something else than its weights' plain forward pass.
    """
    probes = probe_images()
    diff = float(np.max(np.abs(probabilities(network, probes) - np.asarray(saved_probabilities(probes)))))
    if not diff <= CHECK_TOLERANCE:
        raise ValueError(f"the weights alone do not give the SavedModel's probabilities (they differ by {diff:.3g}): "
                         "it does more than x @ W + b with ReLUs (deskew=True?), which the page cannot run")
    return diff


def encode(network: Network, dtype: str = "float32") -> bytes:
    """Each layer's W (row-major) then b, little-endian ``dtype``.

    Raises:
      ValueError: an unknown dtype, or a weight beyond float16's range.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "float16":
        largest = max(float(np.abs(a).max()) for layer in network.layers for a in layer)
        if largest > FLOAT16_MAX:
            raise ValueError(f"a weight of {largest:g} does not fit in float16 (max {FLOAT16_MAX:g}): use float32")
    little = np.dtype(dtype).newbyteorder("<")
    return b"".join(np.ascontiguousarray(a, little).tobytes() for layer in network.layers for a in layer)


def decode(data: bytes, sizes: list[int], dtype: str = "float32") -> list[tuple[np.ndarray, np.ndarray]]:
    """The inverse of ``encode``, as float32 (what the page computes with)."""
    values = np.frombuffer(data, np.dtype(dtype).newbyteorder("<")).astype(np.float32)
    layers, offset = [], 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        w = values[offset:offset + fan_in * fan_out].reshape(fan_in, fan_out)
        offset += fan_in * fan_out
        layers.append((w, values[offset:offset + fan_out]))
        offset += fan_out
    if offset != len(values):
        raise ValueError(f"{len(values)} values for layers {sizes}, which need {offset}")
    return layers


def weights_script(network: Network, dtype: str = "float32") -> str:
    """``weights.js``: sets ``dnnTfModel`` (format, name, layer shapes, dtype, run info, base64 data)."""
    meta = {"format": FORMAT, "name": network.name, "dtype": dtype,
            "layers": [[int(w.shape[0]), int(w.shape[1])] for w, _ in network.layers],
            "parameters": int(network.parameters), "info": network.info}
    head = json.dumps(meta, indent=1)[:-2]  # the object without its closing brace
    data = base64.b64encode(encode(network, dtype)).decode("ascii")
    return ("/* dnn-tf-demo: the network's weights for index.html (a script, so that it loads from file://). */\n"
            "(typeof window !== \"undefined\" ? window : globalThis).dnnTfModel = "
            f"{head},\n \"data\": \"{data}\"\n}};\n")


def _json_dict(path: str) -> dict[str, Any]:
    value = files.read_json(path)  # None when missing or not JSON
    return value if isinstance(value, dict) else {}
