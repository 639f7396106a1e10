"""Input jitter: whole-pixel shifts, bilinear resampling, affine distortions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from dnn_tf.training import augment
from dnn_tf.training.config import TrainConfig

SEED = tf.constant([3, 4], tf.int64)
BG = augment.BACKGROUND
CENTRE = 13.5  # of a 28 x 28 image, in pixel-index coordinates


def col_ramp(n=8):
    """Images whose pixel value is its column index / 100: the output reads back the source column."""
    return tf.constant(np.tile(np.arange(28, dtype=np.float32)[None, None, :] / 100.0, (n, 28, 1)))


def disk(n=8, radius=8.0):
    yy, xx = np.mgrid[:28, :28]
    image = np.where((yy - CENTRE) ** 2 + (xx - CENTRE) ** 2 <= radius ** 2, 0.5, BG).astype(np.float32)
    return tf.constant(np.repeat(image[None], n, 0))


# --------------------------------------------------------------------------- random_shift


def test_random_shift_moves_images_by_at_most_max_shift():
    image = np.full((28, 28), BG, np.float32)
    image[10:13, 14] = 0.5
    images = tf.constant(np.stack([image] * 64))
    shifted = augment.random_shift(images, 2, tf.constant([1, 2], tf.int64)).numpy()
    assert shifted.shape == (64, 28, 28)
    moves = set()
    for s in shifted:
        rows, cols = np.nonzero(s > 0)
        assert len(rows) == 3 and set(np.unique(s)) <= {BG, 0.5}
        dy, dx = rows.min() - 10, cols[0] - 14
        assert abs(dy) <= 2 and abs(dx) <= 2
        moves.add((dy, dx))
    assert len(moves) > 5
    # pixels shifted in from outside are background
    edge = np.full((1, 28, 28), 0.5, np.float32)
    out = augment.random_shift(tf.constant(np.repeat(edge, 32, 0)), 1, tf.constant([0, 0], tf.int64)).numpy()
    assert out.min() == BG and set(np.unique(out)) <= {BG, 0.5}


# --------------------------------------------------------------------------- resampling


def test_bilinear_sample_exact_at_pixels_interpolates_between_and_pads_background():
    images = tf.constant(np.random.default_rng(0).uniform(-0.5, 0.5, (2, 28, 28)).astype(np.float32))
    rows, cols = np.meshgrid(np.arange(28, dtype=np.float32), np.arange(28, dtype=np.float32), indexing="ij")
    rows, cols = np.broadcast_to(rows, (2, 28, 28)), np.broadcast_to(cols, (2, 28, 28))
    same = augment.bilinear_sample(images, tf.constant(rows), tf.constant(cols)).numpy()
    np.testing.assert_allclose(same, images.numpy(), atol=1e-6)
    half = augment.bilinear_sample(images, tf.constant(rows), tf.constant(cols + 0.5)).numpy()
    x = images.numpy()
    np.testing.assert_allclose(half[:, :, :27], (x[:, :, :27] + x[:, :, 1:]) / 2, atol=1e-6)
    np.testing.assert_allclose(half[:, :, 27], (x[:, :, 27] + BG) / 2, atol=1e-6)  # half outside
    far = augment.bilinear_sample(images, tf.constant(rows + 40.0), tf.constant(cols - 40.0)).numpy()
    assert np.all(far == BG)


# --------------------------------------------------------------------------- random_distort


def test_distort_with_nothing_on_is_the_identity():
    images = disk()
    np.testing.assert_array_equal(augment.random_distort(images, SEED).numpy(), images.numpy())


def test_rotation_keeps_a_centred_disk_and_moves_columns_by_at_most_the_arc():
    images = disk()
    rotated = augment.random_distort(images, SEED, max_rotation=30.0).numpy()
    assert np.abs(rotated - images.numpy()).mean() < 0.02  # only boundary interpolation changes
    ramp = augment.random_distort(col_ramp(), SEED, max_rotation=10.0).numpy() * 100.0  # source column
    yy, xx = np.mgrid[:28, :28]
    radius = np.hypot(yy - CENTRE, xx - CENTRE)
    inner = radius < 12  # never reads outside the image
    moved = np.abs(ramp - xx)[:, inner]
    bound = radius[inner] * 2 * math.sin(math.radians(10.0) / 2) + 1e-3
    assert np.all(moved <= bound)
    assert moved.max() > 0.5  # it does rotate


def test_scale_and_shear_stay_within_their_bounds():
    ramp = augment.random_distort(col_ramp(32), SEED, max_scale=0.2).numpy() * 100.0
    xx = np.arange(28, dtype=np.float32)
    inner = slice(6, 22)
    # x_source - c = (x - c) / s with s in [0.8, 1.2]: the slope of each row is 1 / s
    slopes = np.diff(ramp[:, inner, inner], axis=2).mean(axis=(1, 2))
    assert np.all((slopes >= 1 / 1.2 - 1e-3) & (slopes <= 1 / 0.8 + 1e-3))
    assert slopes.std() > 0.02  # each image its own scale
    sheared = augment.random_distort(col_ramp(32), SEED, max_shear=0.25).numpy()[:, inner, inner] * 100.0
    moved = np.abs(sheared - xx[inner])
    assert np.all(moved <= 0.25 * (CENTRE - 6) + 1e-3) and moved.max() > 0.3


def test_distort_keeps_values_in_range_and_runs_under_xla():
    images = disk(16)
    kwargs = dict(max_rotation=15.0, max_scale=0.1, max_shear=0.2)
    eager = augment.random_distort(images, SEED, **kwargs).numpy()
    compiled = tf.function(lambda x: augment.random_distort(x, SEED, **kwargs), jit_compile=True)(images).numpy()
    for out in (eager, compiled):
        assert out.shape == (16, 28, 28) and out.min() >= BG - 1e-6 and out.max() <= 0.5 + 1e-6
        assert not np.allclose(out, images.numpy())


@pytest.mark.parametrize("kwargs", [dict(max_rotation=-1.0), dict(max_scale=1.0), dict(max_shear=-0.1)])
def test_distort_rejects_bad_amounts(kwargs):
    with pytest.raises(ValueError, match="distortion amounts"):
        augment.random_distort(disk(1), SEED, **kwargs)


@pytest.mark.parametrize("field,value", [("max_rotation", -5.0), ("max_rotation", 181.0), ("max_scale", 1.0),
                                         ("max_shear", -1.0)])
def test_config_rejects_bad_distortions(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_config_distorts_only_when_an_amount_is_set():
    assert not TrainConfig().distorts and not TrainConfig(max_shift=2).distorts
    assert all(TrainConfig(**{f: 0.1}).distorts for f in ("max_rotation", "max_scale", "max_shear"))



# --------------------------------------------------------------------------- deskew


def slanted_bar(slant: float, n: int = 1) -> np.ndarray:
    """A 2-pixel-wide bar from row 4 to row 23 whose column moves by ``slant`` per row (italic when < 0)."""
    image = np.full((28, 28), BG, np.float32)
    for r in range(4, 24):
        c = int(round(CENTRE + slant * (r - CENTRE)))
        image[r, c:c + 2] = 0.5
    return np.repeat(image[None], n, 0)


def ink_slant(images: np.ndarray) -> np.ndarray:
    """``cov(r, c) / var(r)`` of each image's ink, the slant deskew removes."""
    ink = images - BG
    r, c = np.mgrid[:28, :28]
    total = ink.sum((1, 2))
    r0, c0 = (ink * r).sum((1, 2)) / total, (ink * c).sum((1, 2)) / total
    dr, dc = r - r0[:, None, None], c - c0[:, None, None]
    return (ink * dr * dc).sum((1, 2)) / (ink * dr * dr).sum((1, 2))


@pytest.mark.parametrize("slant", [-0.5, -0.25, 0.3])
def test_deskew_stands_a_slanted_bar_upright_and_keeps_its_centroid(slant):
    image = slanted_bar(slant)
    assert abs(ink_slant(image)[0] - slant) < 0.05
    out = augment.deskew(tf.constant(image)).numpy()
    assert out.shape == image.shape
    assert abs(ink_slant(out)[0]) < 0.02
    ink_in, ink_out = image[0] - BG, out[0] - BG
    r, c = np.mgrid[:28, :28]
    for coord in (r, c):
        assert abs((coord * ink_in).sum() / ink_in.sum() - (coord * ink_out).sum() / ink_out.sum()) < 0.1
    assert abs(ink_in.sum() - ink_out.sum()) / ink_in.sum() < 0.02  # nothing pushed off the image
    assert BG <= out.min() and out.max() <= 0.5 + 1e-6


def test_deskew_leaves_upright_and_blank_images_alone_and_works_per_image():
    upright, blank = slanted_bar(0.0), np.full((1, 28, 28), BG, np.float32)
    batch = np.concatenate([upright, blank, slanted_bar(-0.5)])
    out = augment.deskew(tf.constant(batch)).numpy()
    np.testing.assert_allclose(out[0], upright[0], atol=1e-6)
    np.testing.assert_array_equal(out[1], blank[0])
    assert abs(ink_slant(out[2:])[0]) < 0.02
    # each image is deskewed by its own slant, whatever else is in the batch
    np.testing.assert_allclose(augment.deskew(tf.constant(batch[2:])).numpy()[0], out[2], atol=1e-6)


def test_deskew_clips_extreme_slants_and_runs_under_xla():
    image = np.full((1, 28, 28), BG, np.float32)
    image[0, 13, 2:26] = 0.5  # a horizontal stroke: var(r) tiny, slant undefined
    image[0, 14, 2:26] = 0.5
    image[0, 12, 25] = image[0, 15, 2] = 0.5
    assert ink_slant(image)[0] < -augment.MAX_SLANT
    out = augment.deskew(tf.constant(image)).numpy()
    ink = image[0] - BG
    r0 = (np.mgrid[:28, :28][0] * ink).sum() / ink.sum()
    rows, cols = np.mgrid[:28, :28].astype(np.float32)
    cols = (cols - augment.MAX_SLANT * (rows - r0)).astype(np.float32)
    clipped = augment.bilinear_sample(tf.constant(image), tf.constant(rows[None]), tf.constant(cols[None]))
    np.testing.assert_allclose(out, clipped.numpy(), atol=1e-5)
    xla = tf.function(augment.deskew, jit_compile=True)
    batch = tf.constant(np.concatenate([image, slanted_bar(0.4)]))
    np.testing.assert_allclose(xla(batch).numpy(), augment.deskew(batch).numpy(), atol=1e-5)
