"""Input jitter for training (random shifts and smooth distortions) and deskewing.

Pure TensorFlow functions of ``(images, seed)`` (stateless random numbers), so
they trace into the compiled train step and a given seed always gives the same
batch. Images are ``(b, h, w)`` float tensors normalized as in
``notmnist.normalize``; pixels brought in from outside the image are
``BACKGROUND``.

* ``random_shift``: a whole-pixel translation per image (cheap, exact).
* ``random_distort``: per image, a random affine map (rotation, scale, shear)
  about the image centre, resampled bilinearly: a fully connected net has no
  built-in invariance, so it sees many plausible versions of each training
  letter instead. (Elastic distortions, Simard et al. 2003, were tried too and
  did not help on the sample: results/tuning.md.)
* ``deskew``: not random; straightens each image's slant. ``model.MLP(deskew=True)``
  applies it to its inputs, so it runs after the jitter in training.
"""

from __future__ import annotations

import math

import tensorflow as tf

from dnn_tf.notmnist import BACKGROUND

# Counter-based random numbers, the same on CPU and GPU (the training inputs use them too).
RNG_ALG = "philox"
# deskew: images with less ink than this (in BACKGROUND-relative units) are left alone,
MIN_INK = 1e-3
# and no slant beyond this shear factor is undone (the sample's largest is about 1).
MAX_SLANT = 1.5


def random_shift(images: tf.Tensor, max_shift: int, seed: tf.Tensor) -> tf.Tensor:
    """Shifts each image by its own random (dy, dx) in ``[-max_shift, max_shift]``.

    Args:
      images: ``(b, h, w)`` float images.
      max_shift: the largest shift in pixels (> 0).
      seed: int64 [2] stateless seed.

    Returns:
      ``(b, h, w)`` shifted images; uncovered pixels are ``BACKGROUND``.
    """
    b = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    m = max_shift
    padded = tf.reshape(tf.pad(images, [[0, 0], [m, m], [m, m]], constant_values=BACKGROUND), [-1])
    shifts = tf.random.stateless_uniform([b, 2], seed, minval=0, maxval=2 * m + 1, dtype=tf.int32, alg=RNG_ALG)
    rows = shifts[:, :1, None] + tf.range(h)[None, :, None]  # (b, h, 1) rows of padded to take
    cols = shifts[:, 1:, None] + tf.range(w)[None, None, :]  # (b, 1, w)
    # One gather from the flat batch (TF's batch_dims gathers, one per axis, took 1.4x as long).
    return tf.gather(padded, (tf.range(b)[:, None, None] * (h + 2 * m) + rows) * (w + 2 * m) + cols)


def bilinear_sample(images: tf.Tensor, rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
    """``images[b, rows, cols]`` at fractional positions, ``BACKGROUND`` outside the image.

    Args:
      images: ``(b, h, w)`` float images.
      rows, cols: ``(b, h, w)`` float source coordinates (pixel centres are integers).

    Returns:
      ``(b, h, w)`` resampled images.
    """
    b = tf.shape(images)[0]
    h, w = images.shape[1], images.shape[2]
    # In padded coordinates the image spans [1, h]; anything at or beyond the border reads BACKGROUND
    # (the extra last row and column only ever meet a zero weight, so (r0 + 1, c0 + 1) is always in range).
    padded = tf.reshape(tf.pad(images, [[0, 0], [1, 2], [1, 2]], constant_values=BACKGROUND), [-1])
    r = tf.clip_by_value(rows + 1.0, 0.0, float(h + 1))
    c = tf.clip_by_value(cols + 1.0, 0.0, float(w + 1))
    r0, c0 = tf.floor(r), tf.floor(c)
    fr, fc = r - r0, c - c0
    # Flat indices into the whole padded batch: plain gathers are faster than TF's batch_dims ones.
    stride = w + 3
    top_left = (tf.range(b)[:, None, None] * (h + 3) + tf.cast(r0, tf.int32)) * stride + tf.cast(c0, tf.int32)
    tl, tr, bl, br = (tf.gather(padded, top_left + offset) for offset in (0, 1, stride, stride + 1))
    top = (1.0 - fc) * tl + fc * tr
    bottom = (1.0 - fc) * bl + fc * br
    return (1.0 - fr) * top + fr * bottom


def random_distort(images: tf.Tensor, seed: tf.Tensor, *, max_rotation: float = 0.0, max_scale: float = 0.0,
                   max_shear: float = 0.0) -> tf.Tensor:
    """Warps each image by its own random affine map about the image centre.

    Each output pixel ``p`` reads the input at ``centre + A (p - centre)``, where
    ``A = rotation(theta) @ shear(k) @ diag(1 / s_y, 1 / s_x)`` with
    ``theta ~ U(-max_rotation, max_rotation)`` degrees, ``k ~ U(-max_shear, max_shear)``
    and ``s_y, s_x ~ U(1 - max_scale, 1 + max_scale)`` independently. All zeros
    return the images unchanged.

    Args:
      images: ``(b, h, w)`` float images.
      seed: int64 [2] stateless seed.
      max_rotation: largest rotation in degrees (>= 0).
      max_scale: largest relative change of size along each axis, in [0, 1).
      max_shear: largest shear factor (>= 0).

    Returns:
      ``(b, h, w)`` distorted images.

    Raises:
      ValueError: a negative amount or ``max_scale >= 1``.
    """
    if min(max_rotation, max_scale, max_shear) < 0 or max_scale >= 1:
        raise ValueError("distortion amounts must be >= 0 and max_scale < 1; got "
                         f"rotation={max_rotation}, scale={max_scale}, shear={max_shear}")
    u = tf.random.stateless_uniform([tf.shape(images)[0], 4], seed, minval=-1.0, maxval=1.0, alg=RNG_ALG)
    return compiled_affine_warp(images, u, max_rotation, max_scale, max_shear)


def affine_warp(images: tf.Tensor, u: tf.Tensor, max_rotation: float, max_scale: float,
                 max_shear: float) -> tf.Tensor:
    """``random_distort``'s warp of each image, given its 4 uniform draws in [-1, 1) (``u``: (b, 4))."""
    h, w = images.shape[1], images.shape[2]
    theta = u[:, 0] * (max_rotation * math.pi / 180.0)
    shear = u[:, 1] * max_shear
    inv_sy, inv_sx = 1.0 / (1.0 + u[:, 2] * max_scale), 1.0 / (1.0 + u[:, 3] * max_scale)
    cos, sin = tf.cos(theta), tf.sin(theta)
    # A = R(theta) @ [[1, 0], [shear, 1]] @ diag(inv_sy, inv_sx), acting on (row, col) offsets.
    a_rr, a_rc = (cos - sin * shear) * inv_sy, -sin * inv_sx
    a_cr, a_cc = (sin + cos * shear) * inv_sy, cos * inv_sx
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    py = tf.range(h, dtype=tf.float32)[None, :, None] - cy  # (1, h, 1)
    px = tf.range(w, dtype=tf.float32)[None, None, :] - cx  # (1, 1, w)
    rows = cy + a_rr[:, None, None] * py + a_rc[:, None, None] * px
    cols = cx + a_cr[:, None, None] * py + a_cc[:, None, None] * px
    return bilinear_sample(images, rows, cols)


# The warp compiled by XLA (the random draws stay TensorFlow's, so they are the same numbers): its ~40
# element-wise ops and 4 gathers fuse into a few loops instead of running one op at a time
# (results/speed_tricks.md measures what it buys). Inside an XLA-compiled train step it is simply inlined.
compiled_affine_warp = tf.function(affine_warp, jit_compile=True, reduce_retracing=True)


def deskew(images: tf.Tensor) -> tf.Tensor:
    """Straightens each image's slant: the shear that makes its ink's principal axis vertical.

    With ink weights ``v = image - BACKGROUND``, centroid ``(r0, c0)`` and
    moments ``var_r = E[(r - r0)**2]``, ``cov = E[(r - r0)(c - c0)]``, the slant
    is ``alpha = cov / var_r`` (clipped to ``[-MAX_SLANT, MAX_SLANT]``) and
    output pixel ``(r, c)`` reads the input at ``(r, c + alpha * (r - r0))``,
    bilinearly: italic letters stand upright, the centroid stays where it was
    (the moment-based deskewing long used for MNIST). Blank images are
    returned unchanged.

    Args:
      images: ``(b, h, w)`` float images normalized as in ``notmnist.normalize``.

    Returns:
      ``(b, h, w)`` deskewed images.
    """
    images = tf.convert_to_tensor(images, tf.float32)
    h, w = images.shape[1], images.shape[2]
    ink = images - BACKGROUND
    total = tf.reduce_sum(ink, axis=[1, 2])
    safe = tf.maximum(total, MIN_INK)
    r = tf.range(h, dtype=tf.float32)[None, :, None]  # (1, h, 1)
    c = tf.range(w, dtype=tf.float32)[None, None, :]  # (1, 1, w)
    r0 = tf.reduce_sum(ink * r, axis=[1, 2]) / safe
    c0 = tf.reduce_sum(ink * c, axis=[1, 2]) / safe
    dr, dc = r - r0[:, None, None], c - c0[:, None, None]
    var_r = tf.reduce_sum(ink * dr * dr, axis=[1, 2]) / safe
    cov = tf.reduce_sum(ink * dr * dc, axis=[1, 2]) / safe
    alpha = tf.where((total > MIN_INK) & (var_r > MIN_INK), cov / tf.maximum(var_r, MIN_INK), 0.0)
    alpha = tf.clip_by_value(alpha, -MAX_SLANT, MAX_SLANT)
    rows = tf.broadcast_to(r, tf.shape(images))
    cols = c + alpha[:, None, None] * dr
    return bilinear_sample(images, rows, cols)
