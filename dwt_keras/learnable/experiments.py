"""The experiments of Wolter, Lin & Yao (ICANN 2020) as library functions.

* `run_mnist`: the paper's MNIST CNN with a dense, Fastfood or learnable-wavelet `fc1`.
* `run_sequence_task`: the adding and copy-memory problems (data generated on the fly) and
  sequential (pixel-by-pixel) MNIST, with a GRU, a wavelet GRU or a Fastfood GRU.

Every run trains on the training split, selects the epoch with the best validation metric
(weights restored), evaluates once on the test split and writes, into a new run folder,
`report.json`, the saved model (`model.keras`) and, for wavelet layers, a plot of the learned
filters and their frequency responses. `apps/learnable_wavelet.py` is a thin absl front end.

Spectral truncation (`spectral_reg`, see `dwt_keras.spectral`) low-passes the *training* images
of the image experiments (`mnist`, and `smnist`, where the 28x28 picture is filtered before it is
read out pixel by pixel: `SequenceImageTruncation`); validation, test and the saved model see
unfiltered data. The adding and copy problems have no images and refuse it.

The shared training extras (`dwt_keras.training`) map onto `ExperimentConfig` fields of the same
names as the app's flags:

* `lr_schedule`: `"constant"` keeps the experiment's own per-epoch step decay `lr_decay`; any
  other schedule replaces it (with `lr_decay < 1` as well the config is rejected as ambiguous).
* `early_stopping_patience`: stop when the validation metric used for model selection (mnist and
  smnist: `val_accuracy`, adding: `val_adding_accuracy`, copy: `val_loss`) has not improved for
  N epochs; the best epoch's weights are restored either way. With spectral truncation it starts
  counting (and selecting) once the truncation epochs are over.
* `augment` (mnist, smnist: on the image before serialisation), `saliency_images` (mnist),
  `cv_folds` and `ensemble` (mnist): the other experiments refuse them.
* `l1`, `l2`: a kernel penalty on every Dense/Conv layer (mnist: conv1, conv2, fc2 and a dense
  fc1; the sequence models: the read-out). Structured layers (`WaveletDense`, `FastfoodDense`,
  the wavelet / Fastfood / Keras GRU cells) carry no kernel penalty: they have no dense kernel
  (the wavelet layer keeps its own wavelet loss). `report["regularization"]` lists which layers
  are penalised.
* `dropout`, `batch_norm`: inserted after every hidden Dense/Conv layer (mnist: conv1, conv2 and a
  dense fc1; not after a structured fc1). The sequence models have no hidden Dense/Conv layer
  and refuse them.
* `init_from` (+ `freeze`: train only the head, fc2 / the read-out), all experiments; the loaded
  model's input shape must match the task's.
* `export` (`tflite` | `savedmodel`): the MNIST CNNs export to both (custom layers included);
  the GRU models export as SavedModel, while the TFLite converter rejects their recurrent loop
  (`tf.TensorListReserve` needs a static element shape) - the failure is recorded in
  `report["export"]["error"]` after training instead of crashing the run.
"""

import dataclasses
import json
import os
import platform
import time

import keras
import numpy as np

from dwt_keras.learnable.fastfood import FastfoodDense
from dwt_keras.learnable.recurrent import GATES
from dwt_keras.learnable.recurrent import FastfoodGRU
from dwt_keras.learnable.recurrent import WaveletGRU
from dwt_keras.learnable.recurrent import WaveletGRUCell
from dwt_keras.learnable.recurrent import parse_compress
from dwt_keras.learnable.wavelet_dense import WaveletDense
from dwt_keras.spectral.flags import spectral_from_flags
from dwt_keras.spectral.options import SpectralOptions, spectral_report
from dwt_keras.spectral.truncation import SpectralTruncation
from dwt_keras.spectral.wrapper import SpectralTrainingModel
from dwt_keras.training.callbacks import standard_callbacks
from dwt_keras.training.flags import TrainingOptions
from dwt_keras.training.strategy import STRATEGIES
from dwt_keras.training.strategy import get_strategy
from dwt_keras.training.strategy import mixed_precision_policy

EXPERIMENTS = ("mnist", "adding", "copy", "smnist")
IMAGE_EXPERIMENTS = ("mnist", "smnist")  # the inputs are images (smnist: read as a sequence)
FC1_CHOICES = ("dense", "wavelet", "fastfood")
RNN_CHOICES = ("gru", "wavelet", "fastfood")
OPTIMIZERS = ("adadelta", "adam", "rmsprop", "sgd")
COPY_DIGITS = 10  # length of the sequence to remember in the copy task
COPY_CATEGORIES = 10  # 0 blank, 1..8 symbols, 9 delimiter


# Per-experiment defaults of the settings whose good values differ between the image and the
# sequence tasks (the app applies them to flags the user did not set). MNIST: the paper's
# Adadelta schedule; sequence tasks: RMSprop with gradient clipping (Arjovsky et al. 2016).
EXPERIMENT_DEFAULTS = {
    "mnist": {
        "optimizer": "adadelta", "lr": 1.0, "lr_decay": 0.8, "batch_size": 64, "epochs": 20, "clipnorm": 0.0,
        "levels": 6,
    },
    "adding": {"optimizer": "rmsprop", "lr": 1e-3, "lr_decay": 1.0, "batch_size": 50, "epochs": 10, "clipnorm": 0.0},
    "copy": {"optimizer": "rmsprop", "lr": 1e-3, "lr_decay": 1.0, "batch_size": 50, "epochs": 10, "clipnorm": 0.0},
    "smnist": {
        "optimizer": "rmsprop", "lr": 1e-3, "lr_decay": 1.0, "batch_size": 64, "epochs": 100, "clipnorm": 1.0,
        "hidden": 58,
    },
}


@dataclasses.dataclass
class ExperimentConfig(SpectralOptions, TrainingOptions):
    """Everything an experiment run varies (the app's flags map onto these fields).

    Attributes:
        experiment: `"mnist"`, `"adding"`, `"copy"` or `"smnist"`.
        fc1: MNIST CNN `fc1`: `"dense"`, `"wavelet"` or `"fastfood"`.
        dense_units: width of the dense `fc1` (the paper: 500).
        rnn: recurrent layer of the sequence tasks: `"gru"`, `"wavelet"` or `"fastfood"`.
        hidden: GRU hidden size.
        compress: GRU recurrent matrices made structured (subset of update, reset, state).
        levels, filter_length, init_wavelet, wavelet_loss_weight: `WaveletDense` arguments
            (`levels=None`: the deepest allowed).
        seq_len: `T` of the adding / copy problems.
        steps_per_epoch: batches per epoch for the generated sequence tasks.
        n_val, n_test: sizes of the generated validation / test sets.
        train_samples: use only the first N training images (0: all); for quick checks.
        dataset, data_dir: image data (`dwt_keras.data.load_arrays`).
        validation_split: share of the training images held out for model selection.
        epochs, batch_size, lr, optimizer, lr_decay (per-epoch multiplicative step decay),
            clipnorm (0: none), seed.
        save_dir: parent folder of the run folder; log_dir: TensorBoard folder (None: off).
        strategy: a `dwt_keras.training.strategy.STRATEGIES` name; mixed_precision: bfloat16 compute on CPU,
            float16 on GPU.
        plot: write the filter / frequency-response figure.
        verbose: Keras `fit` verbosity.
        spectral_reg, tau_init, tau_final, truncation_epochs, mask_profile, mask_rolloff,
            spectral_per_step: spectral truncation of the training images (image experiments
            only; `dwt_keras.spectral.flags.define_spectral_flags` documents each).
        lr_schedule, early_stopping_patience, augment, l1, l2, dropout, batch_norm, cv_folds,
            ensemble, saliency_images, init_from, freeze, export: the training extras
            (`dwt_keras.training.flags.TrainingOptions`; the module docstring says how each
            applies to these experiments).
    """

    experiment: str = "mnist"
    fc1: str = "wavelet"
    dense_units: int = 500
    rnn: str = "wavelet"
    hidden: int = 512
    compress: tuple = GATES
    levels: int = None
    filter_length: int = 6
    init_wavelet: str = "haar"
    wavelet_loss_weight: float = 1.0
    seq_len: int = 150
    steps_per_epoch: int = 50
    n_val: int = 500
    n_test: int = 2000
    train_samples: int = 0
    dataset: str = "mnist"
    data_dir: str = None
    validation_split: float = 0.1
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1.0
    optimizer: str = "adadelta"
    lr_decay: float = 0.8
    clipnorm: float = 0.0
    seed: int = 0
    save_dir: str = "./saved_models"
    log_dir: str = None
    strategy: str = "default"
    mixed_precision: bool = False
    plot: bool = True
    verbose: int = 2
    # spectral truncation and the training extras: the inherited `SpectralOptions` and
    # `TrainingOptions` fields

    def training_options(self):
        """The training extras as a validated `TrainingOptions`."""
        names = [f.name for f in dataclasses.fields(TrainingOptions)]
        return TrainingOptions(**{n: getattr(self, n) for n in names}).validate()

    def spectral_setup(self):
        """The validated `SpectralSetup` (disabled unless `spectral_reg`)."""
        return spectral_from_flags(self, log_dir=self.log_dir)

    def _validate_extras(self):
        opts = self.training_options()
        self.spectral_setup()
        task = self.experiment
        if self.spectral_reg:
            if task not in IMAGE_EXPERIMENTS:
                raise ValueError(
                    f"spectral truncation needs image inputs; --experiment {task} has sequences "
                    f"(use it with {' or '.join(IMAGE_EXPERIMENTS)}).")
            if self.truncation_epochs > self.epochs:
                raise ValueError(
                    f"truncation_epochs ({self.truncation_epochs}) must be <= epochs ({self.epochs}):"
                    " the model must also train on unfiltered images.")
        if opts.lr_schedule not in ("constant", "none") and self.lr_decay < 1.0:
            raise ValueError(
                f"lr_decay={self.lr_decay} (a per-epoch step decay) and lr_schedule="
                f"{opts.lr_schedule!r} are two learning-rate schedules; set lr_decay=1 or "
                "lr_schedule='constant'.")
        if opts.augment not in ("none", None) and task not in IMAGE_EXPERIMENTS:
            raise ValueError(f"--augment needs image inputs; --experiment {task} has generated "
                             "sequences.")
        only_mnist = {"saliency_images": opts.saliency_images, "cv_folds": opts.cv_folds,
                      "ensemble": opts.ensemble > 1}
        for name, used in only_mnist.items():
            if used and task != "mnist":
                raise ValueError(f"--{name} is supported for --experiment mnist only, not {task}.")
        if (opts.dropout or opts.batch_norm) and task != "mnist":
            raise ValueError(
                f"--dropout and --batch_norm follow hidden Dense/Conv layers; the {task} model "
                "(a GRU and a Dense read-out) has none. Use them with --experiment mnist.")
        return opts

    def validate(self):
        """Raises `ValueError` for any invalid field, before data is loaded or models are built."""

        def choice(name, value, choices):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not valid. Valid choices: {', '.join(choices)}.")

        choice("experiment", self.experiment, EXPERIMENTS)
        choice("fc1", self.fc1, FC1_CHOICES)
        choice("rnn", self.rnn, RNN_CHOICES)
        choice("optimizer", self.optimizer, OPTIMIZERS)
        choice("strategy", self.strategy, STRATEGIES)
        for name in ("dense_units", "hidden", "seq_len", "steps_per_epoch", "n_val", "n_test", "batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}.")
        for name in ("epochs", "train_samples", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}.")
        if not 0 < self.lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1] (1: constant learning rate), got {self.lr_decay}.")
        if self.clipnorm < 0:
            raise ValueError(f"clipnorm must be >= 0 (0: no clipping), got {self.clipnorm}.")
        if self.experiment == "copy" and self.seq_len < 1:
            raise ValueError("seq_len must be >= 1.")
        # Instantiating the structured layers runs their own argument checks (filter length,
        # wavelet name, levels, loss weight) now rather than after loading data.
        uses_wavelet = (self.experiment == "mnist" and self.fc1 == "wavelet") or (
            self.experiment != "mnist" and self.rnn == "wavelet"
        )
        if uses_wavelet:
            if self.experiment == "mnist":
                # The width (the flattened feature map) is known once the data is loaded; the
                # model build checks `levels` against it, still before any training.
                if self.levels is not None and (
                    isinstance(self.levels, bool) or not isinstance(self.levels, int) or self.levels < 1
                ):
                    raise ValueError(f"levels must be a positive integer or None, got {self.levels!r}.")
                WaveletDense(
                    1 << 20,
                    levels=None,
                    filter_length=self.filter_length,
                    init_wavelet=self.init_wavelet,
                    wavelet_loss_weight=self.wavelet_loss_weight,
                    seed=self.seed,
                    _standalone=False,
                )
            else:
                WaveletGRUCell(
                    self.hidden,
                    compress=self.compress,
                    levels=self.levels,
                    filter_length=self.filter_length,
                    init_wavelet=self.init_wavelet,
                    wavelet_loss_weight=self.wavelet_loss_weight,
                    seed=self.seed,
                )
        elif self.experiment != "mnist" and self.rnn == "fastfood":
            parse_compress(self.compress)
        self._validate_extras()
        return self


# --------------------------------------------------------------------------------------------
# Models


def build_mnist_cnn(
    fc1="wavelet",
    input_shape=(28, 28, 1),
    num_classes=10,
    dense_units=500,
    levels=6,
    filter_length=6,
    init_wavelet="haar",
    wavelet_loss_weight=1.0,
    seed=0,
):
    """The paper's MNIST CNN: conv(20, 5x5) - pool - conv(50, 5x5) - pool - fc1 - ReLU - fc2.

    `fc1` is `Dense(dense_units)` (the paper: 500; 431,080 parameters in all), or a square
    `WaveletDense` / `FastfoodDense` of the flattened width (800 for 28x28 inputs), followed by
    `fc2 = Dense(num_classes)`. With the defaults the wavelet model has 36,030 parameters.
    ReLU follows each pooling (as in PyTorch's MNIST example the paper builds on). The model
    returns logits.

    Args:
        fc1: `"dense"`, `"wavelet"` or `"fastfood"`.
        input_shape, num_classes: image shape and number of classes.
        dense_units: width of the dense `fc1`.
        levels, filter_length, init_wavelet, wavelet_loss_weight, seed: `WaveletDense` arguments
            (`seed` also seeds the Fastfood layer).

    Returns:
        An uncompiled `keras.Model`.
    """
    if fc1 not in FC1_CHOICES:
        raise ValueError(f"fc1={fc1!r} is not valid. Valid choices: {', '.join(FC1_CHOICES)}.")
    layers = keras.layers
    inputs = keras.Input(input_shape, name="image")
    x = layers.Conv2D(20, 5, name="conv1")(inputs)
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = layers.ReLU()(x)
    x = layers.Conv2D(50, 5, name="conv2")(x)
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = layers.ReLU()(x)
    x = layers.Flatten(name="flatten")(x)
    width = int(x.shape[-1])
    if fc1 == "dense":
        x = layers.Dense(dense_units, name="fc1")(x)
    elif fc1 == "wavelet":
        x = WaveletDense(
            width,
            levels=levels,
            filter_length=filter_length,
            init_wavelet=init_wavelet,
            wavelet_loss_weight=wavelet_loss_weight,
            seed=seed,
            name="fc1",
        )(x)
    else:
        x = FastfoodDense(width, seed=seed, name="fc1")(x)
    x = layers.ReLU()(x)
    outputs = layers.Dense(num_classes, name="fc2", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"mnist_cnn_{fc1}")


def build_sequence_model(
    rnn="wavelet",
    input_shape=(150, 2),
    output_units=1,
    return_sequences=False,
    hidden=512,
    compress=GATES,
    levels=None,
    filter_length=6,
    init_wavelet="haar",
    wavelet_loss_weight=1.0,
    seed=0,
):
    """A one-layer GRU (plain, wavelet or Fastfood) followed by a Dense read-out.

    Args:
        rnn: `"gru"` (keras.layers.GRU), `"wavelet"` (WaveletGRU) or `"fastfood"` (FastfoodGRU).
        input_shape: `(time, features)`.
        output_units: width of the read-out (1 for adding; classes for copy / sMNIST).
        return_sequences: read out every step (copy task) or the last one.
        hidden: hidden size.
        compress, levels, filter_length, init_wavelet, wavelet_loss_weight, seed: structured-cell
            arguments (ignored for `"gru"`).

    Returns:
        An uncompiled `keras.Model` (logits / regression output in float32).
    """
    if rnn not in RNN_CHOICES:
        raise ValueError(f"rnn={rnn!r} is not valid. Valid choices: {', '.join(RNN_CHOICES)}.")
    inputs = keras.Input(input_shape, name="sequence")
    if rnn == "gru":
        x = keras.layers.GRU(hidden, return_sequences=return_sequences, name="gru")(inputs)
    elif rnn == "wavelet":
        x = WaveletGRU(
            hidden,
            compress=compress,
            levels=levels,
            filter_length=filter_length,
            init_wavelet=init_wavelet,
            wavelet_loss_weight=wavelet_loss_weight,
            seed=seed,
            return_sequences=return_sequences,
            name="wavelet_gru",
        )(inputs)
    else:
        x = FastfoodGRU(hidden, compress=compress, seed=seed, return_sequences=return_sequences, name="fastfood_gru")(
            inputs
        )
    outputs = keras.layers.Dense(output_units, name="readout", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"{rnn}_rnn")


@keras.saving.register_keras_serializable(package="dwt_keras")
class SequenceImageTruncation(SpectralTruncation):
    """`SpectralTruncation` of images that a model reads as sequences (sequential MNIST).

    A training batch `(batch, H * W, C)` (each image serialised row by row) is reshaped to
    `(batch, H, W, C)`, low-passed in the 2-D DCT domain and serialised again, so the curriculum
    removes the picture's fine detail rather than filtering the 1-D pixel stream (whose "high
    frequencies" would mix horizontal detail with the jump from one row's end to the next row's
    start). Outside training it returns its input unchanged, like `SpectralTruncation`.

    Args:
        image_shape: `(H, W, C)` of the images before serialisation.
        **kwargs: `SpectralTruncation` arguments (`tau`, `profile`, `rolloff`, ...).

    Call arguments:
        inputs: `(batch, H * W, C)` sequences.
        training: Python bool; the mask is applied only when `True`.

    Example:

    >>> layer = SequenceImageTruncation((28, 28, 1), tau=0.1)
    >>> seq = np.random.rand(2, 784, 1).astype("float32")
    >>> layer(seq, training=True).shape
    TensorShape([2, 784, 1])
    """

    def __init__(self, image_shape=(28, 28, 1), **kwargs):
        super().__init__(**kwargs)
        shape = tuple(int(v) for v in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels) of positive sizes; "
                             f"got {image_shape!r}.")
        self.image_shape = shape

    def build(self, input_shape):
        h, w, c = self.image_shape
        if len(input_shape) != 3 or input_shape[1] not in (None, h * w) or input_shape[2] not in (None, c):
            raise ValueError(
                f"{type(self).__name__} ({self.name}) expects sequences (batch, {h * w}, {c}) of "
                f"{h}x{w}x{c} images; got shape {tuple(input_shape)}.")
        super().build((input_shape[0], h, w, c))

    def call(self, inputs, training=None):
        if not training:
            return inputs
        images = keras.ops.reshape(inputs, (-1, *self.image_shape))
        out = super().call(images, training=True)
        return keras.ops.reshape(out, (-1, *inputs.shape[1:]))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape)}


def _wrap_spectral(spectral, model, sequence_image_shape=None):
    """`spectral.wrap(model)`, with a `SequenceImageTruncation` for serialised images."""
    if not spectral.enabled or sequence_image_shape is None:
        return spectral.wrap(model)
    layer = SequenceImageTruncation(sequence_image_shape, **spectral.layer_kwargs)
    return SpectralTrainingModel(model, layer, apply_to=spectral.apply_to)


# --------------------------------------------------------------------------------------------
# Data of the sequence tasks


def adding_batch(batch_size, seq_len, rng):
    """One batch of the adding problem (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

    Channel 0 holds uniform [0, 1) values, channel 1 marks two positions, one in each half of
    the sequence; the target is the sum of the two marked values.

    Args:
        batch_size, seq_len: shape of the batch.
        rng: a `numpy.random.Generator`.

    Returns:
        `(x, y)`: float32 arrays of shapes `(batch, seq_len, 2)` and `(batch, 1)`.
    """
    if seq_len < 2:
        raise ValueError(f"The adding problem needs seq_len >= 2, got {seq_len}.")
    values = rng.uniform(0.0, 1.0, size=(batch_size, seq_len)).astype(np.float32)
    half = seq_len // 2
    first = rng.integers(0, half, size=batch_size)
    second = rng.integers(half, seq_len, size=batch_size)
    marks = np.zeros((batch_size, seq_len), np.float32)
    rows = np.arange(batch_size)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    y = (values[rows, first] + values[rows, second])[:, None]
    return np.stack([values, marks], axis=-1), y.astype(np.float32)


def copy_batch(batch_size, seq_len, rng):
    """One batch of the copy-memory problem (Arjovsky et al. 2016).

    Input: 10 symbols from 1..8, `seq_len - 1` blanks (0), the delimiter 9, then 10 blanks
    (length `seq_len + 20`, one-hot). Target: `seq_len + 10` blanks, then the 10 symbols.

    Returns:
        `(x, y)`: float32 one-hot inputs `(batch, seq_len + 20, 10)` and int32 targets
        `(batch, seq_len + 20)`.
    """
    total = seq_len + 2 * COPY_DIGITS
    symbols = rng.integers(1, 9, size=(batch_size, COPY_DIGITS))
    tokens = np.zeros((batch_size, total), np.int32)
    tokens[:, :COPY_DIGITS] = symbols
    tokens[:, COPY_DIGITS + seq_len - 1] = 9
    targets = np.zeros((batch_size, total), np.int32)
    targets[:, -COPY_DIGITS:] = symbols
    return np.eye(COPY_CATEGORIES, dtype=np.float32)[tokens], targets


def adding_accuracy(y_true, y_pred, tolerance=0.05):
    """The adding metric: the share of predictions with `|y_pred - y_true| < tolerance`."""
    y_true = np.asarray(y_true, np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, np.float64).reshape(-1)
    return float(np.mean(np.abs(y_pred - y_true) < tolerance))


@keras.saving.register_keras_serializable(package="dwt_keras")
class AddingAccuracy(keras.metrics.MeanMetricWrapper):
    """Keras metric: share of `|y_pred - y_true| < tolerance` (the adding problem's accuracy)."""

    def __init__(self, tolerance=0.05, name="adding_accuracy", dtype=None):
        def fn(y_true, y_pred):
            diff = keras.ops.abs(keras.ops.cast(y_pred, "float32") - keras.ops.cast(y_true, "float32"))
            return keras.ops.cast(diff < tolerance, "float32")

        super().__init__(fn, name=name, dtype=dtype)
        self.tolerance = tolerance

    def get_config(self):
        return {"tolerance": self.tolerance, "name": self.name, "dtype": self.dtype}


def _generated_dataset(make_batch, batch_size, seq_len, seed):
    """An endless `tf.data` stream of freshly generated batches (fit with `steps_per_epoch`)."""
    import tensorflow as tf

    x0, y0 = make_batch(1, seq_len, np.random.default_rng(0))
    rng = np.random.default_rng(seed)

    def forever():
        while True:
            yield make_batch(batch_size, seq_len, rng)

    spec = (
        tf.TensorSpec((None,) + x0.shape[1:], tf.float32),
        tf.TensorSpec((None,) + y0.shape[1:], tf.as_dtype(y0.dtype)),
    )
    return tf.data.Dataset.from_generator(forever, output_signature=spec).prefetch(2)


# --------------------------------------------------------------------------------------------
# Training helpers


def make_optimizer(name, lr, lr_decay=1.0, steps_per_epoch=1, clipnorm=0.0, lr_schedule="constant",
                   epochs=1):
    """An optimizer whose learning rate decays by `lr_decay` after every epoch (step decay).

    The schedule is keyed on the optimizer's iteration count, so it resumes correctly. An
    `lr_schedule` other than `"constant"` (`dwt_keras.training.schedules.make_lr_schedule` over
    `epochs` epochs of `steps_per_epoch` steps) replaces the step decay; it needs `lr_decay=1`.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"optimizer={name!r} is not valid. Valid choices: {', '.join(OPTIMIZERS)}.")
    schedule = lr
    if lr_schedule not in ("constant", "none"):
        from dwt_keras.training.schedules import make_lr_schedule

        if lr_decay < 1.0:
            raise ValueError(f"lr_decay={lr_decay} and lr_schedule={lr_schedule!r} are two "
                             "schedules; set lr_decay=1 or lr_schedule='constant'.")
        schedule = make_lr_schedule(lr_schedule, lr, steps_per_epoch, max(1, int(epochs)))
    elif lr_decay < 1.0:
        schedule = keras.optimizers.schedules.ExponentialDecay(
            lr, decay_steps=max(1, int(steps_per_epoch)), decay_rate=lr_decay, staircase=True
        )
    kwargs = {"learning_rate": schedule}
    if clipnorm:
        kwargs["clipnorm"] = clipnorm
    cls = {
        "adadelta": keras.optimizers.Adadelta,
        "adam": keras.optimizers.Adam,
        "rmsprop": keras.optimizers.RMSprop,
        "sgd": keras.optimizers.SGD,
    }[name]
    if name == "rmsprop":
        # The paper's (PyTorch) RMSprop divides by sqrt(v) + 1e-8 with rho 0.99; Keras adds its
        # epsilon inside the square root, so its default 1e-7 floors the divisor at 3e-4 and kept
        # even a plain GRU at chance on the adding problem for 4,750 steps (BENCHMARKS.md).
        kwargs.update(rho=0.99, epsilon=1e-16)
    return cls(**kwargs)


def count_trainable(model):
    """Number of trainable scalars of a model."""
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))


def _set_precision(mixed_precision):
    if mixed_precision:
        keras.mixed_precision.set_global_policy(mixed_precision_policy())
    else:
        keras.mixed_precision.set_global_policy("float32")


class _EpochTimer(keras.callbacks.Callback):
    """Records wall time per epoch and adds the learning rate to the epoch's logs (so the
    History shows the schedule); deep-copyable: only floats and lists."""

    def __init__(self):
        super().__init__()
        self.times = []
        self._t0 = None

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        from dwt_keras.training.schedules import current_learning_rate

        self.times.append(time.perf_counter() - self._t0)
        if logs is not None and getattr(self.model, "optimizer", None) is not None:
            # the rate of the epoch's last step
            logs.setdefault("learning_rate", current_learning_rate(self.model.optimizer))


def _callbacks(config, monitor, mode, spectral=None):
    timer = _EpochTimer()
    # Without early stopping the patience outlasts the run: the callback only restores the
    # weights of the best validation epoch (model selection).
    patience = config.early_stopping_patience or max(1, config.epochs) + 1
    start = 0
    if config.early_stopping_patience and config.spectral_reg:
        # Early stopping waits for the curriculum to end: the validation metric (on unfiltered
        # images) lags while the model trains on low-passed ones, and stopping then would skip
        # the unfiltered phase altogether.
        start = min(config.truncation_epochs, max(0, config.epochs - 1))
    stopper = keras.callbacks.EarlyStopping(
        monitor=monitor, mode=mode, patience=patience, restore_best_weights=True, start_from_epoch=start
    )
    # The tau scheduler runs first, so tau and the phase are in the logs the others read.
    callbacks = list(spectral.callbacks if spectral is not None else []) + [timer, stopper]
    if config.log_dir:
        callbacks += standard_callbacks(config.log_dir)
    return callbacks, timer, stopper


def _best_epoch(stopper, values, mode):
    """The 1-based epoch whose weights the model holds after training (0: none recorded)."""
    if stopper.best_weights is not None:
        return int(stopper.best_epoch) + 1
    if not values:
        return 0
    return int(np.argmin(values) if mode == "min" else np.argmax(values)) + 1


def _spectral_report(config, hist, applied_to):
    return spectral_report(config, hist.get("spectral_tau", []), hist.get("spectral_phase", []),
                           applied_to=applied_to)


def _regularization_report(model, opts):
    from dwt_keras.training.regularization import KERNEL_LAYERS

    if not (opts.l1 or opts.l2 or opts.dropout or opts.batch_norm):
        return None
    kernel = [l.name for l in model.layers if isinstance(l, KERNEL_LAYERS)]
    structured = [l.name for l in model.layers if l.weights and not isinstance(l, KERNEL_LAYERS)
                  and not isinstance(l, keras.layers.BatchNormalization)]
    return {"l1": opts.l1, "l2": opts.l2, "dropout": opts.dropout, "batch_norm": opts.batch_norm,
            "penalized_layers": kernel if (opts.l1 or opts.l2) else [],
            "layers_without_kernel_penalty": structured}


def _prepare(config, build_fn, strategy, output_units, input_shape):
    """Builds or loads (`init_from`) the model and regularises it; checks a loaded input shape."""
    from dwt_keras.training.extras import prepare_model

    model = prepare_model(build_fn, config.training_options(), strategy, output_units)
    got = tuple(model.inputs[0].shape[1:])
    if tuple(got) != tuple(input_shape):
        raise ValueError(f"--init_from {config.init_from}: the model takes inputs of shape {got}; "
                         f"--experiment {config.experiment} has {tuple(input_shape)}.")
    return model


def _export(config, model, x_sample, run_dir):
    """`--export`, measured; a conversion failure is reported instead of raised (training is done)."""
    if config.export in (None, "none"):
        return None
    from dwt_keras.training.export import export_model

    try:
        return export_model(model, config.export, run_dir, x_sample)
    except Exception as e:  # noqa: BLE001 -- the trained model is already saved; say why
        # Converter messages bury the cause among "loc(...)" call-site lines.
        parts = [p.splitlines()[0].strip() for p in str(e).split("error:")[1:] if p.strip()]
        parts = [p for p in parts if p and not p.startswith("loc(")]
        reason = (parts[0] if parts else str(e).strip().splitlines()[0])[:500]
        hint = ("recurrent layers need TF Select ops in TFLite; use --export savedmodel"
                if "tensorlist" in str(e).lower().replace(" ", "") else None)
        print(f"--export {config.export} failed ({type(e).__name__}): {reason}")
        return {"format": config.export, "error": f"{type(e).__name__}: {reason}", "hint": hint}


def _extras_report(config, model, opts, run_dir, x_test, y_test, class_names=None):
    out = {}
    if opts.saliency_images:
        from dwt_keras.training.saliency import write_saliency_pngs

        n = opts.saliency_images
        out["saliency"] = write_saliency_pngs(model, x_test[:n], y_test[:n], run_dir / "saliency",
                                              class_names=class_names)
    export = _export(config, model, x_test, run_dir)
    if export is not None:
        out["export"] = export
    if getattr(model, "_dwt_transfer", None):
        out["transfer"] = model._dwt_transfer
    # an ensemble's members share one architecture: report the first one's layers
    member = next((l for l in model.layers if isinstance(l, keras.Model)), model)
    regularization = _regularization_report(member, opts)
    if regularization:
        out["regularization"] = regularization
    return out


def _machine():
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()}
    try:
        import tensorflow as tf

        info["tensorflow"] = tf.__version__
        info["gpus"] = [d.name for d in tf.config.list_physical_devices("GPU")]
    except ImportError:  # pragma: no cover
        pass
    info["keras"] = keras.__version__
    return info


def _wavelet_layers(model):
    found = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, WaveletDense):
            found.append(layer)
    return found


def wavelet_summary(model):
    """Per wavelet layer: current `L_pr`, `L_ac` and filters (plain Python values)."""
    summary = {}
    for layer in _wavelet_layers(model):
        l_pr, l_ac = layer.wavelet_loss_terms()
        summary[layer.path if hasattr(layer, "path") else layer.name] = {
            "L_pr": float(keras.ops.convert_to_numpy(l_pr)),
            "L_ac": float(keras.ops.convert_to_numpy(l_ac)),
            "filters": {k: v.tolist() for k, v in layer.filters().items()},
        }
    return summary


def plot_filters(model, path, initial=None):
    """Plots every wavelet layer's learned filters and their magnitude responses.

    Args:
        model: a model with `WaveletDense` layers (none: nothing is written).
        path: PNG path (written atomically).
        initial: optional `{layer_name: filters}` of the initial filters, drawn dashed.

    Returns:
        The path, or `None` when the model has no wavelet layer.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import signal

    from dwt_keras.utils.io import atomic_save_figure

    layers = _wavelet_layers(model)
    if not layers:
        return None
    keys = ("dec_lo", "dec_hi", "rec_lo", "rec_hi")
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 3.2 * len(layers)), squeeze=False)
    for row, layer in zip(axes, layers):
        filters = layer.filters()
        start = (initial or {}).get(layer.name)
        for i, key in enumerate(keys):
            taps = np.arange(len(filters[key]))
            row[0].plot(taps + 0.06 * (i - 1.5), filters[key], "o-", label=key, color=f"C{i}")
            w, h = signal.freqz(filters[key], worN=512)
            row[1].plot(w / np.pi, np.abs(h), label=key, color=f"C{i}")
            if start is not None:
                row[0].plot(taps, start[key], ":", color=f"C{i}", alpha=0.6)
                w0, h0 = signal.freqz(start[key], worN=512)
                row[1].plot(w0 / np.pi, np.abs(h0), ":", color=f"C{i}", alpha=0.6)
        l_pr, l_ac = (float(keras.ops.convert_to_numpy(t)) for t in layer.wavelet_loss_terms())
        row[0].set_title(f"{layer.name}: learned filters (dotted: initial)")
        row[0].set_xlabel("tap")
        row[0].legend(fontsize=8)
        row[1].set_title(f"|H(e^jw)|  (L_pr={l_pr:.2e}, L_ac={l_ac:.2e})")
        row[1].set_xlabel("normalised frequency (x pi rad/sample)")
        row[1].legend(fontsize=8)
    fig.tight_layout()
    return atomic_save_figure(fig, path)


def _save_model(model, path):
    # Save beside the final name, then rename: a crash never leaves a truncated model.
    tmp = path.parent / f".{path.stem}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, path)
    return path


def _write_outputs(run_dir, model, report, initial_filters, plot):
    from dwt_keras.utils.io import atomic_write_json

    if model is None:  # cross-validation: k models, none of them "the" model
        atomic_write_json(run_dir / "report.json", report)
        return run_dir / "report.json"
    model_path = _save_model(model, run_dir / "model.keras")
    report["model_path"] = str(model_path)
    if plot:
        figure = plot_filters(model, run_dir / "filters.png", initial=initial_filters)
        report["filter_plot"] = str(figure) if figure else None
    atomic_write_json(run_dir / "report.json", report)
    return run_dir / "report.json"


def _history_dict(history):
    return {k: [float(v) for v in vals] for k, vals in history.history.items()}


# --------------------------------------------------------------------------------------------
# Runs


def _mnist_splits(config):
    from dwt_keras.data import load_arrays

    splits = load_arrays(
        config.dataset, data_dir=config.data_dir, validation_split=config.validation_split, seed=config.seed
    )
    if config.train_samples:
        splits.x_train = splits.x_train[: config.train_samples]
        splits.y_train = splits.y_train[: config.train_samples]
    return splits


def _fit_mnist(config, splits, seed):
    """One training run of the MNIST CNN on `splits` with `seed`; returns `(model, record)`.

    `model` is the plain classifier (never the spectral training wrapper), with the weights of
    the epoch of best validation accuracy.
    """
    from dwt_keras.data import make_datasets
    from dwt_keras.training.extras import augment_train_dataset
    from dwt_keras.utils.seeding import set_seed

    set_seed(int(seed))
    opts = config.training_options()
    spectral = config.spectral_setup()
    train_ds, val_ds, _ = make_datasets(splits, batch_size=config.batch_size, seed=int(seed))
    image_shape = tuple(splits.x_train.shape[1:])
    train_ds = augment_train_dataset(train_ds, opts, image_shape, int(seed))
    steps_per_epoch = int(np.ceil(len(splits.x_train) / config.batch_size))
    strategy = get_strategy(config.strategy)
    num_classes = int(splits.info["num_classes"])
    model = _prepare(
        config,
        lambda: build_mnist_cnn(
            config.fc1,
            input_shape=image_shape,
            num_classes=num_classes,
            dense_units=config.dense_units,
            levels=config.levels,
            filter_length=config.filter_length,
            init_wavelet=config.init_wavelet,
            wavelet_loss_weight=config.wavelet_loss_weight,
            seed=int(seed),
        ),
        strategy, num_classes, image_shape,
    )
    with strategy.scope():
        trained = _wrap_spectral(spectral, model)
        trained.compile(
            optimizer=make_optimizer(config.optimizer, config.lr, config.lr_decay, steps_per_epoch,
                                     config.clipnorm, opts.lr_schedule, config.epochs),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    initial_filters = {l.name: l.filters() for l in _wavelet_layers(model)}
    monitor = "val_accuracy" if val_ds is not None else "accuracy"
    callbacks, timer, stopper = _callbacks(config, monitor, "max", spectral)
    t0 = time.perf_counter()
    history = trained.fit(
        train_ds,
        validation_data=val_ds,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # the tf.data pipeline shuffles
        verbose=config.verbose,
    )
    train_seconds = time.perf_counter() - t0
    hist = _history_dict(history)
    best_epoch = _best_epoch(stopper, hist.get(monitor), "max")
    record = {
        "seed": int(seed),
        "best_epoch": best_epoch,
        "best_val_accuracy": float(hist[monitor][best_epoch - 1]) if best_epoch else None,
        "epochs_run": len(timer.times),
        "seconds_per_epoch": [float(t) for t in timer.times],
        "train_seconds": float(train_seconds),
        "history": hist,
        "spectral": _spectral_report(config, hist, "training images"),
        "initial_filters": initial_filters,
    }
    return model, record


def _mnist_evaluate(splits):
    from dwt_keras.evaluation import evaluate_classifier

    def evaluate(model, x, y):
        return evaluate_classifier(model, x, y, batch_size=256, class_names=splits.info["class_names"],
                                   from_logits=True)

    return evaluate


def run_mnist(config):
    """Trains and evaluates the paper's MNIST CNN (see `build_mnist_cnn`).

    With `cv_folds` or `ensemble > 1` it trains one model per fold / member (see
    `dwt_keras.training.extras.run_folds_or_ensemble`): cross-validation reports the mean and
    std of the folds' test metrics and saves no model; an ensemble is saved as one `model.keras`
    averaging its members' logits, with each member's file under `members/`.

    Args:
        config: an `ExperimentConfig` with `experiment="mnist"`.

    Returns:
        The report dict (also written to `<run dir>/report.json`), with `params` (trainable
        parameters of the whole model), `test_accuracy` (on the test split, with the weights of
        the epoch of best validation accuracy), `run_dir` and more.
    """
    from dwt_keras.training.extras import run_folds_or_ensemble
    from dwt_keras.utils.io import make_run_dir
    from dwt_keras.utils.seeding import set_seed

    config.validate()
    opts = config.training_options()
    run_dir = make_run_dir(config.save_dir, f"learnable-mnist-{config.fc1}")
    set_seed(config.seed)
    _set_precision(config.mixed_precision)
    splits = _mnist_splits(config)
    evaluate = _mnist_evaluate(splits)
    common = {
        "experiment": "mnist",
        "fc1": config.fc1,
        "data": splits.info,
        "config": dataclasses.asdict(config),
        "machine": _machine(),
        "run_dir": str(run_dir),
    }
    records = []

    def train_fn(fold_splits, seed):
        model, record = _fit_mnist(config, fold_splits, seed)
        records.append({k: v for k, v in record.items() if k != "initial_filters"})
        return model

    def member_file(model, i):
        (run_dir / "members").mkdir(exist_ok=True)
        return _save_model(model, run_dir / "members" / f"member{i}.keras")

    outer = run_folds_or_ensemble(opts, splits, train_fn, evaluate_fn=evaluate, seed=config.seed,
                                  member_files=member_file)
    if outer is not None and "cross_validation" in outer:
        cv = outer["cross_validation"]
        report = {
            **common,
            "test_accuracy": cv["summary"]["accuracy"]["mean"],
            "test_accuracy_std": cv["summary"]["accuracy"]["std"],
            "cross_validation": cv,
            "folds": records,
        }
        _write_outputs(run_dir, None, report, None, False)
        return report
    if outer is not None:
        model = outer["model"]
        test = outer["ensemble"]["test"]
        report = {**common, "params": count_trainable(model), "test_accuracy": float(test["accuracy"]),
                  "test_loss": float(test["test_loss"]), "test_metrics": test,
                  "ensemble": outer["ensemble"], "members": records,
                  "train_seconds": float(sum(r["train_seconds"] for r in records))}
        report.update(_extras_report(config, model, opts, run_dir, splits.x_test, splits.y_test))
        _write_outputs(run_dir, model, report, None, config.plot)
        return report
    model, record = _fit_mnist(config, splits, config.seed)
    test = evaluate(model, splits.x_test, splits.y_test)
    fc1 = next((l for l in model.layers if l.name == "fc1"), None)  # absent in some init_from models
    report = {
        **common,
        "params": count_trainable(model),
        "fc1_params": None if fc1 is None else int(sum(int(np.prod(v.shape)) for v in fc1.trainable_variables)),
        "test_accuracy": float(test["accuracy"]),
        "test_loss": float(test["test_loss"]),
        "test_metrics": test,
        **{k: v for k, v in record.items() if k not in ("initial_filters", "seed")},
        "wavelet": wavelet_summary(model),
    }
    report.update(_extras_report(config, model, opts, run_dir, splits.x_test, splits.y_test,
                                 class_names=splits.info["class_names"]))
    _write_outputs(run_dir, model, report, record["initial_filters"], config.plot)
    return report


def run_sequence_task(config):
    """Trains and evaluates a GRU variant on the adding, copy-memory or sequential-MNIST task.

    The adding and copy data are generated on the fly (fresh batches every step; fixed, seeded
    validation and test sets). `test_accuracy` is: adding, the share of `|y_hat - y| < 0.05`;
    copy, the accuracy on the 10 recalled symbols (`all_steps_accuracy` also counts the
    blanks); sMNIST, the test-split accuracy. The epoch with the best validation metric is kept.

    Args:
        config: an `ExperimentConfig` with `experiment` in `("adding", "copy", "smnist")`.

    Returns:
        The report dict (also written to `<run dir>/report.json`).
    """
    from dwt_keras.utils.io import make_run_dir
    from dwt_keras.utils.seeding import set_seed

    config.validate()
    if config.experiment == "mnist":
        raise ValueError("Use run_mnist for experiment='mnist'.")
    opts = config.training_options()
    spectral = config.spectral_setup()
    image_shape = None  # smnist: the images' shape before serialisation
    run_dir = make_run_dir(config.save_dir, f"learnable-{config.experiment}-{config.rnn}")
    set_seed(config.seed)
    _set_precision(config.mixed_precision)
    task = config.experiment
    data_info = {}
    if task in ("adding", "copy"):
        make_batch = adding_batch if task == "adding" else copy_batch
        # Disjoint seeds: training stream, validation set and test set never share a generator.
        x_val, y_val = make_batch(config.n_val, config.seq_len, np.random.default_rng([config.seed, 1]))
        x_test, y_test = make_batch(config.n_test, config.seq_len, np.random.default_rng([config.seed, 2]))
        train_ds = _generated_dataset(make_batch, config.batch_size, config.seq_len, [config.seed, 0])
        steps_per_epoch = config.steps_per_epoch
        data_info = {"seq_len": config.seq_len, "n_val": config.n_val, "n_test": config.n_test,
                     "train_samples_per_epoch": config.steps_per_epoch * config.batch_size}
    else:
        from dwt_keras.data import load_arrays

        splits = load_arrays(
            config.dataset, data_dir=config.data_dir, validation_split=config.validation_split, seed=config.seed
        )
        from dwt_keras.training.extras import augment_train_dataset

        image_shape = tuple(splits.x_train.shape[1:])
        x_train, y_train = splits.x_train, splits.y_train  # images; serialised in the pipeline
        if config.train_samples:
            x_train, y_train = x_train[: config.train_samples], y_train[: config.train_samples]
        x_val, y_val = splits.x_val.reshape(len(splits.x_val), -1, 1), splits.y_val
        x_test, y_test = splits.x_test.reshape(len(splits.x_test), -1, 1), splits.y_test
        import tensorflow as tf

        seq_shape = (-1, int(np.prod(image_shape[:2])), image_shape[-1])
        train_ds = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=config.seed)
            .batch(config.batch_size)
        )
        # Augmentation acts on the picture, before it is read out pixel by pixel.
        train_ds = augment_train_dataset(train_ds, opts, image_shape, config.seed)
        train_ds = train_ds.map(lambda x, y: (tf.reshape(x, seq_shape), y)).prefetch(2)
        steps_per_epoch = int(np.ceil(len(x_train) / config.batch_size))
        data_info = splits.info
    if task == "adding":
        output_units, return_sequences = 1, False
        loss = keras.losses.MeanSquaredError()
        metrics = [AddingAccuracy()]
        monitor, metric_key = "val_adding_accuracy", "adding_accuracy"
    elif task == "copy":
        output_units, return_sequences = COPY_CATEGORIES, True
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"]
        monitor, metric_key = "val_loss", "accuracy"
    else:
        output_units, return_sequences = 10, False
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        metrics = ["accuracy"]
        monitor, metric_key = "val_accuracy", "accuracy"
    strategy = get_strategy(config.strategy)
    model = _prepare(
        config,
        lambda: build_sequence_model(
            config.rnn,
            input_shape=x_val.shape[1:],
            output_units=output_units,
            return_sequences=return_sequences,
            hidden=config.hidden,
            compress=config.compress,
            levels=config.levels,
            filter_length=config.filter_length,
            init_wavelet=config.init_wavelet,
            wavelet_loss_weight=config.wavelet_loss_weight,
            seed=config.seed,
        ),
        strategy, output_units, x_val.shape[1:],
    )
    with strategy.scope():
        trained = _wrap_spectral(spectral, model, image_shape)
        trained.compile(
            optimizer=make_optimizer(config.optimizer, config.lr, config.lr_decay, steps_per_epoch, config.clipnorm,
                                     opts.lr_schedule, config.epochs),
            loss=loss,
            metrics=metrics,
        )
    initial_filters = {l.name: l.filters() for l in _wavelet_layers(model)}
    mode = "min" if monitor == "val_loss" else "max"
    callbacks, timer, stopper = _callbacks(config, monitor, mode, spectral)
    t0 = time.perf_counter()
    history = trained.fit(
        train_ds,
        steps_per_epoch=steps_per_epoch,
        validation_data=(x_val, y_val),
        validation_batch_size=256,
        epochs=config.epochs,
        callbacks=callbacks,
        shuffle=False,  # fresh batches every step / a shuffled tf.data pipeline
        verbose=config.verbose,
    )
    train_seconds = time.perf_counter() - t0
    hist = _history_dict(history)
    best_epoch = _best_epoch(stopper, hist.get(monitor), mode)
    pred = model.predict(x_test, batch_size=256, verbose=0)
    result = {}
    if task == "adding":
        result["test_accuracy"] = adding_accuracy(y_test, pred)
        result["test_mse"] = float(np.mean((pred.reshape(-1) - y_test.reshape(-1)) ** 2))
        result["baseline_mse_predict_1"] = float(np.mean((1.0 - y_test.reshape(-1)) ** 2))
    elif task == "copy":
        labels = pred.argmax(-1)
        result["test_accuracy"] = float(np.mean(labels[:, -COPY_DIGITS:] == y_test[:, -COPY_DIGITS:]))
        result["all_steps_accuracy"] = float(np.mean(labels == y_test))
        logp = pred - np.log(np.sum(np.exp(pred - pred.max(-1, keepdims=True)), -1, keepdims=True)) - pred.max(
            -1, keepdims=True
        )
        result["test_loss"] = float(-np.mean(np.take_along_axis(logp, y_test[..., None], -1)))
        # Blanks everywhere, then a uniform guess over the 8 symbols (the memoryless baseline).
        result["baseline_loss"] = float(COPY_DIGITS * np.log(8) / (config.seq_len + 2 * COPY_DIGITS))
    else:
        result["test_accuracy"] = float(np.mean(pred.argmax(-1) == y_test))
    report = {
        "experiment": task,
        "rnn": config.rnn,
        "compress": list(config.compress) if config.rnn != "gru" else [],
        "params": count_trainable(model),
        **result,
        "best_epoch": best_epoch,
        "best_val": float(hist[monitor][best_epoch - 1]) if best_epoch else None,
        "monitor": monitor,
        "metric": metric_key,
        "epochs_run": len(timer.times),
        "steps_per_epoch": steps_per_epoch,
        "train_steps": steps_per_epoch * len(timer.times),
        "seconds_per_epoch": [float(t) for t in timer.times],
        "train_seconds": float(train_seconds),
        "history": hist,
        "wavelet": wavelet_summary(model),
        "spectral": _spectral_report(config, hist, "training images, before serialisation"),
        "data": data_info,
        "config": dataclasses.asdict(config),
        "machine": _machine(),
        "run_dir": str(run_dir),
    }
    report.update(_extras_report(config, model, opts, run_dir, x_test, y_test))
    _write_outputs(run_dir, model, report, initial_filters, config.plot)
    return report


def run_experiment(config):
    """Dispatches to `run_mnist` or `run_sequence_task`; returns the report dict."""
    config.validate()
    if config.experiment == "mnist":
        return run_mnist(config)
    return run_sequence_task(config)


def format_summary(report):
    """A short human-readable summary of a report."""
    keys = ("experiment", "fc1", "rnn", "params", "test_accuracy", "test_accuracy_std", "best_epoch", "epochs_run",
            "train_seconds", "export")
    return json.dumps({k: report[k] for k in keys if k in report}, indent=2)

