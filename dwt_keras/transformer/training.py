"""Training pipeline for `WaveletTransformer` / `ViT` image classifiers.

`train(TrainConfig(...))` is what `apps/wmsa_cifar10.py` runs; it can be called
from Python with the same effect:

* data: `dwt_keras.data.load_arrays` (train / validation / test splits) and
  `make_datasets`, plus optional RandAugment, MixUp and CutMix (Keras layers);
* AdamW with a linear warm-up then cosine decay (`keras.optimizers.schedules.
  CosineDecay` with `warmup_steps`; keyed on the optimizer's iteration count, so
  resuming continues the schedule exactly); norms, biases, embeddings and the
  kernel's bandwidths are excluded from weight decay;
* the run folder is ``<save_dir>/<run_name>``; `run_name` defaults to a name
  derived from the settings (`default_run_name`), so re-running the same command
  RESUMES the same run: `keras.callbacks.BackupAndRestore` checkpoints weights,
  optimizer state and the epoch after every epoch, `history.csv` is appended, and
  the best-on-validation model (`best.keras`) keeps its best score across
  restarts. A finished run (``report.json`` present) is not retrained;
* model selection on the VALIDATION split (best `val_accuracy`), the final report
  on the TEST split (`dwt_keras.evaluation.evaluate_classifier`: accuracy,
  per-class precision/recall/F1, confusion matrix), written atomically to
  ``report.json``;
* optional TensorBoard logs under ``<log_dir>/<run_name>``;
* spectral truncation (``spectral_reg``, `dwt_keras.spectral`): training batches
  are low-passed in the 2-D DCT domain during the first ``truncation_epochs``
  epochs by a `SpectralTrainingModel` wrapper; validation and test data are never
  filtered, and ``best.keras`` / ``last.keras`` hold the PLAIN classifier (the
  wrapper is a training-time device, not part of the model). The curriculum is a
  function of the epoch (or of the optimizer step), so a resumed run continues it;
* the training extras shared by the apps (`dwt_keras.training`): ``lr_schedule``
  (after the linear warm-up), ``early_stopping_patience`` (on the selection
  metric, resumable), ``l1`` / ``l2`` (kernel penalties), ``init_from`` /
  ``freeze`` (transfer learning), ``saliency_images`` and ``export`` (on the
  selected model), ``cv_folds`` and ``ensemble`` (several complete runs in one
  parent folder, each resumable). ``batch_norm`` does not apply to these models
  (every block already normalises with LayerNorm) and is refused.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import pathlib
import shutil
import time

import keras
import numpy as np

from dwt_keras.spectral.options import SPECTRAL_FIELDS, SpectralOptions, spectral_report
from dwt_keras.transformer.models import MODEL_SIZES

MODELS = ("wmsa", "vit")
AUGMENTATIONS = ("none", "crop_flip", "randaugment", "mixup", "cutmix")
#: Variables (by name) that AdamW does not decay.
NO_DECAY = ["bias", "gamma", "beta", "embedding", "bandwidth", "rho_logit"]
#: `lr_schedule` values: the default linear warm-up + cosine decay to 0, or a
#: `dwt_keras.training.schedules` schedule applied after the same linear warm-up.
WARMUP_COSINE = "warmup_cosine"
# Settings that do not change what is trained: they may differ on resume
# (`saliency_images` / `export` only act on the finished model).
_RESUME_FREE = ("save_dir", "data_dir", "log_dir", "run_name", "verbose", "strategy",
                "saliency_images", "export")
# Spectral sub-settings only matter with spectral_reg=True.
_SPECTRAL_SETTINGS = SPECTRAL_FIELDS[1:]


@dataclasses.dataclass
class TrainConfig(SpectralOptions):
    """All settings of one training run (the app's flags map onto these).

    Args:
        model: "wmsa" (WaveletTransformer) or "vit".
        model_size: "tiny", "small", "base", or "custom" (then embed_dim, depth,
            num_heads are used).
        embed_dim, depth, num_heads: the width, number of blocks and heads for
            model_size="custom".
        n_levels, wavelet, use_kernel, kernel_mode, spatial_kernel, embedding:
            W-MSA settings (see `WaveletTransformer`).
        patch_size: ViT patch side, or the W-MSA per-subband grouping p.
        mlp_ratio, dropout, drop_path_rate: regularisation / width of the blocks.
        dataset, data_dir, validation_split: data (see `dwt_keras.data.load_arrays`).
        max_train_samples: use only the first N training images (tests, smoke runs).
        epochs, batch_size, lr, weight_decay, warmup_epochs, label_smoothing:
            optimisation (AdamW, warm-up then cosine decay to 0).
        augment: comma-separated subset of `AUGMENTATIONS` ("crop_flip" = random
            crop after 4 px padding + horizontal flip; "mixup" and "cutmix" together
            pick one of the two per batch).
        save_dir, run_name, log_dir: outputs.
        seed: seed of the data split, shuffling, initialisation and augmentation.
        mixed_precision: "mixed_float16" on GPU, "mixed_bfloat16" on CPU.
        strategy: "default", "mirrored", "multi_worker" or "tpu".
        jit_compile: XLA-compile the train step (True / False / "auto").
        verbose: Keras `fit` verbosity.
        spectral_reg, tau_init, tau_final, truncation_epochs, mask_profile,
            mask_rolloff, spectral_per_step: spectral truncation of the training
            inputs (see `dwt_keras.spectral.flags.define_spectral_flags`).
        lr_schedule: `"warmup_cosine"` (default), or one of
            `dwt_keras.training.schedules.LR_SCHEDULES` run after the same
            `warmup_epochs` of linear warm-up, over the remaining steps.
        early_stopping_patience: stop when the selection metric (`val_accuracy`)
            has not improved for this many epochs (0: off); the reported and
            exported model is the best one (`best.keras`).
        l1, l2: penalties on every kernel (Dense and embedding kernels).
        batch_norm: not applicable to transformers (refused when True).
        cv_folds: k-fold cross-validation over the training split (0: off).
        ensemble: N runs with seeds seed..seed+N-1, logits averaged (1: off).
        saliency_images: gradient / integrated-gradient PNGs for this many test
            images (0: off).
        init_from: a `.keras` file of the same architecture to start from (the
            head is re-initialised when the number of classes differs).
        freeze: with `init_from`, train only the classifier head.
        export: `"none"`, `"tflite"` or `"savedmodel"` of the selected model.
    """

    model: str = "wmsa"
    model_size: str = "tiny"
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 3
    n_levels: int = 3
    wavelet: str = "db4"
    use_kernel: bool = True
    kernel_mode: str = "fold"
    spatial_kernel: str = "rbf"
    embedding: str = "per_subband"
    patch_size: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    drop_path_rate: float = 0.1
    dataset: str = "cifar10"
    data_dir: str | None = None
    validation_split: float = 0.1
    max_train_samples: int | None = None
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 5
    label_smoothing: float = 0.1
    augment: str = "crop_flip"
    save_dir: str = "./saved_models"
    run_name: str | None = None
    log_dir: str | None = None
    seed: int = 0
    mixed_precision: bool = False
    strategy: str = "default"
    jit_compile: object = "auto"
    verbose: int = 2
    # spectral truncation: the inherited `SpectralOptions` fields
    # training extras (dwt_keras.training)
    lr_schedule: str = WARMUP_COSINE
    early_stopping_patience: int = 0
    l1: float = 0.0
    l2: float = 0.0
    batch_norm: bool = False
    cv_folds: int = 0
    ensemble: int = 1
    saliency_images: int = 0
    init_from: str | None = None
    freeze: bool = False
    export: str = "none"

    def augmentations(self):
        items = [a.strip() for a in str(self.augment).split(",") if a.strip()]
        return [a for a in items if a != "none"]


def validate_config(cfg):
    """Checks settings that can be checked without data; raises a clear ValueError."""
    from dwt_keras import wavelets
    from dwt_keras.transformer.attention import KERNEL_MODES, validate_heads
    from dwt_keras.transformer.kernel import SPATIAL_KERNELS
    from dwt_keras.transformer.models import EMBEDDINGS

    if cfg.model not in MODELS:
        raise ValueError(f"Unknown model {cfg.model!r}; choose one of {MODELS}.")
    sizes = sorted(MODEL_SIZES) + ["custom"]
    if cfg.model_size not in sizes:
        raise ValueError(f"Unknown model_size {cfg.model_size!r}; choose one of {sizes}.")
    validate_heads(*model_dims(cfg)[::2])
    for a in cfg.augmentations():
        if a not in AUGMENTATIONS:
            raise ValueError(f"Unknown augmentation {a!r} in {cfg.augment!r}; valid: {AUGMENTATIONS}.")
    if cfg.model == "wmsa":
        wavelets.get_wavelet(cfg.wavelet)
        if cfg.kernel_mode not in KERNEL_MODES:
            raise ValueError(f"Unknown kernel_mode {cfg.kernel_mode!r}; choose one of {KERNEL_MODES}.")
        if cfg.spatial_kernel not in SPATIAL_KERNELS:
            raise ValueError(
                f"Unknown spatial_kernel {cfg.spatial_kernel!r}; choose one of {SPATIAL_KERNELS}."
            )
        if cfg.embedding not in EMBEDDINGS:
            raise ValueError(f"Unknown embedding {cfg.embedding!r}; choose one of {EMBEDDINGS}.")
    for name in ("epochs", "batch_size", "patch_size", "n_levels"):
        if int(getattr(cfg, name)) < (0 if name == "epochs" else 1):
            raise ValueError(f"{name} must be positive, got {getattr(cfg, name)}.")
    if cfg.lr <= 0 or cfg.weight_decay < 0 or cfg.warmup_epochs < 0:
        raise ValueError("lr must be > 0, weight_decay >= 0 and warmup_epochs >= 0.")
    if not 0.0 <= cfg.label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {cfg.label_smoothing}.")
    from dwt_keras.cli import STRATEGIES

    if cfg.strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {cfg.strategy!r}; choose one of {STRATEGIES}.")
    spectral_setup(cfg)  # tau in (0, 1], tau_final >= tau_init, epochs >= 0, profile
    training_options(cfg)  # lr_schedule, l1/l2, folds, ensemble, init_from, export, ...
    if cfg.batch_norm:
        raise ValueError(
            "--batch_norm is not applicable to the W-MSA / ViT transformers: every block "
            "already normalises its tokens with LayerNorm. Drop --batch_norm."
        )
    if cfg.early_stopping_patience and not cfg.cv_folds and not cfg.validation_split > 0:
        raise ValueError(
            "--early_stopping_patience needs a validation split (--validation_split > 0): "
            "early stopping never looks at the test split."
        )


def training_options(cfg):
    """The config's training extras as a validated `dwt_keras.training.TrainingOptions`.

    `lr_schedule="warmup_cosine"` (this pipeline's own schedule) is passed on as
    "constant" only for validation; `make_optimizer` builds the real schedule.
    The app's comma-separated `augment` and its `dropout` are this pipeline's own.
    """
    from dwt_keras.training.flags import TrainingOptions
    from dwt_keras.training.schedules import LR_SCHEDULES

    if cfg.lr_schedule != WARMUP_COSINE and cfg.lr_schedule not in LR_SCHEDULES:
        raise ValueError(
            f"Unknown --lr_schedule {cfg.lr_schedule!r}. Valid choices: "
            f"{', '.join((WARMUP_COSINE,) + tuple(LR_SCHEDULES))}."
        )
    return TrainingOptions(
        lr_schedule="constant" if cfg.lr_schedule == WARMUP_COSINE else cfg.lr_schedule,
        augment="none",
        l1=cfg.l1,
        l2=cfg.l2,
        dropout=cfg.dropout,
        batch_norm=False,  # refused separately, with the reason
        cv_folds=cfg.cv_folds,
        early_stopping_patience=cfg.early_stopping_patience,
        ensemble=cfg.ensemble,
        saliency_images=cfg.saliency_images,
        init_from=cfg.init_from,
        freeze=cfg.freeze,
        export=cfg.export,
    ).validate()


def spectral_setup(cfg, log_dir=None):
    """The `dwt_keras.spectral.flags.SpectralSetup` of a config (validated).

    Raises:
        ValueError: tau outside (0, 1], tau_final < tau_init, negative epochs or
            an unknown mask profile (checked even with `spectral_reg=False`).
    """
    from dwt_keras.spectral.flags import spectral_from_flags

    return spectral_from_flags(cfg, apply_to="inputs", log_dir=log_dir)


def model_dims(cfg):
    """(embed_dim, depth, num_heads) of a config."""
    if cfg.model_size == "custom":
        return int(cfg.embed_dim), int(cfg.depth), int(cfg.num_heads)
    return MODEL_SIZES[cfg.model_size]


def default_run_name(cfg):
    """A deterministic run-folder name built from the settings that matter.

    The same command gives the same name, which is what makes a re-run resume.
    """
    d, L, h = model_dims(cfg)
    parts = [cfg.model, f"{cfg.model_size}", f"d{d}x{L}h{h}", cfg.dataset]
    if cfg.model == "wmsa":
        parts += [
            cfg.wavelet,
            f"J{cfg.n_levels}",
            f"p{cfg.patch_size}",
            "kernel" if cfg.use_kernel else "nokernel",
        ]
    else:
        parts.append(f"p{cfg.patch_size}")
    # Only settings away from their defaults add a part, so the names of runs
    # made before these options existed (and their resumes) are unchanged.
    if cfg.spectral_reg:
        spec = (f"spectral_{cfg.mask_profile}_tau{cfg.tau_init:g}-{cfg.tau_final:g}"
                f"_te{cfg.truncation_epochs}")
        if cfg.mask_profile == "cosine" and float(cfg.mask_rolloff) != 0.1:
            spec += f"_roll{cfg.mask_rolloff:g}"
        parts.append(spec + ("_perstep" if cfg.spectral_per_step else ""))
    if cfg.lr_schedule != WARMUP_COSINE:
        parts.append(f"lr_{cfg.lr_schedule}")
    if cfg.l1:
        parts.append(f"l1_{cfg.l1:g}")
    if cfg.l2:
        parts.append(f"l2_{cfg.l2:g}")
    if cfg.early_stopping_patience:
        parts.append(f"es{cfg.early_stopping_patience}")
    if cfg.init_from:
        parts.append(f"init_{pathlib.Path(cfg.init_from).stem}" + ("_frozen" if cfg.freeze else ""))
    if cfg.cv_folds:
        parts.append(f"cv{cfg.cv_folds}")
    if cfg.ensemble > 1:
        parts.append(f"ens{cfg.ensemble}")
    parts += [f"e{cfg.epochs}", f"s{cfg.seed}"]
    return "-".join(str(p) for p in parts)


def build_from_config(cfg, image_shape, num_classes):
    """The model described by `cfg` for images of `image_shape` (H, W, C)."""
    from dwt_keras.transformer.models import build_model

    d, L, h = model_dims(cfg)
    return build_model(
        cfg.model,
        image_size=tuple(image_shape[:2]),
        in_channels=int(image_shape[2]),
        num_classes=int(num_classes),
        embed_dim=d,
        depth=L,
        num_heads=h,
        n_levels=cfg.n_levels,
        wavelet=cfg.wavelet,
        use_kernel=cfg.use_kernel,
        kernel_mode=cfg.kernel_mode,
        spatial_kernel=cfg.spatial_kernel,
        embedding=cfg.embedding,
        patch_size=cfg.patch_size,
        mlp_ratio=cfg.mlp_ratio,
        dropout=cfg.dropout,
        drop_path_rate=cfg.drop_path_rate,
    )


@keras.saving.register_keras_serializable(package="dwt_keras")
class LinearWarmup(keras.optimizers.schedules.LearningRateSchedule):
    """A linear warm-up from 0 to `target` over `warmup_steps`, then `after`.

    `after` (a float or a `LearningRateSchedule`) is evaluated at
    `step - warmup_steps`, so its own decay starts when the warm-up ends.

    Args:
        after: the learning rate or schedule after the warm-up.
        warmup_steps: steps of the warm-up (>= 1).
        target: the rate reached at the end of the warm-up (the base `lr`).

    Example:

    ```python
    lr = LinearWarmup(make_lr_schedule("step", 1e-3, 100, 9), warmup_steps=100, target=1e-3)
    ```
    """

    def __init__(self, after, warmup_steps, target):
        if int(warmup_steps) < 1:
            raise ValueError(f"warmup_steps must be >= 1, got {warmup_steps}.")
        self.after = after
        self.warmup_steps = int(warmup_steps)
        self.target = float(target)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = self.target * step / float(self.warmup_steps)
        rest = step - float(self.warmup_steps)
        after = self.after(rest) if callable(self.after) else self.after
        after = keras.ops.cast(after, "float32")
        return keras.ops.where(step < float(self.warmup_steps), warm, after)

    def get_config(self):
        after = self.after
        if isinstance(after, keras.optimizers.schedules.LearningRateSchedule):
            after = keras.saving.serialize_keras_object(after)
        return {"after": after, "warmup_steps": self.warmup_steps, "target": self.target}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config["after"], dict):
            config["after"] = keras.saving.deserialize_keras_object(config["after"])
        return cls(**config)


def learning_rate_schedule(cfg, steps_per_epoch):
    """The learning rate of `cfg` as a function of the optimizer step.

    `"warmup_cosine"`: linear warm-up from 0 to `lr` over `warmup_epochs`, then
    cosine decay to 0. Any other `lr_schedule`: the same warm-up, then
    `dwt_keras.training.schedules.make_lr_schedule(lr_schedule, lr, ...)` over
    the remaining `epochs - warmup_epochs` epochs. Both are keyed on the
    optimizer's iteration count, so a resumed run continues them exactly.
    """
    total = max(1, int(cfg.epochs) * int(steps_per_epoch))
    warmup = min(int(cfg.warmup_epochs) * int(steps_per_epoch), total - 1)
    if cfg.lr_schedule == WARMUP_COSINE:
        return keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=0.0,
            decay_steps=max(1, total - warmup),
            alpha=0.0,
            warmup_target=float(cfg.lr),
            warmup_steps=warmup,
        )
    from dwt_keras.training.schedules import make_lr_schedule

    after = make_lr_schedule(
        cfg.lr_schedule,
        float(cfg.lr),
        steps_per_epoch=int(steps_per_epoch),
        epochs=max(1, int(cfg.epochs) - int(cfg.warmup_epochs)),
    )
    return LinearWarmup(after, warmup, float(cfg.lr)) if warmup > 0 else after


def make_optimizer(cfg, steps_per_epoch):
    """AdamW with `learning_rate_schedule(cfg, steps_per_epoch)` (default: a
    linear warm-up from 0 to `lr`, then cosine decay to 0)."""
    schedule = learning_rate_schedule(cfg, steps_per_epoch)
    opt = keras.optimizers.AdamW(
        learning_rate=schedule, weight_decay=float(cfg.weight_decay), clipnorm=1.0
    )
    opt.exclude_from_weight_decay(var_names=NO_DECAY)
    return opt


def make_train_pipeline(splits, cfg, num_classes):
    """(train_ds, val_ds, test_ds) with one-hot labels and the requested augmentation."""
    import keras
    import tensorflow as tf

    from dwt_keras.data import make_datasets

    augs = cfg.augmentations()
    train, val, test = make_datasets(
        splits,
        batch_size=int(cfg.batch_size),
        seed=int(cfg.seed),
        augment="crop_flip" if "crop_flip" in augs else None,
    )
    layers = {}
    if "randaugment" in augs:
        layers["ra"] = keras.layers.RandAugment(value_range=(0.0, 1.0), seed=cfg.seed)
    if "mixup" in augs:
        layers["mixup"] = keras.layers.MixUp(alpha=0.2, seed=cfg.seed)
    if "cutmix" in augs:
        layers["cutmix"] = keras.layers.CutMix(factor=1.0, seed=cfg.seed)

    def onehot(x, y):
        return x, tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), num_classes)

    @tf.autograph.experimental.do_not_convert
    def augment(x, y):
        if "ra" in layers:
            x = layers["ra"](x, training=True)
        mixers = [layers[k] for k in ("mixup", "cutmix") if k in layers]
        if len(mixers) == 1:
            out = mixers[0]({"images": x, "labels": y}, training=True)
            x, y = out["images"], out["labels"]
        elif len(mixers) == 2:
            # One of MixUp / CutMix per batch, with equal probability.
            pick = tf.random.stateless_uniform([], seed=[cfg.seed, 7]) < 0.5

            def apply(layer):
                out = layer({"images": x, "labels": y}, training=True)
                return out["images"], out["labels"]

            x, y = tf.cond(pick, lambda: apply(mixers[0]), lambda: apply(mixers[1]))
        return x, y

    autotune = tf.data.AUTOTUNE
    train = train.map(onehot, num_parallel_calls=autotune)
    if layers:
        train = train.map(augment, num_parallel_calls=autotune)
    train = train.prefetch(autotune)
    val = val.map(onehot, num_parallel_calls=autotune) if val is not None else None
    test = test.map(onehot, num_parallel_calls=autotune)
    return train, val, test


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_time_s` (wall time of the epoch) to the logs; place it before CSVLogger."""

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and getattr(self, "_t0", None) is not None:
            logs["epoch_time_s"] = time.perf_counter() - self._t0


def read_history(path):
    """Rows of `history.csv`, one per epoch (the last row wins for a repeated epoch)."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows[int(row["epoch"])] = {
                    k: (float(v) if v not in ("", None) else None) for k, v in row.items()
                }
            except (KeyError, ValueError):
                continue
    return [rows[k] for k in sorted(rows)]


def _config_dict(cfg):
    return {k: v for k, v in dataclasses.asdict(cfg).items()}


def _comparable(config):
    """A config dict without the settings a resume may change or that are inert."""
    out = {k: v for k, v in config.items() if k not in _RESUME_FREE}
    if not out.get("spectral_reg"):
        for k in _SPECTRAL_SETTINGS:
            out.pop(k, None)
    return out


def _check_resume_config(run_dir, cfg):
    path = run_dir / "config.json"
    if not path.exists():
        return
    defaults = _config_dict(TrainConfig())
    # A run written before a setting existed ran with that setting's default.
    old = _comparable({**defaults, **json.loads(path.read_text())})
    new = _comparable(_config_dict(cfg))
    diff = {
        k: (old.get(k), new.get(k))
        for k in sorted(set(old) | set(new))
        if json.dumps(old.get(k)) != json.dumps(new.get(k))
    }
    if diff:
        raise ValueError(
            f"The run folder {run_dir} holds a run with different settings {diff} "
            "(old, new). Pass a new --run_name (or --save_dir) to start a separate run."
        )


def regularize_kernels(model, l1=0.0, l2=0.0):
    """Puts an L1/L2 penalty on every trainable kernel of `model` (in place).

    `dwt_keras.training.regularization.apply_regularization` clones Sequential /
    Functional models; the transformers are subclassed, so the penalty is set
    on the kernel variables themselves (Keras adds `variable.regularizer` terms
    to `model.losses`, hence to the compiled training loss). Kernels are the
    `kernel` variables of the Dense and embedding layers (q/k/v/proj, MLP,
    token embedding, head); biases, norms, positional embeddings and the
    wavelet kernel's bandwidths are not penalised. The penalty is a training
    setting: it is not stored in `.keras` files, and `train` sets it again when
    a run resumes.

    Returns:
        The paths of the penalised variables (empty when `l1 == l2 == 0`).
    """
    from dwt_keras.training.regularization import validate_regularization

    validate_regularization(l1, l2)
    if not (l1 or l2):
        return []
    paths = []
    for variable in model.trainable_weights:
        if variable.name == "kernel":
            variable.regularizer = keras.regularizers.L1L2(l1=float(l1), l2=float(l2))
            paths.append(variable.path)
    return paths


def _path_key(variable):
    # Without the model's own name, which Keras uniquifies (`vi_t`, `vi_t_1`, ...).
    return variable.path.split("/", 1)[-1]


def init_from_file(model, path, freeze=False):
    """Copies the weights of the `.keras` file `path` into the built `model`.

    The file must hold a model of the same class and settings (the run that
    wrote it used the same `--model`, size and W-MSA options). When only the
    number of classes differs, the head keeps its fresh initialisation. With
    `freeze`, every layer but the head becomes non-trainable.

    Returns:
        A JSON-ready dict: `init_from`, `head_replaced`, `freeze`,
        `trainable_layers`, `copied_variables`.

    Raises:
        ValueError: a missing file, another model class, or a weight whose
            shape differs outside the head.
    """
    from dwt_keras.training.transfer import load_init_model

    source = load_init_model(path)
    if type(source) is not type(model):
        raise ValueError(
            f"--init_from {path} holds a {type(source).__name__}, but this run builds a "
            f"{type(model).__name__}: pass the --model and size settings of the run that wrote it."
        )
    by_key = {_path_key(v): v for v in source.weights}
    head = {id(v) for v in model.head.weights}
    head_replaced, copied = False, 0
    for var in model.weights:
        src = by_key.get(_path_key(var))
        if src is not None and tuple(src.shape) == tuple(var.shape):
            var.assign(src)
            copied += 1
        elif id(var) in head and src is not None:
            head_replaced = True  # other number of classes: keep the fresh head
        else:
            found = "missing" if src is None else f"of shape {tuple(src.shape)}"
            raise ValueError(
                f"--init_from {path}: the weight {_path_key(var)} {tuple(var.shape)} of the "
                f"configured model is {found} in the file; the file holds another architecture "
                "(pass the model settings of the run that wrote it)."
            )
    if freeze:
        for layer in model.layers:
            layer.trainable = layer is model.head
    trainable = [layer.name for layer in model.layers if layer.trainable and layer.weights]
    return {
        "init_from": str(path),
        "head_replaced": head_replaced,
        "freeze": bool(freeze),
        "trainable_layers": trainable,
        "copied_variables": copied,
    }


def early_stopping_state(history, monitor, mode="max"):
    """`(best_value, best_epoch, epochs_since_best)` of `history.csv` rows, or `None`."""
    rows = [r for r in history if r.get(monitor) is not None]
    if not rows:
        return None
    values = np.array([r[monitor] for r in rows], dtype=np.float64)
    # The first best wins, as Keras counts strict improvements only.
    best = int(np.argmax(values) if mode == "max" else np.argmin(values))
    return float(values[best]), int(rows[best]["epoch"]), len(rows) - 1 - best


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` whose state continues from `history.csv` when a run resumes.

    Keras' `EarlyStopping` starts counting afresh at every `fit`, so an
    interrupted and resumed run would stop later than an uninterrupted one. This
    one reads the epochs already logged (best value, epochs since it) at the
    start of training. The weights are not restored in memory: the pipeline
    always reports and exports `best.keras`, the checkpoint of the best epoch on
    the same monitor.

    Args:
        patience: epochs without improvement before stopping.
        history_path: the run's `history.csv`.
        monitor: the selection metric (`val_accuracy`).
        mode: `"max"` or `"min"`.
    """

    def __init__(self, patience, history_path, monitor="val_accuracy", mode="max"):
        super().__init__(monitor=monitor, mode=mode, patience=int(patience), verbose=1,
                         restore_best_weights=False)
        self.history_path = str(history_path)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = early_stopping_state(read_history(self.history_path), self.monitor, self.mode)
        if state is not None:
            self.best, self.best_epoch, self.wait = state


def _load_splits(cfg):
    from dwt_keras.data import load_arrays

    splits = load_arrays(
        cfg.dataset, data_dir=cfg.data_dir, validation_split=cfg.validation_split, seed=cfg.seed
    )
    if cfg.max_train_samples:
        n = int(cfg.max_train_samples)
        splits = dataclasses.replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n])
    return splits


def _spectral_report(cfg, history=None):
    rows = history or []
    return spectral_report(
        cfg,
        [r.get("spectral_tau") for r in rows],
        [r.get("spectral_phase") for r in rows],
        applied_to="training inputs only (validation and test data are never filtered)",
        saved_model="plain classifier (best.keras / last.keras hold no truncation layer)",
    )


def _evaluate(model, splits):
    from dwt_keras.evaluation import evaluate_classifier

    return evaluate_classifier(
        model, splits.x_test, splits.y_test, batch_size=256,
        class_names=splits.info.get("class_names"), from_logits=True,
    )


def format_report_table(report):
    """A plain-text table of the test metrics (overall and per class)."""
    lines = [
        f"test accuracy: {report['accuracy']:.4f}   macro F1: {report.get('f1_macro', float('nan')):.4f}"
        f"   test loss: {report.get('test_loss', float('nan')):.4f}   n={report.get('n')}",
        f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for row in report.get("per_class", []):
        lines.append(
            f"{row['name'][:13]:<14}{row['precision']:>10.4f}{row['recall']:>10.4f}"
            f"{row['f1']:>10.4f}{row['support']:>10d}"
        )
    cm = report.get("confusion_matrix")
    if cm:
        lines.append("confusion matrix (rows = true, columns = predicted):")
        width = max(4, max(len(str(v)) for r in cm for v in r) + 1)
        lines += ["".join(f"{v:>{width}d}" for v in r) for r in cm]
    return "\n".join(lines)


def _print_summary(report):
    if "test" in report:
        print(format_report_table(report["test"]))
    cv = report.get("cross_validation")
    if cv:
        acc = cv["summary"]["accuracy"]
        print(f"{cv['cv_folds']}-fold cross-validation, test accuracy "
              f"{acc['mean']:.4f} +- {acc['std']:.4f} (values {acc['values']})")


def train(cfg, callbacks=None, splits=None):
    """Trains (or resumes) one run and returns its report dict (also in report.json).

    With `cv_folds` or `ensemble`, runs one complete training per fold / member
    in sub-folders of the run folder (`fold<i>` / `member<i>`, seed `seed + i`;
    each resumable, finished ones are not retrained), then writes the summary
    report there: the test metrics' mean and std over the folds' models, or the
    logit-averaged ensemble (`ensemble.keras`) with its total params and bytes.
    `saliency_images` / `export` apply to each fold's model, or to the ensemble.

    Args:
        cfg: a `TrainConfig`.
        callbacks: extra Keras callbacks for `fit` (appended after the built-in ones).
        splits: a `dwt_keras.data.DatasetSplits` to train on instead of loading
            `cfg.dataset` (`max_train_samples` is then not applied again).

    Raises:
        ValueError: for invalid settings, before any data is loaded or training starts.
    """
    validate_config(cfg)
    if cfg.cv_folds or cfg.ensemble > 1:
        return _train_folds_or_ensemble(cfg, callbacks, splits)
    return _train_one(cfg, callbacks, splits)


def _train_folds_or_ensemble(cfg, callbacks, splits):
    """`cv_folds` / `ensemble`: several `_train_one` runs under one parent folder."""
    from dwt_keras.compression.sizes import save_keras_atomic
    from dwt_keras.training.extras import finish_run, run_folds_or_ensemble
    from dwt_keras.utils.io import atomic_write_json, check_writable_dir

    opts = training_options(cfg)
    run_name = cfg.run_name or default_run_name(cfg)
    parent = check_writable_dir(cfg.save_dir) / run_name
    _check_resume_config(parent, cfg)
    report_path = parent / "report.json"
    if report_path.exists():
        if cfg.ensemble > 1:  # --export / --saliency_images of the averaged model
            return _finished_run(cfg, parent, report_path, model_file="ensemble.keras")
        report = json.loads(report_path.read_text())
        print(f"[wmsa] {parent} is complete; not retraining. Delete it to start over.")
        _print_summary(report)
        return report
    splits = splits if splits is not None else _load_splits(cfg)
    parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(parent / "config.json", _config_dict(cfg))
    kind = "fold" if cfg.cv_folds else "member"
    # Ensemble members skip saliency / export: they apply to the averaged model.
    member_extras = {} if cfg.cv_folds else {"saliency_images": 0, "export": "none"}
    member_log_dir = str(pathlib.Path(cfg.log_dir) / run_name) if cfg.log_dir else None
    reports = {}

    def member_config(seed):
        i = int(seed) - int(cfg.seed)  # run_folds_or_ensemble gives fold / member i seed + i
        return dataclasses.replace(
            cfg, cv_folds=0, ensemble=1, seed=int(seed), save_dir=str(parent),
            run_name=f"{kind}{i}", log_dir=member_log_dir, **member_extras,
        )

    def train_fn(member_splits, seed):
        mcfg = member_config(seed)
        reports[mcfg.run_name] = _train_one(mcfg, callbacks, member_splits)
        return keras.saving.load_model(parent / mcfg.run_name / "best.keras", compile=False)

    t0 = time.perf_counter()
    out = run_folds_or_ensemble(
        opts, splits, train_fn, evaluate_fn=lambda m, x, y: _evaluate(m, splits), seed=cfg.seed,
        member_files=lambda m, i: parent / f"member{i}" / "best.keras",
    )
    report = {
        "run_dir": str(parent),
        "config": _config_dict(cfg),
        "data": dict(splits.info),
        "n_train_used": int(len(splits.x_train)),
        "spectral": _spectral_report(cfg),
        "runs": {name: str(parent / name) for name in reports},
        "fit_seconds_this_session": time.perf_counter() - t0,
    }
    if cfg.cv_folds:
        report["cross_validation"] = out["cross_validation"]
        report["cross_validation"]["folds_from"] = (
            "training split (train + validation parts pooled); each fold validates on its own fold"
        )
    else:
        model = out.pop("model")
        ens = out["ensemble"]
        members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
        params = [int(m.count_params()) for m in members]
        ens["seeds"] = [int(cfg.seed) + i for i in range(cfg.ensemble)]
        ens["params"] = {"per_member": params, "total": int(sum(params))}
        ens["bytes_float32_weights_total"] = 4 * int(sum(params))
        ens["bytes_note"] = "bytes: the members' best.keras files (weights and optimizer state)"
        save_keras_atomic(model, parent / "ensemble.keras")
        ens["ensemble_file"] = {"path": str(parent / "ensemble.keras"),
                                "bytes": int((parent / "ensemble.keras").stat().st_size)}
        report["ensemble"] = ens
        report["test"] = ens["test"]
        report["training_extras"] = {"options": opts.to_dict(),
                                     **finish_run(opts, model, splits, parent)}
    atomic_write_json(report_path, report)
    print(f"[wmsa] run folder: {parent}")
    _print_summary(report)
    return report


def _finished_run(cfg, run_dir, report_path, model_file="best.keras"):
    """The report of a finished run, adding a `saliency_images` / `export` asked
    for now (they act on the final model file only, so no retraining is needed)."""
    from dwt_keras.training.extras import finish_run
    from dwt_keras.utils.io import atomic_write_json

    report = json.loads(report_path.read_text())
    print(f"[wmsa] {run_dir} is complete; not retraining. Delete it to start over.")
    extras = report.setdefault("training_extras", {})
    opts = training_options(cfg)
    want_saliency = bool(opts.saliency_images) and "saliency" not in extras
    want_export = opts.export != "none" and extras.get("export", {}).get("format") != opts.export
    if want_saliency or want_export:
        opts = dataclasses.replace(
            opts, saliency_images=opts.saliency_images if want_saliency else 0,
            export=opts.export if want_export else "none")
        best = keras.saving.load_model(run_dir / model_file, compile=False)
        extras.update(finish_run(opts, best, _load_splits(cfg), run_dir))
        atomic_write_json(report_path, report)
    _print_summary(report)
    return report


def _train_one(cfg, callbacks=None, splits=None):
    from dwt_keras.spectral.wrapper import PlainModelCallback
    from dwt_keras.training.extras import finish_run
    from dwt_keras.utils.io import atomic_write_json, check_writable_dir
    from dwt_keras.utils.seeding import set_seed

    # `train` validated cfg (or the parent config of this fold / member).
    callbacks_extra = callbacks or []
    opts = training_options(cfg)
    run_name = cfg.run_name or default_run_name(cfg)
    save_dir = check_writable_dir(cfg.save_dir)
    run_dir = save_dir / run_name
    _check_resume_config(run_dir, cfg)
    report_path = run_dir / "report.json"
    if report_path.exists():
        return _finished_run(cfg, run_dir, report_path)

    set_seed(int(cfg.seed))
    if splits is None:
        splits = _load_splits(cfg)
    info = dict(splits.info)
    num_classes = int(info["num_classes"])
    image_shape = tuple(int(s) for s in splits.x_train.shape[1:])
    log_dir = check_writable_dir(pathlib.Path(cfg.log_dir) / run_name) if cfg.log_dir else None
    spectral = spectral_setup(cfg, log_dir=str(log_dir / "spectral") if log_dir else None)

    previous_policy = keras.mixed_precision.global_policy()
    if cfg.mixed_precision:
        from dwt_keras.training.strategy import mixed_precision_policy

        keras.mixed_precision.set_global_policy(mixed_precision_policy())
    try:
        from dwt_keras.training.strategy import get_strategy

        strategy = get_strategy(cfg.strategy)
        with strategy.scope():
            # Built before any training: bad levels / heads / patch sizes raise here.
            model = build_from_config(cfg, image_shape, num_classes)
            model.build((None,) + image_shape)
            transfer = init_from_file(model, cfg.init_from, cfg.freeze) if cfg.init_from else None
            penalised = regularize_kernels(model, cfg.l1, cfg.l2)
            fitted = spectral.wrap(model)  # the model itself without spectral_reg
            if fitted is not model:
                fitted.build((None,) + image_shape)
            steps = math.ceil(len(splits.x_train) / int(cfg.batch_size))
            optimizer = make_optimizer(cfg, steps)

            def compile_(m):
                m.compile(
                    optimizer=optimizer,
                    loss=keras.losses.CategoricalCrossentropy(
                        from_logits=True, label_smoothing=float(cfg.label_smoothing)
                    ),
                    metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                    jit_compile=cfg.jit_compile,
                )

            compile_(fitted)
            if fitted is not model:
                # Same optimizer object: the saved plain model carries the real state.
                compile_(model)
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", _config_dict(cfg))
        train_ds, val_ds, _ = make_train_pipeline(splits, cfg, num_classes)

        history_path = run_dir / "history.csv"
        history = read_history(history_path)
        monitor = "val_accuracy" if val_ds is not None else "accuracy"
        best_so_far = max((r.get(monitor) or -np.inf for r in history), default=None)
        def plain(callback):
            # best.keras / last.keras hold the plain classifier, never the spectral wrapper.
            return callback if fitted is model else PlainModelCallback(callback, model)

        callbacks = [
            keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
            # Before CSVLogger: they add epoch_time_s / spectral_tau to the logged row.
            EpochTimer(),
            *spectral.callbacks,
            plain(keras.callbacks.ModelCheckpoint(
                str(run_dir / "best.keras"),
                monitor=monitor,
                mode="max",
                save_best_only=True,
                initial_value_threshold=best_so_far if best_so_far not in (None, -np.inf) else None,
            )),
            plain(keras.callbacks.ModelCheckpoint(str(run_dir / "last.keras"))),
        ]
        stopped_before = False
        if cfg.early_stopping_patience:
            callbacks.append(ResumableEarlyStopping(cfg.early_stopping_patience, history_path,
                                                    monitor=monitor, mode="max"))
            state = early_stopping_state(history, monitor)
            # Interrupted after it stopped but before the report: do not train on.
            stopped_before = bool(state) and len(history) > 1 and \
                state[2] >= cfg.early_stopping_patience
        callbacks.append(keras.callbacks.CSVLogger(str(history_path), append=True))
        if log_dir is not None:
            from dwt_keras.training.callbacks import attention_map_images, standard_callbacks

            samples = splits.x_val if len(splits.x_val) else splits.x_test
            attention = attention_map_images(samples[:2])
            callbacks += standard_callbacks(
                str(log_dir), model, sample_images=samples[:2], wavelet=cfg.wavelet,
                level=cfg.n_levels,
                # The fitted model may be the spectral wrapper: attention of the classifier.
                image_fns={"attention": lambda m: attention(getattr(m, "inner", m))},
            )
        callbacks += list(callbacks_extra)

        t0 = time.perf_counter()
        if not stopped_before:
            fitted.fit(
                train_ds,
                validation_data=val_ds,
                epochs=int(cfg.epochs),
                callbacks=callbacks,
                verbose=cfg.verbose,
            )
        fit_seconds = time.perf_counter() - t0

        history = read_history(history_path)
        best_path = run_dir / "best.keras"
        if not best_path.exists():  # epochs == 0
            model.save(best_path)
        best = keras.saving.load_model(best_path, compile=False)
        test = _evaluate(best, splits)
        best_row = max(history, key=lambda r: r.get(monitor) or -np.inf) if history else {}
        extras = {"options": {**opts.to_dict(), "lr_schedule": cfg.lr_schedule}}
        if penalised:
            extras["regularization"] = {
                "l1": cfg.l1, "l2": cfg.l2, "penalised_kernels": penalised,
                # Measured on the final weights: the term added to the training loss.
                "penalty_last_epoch": float(sum(float(v) for v in model.losses)),
            }
        if cfg.early_stopping_patience:
            extras["early_stopping"] = {
                "monitor": monitor,
                "patience": int(cfg.early_stopping_patience),
                "epochs_run": len(history),
                "stopped_early": len(history) < int(cfg.epochs),
                "restored": "best.keras (the best epoch on the monitor) is reported and exported",
            }
        if transfer is not None:
            extras["transfer"] = transfer
        extras.update(finish_run(opts, best, splits, run_dir))
        report = {
            "run_dir": str(run_dir),
            "config": _config_dict(cfg),
            "data": {k: v for k, v in info.items()},
            "n_train_used": int(len(splits.x_train)),
            "params": int(model.count_params()),
            "num_tokens": int(model.num_tokens),
            "mixed_precision_policy": keras.mixed_precision.global_policy().name,
            "selection": {
                "monitor": monitor,
                "best_epoch": int(best_row["epoch"]) + 1 if best_row else None,
                "best_value": best_row.get(monitor) if best_row else None,
            },
            "fit_seconds_this_session": fit_seconds,
            "train_seconds_total": float(sum(r.get("epoch_time_s") or 0.0 for r in history)),
            "spectral": _spectral_report(cfg, history),
            "training_extras": extras,
            "history": history,
            "test": test,
        }
        atomic_write_json(report_path, report)
        shutil.rmtree(run_dir / "backup", ignore_errors=True)
        print(f"[wmsa] run folder: {run_dir}")
        print(format_report_table(test))
        return report
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)
