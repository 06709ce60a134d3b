"""The compression recipe behind `apps/DWT_model.py` (and the tuner's compression trials).

    train dense (selection on the validation split, early stopping)
      -> evaluate on the test split, save the dense .keras model
      -> compress with a schedule (oneshot | iterative | gradual) while retraining with the
         coefficient masks held (early stopping on validation once at the final sparsity)
      -> write the compressed file, reload it, evaluate the *reloaded* model on the test split
      -> sizes, latency, plots, saliency / export of the reloaded model, report.json

Every step but the compression itself is the engine's (`dwt_keras.experiments.run`); the
schedule and the trial's scoring are functions the tuner calls too (`make_schedule`,
`train_dense`, `compress_and_retrain`, `store_and_reload`), so a tuned configuration is what the
app then trains.

Example:

```python
from dwt_keras.experiments.compression import CompressionConfig, run_compression
report = run_compression(CompressionConfig(wavelet="haar", epochs=2, retrain_epochs=2,
                                           keep_ratio=0.05, max_train_samples=2000))
report["compressed"]["compression_ratio"]
```
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings

import keras
import numpy as np

from dwt_keras import wavelets
from dwt_keras.compression import bases, bitwidth, callbacks, constraints, deployment
from dwt_keras.compression import report as rep
from dwt_keras.compression import selection, sizes, storage
from dwt_keras.compression.bases import format_plan, plan_model
from dwt_keras.compression.callbacks import CompressionMetrics
from dwt_keras.compression.storage import load_compressed
from dwt_keras.compression.tensorboard import compression_histograms, compression_scalars
from dwt_keras.evaluation import measure_latency
from dwt_keras.experiments.options import (
    EXPORT_FORMATS,
    RunOptions,
    TrainingOptions,
    validate_common,
)
from dwt_keras.experiments.recipe import Recipe, config_dict
from dwt_keras.experiments.registry import MODELS, build_model
from dwt_keras.experiments.run import FitResult, Selection, machine_info, prepare_model
from dwt_keras.spectral.options import SpectralOptions, spectral_report
from dwt_keras.spectral.setup import spectral_setup
from dwt_keras.training.strategy import describe_strategy
from dwt_keras.utils.options import OptionError, option

__all__ = ["CompressionConfig", "CompressionRecipe", "run_compression", "make_schedule",
           "iterative_ratios", "SCHEDULES"]

SCHEDULES = ("oneshot", "iterative", "gradual")


@dataclasses.dataclass
class CompressionConfig(SpectralOptions, TrainingOptions, RunOptions):
    """Settings of one compression run (the flags of `apps/DWT_model.py` have the same names).

    Besides the shared `RunOptions`, `TrainingOptions` and `SpectralOptions` (spectral truncation
    acts on the dense training's inputs only):

    Extension points (Python only): `extra_callbacks` (appended to both `fit()` calls; in the
    dense phase with `spectral_reg` they still see the plain model), `dense_callbacks` /
    `retrain_callbacks` (one phase only), and `model_fn` (`model_fn(config, info) ->
    keras.Model`, replaces the registry).
    """

    # shared settings with this recipe's defaults
    epochs: int = option(10)
    early_stopping_patience: int = option(
        3, "Early-stopping patience on the validation loss, in the dense training and in the "
        "retraining at the final sparsity (0: off); the best epoch's weights are restored.")
    truncation_epochs: int = option(5)
    # model
    model: str = option("lenet300", "Model: lenet300, lenet5, resnet18, mlp, or any name of "
                        "dwt_keras.experiments.registry.")
    mlp_widths: tuple = option((300, 100), "Hidden widths of --model=mlp.", list_of=int,
                               minimum=1)
    resnet_width: int | None = option(
        None, "Channels of the ResNet's first stage (default: the paper's, 64 for resnet18 and "
        "16 for resnet20).", minimum=1)
    # compression
    wavelet: str = option("haar", "Basis: a discrete wavelet (haar, db4, sym4, coif2, bior2.2, "
                          "...), 'dct', 'identity' (plain magnitude pruning), or 'auto': per "
                          "layer, the basis and view (identity, dct, haar, db2-db4, sym4) that "
                          "does best on the trained weights at the final keep ratio "
                          "(--auto_criterion); report.json's plan[] records the choice.")
    auto_criterion: str = option("loss", "How --wavelet=auto compares bases: loss (the least "
                                 "validation-loss increase when only that layer is pruned, on "
                                 "up to --auto_samples validation images) or energy (the most "
                                 "coefficient energy kept).", choices=("loss", "energy"))
    auto_samples: int = option(1000, "Validation images the loss criterion of --wavelet=auto "
                               "uses.", minimum=1)
    mode: str = option("periodization", "Wavelet signal-extension mode.")
    level: int | None = option(None, "Decomposition level (default: the largest exact level "
                               "per layer).", minimum=1, kind="integer")
    keep_ratio: float | None = option(0.03, "Share of coefficients kept, in (0, 1].",
                                      minimum=0.0, exclusive_minimum=True, maximum=1.0,
                                      kind="float")
    threshold: float | None = option(None, "Keep coefficients with |c| >= threshold instead of a "
                                     "keep ratio (oneshot schedule only; --keep_ratio is then "
                                     "ignored).", minimum=0.0, kind="float")
    scope: str = option("global", "Coefficient ranking scope.", choices=selection.SCOPES)
    keep_approximation: bool = option(False, "Always keep the coarsest approximation band.")
    schedule: str = option("gradual", "oneshot | iterative | gradual.", choices=SCHEDULES)
    retrain_epochs: int = option(5, "Retraining epochs with the masks held.", minimum=0)
    retrain_lr: float | None = option(None, "Learning rate of the retraining (default --lr).",
                                      minimum=0.0, exclusive_minimum=True, kind="float")
    iterative_keep_ratios: tuple | None = option(
        None, "Keep ratios of the iterative stages (default: halving from 0.5 down to "
        "--keep_ratio).", list_of=float, minimum=0.0, exclusive_minimum=True, maximum=1.0)
    max_accuracy_drop: float | None = option(
        None, "Automatic operating point: after the schedule reaches --keep_ratio, keep walking "
        "the keep ratio down (x --stage_factor per stage, masks nested, --stage_epochs of "
        "retraining with the masks held each) and keep the smallest stored file whose "
        "VALIDATION accuracy stays within this many points of the dense model's (e.g. 0.3). "
        "Unset: the fixed --keep_ratio.", minimum=0.0, kind="float")
    stage_factor: float = option(0.8, "Keep ratio of each operating-point stage relative to the "
                                 "previous one.", minimum=0.0, exclusive_minimum=True,
                                 maximum=1.0, exclusive_maximum=True)
    stage_epochs: int = option(2, "Retraining epochs of each operating-point stage.", minimum=1)
    min_keep_ratio: float = option(0.001, "The operating-point walk stops at this keep ratio.",
                                   minimum=0.0, exclusive_minimum=True, maximum=1.0)
    stages_past_bar: int = option(
        0, "Operating-point stages walked after the first one below the bar, for an "
        "accuracy-bytes curve from the same run (report.json's operating_point.stages, with "
        "each stage's test accuracy); they are never chosen.", minimum=0)
    gradual_end_fraction: float = option(0.5, "Share of the retraining steps over which the "
                                         "gradual ramp runs.", minimum=0.0,
                                         exclusive_minimum=True, maximum=1.0)
    gradual_frequency: int | None = option(None, "Steps between mask updates of the gradual "
                                           "schedule (default: about 10 updates).", minimum=1,
                                           kind="integer")
    min_kernel_size: int = option(256, "Kernels with fewer weights stay dense.", minimum=1)
    small_kernel_fallback: str = option(
        bases.DEFAULT_FALLBACK, "Basis for kernels too small for one wavelet level along their "
        "spatial axes: dct (a DCT over the taps), identity, or flatten (a wavelet over the "
        "flattened kernel, which mixes channels).", choices=bases.FALLBACKS)
    layer_overrides: dict | None = option(
        None, "Per-layer plan settings as JSON, e.g. '{\"fc1\": {\"geometry\": [28, 28, 1], "
        "\"level\": 1}, \"logits\": {\"skip\": true}}' (keys: basis, mode, level, geometry, "
        "small_kernel_fallback, skip).", kind="json")
    coefficient_l1: float = option(0.0, "Compressibility training: strength of an L1 penalty on "
                                   "the kernels' coefficients in the compression basis, during "
                                   "dense training and retraining (e.g. 3e-5; 0: off).",
                                   minimum=0.0)
    coefficient_log_sum: float = option(0.0, "Strength of a log-sum penalty on the coefficients "
                                        "(a closer surrogate of their count; 0: off).",
                                        minimum=0.0)
    coefficient_group: float = option(0.0, "Strength of a group-lasso penalty over output units "
                                      "(whole neurons / filters go to zero; report.json's "
                                      "layers[].dead_units lists them; 0: off).", minimum=0.0)
    bn_recalibration_batches: int = option(
        50, "Models with BatchNormalization: after writing the compressed file, re-estimate the "
        "moving statistics of the reloaded (pruned, quantised) model on this many training "
        "batches (augmented as in training) and store them in the file (0: off).", minimum=0)
    # storage
    quantize: str | None = option(storage.DEFAULT_QUANTIZE, "Values of kept coefficients: "
                                  "none | float16 | int8 | kmeans.", choices=storage.QUANTIZERS)
    quant_bits: int = option(storage.DEFAULT_BITS, "Codebook bits for --quantize=kmeans.",
                             minimum=1, maximum=8)
    choose_bits: bool = option(False, "Choose the k-means bits per layer on the validation "
                               "split (the fewest within --bits_tolerance of the exact kept "
                               "coefficients); --quant_bits is then the largest tried.")
    bits_tolerance: float = option(0.001, "Largest validation-accuracy drop (0.001: 0.1 point) "
                                   "that --choose_bits accepts.", minimum=0.0)
    codec: str = option(storage.DEFAULT_CODEC, "Entropy coder of the file.",
                        choices=tuple(storage.CODECS))
    small_weights: str = option(storage.DEFAULT_SMALL_WEIGHTS, "Storage of the weights kept "
                                "dense (biases, small kernels).",
                                choices=("auto", *storage.SMALL_WEIGHTS))
    # serving
    export: str = option("none", "Export the final model: tflite or savedmodel (the "
                         "decompressed model), or litert: the coefficient form as a LiteRT "
                         "file holding only the kept coefficients (int8), measured beside the "
                         "dense float32 .tflite in report.json's deployment block.",
                         choices=(*EXPORT_FORMATS, "litert"))
    serve_form: str = option("dense", "Form the reloaded compressed model is measured in: dense "
                             "(decompressed kernels) or coefficient (only the kept "
                             "coefficients in memory; report.json's deployment block compares "
                             "both).", choices=("dense", "coefficient"))
    retrain_in: str = option("dense", "Where the retraining after the schedule's final mask "
                             "runs: dense (the masks held by a projection after every step) or "
                             "coefficient (only the kept coefficients train).",
                             choices=("dense", "coefficient"))
    # measurement
    latency_batch_size: int = option(32, "Batch size of the latency measurement.", minimum=1)
    latency_repeats: int = option(30, "Timed repeats of the latency measurement (median).",
                                  minimum=1)
    # extension points (Python only)
    dense_callbacks: list = option(default_factory=list, flag=False)
    retrain_callbacks: list = option(default_factory=list, flag=False)
    model_fn: object = option(None, flag=False)

    #: Fields whose names a model builder also takes with another meaning: `wavelet` is the
    #: compression basis here, not W-MSA's tokenizer wavelet (which keeps its default).
    not_model_options = ("wavelet",)

    def validate(self):
        """Checks every setting; raises `OptionError` naming the bad one and the valid choices."""

        if self.quantize is None:
            self.quantize = "none"
        if self.max_train_samples == 0:
            self.max_train_samples = None
        if isinstance(self.mlp_widths, list):
            self.mlp_widths = tuple(self.mlp_widths)
        validate_common(self)
        if self.model_fn is None and self.model not in MODELS:
            raise OptionError("model", f"`model` must be one of {', '.join(sorted(MODELS))}. "
                                       f"Received: model={self.model!r}")
        _named("wavelet", bases.basis_kind, self.wavelet)
        _named("mode", wavelets.validate_mode, self.mode)
        # a redundant extension mode has no idempotent mask: refused before any training
        _named("mode", lambda m: bases.check_exact_mode(self.wavelet, m), self.mode)
        if self.threshold is not None:
            if self.schedule != "oneshot":
                raise OptionError("threshold", "`threshold` works with schedule='oneshot' only "
                                  "(iterative and gradual schedules are defined by keep ratios). "
                                  f"Received: threshold={self.threshold}, "
                                  f"schedule={self.schedule!r}")
        elif self.keep_ratio is None:
            raise OptionError("keep_ratio", "Set one of `keep_ratio` and `threshold`. "
                                            "Received: keep_ratio=None, threshold=None")
        if self.max_accuracy_drop is not None and self.threshold is not None:
            raise OptionError("max_accuracy_drop", "`max_accuracy_drop` walks keep ratios; it "
                              "cannot start from a `threshold`. Received: max_accuracy_drop="
                              f"{self.max_accuracy_drop}, threshold={self.threshold}")
        if self.max_accuracy_drop is not None and not self.validation_split > 0:
            raise OptionError("max_accuracy_drop", "`max_accuracy_drop` selects on the validation "
                              "split: use validation_split > 0. Received: validation_split="
                              f"{self.validation_split}")
        if self.schedule != "oneshot" and self.retrain_epochs < 1:
            raise OptionError("retrain_epochs", f"schedule {self.schedule!r} needs "
                              "retrain_epochs >= 1. "
                              f"Received: retrain_epochs={self.retrain_epochs}")
        if self.layer_overrides is not None and not (
                isinstance(self.layer_overrides, dict)
                and all(isinstance(v, dict) for v in self.layer_overrides.values())):
            raise OptionError("layer_overrides", "`layer_overrides` must be a dict "
                              "{layer: {setting: value}}. "
                              f"Received: layer_overrides={self.layer_overrides!r}")
        _named("spectral_reg", spectral_setup, self)
        check_curriculum(self, self.epochs)
        return self

    @property
    def stored_quantize(self):
        """`quantize` as `save_compressed` takes it (None for float32 values)."""
        return None if self.quantize in (None, "none") else self.quantize


def _named(option_name, check, value):
    """Runs a library check and names the option in its error."""
    try:
        return check(value)
    except OptionError:
        raise
    except ValueError as e:
        raise OptionError(option_name, str(e)) from None


def check_curriculum(config, epochs):
    """A spectral curriculum must end within the dense training's `epochs`.

    A curriculum longer than the training would end it on filtered inputs (with the `linear`
    profile never on the data the model is tested on), so it is refused rather than truncated.
    """
    if config.spectral_reg and int(config.truncation_epochs) > int(epochs):
        raise OptionError(
            "truncation_epochs", "`truncation_epochs` exceeds the dense training epochs: the "
            "spectral curriculum must end within the dense training; lower truncation_epochs or "
            f"raise epochs. Received: truncation_epochs={config.truncation_epochs}, "
            f"epochs={epochs}")


# --------------------------------------------------------------------------------------------
# The pieces the app and the tuner share


def iterative_ratios(config):
    """Keep ratios of the iterative schedule: halving from 0.5 down to ``keep_ratio``."""
    if config.iterative_keep_ratios is not None:
        return [float(r) for r in config.iterative_keep_ratios]
    ratios, r = [], 0.5
    while r > config.keep_ratio * 1.5:
        ratios.append(r)
        r /= 2
    ratios.append(float(config.keep_ratio))
    return ratios


def compression_basis(config, validation_data=None):
    """The basis the callbacks get: the config's name, or for ``auto`` an `AutoBasis` with the
    config's criterion (the loss criterion on the first `auto_samples` validation images)."""
    if not bases.is_auto(config.wavelet):
        return config.wavelet
    if config.auto_criterion == "energy" or validation_data is None \
            or not len(validation_data[0]):
        return bases.AutoBasis(criterion="energy")
    x, y = validation_data
    n = config.auto_samples
    return bases.AutoBasis(criterion="loss", validation_data=(x[:n], y[:n]))


def make_schedule(config, steps_per_epoch, start_step=0, validation_data=None):
    """The schedule callback of the retraining phase.

    Args:
        config: a `CompressionConfig`.
        steps_per_epoch: optimizer steps per retraining epoch.
        start_step: the optimizer step at which the retraining starts (the tuner continues the
            dense training's optimizer).
        validation_data: `(x_val, y_val)`, for ``--wavelet auto``'s loss criterion (without it,
            or with an empty split, auto compares the energy kept).

    Returns:
        `(callback, retrain_epochs, final_sparsity_epoch)`: the epochs the retraining runs and
        the first epoch at the final sparsity (early stopping starts there).
    """

    common = dict(basis=compression_basis(config, validation_data), mode=config.mode,
                  level=config.level,
                  scope=config.scope, keep_approximation=config.keep_approximation,
                  min_kernel_size=config.min_kernel_size, layer_overrides=config.layer_overrides,
                  small_kernel_fallback=config.small_kernel_fallback,
                  verbose=1 if config.verbose else 0)
    if config.schedule == "oneshot":
        cb = callbacks.OneShotCompression(keep_ratio=None if config.threshold is not None
                                          else config.keep_ratio, threshold=config.threshold,
                                          at_step=int(start_step), **common)
        return cb, config.retrain_epochs, 0
    if config.schedule == "iterative":
        ratios = iterative_ratios(config)
        per_stage = max(1, config.retrain_epochs // len(ratios))
        cb = callbacks.IterativeCompression(keep_ratios=ratios, epochs_per_stage=per_stage,
                                            **common)
        epochs = max(config.retrain_epochs, per_stage * len(ratios))
        return cb, epochs, cb.final_stage_epoch()
    total = config.retrain_epochs * steps_per_epoch
    end = max(1, int(round(config.gradual_end_fraction * total)))
    frequency = config.gradual_frequency or max(1, end // 10)
    cb = callbacks.GradualCompression(final_keep=config.keep_ratio, initial_keep=1.0,
                                      begin_step=int(start_step), end_step=int(start_step) + end,
                                      frequency=frequency, **common)
    return cb, config.retrain_epochs, int(math.ceil(end / steps_per_epoch))


def _loss_and_metrics():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True), ["accuracy"]


def build(config, info):
    """The model of the config: `config.model_fn(config, info)` or the registry's."""

    if config.model_fn is not None:
        return config.model_fn(config, info)
    return build_model(config.model, tuple(info["image_shape"]), info["num_classes"],
                       options=config)


def check_plan(config, model):
    """Plans the model before training: unknown layer names in `layer_overrides`, or a model
    without a compressible kernel, fail before any training."""

    try:
        plans = plan_model(model, config.wavelet, mode=config.mode, level=config.level,
                           min_kernel_size=config.min_kernel_size,
                           layer_overrides=config.layer_overrides,
                           small_kernel_fallback=config.small_kernel_fallback, warn=False)
    except ValueError as e:
        raise OptionError("layer_overrides" if "overrid" in str(e) else "wavelet", str(e)) \
            from None
    if not plans:
        raise OptionError("min_kernel_size", f"Model {model.name!r} has no kernel of at least "
                          f"{config.min_kernel_size} weights to compress. "
                          f"Received: min_kernel_size={config.min_kernel_size}")
    return plans


def tensorboard_settings(config, samples=None):
    """`standard_callbacks` keywords of a compression phase (the compression's transform)."""

    # The coefficient maps and histograms need a wavelet; the identity / DCT bases show haar's.
    wavelet = config.wavelet if bases.basis_kind(config.wavelet) == "wavelet" else "haar"
    level = config.level or 2
    return {"sample_images": samples, "wavelet": wavelet, "level": level, "mode": config.mode,
            "extra_scalars": [compression_scalars],
            "histogram_fns": {"coefficients": compression_histograms(wavelet, level,
                                                                     config.mode)}}


def add_penalty(model, config):
    """Compressibility training: the config's coefficient penalties on the compressed kernels
    (`dwt_keras.compression.penalty`), or None when all strengths are 0.

    The penalty is each kernel variable's regularizer, so it is in the loss of the dense
    training and of the retraining (where it follows the compression state's plans), never in
    the saved files. With ``--wavelet auto`` the basis is chosen after the dense training, so
    the dense training penalises DCT coefficients: the DCT is the basis `auto` chose for most
    layers of trained LeNets and ResNets (benchmarks/results/auto_basis.json).

    Returns:
        The report's `compressibility_penalty` block: strengths, basis, layers.
    """
    from dwt_keras.compression.penalty import add_compressibility_penalty

    strengths = {"l1": config.coefficient_l1, "log_sum": config.coefficient_log_sum,
                 "group": config.coefficient_group}
    if not any(strengths.values()):
        return None
    basis = "dct" if bases.is_auto(config.wavelet) else config.wavelet
    penalties = add_compressibility_penalty(
        model, basis=basis, mode=config.mode, level=config.level,
        min_kernel_size=config.min_kernel_size, layer_overrides=config.layer_overrides,
        small_kernel_fallback=config.small_kernel_fallback, warn=False, **strengths)
    return {**strengths, "basis_during_dense_training": basis, "layers": sorted(penalties)}


def train_dense(run, model, config, train, validation, steps_per_epoch, spectral, callbacks=(),
                epochs=None, initial_epoch=0, samples=None):
    """Compiles and trains the dense model (spectral truncation of its inputs when enabled;
    the compressibility penalty when its strengths are set, recorded in ``run.report``).

    Early stopping (`early_stopping_patience` on the validation loss, restoring the best
    weights) starts monitoring after the spectral curriculum, so restored weights always come
    from an epoch trained on unfiltered inputs.
    """
    penalty = add_penalty(model, config)
    if penalty is not None:
        run.report["compressibility_penalty"] = penalty
    loss, metrics = _loss_and_metrics()
    epochs = config.epochs if epochs is None else int(epochs)
    run.compile(model, loss, metrics, steps_per_epoch, epochs)
    start = config.truncation_epochs if spectral.enabled else 0
    selection = Selection("val_loss", "min", patience=config.early_stopping_patience,
                          restore="best_if_stopping", start_from_epoch=start)
    if epochs <= initial_epoch:
        return FitResult({}, 0, None, None, 0.0, [], False, model)
    return run.fit(model, train, validation, epochs, "dense", selection,
                   callbacks=[*config.dense_callbacks, *callbacks],
                   spectral=spectral, initial_epoch=initial_epoch,
                   tensorboard=tensorboard_settings(config, samples))


def compress_and_retrain(run, model, config, train, validation, steps_per_epoch, callbacks=(),
                         start_step=0, samples=None, compile_model=True, validation_data=None):
    """Compresses `model` with the config's schedule while retraining with the masks held.

    With `retrain_in="coefficient"` the schedule runs on the dense model until its final mask
    (the first `final_sparsity_epoch` epochs; a one-shot schedule prunes before the first step),
    then the remaining epochs train only the kept coefficients
    (`dwt_keras.compression.coefficient_domain`), written back into `model` at the end.

    `validation_data` (`(x_val, y_val)`) is what ``--wavelet auto``'s loss criterion scores on.

    Returns:
        `(FitResult or None, retrain_epochs, schedule_callback)`.
    """
    schedule, retrain_epochs, final_epoch = make_schedule(config, steps_per_epoch, start_step,
                                                          validation_data)
    loss, metrics = _loss_and_metrics()
    if compile_model:
        run.compile(model, loss, metrics, steps_per_epoch, retrain_epochs,
                    lr=config.retrain_lr or config.lr)
    cbs = [schedule]
    if config.log_dir:
        cbs.append(CompressionMetrics(
            log_dir=f"{config.log_dir}/{run.log_name}", quantize=config.stored_quantize,
            bits=config.quant_bits, codec=config.codec, small_weights=config.small_weights))
    cbs += [*config.retrain_callbacks, *callbacks]
    selection = Selection("val_loss", "min", patience=config.early_stopping_patience,
                          restore="best_if_stopping", start_from_epoch=final_epoch)
    if retrain_epochs < 1:
        schedule.set_model(model)
        schedule.on_train_begin()
        return None, 0, schedule
    if config.retrain_in == "coefficient":
        return _retrain_in_coefficient_domain(run, model, config, train, validation,
                                              steps_per_epoch, schedule, cbs, retrain_epochs,
                                              final_epoch, samples), retrain_epochs, schedule
    result = run.fit(model, train, validation, retrain_epochs, "retrain", selection,
                     callbacks=cbs, tensorboard=tensorboard_settings(config, samples))
    return result, retrain_epochs, schedule


def _retrain_in_coefficient_domain(run, model, config, train, validation, steps_per_epoch,
                                   schedule, cbs, retrain_epochs, final_epoch, samples):
    """The ramp on the dense model, then the epochs after the final mask on the coefficient
    form; one `FitResult` for both."""
    from dwt_keras.compression import coefficient_domain

    ramp = None
    if final_epoch > 0:
        ramp = run.fit(model, train, validation, final_epoch, "retrain", Selection(restore="last"),
                       callbacks=cbs, tensorboard=tensorboard_settings(config, samples))
    else:  # one-shot: prune before the first step
        schedule.set_model(model)
        schedule.on_train_begin()
    loss, metrics = _loss_and_metrics()
    coefficient_model = coefficient_domain.to_coefficient_domain(model)
    run.compile(coefficient_model, loss, metrics, steps_per_epoch, retrain_epochs,
                lr=config.retrain_lr or config.lr)
    coefficient_model.optimizer.iterations.assign(model.optimizer.iterations)
    rest = run.fit(coefficient_model, train, validation, retrain_epochs, "retrain_coefficient",
                   Selection("val_loss", "min", patience=config.early_stopping_patience,
                             restore="best_if_stopping"),
                   callbacks=list(config.retrain_callbacks), initial_epoch=final_epoch)
    coefficient_domain.copy_coefficients_back(coefficient_model, model)
    model.optimizer.iterations.assign(coefficient_model.optimizer.iterations)
    history = {k: [*(ramp.history.get(k, []) if ramp else []), *v]
               for k, v in rest.history.items()}
    run.report.setdefault("retraining", {}).update(
        domain="coefficient", ramp_epochs=final_epoch,
        coefficient_layers=coefficient_domain.coefficient_domain_record(coefficient_model),
        seconds_ramp=ramp.seconds if ramp else 0.0, seconds_coefficient=rest.seconds)
    return FitResult(history=history, epochs_run=(ramp.epochs_run if ramp else 0) +
                     rest.epochs_run, best_epoch=rest.best_epoch, best_value=rest.best_value,
                     seconds=(ramp.seconds if ramp else 0.0) + rest.seconds,
                     seconds_per_epoch=[*(ramp.seconds_per_epoch if ramp else []),
                                        *rest.seconds_per_epoch],
                     stopped_early=rest.stopped_early, trainer=coefficient_model)


def walk_operating_points(run, model, config, splits, train, validation, steps_per_epoch,
                          dense_val_accuracy):
    """The automatic operating point (`max_accuracy_drop`): the smallest stored file whose
    validation accuracy stays within `max_accuracy_drop` points of the dense model's.

    The model arrives pruned at `keep_ratio` by the schedule (stage 0). Each next stage keeps
    `stage_factor` times the previous stage's coefficients, chosen among the kept ones (the
    masks are nested: pruned coefficients are zero), and retrains `stage_epochs` epochs with
    the masks held. A decaying `lr_schedule` (anything but a constant rate) is restarted over
    each stage at the retraining's rate, since the retraining's schedule has ended (a
    `warmup_cosine` one at 0); a constant rate continues the retraining's optimizer. Every stage
    is stored, reloaded and scored on the VALIDATION split (and, for the record only, on the
    test split); the walk stops at the first stage below the bar, or `stages_past_bar` stages
    after it (a longer accuracy-bytes curve from the same run; stages after the first miss are
    never chosen), or at `min_keep_ratio`. The model ends with the weights and masks of the
    chosen stage.

    Returns:
        The report's `operating_point` block: the bar, every stage (keep ratio, validation and
        test accuracy, bytes, epochs, learning rates) and the chosen one.
    """
    import tempfile

    state = constraints.get_state(model)
    bar = dense_val_accuracy - config.max_accuracy_drop / 100.0
    val_split = _ValidationSplit(splits.x_val, splits.y_val, splits.info)
    restart_schedule = not (config.lr_schedule in ("constant", "none")
                            and config.lr_decay == 1.0)
    stages, best, first_miss, first = [], None, None, None
    keep = float(config.keep_ratio)

    def snapshot():
        return [w.copy() for w in model.get_weights()], state.mask_arrays()

    with tempfile.TemporaryDirectory(dir=run.dir, prefix=".stages-") as tmp:
        for index in range(1000):
            rates = []
            if index:
                run.set_phase(f"operating point: stage {index} (keep {keep:.4g})")
                state.prune(keep_ratio=keep)
                if restart_schedule:
                    loss, metrics = _loss_and_metrics()
                    run.compile(model, loss, metrics, steps_per_epoch, config.stage_epochs,
                                lr=config.retrain_lr or config.lr)
                fit = run.fit(model, train, validation, config.stage_epochs, f"stage{index}",
                              Selection("val_loss", "min",
                                        patience=config.early_stopping_patience,
                                        restore="best_if_stopping"),
                              tensorboard=tensorboard_settings(config))
                rates = [float(r) for r in fit.history.get("learning_rate", [])]
            info, stored = store_and_reload(model, config, f"{tmp}/stage{index}.dwtc",
                                            calibration=train)
            accuracy = float(run.evaluate(stored, val_split)["accuracy"])
            within = accuracy >= bar - 1e-12
            if first_miss is None and not within:
                first_miss = index
            stage = {"stage": index, "keep_ratio": keep, "val_accuracy": accuracy,
                     "test_accuracy": float(run.evaluate(stored, splits)["accuracy"]),
                     "bytes_compressed_file": int(info["bytes"]),
                     "kept_coefficients": int(sum(m.sum() for m in state.mask_arrays().values())),
                     "retrain_epochs": config.retrain_epochs if index == 0 else
                     config.stage_epochs, "learning_rate": rates, "within_bar": within,
                     "past_bar": first_miss is not None and index > first_miss}
            stages.append(stage)
            run.say(f"[operating point] keep {keep:.4g}: validation accuracy {accuracy:.4f} "
                    f"(bar {bar:.4f}), {info['bytes']:,} B"
                    + (" (past the bar: curve only)" if stage["past_bar"] else ""))
            smaller = best is None or \
                stage["bytes_compressed_file"] < best[0]["bytes_compressed_file"]
            keep_best = first_miss is None and smaller
            # one copy of the weights per kept stage; stage 0's is the fallback when no stage
            # is within the bar
            snap = snapshot() if index == 0 or keep_best else None
            if index == 0:
                first = snap
            if keep_best:
                best = (stage, *snap)
            next_keep = keep * config.stage_factor
            if (first_miss is not None and index - first_miss >= config.stages_past_bar) \
                    or next_keep < config.min_keep_ratio:
                break
            keep = next_keep
    chosen, weights, masks = best if best is not None else (stages[0], *first)
    if best is None:
        # Not silent: the file written is then outside what the user asked for.
        run.say(f"[operating point] NOT MET: the first stage (keep {stages[0]['keep_ratio']:.4g})"
                f" already scores {stages[0]['val_accuracy']:.4f} on validation, below the bar "
                f"{bar:.4f}; the stored file is that stage's. Start the walk higher, e.g. "
                f"--keep_ratio={min(1.0, 2 * stages[0]['keep_ratio']):.4g}, or allow a larger "
                "--max_accuracy_drop.")
    model.set_weights(weights)
    state.set_masks(masks, project=False)
    state.keep_ratio = chosen["keep_ratio"]
    return {"max_accuracy_drop_points": config.max_accuracy_drop,
            "dense_val_accuracy": dense_val_accuracy, "val_accuracy_bar": bar,
            "val_images": int(len(splits.x_val)),
            "val_standard_error_points": accuracy_standard_error_points(len(splits.x_val)),
            "stage_factor": config.stage_factor, "stages_past_bar": config.stages_past_bar,
            "schedule_restarted_per_stage": restart_schedule, "stages": stages,
            "chosen_stage": chosen["stage"], "chosen_keep_ratio": chosen["keep_ratio"],
            "met": best is not None,
            "selection": "smallest stored file with VALIDATION accuracy >= the bar, among the "
                         "stages before the first one below it; its TEST metrics are the "
                         "report's compressed block (each stage's test_accuracy is recorded "
                         "for accuracy-bytes curves, never used to choose)"}


#: The standard deviation of one image's correctness at an accuracy of 50 % (its largest), in
#: points: an accuracy on n images has a standard error of at most this / sqrt(n).
_IMAGE_SD_POINTS = 50.0


def accuracy_standard_error_points(n):
    """The largest standard error of an accuracy measured on `n` images, in points (at an
    accuracy of 50 %: `50 / sqrt(n)`; 2.5 points on 400 images)."""
    return _IMAGE_SD_POINTS / math.sqrt(n) if n else math.inf


def validation_noise_warning(max_accuracy_drop, n_val):
    """The warning for an operating-point bar narrower than the validation split can resolve
    (None when it is not): the walk then chooses on noise, and the chosen file can miss the
    bar on the test split although every stage met it on validation."""
    error = accuracy_standard_error_points(n_val)
    if max_accuracy_drop >= error:
        return None
    # the images whose standard error is the bar
    needed = (math.ceil((_IMAGE_SD_POINTS / max_accuracy_drop) ** 2) if max_accuracy_drop > 0
              else None)
    return (f"max_accuracy_drop={max_accuracy_drop:g} points is inside the noise of the "
            f"validation split the operating-point walk selects on: an accuracy on {n_val} "
            f"images has a standard error of up to {error:.1f} points, so the stage chosen can "
            "be below the bar on the test split. Raise --validation_split"
            + (f" (a {max_accuracy_drop:g}-point bar needs about {needed:,} validation images)"
               if needed else "") + " or --max_accuracy_drop.")


@dataclasses.dataclass
class _ValidationSplit:
    """The validation split in the shape `Run.evaluate` reads."""

    x_test: object
    y_test: object
    info: dict


def choose_bits(model, config, splits):
    """`(bits, choice)`: `{layer: bits}` chosen on the VALIDATION split with `choose_bits`
    (`config.choose_bits`), or the config's one width and None."""
    if not (config.choose_bits and config.stored_quantize == "kmeans" and len(splits.x_val)):
        return config.quant_bits, None
    choice = bitwidth.choose_bits(model, splits.x_val, splits.y_val,
                                  tolerance=config.bits_tolerance,
                                  candidates=range(1, config.quant_bits + 1))
    return choice["bits"], choice


def store_and_reload(model, config, path, bits=None, calibration=None):
    """Writes the compressed file and loads it back: `(save_info, reloaded model)`.

    With `calibration` (the training pipeline, augmented as `fit()` sees it) and a model with
    BatchNormalization, the moving statistics are re-estimated on the *reloaded* model (pruned
    and quantised weights: `dwt_keras.training.recalibrate_batchnorm`,
    `bn_recalibration_batches` batches), copied into `model` and the file is written again, so
    the file serves statistics that match its weights; `save_info["batchnorm_recalibration"]`
    records it. The batches must be augmented as in training: the weights were trained with
    the statistics of augmented inputs, and statistics of the clean training images cost the
    CIFAR ResNet-20 of `configs/cifar10_subset_resnet20.cfg` 2.7 points of test accuracy on
    its dense model (67.9 % -> 65.2 %; augmented batches: 67.8 %;
    `benchmarks/bench_no_pruning.py`).
    """
    def save():
        return storage.save_compressed(model, path, quantize=config.stored_quantize,
                                       bits=config.quant_bits if bits is None else bits,
                                       codec=config.codec, small_weights=config.small_weights)

    info = save()
    loaded = storage.load_compressed(path)
    norms = _batchnorm_layers(model)
    if calibration is None or not config.bn_recalibration_batches or not norms:
        return info, loaded
    from dwt_keras.training.batchnorm import recalibrate_batchnorm

    counts = recalibrate_batchnorm(loaded, calibration, batches=config.bn_recalibration_batches,
                                   batch_size=config.batch_size)
    for mine, settled in zip(norms, _batchnorm_layers(loaded)):
        mine.moving_mean.assign(settled.moving_mean)
        mine.moving_variance.assign(settled.moving_variance)
    info = save()
    info["batchnorm_recalibration"] = {
        "batches": config.bn_recalibration_batches, "layers": len(counts),
        "values_per_channel": int(min(counts.values())) if counts else 0,
        "data": "training batches augmented as in training, after quantisation; the file "
                "holds the new statistics"}
    return info, storage.load_compressed(path)


def _batchnorm_layers(model):
    return [l for l in bases._flatten_layers(model)
            if isinstance(l, keras.layers.BatchNormalization)]


# --------------------------------------------------------------------------------------------
# The recipe


class CompressionRecipe(Recipe):
    """`apps/DWT_model.py`: dense training, compression with the masks held, the stored file."""

    name = "compression"
    config_class = CompressionConfig

    def run_prefix(self, config):
        model = config.model if config.model_fn is None else \
            getattr(config.model_fn, "__name__", "model")
        return f"{config.dataset}-{model}-{config.wavelet}"

    def members_file(self, kind):
        return "cv_report.json" if kind == "cv" else "ensemble_report.json"

    def prepare(self, config, splits, environment):
        info = splits.info
        model, build_info = prepare_model(config, environment.strategy,
                                        lambda: build(config, info), info["num_classes"])
        constraints.check_finite_weights(model)
        check_plan(config, model)
        if config.max_accuracy_drop is not None:
            noise = validation_noise_warning(config.max_accuracy_drop, len(splits.x_val))
            if noise:
                warnings.warn(noise, stacklevel=2)
        return {"model": model, "build_info": build_info}

    def train(self, run, splits, prepared):
        c = run.config
        model = prepared["model"]
        run.build_info = prepared["build_info"]
        info = splits.info
        run.say(f"Run folder: {run.dir}")
        train, validation, _ = run.datasets(splits)
        steps = run.steps_per_epoch(len(splits.x_train))
        samples = splits.x_val[:2] if len(splits.x_val) else splits.x_test[:2]

        # ---- dense training (spectral truncation of its inputs when enabled) -------------
        spectral = spectral_setup(c, log_dir=c.log_dir and f"{c.log_dir}/{run.log_name}/dense")
        dense_fit = train_dense(run, model, c, train, validation, steps, spectral,
                                samples=samples)
        constraints.check_finite_weights(model)
        run.set_phase("dense evaluation")
        dense_eval = run.evaluate(model, splits)
        dense_lat = measure_latency(model, splits.x_test, batch_size=c.latency_batch_size,
                                    repeats=c.latency_repeats)
        dense_path = run.save_model(model, "dense_model.keras")
        run.files["dense_model"] = str(dense_path)
        dense = rep.metrics_block(dense_eval, dense_lat)
        dense.update(sizes.size_report(model, keras_path=dense_path))
        dense["weight_zero_fraction"] = rep.weight_zero_fraction(model)
        dense["n_params"] = int(model.count_params())
        if len(splits.x_val):  # the reference of selections on the validation split
            dense["val_accuracy"] = float(run.evaluate(model, _ValidationSplit(
                splits.x_val, splits.y_val, splits.info))["accuracy"])
        dense["epochs_trained"] = dense_fit.epochs_run
        dense_weights = {k: np.asarray(bases.kernel_variable(l).numpy())
                         for k, l in bases.named_layers(model)
                         if bases.kernel_variable(l) is not None}
        run.say(f"Dense model: test accuracy {dense_eval['accuracy']:.4f} "
                f"(n={dense_eval['n']}), {dense['bytes_float32']:,} bytes as float32")
        report = self._report_head(c, info, run, model.name)
        report.update(dense=dense, history={"dense": dense_fit.history},
                      spectral=self._spectral_block(spectral, dense_fit),
                      compressibility_penalty=run.report.get("compressibility_penalty"))
        run.write_report(report)

        # ---- compression + retraining with the masks held --------------------------------
        retrain_fit, retrain_epochs, _ = compress_and_retrain(
            run, model, c, train, validation, steps, samples=samples,
            validation_data=(splits.x_val, splits.y_val))
        if c.max_accuracy_drop is not None:
            report["operating_point"] = walk_operating_points(
                run, model, c, splits, train, validation, steps, dense["val_accuracy"])
            report["keep_ratio"] = report["operating_point"]["chosen_keep_ratio"]
            run.write_report(report)
        state = constraints.get_state(model)
        constraints.check_finite_weights(model)
        hold = state.max_hold_error()

        # ---- the compressed file, reloaded and evaluated --------------------------------
        run.set_phase("writing the compressed file")
        bits, bits_choice = choose_bits(model, c, splits)
        path = run.dir / "compressed_model.dwtc"
        save_info, loaded = run._guard_disk(
            lambda: store_and_reload(model, c, path, bits, calibration=train), path.name)
        run.files["compressed_model"] = str(path)
        run.set_phase("compressed evaluation")
        pruned_eval = run.evaluate(model, splits)
        comp_eval = run.evaluate(loaded, splits)
        comp_lat = measure_latency(loaded, splits.x_test, batch_size=c.latency_batch_size,
                                   repeats=c.latency_repeats)
        layers = state.layer_stats()
        compressed = rep.metrics_block(comp_eval, comp_lat)
        pruned_keras, pruned_keras_zip = sizes.keras_file_bytes(model)
        file_bytes = int(path.stat().st_size)
        compressed.update({
            "coefficient_sparsity": state.coefficient_sparsity(),
            "weight_zero_fraction": rep.weight_zero_fraction(loaded),
            "bytes_compressed_file": file_bytes,
            "compression_ratio": dense["bytes_float32"] / file_bytes,
            "bytes_keras": pruned_keras,
            "bytes_keras_zip": pruned_keras_zip,
            "compression_ratio_vs_keras_zip": pruned_keras_zip / file_bytes,
            "quantize": save_info["quantize"],
            "quant_bits": bits if save_info["quantize"] == "kmeans" else None,
            "bits_choice": bits_choice,
            "codec": c.codec,
            "max_abs_weight_error_from_quantization": save_info["max_abs_weight_error"],
            "pruned_float32_test_accuracy": pruned_eval["accuracy"],
            "pruned_float32_test_loss": pruned_eval["test_loss"],
            "mask_hold": hold,
            "epochs_trained": (retrain_fit.epochs_run if retrain_fit is not None else 0),
            "storage_layers": save_info["layers"],
            "batchnorm_recalibration": save_info.get("batchnorm_recalibration"),
            "byte_breakdown": storage.byte_breakdown(path.read_bytes()),
            "layers": layers,
        })
        if c.serve_form == "coefficient" or c.export == "litert":
            run.set_phase("deployment measurements")
            dense_model = keras.saving.load_model(dense_path, compile=False)
            compressed["deployment"] = report["deployment"] = deployment.deployment_report(
                path, splits.x_test, splits.y_test, dense_model=dense_model,
                litert_dir=run.dir if c.export == "litert" else None)
            for key in ("litert_path", "dense_litert_path"):
                if key in report["deployment"]:
                    run.files[key.replace("_path", "")] = report["deployment"][key]
        report.update(retrain_epochs=retrain_epochs, plan=state.plan_dicts(),
                      dense_layers=state.dense_layer_dicts(),
                      compressed=compressed,
                      levels_used={p.layer: p.level for p in state.plans.values()})
        report["history"]["retrain"] = retrain_fit.history if retrain_fit is not None else {}
        first = next(iter(state.plans.values()))
        report["first_layer_basis"] = first.basis_name
        run.write_report(report)

        # ---- plots ----------------------------------------------------------------------
        if c.plots:
            run.set_phase("plots")
            histories = list(report["history"].items())
            self._plot(run, "training_curves", "training_curves.png",
                       lambda p: rep.plot_training_curves(
                           histories, p, title=f"{c.dataset} / {model.name}: dense, then "
                                               "retraining with masks held"))
            self._plot(run, "layer_sparsity", "layer_sparsity.png",
                       lambda p: rep.plot_layer_sparsity(layers, p))
            self._plot(run, "receptive_fields", "receptive_fields.png",
                       lambda p: rep.plot_receptive_fields(
                           dense_weights[first.layer],
                           np.asarray(state.kernels[first.layer].numpy()),
                           first.to_dict(), p,
                           title=f"{first.layer}: dense (top) vs compressed with "
                                 f"{first.basis_name} (bottom)"))

        # ---- saliency maps and export of the final (decompressed) model -----------------
        # (--export litert is the deployment block's, measured above)
        extras = run.finish(loaded, splits) if c.export != "litert" else \
            run.finish(loaded, splits, export=False)
        if run.build_info.get("transfer"):
            extras["transfer"] = run.build_info["transfer"]
        report["training_extras"] = {"options": _extras_options(c), **extras}
        report["timing_s"] = {"dense_training": dense_fit.seconds,
                              "compression_retraining": (retrain_fit.seconds
                                                         if retrain_fit is not None else 0.0),
                              "total": time.perf_counter() - run.t_start}
        report["distribution"] = describe_strategy(run.strategy)
        report["files"] = run.files
        run.files["report"] = str(run.dir / "report.json")
        rep.validate_report(report)
        if c.verbose:
            print("Per-layer plan:")
            print(format_plan(list(state.plans.values())))
            print(rep.summary_table(report))
        return report

    # ---- report pieces --------------------------------------------------------------------
    @staticmethod
    def _report_head(c, info, run, model_name):
        return {
            "dataset": {k: info[k] for k in ("name", "source", "n_train", "n_val", "n_test")},
            "model": model_name,
            "wavelet": c.wavelet, "mode": c.mode,
            "level": c.level if c.level is not None else "auto",
            "keep_ratio": c.keep_ratio if c.threshold is None else None,
            "threshold": c.threshold, "schedule": c.schedule,
            "selection": {"scope": c.scope, "keep_approximation": c.keep_approximation,
                          "model_selection": "early stopping on the validation split (val_loss)",
                          "evaluation": "test split"},
            "machine": machine_info(), "config": config_dict(c), "files": run.files,
        }

    @staticmethod
    def _spectral_block(spectral, fit):
        hist = fit.history
        return spectral_report(
            spectral.options, hist.get("spectral_tau", []), hist.get("spectral_phase", []),
            apply_to=spectral.apply_to,
            phase="dense training only; validation, test, retraining and the saved models see "
                  "unfiltered inputs",
            early_stopping_from_epoch=spectral.options.truncation_epochs)

    @staticmethod
    def _plot(run, key, name, fn):
        out = run.write_figure(fn, name)
        if out is not None:
            run.files[key] = out

    # ---- folds and members --------------------------------------------------------------
    def member_scalars(self, report):
        c, d = report["compressed"], report["dense"]
        return {"test_accuracy": c["test_accuracy"], "test_loss": c["test_loss"],
                "f1_macro": c["f1_macro"], "compression_ratio": c["compression_ratio"],
                "bytes_compressed_file": c["bytes_compressed_file"],
                "dense_test_accuracy": d["test_accuracy"]}

    def member_model(self, report):
        return load_compressed(report["files"]["compressed_model"], attach_state=False)

    def member_file(self, report):
        return report["files"]["compressed_model"]

    def members_report(self, kind, result, parent, config, splits, reports):
        if kind == "cv":
            return {**result, "run_dir": str(parent.dir),
                    "folds_from": "training split (train + validation parts pooled)"}
        dense_bytes = int(reports[0]["dense"]["bytes_float32"])
        n = len(reports)
        total = result["bytes"]["bytes_total"]
        return {
            "n_members": n, "seeds": result["seeds"], "evaluated_on": "test",
            "test": result["test"], "members": [self.member_scalars(r) for r in reports],
            "bytes": result["bytes"], "bytes_float32_ensemble": dense_bytes * n,
            "compression_ratio": dense_bytes * n / total,
            "compression_ratio_vs_one_dense_model": dense_bytes / total,
            "members_test_accuracy": result["members_test_accuracy"],
            "params": result["params"], "training_extras": result["training_extras"],
            "ensemble_file": result["ensemble_file"], "run_dir": str(parent.dir)}


def _extras_options(config):
    names = ("lr_schedule", "augment", "l1", "l2", "dropout", "batch_norm", "cv_folds",
             "early_stopping_patience", "ensemble", "saliency_images", "init_from", "freeze",
             "export")
    return {n: getattr(config, n) for n in names}


RECIPE = CompressionRecipe()


def run_compression(config, splits=None):
    """Runs the compression recipe (folds / ensemble when the config asks); returns the report.

    Args:
        config: a `CompressionConfig` (validated first: bad settings raise `OptionError`, a
            `ValueError`, before any data is loaded or any folder is created).
        splits: optional `DatasetSplits` to use instead of loading `config.dataset`.
    """
    return RECIPE.execute(config, splits)
