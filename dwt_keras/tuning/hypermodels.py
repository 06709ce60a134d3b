"""KerasTuner search spaces: the DWT compression pipeline and the W-MSA transformer.

`CompressionHyperModel` searches the basis (wavelet, `identity`, `dct`), the decomposition level,
the boundary mode, the keep ratio, the pruning schedule, the value quantisation of the stored
file, the learning rate and (in `fit`) the batch size. One trial:

1. trains the dense model for `epochs` (Hyperband passes its budget and `initial_epoch` here),
2. compresses it with the trial's settings and retrains for `retrain_epochs` with the mask held
   (one-shot: prune at the start of retraining; iterative: geometric keep ratios from 0.5 down
   to the target, one stage per epoch; gradual: polynomial decay over the first 70% of the
   retraining steps),
3. writes the compressed file, loads it back, and scores *that* model (what is actually stored,
   quantisation included) on the validation split,
4. returns `val_accuracy`, `val_loss`, `compression_ratio` (dense float32 bytes / file bytes),
   `compressed_bytes` and `val_score` (see `dwt_keras.tuning.objectives`).

The test split is never seen during the search. When KerasTuner runs the trial, the compressed
file is kept as `<trial folder>/model.dwtc`, so the best trial's model is the exact model that was
scored.

`WMSAHyperModel` searches the wavelet transformer's width, depth, heads, DWT levels, wavelet,
kernel on/off, learning rate and weight decay (AdamW), and the batch size.
"""

import copy
import math
import os
import pathlib
import tempfile

import keras
import keras_tuner
import numpy as np

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


def fresh_tensorboard(callback, log_dir):
    """A copy of a (possibly used) TensorBoard callback without its writers, for `log_dir`.

    A TensorBoard callback that has run holds the `tf.summary` module and open writers, which
    `copy.deepcopy` cannot copy.
    """
    new = copy.copy(callback)
    new._writers, new._summary_module, new._prev_summary_state = {}, None, []
    new.log_dir = str(log_dir)
    return new


def _trial_tensorboard(log_dir, trial_dir, wavelet, level, mode, x_val):
    """`phase, model -> callbacks` logging the shared TensorBoard set for this trial to
    `<log_dir>/trials/<trial id>/execution<k>/<phase>` (k counts this trial's executions)."""
    from dwt_keras.training.callbacks import standard_callbacks

    if not log_dir:
        return lambda phase, model: []
    trial = trial_dir.name.replace("trial_", "") if trial_dir is not None else "untracked"
    root = pathlib.Path(log_dir) / "trials" / trial
    execution = root / f"execution{len(list(root.glob('execution*'))) if root.is_dir() else 0}"
    execution.mkdir(parents=True, exist_ok=True)

    def make(phase, model):
        return standard_callbacks(str(execution / phase), model, sample_images=x_val[:2],
                                  wavelet=wavelet, level=level, mode=mode)

    return make


def _fit_dense(model, spectral, callbacks, **fit_kwargs):
    """`model.fit(**fit_kwargs)`, or with `spectral.enabled` the fit of a `SpectralTrainingModel`
    around it (training inputs low-passed on the `TauScheduler`'s schedule).

    The wrapper shares `model`'s variables and optimizer, so `model` is trained in place and the
    retraining continues its optimizer. The trial's callbacks (KerasTuner's checkpoint, which
    Hyperband and `get_best_models` reload into a plain model; TensorBoard) see the plain model;
    each trial gets its own deep copy of the scheduler.
    """
    if spectral is None or not spectral.enabled:
        return model.fit(callbacks=callbacks, **fit_kwargs)
    from dwt_keras.compression.pipeline import wrap_compiled
    from dwt_keras.spectral.wrapper import PlainModelCallback

    # The truncation layer's variables belong in the strategy that holds the model's.
    with model.distribute_strategy.scope():
        trainer = wrap_compiled(spectral, model)
    return trainer.fit(callbacks=[*copy.deepcopy(spectral.callbacks),
                                  *(PlainModelCallback(cb, model) for cb in callbacks)],
                       **fit_kwargs)


def _compile(model, lr, weight_decay=None):
    opt = keras.optimizers.AdamW(lr, weight_decay=weight_decay) if weight_decay \
        else keras.optimizers.Adam(lr)
    model.compile(optimizer=opt,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def _split_validation(validation_data):
    if validation_data is None:
        raise ValueError("The compression search needs validation_data=(x_val, y_val): trials "
                         "are scored on the validation split, never on the test split.")
    return validation_data[0], validation_data[1]


class CompressionHyperModel(keras_tuner.HyperModel):
    """The DWT compression pipeline as a KerasTuner search space.

    Args:
        model_name: a `dwt_keras.models` name (`lenet300`, `lenet5`, `resnet18`, `mlp`).
        input_shape: `(H, W, C)`.
        num_classes: number of classes.
        bases: candidate bases (wavelets, `identity`, `dct`).
        modes: candidate boundary modes.
        levels: candidate decomposition levels (capped per layer by the compression plan).
        keep_ratio_range: `(min, max)` of the keep ratio, sampled log-uniformly.
        schedules: candidate schedules (`oneshot`, `iterative`, `gradual`).
        quantizers: candidate value quantisations of the stored file
            (`none`, `float16`, `int8`, `kmeans`).
        lr_range: `(min, max)` learning rate, log-uniform.
        batch_sizes: candidate batch sizes (chosen in `fit`).
        retrain_epochs: retraining epochs with the mask held.
        objective: `val_accuracy`, `constrained` or `tradeoff` (see `objectives`).
        min_ratio: the compression-ratio constraint of `constrained`.
        tradeoff_weight: the weight of `tradeoff`.
        model_kwargs: extra builder arguments (e.g. `widths` for `mlp`).
        strategy: build under this `tf.distribute` strategy's scope (optional; KerasTuner's
            `distribution_strategy` does the same).
        log_dir: TensorBoard folder: each trial logs the shared callback set
            (`dwt_keras.training.callbacks.standard_callbacks`) to
            `<log_dir>/trials/<trial id>/execution<k>/{dense,retrain}`.
        spectral: a `dwt_keras.spectral.flags.SpectralSetup` (e.g. `spectral_from_flags`):
            when enabled, every trial's dense training sees low-passed inputs during its first
            `truncation_epochs` epochs (keyed on the epoch, so Hyperband's resumed trials stay
            on schedule); retraining, scoring and the stored file see unfiltered inputs.

    Example:

    ```python
    hm = CompressionHyperModel("lenet300", (28, 28, 1), 10, min_ratio=50.0)
    tuner = keras_tuner.RandomSearch(hm, objective=keras_tuner.Objective("val_score", "max"),
                                     max_trials=20, directory="tune", project_name="mnist")
    tuner.search(x_train, y_train, validation_data=(x_val, y_val), epochs=3)
    ```
    """

    def __init__(self, model_name="lenet300", input_shape=(28, 28, 1), num_classes=10,
                 bases=DEFAULT_BASES, modes=DEFAULT_MODES, levels=(1, 2, 3),
                 keep_ratio_range=(0.005, 0.2), schedules=DEFAULT_SCHEDULES,
                 quantizers=DEFAULT_QUANTIZERS, lr_range=(1e-4, 3e-3), batch_sizes=(32, 64, 128),
                 retrain_epochs=1, objective="constrained", min_ratio=50.0, tradeoff_weight=0.01,
                 model_kwargs=None, strategy=None, log_dir=None, spectral=None,
                 name="compression", tunable=True):
        super().__init__(name=name, tunable=tunable)
        from dwt_keras.compression import bases as bases_module
        from dwt_keras.models import MODELS
        from dwt_keras import wavelets

        if model_name not in MODELS:
            raise ValueError(f"Unknown model {model_name!r}. Valid choices: {', '.join(MODELS)}.")
        for b in bases:
            bases_module.basis_kind(b)
        for m in modes:
            wavelets.validate_mode(m)
        unknown = set(schedules) - set(DEFAULT_SCHEDULES)
        if unknown or not schedules:
            raise ValueError(f"Unknown schedules {sorted(unknown)}; valid: {DEFAULT_SCHEDULES}.")
        lo, hi = keep_ratio_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"keep_ratio_range must satisfy 0 < min <= max <= 1, got "
                             f"{keep_ratio_range}.")
        if not 0 < lr_range[0] <= lr_range[1]:
            raise ValueError(f"lr_range must satisfy 0 < min <= max, got {lr_range}.")
        if int(retrain_epochs) < 1:
            raise ValueError(f"retrain_epochs must be >= 1, got {retrain_epochs}.")
        validate_objective(objective, min_ratio, tradeoff_weight)
        self.model_name, self.input_shape = model_name, tuple(int(v) for v in input_shape)
        self.num_classes = int(num_classes)
        self.bases, self.modes, self.levels = list(bases), list(modes), [int(v) for v in levels]
        self.keep_ratio_range = (float(lo), float(hi))
        self.schedules, self.quantizers = list(schedules), list(quantizers)
        self.lr_range, self.batch_sizes = tuple(map(float, lr_range)), [int(b) for b in batch_sizes]
        self.retrain_epochs = int(retrain_epochs)
        self.objective, self.min_ratio = objective, float(min_ratio)
        self.tradeoff_weight = float(tradeoff_weight)
        self.model_kwargs = dict(model_kwargs or {})
        self.strategy = strategy
        self.log_dir = log_dir
        self.spectral = spectral

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
        }

    def build(self, hp):
        from dwt_keras.models import build_model

        values = self.declare(hp)
        if self.strategy is not None:
            with self.strategy.scope():
                model = build_model(self.model_name, self.input_shape, self.num_classes,
                                    **self.model_kwargs)
                return _compile(model, values["lr"])
        model = build_model(self.model_name, self.input_shape, self.num_classes,
                            **self.model_kwargs)
        return _compile(model, values["lr"])

    def _compression_callback(self, hp, start_step, steps):
        from dwt_keras.compression import (GradualCompression, IterativeCompression,
                                           OneShotCompression)

        basis = dict(basis=hp.get("wavelet"), mode=hp.get("mode"), level=hp.get("level"),
                     verbose=0)
        keep = float(hp.get("keep_ratio"))
        schedule = hp.get("schedule")
        if schedule == "oneshot":
            return OneShotCompression(keep_ratio=keep, at_step=int(start_step), **basis)
        if schedule == "iterative":
            n = max(1, self.retrain_epochs)
            first = max(keep, 0.5)
            ratios = [first * (keep / first) ** (i / max(1, n - 1)) for i in range(n)] \
                if n > 1 else [keep]
            ratios[-1] = keep
            return IterativeCompression(keep_ratios=ratios, epochs_per_stage=1, **basis)
        end = int(start_step) + max(1, int(0.7 * steps))
        return GradualCompression(final_keep=keep, initial_keep=1.0, begin_step=int(start_step),
                                  end_step=end, frequency=max(1, steps // 10), **basis)

    def fit(self, hp, model, x, y=None, validation_data=None, callbacks=None, epochs=1,
            initial_epoch=0, verbose=0, **kwargs):
        """Dense training, compression + retraining, then scoring of the stored file.

        Returns:
            A dict of validation metrics with `val_score` (the search objective).
        """
        from dwt_keras.compression import load_compressed, save_compressed
        from dwt_keras.compression.sizes import dense_float32_bytes

        from dwt_keras.compression import CompressionMetrics

        batch_size = self._choice(hp, "batch_size", self.batch_sizes)
        x_val, y_val = _split_validation(validation_data)
        kwargs.pop("batch_size", None)
        trial_dir = _trial_dir(callbacks)
        wavelet = hp.get("wavelet") if hp.get("wavelet") not in ("identity", "dct") else "haar"
        tb = _trial_tensorboard(self.log_dir, trial_dir, wavelet, hp.get("level"),
                                hp.get("mode"), x_val)
        if epochs > initial_epoch:
            _fit_dense(model, self.spectral, [*(callbacks or []), *tb("dense", model)],
                       x=x, y=y, batch_size=batch_size, epochs=epochs,
                       initial_epoch=initial_epoch, validation_data=(x_val, y_val),
                       verbose=verbose, **kwargs)
        steps = int(math.ceil(len(x) / batch_size)) * self.retrain_epochs
        start = int(model.optimizer.iterations.numpy())
        compression = self._compression_callback(hp, start, steps)
        quantize = hp.get("quantize")
        metrics = [CompressionMetrics(quantize=None if quantize == "none" else quantize)] \
            if self.log_dir else []
        model.fit(x, y, batch_size=batch_size, epochs=self.retrain_epochs,
                  validation_data=(x_val, y_val),
                  callbacks=[compression, *metrics, *_retrain_callbacks(callbacks),
                             *tb("retrain", model)],
                  verbose=verbose, **kwargs)

        with tempfile.TemporaryDirectory() as tmp:
            path = (trial_dir if trial_dir is not None else pathlib.Path(tmp)) / COMPRESSED_FILE
            info = save_compressed(model, path, quantize=None if quantize == "none" else quantize)
            stored = load_compressed(path, attach_state=False)
        stored = _compile(stored, float(hp.get("lr")))
        val_loss, val_acc = stored.evaluate(x_val, y_val, batch_size=256, verbose=0)
        ratio = dense_float32_bytes(model) / float(info["bytes"])
        score = size_aware_score(val_acc, ratio, self.objective, self.min_ratio,
                                 self.tradeoff_weight)
        return {
            "val_score": float(score),
            "val_accuracy": float(val_acc),
            "val_loss": float(val_loss),
            "compression_ratio": float(ratio),
            "compressed_bytes": float(info["bytes"]),
        }


class WMSAHyperModel(keras_tuner.HyperModel):
    """The wavelet multi-scale attention transformer (`dwt_keras.transformer`) search space.

    Args:
        input_shape: `(H, W, C)`.
        num_classes: number of classes.
        widths: candidate embedding widths (each divisible by every head count).
        depths: `(min, max)` blocks.
        heads: candidate head counts.
        levels: candidate DWT levels (`2**J <= min(H, W)` is enforced).
        wavelets: candidate wavelets.
        patch_size: subband patch size (fixed).
        lr_range, weight_decay_range: log-uniform ranges (AdamW).
        batch_sizes: candidate batch sizes (chosen in `fit`).
        log_dir: TensorBoard folder (per trial, with attention maps); see
            `CompressionHyperModel`.
        spectral: a `SpectralSetup`; when enabled, each trial's training sees low-passed
            inputs during the first `truncation_epochs` epochs (see `CompressionHyperModel`).
    """

    def __init__(self, input_shape=(32, 32, 3), num_classes=10, widths=(32, 64, 96),
                 depths=(1, 4), heads=(1, 2, 4), levels=(1, 2, 3), wavelets=("haar", "db2", "db4"),
                 patch_size=2, lr_range=(1e-4, 3e-3), weight_decay_range=(1e-5, 1e-1),
                 batch_sizes=(32, 64, 128), strategy=None, log_dir=None, spectral=None,
                 name="wmsa", tunable=True):
        super().__init__(name=name, tunable=tunable)
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
        self.spectral = spectral

    def build(self, hp):
        from dwt_keras.transformer import WaveletTransformer

        kwargs = dict(
            image_size=self.input_shape[:2], in_channels=self.input_shape[2],
            num_classes=self.num_classes,
            embed_dim=hp.Choice("width", self.widths),
            depth=hp.Int("depth", *self.depths),
            num_heads=hp.Choice("heads", self.heads),
            n_levels=hp.Choice("levels", self.levels, ordered=True),
            wavelet=hp.Choice("wavelet", self.wavelets),
            use_kernel=hp.Boolean("use_kernel", default=True),
            patch_size=self.patch_size,
        )
        lr = hp.Float("lr", *self.lr_range, sampling="log")
        wd = hp.Float("weight_decay", *self.weight_decay_range, sampling="log")
        scope = self.strategy.scope() if self.strategy is not None else _null_scope()
        with scope:
            model = WaveletTransformer(**kwargs)
            model(np.zeros((1, *self.input_shape), np.float32))
            return _compile(model, lr, weight_decay=wd)

    def fit(self, hp, model, x, y=None, validation_data=None, callbacks=None, epochs=1,
            verbose=0, **kwargs):
        batch_size = hp.Choice("batch_size", self.batch_sizes)
        kwargs.pop("batch_size", None)
        x_val, y_val = _split_validation(validation_data)
        tb = _trial_tensorboard(self.log_dir, _trial_dir(callbacks), hp.get("wavelet"),
                                hp.get("levels"), "periodization", x_val)
        _fit_dense(model, self.spectral, [*(callbacks or []), *tb("train", model)], x=x, y=y,
                   batch_size=batch_size, epochs=epochs, validation_data=(x_val, y_val),
                   verbose=verbose, **kwargs)
        val_loss, val_acc = model.evaluate(x_val, y_val, batch_size=256, verbose=0)
        return {"val_accuracy": float(val_acc), "val_loss": float(val_loss),
                "val_score": float(val_acc), "params": float(model.count_params())}


class _null_scope:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
