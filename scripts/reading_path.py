"""What a reader opens to follow ``dnn-tf-train`` down to the tape: files and lines of dnn_tf code that run.

Runs ``dnn-tf-train`` on a tiny generated dataset with ``tf.function``s executed eagerly (so the
Python that builds the step runs as written, not as AutoGraph's generated copy) and records every
dnn_tf module, class and function whose code runs from the interpreter's start until the first
``tf.GradientTape.gradient``: the imports, command-line parsing, loading the data, the model, the
optimizer, the inputs, the step. Prints each file with its line count (package ``__init__.py`` files
that only mark a folder are left out) and how many dnn_tf calls deep the tape is; then the files whose
code one training step runs (the training loop's ``one_step`` call, optimizer update included).

    python scripts/reading_path.py                     # this checkout
    python scripts/reading_path.py --checkout ../old   # another checkout of dnn_tf (same layout or older)
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PER_CLASS = {"train": 20, "valid": 5, "test": 5}

# Runs in a fresh interpreter: argv[1] the dnn_tf checkout, argv[2] the pickle, argv[3] an output folder.
PROBE = r"""
import inspect, json, os, sys
checkout, data, out = sys.argv[1:4]
sys.path.insert(0, checkout)
package = os.path.join(os.path.realpath(checkout), "dnn_tf") + os.sep
called, depth, done = {}, [], []
step, in_step = {}, []  # the code one training step runs: from the loop's one_step() call to its return

def profile(frame, event, arg):
    code = frame.f_code
    if not code.co_filename.startswith(package):
        return
    name = os.path.relpath(code.co_filename, checkout)
    if event == "call" and not done:
        called.setdefault(name, set()).add(code.co_name)
    if event == "call" and code.co_name == "one_step" and not step:
        in_step.append(frame)
    if in_step and event == "call":
        step.setdefault(name, set()).add(code.co_name)
    if in_step and event == "return" and frame is in_step[0]:
        in_step.clear()

sys.setprofile(profile)
import tensorflow as tf
tf.config.run_functions_eagerly(True)
from dnn_tf.cli import train as cli
real_gradient = tf.GradientTape.gradient

def gradient(self, *args, **kwargs):
    if not done:
        frame, frames = inspect.currentframe().f_back, 0
        while frame is not None:
            frames += frame.f_code.co_filename.startswith(package)
            frame = frame.f_back
        depth.append(frames)
        done.append(True)
    return real_gradient(self, *args, **kwargs)

tf.GradientTape.gradient = gradient
status = cli.main(["--data", data, "--preset", "relu1024", "--set", "steps=1", "--out", out, "--quiet"])
sys.setprofile(None)
print(json.dumps({"status": status, "depth": depth[0] if depth else None,
                  "files": {f: sorted(names) for f, names in called.items()},
                  "step": {f: sorted(names) for f, names in step.items()}}))
"""


def tiny_pickle(path: Path) -> None:
    """A valid notMNIST.pickle with the course's keys (random pixels, balanced labels)."""
    rng = np.random.default_rng(0)
    data = {}
    for split, per_class in PER_CLASS.items():
        labels = np.repeat(np.arange(10, dtype=np.int32), per_class)
        data[f"{split}_dataset"] = rng.uniform(-0.5, 0.5, (len(labels), 28, 28)).astype(np.float32)
        data[f"{split}_labels"] = labels
    path.write_bytes(pickle.dumps(data, protocol=pickle.HIGHEST_PROTOCOL))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkout", default=str(REPO), help="the dnn_tf checkout to measure (default: this one)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    checkout = Path(args.checkout).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "notMNIST.pickle"
        tiny_pickle(data)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
        proc = subprocess.run([sys.executable, "-c", PROBE, str(checkout), str(data), str(Path(tmp) / "run")],
                              capture_output=True, text=True, env=env, cwd=tmp, check=False)
    if proc.returncode != 0:
        print(proc.stderr[-3000:], file=sys.stderr)
        return 1
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # A package's __init__.py that only ran its module body is a folder marker, not something one reads.
    followed = {f: names for f, names in result["files"].items()
                if not (Path(f).name == "__init__.py" and names == ["<module>"])}
    lines = {f: len((checkout / f).read_text().splitlines()) for f in followed}
    step = {f: len((checkout / f).read_text().splitlines()) for f in result["step"]}
    if args.json:
        print(json.dumps({"files": len(lines), "lines": sum(lines.values()), "tape_depth": result["depth"],
                          "per_file": lines, "step_files": len(step), "step_lines": sum(step.values()),
                          "step_per_file": step}, indent=1))
        return 0
    for f in sorted(lines):
        print(f"{lines[f]:5d}  {f}: {', '.join(followed[f])}")
    print(f"{len(lines)} files, {sum(lines.values()):,} lines; the tape is {result['depth']} dnn_tf calls deep")
    print("One training step (the loop's one_step call) runs code of:")
    for f in sorted(step):
        print(f"{step[f]:5d}  {f}: {', '.join(result['step'][f])}")
    print(f"{len(step)} files, {sum(step.values()):,} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main())
