"""The compression experiment behind ``apps/DWT_model.py``, callable from Python.

    train dense (early stopping on the validation split)
      -> evaluate on the test split, save the dense .keras model
      -> compress with a schedule (oneshot | iterative | gradual) while retraining with the
         coefficient masks held (early stopping on validation at the final sparsity)
      -> write the compressed file, reload it, evaluate the *reloaded* model on the test split
      -> sizes, latency, report.json, plots, printed summary

Everything is written into one new run folder under ``save_dir``; bad settings raise
``ValueError`` before any data is loaded or any training starts.

Example:

>>> from dwt_keras.compression.pipeline import CompressionConfig, run_compression_experiment
>>> cfg = CompressionConfig(wavelet="haar", epochs=2, retrain_epochs=2, keep_ratio=0.05,
...                         save_dir="/tmp/runs", max_train_samples=2000)
>>> report = run_compression_experiment(cfg)   # doctest: +SKIP
>>> report["compressed"]["compression_ratio"]    # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import time

import numpy as np

from dwt_keras.spectral.options import SPECTRAL_FIELDS, SpectralOptions, spectral_report  # noqa: F401

SCHEDULES = ("oneshot", "iterative", "gradual")
OPTIMIZERS = ("adam", "sgd", "adamw")


@dataclasses.dataclass
class CompressionConfig(SpectralOptions):
    """Settings of one compression experiment (the app's flags map 1:1 onto these fields).

    Data: ``dataset``, ``data_dir`` (default ``$DWT_KERAS_DATA_DIR``), ``validation_split``,
    ``max_train_samples`` / ``max_eval_samples`` (subsets for quick runs and CI; the report
    records the sizes actually used), ``augment``.

    Model: ``model`` (``lenet300 | lenet5 | resnet18 | mlp``), ``mlp_widths``, ``resnet_width``.

    Dense training: ``epochs``, ``batch_size``, ``lr``, ``optimizer``, ``seed``,
    ``early_stopping_patience`` (0 disables; monitors validation loss and restores the best
    weights), ``jit_compile``.

    Compression: ``wavelet`` (``identity``, ``dct`` or a discrete wavelet), ``mode``, ``level``
    (``None``: largest exact level per layer), ``keep_ratio`` or ``threshold``, ``scope``
    (``global | per_layer``), ``keep_approximation``, ``schedule`` (``oneshot | iterative |
    gradual``), ``retrain_epochs``, ``retrain_lr`` (default ``lr``), ``iterative_keep_ratios``
    (default: halving from 0.5 down to ``keep_ratio``), ``gradual_end_fraction`` (share of the
    retraining steps over which the gradual ramp runs), ``gradual_frequency`` (steps between mask
    updates; default ~10 updates), ``min_kernel_size``, ``small_kernel_fallback``,
    ``layer_overrides``.

    Storage: ``quantize`` (``none | float16 | int8 | kmeans``), ``quant_bits``, ``codec``,
    ``small_weights``.

    Output: ``save_dir``, ``log_dir`` (TensorBoard), ``run_name``, ``latency_batch_size``,
    ``latency_repeats``, ``plots``, ``verbose``.

    Distribution and training extras (`dwt_keras.training`): ``strategy`` (``default |
    mirrored | multi_worker | tpu``; model, optimizer and masks live in its scope),
    ``lr_schedule`` (``constant | step | exponential | cosine | cyclical``, over each phase's
    steps), ``augment`` also accepts ``mnist | cifar | auto`` (Keras preprocessing layers), ``l1``,
    ``l2``, ``dropout``, ``batch_norm``, ``init_from`` / ``freeze`` (start from a ``.keras`` or
    compressed file), ``saliency_images`` and ``export`` (``none | tflite | savedmodel``) of the
    final decompressed model. With ``log_dir`` both phases log the shared TensorBoard set
    (`dwt_keras.training.callbacks.standard_callbacks`).

    Spectral truncation (`dwt_keras.spectral`, ``--spectral_reg`` and its flags, same names):
    ``spectral_reg``, ``tau_init``, ``tau_final``, ``truncation_epochs``, ``mask_profile``,
    ``mask_rolloff``, ``spectral_per_step``. When on, the first ``truncation_epochs`` epochs of
    the *dense* training see low-passed inputs (a `SpectralTrainingModel` around the model, τ set
    by a `TauScheduler`); early stopping only starts monitoring after the curriculum; the
    retraining, validation, test and the saved models see unfiltered inputs and never contain
    the truncation layer (see `fit_dense`).

    Extension points: ``extra_callbacks`` (appended to both ``fit()`` calls; in the dense phase
    with ``spectral_reg`` they still see the plain model, through `PlainModelCallback`),
    ``dense_callbacks`` / ``retrain_callbacks`` (one phase only), and ``model_fn``
    (``model_fn(config, info) -> keras.Model``, replaces the registry).
    """

    # data
    dataset: str = "mnist"
    data_dir: str | None = None
    validation_split: float = 0.1
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    augment: str | None = None
    # model
    model: str = "lenet300"
    mlp_widths: tuple = (300, 100)
    resnet_width: int = 64
    # dense training
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "adam"
    seed: int = 0
    early_stopping_patience: int = 3
    jit_compile: object = "auto"
    # compression
    wavelet: str = "haar"
    mode: str = "periodization"
    level: int | None = None
    keep_ratio: float | None = 0.03
    threshold: float | None = None
    scope: str = "global"
    keep_approximation: bool = False
    schedule: str = "gradual"
    retrain_epochs: int = 5
    retrain_lr: float | None = None
    iterative_keep_ratios: tuple | None = None
    gradual_end_fraction: float = 0.5
    gradual_frequency: int | None = None
    min_kernel_size: int = 256
    small_kernel_fallback: str = "flatten"
    layer_overrides: dict | None = None
    # storage
    quantize: str | None = "kmeans"
    quant_bits: int = 6
    codec: str = "lzma"
    small_weights: str = "float32"
    # output
    save_dir: str = "./saved_models"
    log_dir: str | None = None
    run_name: str | None = None
    latency_batch_size: int = 32
    latency_repeats: int = 30
    plots: bool = True
    verbose: int = 1
    # extension points
    extra_callbacks: list = dataclasses.field(default_factory=list)
    dense_callbacks: list = dataclasses.field(default_factory=list)
    retrain_callbacks: list = dataclasses.field(default_factory=list)
    model_fn: object = None
    # distribution and training extras (dwt_keras.training)
    strategy: str = "default"
    lr_schedule: str = "constant"
    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    batch_norm: bool = False
    init_from: str | None = None
    freeze: bool = False
    saliency_images: int = 0
    export: str = "none"
    # spectral truncation of the dense training's inputs: the other `SpectralOptions` fields
    truncation_epochs: int = 5

    def to_dict(self):
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name in ("extra_callbacks", "dense_callbacks", "retrain_callbacks"):
                v = [type(c).__name__ for c in v]
            elif f.name == "model_fn":
                v = None if v is None else getattr(v, "__name__", repr(v))
            elif isinstance(v, tuple):
                v = list(v)
            out[f.name] = v
        return out


# --------------------------------------------------------------------------- #
# Validation (before anything is loaded or trained)
# --------------------------------------------------------------------------- #
def _pos_int(name, v, allow_zero=False, allow_none=False):
    if v is None and allow_none:
        return
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} "
                         f"integer, got {v!r}.")


def validate_config(config):
    """Checks every setting; raises ``ValueError`` naming the bad one and the valid choices."""
    from dwt_keras import wavelets
    from dwt_keras.compression import bases, selection, storage
    from dwt_keras.models import MODELS

    c = config
    if c.model_fn is None and c.model not in MODELS:
        raise ValueError(f"Unknown model {c.model!r}. Valid models: {sorted(MODELS)}.")
    if not isinstance(c.dataset, str) or not c.dataset:
        raise ValueError(f"dataset must be a non-empty name, got {c.dataset!r}.")
    bases.basis_kind(c.wavelet)
    wavelets.validate_mode(c.mode)
    if c.level is not None:
        _pos_int("level", c.level)
    if c.schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {c.schedule!r}. Valid schedules: {SCHEDULES}.")
    if (c.keep_ratio is None) == (c.threshold is None):
        raise ValueError("Set exactly one of keep_ratio and threshold.")
    if c.keep_ratio is not None:
        selection.validate_keep_ratio(c.keep_ratio)
    if c.threshold is not None:
        selection.validate_threshold(c.threshold)
        if c.schedule != "oneshot":
            raise ValueError("threshold works with schedule='oneshot' only (iterative and "
                             "gradual schedules are defined by keep ratios).")
    if c.iterative_keep_ratios is not None:
        for r in c.iterative_keep_ratios:
            selection.validate_keep_ratio(r, "iterative_keep_ratios entry")
    if c.scope not in selection.SCOPES:
        raise ValueError(f"Unknown scope {c.scope!r}; valid: {selection.SCOPES}.")
    if c.small_kernel_fallback not in bases.FALLBACKS:
        raise ValueError(f"Unknown small_kernel_fallback {c.small_kernel_fallback!r}; "
                         f"valid: {bases.FALLBACKS}.")
    storage._validate_options(c.quantize, c.quant_bits, c.codec, c.small_weights)
    if c.optimizer not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {c.optimizer!r}; valid: {OPTIMIZERS}.")
    _pos_int("epochs", c.epochs, allow_zero=True)
    _pos_int("retrain_epochs", c.retrain_epochs, allow_zero=True)
    if c.schedule != "oneshot" and c.retrain_epochs < 1:
        raise ValueError(f"schedule '{c.schedule}' needs retrain_epochs >= 1.")
    _pos_int("batch_size", c.batch_size)
    _pos_int("early_stopping_patience", c.early_stopping_patience, allow_zero=True)
    _pos_int("max_train_samples", c.max_train_samples, allow_none=True)
    _pos_int("max_eval_samples", c.max_eval_samples, allow_none=True)
    _pos_int("latency_batch_size", c.latency_batch_size)
    _pos_int("latency_repeats", c.latency_repeats)
    _pos_int("min_kernel_size", c.min_kernel_size)
    _pos_int("seed", c.seed, allow_zero=True)
    for name in ("lr", "retrain_lr"):
        v = getattr(c, name)
        if v is None and name == "retrain_lr":
            continue
        if not isinstance(v, (int, float)) or not (v > 0 and math.isfinite(v)):
            raise ValueError(f"{name} must be a positive number, got {v!r}.")
    if not 0.0 <= float(c.validation_split) < 1.0:
        raise ValueError(f"validation_split must be in [0, 1), got {c.validation_split}.")
    if not 0.0 < float(c.gradual_end_fraction) <= 1.0:
        raise ValueError(f"gradual_end_fraction must be in (0, 1], got {c.gradual_end_fraction}.")
    from dwt_keras.training.strategy import STRATEGIES

    if c.strategy not in STRATEGIES:
        raise ValueError(f"Unknown strategy {c.strategy!r}. Valid choices: {STRATEGIES}.")
    training_options(c)  # lr_schedule, augment, l1/l2/dropout, init_from, export, ...
    validate_spectral(c, c.epochs)
    if c.model == "mlp":
        widths = tuple(c.mlp_widths)
        if not widths or any((not isinstance(w, (int, np.integer))) or w < 1 for w in widths):
            raise ValueError(f"mlp_widths must be positive integers, got {c.mlp_widths!r}.")
    return config


def training_options(config):
    """The config's training extras as a validated `dwt_keras.training.flags.TrainingOptions`."""
    from dwt_keras.training.flags import TrainingOptions

    return TrainingOptions(
        lr_schedule=config.lr_schedule, augment=config.augment or "none", l1=config.l1,
        l2=config.l2, dropout=config.dropout, batch_norm=config.batch_norm,
        early_stopping_patience=config.early_stopping_patience,
        saliency_images=config.saliency_images, init_from=config.init_from,
        freeze=config.freeze, export=config.export,
    ).validate()


def spectral_setup(config, log_dir=None):
    """The config's spectral truncation as a `dwt_keras.spectral.flags.SpectralSetup`.

    ``config`` is anything with the `SPECTRAL_FIELDS` attributes (a `CompressionConfig`, absl
    ``FLAGS``, a tuner's `SearchConfig`). Raises ``ValueError`` for τ outside (0, 1],
    ``tau_final < tau_init``, negative ``truncation_epochs`` or an unknown ``mask_profile``,
    whether or not ``spectral_reg`` is on (a typo should not wait for the flag to be switched).
    """
    from dwt_keras.spectral.flags import spectral_from_flags

    return spectral_from_flags(config, log_dir=log_dir or None)


def validate_spectral(config, epochs):
    """`spectral_setup` checks plus: the curriculum must fit in the ``epochs`` of dense training.

    A curriculum longer than the training would end it on filtered inputs (with the ``linear``
    profile never on the data the model is tested on), so it is refused rather than truncated.
    """
    setup = spectral_setup(config)
    if setup.enabled and int(config.truncation_epochs) > int(epochs):
        raise ValueError(
            f"truncation_epochs ({config.truncation_epochs}) exceeds the dense training epochs "
            f"({epochs}): the spectral curriculum must end within the dense training; lower "
            "--truncation_epochs or raise --epochs.")
    return setup


def spectral_record(setup, history=None):
    """The report's ``spectral`` block: the settings and, per dense epoch, τ and the phase."""
    hist = {} if history is None else history.history
    return spectral_report(
        setup.options, hist.get("spectral_tau", []), hist.get("spectral_phase", []),
        apply_to=setup.apply_to,
        phase="dense training only; validation, test, retraining and the saved models see "
              "unfiltered inputs",
        early_stopping_from_epoch=setup.options.truncation_epochs)


def wrap_compiled(spectral, model, metrics=("accuracy",), jit_compile="auto"):
    """``spectral.wrap(model)`` compiled with ``model``'s own optimizer and loss.

    Call inside the strategy scope (the truncation layer creates variables). The optimizer object
    is shared, so the wrapper's updates are the plain model's optimizer state (saved with it,
    continued by a later ``fit`` of the plain model). Returns ``model`` when spectral truncation
    is off.
    """
    trainer = spectral.wrap(model)
    if trainer is not model:
        trainer.compile(optimizer=model.optimizer, loss=model.loss, metrics=list(metrics),
                        jit_compile=jit_compile)
    return trainer


def fit_dense(model, config, train_ds, val_ds, lr, strategy=None, callbacks=(), spectral=None,
              verbose=None):
    """Compiles and trains ``model`` (the dense phase), with spectral truncation when enabled.

    With ``spectral.enabled`` a `SpectralTrainingModel` sharing ``model``'s variables is
    compiled and fitted instead, with the `TauScheduler` added to ``callbacks``: its
    ``train_step`` low-passes each training batch, while validation runs the plain model on the
    data as given. ``model`` itself is trained in place and stays free of the truncation layer, so
    it can be compressed, saved and exported as the plain classifier; ``callbacks`` are run
    through `PlainModelCallback`, so they see ``model`` too. Early stopping (from
    ``config``) starts monitoring after the curriculum, so restored weights always come from an
    epoch trained on unfiltered inputs (with ``truncation_epochs == epochs`` nothing is
    restored: the last epoch's weights are kept).

    Args:
        model: the (uncompiled or compiled) plain model.
        config: a `CompressionConfig` (optimizer, jit, early stopping, epochs).
        train_ds, val_ds: the datasets (``val_ds`` may be None).
        lr: learning rate or schedule.
        strategy: the `tf.distribute` strategy holding the variables (optional).
        callbacks: further callbacks (TensorBoard, the caller's).
        spectral: a `SpectralSetup` (default: ``spectral_setup(config)``).
        verbose: Keras verbosity (default: 2 if ``config.verbose`` else 0).

    Returns:
        The Keras ``History`` (``spectral_tau`` / ``spectral_phase`` per epoch when enabled), or
        None when ``config.epochs`` is 0.
    """
    import contextlib

    import keras

    spectral = spectral_setup(config) if spectral is None else spectral
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        compile_model(model, config, lr)
        trainer = wrap_compiled(spectral, model, jit_compile=config.jit_compile)
    if config.epochs <= 0:
        return None
    start = 0
    callbacks = list(callbacks)
    if spectral.enabled:
        from dwt_keras.spectral.wrapper import PlainModelCallback

        start = spectral.callbacks[0].truncation_epochs
        # The caller's callbacks (TensorBoard images, checkpoints, ...) see the plain model.
        callbacks = [*spectral.callbacks, *(PlainModelCallback(cb, model) for cb in callbacks)]
    return trainer.fit(
        train_ds, validation_data=val_ds, epochs=config.epochs,
        callbacks=[keras.callbacks.TerminateOnNaN(),
                   *_early_stopping(config, val_ds is not None, start_from_epoch=start),
                   *callbacks],
        verbose=(2 if config.verbose else 0) if verbose is None else verbose,
    )


# --------------------------------------------------------------------------- #
# Building blocks (each usable on its own)
# --------------------------------------------------------------------------- #
def load_data(config):
    """Loads the splits (subsetting for quick runs). Unknown datasets raise ``ValueError``."""
    from dwt_keras import data

    try:
        splits = data.load_arrays(config.dataset, data_dir=config.data_dir,
                                  validation_split=config.validation_split, seed=config.seed)
    except FileNotFoundError as e:
        raise ValueError(f"Unknown or unavailable dataset {config.dataset!r}: {e}") from e
    info = dict(splits.info)
    if config.max_train_samples is not None and config.max_train_samples < len(splits.x_train):
        n = config.max_train_samples
        splits.x_train, splits.y_train = splits.x_train[:n], splits.y_train[:n]
        info["n_train"], info["subset_train"] = n, True
    if config.max_eval_samples is not None:
        n = config.max_eval_samples
        if n < len(splits.x_val):
            splits.x_val, splits.y_val = splits.x_val[:n], splits.y_val[:n]
            info["n_val"], info["subset_val"] = n, True
        if n < len(splits.x_test):
            splits.x_test, splits.y_test = splits.x_test[:n], splits.y_test[:n]
            info["n_test"], info["subset_test"] = n, True
    splits.info = info
    return splits


def build_model_for(config, info):
    """The model named by the config (or ``config.model_fn(config, info)``)."""
    from dwt_keras.models import build_model

    if config.model_fn is not None:
        return config.model_fn(config, info)
    kwargs = {}
    if config.model == "mlp":
        kwargs["widths"] = tuple(config.mlp_widths)
    elif config.model == "resnet18":
        kwargs["width"] = int(config.resnet_width)
    return build_model(config.model, tuple(info["image_shape"]), info["num_classes"], **kwargs)


def make_optimizer(name, lr):
    import keras

    return {"adam": keras.optimizers.Adam, "sgd": lambda learning_rate: keras.optimizers.SGD(
        learning_rate=learning_rate, momentum=0.9), "adamw": keras.optimizers.AdamW}[name](
        learning_rate=lr)


def compile_model(model, config, lr):
    import keras

    model.compile(
        optimizer=make_optimizer(config.optimizer, lr),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        jit_compile=config.jit_compile,
    )
    return model


def _early_stopping(config, has_val, start_from_epoch=0):
    import keras

    if not has_val or config.early_stopping_patience <= 0:
        return []
    return [keras.callbacks.EarlyStopping(
        monitor="val_loss", patience=config.early_stopping_patience,
        restore_best_weights=True, start_from_epoch=start_from_epoch,
        verbose=1 if config.verbose else 0)]


def iterative_ratios(config):
    """Keep ratios of the iterative schedule: halving from 0.5 down to ``keep_ratio``."""
    if config.iterative_keep_ratios is not None:
        ratios = [float(r) for r in config.iterative_keep_ratios]
    else:
        ratios, r = [], 0.5
        while r > config.keep_ratio * 1.5:
            ratios.append(r)
            r /= 2
        ratios.append(float(config.keep_ratio))
    return ratios


def make_schedule(config, steps_per_epoch):
    """The schedule callback for the retraining phase and the first epoch at final sparsity.

    Returns:
        ``(callback, retrain_epochs, final_sparsity_epoch)``.
    """
    from dwt_keras.compression import callbacks

    common = dict(basis=config.wavelet, mode=config.mode, level=config.level, scope=config.scope,
                  keep_approximation=config.keep_approximation,
                  min_kernel_size=config.min_kernel_size, layer_overrides=config.layer_overrides,
                  small_kernel_fallback=config.small_kernel_fallback, verbose=config.verbose)
    if config.schedule == "oneshot":
        cb = callbacks.OneShotCompression(keep_ratio=config.keep_ratio, threshold=config.threshold,
                                          at_step=0, **common)
        return cb, config.retrain_epochs, 0
    if config.schedule == "iterative":
        ratios = iterative_ratios(config)
        eps = max(1, config.retrain_epochs // len(ratios))
        cb = callbacks.IterativeCompression(keep_ratios=ratios, epochs_per_stage=eps, **common)
        epochs = max(config.retrain_epochs, eps * len(ratios))
        return cb, epochs, cb.final_stage_epoch()
    total = config.retrain_epochs * steps_per_epoch
    end = max(1, int(round(config.gradual_end_fraction * total)))
    freq = config.gradual_frequency or max(1, end // 10)
    cb = callbacks.GradualCompression(final_keep=config.keep_ratio, initial_keep=1.0,
                                      begin_step=0, end_step=end, frequency=freq, **common)
    return cb, config.retrain_epochs, int(math.ceil(end / steps_per_epoch))


def _tensorboard(config, run_dir, phase, model=None, sample_images=None):
    """The shared TensorBoard set (scalars, receptive fields, coefficient maps, histograms)."""
    from dwt_keras.compression import bases
    from dwt_keras.training.callbacks import standard_callbacks

    if not config.log_dir:
        return []
    # The coefficient maps and histograms need a wavelet; the identity / DCT bases show haar's.
    wavelet = config.wavelet if bases.basis_kind(config.wavelet) == "wavelet" else "haar"
    return standard_callbacks(os.path.join(config.log_dir, run_dir.name, phase), model,
                              sample_images=sample_images, wavelet=wavelet,
                              level=config.level or 2, mode=config.mode)


def _history_dict(history):
    if history is None:
        return {}
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


def _machine():
    import keras
    import tensorflow as tf

    from dwt_keras.utils.machine import cpu_model

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "tensorflow": tf.__version__, "keras": keras.__version__,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


# --------------------------------------------------------------------------- #
# The experiment
# --------------------------------------------------------------------------- #
def run_compression_experiment(config, splits=None):
    """Runs the whole experiment and returns the report dict (also written as report.json).

    Args:
        config: a `CompressionConfig`.
        splits: optional `DatasetSplits` to use instead of loading `config.dataset` (the folds
            of `--cv_folds`).

    Returns:
        The report (see `dwt_keras.compression.report` for the schema); ``report["files"]``
        holds the paths written in the run folder.
    """
    import keras

    from dwt_keras.compression import constraints, report as rep, sizes, storage
    from dwt_keras.evaluation import evaluate_classifier, measure_latency
    from dwt_keras.utils import io as uio
    from dwt_keras.utils.seeding import set_seed

    from dwt_keras import data as data_module
    from dwt_keras.training import extras
    from dwt_keras.training.strategy import describe_strategy, get_strategy

    t_start = time.perf_counter()
    validate_config(config)
    opts = training_options(config)
    uio.check_writable_dir(config.save_dir)
    strategy = get_strategy(config.strategy)
    set_seed(config.seed)
    splits = load_data(config) if splits is None else splits
    info = splits.info
    model = extras.prepare_model(lambda: build_model_for(config, info), opts, strategy,
                                 info["num_classes"])
    constraints.check_finite_weights(model)
    # Plan once before training: unknown layer names in layer_overrides, or a model without a
    # compressible kernel, fail here rather than after the dense training.
    from dwt_keras.compression.bases import plan_model

    if not plan_model(model, config.wavelet, mode=config.mode, level=config.level,
                      min_kernel_size=config.min_kernel_size,
                      layer_overrides=config.layer_overrides,
                      small_kernel_fallback=config.small_kernel_fallback, warn=False):
        raise ValueError(f"Model '{model.name}' has no kernel of at least "
                         f"{config.min_kernel_size} weights to compress.")

    prefix = config.run_name or f"{config.dataset}-{model.name}-{config.wavelet}"
    run_dir = uio.make_run_dir(config.save_dir, prefix)
    files = {}
    say = print if config.verbose else (lambda *a, **k: None)
    say(f"Run folder: {run_dir}")

    from dwt_keras.data import make_datasets

    # crop_flip is dwt_keras.data's tf.image recipe; mnist / cifar / auto are Keras layers.
    data_augment = config.augment if config.augment in data_module.AUGMENTATIONS else None
    train_ds, val_ds, _ = make_datasets(splits, batch_size=config.batch_size, seed=config.seed,
                                        augment=data_augment)
    if data_augment is None:
        train_ds = extras.augment_train_dataset(train_ds, opts, info["image_shape"], config.seed)
    steps_per_epoch = int(math.ceil(len(splits.x_train) / config.batch_size))
    samples = splits.x_val[:2] if len(splits.x_val) else splits.x_test[:2]

    # ---- dense training (spectral truncation of its inputs when enabled) ---
    spectral = spectral_setup(config, log_dir=config.log_dir and os.path.join(
        config.log_dir, run_dir.name, "dense"))
    t0 = time.perf_counter()
    dense_history = fit_dense(
        model, config, train_ds, val_ds, strategy=strategy,
        lr=extras.learning_rate(opts, config.lr, len(splits.x_train), config.batch_size,
                                config.epochs),
        callbacks=[*_tensorboard(config, run_dir, "dense", model, samples),
                   *config.extra_callbacks, *config.dense_callbacks],
        spectral=spectral)
    dense_train_s = time.perf_counter() - t0
    constraints.check_finite_weights(model)

    class_names = info.get("class_names")
    dense_eval = evaluate_classifier(model, splits.x_test, splits.y_test, class_names=class_names)
    dense_lat = measure_latency(model, splits.x_test, batch_size=config.latency_batch_size,
                                repeats=config.latency_repeats)
    dense_path = run_dir / "dense_model.keras"
    sizes.save_keras_atomic(model, dense_path)
    files["dense_model"] = str(dense_path)
    dense_block = rep.metrics_block(dense_eval, dense_lat)
    dense_block.update(sizes.size_report(model, keras_path=dense_path))
    dense_block["weight_zero_fraction"] = rep.weight_zero_fraction(model)
    dense_block["n_params"] = int(model.count_params())
    dense_weights = {l.name: np.asarray(l.kernel.numpy()) for l in model.layers
                     if getattr(l, "kernel", None) is not None}
    say(f"Dense model: test accuracy {dense_eval['accuracy']:.4f} "
        f"(n={dense_eval['n']}), {dense_block['bytes_float32']:,} bytes as float32")

    # ---- compression + retraining with the masks held ---------------------
    schedule_cb, retrain_epochs, final_epoch = make_schedule(config, steps_per_epoch)
    with strategy.scope():
        compile_model(model, config, extras.learning_rate(
            opts, config.retrain_lr or config.lr, len(splits.x_train), config.batch_size,
            retrain_epochs))
    retrain_cbs = [schedule_cb]
    if config.log_dir:
        from dwt_keras.compression.callbacks import CompressionMetrics

        retrain_cbs.append(CompressionMetrics(
            log_dir=os.path.join(config.log_dir, run_dir.name), quantize=config.quantize,
            bits=config.quant_bits, codec=config.codec, small_weights=config.small_weights))
    retrain_cbs += [keras.callbacks.TerminateOnNaN(),
                    *_early_stopping(config, val_ds is not None, start_from_epoch=final_epoch),
                    *_tensorboard(config, run_dir, "retrain", model, samples),
                    *config.extra_callbacks,
                    *config.retrain_callbacks]
    t0 = time.perf_counter()
    retrain_history = None
    if retrain_epochs > 0:
        retrain_history = model.fit(train_ds, validation_data=val_ds, epochs=retrain_epochs,
                                    callbacks=retrain_cbs, verbose=2 if config.verbose else 0)
    else:
        schedule_cb.set_model(model)
        schedule_cb.on_train_begin()
    retrain_s = time.perf_counter() - t0
    state = constraints.get_state(model)
    constraints.check_finite_weights(model)
    hold = state.max_hold_error()

    # ---- the compressed file, reloaded and evaluated -----------------------
    comp_path = run_dir / "compressed_model.dwtc"
    save_info = storage.save_compressed(model, comp_path, quantize=config.quantize,
                                        bits=config.quant_bits, codec=config.codec,
                                        small_weights=config.small_weights)
    files["compressed_model"] = str(comp_path)
    pruned_eval = evaluate_classifier(model, splits.x_test, splits.y_test, class_names=class_names)
    loaded = storage.load_compressed(comp_path)
    comp_eval = evaluate_classifier(loaded, splits.x_test, splits.y_test, class_names=class_names)
    comp_lat = measure_latency(loaded, splits.x_test, batch_size=config.latency_batch_size,
                               repeats=config.latency_repeats)
    layers = state.layer_stats()
    comp_block = rep.metrics_block(comp_eval, comp_lat)
    pruned_keras, pruned_keras_zip = sizes.keras_file_bytes(model)
    comp_block.update({
        "coefficient_sparsity": state.coefficient_sparsity(),
        "weight_zero_fraction": rep.weight_zero_fraction(loaded),
        "bytes_compressed_file": int(comp_path.stat().st_size),
        "compression_ratio": dense_block["bytes_float32"] / comp_path.stat().st_size,
        "bytes_keras": pruned_keras,
        "bytes_keras_zip": pruned_keras_zip,
        "compression_ratio_vs_keras_zip": pruned_keras_zip / comp_path.stat().st_size,
        "quantize": save_info["quantize"],
        "quant_bits": config.quant_bits if save_info["quantize"] == "kmeans" else None,
        "codec": config.codec,
        "max_abs_weight_error_from_quantization": save_info["max_abs_weight_error"],
        "pruned_float32_test_accuracy": pruned_eval["accuracy"],
        "pruned_float32_test_loss": pruned_eval["test_loss"],
        "mask_hold": hold,
        "storage_layers": save_info["layers"],
        "layers": layers,
    })

    # ---- plots --------------------------------------------------------------
    histories = [("dense", _history_dict(dense_history)), ("retrain", _history_dict(retrain_history))]
    if config.plots:
        files["training_curves"] = str(rep.plot_training_curves(
            histories, run_dir / "training_curves.png",
            title=f"{config.dataset} / {model.name}: dense, then retraining with masks held"))
        files["layer_sparsity"] = str(rep.plot_layer_sparsity(layers, run_dir / "layer_sparsity.png"))
        first = next(iter(state.plans.values()))
        rf = rep.plot_receptive_fields(
            dense_weights[first.layer], np.asarray(state.layers[first.layer].kernel.numpy()),
            first.to_dict(), run_dir / "receptive_fields.png",
            title=f"{first.layer}: dense (top) vs compressed with {first.basis_name} (bottom)")
        if rf is not None:
            files["receptive_fields"] = str(rf)

    # ---- saliency maps and export of the final (decompressed) model --------
    extras_out = extras.finish_run(opts, loaded, splits, run_dir)
    if getattr(model, "_dwt_transfer", None):
        extras_out["transfer"] = model._dwt_transfer
    for item in extras_out.get("saliency", {}).get("files", []):
        files.setdefault("saliency", []).append(item)
    if "export" in extras_out:
        files["export"] = extras_out["export"]["path"]

    first_plan = next(iter(state.plans.values()))
    report = {
        "dataset": {k: info[k] for k in ("name", "source", "n_train", "n_val", "n_test")},
        "model": model.name,
        "wavelet": config.wavelet,
        "mode": config.mode,
        "level": config.level if config.level is not None else "auto",
        "levels_used": {p.layer: p.level for p in state.plans.values()},
        "keep_ratio": config.keep_ratio,
        "threshold": config.threshold,
        "schedule": config.schedule,
        "retrain_epochs": retrain_epochs,
        "selection": {"scope": config.scope, "keep_approximation": config.keep_approximation,
                      "model_selection": "early stopping on the validation split (val_loss)",
                      "evaluation": "test split"},
        "plan": state.plan_dicts(),
        "dense": dense_block,
        "compressed": comp_block,
        "history": {k: v for k, v in histories},
        "timing_s": {"dense_training": dense_train_s, "compression_retraining": retrain_s,
                     "total": time.perf_counter() - t_start},
        "machine": _machine(),
        "config": config.to_dict(),
        "first_layer_basis": first_plan.basis_name,
        "distribution": describe_strategy(strategy),
        "spectral": spectral_record(spectral, dense_history),
        "training_extras": {"options": opts.to_dict(), **extras_out},
        "files": files,
    }
    files["report"] = str(run_dir / "report.json")
    rep.validate_report(report)
    uio.atomic_write_json(run_dir / "report.json", report)
    summary = rep.summary_table(report)
    if config.verbose:
        print("Per-layer plan:")
        from dwt_keras.compression.bases import format_plan

        print(format_plan(list(state.plans.values())))
        print(summary)
    report["run_dir"] = str(run_dir)
    return report
