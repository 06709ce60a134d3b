"""The spectral-truncation convergence study behind `apps/spectral_study.py`.

For each condition (`baseline` = no truncation, `linear` and `cosine` mask profiles) and each
seed, a model (`model="cnn"`: a small CNN; `model="wmsa"`: W-MSA-tiny) is trained for a fixed
number of epochs on the same train / validation split. After every epoch the test accuracy is
measured (the question is "epochs and wall time to reach a fixed test accuracy"; this is the
one recipe that evaluates the test split during training, by design), and validation accuracy
too; the summary gives the test accuracy at the epoch of best *validation* accuracy as the
model-selection view. Runs are ordered seed-major, and the results (`spectral_study.json`,
`spectral_study.md`) are written after every run, so a study cut short still compares the
conditions on equal terms.

Training extras that apply to every condition alike: `augment` (no mixup / cutmix: the study
trains on integer labels), `lr_schedule` and the optimizer settings, `l1` / `l2` / `dropout` /
`batch_norm` on the CNN (with `model="wmsa"` only `dropout`, the transformer's own). The others
are refused: every run must last `epochs` epochs, starts fresh and keeps no final model.

Example:

```python
from dwt_keras.experiments.spectral_study import StudyConfig, run_study
results = run_study(StudyConfig(seeds=(0,), epochs=5, truncation_epochs=2))
results["summary"]["cosine"]["final_test_accuracy"]
```
"""

from __future__ import annotations

import dataclasses
import math
import time

import keras
import numpy as np
import tensorflow as tf

from dwt_keras.experiments.options import RunOptions, TrainingOptions, validate_common
from dwt_keras.experiments.recipe import Recipe, config_dict
from dwt_keras.experiments.registry import build_model
from dwt_keras.experiments.run import Selection
from dwt_keras.spectral import figures
from dwt_keras.spectral import figures as figs
from dwt_keras.spectral import study
from dwt_keras.spectral.options import SpectralOptions
from dwt_keras.spectral.setup import spectral_setup
from dwt_keras.spectral.study import CONDITIONS, MODELS
from dwt_keras.training.augmentation import needs_one_hot
from dwt_keras.training.schedules import current_learning_rate
from dwt_keras.utils.io import make_run_dir
from dwt_keras.utils.machine import cpu_model
from dwt_keras.utils.options import OptionError, option
from dwt_keras.utils.seeding import set_seed

__all__ = ["StudyConfig", "StudyRecipe", "run_study", "merge_studies", "build_study_model"]

# Shared settings a convergence study cannot honour, and why.
REFUSED = {
    "early_stopping_patience": "every run must last --epochs epochs so that conditions are "
                               "compared over the same horizon",
    "cv_folds": "the study already repeats runs over --seeds",
    "ensemble": "the study already repeats runs over --seeds",
    "saliency_images": "the study keeps no final model",
    "init_from": "every run starts from a fresh, seeded model",
    "freeze": "every run starts from a fresh, seeded model",
    "export": "the study keeps no final model",
    "label_smoothing": "the study trains on integer labels",
    "max_eval_samples": "every condition is evaluated on the whole validation and test splits",
}


@dataclasses.dataclass
class StudyConfig(SpectralOptions, TrainingOptions, RunOptions):
    """Settings of the convergence study (the flags of `apps/spectral_study.py`).

    `seed` is the seed of the train / validation split (the same for every run); `seeds` are
    the model / shuffle seeds, one run per condition and seed. `spectral_reg` and
    `mask_profile` are accepted for uniformity with the other apps but unused: the study
    compares the conditions in `conditions`.
    """

    dataset: str = option("cifar10_subset")
    epochs: int = option(30)
    batch_size: int = option(64)
    verbose: int = option(0)
    seed: int = option(0, "Seed of the train / validation split (the same for every run).")
    conditions: tuple = option(CONDITIONS, "Conditions to compare: any of baseline, linear, "
                               "cosine.", list_of=str, choices=CONDITIONS)
    seeds: tuple = option((0, 1, 2), "Model/shuffle seeds (one run per condition and seed).",
                          list_of=int, minimum=0)
    target_accuracy: float = option(0.45, "Fixed test accuracy for the time-to-accuracy "
                                    "metric.", minimum=0.0, exclusive_minimum=True, maximum=1.0,
                                    exclusive_maximum=True)
    width: int = option(16, "Channels of the CNN's first stage.", minimum=1)
    model: str = option("cnn", "Model of the study: cnn (small CNN, --width) or wmsa (W-MSA-tiny "
                        "WaveletTransformer).", choices=MODELS)
    figures: bool = option(True, "Write masks.png, progression.png and curves.png.")

    def validate(self):
        """Raises `OptionError` for any invalid setting (before any training)."""

        self.conditions, self.seeds = tuple(self.conditions), tuple(self.seeds)
        validate_common(self)
        defaults = StudyConfig()
        for name, why in REFUSED.items():
            if getattr(self, name) != getattr(defaults, name):
                raise OptionError(name, f"`{name}` is not supported by the spectral study "
                                  f"({why}). Received: {name}={getattr(self, name)!r}")
        if needs_one_hot(self.augment):
            raise OptionError("augment", "mixup and cutmix need one-hot labels; the study trains "
                                         f"on integer labels. Received: augment={self.augment!r}")
        if not self.conditions:
            raise OptionError("conditions", "`conditions` is empty; give any of "
                                            f"{', '.join(CONDITIONS)}. Received: conditions=()")
        if not self.seeds:
            raise OptionError("seeds", "`seeds` is empty; give at least one non-negative "
                                       "integer seed. Received: seeds=()")
        if self.epochs < 1:
            raise OptionError("epochs", f"`epochs` must be >= 1. Received: epochs={self.epochs}")
        if self.truncation_epochs > self.epochs:
            raise OptionError("truncation_epochs", "`truncation_epochs` must be <= `epochs`. "
                              f"Received: truncation_epochs={self.truncation_epochs}, "
                              f"epochs={self.epochs}")
        if self.model == "wmsa" and (self.l1 or self.l2 or self.batch_norm):
            raise OptionError("l1" if self.l1 else "l2" if self.l2 else "batch_norm",
                              "l1, l2 and batch_norm apply to the CNN only (they rebuild a "
                              "functional model; W-MSA is subclassed and normalises with "
                              "LayerNorm); with model='wmsa' use dropout, or model='cnn'.")
        try:
            spectral_setup(self)
        except ValueError as e:
            raise OptionError("tau_init", str(e)) from None
        return self


def build_study_model(config, input_shape, num_classes, seed):
    """The study's model: `small_cnn` (`width`, regularised by the engine) or W-MSA-tiny with
    the config's `dropout` (its initialisation follows the global seed)."""

    if config.model == "wmsa":
        return build_model("wmsa", input_shape, num_classes, model_size="tiny",
                           dropout=float(config.dropout))
    return build_model("small_cnn", input_shape, num_classes, width=config.width, seed=seed)


class EpochRecorder(keras.callbacks.Callback):
    """Per-epoch training time (batches only) and test accuracy of the model being fitted.

    Args:
        x_test, y_test: the test split.
        batch_size: prediction batch size.
    """

    def __init__(self, x_test, y_test, batch_size=500):
        super().__init__()
        self.x_test, self.y_test, self.batch_size = x_test, y_test, batch_size
        self.records = []

    def __deepcopy__(self, memo):  # holds arrays and a model: share, don't copy
        return self

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = self._t_last = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self._t_last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logits = self.model.predict(self.x_test, batch_size=self.batch_size, verbose=0)
        logs = dict(logs or {})
        self.records.append({
            "epoch": int(epoch) + 1,
            "train_time_s": float(self._t_last - self._t0),
            "loss": float(logs.get("loss", math.nan)),
            "accuracy": float(logs.get("accuracy", math.nan)),
            "val_loss": float(logs.get("val_loss", math.nan)),
            "val_accuracy": float(logs.get("val_accuracy", math.nan)),
            "test_accuracy": float(np.mean(np.argmax(logits, -1) == self.y_test)),
            "tau": float(logs.get("spectral_tau", 1.0)),
            # the rate of the epoch's last step (a schedule moves it within the epoch)
            "learning_rate": current_learning_rate(self.model.optimizer),
            "phase": float(logs.get("spectral_phase", 0.0)),
        })


class StudyRecipe(Recipe):
    """`apps/spectral_study.py`: conditions x seeds, fixed horizon, per-epoch curves."""

    name = "spectral_study"
    config_class = StudyConfig

    def run_prefix(self, config):
        return f"spectral-study-{config.dataset}"

    def train(self, run, splits, prepared):
        c = run.config
        if c.figures:
            run.write_figure(lambda p: figures.plot_mask_profiles(p, rolloff=c.mask_rolloff),
                             "masks.png")
            run.write_figure(lambda p: figures.plot_tau_progression(
                splits.x_test[0], p, profile="cosine", rolloff=c.mask_rolloff),
                "progression.png")
        machine = _machine_line()
        command = run.report.get("command") or _command()
        runs, results = [], {}
        for seed in c.seeds:
            for condition in c.conditions:
                t = time.perf_counter()
                record = self.run_single(run, splits, condition, seed)
                runs.append(record)
                print(f"[spectral study] {condition} seed {seed}: final test acc "
                      f"{record['final_test_accuracy']:.4f}, epochs to {c.target_accuracy:.2f}: "
                      f"{record['epochs_to_target']}, {time.perf_counter() - t:.0f} s", flush=True)
                results = {"config": config_dict(c), "data": splits.info, "machine": machine,
                           "command": command, "summary": study.summarize(runs), "runs": runs,
                           "complete": False}
                study.write_results(results, run.dir)
        results["complete"] = True
        study.write_results(results, run.dir)
        if c.figures:
            run.write_figure(lambda p: figures.plot_study_curves(results, p), "curves.png")
        print((run.dir / "spectral_study.md").read_text())
        print(f"Results in {run.dir}")
        return {**results, "run_dir": str(run.dir)}

    def run_single(self, run, splits, condition, seed):
        """Trains one (condition, seed) run; returns its per-epoch record and summary."""

        c = run.config
        set_seed(int(seed))
        keras.backend.clear_session()
        num_classes = int(splits.info["num_classes"])
        shape = tuple(splits.x_train.shape[1:])
        model = run.build(lambda: build_study_model(c, shape, num_classes, int(seed)),
                          num_classes)
        steps = run.steps_per_epoch(len(splits.x_train))
        run.compile(model, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    ["accuracy"], steps, c.epochs)
        spectral = spectral_setup(dataclasses.replace(
            c, spectral_reg=condition != "baseline", mask_profile=condition
            if condition != "baseline" else c.mask_profile))
        recorder = EpochRecorder(splits.x_test, splits.y_test)
        if c.augment in (None, "none"):
            train = (splits.x_train, splits.y_train)
        else:
            train, _, _ = run.datasets(splits, seed=seed)
        t0 = time.perf_counter()
        run.fit(model, train, (splits.x_val, splits.y_val), c.epochs,
                f"{condition}-seed{seed}", Selection(restore="last"), callbacks=[recorder],
                spectral=spectral, tensorboard={})
        return study.run_summary(condition, seed, recorder.records, c.target_accuracy,
                                 time.perf_counter() - t0)


def _machine_line():
    import os
    import platform

    return (f"{os.cpu_count()}-core {platform.machine()} CPU ({cpu_model()}), TF "
            f"{tf.__version__}, Keras {keras.__version__}, "
            f"{'GPU' if tf.config.list_physical_devices('GPU') else 'no GPU'}")


def _command():
    import sys

    return "python " + " ".join(sys.argv)


RECIPE = StudyRecipe()


def run_study(config, splits=None):
    """Runs every (condition, seed) pair of `config` in a new run folder; returns the results
    (also in `spectral_study.json`)."""
    return RECIPE.execute(config, splits)


def merge_studies(paths, save_dir, figures=True, command=None):
    """Merges `spectral_study.json` files of one study run in parts (e.g. different seeds in
    parallel) into a new run folder; returns `(results, folder)`."""

    merged = study.merge_results([study.load_results(p) for p in paths],
                                 command=command or _command())
    folder = study.write_results(merged, make_run_dir(save_dir, "spectral-study-merged"))
    if figures:
        figs.plot_study_curves(merged, folder / "curves.png")
    return merged, folder
