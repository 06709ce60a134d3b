"""KerasTuner search spaces over the engine's recipes: a trial trains what the app trains.

`CompressionHyperModel` searches the basis (wavelet, `identity`, `dct`), the decomposition level,
the boundary mode, the keep ratio, the pruning schedule, the value quantisation of the stored
file, the learning rate and the batch size. A trial's settings are a `CompressionConfig` — the
search's fixed settings with the trial's values (`trial_config`) — and the trial runs the
compression recipe's own steps (`dwt_keras.experiments.compression`):

1. `train_dense` for `epochs` (Hyperband passes its budget and `initial_epoch` here), with the
   app's selection and early stopping;
2. `compress_and_retrain` with the app's schedule (`make_schedule`: the same gradual ramp,
   iterative ratios and one-shot step), for `retrain_epochs` with the masks held;
3. `store_and_reload`: the compressed file is written and loaded back, and *that* model (what
   is actually stored, quantisation included) is scored on the validation split;
4. it returns `val_accuracy`, `val_loss`, `compression_ratio` (dense float32 bytes / file
   bytes), `compressed_bytes` and `val_score` (see `dwt_keras.tuning.objectives`).

The test split is never seen during the search. When KerasTuner runs the trial, the compressed
file is kept as `<trial folder>/model.dwtc`, so the best trial's model is the exact model that was
scored.

`WMSAHyperModel` searches the wavelet transformer's width, depth, heads, DWT levels, wavelet,
kernel on/off, learning rate, weight decay and batch size; its trials are `TransformerConfig`s
trained with the transformer recipe's optimizer (AdamW with the no-decay exclusions, clip-norm,
warm-up + cosine), loss and augmentation, selecting the best validation epoch.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import pathlib
import tempfile
import types

import keras
import keras_tuner
import numpy as np

from dwt_keras import wavelets
from dwt_keras.compression import bases as bases_module
from dwt_keras.compression.sizes import dense_float32_bytes
from dwt_keras.data import DatasetSplits
from dwt_keras.experiments import compression as recipe
from dwt_keras.experiments.compression import CompressionConfig, build
from dwt_keras.experiments.registry import build_model
from dwt_keras.experiments.run import Run, Selection
from dwt_keras.experiments.transformer import TransformerConfig
from dwt_keras.spectral.setup import spectral_setup
from dwt_keras.tuning.objectives import size_aware_score, validate_objective

DEFAULT_BASES = ("identity", "dct", "haar", "db2", "db4", "sym4", "coif2", "bior2.2")
DEFAULT_MODES = ("periodization", "symmetric", "zero")
DEFAULT_SCHEDULES = ("oneshot", "iterative", "gradual")
DEFAULT_QUANTIZERS = ("none", "float16", "kmeans")
COMPRESSED_FILE = "model.dwtc"


def _trial_dir(callbacks):
    """The running trial's folder, from KerasTuner's checkpoint callback (None outside a tuner)."""
    for cb in callbacks or []:
        path = getattr(cb, "filepath", None)
        if type(cb).__name__ == "SaveBestEpoch" and path:
            return pathlib.Path(path).parent
    return None


def fresh_tensorboard(callback, log_dir):
    """A copy of a (possibly used) TensorBoard callback without its writers, for `log_dir`.

    A TensorBoard callback that has run holds the `tf.summary` module and open writers, which
    `copy.deepcopy` cannot copy.
    """
    new = copy.copy(callback)
    new._writers, new._summary_module, new._prev_summary_state = {}, None, []
    new.log_dir = str(log_dir)
    return new


def _retrain_callbacks(callbacks):
    """The trial's callbacks for the retraining fit.

    TensorBoard callbacks log to `<their dir>/retrain` (epochs restart at 0 there); KerasTuner's
    HParams session callback is left out (the dense fit already recorded the session).
    """
    out = []
    for cb in callbacks or []:
        if type(cb).__module__.startswith("tensorboard.plugins.hparams"):
            continue
        if isinstance(cb, keras.callbacks.TensorBoard):
            cb = fresh_tensorboard(cb, os.path.join(cb.log_dir, "retrain"))
        out.append(cb)
    return out


def _trial_log_name(log_dir, trial_dir):
    """`trials/<trial id>/execution<k>` (k counts this trial's executions) under `log_dir`."""
    trial = trial_dir.name.replace("trial_", "") if trial_dir is not None else "untracked"
    root = pathlib.Path(log_dir) / "trials" / trial
    k = len(list(root.glob("execution*"))) if root.is_dir() else 0
    (root / f"execution{k}").mkdir(parents=True, exist_ok=True)
    return f"trials/{trial}/execution{k}"


def _splits(x, y, validation_data, num_classes):
    """The trial's data as `DatasetSplits` (the validation split doubles as the scored set)."""

    if validation_data is None:
        raise ValueError("The search needs validation_data=(x_val, y_val): trials are scored on "
                         "the validation split, never on the test split.")
    x_val, y_val = validation_data
    info = {"name": "search", "source": "arrays", "n_train": int(len(x)), "n_val": int(len(x_val)),
            "n_test": int(len(x_val)), "num_classes": int(num_classes),
            "image_shape": list(np.shape(x)[1:]), "class_names": None}
    # `x_test` is the validation split: `Run.evaluate` then scores on it.
    return DatasetSplits(np.asarray(x), np.asarray(y), np.asarray(x_val), np.asarray(y_val),
                         np.asarray(x_val), np.asarray(y_val), info)


def _trial_run(config, trial_dir, strategy, log_dir):
    directory = trial_dir if trial_dir is not None else pathlib.Path(tempfile.gettempdir())
    log_name = _trial_log_name(log_dir, trial_dir) if log_dir else None
    # Every phase of the trial logs to <log_dir>/trials/<trial id>/execution<k>/<phase>.
    config = dataclasses.replace(config, log_dir=str(log_dir) if log_dir else None)
    return Run(config, directory, types.SimpleNamespace(strategy=strategy), track=False,
               log_name=log_name)


class CompressionHyperModel(keras_tuner.HyperModel):
    """The compression recipe as a KerasTuner search space.

    Args:
        base: the search's fixed settings, a `CompressionConfig` (data, model, epochs,
            `retrain_epochs`, spectral truncation, storage codec, ...); each trial replaces the
            searched fields.
        input_shape: `(H, W, C)`; num_classes: number of classes.
        bases, modes, levels: candidate bases, boundary modes and decomposition levels.
        keep_ratio_range: `(min, max)` of the keep ratio, sampled log-uniformly.
        schedules: candidate schedules; quantizers: candidate value quantisations.
        lr_range: `(min, max)` learning rate, log-uniform; batch_sizes: candidates.
        objective, min_ratio, tradeoff_weight: the score (see `objectives`).
        strategy: the `tf.distribute` strategy of the trials (optional).
        log_dir: TensorBoard folder: each trial logs the shared callback set to
            `<log_dir>/trials/<trial id>/execution<k>/{dense,retrain}`.

    Example:

    ```python
    hm = CompressionHyperModel(CompressionConfig(model="lenet300", epochs=3), (28, 28, 1), 10)
    tuner = keras_tuner.RandomSearch(hm, objective=keras_tuner.Objective("val_score", "max"),
                                     max_trials=20, directory="tune", project_name="mnist")
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=3)
    ```
    """

    def __init__(self, base=None, input_shape=(28, 28, 1), num_classes=10, bases=DEFAULT_BASES,
                 modes=DEFAULT_MODES, levels=(1, 2, 3), keep_ratio_range=(0.005, 0.2),
                 schedules=DEFAULT_SCHEDULES, quantizers=DEFAULT_QUANTIZERS,
                 lr_range=(1e-4, 3e-3), batch_sizes=(32, 64, 128), objective="constrained",
                 min_ratio=50.0, tradeoff_weight=0.01, strategy=None, log_dir=None,
                 name="compression", tunable=True):
        super().__init__(name=name, tunable=tunable)

        base = CompressionConfig() if base is None else base
        for b in bases:
            bases_module.basis_kind(b)
        for m in modes:
            wavelets.validate_mode(m)
        unknown = set(schedules) - set(DEFAULT_SCHEDULES)
        if unknown or not schedules:
            raise ValueError(f"`schedules` must be among {', '.join(DEFAULT_SCHEDULES)}. "
                             f"Received: schedules={list(schedules)}")
        lo, hi = keep_ratio_range
        if not 0 < lo <= hi <= 1:
            raise ValueError("`keep_ratio_range` must satisfy 0 < min <= max <= 1. "
                             f"Received: keep_ratio_range={keep_ratio_range}")
        if not 0 < lr_range[0] <= lr_range[1]:
            raise ValueError("`lr_range` must satisfy 0 < min <= max. "
                             f"Received: lr_range={lr_range}")
        if int(base.retrain_epochs) < 1:
            raise ValueError("A compression trial needs retrain_epochs >= 1. "
                             f"Received: retrain_epochs={base.retrain_epochs}")
        validate_objective(objective, min_ratio, tradeoff_weight)
        self.base = base
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.bases, self.modes, self.levels = list(bases), list(modes), [int(v) for v in levels]
        self.keep_ratio_range = (float(lo), float(hi))
        self.schedules, self.quantizers = list(schedules), list(quantizers)
        self.lr_range, self.batch_sizes = tuple(map(float, lr_range)), [int(b) for b in batch_sizes]
        self.objective, self.min_ratio = objective, float(min_ratio)
        self.tradeoff_weight = float(tradeoff_weight)
        self.strategy = strategy
        self.log_dir = log_dir

    @staticmethod
    def _choice(hp, name, values, **kwargs):
        return hp.Choice(name, values, **kwargs) if len(values) > 1 else hp.Fixed(name, values[0])

    def declare(self, hp):
        """Declares the search space on `hp` and returns the chosen values."""
        lo, hi = self.keep_ratio_range
        return {
            "wavelet": self._choice(hp, "wavelet", self.bases),
            "level": self._choice(hp, "level", self.levels, ordered=True) if len(self.levels) > 1
            else hp.Fixed("level", self.levels[0]),
            "mode": self._choice(hp, "mode", self.modes),
            "keep_ratio": hp.Float("keep_ratio", lo, hi, sampling="log") if hi > lo
            else hp.Fixed("keep_ratio", lo),
            "schedule": self._choice(hp, "schedule", self.schedules),
            "quantize": self._choice(hp, "quantize", self.quantizers),
            "lr": hp.Float("lr", *self.lr_range, sampling="log")
            if self.lr_range[1] > self.lr_range[0] else hp.Fixed("lr", self.lr_range[0]),
            "batch_size": self._choice(hp, "batch_size", self.batch_sizes),
        }

    def trial_config(self, hp):
        """The `CompressionConfig` a trial trains: the fixed settings plus the trial's values."""
        values = self.declare(hp)
        return dataclasses.replace(self.base, threshold=None, **values).validate()

    def build(self, hp):
        config = self.trial_config(hp)
        info = {"image_shape": self.input_shape, "num_classes": self.num_classes}
        scope = self.strategy.scope() if self.strategy is not None else _null_scope()
        with scope:
            return build(config, info)

    def fit(self, hp, model, x, y=None, validation_data=None, callbacks=None, epochs=1,
            initial_epoch=0, verbose=0, **kwargs):
        """The trial: dense training, compression + retraining, scoring of the stored file.

        Returns:
            A dict of validation metrics with `val_score` (the search objective).
        """

        config = dataclasses.replace(self.trial_config(hp), verbose=verbose)
        splits = _splits(x, y, validation_data, self.num_classes)
        trial_dir = _trial_dir(callbacks)
        run = _trial_run(config, trial_dir, self.strategy, self.log_dir)
        config = run.config
        train, validation, _ = run.datasets(splits)
        steps = run.steps_per_epoch(len(splits.x_train))
        spectral = spectral_setup(config)
        # Each trial gets its own deep copy of the tau scheduler.
        spectral.callbacks = copy.deepcopy(spectral.callbacks)
        recipe.train_dense(run, model, config, train, validation, steps, spectral,
                           callbacks=list(callbacks or []), epochs=epochs,
                           initial_epoch=initial_epoch, samples=splits.x_val[:2])
        recipe.compress_and_retrain(run, model, config, train, validation, steps,
                                    callbacks=_retrain_callbacks(callbacks),
                                    samples=splits.x_val[:2],
                                    validation_data=(splits.x_val, splits.y_val))
        with tempfile.TemporaryDirectory() as tmp:
            path = (trial_dir if trial_dir is not None else pathlib.Path(tmp)) / COMPRESSED_FILE
            info, stored = recipe.store_and_reload(model, config, path,
                                                   calibration=splits.x_train)
            scored = run.evaluate(stored, splits)
        ratio = dense_float32_bytes(model) / float(info["bytes"])
        score = size_aware_score(scored["accuracy"], ratio, self.objective, self.min_ratio,
                                 self.tradeoff_weight)
        return {"val_score": float(score), "val_accuracy": float(scored["accuracy"]),
                "val_loss": float(scored["test_loss"]), "compression_ratio": float(ratio),
                "compressed_bytes": float(info["bytes"])}


class WMSAHyperModel(keras_tuner.HyperModel):
    """The wavelet multi-scale attention transformer (`dwt_keras.transformer`) search space.

    Args:
        base: the search's fixed settings, a `TransformerConfig` (data, epochs, augmentation,
            label smoothing, warm-up, spectral truncation, ...).
        input_shape: `(H, W, C)`; num_classes: number of classes.
        widths: candidate embedding widths (each divisible by every head count).
        depths: `(min, max)` blocks; heads: candidate head counts.
        levels: candidate DWT levels (`2**J <= min(H, W)` is enforced).
        wavelets: candidate wavelets; patch_size: subband patch size (fixed).
        lr_range, weight_decay_range: log-uniform ranges (AdamW).
        batch_sizes: candidate batch sizes.
        strategy, log_dir: see `CompressionHyperModel`.
    """

    def __init__(self, base=None, input_shape=(32, 32, 3), num_classes=10, widths=(32, 64, 96),
                 depths=(1, 4), heads=(1, 2, 4), levels=(1, 2, 3), wavelets=("haar", "db2", "db4"),
                 patch_size=2, lr_range=(1e-4, 3e-3), weight_decay_range=(1e-5, 1e-1),
                 batch_sizes=(32, 64, 128), strategy=None, log_dir=None, name="wmsa",
                 tunable=True):
        super().__init__(name=name, tunable=tunable)

        self.base = TransformerConfig() if base is None else base
        self.input_shape = tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        bad = [(w, h) for w in widths for h in heads if w % h]
        if bad:
            raise ValueError(f"Every width must be divisible by every head count; not: {bad}.")
        max_level = int(math.floor(math.log2(min(self.input_shape[:2]))))
        levels = [int(v) for v in levels if int(v) <= max_level]
        if not levels:
            raise ValueError(f"No level fits {self.input_shape[:2]} images (2**J <= min(H, W)).")
        self.widths, self.depths, self.heads = list(widths), tuple(depths), list(heads)
        self.levels, self.wavelets, self.patch_size = levels, list(wavelets), int(patch_size)
        self.lr_range, self.weight_decay_range = tuple(lr_range), tuple(weight_decay_range)
        self.batch_sizes = [int(b) for b in batch_sizes]
        self.strategy = strategy
        self.log_dir = log_dir

    def trial_config(self, hp):
        """The `TransformerConfig` a trial trains."""
        return dataclasses.replace(
            self.base, model="wmsa", model_size="custom", patch_size=self.patch_size,
            embed_dim=hp.Choice("width", self.widths), depth=hp.Int("depth", *self.depths),
            num_heads=hp.Choice("heads", self.heads),
            n_levels=hp.Choice("levels", self.levels, ordered=True),
            wavelet=hp.Choice("wavelet", self.wavelets),
            use_kernel=hp.Boolean("use_kernel", default=True),
            lr=hp.Float("lr", *self.lr_range, sampling="log"),
            weight_decay=hp.Float("weight_decay", *self.weight_decay_range, sampling="log"),
            batch_size=hp.Choice("batch_size", self.batch_sizes)).validate()

    def build(self, hp):
        config = self.trial_config(hp)
        scope = self.strategy.scope() if self.strategy is not None else _null_scope()
        with scope:
            return build_model("wmsa", self.input_shape, self.num_classes, options=config)

    def fit(self, hp, model, x, y=None, validation_data=None, callbacks=None, epochs=1,
            verbose=0, **kwargs):
        config = dataclasses.replace(self.trial_config(hp), epochs=int(epochs), verbose=verbose)
        splits = _splits(x, y, validation_data, self.num_classes)
        run = _trial_run(config, _trial_dir(callbacks), self.strategy, self.log_dir)
        config = run.config
        run.compile(model, keras.losses.CategoricalCrossentropy(
            from_logits=True, label_smoothing=float(config.label_smoothing)),
            lambda: [keras.metrics.CategoricalAccuracy(name="accuracy")],
            run.steps_per_epoch(len(splits.x_train)), config.epochs)
        train, validation, _ = run.datasets(splits, one_hot_classes=self.num_classes)
        spectral = spectral_setup(config)
        spectral.callbacks = copy.deepcopy(spectral.callbacks)
        tensorboard = {"wavelet": config.wavelet, "level": config.n_levels,
                       "sample_images": splits.x_val[:2]}
        run.fit(model, train, validation, config.epochs, "train",
                Selection("val_accuracy", "max", restore="best"), callbacks=list(callbacks or []),
                spectral=spectral, tensorboard=tensorboard)
        scored = run.evaluate(model, splits)
        return {"val_accuracy": float(scored["accuracy"]), "val_loss": float(scored["test_loss"]),
                "val_score": float(scored["accuracy"]), "params": float(model.count_params())}


class _null_scope:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
