"""``dnn-tf-train``: train one preset on ``notMNIST.pickle`` -> ``OUT/{metrics.json,saved_model,checkpoints,tb}``.

Examples::

    dnn-tf-train --data data/notMNIST.pickle --preset relu1024 --out runs/relu1024
    dnn-tf-train --preset relu1024 --resume                       # continue runs/relu1024
    dnn-tf-train --preset deep --steps 20001 --mixed-precision --xla
    dnn-tf-train --preset logreg_sgd --set learning_rate=0.3 --set batch_size=256
    dnn-tf-train --preset deep --help                             # every flag, with deep's values
    dnn-tf-train --list-presets

Every ``TrainConfig`` and ``RunSettings`` field has its own flag, built from the
field's help text (``--learning-rate 0.3``, ``--hidden-sizes 1024,512``,
``--batch-size none``, ``--xla``); ``--set field=value`` does the same by name.
Exit status: 0 done, 2 bad arguments or input (one line on stderr), 3 training
diverged (NaN/inf loss: one line naming the step and the last good checkpoint),
130 Ctrl-C (after saving a checkpoint; the line says how to resume).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shlex
import sys
from typing import Sequence

from dnn_tf import files
from dnn_tf.cli import (
    EXIT_INTERRUPTED,
    ArgumentParser,
    UsageError,
    add_output_flags,
    import_tensorflow,
    run,
    setup_output,
    show_progress,
)
from dnn_tf.data import dataset
from dnn_tf.training import presets
from dnn_tf.training.config import RunSettings, TrainConfig, field_help, format_value

PROG = "dnn-tf-train"
DEFAULT_PRESET = "relu1024"
DEFAULT_DATA = os.path.join("data", "notMNIST.pickle")
DEFAULT_OUT = os.path.join("runs", "{preset}")
EXIT_DIVERGED = 3
RESUME_FLAG = "--resume"

logger = logging.getLogger("dnn_tf.cli.train")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _chosen_preset(argv: Sequence[str] | None) -> str:
    """The ``--preset`` of ``argv`` (parsed first, so ``--help`` can show that preset's values)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--preset", default=DEFAULT_PRESET)
    name = pre.parse_known_args(argv)[0].preset
    return name if name in presets.PRESETS else DEFAULT_PRESET


def build_parser(preset: str = DEFAULT_PRESET) -> ArgumentParser:
    """The parser: the command's own flags, then one flag per TrainConfig and RunSettings field.

    Each field flag's help is the field's ``metadata["help"]`` and the value ``preset`` gives it.
    """
    p = ArgumentParser(prog=PROG, description="Train one of the course's networks (or a variant) on notMNIST.pickle.")
    p.add_argument("--data", default=DEFAULT_DATA, metavar="PICKLE",
                   help="the prepared dataset (dnn-tf-prepare; default: %(default)s)")
    p.add_argument("--preset", default=DEFAULT_PRESET, metavar="NAME",
                   help=f"starting configuration, one of {', '.join(presets.PRESETS)} (default: %(default)s)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help="run folder; '{preset}' is replaced by the preset name (default: %(default)s)")
    p.add_argument(RESUME_FLAG, action="store_true", help="continue from the latest checkpoint in --out")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="override any field below by name (repeatable), e.g. --set l2_beta=1e-3")
    p.add_argument("--list-presets", action="store_true", help="print the presets and exit")
    add_output_flags(p)
    chosen = presets.get(preset)
    for title, cls, values in (("hyperparameters (TrainConfig)", TrainConfig, chosen.config),
                               ("run settings (RunSettings)", RunSettings, chosen.settings)):
        group = p.add_argument_group(f"{title}; in parentheses the value of preset {preset}")
        for name, text in field_help(cls).items():
            value = getattr(values, name)
            kwargs = dict(dest=f"field_{name}", default=None, metavar="VALUE",
                          help=f"{text} ({format_value(value)})".replace("%", "%%"))
            if isinstance(value, bool):
                kwargs.update(nargs="?", const="true", metavar="BOOL")  # --xla alone means true
            group.add_argument(_flag(name), **kwargs)
    return p


def make_preset(args: argparse.Namespace) -> presets.Preset:
    """The preset with the per-field flags and then ``--set`` applied.

    Raises:
      UsageError: unknown preset or field, a value that does not parse or an invalid config.
    """
    try:
        fields = [*field_help(TrainConfig), *field_help(RunSettings)]
        texts = {f: getattr(args, f"field_{f}") for f in fields if getattr(args, f"field_{f}", None) is not None}
        for item in args.set:
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"--set needs FIELD=VALUE, got {item!r}")
            texts[key.strip()] = value
        return presets.get(args.preset).parse(texts)
    except ValueError as e:
        raise UsageError(str(e)) from None


def describe(preset: presets.Preset) -> str:
    """One line per preset for --list-presets."""
    c = preset.config
    net = "x".join(map(str, c.hidden_sizes)) or "logistic regression"
    batch = "full batch" if c.batch_size is None else f"batch {c.batch_size}"
    defaults = TrainConfig()
    extras = [f"{f.name}={getattr(c, f.name)}" for f in dataclasses.fields(c)
              if f.name in ("train_subset", "train_on_valid", "l2_beta", "dropout_rate", "max_shift", "max_rotation",
                            "max_scale", "max_shear", "deskew") and getattr(c, f.name) != getattr(defaults, f.name)]
    return (f"{preset.name:<18} {net:<20} {c.optimizer} lr {c.learning_rate:g}, {batch}, {c.steps} steps"
            + (", " + ", ".join(extras) if extras else ""))


def resume_command(argv: Sequence[str]) -> str:
    """The command line that continues this run: the same arguments plus ``--resume``."""
    args = [a for a in argv if a != RESUME_FLAG]
    return shlex.join([PROG, *args, RESUME_FLAG])


def body(argv: Sequence[str] | None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_chosen_preset(argv)).parse_args(argv)
    if args.list_presets:
        for preset in presets.PRESETS.values():
            print(describe(preset))
        return 0
    setup_output(args)
    preset = make_preset(args)
    out_dir = args.out.replace("{preset}", args.preset)
    if not os.path.isfile(args.data):
        raise UsageError(f"data file {args.data} not found (build it with dnn-tf-prepare)")
    data = dataset.load(args.data)  # DataError -> exit 2, before TensorFlow is imported
    data_id = files.sha256_file(args.data)
    import_tensorflow(args)
    from dnn_tf.training.interrupt import TrainingInterrupted
    from dnn_tf.training.loop import TrainingDiverged, train_and_evaluate

    try:
        result = train_and_evaluate(preset.config, data, preset.settings, out_dir=out_dir, resume=args.resume,
                                    name=preset.name, data_id=data_id, progress=show_progress(args))
    except TrainingDiverged as e:
        print(f"{PROG}: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return EXIT_DIVERGED
    except TrainingInterrupted as e:
        print(f"{PROG}: {e}; resume with: {resume_command(argv)}", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary(result, out_dir))
    return 0


def summary(result, out_dir: str) -> str:
    """The one-paragraph result printed at the end."""
    lines = [f"{result.name}: validation {result.valid_accuracy:.1f}%, test {result.test_accuracy:.1f}%"]
    if result.test_sanitized_accuracy is not None:
        lines[0] += (f" (sanitized: validation {result.valid_sanitized_accuracy:.1f}%, "
                     f"test {result.test_sanitized_accuracy:.1f}%)")
    lines.append(f"{result.steps} steps in {result.seconds:.1f} s on {result.device}; "
                 f"wrote {os.path.join(out_dir, 'metrics.json')} and {os.path.join(out_dir, 'saved_model')}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``dnn-tf-train``."""
    return run(body, argv, PROG)


def run_presets(names: Sequence[str], argv: Sequence[str] | None = None) -> int:
    """Runs ``main(["--preset", p, *argv])`` for each preset (for scripts/); stops at the first failure.

    ``argv`` (default ``sys.argv[1:]``) applies to every preset; the default
    ``--out runs/{preset}`` keeps the runs apart.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "--list-presets") for a in argv):
        return main(argv)
    for name in names:
        status = main(["--preset", name, *argv])
        if status:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
