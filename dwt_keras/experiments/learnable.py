"""The learnable-wavelet recipe behind `apps/learnable_wavelet.py` (Wolter, Lin & Yao 2020).

* `mnist`: the paper's MNIST CNN with a dense, Fastfood or learnable-wavelet `fc1`
  (`dwt_keras.learnable.models.build_mnist_cnn`, registry name `learnable_cnn`).
* `adding`, `copy`: the adding and copy-memory problems (fresh batches every step; fixed,
  seeded validation and test sets), and `smnist`, sequential (pixel-by-pixel) MNIST, with a
  GRU, a wavelet GRU or a Fastfood GRU (`sequence_rnn`).

Every run trains on the training data, keeps the epoch with the best validation metric (mnist,
smnist: `val_accuracy`; adding: `val_adding_accuracy`; copy: `val_loss`), evaluates once on the
test split and writes `report.json`, `model.keras` and, for wavelet layers, `filters.png` (the
learned filters and their frequency responses).

Per-experiment defaults: settings left unset (`None`) take the experiment's values
(`EXPERIMENT_DEFAULTS`: MNIST the paper's Adadelta with a 0.8 per-epoch step decay; the
sequence tasks RMSprop, PyTorch-equivalent). `lr_schedule="constant"` keeps the step decay
`lr_decay`; any other schedule replaces it.

How the shared extras apply: `spectral_reg` filters the training images of `mnist` and
`smnist` (the 28x28 picture, before it is read out as a sequence); adding / copy refuse it.
`augment` applies to the image experiments, `saliency_images`, `cv_folds` and `ensemble` to
`mnist`; `dropout` / `batch_norm` follow hidden Dense/Conv layers (mnist only). `l1`/`l2`
penalise Dense/Conv kernels: structured layers (`WaveletDense`, `FastfoodDense`, the GRU cells)
carry no kernel penalty (report.json lists which layers are penalised). `export tflite` fails
for the GRU models (TensorList ops); the failure is recorded in the report.

Example:

```python
from dwt_keras.experiments.learnable import LearnableConfig, run_learnable
report = run_learnable(LearnableConfig(experiment="mnist", fc1="wavelet", epochs=2))
report["params"], report["test_accuracy"]
```
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from dwt_keras.experiments.options import RunOptions, TrainingOptions, validate_common
from dwt_keras.experiments.recipe import Recipe, config_dict
from dwt_keras.experiments.registry import build_model
from dwt_keras.experiments.run import Selection, load_data, machine_info
from dwt_keras.learnable.recurrent import WaveletGRUCell, parse_compress
from dwt_keras.learnable.tasks import (
    COPY_CATEGORIES,
    COPY_DIGITS,
    AddingAccuracy,
    adding_accuracy,
    adding_batch,
    copy_batch,
    generated_dataset,
    plot_filters,
    wavelet_layers,
    wavelet_summary,
)
from dwt_keras.learnable.wavelet_dense import WaveletDense
from dwt_keras.spectral.options import SpectralOptions, spectral_report
from dwt_keras.spectral.setup import spectral_setup
from dwt_keras.training.augmentation import augment_training_dataset
from dwt_keras.training.regularization import KERNEL_LAYERS
from dwt_keras.utils.options import OptionError, option

__all__ = ["LearnableConfig", "ExperimentConfig", "LearnableRecipe", "run_learnable",
           "EXPERIMENTS", "EXPERIMENT_DEFAULTS", "format_summary"]

EXPERIMENTS = ("mnist", "adding", "copy", "smnist")
IMAGE_EXPERIMENTS = ("mnist", "smnist")  # the inputs are images (smnist: read as a sequence)
FC1_CHOICES = ("dense", "wavelet", "fastfood")
RNN_CHOICES = ("gru", "wavelet", "fastfood")

# Per-experiment defaults of the settings whose good values differ between the image and the
# sequence tasks. MNIST: the paper's Adadelta schedule; sequence tasks: RMSprop.
EXPERIMENT_DEFAULTS = {
    "mnist": {"optimizer": "adadelta", "lr": 1.0, "lr_decay": 0.8, "batch_size": 64,
              "epochs": 20, "clipnorm": 0.0, "levels": 6, "hidden": 512},
    "adding": {"optimizer": "rmsprop", "lr": 1e-3, "lr_decay": 1.0, "batch_size": 50,
               "epochs": 10, "clipnorm": 0.0, "levels": None, "hidden": 512},
    "copy": {"optimizer": "rmsprop", "lr": 1e-3, "lr_decay": 1.0, "batch_size": 50,
             "epochs": 10, "clipnorm": 0.0, "levels": None, "hidden": 512},
    "smnist": {"optimizer": "rmsprop", "lr": 1e-3, "lr_decay": 1.0, "batch_size": 64,
               "epochs": 100, "clipnorm": 1.0, "levels": None, "hidden": 58},
}
_PER_EXPERIMENT = "(default: the experiment's, see EXPERIMENT_DEFAULTS)"


@dataclasses.dataclass
class LearnableConfig(SpectralOptions, TrainingOptions, RunOptions):
    """Everything a learnable-wavelet run varies (the flags of `apps/learnable_wavelet.py`).

    `None` for `epochs`, `batch_size`, `lr`, `optimizer`, `lr_decay`, `clipnorm`, `levels` and
    `hidden` means the experiment's default (`EXPERIMENT_DEFAULTS`), resolved by `validate`.
    """

    # shared settings: per-experiment defaults
    epochs: int | None = option(None, f"Training epochs {_PER_EXPERIMENT}.", kind="integer")
    batch_size: int | None = option(None, f"Batch size {_PER_EXPERIMENT}.", kind="integer")
    lr: float | None = option(None, f"Learning rate {_PER_EXPERIMENT}.", kind="float")
    optimizer: str | None = option(None, f"Optimizer {_PER_EXPERIMENT}.")
    lr_decay: float | None = option(None, "Learning-rate step decay per epoch (1: constant), "
                                    f"with --lr_schedule constant only {_PER_EXPERIMENT}.",
                                    kind="float")
    clipnorm: float | None = option(None, f"Gradient-norm clipping (0: off) {_PER_EXPERIMENT}.",
                                    kind="float")
    # the experiment
    experiment: str = option("mnist", "Which experiment to run.", choices=EXPERIMENTS)
    fc1: str = option("wavelet", "MNIST CNN: the fc1 layer.", choices=FC1_CHOICES)
    dense_units: int = option(500, "MNIST CNN: width of the dense fc1.", minimum=1)
    rnn: str = option("wavelet", "Sequence tasks: GRU variant.", choices=RNN_CHOICES)
    hidden: int | None = option(None, f"Sequence tasks: GRU hidden size {_PER_EXPERIMENT}.",
                                minimum=1, kind="integer")
    compress: tuple = option(("state", "reset", "update"), "Sequence tasks: recurrent matrices "
                             "made structured (any of state, reset, update, or all).",
                             list_of=str)
    levels: int | None = option(None, f"Wavelet levels {_PER_EXPERIMENT}; mnist: 6, the "
                                "sequence tasks: the deepest allowed.", minimum=1,
                                kind="integer")
    filter_length: int = option(6, "Length of each learnable wavelet filter.", minimum=2)
    init_wavelet: str = option("haar", "Initial wavelet (a discrete PyWavelets name, "
                               "zero-padded) or 'random'.")
    wavelet_loss_weight: float = option(1.0, "Weight of the wavelet loss (0: off).",
                                        minimum=0.0)
    seq_len: int = option(150, "Adding / copy problems: sequence length T.", minimum=2)
    steps_per_epoch: int = option(50, "Adding / copy problems: generated batches per epoch.",
                                  minimum=1)
    n_val: int = option(500, "Adding / copy problems: validation set size.", minimum=1)
    n_test: int = option(2000, "Adding / copy problems: test set size.", minimum=1)

    def validate(self):
        """Resolves the experiment's defaults; raises `OptionError` for any invalid field."""

        if self.experiment not in EXPERIMENTS:
            raise OptionError("experiment", f"`experiment` must be one of "
                              f"{', '.join(EXPERIMENTS)}. Received: experiment={self.experiment!r}")
        for name, value in EXPERIMENT_DEFAULTS[self.experiment].items():
            if getattr(self, name) is None:
                if name == "lr_decay" and self.lr_schedule not in ("constant", "none"):
                    value = 1.0  # the chosen schedule replaces the experiment's step decay
                setattr(self, name, value)
        if self.max_train_samples == 0:
            self.max_train_samples = None
        self.compress = tuple(self.compress)
        validate_common(self)
        try:
            self.compress = tuple(parse_compress(list(self.compress)))
        except ValueError as e:
            raise OptionError("compress", str(e)) from None
        task = self.experiment
        try:
            spectral_setup(self)
        except ValueError as e:
            raise OptionError("tau_init", str(e)) from None
        if self.spectral_reg:
            if task not in IMAGE_EXPERIMENTS:
                raise OptionError("spectral_reg", "spectral truncation needs image inputs; "
                                  f"experiment {task} has sequences (use it with "
                                  f"{' or '.join(IMAGE_EXPERIMENTS)}). Received: spectral_reg=True")
            if self.truncation_epochs > self.epochs:
                raise OptionError("truncation_epochs", "`truncation_epochs` must be <= `epochs`: "
                                  "the model must also train on unfiltered images. Received: "
                                  f"truncation_epochs={self.truncation_epochs}, epochs={self.epochs}")
        if self.augment not in ("none", None, "") and task not in IMAGE_EXPERIMENTS:
            raise OptionError("augment", f"`augment` needs image inputs; experiment {task} has "
                                         f"generated sequences. Received: augment={self.augment!r}")
        for name, used in (("saliency_images", self.saliency_images),
                           ("cv_folds", self.cv_folds), ("ensemble", self.ensemble > 1)):
            if used and task != "mnist":
                raise OptionError(name, f"`{name}` is supported for experiment mnist only. "
                                        f"Received: {name}={getattr(self, name)}, "
                                        f"experiment={task!r}")
        if (self.dropout or self.batch_norm) and task != "mnist":
            raise OptionError("dropout" if self.dropout else "batch_norm",
                              "`dropout` and `batch_norm` follow hidden Dense/Conv layers; the "
                              f"{task} model (a GRU and a Dense read-out) has none. Use them "
                              "with experiment mnist.")
        # The structured layers' own argument checks (filter length, wavelet name, levels, loss
        # weight) run now rather than after loading data.
        try:
            if task == "mnist" and self.fc1 == "wavelet":
                WaveletDense(1 << 20, levels=None, filter_length=self.filter_length,
                             init_wavelet=self.init_wavelet,
                             wavelet_loss_weight=self.wavelet_loss_weight, seed=self.seed,
                             _standalone=False)
            elif task != "mnist" and self.rnn == "wavelet":
                WaveletGRUCell(self.hidden, compress=self.compress, levels=self.levels,
                               filter_length=self.filter_length, init_wavelet=self.init_wavelet,
                               wavelet_loss_weight=self.wavelet_loss_weight, seed=self.seed)
        except ValueError as e:
            raise OptionError("init_wavelet" if "wavelet" in str(e).lower() else "levels",
                              str(e)) from None
        return self


#: The name of this config before the experiment engine (same fields).
ExperimentConfig = LearnableConfig


class LearnableRecipe(Recipe):
    """`apps/learnable_wavelet.py`: the paper's MNIST CNN and sequence tasks."""

    name = "learnable"
    config_class = LearnableConfig

    def run_prefix(self, config):
        variant = config.fc1 if config.experiment == "mnist" else config.rnn
        return f"learnable-{config.experiment}-{variant}"

    def load_data(self, config):
        if config.experiment in ("adding", "copy"):
            return _generated_task(config)
        return load_data(config)

    def train(self, run, splits, prepared):
        if run.config.experiment == "mnist":
            return self._mnist(run, splits)
        return self._sequence(run, splits)

    # ---- the MNIST CNN ----------------------------------------------------------------
    def _mnist(self, run, splits):
        c = run.config
        spectral = spectral_setup(c, log_dir=c.log_dir)
        train, validation, _ = run.datasets(splits)
        image_shape = tuple(splits.x_train.shape[1:])
        num_classes = int(splits.info["num_classes"])
        model = run.build(lambda: build_model("learnable_cnn", image_shape, num_classes,
                                              options=c), num_classes, input_shape=image_shape)
        steps = run.steps_per_epoch(len(splits.x_train))
        run.compile(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    ["accuracy"], steps, c.epochs)
        initial_filters = {l.name: l.filters() for l in wavelet_layers(model)}
        fit = self._fit(run, model, train, validation, spectral, "val_accuracy", "max",
                        shuffle=False)
        test = run.evaluate(model, splits)
        fc1 = next((l for l in model.layers if l.name == "fc1"), None)
        report = {
            **self._common(run, splits.info), "fc1": c.fc1, "params": _count_trainable(model),
            "fc1_params": None if fc1 is None else
            int(sum(int(np.prod(v.shape)) for v in fc1.trainable_variables)),
            "test_accuracy": float(test["accuracy"]), "test_loss": float(test["test_loss"]),
            "test_metrics": test, **self._fit_record(fit, "val_accuracy", "best_val_accuracy"),
            "spectral": _spectral(c, fit.history, "training images"),
            "wavelet": wavelet_summary(model)}
        return self._finish(run, model, splits, report, initial_filters)

    # ---- the sequence tasks -------------------------------------------------------------
    def _sequence(self, run, task_data):
        c = run.config
        task = c.experiment
        spectral = spectral_setup(c, log_dir=c.log_dir)
        if task == "smnist":
            task_data = _smnist_task(run, task_data)
        x_val, y_val = task_data["x_val"], task_data["y_val"]
        x_test, y_test = task_data["x_test"], task_data["y_test"]
        if task == "adding":
            units, return_sequences = 1, False
            loss, metrics = keras.losses.MeanSquaredError(), (lambda: [AddingAccuracy()])
            monitor, metric_key = "val_adding_accuracy", "adding_accuracy"
        else:
            units = COPY_CATEGORIES if task == "copy" else 10
            return_sequences = task == "copy"
            loss, metrics = keras.losses.SparseCategoricalCrossentropy(from_logits=True), \
                ["accuracy"]
            monitor = "val_loss" if task == "copy" else "val_accuracy"
            metric_key = "accuracy"
        mode = "min" if monitor == "val_loss" else "max"
        input_shape = tuple(x_val.shape[1:])
        model = run.build(lambda: build_model("sequence_rnn", input_shape, units, options=c,
                                              return_sequences=return_sequences), units,
                          input_shape=input_shape)
        steps = task_data["steps_per_epoch"]
        run.compile(model, loss, metrics, steps, c.epochs)
        initial_filters = {l.name: l.filters() for l in wavelet_layers(model)}
        fit = self._fit(run, model, task_data["train"], (x_val, y_val), spectral, monitor, mode,
                        steps_per_epoch=steps, validation_batch_size=256, shuffle=False,
                        sequence_image_shape=task_data.get("image_shape"))
        pred = model.predict(x_test, batch_size=256, verbose=0)
        result = {}
        if task == "adding":
            result["test_accuracy"] = adding_accuracy(y_test, pred)
            result["test_mse"] = float(np.mean((pred.reshape(-1) - y_test.reshape(-1)) ** 2))
            result["baseline_mse_predict_1"] = float(np.mean((1.0 - y_test.reshape(-1)) ** 2))
        elif task == "copy":
            labels = pred.argmax(-1)
            result["test_accuracy"] = float(np.mean(labels[:, -COPY_DIGITS:]
                                                    == y_test[:, -COPY_DIGITS:]))
            result["all_steps_accuracy"] = float(np.mean(labels == y_test))
            top = pred.max(-1, keepdims=True)
            logp = pred - np.log(np.sum(np.exp(pred - top), -1, keepdims=True)) - top
            result["test_loss"] = float(-np.mean(np.take_along_axis(logp, y_test[..., None], -1)))
            # Blanks everywhere, then a uniform guess over the 8 symbols (the memoryless
            # baseline).
            result["baseline_loss"] = float(COPY_DIGITS * np.log(8) / (c.seq_len + 2 * COPY_DIGITS))
        else:
            result["test_accuracy"] = float(np.mean(pred.argmax(-1) == y_test))
        record = self._fit_record(fit, monitor, "best_val")
        report = {
            **self._common(run, task_data["info"]), "rnn": c.rnn,
            "compress": list(c.compress) if c.rnn != "gru" else [],
            "params": _count_trainable(model), **result,
            **record, "monitor": monitor, "metric": metric_key, "steps_per_epoch": steps,
            "train_steps": steps * record["epochs_run"], "wavelet": wavelet_summary(model),
            "spectral": _spectral(c, fit.history, "training images, before serialisation")}
        return self._finish(run, model, task_data, report, initial_filters,
                            x_test=x_test, y_test=y_test)

    # ---- shared pieces ------------------------------------------------------------------
    @staticmethod
    def _fit(run, model, train, validation, spectral, monitor, mode, **kwargs):
        c = run.config
        # The best validation epoch is always selected (its weights restored); with spectral
        # truncation only unfiltered epochs count, so the curriculum is never cut short by
        # early stopping nor the model taken from a filtered epoch.
        selection = Selection(monitor, mode, patience=c.early_stopping_patience, restore="best",
                              start_from_epoch=c.truncation_epochs if spectral.enabled else 0)
        return run.fit(model, train, validation, c.epochs, "train", selection, spectral=spectral,
                       tensorboard={}, **kwargs)

    @staticmethod
    def _fit_record(fit, monitor, best_key):
        values = fit.history.get(monitor) or []
        best = fit.best_epoch
        return {"best_epoch": best or 0,
                best_key: float(values[best - 1]) if best and best <= len(values) else None,
                "epochs_run": fit.epochs_run,
                "seconds_per_epoch": [float(t) for t in fit.seconds_per_epoch],
                "train_seconds": float(fit.seconds), "history": fit.history}

    @staticmethod
    def _common(run, info):
        c = run.config
        return {"experiment": c.experiment, "data": info, "config": config_dict(c),
                "machine": machine_info(), "run_dir": str(run.dir)}

    def _finish(self, run, model, splits, report, initial_filters, x_test=None, y_test=None):
        c = run.config
        if x_test is not None:  # the sequence tasks: saliency does not apply
            splits = _TestSplit(x_test, y_test)
        report.update(run.finish(model, splits, export_errors="record"))
        if run.build_info["transfer"] is not None:
            report["transfer"] = run.build_info["transfer"]
        regularization = _regularization_report(model, c)
        if regularization:
            report["regularization"] = regularization
        run.write_report(report)
        report["model_path"] = str(run.save_model(model, "model.keras"))
        if c.plots:
            report["filter_plot"] = run.write_figure(
                lambda p: plot_filters(model, p, initial=initial_filters), "filters.png")
        return report

    # ---- folds and members --------------------------------------------------------------
    def member_scalars(self, report):
        return {k: v for k, v in report["test_metrics"].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)}

    def member_model(self, report):
        return keras.saving.load_model(report["model_path"], compile=False)

    def member_file(self, report):
        return report["model_path"]

    def members_report(self, kind, result, parent, config, splits, reports):
        base = {"experiment": config.experiment, "fc1": config.fc1, "data": dict(splits.info),
                "config": config_dict(config), "machine": machine_info(),
                "run_dir": str(parent.dir), "runs": [r["run_dir"] for r in reports]}
        members = [{"seed": r["config"]["seed"],
                    **{k: r[k] for k in ("best_epoch", "best_val_accuracy", "epochs_run",
                                         "train_seconds", "test_accuracy", "run_dir")}}
                   for r in reports]
        if kind == "cv":
            acc = result["summary"]["accuracy"]
            return {**base, "test_accuracy": acc["mean"], "test_accuracy_std": acc["std"],
                    "cross_validation": result, "folds": members}
        model = result.pop("model")
        extras = result.pop("training_extras")
        test = result["test"]
        report = {**base, "params": _count_trainable(model),
                  "test_accuracy": float(test["accuracy"]), "test_loss": float(test["test_loss"]),
                  "test_metrics": test, "ensemble": result, "members": members,
                  "train_seconds": float(sum(r["train_seconds"] for r in reports)),
                  "model_path": result["ensemble_file"]["path"], **extras}
        regularization = _regularization_report(model, config)
        if regularization:
            report["regularization"] = regularization
        return report


@dataclasses.dataclass
class _TestSplit:
    """The test arrays of a generated task, in the shape `Run.finish` reads."""

    x_test: np.ndarray
    y_test: np.ndarray
    info: dict = dataclasses.field(default_factory=dict)


def _generated_task(config):
    """The adding / copy data: a generated training stream and fixed validation / test sets."""

    make_batch = adding_batch if config.experiment == "adding" else copy_batch
    # Disjoint seeds: training stream, validation set and test set never share a generator.
    x_val, y_val = make_batch(config.n_val, config.seq_len, np.random.default_rng([config.seed, 1]))
    x_test, y_test = make_batch(config.n_test, config.seq_len,
                                np.random.default_rng([config.seed, 2]))
    return {"train": generated_dataset(make_batch, config.batch_size, config.seq_len,
                                       [config.seed, 0]),
            "steps_per_epoch": config.steps_per_epoch, "x_val": x_val, "y_val": y_val,
            "x_test": x_test, "y_test": y_test,
            "info": {"seq_len": config.seq_len, "n_val": config.n_val, "n_test": config.n_test,
                     "train_samples_per_epoch": config.steps_per_epoch * config.batch_size}}


def _smnist_task(run, splits):
    """Sequential MNIST: images augmented and filtered as pictures, read out pixel by pixel."""

    c = run.config
    image_shape = tuple(splits.x_train.shape[1:])
    seq_shape = (-1, int(np.prod(image_shape[:2])), image_shape[-1])
    train = (tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train))
             .shuffle(len(splits.x_train), seed=c.seed).batch(c.batch_size))
    # Augmentation acts on the picture, before it is read out pixel by pixel.
    train = augment_training_dataset(train, c.augment, image_shape, c.seed)
    train = train.map(lambda x, y: (tf.reshape(x, seq_shape), y)).prefetch(2)
    return {"train": train, "steps_per_epoch": run.steps_per_epoch(len(splits.x_train)),
            "x_val": splits.x_val.reshape(len(splits.x_val), -1, 1), "y_val": splits.y_val,
            "x_test": splits.x_test.reshape(len(splits.x_test), -1, 1), "y_test": splits.y_test,
            "info": splits.info, "image_shape": image_shape}


def _count_trainable(model):
    return int(sum(int(np.prod(v.shape)) for v in model.trainable_variables))


def _spectral(config, history, applied_to):
    return spectral_report(config, history.get("spectral_tau", []),
                           history.get("spectral_phase", []), applied_to=applied_to)


def _regularization_report(model, config):
    if not (config.l1 or config.l2 or config.dropout or config.batch_norm):
        return None
    # an ensemble's members share one architecture: report the first one's layers
    model = next((l for l in model.layers if isinstance(l, keras.Model)), model)
    kernel = [l.name for l in model.layers if isinstance(l, KERNEL_LAYERS)]
    structured = [l.name for l in model.layers if l.weights and not isinstance(l, KERNEL_LAYERS)
                  and not isinstance(l, keras.layers.BatchNormalization)]
    return {"l1": config.l1, "l2": config.l2, "dropout": config.dropout,
            "batch_norm": config.batch_norm,
            "penalized_layers": kernel if (config.l1 or config.l2) else [],
            "layers_without_kernel_penalty": structured}


RECIPE = LearnableRecipe()


def run_learnable(config, splits=None):
    """Runs the learnable-wavelet experiment of `config`; returns its report.

    Raises:
        OptionError: for invalid settings, before any data is loaded or training starts.
    """
    return RECIPE.execute(config, splits)


def format_summary(report):
    """A short human-readable summary of a report."""
    import json

    keys = ("experiment", "fc1", "rnn", "params", "test_accuracy", "test_accuracy_std",
            "best_epoch", "epochs_run", "train_seconds", "export")
    return json.dumps({k: report[k] for k in keys if k in report}, indent=2)
