#!/usr/bin/env python3
"""Writes the exercises (``make exercises``): the course notebooks with each problem's solution emptied.

    python scripts/make_exercises.py                    # notebooks/*.ipynb -> exercises/*.ipynb
    python scripts/make_exercises.py --force            # also overwrite exercises you have changed
    python scripts/make_exercises.py --out DIR --only 2_fullyconnected.ipynb

In ``notebooks/`` each problem is a markdown cell tagged ``problem``, followed by its solution (code
cells tagged ``solution``, each opening with comment lines that say what it defines) and a check cell
(tagged ``check``) that runs the solution against the package's reference and prints ``PASSED`` or
``NOT YET - <what is wrong>``. An exercise is the same notebook with every solution cell cut down to
its opening comments and every output cleared; the check cells stay, so they tell the learner what is
missing or wrong. ``exercises/`` is generated and git-ignored. An exercise the learner has edited (its
cells differ from what this script wrote, see ``EXERCISE_KEY``) is kept unless ``--force``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from dnn_tf import files  # noqa: E402
from dnn_tf.cli import ArgumentParser, add_output_flags, run, setup_output  # noqa: E402

PROG = "make_exercises"
ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
EXERCISES = ROOT / "exercises"
NAMES = ("1_notmnist.ipynb", "2_fullyconnected.ipynb", "3_regularization.ipynb")
PROBLEM, SOLUTION, CHECK = "problem", "solution", "check"  # the cell tags
EXERCISE_KEY = "dnn_tf_exercise"  # notebook metadata: the source notebook and the SHA-256 of the cells written
HEADER = (
    "**Exercise**, written by `make exercises` from [`notebooks/{name}`](../notebooks/{name}), where the "
    "solutions are. Each problem's solution cells are empty but for a comment that says what to write: write "
    "it, run the cells in order, and the check cell after each problem says `PASSED` or what is still wrong. "
    "`make exercises` keeps this file once you have changed it (`--force` overwrites it)."
)


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(EXERCISES), help="folder of the exercises (default: exercises/)")
    p.add_argument("--only", action="append", choices=NAMES, help="this notebook only (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite exercises that were changed since written")
    add_output_flags(p)
    return p


def tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def placeholder(source: str) -> str:
    """The opening comment lines of a solution cell: what the learner has to write."""
    lines = []
    for line in source.splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines) or "# Your solution"


def cells_digest(nb) -> str:
    """SHA-256 of the cells' types and sources: what tells an untouched exercise from an edited one."""
    cells = [[cell.cell_type, cell.source] for cell in nb.cells]
    return hashlib.sha256(json.dumps(cells).encode()).hexdigest()


def exercise_of(nb, name: str):
    """The exercise of notebook ``nb`` (named ``name``): solution cells emptied, outputs cleared, a header first."""
    import nbformat

    out = copy.deepcopy(nb)
    for cell in out.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if SOLUTION in tags(cell):
            cell.source = placeholder(cell.source)
    out.cells.insert(0, nbformat.v4.new_markdown_cell(HEADER.format(name=name)))
    out.metadata[EXERCISE_KEY] = {"source": f"notebooks/{name}", "cells_sha256": cells_digest(out)}
    return out


def edited(path: Path) -> bool:
    """Whether the exercise at ``path`` was changed since this script wrote it (unreadable counts as changed)."""
    import nbformat

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception:  # noqa: BLE001 - not a notebook any more: the learner's, keep it
        return True
    written = nb.metadata.get(EXERCISE_KEY, {}).get("cells_sha256")
    return written != cells_digest(nb)


def write_exercises(out_dir: Path, names: Sequence[str], force: bool = False) -> dict[str, str]:
    """Writes the exercise of each notebook into ``out_dir``; returns ``{name: "wrote" | "kept (edited)"}``."""
    import nbformat

    out_dir.mkdir(parents=True, exist_ok=True)
    done = {}
    for name in names:
        target = out_dir / name
        if target.exists() and not force and edited(target):
            done[name] = "kept (edited since written; --force overwrites it)"
            continue
        exercise = exercise_of(nbformat.read(NOTEBOOKS / name, as_version=4), name)
        nbformat.validate(exercise)
        files.write_text(target, nbformat.writes(exercise) + "\n")
        done[name] = "wrote"
    return done


def _body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    setup_output(args)
    out_dir = Path(args.out)
    for name, what in write_exercises(out_dir, [n for n in NAMES if not args.only or n in args.only],
                                      args.force).items():
        print(f"{what} {out_dir.name}/{name}", flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(_body, argv, PROG)


if __name__ == "__main__":
    sys.exit(main())
