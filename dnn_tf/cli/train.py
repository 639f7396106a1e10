"""``dnn-tf-train``: train one preset on ``notMNIST.pickle`` -> ``OUT/{metrics.json,saved_model,checkpoints,tb}``.

Examples::

    dnn-tf-train --data data/notMNIST.pickle --preset relu1024 --out runs/relu1024
    dnn-tf-train --preset relu1024 --resume                       # continue runs/relu1024
    dnn-tf-train --preset deep --steps 20001 --mixed-precision --xla
    dnn-tf-train --preset logreg_sgd --set learning_rate=0.3 --set batch_size=256
    dnn-tf-train --list-presets

Every ``TrainConfig`` field has its own flag (``--learning-rate 0.3``,
``--hidden-sizes 1024,512``, ``--batch-size none``, ``--xla``); ``--set
field=value`` does the same by name. Exit status: 0 done, 2 bad arguments or
input (unknown preset, bad value, missing/corrupt pickle: one line on stderr),
3 training diverged (NaN/inf loss: one line naming the step and the last good
checkpoint).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Sequence

from dnn_tf.cli import ArgumentParser, UsageError, run
from dnn_tf.config import PRESETS, TrainConfig, get_preset, parse_value

PROG = "dnn-tf-train"
DEFAULT_DATA = os.path.join("data", "notMNIST.pickle")
DEFAULT_OUT = os.path.join("runs", "{preset}")
EXIT_DIVERGED = 3
# Flags of the CLI itself; a config field with the same name keeps only its --set form.
_OWN_FLAGS = ("data", "preset", "out", "resume", "set", "list_presets", "quiet")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def field_help() -> dict[str, str]:
    """Each field's description, from the ``Attributes:`` section of TrainConfig's docstring."""
    out: dict[str, str] = {}
    current = None
    in_attributes = False
    for line in (TrainConfig.__doc__ or "").splitlines():
        text = line.strip()
        if text == "Attributes:":
            in_attributes = True
            continue
        if not in_attributes or not text:
            continue
        name, sep, rest = text.partition(":")
        if sep and name.isidentifier() and line.startswith(" " * 6) and not line.startswith(" " * 8):
            current = name
            out[current] = rest.strip()
        elif current:
            out[current] += " " + text
    return out


def build_parser() -> ArgumentParser:
    """The argument parser: the run's own flags plus one flag per TrainConfig field."""
    p = ArgumentParser(prog=PROG, description="Train one of the course's networks (or a variant) on notMNIST.pickle.")
    p.add_argument("--data", default=DEFAULT_DATA, metavar="PICKLE",
                   help="the prepared dataset (dnn-tf-prepare; default: %(default)s)")
    p.add_argument("--preset", default="relu1024", metavar="NAME",
                   help=f"starting configuration, one of {', '.join(PRESETS)} (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="output folder; '{preset}' is replaced by the preset name (default: %(default)s)")
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any config field (repeatable), e.g. --set l2_beta=1e-3")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    p.add_argument("--quiet", action="store_true",
                   help="no progress bar or log lines (the summary is printed); the bar is only drawn on a terminal")
    fields = p.add_argument_group("config fields (override the preset; see dnn_tf/config.py)")
    defaults = TrainConfig()
    docs = field_help()
    for f in dataclasses.fields(TrainConfig):
        if f.name in _OWN_FLAGS:
            continue
        text = docs.get(f.name, "").replace("%", "%%")
        kwargs = dict(dest=f"field_{f.name}", default=None, metavar="VALUE",
                      help=f"{text} (TrainConfig default: {getattr(defaults, f.name)!r})")
        if isinstance(getattr(defaults, f.name), bool):
            kwargs.update(nargs="?", const="true", metavar="BOOL")  # --xla alone means true
        fields.add_argument(_flag(f.name), **kwargs)
    return p


def make_config(args) -> TrainConfig:
    """The preset with the per-field flags and then ``--set`` applied.

    Raises:
      UsageError: unknown preset or field, a value that does not parse or an invalid config.
    """
    try:
        config = get_preset(args.preset)
        texts = {f.name: getattr(args, f"field_{f.name}") for f in dataclasses.fields(TrainConfig)
                 if getattr(args, f"field_{f.name}", None) is not None}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set needs FIELD=VALUE, got {item!r}")
            texts[key.strip()] = value
        overrides = {key: parse_value(config, key, text) for key, text in texts.items()}
        return config.replace(**overrides) if overrides else config
    except ValueError as e:
        raise UsageError(str(e)) from None


def describe(config: TrainConfig) -> str:
    """One line per preset for --list-presets."""
    net = "x".join(map(str, config.hidden_sizes)) or "logistic regression"
    batch = "full batch" if config.batch_size is None else f"batch {config.batch_size}"
    extras = [f"{k}={getattr(config, k)}" for k in ("train_subset", "train_on_valid", "l2_beta", "dropout_rate",
                                                     "max_shift", "max_rotation", "max_scale", "max_shear",
                                                     "deskew")
              if getattr(config, k)]
    return (f"{config.name:<18} {net:<20} {config.optimizer} lr {config.learning_rate:g}, {batch}, "
            f"{config.steps} steps" + (", " + ", ".join(extras) if extras else ""))


def body(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    if args.list_presets:
        for config in PRESETS.values():
            print(describe(config))
        return 0
    config = make_config(args)
    out_dir = args.out.replace("{preset}", args.preset)
    if not os.path.isfile(args.data):
        raise UsageError(f"data file {args.data} not found (build it with dnn-tf-prepare)")

    from dnn_tf.data import load_pickle

    data = load_pickle(args.data)
    if not isinstance(data, dict):
        raise UsageError(f"{args.data} does not hold a dataset dict (is it a per-class pickle?)")
    from dnn_tf.train import TrainingDiverged, train_and_evaluate  # TensorFlow only once the inputs are good
    log = (lambda line: None) if args.quiet else print
    try:
        result = train_and_evaluate(config, data, out_dir=out_dir, resume=args.resume, log=log,
                                    progress=not args.quiet and sys.stdout.isatty())
    except TrainingDiverged as e:
        print(f"{PROG}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_DIVERGED
    print(summary(result, out_dir))
    return 0


def summary(result, out_dir: str) -> str:
    """The one-paragraph result printed at the end."""
    lines = [f"{result.config.name}: validation {result.valid_accuracy:.1f}%, test {result.test_accuracy:.1f}%"]
    if result.test_sanitized_accuracy is not None:
        lines[0] += (f" (sanitized: validation {result.valid_sanitized_accuracy:.1f}%, "
                     f"test {result.test_sanitized_accuracy:.1f}%)")
    lines.append(f"{result.steps} steps in {result.seconds:.1f} s on {result.device}; "
                 f"wrote {os.path.join(out_dir, 'metrics.json')} and {os.path.join(out_dir, 'saved_model')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``dnn-tf-train``."""
    return run(body, argv, PROG)


def run_presets(presets: Sequence[str], argv: Sequence[str] | None = None) -> int:
    """Runs ``main(["--preset", p, *argv])`` for each preset (for scripts/); stops at the first failure.

    ``argv`` (default ``sys.argv[1:]``) applies to every preset; the default
    ``--out runs/{preset}`` keeps the runs apart.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "--list-presets") for a in argv):
        return main(argv)
    for preset in presets:
        status = main(["--preset", preset, *argv])
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
