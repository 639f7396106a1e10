"""What a training run learns (``TrainConfig``) and how it executes (``RunSettings``).

``TrainConfig`` holds the hyperparameters: two runs with equal configs compute the
same model (on the same machine and versions), and a checkpoint can only be resumed
by the config that wrote it (``steps`` may grow). ``RunSettings`` are about running
it: logging, checkpoints, compiled-call size, XLA, tf.distribute; they may change
between an interrupted run and its resumption.

Each field carries its help text as ``metadata["help"]``; the CLI builds its flags
from it. No TensorFlow here, so ``--help`` and argument errors stay fast.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("sgd", "momentum", "adam")
INITS = ("truncated_normal", "he")
BATCHINGS = ("shuffle", "offset")
STRATEGIES = ("default", "mirrored", "multiworker")
NONE_WORDS = ("none", "full", "")
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def _field(default: Any, help: str) -> Any:  # noqa: A002 - argparse's word
    return field(default=default, metadata={"help": help})


class _Fields:
    """Shared behaviour of the two dataclasses: checked construction, ``replace``, JSON round trip."""

    def __post_init__(self) -> None:
        self.validate()

    def _checks(self) -> list[tuple[bool, str]]:
        raise NotImplementedError

    def validate(self) -> None:
        """Raises ValueError naming the first bad field."""
        for ok, message in self._checks():
            if not ok:
                raise ValueError(f"{type(self).__name__}: {message}")

    def replace(self, **overrides: Any):
        """A copy with ``overrides``; unknown names raise ValueError."""
        unknown = set(overrides) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ValueError(f"unknown {type(self).__name__} field(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """The inverse of ``to_dict``; unknown keys raise ValueError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
        return cls(**d)


@dataclass(frozen=True)
class TrainConfig(_Fields):
    """The hyperparameters of one training run (see the module docstring)."""

    hidden_sizes: tuple[int, ...] = _field((), "widths of the hidden ReLU layers, e.g. 1024,512; empty: logistic "
                                               "regression")
    init: str = _field("truncated_normal", "weight initialization: truncated_normal (the course's, stddev "
                                           "init_stddev) or he (stddev sqrt(2 / fan_in))")
    init_stddev: float = _field(1.0, "stddev of the truncated_normal initialization")
    dropout_rate: float = _field(0.0, "fraction of hidden units dropped while training (0: off)")
    l2_beta: float = _field(0.0, "weight of the L2 penalty beta * sum(l2_loss(W)) (0: off)")
    optimizer: str = _field("sgd", "sgd (the course's), momentum or adam")
    learning_rate: float = _field(0.5, "initial learning rate")
    momentum: float = _field(0.9, "momentum of the momentum optimizer")
    decay_steps: int = _field(0, "exponential learning-rate decay period in steps (0: constant rate)")
    decay_rate: float = _field(1.0, "multiply the learning rate by this every decay_steps")
    staircase: bool = _field(False, "decay in steps instead of continuously")
    batch_size: int | None = _field(128, "minibatch size; none: full-batch gradient descent")
    train_subset: int | None = _field(None, "train on the first N training examples only (none: all)")
    train_on_valid: bool = _field(False, "also train on the validation split (a refit once the hyperparameters "
                                         "are chosen; its validation accuracy is then not held out)")
    batching: str = _field("shuffle", "shuffle (reshuffled every epoch) or offset (the course's (step * batch) "
                                      "% (n - batch) slices)")
    steps: int = _field(3001, "optimizer steps")
    max_shift: int = _field(0, "input jitter: shift each training image by up to this many pixels (0: off)")
    max_rotation: float = _field(0.0, "input jitter: largest random rotation in degrees (0: off)")
    max_scale: float = _field(0.0, "input jitter: largest random relative change of size per axis")
    max_shear: float = _field(0.0, "input jitter: largest random shear factor")
    deskew: bool = _field(False, "straighten every image's slant before the first layer, in training and "
                                 "at inference")
    seed: int = _field(0, "fixes initialization, shuffling, dropout and jitter")

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden_sizes", tuple(int(h) for h in self.hidden_sizes))
        super().__post_init__()

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (all(h > 0 for h in self.hidden_sizes), "hidden_sizes must be positive"),
            (self.init in INITS, f"init must be one of {INITS}"),
            (self.init_stddev > 0, "init_stddev must be > 0"),
            (0.0 <= self.dropout_rate < 1.0, "dropout_rate must be in [0, 1)"),
            (self.l2_beta >= 0, "l2_beta must be >= 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}"),
            (self.learning_rate > 0, "learning_rate must be > 0"),
            (0 <= self.momentum < 1, "momentum must be in [0, 1)"),
            (self.decay_steps >= 0, "decay_steps must be >= 0"),
            (0 < self.decay_rate <= 1.0, "decay_rate must be in (0, 1]"),
            (self.batch_size is None or self.batch_size > 0, "batch_size must be > 0 or None"),
            (self.train_subset is None or self.train_subset > 0, "train_subset must be > 0 or None"),
            (self.batching in BATCHINGS, f"batching must be one of {BATCHINGS}"),
            (self.steps > 0, "steps must be > 0"),
            (0 <= self.max_shift < 14, "max_shift must be in [0, 14)"),
            (0 <= self.max_rotation <= 180, "max_rotation must be in [0, 180]"),
            (0 <= self.max_scale < 1, "max_scale must be in [0, 1)"),
            (self.max_shear >= 0, "max_shear must be >= 0"),
        ]

    @property
    def distorts(self) -> bool:
        """True when any random distortion (rotation, scale, shear) is on."""
        return max(self.max_rotation, self.max_scale, self.max_shear) > 0


@dataclass(frozen=True)
class RunSettings(_Fields):
    """How a run executes (see the module docstring)."""

    log_every: int = _field(500, "log minibatch loss/accuracy and validation accuracy every N steps")
    checkpoint_every: int = _field(1000, "save a checkpoint every N steps (0: only on Ctrl-C and at the end)")
    steps_per_call: int = _field(10, "optimizer steps per compiled tf.function call")
    xla: bool = _field(False, "compile the training step with XLA (jit_compile=True)")
    strategy: str = _field("default", "tf.distribute: default (one device), mirrored (all local GPUs, or CPU "
                                      "devices) or multiworker (machines of TF_CONFIG)")

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (self.log_every > 0, "log_every must be > 0"),
            (self.checkpoint_every >= 0, "checkpoint_every must be >= 0"),
            (self.steps_per_call > 0, "steps_per_call must be > 0"),
            (self.strategy in STRATEGIES, f"strategy must be one of {STRATEGIES}"),
        ]


def field_help(cls: type) -> dict[str, str]:
    """``{field name: help text}`` of ``TrainConfig`` or ``RunSettings``."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def parse_value(obj: Any, key: str, text: str) -> Any:
    """Converts the command-line string ``text`` to the type of field ``key`` of ``obj``.

    Raises:
      ValueError: unknown field or a value that does not parse.
    """
    fields = {f.name for f in dataclasses.fields(obj)}
    if key not in fields:
        raise ValueError(f"unknown {type(obj).__name__} field {key!r}")
    current = getattr(obj, key)
    t = text.strip()
    try:
        if key == "hidden_sizes":
            return tuple(int(x) for x in t.replace("x", ",").split(",") if x.strip()) if t not in ("", "()") else ()
        if key in ("batch_size", "train_subset"):
            return None if t.lower() in NONE_WORDS else int(t)
        if isinstance(current, bool):
            if t.lower() in TRUE_WORDS:
                return True
            if t.lower() in FALSE_WORDS:
                return False
            raise ValueError(t)
        if isinstance(current, int):
            return int(t)
        if isinstance(current, float):
            return float(t)
        return t
    except ValueError:
        raise ValueError(f"bad value for {key}: {text!r}") from None


def format_value(value: Any) -> str:
    """A field value as the CLI spells it: ``1024,512``, ``none``, ``true``."""
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "()"
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    return f"{value:g}" if isinstance(value, float) else str(value)
