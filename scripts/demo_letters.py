#!/usr/bin/env python3
"""Letters drawn by a script, to check the draw-a-letter page's framing with a real network.

    python scripts/demo_letters.py --model runs/deep [--per-letter 30] [--seed 0]

``LETTERS`` holds each of A..J as pen strokes (hand-written capitals, the way a person draws them
on the pad); ``drawing`` jitters one (slant, shear, proportions, size, place on a 300-pixel pad,
a shaky hand) and samples it densely, as a mouse or a finger would. The command builds the
page of ``--model`` in a temporary folder, frames every drawing with the page's own ``dnnTf.frame``
(run in node) under the framing the page uses and under other framings, and prints for each the
accuracy of the model on them, and for the page's framing, how its images compare with notMNIST
(scripts/notmnist_framing.py's figures). docs/demo.md quotes the output. The browser test and
scripts/demo_speed.py draw these letters too.
"""

from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing
sys.path.insert(0, str(Path(__file__).resolve().parent))

from dnn_tf.cli import ArgumentParser, import_tensorflow, positive_int, run  # noqa: E402
from dnn_tf.notmnist import LETTERS as NAMES  # noqa: E402
from dnn_tf.notmnist import normalize  # noqa: E402

PROG = "demo_letters"
PAD = 300.0  # pixels of the pad the drawings are placed on
POINT_STEP = 0.02  # distance between sampled points, a fraction of the letter's size
SHAKE = 0.012  # spread of a shaky hand's offsets, a fraction of the letter's size
SHAKE_SPAN = 6  # points over which the shake is smooth


def arc(cx, cy, rx, ry, start, stop, n=24):
    """Points of an elliptic arc in the unit box (y down), angles in degrees counterclockwise from +x."""
    return [(cx + rx * math.cos(math.radians(a)), cy - ry * math.sin(math.radians(a)))
            for a in np.linspace(start, stop, n)]


# Each letter: the forms a hand gives it, each strokes of (x, y) in the unit box, y downwards, in drawing order.
LETTERS: dict[str, list[list[list[tuple[float, float]]]]] = {
    "A": [[[(0.0, 1.0), (0.5, 0.0), (1.0, 1.0)], [(0.22, 0.6), (0.78, 0.6)]]],
    "B": [[[(0.0, 0.0), (0.0, 1.0)],
           [(0.0, 0.0), *arc(0.45, 0.24, 0.35, 0.24, 90, -90), (0.0, 0.48)],
           [(0.0, 0.48), *arc(0.5, 0.74, 0.45, 0.26, 90, -90), (0.0, 1.0)]]],
    "C": [[arc(0.5, 0.5, 0.5, 0.5, 45, 315)]],
    "D": [[[(0.0, 0.0), (0.0, 1.0)], [(0.0, 0.0), *arc(0.3, 0.5, 0.7, 0.5, 90, -90), (0.0, 1.0)]]],
    "E": [[[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], [(0.0, 0.5), (0.8, 0.5)]]],
    "F": [[[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0)], [(0.0, 0.5), (0.8, 0.5)]]],
    "G": [[[*arc(0.5, 0.5, 0.5, 0.5, 45, 345), (1.0, 0.55), (0.55, 0.55)]]],
    "H": [[[(0.0, 0.0), (0.0, 1.0)], [(1.0, 0.0), (1.0, 1.0)], [(0.0, 0.5), (1.0, 0.5)]]],
    "I": [[[(0.0, 0.0), (1.0, 0.0)], [(0.5, 0.0), (0.5, 1.0)], [(0.0, 1.0), (1.0, 1.0)]],  # with serifs
          [[(0.5, 0.0), (0.5, 1.0)]]],  # one bar
    "J": [[[(0.2, 0.0), (1.0, 0.0)], [(0.75, 0.0), (0.75, 0.7), *arc(0.4, 0.7, 0.35, 0.3, 0, -180)[1:]]],
          [[(0.75, 0.0), (0.75, 0.7), *arc(0.4, 0.7, 0.35, 0.3, 0, -180)[1:]]]],  # no top bar
}
# Proportions a hand gives each letter (width / height), before jitter.
ASPECT = {"A": 0.8, "B": 0.6, "C": 0.75, "D": 0.7, "E": 0.6, "F": 0.6, "G": 0.8, "H": 0.75, "I": 0.45, "J": 0.55}


def densify(points: Sequence[tuple[float, float]], step: float) -> list[tuple[float, float]]:
    """The polyline with points every ``step`` at most along it (what a pointer reports while drawing)."""
    out = [points[0]]
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        n = max(1, int(math.ceil(math.hypot(x1 - x0, y1 - y0) / step)))
        out += [(x0 + (x1 - x0) * t / n, y0 + (y1 - y0) * t / n) for t in range(1, n + 1)]
    return out


def wobble(n: int, rng: np.random.Generator, scale: float) -> np.ndarray:
    """``(n, 2)`` smooth offsets of a shaky hand: white noise averaged over ``SHAKE_SPAN`` neighbouring points."""
    noise = rng.normal(0, scale, (n + SHAKE_SPAN - 1, 2))
    kernel = np.ones(SHAKE_SPAN) / np.sqrt(SHAKE_SPAN)  # keeps the spread of each offset at ``scale``
    return np.stack([np.convolve(noise[:, k], kernel, mode="valid") for k in range(2)], axis=1)


def drawing(letter: str, rng: np.random.Generator, jitter: float = 1.0, form: int | None = None
            ) -> list[list[list[float]]]:
    """One hand-drawn ``letter``: strokes of ``[x, y]`` pad pixels, jittered by ``rng`` (``jitter=0``: none).

    ``form`` picks one of the letter's forms in ``LETTERS`` (None: one at random).
    """
    forms = LETTERS[letter]
    form = int(rng.integers(len(forms))) if form is None else form
    size = PAD * rng.uniform(0.35, 0.8) if jitter else PAD * 0.6
    aspect = ASPECT[letter] * math.exp(jitter * rng.uniform(-0.25, 0.25))
    slant = jitter * rng.uniform(-0.25, 0.15)  # x shift per unit of height going up (most hands lean right)
    turn = math.radians(jitter * rng.uniform(-8, 8))
    left = rng.uniform(0, PAD - size * aspect) if jitter else (PAD - size * aspect) / 2
    top = rng.uniform(0, PAD - size) if jitter else (PAD - size) / 2
    strokes = []
    for stroke in forms[form]:
        points = []
        line = densify(stroke, POINT_STEP)
        shake = wobble(len(line), rng, jitter * SHAKE)
        for (x, y), (ex, ey) in zip(line, shake):
            x = (x - 0.5) * aspect + slant * (0.5 - y)
            y = y - 0.5
            x, y = x * math.cos(turn) - y * math.sin(turn), x * math.sin(turn) + y * math.cos(turn)
            points.append([left + size * (x + aspect / 2 + ex), top + size * (y + 0.5 + ey)])
        strokes.append(points)
    return inside_pad(strokes)


def inside_pad(strokes: list[list[list[float]]], border: float = 2.0) -> list[list[list[float]]]:
    """The strokes moved (and if need be shrunk) to lie ``border`` pixels inside the pad."""
    xs = [p[0] for s in strokes for p in s]
    ys = [p[1] for s in strokes for p in s]
    k = min(1.0, (PAD - 2 * border) / max(max(xs) - min(xs), max(ys) - min(ys), 1e-9))

    def shift(low: float, high: float) -> float:
        return border - low if low < border else PAD - border - high if high > PAD - border else 0.0

    dx, dy = shift(min(xs) * k, max(xs) * k), shift(min(ys) * k, max(ys) * k)
    return [[[x * k + dx, y * k + dy] for x, y in s] for s in strokes]


def drawings(per_letter: int, seed: int = 0) -> tuple[list[list[list[list[float]]]], np.ndarray]:
    """``per_letter`` jittered drawings of each letter and their labels 0..9."""
    rng = np.random.default_rng(seed)
    out = [drawing(letter, rng) for letter in NAMES for _ in range(per_letter)]
    return out, np.repeat(np.arange(len(NAMES)), per_letter)


# Framings compared (dnnTf.frame options): the page's, and what changes if one measure is changed.
VARIANTS = {
    "the page's (fill the frame, pen 3.7, stretch <= 3)": {},
    "keep proportions (stretch 1)": {"maxStretch": 1},
    "any stretch": {"maxStretch": 1e9},
    "MNIST-like: 20x20 box, proportions kept": {"maxStretch": 1, "margin": 4},
    "stretch <= 1.5": {"maxStretch": 1.5},
    "stretch <= 6": {"maxStretch": 6},
    "thin pen (1.85)": {"penWidth": 1.85},
    "thick pen (5.55)": {"penWidth": 5.55},
}


def body(argv: Sequence[str] | None) -> int:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="run folder or SavedModel folder")
    parser.add_argument("--per-letter", type=positive_int, default=30, help="drawings of each letter (default 30)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    import_tensorflow(args)
    import notmnist_framing

    from dnn_tf.demo import node, page
    from dnn_tf.training import inference

    data, labels = drawings(args.per_letter, args.seed)
    loaded = inference.load(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        built = page.build_page(args.model, Path(tmp) / "page")
        print(f"{len(data)} drawings ({args.per_letter} of each letter, seed {args.seed}); model {built.name} "
              f"({'-'.join(map(str, built.sizes))})\n")
        print("| framing | accuracy % | worst letters |\n|---|---:|---|")
        page_images = None
        for name, options in VARIANTS.items():
            images = node.frame(built.path, data, options or None)
            page_images = images if page_images is None else page_images
            guesses = inference.predict(loaded, normalize(images)).argmax(axis=1)
            per = [(float(np.mean(guesses[labels == c] == c)), NAMES[c]) for c in range(len(NAMES))]
            worst = ", ".join(f"{letter} {100 * acc:.0f}" for acc, letter in sorted(per)[:3])
            print(f"| {name} | {100 * np.mean(guesses == labels):.1f} | {worst} |")
        print("\nThe page's framed drawings, measured like notMNIST (scripts/notmnist_framing.py):\n")
        print(notmnist_framing.report(notmnist_framing.measure(page_images, labels)))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
