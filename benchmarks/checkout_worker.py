"""One checkout's dnn_tf in its own process, building and timing training steps on request.

Every commit's package is called ``dnn_tf``, so two commits cannot share a process. ``Worker``
starts ``python checkout_worker.py`` with the checkout alone on ``PYTHONPATH`` and talks to it
in JSON lines: ``build`` a contender (a preset's compiled step, the bare step, the jitter
alone; optionally with one of the checkout's speed tricks switched off), then ``run`` it as
often as the caller likes and get back the seconds it took. ``time_checkouts`` interleaves
the contenders of several workers in rounds (``common.interleave``), so two commits are
timed under the same load.

The worker knows both layouts of the package: this one (``dnn_tf.training.loop`` and friends)
and the flat modules of 8428ca3 and before (``dnn_tf.train``, ``dnn_tf.augment``, ...). It
switches a trick off in the checkout's code (a measurement, never a dnn_tf option):

* ``input_gradient``: the cheaper input-gradient matmul (8428ca3's ``model.matmul_for_training``, since then
  ``training/speed.matmul_cheap_input_gradient``) replaced by ``tf.matmul``
  (TensorFlow's own gradient) while the step is traced;
* ``compiled_warp``: ``augment.compiled_affine_warp`` (the XLA-compiled affine warp; 8428ca3's
  ``_compiled_affine_warp``) replaced by the same warp uncompiled while the step is traced;
* ``fused_optimizer``: the state's optimizer replaced by Keras's own of the same kind;
* ``steps_per_call``: the preset's run setting set to 1.

The server side imports only the standard library, numpy, TensorFlow, ``timed_steps`` and the
checkout's ``dnn_tf``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable, Mapping

TRICKS = ("input_gradient", "fused_optimizer", "compiled_warp", "steps_per_call")


# --------------------------------------------------------------------------- client (the benchmark's process)


class WorkerError(RuntimeError):
    """The worker failed; the message ends with the tail of its stderr."""


class Worker:
    """A running worker for ``checkout``; ``info`` says which dnn_tf it imported and which tricks it has."""

    def __init__(self, checkout: str | os.PathLike):
        self.checkout = Path(checkout).resolve()
        if not (self.checkout / "dnn_tf" / "__init__.py").is_file():
            raise ValueError(f"{checkout} is not a checkout of dnn_tf (no dnn_tf/__init__.py)")
        self._stderr = tempfile.TemporaryFile("w+")
        env = dict(os.environ, PYTHONPATH=str(self.checkout))
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve())], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, stderr=self._stderr, text=True, env=env)
        self.info = self._receive()
        if Path(self.info["dnn_tf"]).resolve().parent != self.checkout:
            self.close()
            raise WorkerError(f"the worker imported {self.info['dnn_tf']}, not the checkout's dnn_tf")

    def build(self, name: str, **spec: Any) -> dict:
        """Builds contender ``name`` (see ``build`` below for ``spec``); returns what it built."""
        return self._ask({"op": "build", "name": name, "spec": spec})

    def run(self, name: str) -> float:
        """Runs contender ``name`` once; returns the seconds the worker measured."""
        return self._ask({"op": "run", "name": name})["seconds"]

    def close(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._stderr.close()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _ask(self, message: dict) -> dict:
        try:
            self._proc.stdin.write(json.dumps(message) + "\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, ValueError):
            pass  # the worker died; _receive reports why
        return self._receive()

    def _receive(self) -> dict:
        line = self._proc.stdout.readline()
        reply = json.loads(line) if line.startswith("{") else None
        if reply is None or "error" in reply:
            self._stderr.seek(0)
            tail = " | ".join(self._stderr.read().strip().splitlines()[-5:])
            what = reply["error"] if reply else f"no reply (exit {self._proc.poll()})"
            raise WorkerError(f"worker on {self.checkout.name}: {what}" + (f"; stderr: {tail}" if tail else ""))
        return reply


def time_checkouts(checkouts: Mapping[str, str | os.PathLike],
                   plan: Callable[[Mapping[str, dict]], Mapping[str, tuple[str, str, dict]]], repeats: int) -> dict:
    """Times contenders of several checkouts in interleaved rounds, each checkout in its own worker.

    Args:
      checkouts: label -> checkout folder.
      plan: ``{label: worker.info} -> {run: (label, contender, spec)}``: the runs of a round, in order,
        and what each runs: ``contender`` of ``label``'s worker, built from ``spec`` (once, however
        many runs share it). A trick's contender with and without it run one after the other, so
        their ratio in a round compares the two under the same load.
      repeats: timed rounds, after a warm-up round; every other round runs in reverse order.

    Returns:
      ``runs`` (the plan), ``times`` (run -> seconds in each round), ``built`` (contender -> what
      its worker built), ``round_loads`` (the 1-minute load average after each round) and
      ``checkouts`` (label -> the worker's ``info``).
    """
    import common  # the benchmarks' process only (it puts this checkout's dnn_tf on the path)

    workers: dict[str, Worker] = {}
    try:
        for label, folder in checkouts.items():
            common.log(f"starting a worker on {label}")
            workers[label] = Worker(folder)
        runs = plan({label: w.info for label, w in workers.items()})
        built = {}
        for label, contender, spec in runs.values():
            if contender not in built:
                common.log(f"building {contender}")
                built[contender] = workers[label].build(contender, **spec)
        loads: list[float] = []

        def log_round(message: str) -> None:
            loads.append(common.load_average())
            common.log(f"{message} (load {loads[-1]:.2f})")

        common.log(f"{len(runs)} runs of {len(built)} contenders in {len(workers)} processes, {repeats} rounds")
        times = common.interleave({run: (lambda w=workers[label], c=contender: w.run(c))
                                   for run, (label, contender, _) in runs.items()},
                                  repeats, warmup=1, log=log_round, alternate=True)
    finally:
        for worker in workers.values():
            worker.close()
    return {"runs": runs, "times": times, "built": built, "round_loads": loads,
            "checkouts": {label: w.info for label, w in workers.items()}}


def revision(checkout: str | os.PathLike) -> str:
    """The checkout's commit (short hash; ``+changes`` when its tracked files differ), else its folder's name."""
    path = Path(checkout).resolve()

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=60,
                              check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != path:
            return path.name
        dirty = git("status", "--porcelain", "--untracked-files=no")
        return git("rev-parse", "--short=7", "HEAD") + ("+changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return path.name


# --------------------------------------------------------------------------- server (the checkout's process)


def checkout_modules() -> types.SimpleNamespace:
    """The checkout's modules under one set of names, whichever layout it has."""
    from dnn_tf import notmnist

    try:
        from dnn_tf import model
        from dnn_tf.training import augment, distribute, inputs, loop, optimizers, presets, speed
    except ImportError:  # 8428ca3 and before: flat modules
        from dnn_tf import augment, distribute, inputs, model, optimizers, presets
        from dnn_tf import train as loop
        speed = None
    return types.SimpleNamespace(notmnist=notmnist, model=model, augment=augment, distribute=distribute,
                                 inputs=inputs, optimizers=optimizers, presets=presets, loop=loop, speed=speed)


def available_tricks(dnn) -> list[str]:
    """The speed tricks this checkout has (and so can switch off)."""
    import tensorflow as tf

    config = dnn.presets.get("deep").config
    fused = type(dnn.optimizers.create_optimizer(config, 1e-3)) is not tf.keras.optimizers.Adam
    has = {"input_gradient": bool(input_gradient_patch(dnn)), "compiled_warp": bool(compiled_warp_patch(dnn)),
           "fused_optimizer": fused, "steps_per_call": True}
    return [t for t in TRICKS if has[t]]


def input_gradient_patch(dnn) -> tuple | None:
    """(module, name, replacement) that turns the cheaper input-gradient matmul into ``tf.matmul``, or None."""
    import tensorflow as tf

    if hasattr(dnn.model, "matmul_for_training"):  # 8428ca3: inside the model
        return dnn.model, "matmul_for_training", tf.matmul
    if dnn.speed is not None:  # since: training/speed.py, passed to the MLP by loop.create_model
        return dnn.speed, "matmul_cheap_input_gradient", tf.matmul
    return None


def compiled_warp_patch(dnn) -> tuple | None:
    """(module, name, replacement) that turns the XLA-compiled warp into the plain one, or None."""
    for compiled, plain in (("compiled_affine_warp", "affine_warp"), ("_compiled_affine_warp", "_affine_warp")):
        if hasattr(dnn.augment, compiled):  # (8428ca3 named them as its own private functions)
            return dnn.augment, compiled, getattr(dnn.augment, plain)
    return None


@contextlib.contextmanager
def traced_without(dnn, trick: str | None):
    """Patches the checkout's code so that what is traced inside has ``trick`` switched off."""

    patches = {"input_gradient": input_gradient_patch(dnn), "compiled_warp": compiled_warp_patch(dnn)}
    if not patches.get(trick):
        yield
        return
    module, name, replacement = patches[trick]
    original = getattr(module, name)
    setattr(module, name, replacement)
    try:
        yield
    finally:
        setattr(module, name, original)


def build(dnn, data: dict, spec: dict):
    """A contender's ``run``, from ``spec``:

    * ``kind``: ``"step"`` (the preset's compiled step), ``"bare"`` (the bare step of its net
      and batch) or ``"jitter"`` (its input jitter alone);
    * ``preset``: the preset's name; ``overrides``: fields to change (checkpoints are always off);
    * ``steps``: steps per run; ``examples``: the synthetic training set's size;
    * ``off``: a trick to switch off (``TRICKS``; ``"input_gradient"`` for ``bare`` means
      TensorFlow's own gradient, else the checkout's ``matmul_for_training``).

    Returns:
      ``(run, description)``.
    """
    import tensorflow as tf
    import timed_steps

    off = spec.get("off")
    if off is not None and off not in dnn.tricks:
        raise ValueError(f"this checkout has no trick {off!r} to switch off")
    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.get("overrides", {}).items()}
    if off == "steps_per_call":
        overrides["steps_per_call"] = 1
    preset = dnn.presets.get(spec["preset"]).replace(checkpoint_every=0, **overrides)
    config, n = preset.config, spec.get("examples", 20000)
    if n not in data:
        data[n] = timed_steps.synthetic_data(n, dnn.notmnist.NUM_CLASSES, dnn.notmnist.IMAGE_SIZE)
    images, labels = data[n]
    described = {"hidden_sizes": list(config.hidden_sizes), "batch_size": config.batch_size}
    if spec["kind"] == "bare":
        fast_dx = "input_gradient" in dnn.tricks and off != "input_gradient"
        module, name, _ = input_gradient_patch(dnn) or (None, None, None)
        matmul = getattr(module, name) if fast_dx else tf.matmul
        run = timed_steps.make_bare_step(config.hidden_sizes, config.batch_size, images, labels, spec["steps"],
                                         preset.settings.steps_per_call, num_classes=dnn.notmnist.NUM_CLASSES,
                                         init_gain=dnn.model.HE_GAIN, device=dnn.distribute.default_device(),
                                         matmul=matmul)
        return run, {**described, "matmul": getattr(matmul, "__name__", repr(matmul))}
    with traced_without(dnn, off):
        if spec["kind"] == "jitter":
            return timed_steps.make_jitter(dnn.inputs, config, images, spec["steps"]), described
        optimizer = None
        if off == "fused_optimizer":
            def optimizer(config):
                return timed_steps.keras_optimizer(config, dnn.optimizers.learning_rate_schedule(config))
        run = timed_steps.make_compiled_step(dnn.loop, dnn.inputs, dnn.distribute, preset, images, labels,
                                             spec["steps"], optimizer=optimizer)
    return run, {**described, "optimizer": type(run.state.optimizer).__module__ + "."
                 + type(run.state.optimizer).__name__, "steps_per_call": preset.settings.steps_per_call,
                 "xla": preset.settings.xla}


def serve() -> int:
    """Answers the client's JSON lines on stdin until it closes them; stdout carries only the replies."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # anything else printed goes to stderr

    def reply(message: dict) -> None:
        replies.write(json.dumps(message) + "\n")
        replies.flush()

    import tensorflow as tf

    import dnn_tf

    dnn = checkout_modules()
    dnn.tricks = available_tricks(dnn)
    reply({"dnn_tf": str(Path(dnn_tf.__file__).resolve().parent), "tensorflow": tf.__version__,
           "layout": "packages" if dnn.loop.__name__ == "dnn_tf.training.loop" else "flat",
           "tricks": dnn.tricks})
    contenders, data = {}, {}
    for line in sys.stdin:
        message = json.loads(line)
        try:
            if message["op"] == "build":
                contenders[message["name"]], described = build(dnn, data, message["spec"])
                reply({"ok": True, **described})
            elif message["op"] == "run":
                reply({"seconds": contenders[message["name"]]()})
            else:
                raise ValueError(f"unknown op {message['op']!r}")
        except Exception as e:  # noqa: BLE001 - the client reports it
            reply({"error": f"{type(e).__name__}: {e}"})
    return 0


if __name__ == "__main__":
    sys.exit(serve())
