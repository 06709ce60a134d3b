"""The experiment engine: one run of any recipe, from its folder to its report.

Every app and the tuner run through the same steps; a recipe (`dwt_keras.experiments.
compression`, `.transformer`, `.learnable`, `.spectral_study`, `.sweep`) supplies its config,
its model and its phases, and calls these steps instead of carrying its own copy:
    validate (before anything is loaded or created)
      -> environment: seed, mixed-precision policy, tf.distribute strategy  (`Environment`)
      -> data: the splits, subsetting with one meaning                    (`load_data`)
      -> run folder: new and timestamped, or named by the settings so that re-running the same
         command resumes it; `status.json` says running / interrupted / failed / done  (`Run`)
      -> build (init_from, regularisation, under the strategy)            (`Run.build`)
      -> compile (the one optimizer factory and learning-rate schedule)   (`Run.compile`)
      -> fit with the shared callbacks (spectral truncation, selection on the validation
         split, early stopping, TensorBoard, epoch timing; checkpoints and history for
         resumable runs)                                                  (`Run.fit`)
      -> evaluate on the test split                                       (`Run.evaluate`)
      -> finish: saliency maps, export, transfer info                     (`Run.finish`)
      -> report.json, written after each phase and atomically             (`Run.write_report`)

`--cv_folds` and `--ensemble` wrap a whole recipe run, once for every recipe
(`dwt_keras.experiments.members`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import importlib
import json
import os
import pathlib
import shutil
import socket
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from dwt_keras import data
from dwt_keras.compression.sizes import save_keras_atomic
from dwt_keras.compression.storage import load_compressed
from dwt_keras.data import make_datasets
from dwt_keras.evaluation import evaluate_classifier
from dwt_keras.spectral.wrapper import PlainModelCallback
from dwt_keras.training import regularization, transfer
from dwt_keras.training.augmentation import augment_training_dataset, example_augmentation
from dwt_keras.training.callbacks import (
    EpochTimer,
    ResumableEarlyStopping,
    early_stopping_state,
    read_history,
    standard_callbacks,
)
from dwt_keras.training.export import export_model
from dwt_keras.training.optimizers import make_optimizer
from dwt_keras.training.saliency import write_saliency_pngs
from dwt_keras.training.schedules import make_learning_rate
from dwt_keras.training.strategy import get_strategy, mixed_precision_policy
from dwt_keras.utils.io import atomic_write_json, check_writable_dir, make_run_dir
from dwt_keras.utils.machine import cpu_model
from dwt_keras.utils.options import OptionError
from dwt_keras.utils.seeding import set_seed

__all__ = ["Selection", "FitResult", "Environment", "Run", "load_data", "prepare_model",
           "fit_verbosity", "run_state", "is_finished", "machine_info", "history_dict"]

STATUS_FILE = "status.json"
REPORT_FILE = "report.json"
CONFIG_FILE = "config.json"
STATES = ("running", "interrupted", "failed", "done")


# --------------------------------------------------------------------------------------------
# Small pieces


def machine_info():
    """What machine a run used (for reports)."""
    import platform

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "tensorflow": tf.__version__,
            "keras": keras.__version__,
            "gpus": [d.name for d in tf.config.list_physical_devices("GPU")]}


def history_dict(history):
    """A Keras `History` (or a dict of lists) as `{metric: [float, ...]}`."""
    if history is None:
        return {}
    items = history.history.items() if hasattr(history, "history") else history.items()
    return {k: [float(v) for v in vals] for k, vals in items}


def fit_verbosity(verbose):
    """Keras' `fit` verbosity for the `verbose` option: 1 is a progress bar on a terminal and
    one line per epoch elsewhere (logs, CI), 0 is quiet, 2 one line per epoch."""
    if verbose == 1:
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def _utc_now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def run_state(folder):
    """The state of a run folder: `"done"`, `"running"`, `"interrupted"`, `"failed"`, or None.

    A folder whose `status.json` says running but whose process is gone (killed on this host)
    reads as `"interrupted"`. A folder written before `status.json` existed counts as done when
    it holds a report.
    """
    folder = pathlib.Path(folder)
    path = folder / STATUS_FILE
    if not path.exists():
        return "done" if (folder / REPORT_FILE).exists() else None
    try:
        status = json.loads(path.read_text())
    except (OSError, ValueError):
        return "failed"
    state = status.get("state")
    if state == "running" and status.get("host") == socket.gethostname() \
            and not _pid_alive(status.get("pid")):
        return "interrupted"
    return state


def is_finished(folder):
    """True when the run in `folder` completed (readers of finished runs check this)."""
    return run_state(folder) == "done"


# --------------------------------------------------------------------------------------------
# Selection and fit results


@dataclasses.dataclass
class Selection:
    """How a training phase picks the weights it ends with (always on the validation split).

    Args:
        monitor: the metric (`val_loss`, `val_accuracy`, ...).
        mode: `"min"` or `"max"`.
        patience: early stopping after this many epochs without improvement (0: off).
        restore: `"best"` (end with the best epoch's weights, also without early stopping),
            `"best_if_stopping"` (only when early stopping is on: Keras' `EarlyStopping`),
            `"last"` (the last epoch's weights).
        start_from_epoch: epochs not considered (e.g. those of a spectral curriculum).
        checkpoint: resumable runs: the best epoch goes to `best.keras` (reloaded for the
            report), the last to `last.keras`, the history to `history.csv`, and
            `BackupAndRestore` lets a re-run continue an interrupted fit.
    """

    monitor: str = "val_loss"
    mode: str = "min"
    patience: int = 0
    restore: str = "best_if_stopping"
    start_from_epoch: int = 0
    checkpoint: bool = False

    def describe(self):
        return {"monitor": self.monitor, "mode": self.mode, "patience": int(self.patience),
                "restore": self.restore, "start_from_epoch": int(self.start_from_epoch),
                "checkpoint": bool(self.checkpoint)}


@dataclasses.dataclass
class FitResult:
    """What `Run.fit` returns.

    Attributes:
        history: `{metric: [value per epoch]}` (for resumable runs: every epoch so far).
        epochs_run: epochs trained in this phase (resumable: in all sessions).
        best_epoch: the 1-based epoch whose weights the model ends with, when selected.
        best_value: the monitor's value at `best_epoch`.
        seconds: wall time of this `fit` call.
        seconds_per_epoch: wall time of each epoch of this call.
        stopped_early: early stopping ended the phase.
        trainer: the model that was fitted (the spectral wrapper, or the model itself).
    """

    history: dict
    epochs_run: int
    best_epoch: int | None
    best_value: float | None
    seconds: float
    seconds_per_epoch: list
    stopped_early: bool
    trainer: object = None


# --------------------------------------------------------------------------------------------
# Environment and data


class Environment:
    """Seed, mixed-precision policy and `tf.distribute` strategy of a run (a context manager).

    The previous global precision policy is restored on exit, so one process can run several
    recipes (tests, folds, the tuner).
    """

    def __init__(self, config):
        self.config = config
        self.strategy = None
        self._previous_policy = None

    def __enter__(self):
        set_seed(int(self.config.seed))
        if getattr(self.config, "deterministic", False):
            # Seeded runs then repeat exactly (measured: identical metrics run to run on CPU).
            tf.config.experimental.enable_op_determinism()
        self._previous_policy = keras.mixed_precision.global_policy()
        if getattr(self.config, "mixed_precision", False):
            keras.mixed_precision.set_global_policy(mixed_precision_policy())
        try:
            self.strategy = get_strategy(self.config.strategy)
        except ValueError as e:
            raise OptionError("strategy", str(e)) from None
        return self

    def __exit__(self, *exc):
        keras.mixed_precision.set_global_policy(self._previous_policy)
        return False


def load_data(config, image_data=True):
    """The train / validation / test splits of `config.dataset`, subset as the config says.

    Subsetting has one meaning everywhere: `max_train_samples` keeps the first N images of the
    training split (the split itself is a seeded draw), `max_eval_samples` the first N of the
    validation and of the test split; 0 or None keeps all. The report records the sizes used.

    Raises:
        OptionError: an unknown or unavailable dataset, with the one clear reason.
    """

    try:
        splits = data.load_arrays(config.dataset, data_dir=config.data_dir,
                                  validation_split=config.validation_split, seed=config.seed)
    except (FileNotFoundError, ValueError) as e:
        raise OptionError("dataset", f"Dataset {config.dataset!r} is not available: "
                                     f"{_first_line(e)}") from None
    info = dict(splits.info)
    n = config.max_train_samples
    if n and n < len(splits.x_train):
        splits.x_train, splits.y_train = splits.x_train[:n], splits.y_train[:n]
        info["n_train"], info["subset_train"] = int(n), True
    n = config.max_eval_samples
    if n:
        if n < len(splits.x_val):
            splits.x_val, splits.y_val = splits.x_val[:n], splits.y_val[:n]
            info["n_val"], info["subset_val"] = int(n), True
        if n < len(splits.x_test):
            splits.x_test, splits.y_test = splits.x_test[:n], splits.y_test[:n]
            info["n_test"], info["subset_test"] = int(n), True
    splits.info = info
    return splits


def pipelines(splits, batch_size, augment, seed, one_hot_classes=None):
    """`(train, val, test)` tf.data pipelines of `splits`, `augment` on train only: what every
    recipe's `fit()` sees (`Run.datasets` with the run's config).

    Args:
        splits: the `DatasetSplits`.
        batch_size: batch size of the three pipelines.
        augment: the augmentation spec (`--augment`).
        seed: shuffling / augmentation seed.
        one_hot_classes: map the labels to one-hot vectors of this width (needed by label
            smoothing, mixup and cutmix).
    """
    seed = int(seed)
    train, val, test = make_datasets(splits, batch_size=int(batch_size), seed=seed,
                                     augment=example_augmentation(augment))
    autotune = tf.data.AUTOTUNE
    if one_hot_classes:
        def onehot(x, y):
            return x, tf.one_hot(tf.cast(tf.reshape(y, [-1]), tf.int32), one_hot_classes)

        train = train.map(onehot, num_parallel_calls=autotune)
        val = val.map(onehot, num_parallel_calls=autotune) if val is not None else None
        test = test.map(onehot, num_parallel_calls=autotune)
    train = augment_training_dataset(train, augment, tuple(splits.x_train.shape[1:]), seed)
    return train.prefetch(autotune), val, test


def _first_line(error):
    text = str(error).strip()
    return text.splitlines()[-1] if text else type(error).__name__


#: The modules that register Keras serializables (layers, models, regularizers, schedules). A
#: `.keras` file holding one of them loads only after its module ran; the capability packages
#: import theirs lazily, so a fresh process that starts from such a file (`--init_from`, before
#: any model is built) must import them first.
SERIALIZABLE_MODULES = (
    "dwt_keras.compression.coefficient_domain", "dwt_keras.compression.penalty",
    "dwt_keras.layers.dwt2d",
    "dwt_keras.learnable.fastfood", "dwt_keras.learnable.recurrent", "dwt_keras.learnable.tasks",
    "dwt_keras.learnable.wavelet_dense",
    "dwt_keras.spectral.interscale", "dwt_keras.spectral.truncation", "dwt_keras.spectral.wrapper",
    "dwt_keras.training.ensemble", "dwt_keras.training.schedules",
    "dwt_keras.transformer.attention", "dwt_keras.transformer.blocks",
    "dwt_keras.transformer.kernel", "dwt_keras.transformer.models",
    "dwt_keras.transformer.positional", "dwt_keras.transformer.tokenizer",
)


def register_serializables():
    """Imports `SERIALIZABLE_MODULES`, so that any file of this project's models loads."""
    for name in SERIALIZABLE_MODULES:
        importlib.import_module(name)


def prepare_model(config, strategy, build_fn, num_classes, input_shape=None):
    """Builds the model (or starts from `init_from`) and regularises it, under `strategy`.

    Sequential / Functional models: `init_from` loads the file as the model (head replaced when
    the classes differ); `l1`/`l2`/`dropout`/`batch_norm` clone it with the penalties and layers.
    Subclassed models: the configured model is built and `init_from` copies the file's weights
    into it by path; `l1`/`l2` are set on its kernel variables (`dropout` is the model's own
    setting; `batch_norm` is refused by recipes of such models).

    Returns:
        `(model, info)`: the uncompiled model, and `{"transfer": ..., "penalised_kernels": ...}`.
    """

    c = config
    loaders = (load_compressed,)
    info, penalised = None, []
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    if c.init_from:
        register_serializables()
    with scope:
        source = transfer.load_init_model(c.init_from, loaders) if c.init_from else None
        if source is not None and _is_functional(source):
            model, info = transfer.prepare_transfer(c.init_from, num_classes, freeze=c.freeze,
                                                    model=source)
        else:
            model = build_fn()
            if source is not None:
                info = transfer.load_weights_from(model, c.init_from, freeze=c.freeze,
                                                  loaders=loaders)
        if _is_functional(model):
            model = regularization.apply_regularization(
                model, l1=c.l1, l2=c.l2, dropout=c.dropout, batch_norm=c.batch_norm)
            if info is not None and c.freeze:
                transfer.freeze_all_but_head(model)  # inserted layers stay frozen too
        else:
            penalised = regularization.regularize_kernel_variables(model, c.l1, c.l2)
    if info is not None:
        object.__setattr__(model, "_dwt_transfer", info)
    if input_shape is not None and getattr(model, "inputs", None):
        got = tuple(model.inputs[0].shape[1:])
        if got != tuple(input_shape):
            raise OptionError("init_from", f"The model takes inputs of shape {got}; the data has "
                                           f"{tuple(input_shape)}. "
                                           f"Received: init_from={c.init_from!r}")
    return model, {"transfer": info, "penalised_kernels": penalised}


# --------------------------------------------------------------------------------------------
# The run


class Run:
    """One run of a recipe: its folder, status, report, and the shared training steps.

    Create it with `Run.new` (a new timestamped folder) or `Run.named` (a folder named by the
    settings, resumable), inside an `Environment`. Use it as a context manager around the
    recipe's work: `status.json` then says `running` with the current phase, and ends as `done`,
    `interrupted` (Ctrl-C: one line says where the partial run is and how to resume it) or
    `failed` (with the error).

    Args:
        config: the recipe config.
        directory: the run folder (exists).
        environment: the entered `Environment`.
        resumable: the folder is named by the settings and re-running the command resumes it.
        recipe: the recipe's name (for status.json and messages).
        track: write `status.json` (False for a tuner's trial, whose folder is KerasTuner's).
        log_name: the TensorBoard sub-folder of this run under `log_dir` (default: the run
            folder's name); each phase logs to `<log_dir>/<log_name>/<phase>`.
    """

    def __init__(self, config, directory, environment, resumable=False, recipe="run",
                 track=True, log_name=None):
        self.config = config
        self.dir = pathlib.Path(directory)
        self.track = track
        self.log_name = log_name or self.dir.name
        self.environment = environment
        self.resumable = resumable
        self.recipe = recipe
        self.report = {}
        self.files = {}
        self.phase = "starting"
        self.t_start = time.perf_counter()
        self.build_info = {"transfer": None, "penalised_kernels": []}

    # ---- folders -------------------------------------------------------------------------
    @classmethod
    def new(cls, config, environment, prefix, recipe="run"):
        """A new, unique, timestamped run folder `<save_dir>/<run_name or prefix>-<time>`."""

        return cls(config, make_run_dir(config.save_dir, config.run_name or prefix), environment,
                   resumable=False, recipe=recipe)

    @classmethod
    def named(cls, config, environment, name, recipe="run"):
        """The resumable folder `<save_dir>/<name>` (created by the first file written, so a
        setting that fails before then leaves nothing behind)."""
        return cls(config, check_save_dir(config, create=False) / name, environment,
                   resumable=True, recipe=recipe)

    @property
    def strategy(self):
        return self.environment.strategy

    def say(self, message):
        if self.config.verbose:
            print(message, flush=True)

    # ---- status ----------------------------------------------------------------------------
    def write_status(self, state, **extra):
        if not self.track:
            return
        status = {"state": state, "phase": self.phase, "recipe": self.recipe,
                  "run_dir": str(self.dir), "pid": os.getpid(), "host": socket.gethostname(),
                  "command": " ".join(sys.argv), "updated_utc": _utc_now(), **extra}
        previous = self.dir / STATUS_FILE
        if previous.exists():
            try:
                status.setdefault("started_utc", json.loads(previous.read_text()).get(
                    "started_utc"))
            except (OSError, ValueError):
                pass
        status.setdefault("started_utc", status["updated_utc"])
        self._guard_disk(lambda: atomic_write_json(self.dir / STATUS_FILE, status),
                         STATUS_FILE)

    def set_phase(self, phase):
        """Records the phase the run is in (status.json), e.g. `dense training`."""
        self.phase = phase
        self.write_status("running")

    def __enter__(self):
        self.write_status("running")
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.phase = "finished"
            self.write_status("done")
            return False
        if issubclass(exc_type, KeyboardInterrupt):
            self.write_status("interrupted")
            how = ("re-run the same command to resume it" if self.resumable else
                   "its report.json holds the phases that finished; delete the folder to "
                   "discard it")
            print(f"\nInterrupted during {self.phase}: the partial run is in {self.dir} "
                  f"(status.json: interrupted); {how}.", file=sys.stderr, flush=True)
            return False
        try:
            self.write_status("failed", error=f"{exc_type.__name__}: {_first_line(exc)}")
        except Exception:  # noqa: BLE001 -- a full disk must not hide the original error
            pass
        return False

    # ---- files -----------------------------------------------------------------------------
    def _guard_disk(self, write, name, needed=None):
        """Runs `write()`; a full disk becomes a clear error naming the folder and the bytes."""
        try:
            return write()
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            free = shutil.disk_usage(self.dir).free if self.dir.exists() else 0
            need = f" about {needed:,} bytes are needed and" if needed else ""
            raise OSError(e.errno, f"No space left on the device for {name} in {self.dir}:"
                                   f"{need} {free:,} bytes are free. Free space (or pass "
                                   "another --save_dir) and run again; the metrics measured "
                                   "so far are in report.json.") from None

    def write_report(self, report=None):
        """Writes `report.json` (the report so far, or `report`) atomically; returns its path.

        Recipes call it after each phase, so the metrics measured so far are never lost.
        """

        if report is not None:
            self.report = report
        self.report.setdefault("run_dir", str(self.dir))
        path = self.dir / REPORT_FILE
        self.files.setdefault("report", str(path))
        self._guard_disk(lambda: atomic_write_json(path, self.report), REPORT_FILE)
        return path

    def write_json(self, name, obj):
        """Writes `<run>/<name>` as JSON atomically (the report goes through `write_report`)."""

        if name == REPORT_FILE:
            return self.write_report(obj)
        path = self.dir / name
        self._guard_disk(lambda: atomic_write_json(path, obj), name)
        return path

    def save_model(self, model, name):
        """Saves `model` (without optimizer state) as `<run>/<name>` atomically; returns the
        path."""

        path = self.dir / name
        self._guard_disk(lambda: save_keras_atomic(model, path), name,
                         needed=4 * int(model.count_params()))
        return path

    def write_figure(self, fn, name):
        """Calls `fn(path)` for a figure; a plot that fails is recorded, never fatal."""
        path = self.dir / name
        try:
            out = self._guard_disk(lambda: fn(path), name)
        except OSError:
            raise
        except Exception as e:  # noqa: BLE001 -- a plot must not cost the run its report
            self.report.setdefault("plot_errors", {})[name] = f"{type(e).__name__}: {e}"
            return None
        return None if out is None else str(out)

    # ---- model -----------------------------------------------------------------------------
    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def build(self, build_fn, num_classes, input_shape=None):
        """`prepare_model` under this run's strategy; `run.build_info` gets its info."""
        model, self.build_info = prepare_model(self.config, self.strategy, build_fn, num_classes,
                                             input_shape)
        return model

    def steps_per_epoch(self, n_train):
        return max(1, int(np.ceil(int(n_train) / int(self.config.batch_size))))

    def learning_rate(self, steps_per_epoch, epochs, lr=None):
        """The phase's learning-rate schedule from the config (`make_learning_rate`)."""

        c = self.config
        return make_learning_rate(c.lr if lr is None else lr, steps_per_epoch, epochs,
                                  schedule=c.lr_schedule, warmup_epochs=c.warmup_epochs,
                                  lr_decay=c.lr_decay)

    def make_optimizer(self, steps_per_epoch, epochs, lr=None):
        """The one optimizer factory with the config's settings and the phase's schedule."""

        c = self.config
        return make_optimizer(c.optimizer, self.learning_rate(steps_per_epoch, epochs, lr),
                              clipnorm=c.clipnorm, weight_decay=c.weight_decay,
                              momentum=c.momentum)

    def compile(self, model, loss, metrics, steps_per_epoch, epochs, lr=None, optimizer=None):
        """Compiles `model` under the strategy with the config's optimizer and schedule.

        Args:
            model: the model.
            loss: a Keras loss.
            metrics: metric names, or a function returning fresh metric objects (a spectral
                training wrapper is compiled with its own).
            steps_per_epoch, epochs: the phase, for the learning-rate schedule.
            lr: the phase's base learning rate (default: the config's).
            optimizer: an optimizer to use instead of the config's.
        """
        with self.scope():
            model.compile(optimizer=optimizer or self.make_optimizer(steps_per_epoch, epochs, lr),
                          loss=loss, metrics=_metric_list(metrics),
                          jit_compile=getattr(self.config, "jit_compile", "auto"))
        object.__setattr__(model, "_dwt_metrics", metrics)
        return model

    # ---- data pipelines ----------------------------------------------------------------------
    def datasets(self, splits, one_hot_classes=None, seed=None):
        """`(train, val, test)` tf.data pipelines with the config's `augment` on train only.

        Args:
            splits: the `DatasetSplits`.
            one_hot_classes: map the labels to one-hot vectors of this width (needed by
                label smoothing, mixup and cutmix).
            seed: shuffling / augmentation seed (default: the config's).
        """

        c = self.config
        return pipelines(splits, c.batch_size, c.augment, c.seed if seed is None else seed,
                         one_hot_classes)

    # ---- fit ---------------------------------------------------------------------------------
    def fit(self, model, train, validation, epochs, phase, selection, callbacks=(),
            spectral=None, steps_per_epoch=None, initial_epoch=0, validation_batch_size=None,
            tensorboard=None, sequence_image_shape=None, shuffle=None):
        """Trains `model` for one phase with the shared callbacks; returns a `FitResult`.

        Args:
            model: the compiled plain model.
            train, validation: the data: `tf.data` datasets, or `(x, y)` arrays (batched with
                the config's `batch_size` and shuffled by Keras). Without `validation` nothing
                is selected (checkpointed phases select on the training metric).
            epochs: the epochs of the phase (the `epochs` of `Model.fit`).
            phase: its name (`dense`, `retrain`, `train`): status.json, TensorBoard folder.
            selection: a `Selection`.
            callbacks: further callbacks; with spectral truncation they see the plain model.
            spectral: a `SpectralSetup` (None or disabled: no truncation). The fitted model is
                then a `SpectralTrainingModel` sharing `model`'s variables and optimizer;
                `model` stays free of the truncation layer.
            steps_per_epoch, initial_epoch, validation_batch_size, shuffle: as in `Model.fit`.
            tensorboard: keyword arguments of `standard_callbacks` (with `log_dir` set), or None.
            sequence_image_shape: see `SpectralSetup.wrap`.
        """

        c = self.config
        self.set_phase(_PHASE_TEXT.get(phase, f"training ({phase})"))
        trainer = model
        if spectral is not None and spectral.enabled:
            with self.scope():
                trainer = spectral.wrap(model, sequence_image_shape=sequence_image_shape)
                # Built now: BackupAndRestore (resumable runs) needs a built model to restore.
                trainer.build(_input_shape(train))
                trainer.compile(optimizer=model.optimizer, loss=model.loss,
                                metrics=_metric_list(getattr(model, "_dwt_metrics",
                                                             ["accuracy"])),
                                jit_compile=getattr(c, "jit_compile", "auto"))
        wrapped = trainer is not model

        def plain(callback):
            # Callbacks that save, read or walk the model see the plain classifier.
            return PlainModelCallback(callback, model) if wrapped else callback

        monitor = selection.monitor
        if validation is None and monitor.startswith("val_"):
            monitor = monitor[len("val_"):]
        history_path = self.dir / "history.csv"
        # A history.csv written without the learning-rate column (an older run being resumed)
        # must keep its columns: CSVLogger appends rows under the existing header.
        log_lr = not (selection.checkpoint and history_path.exists()
                      and "learning_rate" not in history_path.read_text().split("\n", 1)[0])
        timer = EpochTimer(log_learning_rate=log_lr)
        cbs = [keras.callbacks.TerminateOnNaN(), timer]
        if wrapped:
            cbs += list(spectral.callbacks)  # first: tau is in the logs the others read
        # The phase's own callbacks (compression schedule and metrics, a tuner's checkpoint)
        # before selection and the loggers: what they add to the logs is selected on and logged.
        cbs += [plain(cb) for cb in callbacks]
        stopper = None
        if selection.checkpoint:
            best_so_far = _best_logged(read_history(history_path), monitor, selection.mode)
            cbs.insert(0, keras.callbacks.BackupAndRestore(str(self.dir / "backup"),
                                                           delete_checkpoint=False))
            cbs.append(plain(keras.callbacks.ModelCheckpoint(
                str(self.dir / "best.keras"), monitor=monitor, mode=selection.mode,
                save_best_only=True, initial_value_threshold=best_so_far)))
            cbs.append(plain(keras.callbacks.ModelCheckpoint(str(self.dir / "last.keras"))))
            if selection.patience:
                stopper = ResumableEarlyStopping(selection.patience, history_path,
                                                 monitor=monitor, mode=selection.mode,
                                                 verbose=1 if c.verbose else 0)
                cbs.append(stopper)
            cbs.append(keras.callbacks.CSVLogger(str(history_path), append=True))
        elif validation is not None and (selection.patience or selection.restore == "best"):
            patience = selection.patience or max(1, int(epochs)) + 1
            start = min(int(selection.start_from_epoch), max(0, int(epochs) - 1))
            stopper = keras.callbacks.EarlyStopping(
                monitor=monitor, mode=selection.mode, patience=patience,
                restore_best_weights=selection.restore in ("best", "best_if_stopping"),
                start_from_epoch=start, verbose=1 if (c.verbose and selection.patience) else 0)
            cbs.append(stopper)
        if tensorboard is not None and c.log_dir:
            tb = dict(tensorboard)
            log_dir = tb.pop("log_dir", None) or os.path.join(c.log_dir, self.log_name, phase)
            cbs += [plain(cb) for cb in standard_callbacks(log_dir, model, **tb)]
        cbs += [plain(cb) for cb in getattr(c, "extra_callbacks", ())]

        stopped_before = False
        if selection.checkpoint and stopper is not None:
            logged = read_history(history_path)
            state = early_stopping_state(logged, monitor, selection.mode)
            # Interrupted after early stopping ended the fit but before the report: do not
            # train on.
            stopped_before = bool(state) and len(logged) > 1 and state[2] >= selection.patience
        kwargs = {}
        if steps_per_epoch is not None:
            kwargs["steps_per_epoch"] = int(steps_per_epoch)
        if validation_batch_size is not None:
            kwargs["validation_batch_size"] = int(validation_batch_size)
        if shuffle is not None:
            kwargs["shuffle"] = shuffle
        if isinstance(train, tuple):  # arrays: Keras batches and shuffles them
            train, kwargs["y"] = train
            kwargs["batch_size"] = int(c.batch_size)
            kwargs.setdefault("shuffle", True)
        else:  # a tf.data pipeline shuffles itself (Keras would warn that it ignores shuffle)
            kwargs.setdefault("shuffle", False)
        t0 = time.perf_counter()
        history = None
        if int(epochs) > int(initial_epoch) and not stopped_before:
            history = trainer.fit(train, validation_data=validation, epochs=int(epochs),
                                  initial_epoch=int(initial_epoch), callbacks=cbs,
                                  verbose=fit_verbosity(c.verbose), **kwargs)
        seconds = time.perf_counter() - t0

        if selection.checkpoint:
            rows = read_history(history_path)
            hist = {k: [r.get(k) for r in rows] for k in dict.fromkeys(k for r in rows for k in r)
                    if k != "epoch"}
            best_path = self.dir / "best.keras"
            if not best_path.exists():  # no epoch ran (epochs == 0): the model as built
                self.save_model(model, "best.keras")
            best_row = max(rows, key=lambda r: _signed(r.get(monitor), selection.mode)) \
                if rows else {}
            return FitResult(
                history=hist, epochs_run=len(rows),
                best_epoch=int(best_row["epoch"]) + 1 if best_row else None,
                best_value=best_row.get(monitor) if best_row else None, seconds=seconds,
                seconds_per_epoch=list(timer.times),
                stopped_early=bool(rows) and len(rows) < int(epochs), trainer=trainer)
        hist = history_dict(history)
        best_epoch, best_value = None, None
        values = hist.get(monitor)
        if stopper is not None and getattr(stopper, "best_weights", None) is not None:
            best_epoch = int(stopper.best_epoch) + 1
        elif values and selection.restore == "best":
            best_epoch = int(np.argmin(values) if selection.mode == "min"
                             else np.argmax(values)) + 1
        if best_epoch and values and best_epoch <= len(values):
            best_value = float(values[best_epoch - 1])
        return FitResult(history=hist, epochs_run=len(timer.times), best_epoch=best_epoch,
                         best_value=best_value, seconds=seconds,
                         seconds_per_epoch=list(timer.times),
                         stopped_early=bool(stopper is not None and
                                            getattr(stopper, "stopped_epoch", 0) > 0),
                         trainer=trainer)

    def load_selected(self, custom_objects=None):
        """The model of the selected epoch of a checkpointed phase (`best.keras`)."""

        return keras.saving.load_model(self.dir / "best.keras", compile=False,
                                       custom_objects=custom_objects)

    # ---- evaluation and finishing ---------------------------------------------------------
    def evaluate(self, model, splits):
        """Classification metrics of `model` on the TEST split (scikit-learn)."""

        return evaluate_classifier(model, splits.x_test, splits.y_test, batch_size=256,
                                   class_names=splits.info.get("class_names"), from_logits=True)

    def finish(self, model, splits, export_errors="raise", export=True):
        """Saliency PNGs (`saliency_images`) and the export (`export`) of the final model.

        Args:
            model: the final (selected, decompressed) model.
            splits: the splits (test images for saliency and the export check).
            export_errors: `"raise"`, or `"record"` (a converter failure is recorded in the
                report with the reason instead of ending a run whose training is done).
            export: False when the recipe exports itself (the compression recipe's `litert`).

        Returns:
            A JSON-ready dict with `saliency`, `export` and `transfer` entries (when on).
        """
        c = self.config
        out = {}
        if c.saliency_images:
            self.set_phase("saliency maps")
            n = int(c.saliency_images)
            out["saliency"] = write_saliency_pngs(
                model, splits.x_test[:n], splits.y_test[:n], self.dir / "saliency",
                class_names=splits.info.get("class_names"))
            for item in out["saliency"].get("files", []):
                self.files.setdefault("saliency", []).append(item)
        if export and c.export not in (None, "none"):
            self.set_phase(f"export ({c.export})")
            try:
                out["export"] = export_model(model, c.export, self.dir, splits.x_test)
                self.files["export"] = out["export"]["path"]
            except Exception as e:  # noqa: BLE001 -- see export_errors
                if export_errors == "raise":
                    raise
                out["export"] = _export_failure(c.export, e)
        if getattr(model, "_dwt_transfer", None):
            out["transfer"] = model._dwt_transfer
        return out


# --------------------------------------------------------------------------------------------
# helpers


#: status.json's words for the phases the recipes fit.
_PHASE_TEXT = {"dense": "dense training", "retrain": "retraining with the masks held",
               "train": "training"}


def check_save_dir(config, create=True):
    """`config.save_dir` as a path, checked writable (created unless `create=False`: then its
    nearest existing parent must be writable)."""
    path = pathlib.Path(config.save_dir).expanduser()
    if not create and not path.exists():
        parent = next((p for p in path.parents if p.exists()), pathlib.Path("."))
        if not (parent.is_dir() and os.access(parent, os.W_OK | os.X_OK)):
            raise OptionError("save_dir", f"Cannot write to the output folder '{path}': "
                              f"'{parent}' is not writable. Pass a folder you can write to "
                              f"(e.g. --save_dir ./saved_models).")
        return path
    try:
        return check_writable_dir(path)
    except ValueError as e:
        raise OptionError("save_dir", str(e)) from None


def _is_functional(model):
    return model is not None and (isinstance(model, keras.Sequential)
                                  or type(model).__name__ == "Functional")


def _input_shape(data):
    """The batch input shape of `(x, y)` arrays or of a `tf.data` dataset of `(x, y)`."""
    if isinstance(data, tuple):
        return (None, *np.shape(data[0])[1:])
    spec = data.element_spec[0] if isinstance(data.element_spec, tuple) else data.element_spec
    return tuple(spec.shape)


def _metric_list(metrics):
    return list(metrics()) if callable(metrics) else list(metrics)


def _signed(value, mode):
    if value is None:
        return -np.inf
    return -value if mode == "min" else value


def _best_logged(rows, monitor, mode):
    values = [r.get(monitor) for r in rows if r.get(monitor) is not None]
    if not values:
        return None
    return float(min(values) if mode == "min" else max(values))


def _export_failure(fmt, error):
    """The report entry of a failed export: the converter's first real reason and a hint."""
    parts = [p.splitlines()[0].strip() for p in str(error).split("error:")[1:] if p.strip()]
    parts = [p for p in parts if p and not p.startswith("loc(")]
    reason = (parts[0] if parts else (str(error).strip().splitlines() or [""])[0])[:500]
    hint = ("recurrent layers need TF Select ops in TFLite; use --export savedmodel"
            if "tensorlist" in str(error).lower().replace(" ", "") else None)
    print(f"--export {fmt} failed ({type(error).__name__}): {reason}", file=sys.stderr)
    return {"format": fmt, "error": f"{type(error).__name__}: {reason}", "hint": hint}
