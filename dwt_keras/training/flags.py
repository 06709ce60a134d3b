"""absl flags of the training extras, defined once for every app, and their validation.

Apps call `define_training_flags()` next to `dwt_keras.cli.define_common_flags()` (which owns
`--strategy` and `--log_dir`), then `TrainingOptions.from_flags(FLAGS)`. Every check runs when
the flags are parsed (absl validators), so bad values stop the app before any data is loaded or
any training starts; Python users get the same checks from `TrainingOptions(...).validate()`.
"""

import dataclasses

from absl import flags

from dwt_keras.training.augmentation import AUGMENTATIONS
from dwt_keras.training.cross_validation import validate_cv_folds
from dwt_keras.training.ensemble import validate_ensemble_size
from dwt_keras.training.export import EXPORT_FORMATS
from dwt_keras.training.regularization import validate_regularization
from dwt_keras.training.schedules import LR_SCHEDULES
from dwt_keras.training.transfer import check_init_from


@dataclasses.dataclass
class TrainingOptions:
    """The training extras as plain values (see `define_training_flags` for their meaning)."""

    lr_schedule: str = "constant"
    augment: str = "none"
    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    batch_norm: bool = False
    cv_folds: int = 0
    early_stopping_patience: int = 0
    ensemble: int = 1
    saliency_images: int = 0
    init_from: str = None
    freeze: bool = False
    export: str = "none"

    def validate(self):
        """Raises `ValueError` naming the first bad option and its valid values."""
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"Unknown --lr_schedule {self.lr_schedule!r}. "
                             f"Valid choices: {', '.join(LR_SCHEDULES)}.")
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"Unknown --augment {self.augment!r}. "
                             f"Valid choices: {', '.join(AUGMENTATIONS)}.")
        if self.export not in EXPORT_FORMATS:
            raise ValueError(f"Unknown --export {self.export!r}. "
                             f"Valid choices: {', '.join(EXPORT_FORMATS)}.")
        validate_regularization(self.l1, self.l2, self.dropout, self.batch_norm)
        validate_cv_folds(self.cv_folds)
        validate_ensemble_size(self.ensemble)
        if self.early_stopping_patience < 0:
            raise ValueError("--early_stopping_patience must be >= 0 (0: off).")
        if self.saliency_images < 0:
            raise ValueError("--saliency_images must be >= 0 (0: off).")
        check_init_from(self.init_from)
        if self.freeze and not self.init_from:
            raise ValueError("--freeze needs --init_from (there is nothing pretrained to freeze).")
        if self.cv_folds and self.ensemble > 1:
            raise ValueError("--cv_folds and --ensemble cannot be combined; choose one.")
        return self

    @classmethod
    def from_flags(cls, flag_values=None):
        """Reads the parsed flags (`absl.flags.FLAGS` by default) and validates them."""
        fv = flag_values if flag_values is not None else flags.FLAGS
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(fv, n) for n in names if n in fv}).validate()

    def to_dict(self):
        return dataclasses.asdict(self)


def _check(fn, *args):
    try:
        fn(*args)
    except ValueError as e:
        raise flags.ValidationError(str(e)) from e
    return True


def define_training_flags(flag_values=None, **defaults):
    """Defines the training-extras flags (those not defined yet) with their validators.

    Flags: `--lr_schedule --augment --l1 --l2 --dropout --batch_norm --cv_folds
    --early_stopping_patience --ensemble --saliency_images --init_from --freeze --export`.

    Args:
        flag_values: the `FlagValues` to define them in (default `absl.flags.FLAGS`).
        **defaults: per-app defaults, e.g. `augment="cifar"`.
    """
    fv = flag_values if flag_values is not None else flags.FLAGS
    d = {**TrainingOptions().to_dict(), **defaults}
    unknown = set(defaults) - set(TrainingOptions().to_dict())
    if unknown:
        raise ValueError(f"Unknown training flags {sorted(unknown)}.")

    def define(name, definer, *args, **kwargs):
        if name in fv:  # an app (or an earlier call) already owns it
            return False
        definer(name, d[name], *args, flag_values=fv, **kwargs)
        return True

    define("lr_schedule", flags.DEFINE_enum, list(LR_SCHEDULES),
           "Learning-rate schedule over the training steps: constant, step (x0.1 at 50% and 75%), "
           "exponential or cosine (down to 1% of --lr), cyclical (triangular, 4-epoch cycles).")
    define("augment", flags.DEFINE_enum, list(AUGMENTATIONS),
           "Training-split augmentation: mnist (rotation, shift, noise), cifar (crop, flip), "
           "auto (by channel count) or none.")
    define("l1", flags.DEFINE_float, "L1 penalty on every Dense/Conv kernel.")
    define("l2", flags.DEFINE_float, "L2 penalty on every Dense/Conv kernel.")
    define("dropout", flags.DEFINE_float, "Dropout rate after every hidden Dense/Conv layer.")
    define("batch_norm", flags.DEFINE_boolean,
           "BatchNormalization after every hidden Dense/Conv layer.")
    define("cv_folds", flags.DEFINE_integer,
           "k-fold cross-validation over the training split (0: off); reports mean and std of "
           "the test metrics across the k models.")
    define("early_stopping_patience", flags.DEFINE_integer,
           "Stop when the validation loss has not improved for this many epochs and restore the "
           "best weights (0: off).")
    define("ensemble", flags.DEFINE_integer,
           "Train N models (seeds seed..seed+N-1) and average their logits.")
    define("saliency_images", flags.DEFINE_integer,
           "Write gradient, integrated-gradient and activation maps (PNG) for this many test "
           "images (0: off).")
    define("init_from", flags.DEFINE_string,
           "Start from this .keras or compressed model file (transfer learning).")
    define("freeze", flags.DEFINE_boolean, "With --init_from: train only the head.")
    define("export", flags.DEFINE_enum, list(EXPORT_FORMATS),
           "Export the final (decompressed) model as tflite or savedmodel, with its size and "
           "measured latency in the report.")

    validators = {
        "l1": lambda v: _check(validate_regularization, v),
        "l2": lambda v: _check(validate_regularization, 0.0, v),
        "dropout": lambda v: _check(validate_regularization, 0.0, 0.0, v),
        "cv_folds": lambda v: _check(validate_cv_folds, v),
        "ensemble": lambda v: _check(validate_ensemble_size, v),
        "init_from": lambda v: _check(check_init_from, v),
        "early_stopping_patience": lambda v: v >= 0 or _check(_raise, "must be >= 0 (0: off)"),
        "saliency_images": lambda v: v >= 0 or _check(_raise, "must be >= 0 (0: off)"),
    }
    for name, fn in validators.items():
        flags.register_validator(name, fn, message=f"invalid --{name}", flag_values=fv)
    flags.register_multi_flags_validator(
        ["freeze", "init_from"], lambda v: not v["freeze"] or bool(v["init_from"]),
        message="--freeze needs --init_from (there is nothing pretrained to freeze).",
        flag_values=fv)
    flags.register_multi_flags_validator(
        ["cv_folds", "ensemble"], lambda v: not (v["cv_folds"] and v["ensemble"] > 1),
        message="--cv_folds and --ensemble cannot be combined; choose one.", flag_values=fv)


def _raise(message):
    raise ValueError(message)
