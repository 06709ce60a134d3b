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
* optional TensorBoard logs under ``<log_dir>/<run_name>``.
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

from dwt_keras.transformer.models import MODEL_SIZES

MODELS = ("wmsa", "vit")
AUGMENTATIONS = ("none", "crop_flip", "randaugment", "mixup", "cutmix")
#: Variables (by name) that AdamW does not decay.
NO_DECAY = ["bias", "gamma", "beta", "embedding", "bandwidth", "rho_logit"]
# Settings that do not change what is trained: they may differ on resume.
_RESUME_FREE = ("save_dir", "data_dir", "log_dir", "run_name", "verbose", "strategy")


@dataclasses.dataclass
class TrainConfig:
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


def make_optimizer(cfg, steps_per_epoch):
    """AdamW with a linear warm-up from 0 to `lr`, then cosine decay to 0."""
    import keras

    total = max(1, int(cfg.epochs) * int(steps_per_epoch))
    warmup = min(int(cfg.warmup_epochs) * int(steps_per_epoch), total - 1)
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        decay_steps=max(1, total - warmup),
        alpha=0.0,
        warmup_target=float(cfg.lr),
        warmup_steps=warmup,
    )
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


def _check_resume_config(run_dir, cfg):
    path = run_dir / "config.json"
    if not path.exists():
        return
    old = json.loads(path.read_text())
    new = _config_dict(cfg)
    diff = {
        k: (old.get(k), new[k])
        for k in new
        if k not in _RESUME_FREE and json.dumps(old.get(k)) != json.dumps(new[k])
    }
    if diff:
        raise ValueError(
            f"The run folder {run_dir} holds a run with different settings {diff} "
            "(old, new). Pass a new --run_name (or --save_dir) to start a separate run."
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


def train(cfg, callbacks=None):
    """Trains (or resumes) one run and returns its report dict (also in report.json).

    Args:
        cfg: a `TrainConfig`.
        callbacks: extra Keras callbacks for `fit` (appended after the built-in ones).

    Raises:
        ValueError: for invalid settings, before any data is loaded or training starts.
    """
    import keras

    from dwt_keras.data import load_arrays
    from dwt_keras.evaluation import evaluate_classifier
    from dwt_keras.utils.io import atomic_write_json, check_writable_dir
    from dwt_keras.utils.seeding import set_seed

    callbacks_extra = callbacks or []
    validate_config(cfg)
    run_name = cfg.run_name or default_run_name(cfg)
    save_dir = check_writable_dir(cfg.save_dir)
    run_dir = save_dir / run_name
    _check_resume_config(run_dir, cfg)
    report_path = run_dir / "report.json"
    if report_path.exists():
        report = json.loads(report_path.read_text())
        print(f"[wmsa] {run_dir} is complete; not retraining. Delete it to start over.")
        print(format_report_table(report["test"]))
        return report

    set_seed(int(cfg.seed))
    splits = load_arrays(
        cfg.dataset, data_dir=cfg.data_dir, validation_split=cfg.validation_split, seed=cfg.seed
    )
    if cfg.max_train_samples:
        n = int(cfg.max_train_samples)
        splits = dataclasses.replace(splits, x_train=splits.x_train[:n], y_train=splits.y_train[:n])
    info = dict(splits.info)
    num_classes = int(info["num_classes"])
    image_shape = tuple(int(s) for s in splits.x_train.shape[1:])

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
            steps = math.ceil(len(splits.x_train) / int(cfg.batch_size))
            model.compile(
                optimizer=make_optimizer(cfg, steps),
                loss=keras.losses.CategoricalCrossentropy(
                    from_logits=True, label_smoothing=float(cfg.label_smoothing)
                ),
                metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
                jit_compile=cfg.jit_compile,
            )
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(run_dir / "config.json", _config_dict(cfg))
        train_ds, val_ds, _ = make_train_pipeline(splits, cfg, num_classes)

        history_path = run_dir / "history.csv"
        history = read_history(history_path)
        monitor = "val_accuracy" if val_ds is not None else "accuracy"
        best_so_far = max((r.get(monitor) or -np.inf for r in history), default=None)
        callbacks = [
            keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=False),
            EpochTimer(),
            keras.callbacks.ModelCheckpoint(
                str(run_dir / "best.keras"),
                monitor=monitor,
                mode="max",
                save_best_only=True,
                initial_value_threshold=best_so_far if best_so_far not in (None, -np.inf) else None,
            ),
            keras.callbacks.ModelCheckpoint(str(run_dir / "last.keras")),
            keras.callbacks.CSVLogger(str(history_path), append=True),
        ]
        if cfg.log_dir:
            log_dir = check_writable_dir(pathlib.Path(cfg.log_dir) / run_name)
            from dwt_keras.training.callbacks import standard_callbacks

            samples = splits.x_val if len(splits.x_val) else splits.x_test
            callbacks += standard_callbacks(
                str(log_dir), model, sample_images=samples[:2], wavelet=cfg.wavelet,
                level=cfg.n_levels,
            )
        callbacks += list(callbacks_extra)

        t0 = time.perf_counter()
        model.fit(
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
        test = evaluate_classifier(
            best,
            splits.x_test,
            splits.y_test,
            batch_size=256,
            class_names=info.get("class_names"),
            from_logits=True,
        )
        best_row = max(history, key=lambda r: r.get(monitor) or -np.inf) if history else {}
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
