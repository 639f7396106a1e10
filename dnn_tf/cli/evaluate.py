"""``dnn-tf-evaluate``: accuracy of a saved model on images, overall and per letter.

Examples::

    dnn-tf-evaluate --model runs/relu1024 --images notMNIST_small.tar.gz
    dnn-tf-evaluate --model runs/relu1024 --images my_letters/ --json eval.json     # my_letters/A/*.png ...
    dnn-tf-evaluate --model runs/relu1024/saved_model --images data/notMNIST.pickle --split test_sanitized

``--model`` is a run folder (its ``saved_model``) or a SavedModel folder; it is
loaded with ``tf.saved_model.load`` only, so no code of this package is needed
to rebuild the network. ``--images`` is a ``.tar.gz``/``.tar`` archive or a
folder laid out ``A..J/*.png`` (labels from the folder names), or a prepared
pickle (``--split`` picks the arrays, default ``test``). Bad input: one line on
stderr, exit 2.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Sequence

import numpy as np

from dnn_tf.cli import ArgumentParser, UsageError, add_output_flags, import_tensorflow, run, setup_output, show_progress
from dnn_tf.data import dataset
from dnn_tf.notmnist import LETTERS

PROG = "dnn-tf-evaluate"
PICKLE_SUFFIXES = (".pickle", ".pkl")
SPLITS = dataset.SPLITS + dataset.SANITIZED_SPLITS
DEFAULT_BATCH = 10000


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Evaluate a trained notMNIST model (SavedModel) on labelled images.")
    p.add_argument("--model", required=True, metavar="DIR", help="run folder or SavedModel folder")
    p.add_argument("--images", required=True, metavar="PATH",
                   help="archive (.tar.gz/.tar), folder with A..J subfolders, or a prepared .pickle")
    p.add_argument("--split", default="test", choices=SPLITS, help="arrays to use from a pickle (default: %(default)s)")
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--batch-size", type=int, default=DEFAULT_BATCH, metavar="N",
                   help="images per forward pass (default: %(default)s)")
    add_output_flags(p)
    return p


def load_labelled(path: str, split: str, progress: bool) -> tuple[np.ndarray, np.ndarray, int]:
    """Images (n, 28, 28) float32, labels (n,) and the number of skipped files.

    Raises:
      UsageError / DataError: missing path, unreadable input, no such split, no images.
    """
    if not os.path.exists(path):
        raise UsageError(f"{path} does not exist")
    if os.path.isfile(path) and path.lower().endswith(PICKLE_SUFFIXES):
        data = dataset.load(path)
        keys = dataset.keys(split)
        if not all(k in data for k in keys):
            raise UsageError(f"{path} has no {keys[0]}/{keys[1]}")
        images, labels, skipped = data[keys[0]], data[keys[1]], 0
    else:
        from dnn_tf.data.decode import read_images

        found = read_images(path, progress=progress)
        images, labels, skipped = found.images, found.labels, len(found.skipped)
    if len(images) == 0:
        raise UsageError(f"no images in {path}")
    return images, labels.astype(np.int64), skipped


def per_letter(labels: np.ndarray, predictions: np.ndarray) -> list[dict[str, Any]]:
    """Rows (letter, n, correct, accuracy, most confused with) from true and predicted classes."""
    confusion = np.zeros((len(LETTERS), len(LETTERS)), np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    rows = []
    for c, letter in enumerate(LETTERS):
        n = int(confusion[c].sum())
        correct = int(confusion[c, c])
        wrong = confusion[c].copy()
        wrong[c] = 0
        other = int(np.argmax(wrong))
        rows.append({"letter": letter, "n": n, "correct": correct,
                     "accuracy": 100.0 * correct / n if n else None,
                     "confused_with": LETTERS[other] if wrong[other] else None,
                     "confused_count": int(wrong[other])})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    lines = [f"{'letter':<7}{'n':>7}{'correct':>9}{'accuracy':>10}  most confused with"]
    for r in rows:
        acc = f"{r['accuracy']:.1f}%" if r["accuracy"] is not None else "-"
        confused = f"{r['confused_with']} ({r['confused_count']})" if r["confused_with"] else "-"
        lines.append(f"{r['letter']:<7}{r['n']:>7}{r['correct']:>9}{acc:>10}  {confused}")
    return "\n".join(lines)


def body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_output(args)
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be > 0, got {args.batch_size}")
    # Checked before TensorFlow is imported: fast errors without its start-up log lines.
    if not os.path.exists(args.model):
        raise UsageError(f"no SavedModel in {args.model}")
    if not os.path.exists(args.images):
        raise UsageError(f"{args.images} does not exist")
    images, labels, skipped = load_labelled(args.images, args.split, progress=show_progress(args))
    import_tensorflow(args)
    from dnn_tf.training.inference import predict, resolve_saved_model

    model_dir = resolve_saved_model(args.model)  # FileNotFoundError -> exit 2
    if labels.min() < 0 or labels.max() >= len(LETTERS):
        raise UsageError(f"labels in {args.images} are not in 0..{len(LETTERS) - 1}")
    probabilities = predict(model_dir, images, batch_size=args.batch_size)
    predictions = np.argmax(probabilities, axis=1)
    correct = int(np.sum(predictions == labels))
    accuracy = 100.0 * correct / len(labels)
    rows = per_letter(labels, predictions)
    print(f"Accuracy: {accuracy:.2f}% ({correct}/{len(labels)} images"
          + (f", {skipped} unreadable files skipped)" if skipped else ")"))
    print(format_table(rows))
    if args.json:
        from dnn_tf import files

        files.write_json(args.json, {"model": model_dir, "images": args.images,
                                  "split": args.split if args.images.lower().endswith(PICKLE_SUFFIXES) else None,
                                  "n": len(labels), "correct": correct, "accuracy": accuracy,
                                  "skipped": skipped, "per_letter": rows})
        print(f"wrote {args.json}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``dnn-tf-evaluate``."""
    return run(body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
