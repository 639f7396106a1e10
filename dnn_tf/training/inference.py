"""A trained model outside training: export it as a SavedModel, load it back, predict.

The SavedModel's ``serving_default`` signature takes ``images`` float32
(None, 28, 28), normalized like ``notMNIST.pickle``, and returns ``{"logits",
"probabilities"}`` (float32, (None, 10)). Loading needs no code of this package
(``tf.saved_model.load``), so ``dnn-tf-evaluate`` imports nothing of training.
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf

from dnn_tf import files
from dnn_tf.model import MLP
from dnn_tf.notmnist import IMAGE_SIZE, NUM_CLASSES

SERVING_SIGNATURE = "serving_default"
SAVED_MODEL_DIR = "saved_model"  # inside a run folder (run_dir.SAVED_MODEL_DIR)
SAVED_MODEL_FILE = "saved_model.pb"
PREDICT_BATCH = 10000  # images per forward pass


class _Serving(tf.Module):
    """What the SavedModel holds: the model, its weight matrices by name (for plots), the serving function."""

    def __init__(self, model: MLP):
        super().__init__(name="serving")
        self.model = model
        self.layer_weights = model.weights

    @tf.function(input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE], tf.float32, name="images")])
    def serve(self, images):
        logits = self.model(images)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


def save_model(model: MLP, path: str | os.PathLike) -> None:
    """Saves ``model`` as a SavedModel at ``path``, replacing an old one atomically (folder rename)."""
    with files.atomic_dir(path) as tmp:
        serving = _Serving(model)
        tf.saved_model.save(serving, tmp, signatures={SERVING_SIGNATURE: serving.serve})


def resolve_saved_model(path: str | os.PathLike) -> str:
    """The SavedModel folder of a run folder (``<run>/saved_model``) or the folder itself.

    Raises:
      FileNotFoundError: no saved_model.pb there.
    """
    path = os.fspath(path)
    for candidate in (os.path.join(path, SAVED_MODEL_DIR), path):
        if os.path.isfile(os.path.join(candidate, SAVED_MODEL_FILE)):
            return candidate
    raise FileNotFoundError(f"no SavedModel in {path} (expected {path}/{SAVED_MODEL_DIR}/{SAVED_MODEL_FILE})")


def load(path: str | os.PathLike):
    """Loads the SavedModel of a run folder or SavedModel folder (``tf.saved_model.load``).

    Raises:
      FileNotFoundError: no SavedModel there.
    """
    return tf.saved_model.load(resolve_saved_model(path))


def layer_weights(model) -> list[np.ndarray]:
    """The weight matrices ``(fan_in, fan_out)``, first layer first, of an ``MLP``, a loaded SavedModel or a path.

    Raises:
      FileNotFoundError: no SavedModel. ValueError: a SavedModel without them (saved by an older version).
    """
    if isinstance(model, MLP):
        return [w.numpy() for w in model.weights]
    loaded = load(model) if isinstance(model, (str, os.PathLike)) else model
    if not hasattr(loaded, "layer_weights"):
        raise ValueError("this SavedModel does not export its layer weights; retrain it with this version")
    return [w.numpy() for w in loaded.layer_weights]


def predict(model, images: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    """Class probabilities ``(n, 10)`` for ``images`` (n, 28, 28).

    Args:
      model: an ``MLP``, a loaded SavedModel (``load``), or a path to a SavedModel / run folder.
      images: float32 normalized images.
      batch_size: examples per forward pass.

    Returns:
      float32 probabilities, one row per image.

    Raises:
      ValueError: bad image shape or batch size. FileNotFoundError: no SavedModel.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise ValueError(f"images must have shape (n, {IMAGE_SIZE}, {IMAGE_SIZE}), got {images.shape}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if isinstance(model, MLP):
        def probabilities(x):
            return tf.nn.softmax(model(x))
    else:
        signature = (load(model) if isinstance(model, (str, os.PathLike)) else model).signatures[SERVING_SIGNATURE]

        def probabilities(x):
            return signature(images=x)["probabilities"]
    out = [probabilities(tf.constant(images[i:i + batch_size])).numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, NUM_CLASSES), np.float32)
