#!/usr/bin/env python3
"""How notMNIST frames a letter: ink bounding box, margins, aspect, stroke width, ink and background values.

    python scripts/notmnist_framing.py --archive path/to/notMNIST_small.tar.gz [--json framing.json]
    python scripts/notmnist_framing.py --pixels drawn.json      # 784-pixel images, e.g. the page's preprocess()

The draw-a-letter page (``dnn-tf-demo``) turns a drawing into a 28x28 image the network has to
take for a notMNIST glyph, so it copies how the dataset frames its letters; this script measures
that on the real glyphs (docs/demo.md quotes its output). ``--pixels`` measures images given as
JSON lists of 784 values 0..255 the same way, to compare what the page makes with the real thing.

Glyphs whose border is mostly light (a dark letter on a light square) are counted and left out of
the other figures: the page draws light ink on a dark pad, as most glyphs are. "Ink" is a pixel at
or above ``--threshold``. The stroke width is ``2 * ink / perimeter`` (a stroke of width w and
length L has area w L and outline 2 L), with ink the summed intensity and the perimeter its total
variation, both in pixels, so anti-aliased edges count by how much ink they hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf.cli import ArgumentParser, UsageError, run  # noqa: E402
from dnn_tf.notmnist import IMAGE_SIZE, LETTERS, PIXEL_DEPTH  # noqa: E402

PROG = "notmnist_framing"
THRESHOLD = 128  # a pixel at or above this is ink (the middle of 0..255)
PERCENTILES = (5, 25, 50, 75, 95)


def light_background(images: np.ndarray) -> np.ndarray:
    """Per image: is the mean of its outermost ring of pixels above mid-gray (a dark letter on a light square)?"""
    ring = np.concatenate([images[:, 0, :], images[:, -1, :], images[:, 1:-1, 0], images[:, 1:-1, -1]], axis=1)
    return ring.mean(axis=1) > PIXEL_DEPTH / 2


def ink_boxes(images: np.ndarray, threshold: int = THRESHOLD) -> dict[str, np.ndarray]:
    """Per image: first/last ink row and column (``top``, ``bottom``, ``left``, ``right``) and ``any`` ink."""
    ink = images >= threshold
    rows, cols = ink.any(axis=2), ink.any(axis=1)
    last = images.shape[1] - 1
    return {"top": rows.argmax(1), "bottom": last - rows[:, ::-1].argmax(1),
            "left": cols.argmax(1), "right": last - cols[:, ::-1].argmax(1), "any": ink.any(axis=(1, 2))}


def stroke_widths(images: np.ndarray) -> np.ndarray:
    """Per image: ``2 * ink / perimeter`` in pixels (module docstring), ink and perimeter from intensities."""
    x = images.astype(np.float64) / PIXEL_DEPTH
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))  # the outline along the frame counts too
    gy, gx = np.gradient(padded, axis=(1, 2))
    perimeter = np.hypot(gx, gy).sum(axis=(1, 2))  # a sharp edge: 1/2 on each side of it, 1 per pixel of length
    area = x.sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(perimeter > 0, 2 * area / perimeter, np.nan)


def background(image: np.ndarray, threshold: int = THRESHOLD) -> int:
    """The commonest value of an image's pixels below ``threshold`` (its background)."""
    low = image[image < threshold]
    return int(np.bincount(low).argmax()) if low.size else threshold


def summary(values: np.ndarray) -> dict[str, float]:
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return {"n": 0}
    return {"n": int(values.size), "mean": float(values.mean()),
            **{f"p{p}": float(v) for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES))}}


def measure(images: np.ndarray, labels: np.ndarray | None = None, threshold: int = THRESHOLD) -> dict:
    """The framing figures of uint8 images ``(n, 28, 28)``: see the module docstring."""
    images = np.asarray(images, np.uint8)
    light = light_background(images)
    dark = images[~light]
    box = ink_boxes(dark, threshold)
    ok = box["any"]
    height = box["bottom"] - box["top"] + 1
    width = box["right"] - box["left"] + 1
    side = IMAGE_SIZE
    out = {
        "images": int(len(images)), "light_background": int(light.sum()), "measured": int(ok.sum()),
        "threshold": threshold,
        "height": summary(height[ok]), "width": summary(width[ok]), "aspect_w_over_h": summary((width / height)[ok]),
        "margin_top": summary(box["top"][ok]), "margin_bottom": summary((side - 1 - box["bottom"])[ok]),
        "margin_left": summary(box["left"][ok]), "margin_right": summary((side - 1 - box["right"])[ok]),
        "fills_height": float(np.mean(height[ok] == side)), "fills_width": float(np.mean(width[ok] == side)),
        "fills_both": float(np.mean((height[ok] == side) & (width[ok] == side))),
        "stroke_width": summary(stroke_widths(dark[ok])),
        "ink_value": summary(dark[ok].max(axis=(1, 2))),
        "background_value": summary([background(img, threshold) for img in dark[ok]]),
        "ink_cover": summary(dark[ok].mean(axis=(1, 2)) / PIXEL_DEPTH),
        "pixels_at_0": float(np.mean(dark == 0)), "pixels_at_255": float(np.mean(dark == 255)),
    }
    if labels is not None:
        labels = np.asarray(labels)[~light][ok]
        out["width_by_letter"] = {letter: summary(width[ok][labels == c]) for c, letter in enumerate(LETTERS)}
    return out


def report(figures: dict) -> str:
    """The figures as a markdown table (median and spread of each measure)."""
    n = figures["images"]
    lines = [f"{n:,} images; {figures['light_background']:,} ({100 * figures['light_background'] / n:.1f}%) "
             f"on a light background, left out; {figures['measured']:,} measured (ink: pixel >= "
             f"{figures['threshold']})", "",
             "| measure | p5 | p25 | median | p75 | p95 | mean |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key in ("height", "width", "aspect_w_over_h", "margin_top", "margin_bottom", "margin_left", "margin_right",
                "stroke_width", "ink_value", "background_value", "ink_cover"):
        s = figures[key]
        if s["n"]:
            lines.append(f"| {key} | " + " | ".join(f"{s[f'p{p}']:.2f}" for p in PERCENTILES) + f" | {s['mean']:.2f} |")
    lines += ["", f"ink box fills the frame's height in {100 * figures['fills_height']:.1f}%, its width in "
              f"{100 * figures['fills_width']:.1f}%, both in {100 * figures['fills_both']:.1f}%; pixels at 0: "
              f"{100 * figures['pixels_at_0']:.1f}%, at 255: {100 * figures['pixels_at_255']:.1f}%"]
    if "width_by_letter" in figures:
        lines.append("ink box width by letter (median, p5): " + ", ".join(
            f"{k} {v['p50']:.0f} ({v['p5']:.0f})" for k, v in figures["width_by_letter"].items() if v["n"]))
    return "\n".join(lines)


def read_pixels(path: str) -> np.ndarray:
    """Images from a JSON list of 784-value lists (0..255, row-major).

    Raises:
      UsageError: not such a list.
    """
    try:
        data = np.asarray(json.loads(Path(path).read_text()), np.float64)
    except (json.JSONDecodeError, ValueError, TypeError) as e:
        raise UsageError(f"{path}: not a JSON list of 784-pixel images ({e})") from None
    if data.ndim != 2 or data.shape[1] != IMAGE_SIZE * IMAGE_SIZE or data.min() < 0 or data.max() > PIXEL_DEPTH:
        raise UsageError(f"{path}: expected a list of lists of {IMAGE_SIZE * IMAGE_SIZE} values 0..255")
    return np.rint(data).astype(np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def body(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--archive", help="a notMNIST .tar.gz/.tar archive or A..J folder")
    source.add_argument("--pixels", help="a JSON list of 784-pixel images (0..255, row-major)")
    parser.add_argument("--threshold", type=int, default=THRESHOLD, help="ink: pixel >= this (default %(default)s)")
    parser.add_argument("--json", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if not 1 <= args.threshold <= 255:
        raise UsageError(f"--threshold must be in 1..255, got {args.threshold}")
    if args.archive:
        from dnn_tf.data.decode import read_images

        found = read_images(args.archive, normalized=False)
        images, labels = found.images, found.labels
    else:
        images, labels = read_pixels(args.pixels), None
    if not len(images):
        raise UsageError("no images")
    figures = measure(images, labels, args.threshold)
    print(report(figures))
    if args.json:
        from dnn_tf import files

        files.write_json(args.json, figures)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
