"""The course's models as named presets (assignments 2 and 3), plus our best one (``deep``).

The course's own values are kept where it gives them; values it leaves open were chosen on
validation accuracy only (never on test). How each choice was made, and by how much it
won: ``results/tuning.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from dnn_tf.training.config import RunSettings, TrainConfig, parse_value


@dataclass(frozen=True)
class Preset:
    """A named configuration: what to learn and the run settings that suit it."""

    name: str
    config: TrainConfig
    settings: RunSettings = field(default_factory=RunSettings)

    def replace(self, **overrides: Any) -> "Preset":
        """A copy with ``overrides`` applied to the config or the settings, whichever has the field.

        Raises:
          ValueError: a name that is neither a TrainConfig nor a RunSettings field.
        """
        run = {k: v for k, v in overrides.items() if k in RunSettings.__dataclass_fields__}
        hyper = {k: v for k, v in overrides.items() if k not in run}
        return Preset(self.name, self.config.replace(**hyper) if hyper else self.config,
                      self.settings.replace(**run) if run else self.settings)

    def parse(self, texts: Mapping[str, str]) -> "Preset":
        """A copy with command-line strings ``{field: text}`` parsed and applied (``config.parse_value``).

        Raises:
          ValueError: an unknown field, or a value that does not parse or is invalid.
        """
        def owner(key):
            return self.settings if key in RunSettings.__dataclass_fields__ else self.config

        overrides = {key: parse_value(owner(key), key, text) for key, text in texts.items()}
        return self.replace(**overrides) if overrides else self


COURSE_LR = 0.5  # the course's SGD learning rate on notMNIST
COURSE_STEPS = 3001  # the course's training steps (assignments 2 and 3)
# Chosen on validation (results/tuning.md, "Course presets"): a smaller initial rate, halved every 1,000 steps,
TUNED_SGD = dict(learning_rate=0.2, decay_steps=1000, decay_rate=0.5)
# and a small initialization for logistic regression (the course's stddev 1.0 starts far from any solution).
LOGREG_INIT_STDDEV = 0.01

_DEEP = TrainConfig(hidden_sizes=(2048, 1024, 512), init="he", dropout_rate=0.3, l2_beta=1e-5, optimizer="adam",
                    learning_rate=1e-3, decay_steps=1000, decay_rate=0.7, steps=2 * COURSE_STEPS - 1,
                    max_shift=1, max_rotation=10.0, max_scale=0.1, max_shear=0.2)

PRESETS: Mapping[str, Preset] = {p.name: p for p in (
    # Assignment 2: logistic regression, full-batch gradient descent on 10,000 examples.
    Preset("logreg_gd", TrainConfig(train_subset=10000, batch_size=None, learning_rate=COURSE_LR, steps=801),
           RunSettings(log_every=100)),
    # Assignment 2: logistic regression, SGD with minibatches of 128.
    Preset("logreg_sgd", TrainConfig(init_stddev=LOGREG_INIT_STDDEV, steps=COURSE_STEPS, **TUNED_SGD)),
    # Assignment 2: one hidden layer of 1,024 ReLUs, He initialization.
    Preset("relu1024", TrainConfig(hidden_sizes=(1024,), init="he", steps=COURSE_STEPS, **TUNED_SGD)),
    # Assignment 3, problem 1: L2 regularization (beta chosen on validation).
    Preset("logreg_l2", TrainConfig(l2_beta=1e-3, init_stddev=LOGREG_INIT_STDDEV, steps=COURSE_STEPS,
                                    **TUNED_SGD)),
    Preset("relu1024_l2", TrainConfig(hidden_sizes=(1024,), init="he", l2_beta=3e-3, steps=COURSE_STEPS,
                                      **TUNED_SGD)),
    # Assignment 3, problem 2: training restricted to a few batches -> overfitting.
    Preset("overfit_small", TrainConfig(hidden_sizes=(1024,), train_subset=3 * 128, learning_rate=COURSE_LR,
                                        steps=COURSE_STEPS)),
    # Assignment 3, problem 3: dropout on the hidden layer (rate chosen on validation).
    Preset("relu1024_dropout", TrainConfig(hidden_sizes=(1024,), init="he", dropout_rate=0.5, steps=COURSE_STEPS,
                                           **TUNED_SGD)),
    # Assignment 3, problem 4: the best model we could build: deeper, wider, Adam, jittered inputs.
    Preset("deep", _DEEP),
    # deep refit on train + valid once its hyperparameters were chosen (not on test).
    Preset("deep_full", _DEEP.replace(train_on_valid=True)),
)}

PRESET_ORDER = tuple(PRESETS)
# The course's own models (assignments 2 and 3), without ours (deep, deep_full).
COURSE_PRESETS = PRESET_ORDER[:PRESET_ORDER.index("deep")]
# A smoke run (dnn-tf-reproduce --quick, the notebooks' QUICK mode, the tests): a few steps of each preset.
QUICK_OVERRIDES = {"steps": 60, "log_every": 20, "checkpoint_every": 30}


def get(name: str, **overrides: Any) -> Preset:
    """Preset ``name`` with ``overrides`` (config or settings fields).

    Raises:
      ValueError: unknown preset or field.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)}")
    return PRESETS[name].replace(**overrides) if overrides else PRESETS[name]


def quick(preset: Preset, num_train: int) -> Preset:
    """``preset`` as a smoke run: ``QUICK_OVERRIDES``, and the batch cut to a smaller training set."""
    n = min(num_train, preset.config.train_subset or num_train)
    overrides = dict(QUICK_OVERRIDES)
    if preset.config.batch_size is not None and preset.config.batch_size > n:
        overrides["batch_size"] = n
    return preset.replace(**overrides)
