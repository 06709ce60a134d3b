"""The settings every recipe shares, declared once: where a run happens and how it trains.

Every recipe config (`CompressionConfig`, `TransformerConfig`, `LearnableConfig`, `StudyConfig`,
`SweepConfig`, the search's `SearchConfig`) is a dataclass that composes `RunOptions`,
`TrainingOptions` and `dwt_keras.spectral.options.SpectralOptions` and adds its own fields; a
recipe that only needs another default re-declares the field with `option(<default>)` and inherits
its help, choices and bounds. The apps' flags are generated from these fields
(`dwt_keras.cli.define_flags`), so a setting has one name, one help text and one check.
"""

from __future__ import annotations

import dataclasses

from dwt_keras.utils.options import OptionError, option, validate_options

__all__ = ["RunOptions", "TrainingOptions", "STRATEGIES", "OPTIMIZERS", "LR_SCHEDULES",
           "EXPORT_FORMATS", "validate_common"]

from dwt_keras.training.augmentation import parse_augment

# Each vocabulary is defined once, by the module that implements it.
from dwt_keras.training.export import EXPORT_FORMATS  # noqa: E402
from dwt_keras.training.optimizers import OPTIMIZERS  # noqa: E402
from dwt_keras.training.schedules import LR_SCHEDULES  # noqa: E402
from dwt_keras.training.strategy import STRATEGIES  # noqa: E402
from dwt_keras.training.transfer import check_init_from


@dataclasses.dataclass
class RunOptions:
    """Where a run happens: data, seed, folders, devices, verbosity."""

    dataset: str = option("mnist", "Dataset name: mnist, fashion_mnist, cifar10, cifar100, or any "
                          "<name>.npz in --data_dir (e.g. cifar10_subset).")
    data_dir: str | None = option(None, "Folder of <name>.npz files (x_train, y_train, x_test, "
                                  "y_test). Default: $DWT_KERAS_DATA_DIR, then a download.")
    validation_split: float = option(0.1, "Share of the training split held out for validation "
                                     "(model selection).", minimum=0.0, maximum=0.9)
    max_train_samples: int | None = option(
        None, "Use only the first N training images (quick runs; 0 or unset: all).", minimum=0,
        kind="integer", aliases=("train_samples",))
    max_eval_samples: int | None = option(
        None, "Use only the first N validation and test images (quick runs; 0 or unset: all).",
        minimum=0, kind="integer")
    seed: int = option(0, "Random seed (data split, initialisation, shuffling).", minimum=0)
    save_dir: str = option("./saved_models", "Parent folder of the run folders.")
    run_name: str | None = option(None, "Run folder name under --save_dir (default: derived from "
                                  "the settings).")
    log_dir: str | None = option(None, "TensorBoard log folder (off when empty).")
    strategy: str = option("default", "tf.distribute strategy.", choices=STRATEGIES)
    mixed_precision: bool = option(False, "Train with the mixed_float16 policy (bfloat16 on CPU).")
    deterministic: bool = option(True, "Reproducible seeded runs: TensorFlow's op determinism "
                                 "(tf.config.experimental.enable_op_determinism, for the whole "
                                 "process); --nodeterministic allows the fastest kernels.")
    jit_compile: object = option("auto", "XLA-compile the train step (True, False or 'auto').",
                                 flag=False)
    verbose: int = option(1, "0: quiet; 1: Keras' progress bar when stdout is a terminal, one "
                          "line per epoch otherwise; 2: one line per epoch.", minimum=0,
                          maximum=2)
    plots: bool = option(True, "Write PNG plots into the run folder.", aliases=("plot",))
    extra_callbacks: list = option(default_factory=list, flag=False,
                                   help="Keras callbacks appended to every fit of the run "
                                        "(Python only; with spectral truncation they see the "
                                        "plain model).")


@dataclasses.dataclass
class TrainingOptions:
    """How a model trains: optimisation, selection, regularisation and the training extras."""

    epochs: int = option(10, "Training epochs.", minimum=0)
    batch_size: int = option(32, "Batch size.", minimum=1)
    lr: float = option(1e-3, "Learning rate.", minimum=0.0, exclusive_minimum=True)
    optimizer: str = option("adam", "Optimizer: adam, adamw, sgd (momentum --momentum), rmsprop "
                            "(PyTorch-equivalent epsilon) or adadelta.", choices=OPTIMIZERS)
    momentum: float = option(0.9, "Momentum of --optimizer sgd.", minimum=0.0, maximum=1.0,
                             exclusive_maximum=True)
    weight_decay: float = option(0.0, "Decoupled weight decay of --optimizer adamw (norms, biases "
                                 "and embeddings are excluded).", minimum=0.0)
    clipnorm: float = option(0.0, "Gradient-norm clipping (0: off).", minimum=0.0)
    lr_schedule: str = option(
        "constant", "Learning-rate schedule over the training steps: constant, step (x0.1 at 50% "
        "and 75%), exponential or cosine (down to 1% of --lr), cyclical (triangular, 4-epoch "
        "cycles), warmup_cosine (linear warm-up over --warmup_epochs, then cosine decay to 0). "
        "Any schedule but warmup_cosine runs after --warmup_epochs of linear warm-up.",
        choices=LR_SCHEDULES)
    warmup_epochs: int = option(0, "Linear learning-rate warm-up epochs.", minimum=0)
    lr_decay: float = option(1.0, "Per-epoch multiplicative step decay of the learning rate "
                             "(1: none); with --lr_schedule constant only.", minimum=0.0,
                             exclusive_minimum=True, maximum=1.0)
    label_smoothing: float = option(0.0, "Label smoothing of the classification loss.",
                                    minimum=0.0, maximum=1.0, exclusive_maximum=True)
    early_stopping_patience: int = option(
        0, "Stop when the validation metric used for model selection has not improved for this "
        "many epochs (0: off); the best epoch's weights are the ones reported.", minimum=0)
    augment: str = option(
        "none", "Training-split augmentation, comma-separated: none, crop_flip (pad 4, random "
        "crop, flip), mnist (rotation, shift, noise), cifar (the same recipe as Keras layers), "
        "auto (by channel count), randaugment, mixup, cutmix.")
    l1: float = option(0.0, "L1 penalty on every Dense/Conv kernel.", minimum=0.0)
    l2: float = option(0.0, "L2 penalty on every Dense/Conv kernel.", minimum=0.0)
    dropout: float = option(0.0, "Dropout rate after every hidden Dense/Conv layer.",
                            minimum=0.0, maximum=1.0, exclusive_maximum=True)
    batch_norm: bool = option(False, "BatchNormalization after every hidden Dense/Conv layer.")
    cv_folds: int = option(0, "k-fold cross-validation over the training split (0: off); "
                           "reports mean and std of the test metrics across the k models.",
                           minimum=0)
    ensemble: int = option(1, "Train N models (seeds seed..seed+N-1) and average their logits.",
                           minimum=1)
    saliency_images: int = option(0, "Write gradient, integrated-gradient and activation maps "
                                  "(PNG) for this many test images (0: off).", minimum=0)
    init_from: str | None = option(None, "Start from this .keras or compressed model file "
                                   "(transfer learning).")
    freeze: bool = option(False, "With --init_from: train only the head.")
    export: str = option("none", "Export the final model as tflite or savedmodel, with its size "
                         "and measured latency in the report.", choices=EXPORT_FORMATS)


def validate_common(config):
    """The declared checks of every field, plus the rules that tie shared settings together.

    Raises `OptionError` (a `ValueError`) naming the argument.
    """

    validate_options(config)
    if config.cv_folds == 1:
        raise OptionError("cv_folds", "`cv_folds` must be 0 (off) or >= 2: one fold leaves no "
                                      "data to validate on. Received: cv_folds=1")
    if config.cv_folds and config.ensemble > 1:
        raise OptionError("cv_folds", "`cv_folds` and `ensemble` cannot be combined; choose one. "
                          f"Received: cv_folds={config.cv_folds}, ensemble={config.ensemble}")
    if config.freeze and not config.init_from:
        raise OptionError("freeze", "`freeze` needs `init_from` (there is nothing pretrained to "
                                    "freeze). Received: freeze=True, init_from=None")
    try:
        check_init_from(config.init_from)
        parse_augment(config.augment)
    except ValueError as e:
        name = "init_from" if "init_from" in str(e) else "augment"
        raise OptionError(name, str(e)) from None
    if config.lr_decay < 1.0 and config.lr_schedule not in ("constant", "none"):
        raise OptionError(
            "lr_decay", "`lr_decay` (a per-epoch step decay) and `lr_schedule` are two schedules; "
            f"set lr_decay=1 or lr_schedule='constant'. Received: lr_decay={config.lr_decay}, "
            f"lr_schedule={config.lr_schedule!r}")
    if config.epochs == 0 and not (config.init_from or getattr(config, "init_model", None)):
        raise OptionError(
            "epochs", "`epochs=0` trains nothing: the run would evaluate (and compress) an "
            "untrained model. Pass epochs >= 1, or init_from=<a trained model file> to start "
            "from one. Received: epochs=0")
    if config.weight_decay and config.optimizer != "adamw":
        raise OptionError(
            "weight_decay", "`weight_decay` needs optimizer='adamw' (decoupled weight decay). "
            f"Received: weight_decay={config.weight_decay}, optimizer={config.optimizer!r}")
    if config.early_stopping_patience and not config.cv_folds and not config.validation_split > 0:
        raise OptionError(
            "early_stopping_patience", "`early_stopping_patience` needs a validation split "
            "(validation_split > 0): early stopping never looks at the test split. "
            f"Received: early_stopping_patience={config.early_stopping_patience}, "
            f"validation_split={config.validation_split}")
    return config
