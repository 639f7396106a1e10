"""Writes the draw-a-letter page of a trained run: ``index.html``, its scripts and style, ``weights.js``.

The page is static and self-contained (no CDN, no server, nothing fetched): it opens from
``file://`` as well as from any web server. The folder is written whole or not at all: into a
temporary folder beside it, then renamed into place. A folder already there is replaced only if
it holds nothing but an earlier page's files, so a mistyped ``--out`` never deletes anything else.
Only ``build_page`` needs TensorFlow, and imports it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources

from dnn_tf import files
from dnn_tf.demo import export

STATIC_FILES = ("index.html", "dnn_tf.js", "page.js", "page.css")
WEIGHTS_FILE = "weights.js"
PAGE_FILES = frozenset(STATIC_FILES + (WEIGHTS_FILE,))
# What index.html loads, in order; all but page.js (the pad, the bars: the DOM) also run in node.
SCRIPTS = (WEIGHTS_FILE, "dnn_tf.js", "page.js")
CORE_SCRIPTS = SCRIPTS[:-1]
FOLDER_MODE = 0o755  # mkdtemp makes 0700; a web server must be able to read the page


@dataclass(frozen=True)
class Page:
    """What ``build_page`` wrote."""

    path: str  # the folder
    name: str  # the run's name
    sizes: tuple[int, ...]  # layer widths, 784 ... 10
    dtype: str  # of the weights
    weights_bytes: int  # size of weights.js
    total_bytes: int  # of the whole folder
    check_difference: float  # largest probability difference, numpy forward pass vs SavedModel (export.check_against)

    @property
    def index(self) -> str:
        return os.path.join(self.path, "index.html")


def static_text(name: str) -> str:
    """The text of one of the page's own files (``STATIC_FILES``), as shipped in the package."""
    return resources.files("dnn_tf.demo").joinpath("static", name).read_text(encoding="utf-8")


def check_out_dir(out_dir: str | os.PathLike) -> str:
    """The absolute folder to write, if it is new, empty or an earlier page.

    Raises:
      ValueError: a file, or a folder holding anything but an earlier page's files.
    """
    out = os.path.abspath(os.fspath(out_dir))
    if os.path.lexists(out):
        if not os.path.isdir(out) or os.path.islink(out):
            raise ValueError(f"{out_dir} exists and is not a folder")
        other = sorted(set(os.listdir(out)) - PAGE_FILES)
        if other:
            more = ", ..." if len(other) > 3 else ""
            raise ValueError(f"{out_dir} holds other files ({', '.join(other[:3])}{more}); choose a new or empty "
                             "folder for the page")
    return out


def build_page(model: str | os.PathLike, out_dir: str | os.PathLike, dtype: str = "float32") -> Page:
    """Exports the network of ``model`` (a run folder or SavedModel folder) and writes its page into ``out_dir``.

    Args:
      model: run folder (``<run>/saved_model``) or SavedModel folder.
      out_dir: the page's folder (created; an earlier page there is replaced).
      dtype: ``"float32"`` or ``"float16"`` (half the download, see docs/demo.md for its accuracy).

    Raises:
      FileNotFoundError: no SavedModel. ValueError: a run trained with deskew, weights the page cannot run, a bad
      ``dtype`` or ``out_dir``.
    """
    from dnn_tf.training import inference  # TensorFlow: imported only here, so this module loads without it

    if dtype not in export.DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(export.DTYPES)}, got {dtype!r}")
    out = check_out_dir(out_dir)
    saved = inference.resolve_saved_model(model)
    run_dir = export.run_folder(saved)
    info = export.run_info(run_dir)
    name = info.get("run") or os.path.basename(os.path.abspath(run_dir or saved))
    loaded = inference.load(saved)
    network = export.from_saved_model(loaded, name, info)
    difference = export.check_against(network, lambda images: inference.predict(loaded, images))
    written = write_page(out, {WEIGHTS_FILE: export.weights_script(network, dtype)})
    sizes = {f: os.path.getsize(os.path.join(written, f)) for f in os.listdir(written)}
    return Page(written, name, tuple(network.sizes), dtype, sizes[WEIGHTS_FILE], sum(sizes.values()), difference)


def write_page(out_dir: str | os.PathLike, generated: dict[str, str]) -> str:
    """Writes the static files plus ``generated`` ({name: text}) as the folder ``out_dir``, atomically.

    Returns:
      The absolute folder.

    Raises:
      ValueError: see ``check_out_dir``.
    """
    out = check_out_dir(out_dir)
    with files.atomic_dir(out) as tmp:
        os.chmod(tmp, FOLDER_MODE)
        for name in STATIC_FILES:
            _write(os.path.join(tmp, name), static_text(name))
        for name, text in generated.items():
            _write(os.path.join(tmp, name), text)
        if os.path.isdir(out):
            check_out_dir(out)  # still only an earlier page, right before it is replaced
    return out


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
