"""Tests for dnn_tf.report.plots: pure helpers exact, and every figure draws what it is given.

Each figure test checks the artists (size, panels, titles, axis labels, legends, and that the
imshow arrays, bar heights and line data are the inputs), saves the figure and checks the PNG
(its exact pixel size, the Agg canvas's own pixels), then looks at those pixels: an image panel
shows its data through the expected colour map cell by cell, a line or bar shows its colour
inside its axes. A figure that draws the wrong data, a blank panel or nothing at all fails.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image

from dnn_tf.report import plots

N = 120
LETTERS = list("ABCDEFGHIJ")
TAB10 = [colormaps["tab10"](i) for i in range(10)]  # the figures' colours, one per preset / split / family
# A rendered pixel may differ from the colour map's value by this much (0..255) where Agg resamples.
COLOUR_TOLERANCE = 3


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    labels = np.arange(N) % 10
    images = rng.uniform(-0.5, 0.5, (N, 28, 28)).astype(np.float32)
    probabilities = rng.dirichlet(np.ones(10), N)
    return images, labels, probabilities


# ---------------------------------------------------------------- helpers: look at what was drawn

def mapped(values: np.ndarray, cmap: str, vmin: float, vmax: float, bad=(1.0, 1.0, 1.0)) -> np.ndarray:
    """What ``values`` should look like: ``cmap`` over [vmin, vmax] as 0..255 RGB, NaN as ``bad``."""
    scaled = np.clip((np.asarray(values, np.float64) - vmin) / (vmax - vmin), 0.0, 1.0)
    rgb = colormaps[cmap](np.nan_to_num(scaled))[..., :3]
    rgb[np.isnan(values)] = bad
    return 255.0 * rgb


def assert_shows(pixels: np.ndarray, image, expected_rgb: np.ndarray, where: float = 0.5) -> None:
    """The imshow artist ``image`` shows ``expected_rgb`` in ``pixels``: each data cell's colour, sampled
    ``where`` across the cell, is the expected one (so the panel is not blank either)."""
    rows, cols = image.get_array().shape[:2]
    box = image.get_window_extent()
    xs = np.floor(box.x0 + (np.arange(cols) + where) * box.width / cols).astype(int)
    ys = np.floor(pixels.shape[0] - (box.y1 - (np.arange(rows) + where) * box.height / rows)).astype(int)
    shown = pixels[ys[:, None], xs[None, :]].astype(np.float64)
    assert shown.shape == expected_rgb.shape
    assert np.abs(shown - expected_rgb).max() <= COLOUR_TOLERANCE
    assert shown.std() > 10  # a blank or single-colour panel would not pass this, whatever was expected


def colour_pixels(pixels: np.ndarray, ax, colour, exclude=()) -> int:
    """How many pixels inside ``ax`` (outside the ``exclude`` artists, e.g. its legend) have ``colour``."""
    height = pixels.shape[0]
    box = ax.get_window_extent()
    inside = np.zeros(pixels.shape[:2], bool)
    inside[int(height - box.y1) + 1:int(height - box.y0) - 1, int(box.x0) + 1:int(box.x1) - 1] = True
    for artist in exclude:
        b = artist.get_window_extent()
        inside[int(height - b.y1):int(height - b.y0) + 1, int(b.x0):int(b.x1) + 1] = False
    close = np.abs(pixels.astype(np.int64) - 255 * np.asarray(to_rgb(colour))).max(axis=2) <= COLOUR_TOLERANCE
    return int((close & inside).sum())


def texts(artists) -> list[str]:
    return [t.get_text() for t in artists]


def saved_pixels(fig: Figure, tmp_path, name: str, inches: tuple[float, float]) -> np.ndarray:
    """Saves ``fig`` as ``name`` and returns the PNG's pixels, (height, width, 3) uint8, row 0 at the top.

    Checks that the figure is ``inches`` big at 100 dpi, that the PNG was written atomically, has
    as many pixels and holds exactly what the figure's Agg canvas drew for it, so the artists'
    window extents locate their pixels in it. (Constrained layout moves panels by a pixel or two
    from one draw to the next: the PNG is compared with the canvas buffer of the save itself.)
    """
    np.testing.assert_allclose(fig.get_size_inches(), inches)
    assert fig.dpi == 100
    path = plots.save_figure(fig, tmp_path / name)
    assert path == str(tmp_path / name) and os.path.getsize(path) > 1024
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    with Image.open(path) as im:
        assert im.format == "PNG"
        # (width, height) in pixels at 100 dpi: matplotlib before 3.11 truncates 4.6 * 100 = 459.99.. to 459
        assert all(abs(px - i * 100) < 1 for px, i in zip(im.size, inches)), im.size
        png = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(png, np.asarray(fig.canvas.buffer_rgba())[:, :, :3])
    assert png.std() > 10  # not a blank page
    return png


# ---------------------------------------------------------------- pure helpers

def test_confusion_counts_exact():
    labels = [0, 0, 1, 2, 2, 2, 9]
    preds = [0, 1, 1, 2, 0, 2, 3]
    counts = plots.confusion_counts(labels, preds)
    assert counts.shape == (10, 10) and counts.dtype == np.int64
    expected = np.zeros((10, 10), int)
    for t, p in zip(labels, preds):
        expected[t, p] += 1
    np.testing.assert_array_equal(counts, expected)
    assert counts[2, 2] == 2 and counts[2, 0] == 1 and counts[9, 3] == 1 and counts.sum() == 7
    # one-hot labels and probability predictions give the same counts
    np.testing.assert_array_equal(plots.confusion_counts(np.eye(10)[labels], np.eye(10)[preds] * 0.9), counts)


@pytest.mark.parametrize("labels, preds, match", [
    ([0, 1], [0], "expected 2"),
    ([0, 10], [0, 1], "0..9"),
    ([[0, 1]], [0], r"\(n,\)"),
    ([0.5, 1], [0, 1], "integer"),
])
def test_confusion_counts_errors(labels, preds, match):
    with pytest.raises(ValueError, match=match):
        plots.confusion_counts(labels, preds)


def test_most_confident_mistakes_exact():
    p = np.full((6, 10), 0.01)
    # row: predicted class gets the listed probability
    for i, (pred, conf) in enumerate([(0, 0.9), (3, 0.8), (1, 0.95), (2, 0.6), (4, 0.8), (5, 0.99)]):
        p[i, pred] = conf
    labels = np.array([0, 1, 2, 3, 4, 5])  # rows 1, 2, 3 are wrong; 0, 4, 5 right
    np.testing.assert_array_equal(plots.most_confident_mistakes(labels, p, k=16), [2, 1, 3])
    np.testing.assert_array_equal(plots.most_confident_mistakes(labels, p, k=2), [2, 1])
    # ties keep the lower index first
    labels2 = np.array([9, 9, 9, 9, 9, 9])
    np.testing.assert_array_equal(plots.most_confident_mistakes(labels2, p, k=3), [5, 2, 0])
    np.testing.assert_array_equal(plots.most_confident_mistakes(labels2, p, k=6)[3:], [1, 4, 3])
    assert plots.most_confident_mistakes([0], np.eye(10)[[0]], k=4).size == 0
    with pytest.raises(ValueError):
        plots.most_confident_mistakes(labels, p, k=0)
    with pytest.raises(ValueError):
        plots.most_confident_mistakes(labels, p[:, :9], k=1)


# ---------------------------------------------------------------- data figures

def test_sample_grid_shows_the_first_images_of_each_class(data, tmp_path):
    images, labels, _ = data
    keep = ~((labels == 9) & (np.arange(N) >= 30))  # J keeps 3 images: two blank cells in its row
    images, labels = images[keep], labels[keep]
    fig = plots.sample_grid_figure(images, labels, per_class=5)
    pixels = saved_pixels(fig, tmp_path, "samples.png", (3.75, 6.1))  # 5 * 0.55 + 1 wide, 10 * 0.55 + 0.6 high
    (ax,) = fig.axes
    assert ax.get_title() == "5 samples per class"
    assert texts(ax.get_yticklabels()) == LETTERS and texts(ax.get_xticklabels()) == []
    (image,) = ax.get_images()
    mosaic = np.ma.filled(image.get_array().astype(np.float64), np.nan)
    assert mosaic.shape == (10 * 30 - 2, 5 * 30 - 2)  # 28-pixel letters, 2 pixels apart
    expected = np.full(mosaic.shape, np.nan)
    for c in range(10):
        for j, i in enumerate(np.flatnonzero(labels == c)[:5]):
            expected[30 * c:30 * c + 28, 30 * j:30 * j + 28] = images[i]
    np.testing.assert_array_equal(mosaic, expected)
    assert np.isnan(mosaic[9 * 30:, 3 * 30:]).all()  # J's missing images stay blank
    lo, hi = float(images.min()), float(images.max())
    assert image.get_clim() == (lo, hi)
    assert_shows(pixels, image, mapped(expected, "gray", lo, hi))  # grey letters, white gaps


@pytest.mark.parametrize("normalize", [True, False])
def test_class_balance_bars_are_the_counts(normalize, tmp_path):
    counts = {"train": np.arange(10) * 8 + 8, "valid": np.arange(10) + 1, "test": list(range(10))}
    fig = plots.class_balance_figure(counts, normalize=normalize)
    pixels = saved_pixels(fig, tmp_path, "balance.png", (9.0, 4.2))
    (ax,) = fig.axes
    assert ax.get_title() == "Images per class" and ax.get_xlabel() == "class"
    assert ax.get_ylabel() == ("share of split %" if normalize else "images")
    assert texts(ax.get_xticklabels()) == LETTERS
    bars = ax.containers
    assert len(bars) == 3 and all(len(group) == 10 for group in bars)
    width = 0.8 / 3
    for i, (group, values) in enumerate(zip(bars, counts.values())):
        values = np.asarray(values, np.float64)
        heights = [bar.get_height() for bar in group]
        np.testing.assert_allclose(heights, 100 * values / values.sum() if normalize else values)
        centres = [bar.get_x() + bar.get_width() / 2 for bar in group]
        np.testing.assert_allclose(centres, np.arange(10) + (i - 1) * width)
        assert {bar.get_facecolor() for bar in group} == {TAB10[i]}
        assert colour_pixels(pixels, ax, TAB10[i]) > 100  # the bars are visible
    (legend,) = fig.legends
    entries = ["train (n=440)", "valid (n=55)", "test (n=45)"]
    assert texts(legend.get_texts()) == (["balanced"] + entries if normalize else entries)
    if normalize:
        (line,) = ax.get_lines()
        assert list(line.get_ydata()) == [10.0, 10.0]  # a perfectly balanced split: 10% per letter
    else:
        assert not ax.get_lines()


# ---------------------------------------------------------------- training figures

def _history(steps, loss_at=None, accuracy=50.0):
    return [{"step": s, "loss": 2.0 / (1 + s) if loss_at is None else loss_at(s),
             "minibatch_accuracy": accuracy + s / 40, "valid_accuracy": None if s == 0 else accuracy - 10 + s / 50,
             "learning_rate": 0.5, "seconds": 0.1} for s in steps]


def test_learning_curves_draw_each_history(tmp_path):
    sgd = _history(range(0, 1001, 100))
    deep = _history(range(0, 1001, 200), accuracy=30.0,
                    loss_at=lambda s: float("nan") if s == 400 else 0.0 if s == 600 else 1 / (1 + s))
    fig = plots.learning_curves_figure({"logreg_sgd": sgd, "deep": deep}, title="curves")
    pixels = saved_pixels(fig, tmp_path, "curves.png", (12.0, 4.6))
    loss_ax, acc_ax = fig.axes
    assert fig.get_suptitle() == "curves"
    assert (loss_ax.get_title(), loss_ax.get_xlabel(), loss_ax.get_ylabel()) == ("Loss", "step", "minibatch loss (log)")
    assert (acc_ax.get_title(), acc_ax.get_xlabel(), acc_ax.get_ylabel()) == ("Accuracy", "step", "accuracy %")
    assert loss_ax.get_yscale() == "log" and acc_ax.get_yscale() == "linear"
    assert texts(loss_ax.get_legend().get_texts()) == ["logreg_sgd", "deep"]
    assert texts(acc_ax.get_legend().get_texts()) == ["minibatch", "validation"]

    losses, accuracies = loss_ax.get_lines(), acc_ax.get_lines()
    assert len(losses) == 2 and len(accuracies) == 4
    for i, history in enumerate((sgd, deep)):
        kept = [h for h in history if np.isfinite(h["loss"]) and h["loss"] > 0]  # log scale: no NaN, no 0
        assert list(losses[i].get_xdata()) == [h["step"] for h in kept]
        assert list(losses[i].get_ydata()) == [h["loss"] for h in kept]
        minibatch, valid = accuracies[2 * i], accuracies[2 * i + 1]
        assert list(minibatch.get_xdata()) == [h["step"] for h in history]
        assert list(minibatch.get_ydata()) == [h["minibatch_accuracy"] for h in history]
        assert list(valid.get_xdata()) == [h["step"] for h in history[1:]]  # step 0 has no validation
        assert list(valid.get_ydata()) == [h["valid_accuracy"] for h in history[1:]]
        assert (minibatch.get_linestyle(), valid.get_linestyle(), valid.get_marker()) == ("--", "-", ".")
        for line in (losses[i], minibatch, valid):
            assert line.get_color() == TAB10[i]  # one colour per preset
        assert colour_pixels(pixels, loss_ax, TAB10[i], exclude=[loss_ax.get_legend()]) > 50
        assert colour_pixels(pixels, acc_ax, TAB10[i], exclude=[acc_ax.get_legend()]) > 50
        faded = 0.7 * np.asarray(to_rgb(TAB10[i])) + 0.3  # the dashed minibatch curve: alpha 0.7 over white
        assert colour_pixels(pixels, acc_ax, faded, exclude=[acc_ax.get_legend()]) > 50
    assert list(losses[1].get_xdata()) == [0, 200, 800, 1000]  # the NaN and the 0 left out


def test_accuracy_vs_params_draws_one_line_per_family(tmp_path):
    points = [{"family": "wider", "params": 8e5, "accuracy": 92.0, "label": "1024"},
              {"family": "wider", "params": 8e3, "accuracy": 86.0, "label": "logreg"},
              {"family": "deeper", "params": 1.3e6, "accuracy": 94.0, "label": "1024-512-256"},
              {"family": "deeper", "params": 3e6, "accuracy": 95.0}]
    fig = plots.accuracy_vs_params_figure(points, title="capacity")
    pixels = saved_pixels(fig, tmp_path, "capacity.png", (7.5, 4.8))
    (ax,) = fig.axes
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("capacity", "parameters (log)", "accuracy %")
    assert ax.get_xscale() == "log"
    assert texts(ax.get_legend().get_texts()) == ["wider", "deeper"]
    wider, deeper = ax.get_lines()
    assert (list(wider.get_xdata()), list(wider.get_ydata())) == ([8e3, 8e5], [86.0, 92.0])  # sorted by params
    assert (list(deeper.get_xdata()), list(deeper.get_ydata())) == ([1.3e6, 3e6], [94.0, 95.0])
    assert [line.get_marker() for line in (wider, deeper)] == ["o", "o"]
    assert [(t.get_text(), tuple(t.xy)) for t in ax.texts] == [
        ("logreg", (8e3, 86.0)), ("1024", (8e5, 92.0)), ("1024-512-256", (1.3e6, 94.0))]  # unlabelled: none
    for i, line in enumerate((wider, deeper)):
        assert line.get_color() == TAB10[i]
        assert colour_pixels(pixels, ax, TAB10[i], exclude=[ax.get_legend()]) > 50


# ---------------------------------------------------------------- error figures

def test_confusion_matrix_cells_are_the_counts(tmp_path):
    labels = np.arange(N) % 10
    predictions = np.where(np.arange(N) % 3 == 0, (labels + 1) % 10, labels)  # a third of each class one off
    predictions[labels == 4] = 7  # all of E taken for H: an empty diagonal cell
    probabilities = 0.02 + 0.8 * np.eye(10)[predictions]  # argmax: the prediction
    fig = plots.confusion_matrix_figure(labels, probabilities, title="test")
    pixels = saved_pixels(fig, tmp_path, "cm.png", (6.6, 5.6))
    ax, colorbar = fig.axes
    counts = np.zeros((10, 10), int)
    np.add.at(counts, (labels, predictions), 1)
    accuracy = 100 * np.mean(labels == predictions)
    assert ax.get_title() == f"test (accuracy {accuracy:.1f}%, n=120)"
    assert (ax.get_xlabel(), ax.get_ylabel(), colorbar.get_ylabel()) == ("predicted", "true", "fraction of true class")
    assert texts(ax.get_xticklabels()) == LETTERS and texts(ax.get_yticklabels()) == LETTERS
    (image,) = ax.get_images()
    fractions = counts / counts.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(image.get_array(), fractions)
    assert image.get_clim() == (0.0, 1.0)
    cells = {(int(t.get_position()[1]), int(t.get_position()[0])): t for t in ax.texts}
    assert sorted(cells) == [(i, j) for i in range(10) for j in range(10)]  # one number per cell, at (col, row)
    for (i, j), text in cells.items():
        assert text.get_text() == str(counts[i, j])
        assert to_rgb(text.get_color()) == to_rgb("white" if fractions[i, j] > 0.5 else "black")
    assert cells[(4, 7)].get_text() == "12" and cells[(4, 4)].get_text() == "0"
    assert_shows(pixels, image, mapped(fractions, "Blues", 0.0, 1.0), where=0.15)  # beside each cell's number


def test_confident_mistakes_show_the_images_most_confident_first(data, tmp_path):
    images, labels, probabilities = data
    fig = plots.confident_mistakes_figure(images, labels, probabilities, k=10)
    pixels = saved_pixels(fig, tmp_path, "mistakes.png", (6.0, 5.2))  # 4 columns of 1.5, 3 rows of 1.6 + 0.4
    assert len(fig.axes) == 12 and fig.get_suptitle() == "10 most confident mistakes"
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert shown == fig.axes[:10] and all(not ax.axison for ax in fig.axes)  # two empty panels at the end
    wrong = plots.most_confident_mistakes(labels, probabilities, 10)
    lo, hi = float(images.min()), float(images.max())
    for ax, i in zip(shown, wrong):
        pred = int(np.argmax(probabilities[i]))
        assert pred != labels[i]
        assert ax.get_title() == f"{LETTERS[labels[i]]}\u2192{LETTERS[pred]} ({probabilities[i, pred]:.2f})"
        (image,) = ax.get_images()
        np.testing.assert_array_equal(image.get_array(), images[i])
        assert image.get_clim() == (lo, hi)  # one grey scale for every panel
        assert_shows(pixels, image, mapped(images[i], "gray", lo, hi))
    confidence = [probabilities[i].max() for i in wrong]
    assert confidence == sorted(confidence, reverse=True)

    fig = plots.confident_mistakes_figure(images, labels, np.eye(10)[labels])  # no mistakes, default k=16
    pixels = saved_pixels(fig, tmp_path, "none.png", (6.0, 2.0))  # 4 columns, one row
    (ax,) = fig.axes
    assert texts(ax.texts) == ["no mistakes"] and not ax.get_images() and not ax.axison
    assert colour_pixels(pixels, ax, "black") > 20  # the words are drawn



# ---------------------------------------------------------------- weight figures

def test_templates_show_each_letters_weight_column(tmp_path):
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(784, 10))
    fig = plots.templates_figure(weights)
    pixels = saved_pixels(fig, tmp_path, "templates.png", (6.5, 3.1))  # 5 of 1.3 inches a row, 2 rows + 0.5
    assert fig.get_suptitle() == "Logistic regression: one template per letter"
    assert len(fig.axes) == 10
    for c, ax in enumerate(fig.axes):
        assert ax.get_title() == LETTERS[c] and not ax.axison
        (image,) = ax.get_images()
        template = weights[:, c].reshape(28, 28)
        np.testing.assert_allclose(image.get_array(), template)
        bound = np.abs(template).max()
        assert image.get_clim() == (-bound, bound)  # symmetric: white is zero
        assert_shows(pixels, image, mapped(template, "RdBu_r", -bound, bound))
    for bad in (weights[:, :9], weights.T, np.full((784, 10), np.nan)):
        with pytest.raises(ValueError, match="weights must"):
            plots.templates_figure(bad)


def test_strongest_units_rank_by_incoming_times_outgoing_norm_and_title_their_letter():
    first = np.zeros((784, 6))
    second = np.zeros((6, 10))
    for unit, (inc, out, letter) in enumerate([(1, 1, 0), (3, 1, 4), (1, 5, 9), (2, 2, 1), (0, 9, 2), (1, 0.5, 3)]):
        first[unit, unit] = inc  # a single incoming pixel
        second[unit, letter] = out
    np.testing.assert_array_equal(plots.strongest_units(first, second, k=4), [2, 3, 1, 0])
    fig = plots.hidden_units_figure(first, second, k=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_images()]
    assert titles == ["#2 +J", "#3 +B", "#1 +E", "#0 +A"]
    with pytest.raises(ValueError, match="second must have shape"):
        plots.strongest_units(first, second[:5])
    with pytest.raises(ValueError, match="k must be >= 1"):
        plots.strongest_units(first, second, k=0)


def test_hidden_units_show_the_strongest_units_incoming_weights(tmp_path):
    rng = np.random.default_rng(1)
    first, second = rng.normal(size=(784, 40)), rng.normal(size=(40, 10))
    fig = plots.hidden_units_figure(first, second, k=5, title="units")
    pixels = saved_pixels(fig, tmp_path, "units.png", (3.3, 2.9))  # 3 columns of 1 inch + 0.3, 2 rows of 1.2 + 0.5
    assert fig.get_suptitle() == "units" and len(fig.axes) == 6
    units = plots.strongest_units(first, second, k=5)
    shown = [ax for ax in fig.axes if ax.get_images()]
    assert shown == fig.axes[:5]
    for ax, unit in zip(shown, units):
        assert ax.get_title() == f"#{unit} +{LETTERS[int(np.argmax(second[unit]))]}"
        (image,) = ax.get_images()
        incoming = first[:, unit].reshape(28, 28)
        np.testing.assert_allclose(image.get_array(), incoming)
        bound = np.abs(incoming).max()
        assert_shows(pixels, image, mapped(incoming, "RdBu_r", -bound, bound))


# ---------------------------------------------------------------- bad input, saving, imports

def save(path, figure, *args, **kwargs) -> str:
    """Draws ``figure(*args, **kwargs)`` and saves it at ``path``, as results_dir does."""
    return plots.save_figure(figure(*args, **kwargs), path)


@pytest.mark.parametrize("call", [
    lambda p, d: save(p, plots.sample_grid_figure, d[0][:, :27], d[1]),
    lambda p, d: save(p, plots.sample_grid_figure, d[0], d[1][:-1]),
    lambda p, d: save(p, plots.sample_grid_figure, d[0], d[1], per_class=0),
    lambda p, d: save(p, plots.class_balance_figure, {"train": [1, 2, 3]}),
    lambda p, d: save(p, plots.class_balance_figure, {}),
    lambda p, d: save(p, plots.learning_curves_figure, {}),
    lambda p, d: save(p, plots.learning_curves_figure, {"x": [{"loss": 1.0}]}),
    lambda p, d: save(p, plots.confusion_matrix_figure, d[1], d[1][:-1]),
    lambda p, d: save(p, plots.confident_mistakes_figure, d[0], d[1], d[2][:, :5]),
    lambda p, d: save(p, plots.confident_mistakes_figure, d[0][:5], d[1], d[2]),
    lambda p, d: save(p, plots.accuracy_vs_params_figure, []),
    lambda p, d: save(p, plots.accuracy_vs_params_figure, [{"family": "a", "params": 0, "accuracy": 1}]),
    lambda p, d: save(p, plots.accuracy_vs_params_figure, [{"family": "a", "accuracy": 1}]),
])
def test_bad_inputs_raise_before_writing(call, data, tmp_path):
    target = tmp_path / "out" / "plot.png"
    with pytest.raises(ValueError):
        call(target, data)
    assert not target.exists()
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_failed_save_leaves_old_file(data, tmp_path, monkeypatch):
    images, labels, _ = data
    path = tmp_path / "samples.png"
    path.write_bytes(b"old")

    def broken_savefig(self, fname, **kwargs):
        with open(fname, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        save(path, plots.sample_grid_figure, images, labels)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["samples.png"]


def test_import_leaves_backend_and_pyplot_alone():
    code = ("import sys, dnn_tf.report.plots, matplotlib; "
            "sys.exit(('matplotlib.pyplot' in sys.modules) or ('tensorflow' in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
