"""``dnn-tf-demo``: a trained run as a web page where you draw a letter and the network guesses it.

Examples::

    dnn-tf-demo --model runs/deep --out demo/            # then open demo/index.html
    dnn-tf-demo --model runs/relu1024 --out page/ --float16
    python -m http.server -d demo/                        # or serve it: nothing else is needed

``--model`` is a run folder (its ``saved_model``) or a SavedModel folder of any preset,
logistic regression to ``deep``. ``--out`` gets ``index.html``, the page's script and style and
``weights.js``: a static page that runs the network in the browser (docs/demo.md). The folder must be
new, empty or an earlier page, which is replaced whole. A run trained with ``deskew=True`` is
refused. Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from dnn_tf.cli import ArgumentParser, UsageError, add_output_flags, import_tensorflow, run, setup_output

PROG = "dnn-tf-demo"
MEGABYTE = 1e6


def size(n: int) -> str:
    """Bytes in MB (decimal), or in kB below a tenth of a megabyte."""
    return f"{n / MEGABYTE:.1f} MB" if n >= MEGABYTE / 10 else f"{n / 1000:.0f} kB"


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description="Write a static web page that runs a trained model on letters "
                                              "you draw (no server, no network).")
    p.add_argument("--model", required=True, metavar="DIR", help="run folder or SavedModel folder")
    p.add_argument("--out", required=True, metavar="DIR", help="the page's folder (new, empty or an earlier page)")
    p.add_argument("--float16", action="store_true",
                   help="store the weights as float16: half the download, probabilities within docs/demo.md's "
                        "tolerance")
    add_output_flags(p)
    return p


def body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_output(args)
    # Checked before TensorFlow is imported: fast errors without its start-up log lines.
    if not os.path.exists(args.model):
        raise UsageError(f"no SavedModel in {args.model}")
    from dnn_tf.demo import page as page_module

    page_module.check_out_dir(args.out)
    import_tensorflow(args)
    page = page_module.build_page(args.model, args.out, "float16" if args.float16 else "float32")
    sizes = "-".join(str(s) for s in page.sizes)
    print(f"wrote {page.index} ({page.name}: {sizes}, {page.dtype} weights, {size(page.weights_bytes)} of "
          f"{size(page.total_bytes)})")
    if not args.quiet:
        print(f"open it in a browser, or serve the folder: python -m http.server -d {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``dnn-tf-demo``."""
    return run(body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
