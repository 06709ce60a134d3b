"""Running a KerasTuner search end to end, resumably, and writing its results.

`run_search(SearchConfig(...))` is what `apps/tune.py` runs:

* the project folder `<save_dir>/<project_name(config)>` is derived from the settings that define
  the search (search space, data, model, tuner, objective, epochs, seed...), *not* from
  `max_trials` or the time, and the tuner is created with `overwrite=False`: re-running the same
  command after an interruption continues the search (finished trials are kept, the interrupted
  one is run again), and raising `--max_trials` extends a finished search;
* after the search it writes `best_hyperparameters.json`, `trials.csv` / `trials.md` (every
  trial: status, score, metrics, hyperparameters), `best_model/` (the best trial's stored model,
  evaluated on the TEST split in `best_model/report.json`) and a TensorBoard HParams dashboard
  under `<log_dir>/hparams` (one run per trial with its hyperparameters and metrics);
* distributed tuning: with `KERASTUNER_TUNER_ID`, `KERASTUNER_ORACLE_IP` and
  `KERASTUNER_ORACLE_PORT` set, the process whose id contains `chief` serves the oracle and,
  when the search is over, writes the results; the others (`tuner0`, `tuner1`, ...) run trials.
  All of them must use the same flags and see the same `--save_dir` (a shared file system).
"""

import csv
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import shutil

import keras_tuner
import numpy as np
import tensorflow as tf

from dwt_keras.compression import load_compressed
from dwt_keras.compression.sizes import dense_float32_bytes, save_keras_atomic
from dwt_keras.evaluation import measure_latency
from dwt_keras.experiments.compression import CompressionConfig
from dwt_keras.experiments.recipe import config_dict
from dwt_keras.experiments.run import Environment, Run, load_data
from dwt_keras.experiments.transformer import TransformerConfig
from dwt_keras.spectral.options import SPECTRAL_FIELDS, spectral_report
from dwt_keras.spectral.setup import spectral_setup
from dwt_keras.tuning.hypermodels import (
    COMPRESSED_FILE,
    DEFAULT_BASES,
    DEFAULT_QUANTIZERS,
    DEFAULT_SCHEDULES,
    CompressionHyperModel,
    WMSAHyperModel,
)
from dwt_keras.tuning.objectives import OBJECTIVES, validate_objective
from dwt_keras.utils.io import atomic_write_bytes, atomic_write_json
from dwt_keras.utils.options import OptionError, option

TUNERS = ("random", "bayesian", "hyperband")
SEARCH_SPACES = ("compression", "wmsa")

# The fields that named a search before the experiment engine; the other settings enter the
# project name only when they differ from their defaults, so older searches still resume.
_LEGACY_IDENTITY = ("tuner", "search_space", "dataset", "model", "executions_per_trial",
                    "objective", "min_compression_ratio", "tradeoff_weight", "epochs",
                    "retrain_epochs", "hyperband_factor", "seed", "validation_split",
                    "max_train_samples", "bases", "schedules", "quantizers")
#: Settings that do not change *what* is searched: never in the project name, so the same
#: search continues when they change.
NOT_IN_NAME = ("max_trials", "save_dir", "log_dir", "data_dir", "verbose", "strategy",
               "run_name", "plots", "latency_batch_size", "latency_repeats")


@dataclasses.dataclass
class SearchConfig(CompressionConfig):
    """Settings of one search (the flags of `apps/tune.py`).

    The compression settings it inherits are the fixed settings of every compression trial
    (each trial replaces the searched ones: basis, level, mode, keep ratio, schedule,
    quantisation, learning rate, batch size), so a trial is exactly what `apps/DWT_model.py`
    trains with the same values. W-MSA trials (`search_space="wmsa"`) take the data, seed,
    `epochs` and spectral settings from here and the transformer app's defaults otherwise.
    """

    save_dir: str = option("./tuning")
    epochs: int = option(2, "Dense training epochs per trial (Hyperband: the maximum).",
                         minimum=1)
    retrain_epochs: int = option(1, "Retraining epochs with the mask held per trial.",
                                 minimum=1)
    verbose: int = option(0, "Keras verbosity during trials.")
    truncation_epochs: int = option(1)
    batch_size: int = option(32, "Unused by the compression search (the batch size is "
                             "searched).")
    tuner: str = option("random", "KerasTuner algorithm.", choices=TUNERS)
    search_space: str = option("compression", "compression: the DWT compression pipeline; "
                               "wmsa: the wavelet transformer.", choices=SEARCH_SPACES)
    max_trials: int = option(10, "Total trials of the search (a resumed search counts the "
                             "finished ones).", minimum=1)
    executions_per_trial: int = option(1, "Trainings per trial (metrics averaged).", minimum=1)
    objective: str = option("constrained", "val_accuracy; constrained: val accuracy subject to "
                            "--min_compression_ratio; tradeoff: val accuracy + "
                            "--tradeoff_weight * log10(ratio).", choices=OBJECTIVES)
    min_compression_ratio: float = option(50.0, "Ratio constraint of --objective constrained.",
                                          minimum=0.0, exclusive_minimum=True)
    tradeoff_weight: float = option(0.01, "Weight of --objective tradeoff.", minimum=0.0)
    hyperband_factor: int = option(3, "Hyperband reduction factor.", minimum=2)
    bases: tuple | None = option(None, "Candidate bases (default: identity, dct, haar, db2, db4, "
                                 "sym4, coif2, bior2.2).", list_of=str)
    schedules: tuple | None = option(None, "Candidate schedules (default: oneshot, iterative, "
                                     "gradual).", list_of=str)
    quantizers: tuple | None = option(None, "Candidate value quantisations (default: none, "
                                      "float16, kmeans).", list_of=str)
    keep_ratio_min: float = option(0.005, "Smallest keep ratio searched.", minimum=0.0,
                                   exclusive_minimum=True, maximum=1.0)
    keep_ratio_max: float = option(0.2, "Largest keep ratio searched.", minimum=0.0,
                                   exclusive_minimum=True, maximum=1.0)

    @property
    def keep_ratio_range(self):
        return (float(self.keep_ratio_min), float(self.keep_ratio_max))

    def validate(self):
        super().validate()
        if self.search_space == "wmsa" and self.objective != "val_accuracy":
            raise OptionError("objective", "The wmsa search optimises val_accuracy. "
                                           f"Received: objective={self.objective!r}")
        try:
            validate_objective(self.objective, self.min_compression_ratio, self.tradeoff_weight)
        except ValueError as e:
            raise OptionError("objective", str(e)) from None
        if self.keep_ratio_min > self.keep_ratio_max:
            raise OptionError("keep_ratio_min", "`keep_ratio_min` must be <= `keep_ratio_max`. "
                              f"Received: keep_ratio_min={self.keep_ratio_min}, "
                              f"keep_ratio_max={self.keep_ratio_max}")
        if self.validation_split <= 0:
            raise OptionError("validation_split", "The search scores trials on the validation "
                              "split: use validation_split > 0. Received: validation_split="
                              f"{self.validation_split}")
        return self

    def identity(self):
        """The settings that define the search (its project name)."""
        defaults = {f.name: getattr(SearchConfig(), f.name) for f in dataclasses.fields(self)}
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        skip = set(NOT_IN_NAME) | (set() if self.spectral_reg else set(SPECTRAL_FIELDS))
        out = {}
        for k, v in sorted(values.items()):
            if k in skip or callable(v) or k in ("extra_callbacks", "dense_callbacks",
                                                 "retrain_callbacks", "model_fn"):
                continue
            if k in _LEGACY_IDENTITY or k in SPECTRAL_FIELDS or v != defaults.get(k):
                out[k] = list(v) if isinstance(v, tuple) else v
        for k in ("keep_ratio_min", "keep_ratio_max"):
            out.pop(k, None)
        out["keep_ratio_range"] = list(self.keep_ratio_range)
        out["max_train_samples"] = self.max_train_samples or 0
        return out


def project_name(config):
    """`tune-<space>-<dataset>-<model>-<tuner>-<objective>-<hash>` of the defining settings."""
    digest = hashlib.sha1(json.dumps(config.identity(), sort_keys=True).encode()).hexdigest()[:10]
    model = config.model if config.search_space == "compression" else "wmsa"
    parts = ["tune", config.search_space, config.dataset, model, config.tuner, config.objective,
             digest]
    return "-".join("".join(c if c.isalnum() or c in "._" else "_" for c in p) for p in parts)


def _objective():
    # Every search space returns `val_score`: the size-aware score for compression, the
    # validation accuracy for the others.
    return keras_tuner.Objective("val_score", direction="max")


def make_tuner(kind, hypermodel, directory, project, max_trials, executions_per_trial=1,
               seed=0, max_epochs=2, hyperband_factor=3, distribution_strategy=None):
    """A KerasTuner tuner (`random`, `bayesian`, `hyperband`) that resumes (`overwrite=False`)."""

    if kind not in TUNERS:
        raise ValueError(f"Unknown tuner {kind!r}. Valid choices: {', '.join(TUNERS)}.")
    common = dict(objective=_objective(), directory=str(directory), project_name=project,
                  overwrite=False, seed=seed, executions_per_trial=executions_per_trial,
                  distribution_strategy=distribution_strategy)
    if kind == "random":
        return keras_tuner.RandomSearch(hypermodel, max_trials=max_trials, **common)
    if kind == "bayesian":
        return keras_tuner.BayesianOptimization(hypermodel, max_trials=max_trials, **common)
    # Hyperband sizes its brackets from max_epochs; max_trials bounds the number of trials too
    # (KerasTuner's `max_consecutive_failed_trials` aside, Hyperband has no max_trials of its own).
    tuner = keras_tuner.Hyperband(hypermodel, max_epochs=max(2, int(max_epochs)),
                                  factor=hyperband_factor, hyperband_iterations=1, **common)
    tuner.oracle.max_trials = int(max_trials)
    return tuner


def _value(metrics, name):
    try:
        value = metrics.get_best_value(name) if metrics.exists(name) else None
    except (KeyError, ValueError):
        return None
    return value.item() if isinstance(value, np.generic) else value


def trials_table(tuner):
    """One row per trial: id, status, score, every recorded metric, every hyperparameter."""
    trials = sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id)
    metric_names = sorted({m for t in trials for m in t.metrics.metrics})
    hp_names = sorted({h for t in trials for h in t.hyperparameters.values})
    rows = []
    for t in trials:
        score = t.score.item() if isinstance(t.score, np.generic) else t.score
        row = {"trial_id": t.trial_id, "status": str(t.status), "score": score}
        for m in metric_names:
            row[m] = _value(t.metrics, m)
        for h in hp_names:
            row[f"hp/{h}"] = t.hyperparameters.values.get(h)
        rows.append(row)
    return rows


def _fmt(v, digits=6):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float):
        return repr(v) if digits is None else f"{v:.{digits}g}"
    return "" if v is None else str(v)


def write_trials_table(rows, out_dir):
    """Writes `trials.csv` and `trials.md` (sorted by score, best first) atomically."""

    out_dir = pathlib.Path(out_dir)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    ordered = sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0.0)))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    for r in ordered:
        writer.writerow({k: _fmt(r.get(k), digits=None) for k in columns})  # full precision
    atomic_write_bytes(out_dir / "trials.csv", buf.getvalue().encode())
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(k)) for k in columns) + " |" for r in ordered]
    atomic_write_bytes(out_dir / "trials.md", ("\n".join(lines) + "\n").encode())
    return out_dir / "trials.csv", out_dir / "trials.md"


def write_hparams_dashboard(rows, log_dir):
    """TensorBoard HParams: a config and one run per finished trial under `<log_dir>/hparams`.

    The folder is rebuilt from the trial table each time, so a resumed search never duplicates
    runs.
    """
    from tensorboard.plugins.hparams import api as hp_api

    root = pathlib.Path(log_dir) / "hparams"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    done = [r for r in rows if r["score"] is not None]
    hp_keys = [k for k in dict.fromkeys(k for r in rows for k in r)
               if k.startswith("hp/") and not k.startswith("hp/tuner/")]
    metric_keys = [k for k in dict.fromkeys(k for r in rows for k in r)
                   if k not in ("trial_id", "status") and not k.startswith("hp/")]
    hparams = {k: hp_api.HParam(k[3:]) for k in hp_keys}
    with tf.summary.create_file_writer(str(root)).as_default():
        hp_api.hparams_config(hparams=list(hparams.values()),
                              metrics=[hp_api.Metric(m, display_name=m) for m in metric_keys])
    for r in done:
        with tf.summary.create_file_writer(str(root / r["trial_id"])).as_default():
            values = {hparams[k]: r[k] for k in hp_keys if r.get(k) is not None}
            hp_api.hparams(values, trial_id=r["trial_id"])
            for m in metric_keys:
                if r.get(m) is not None:
                    tf.summary.scalar(m, float(r[m]), step=0)
    return root


def _hypermodel(config, info, log_dir, strategy):
    shape, classes = tuple(info["image_shape"]), info["num_classes"]
    if config.search_space == "wmsa":
        shared = ("dataset", "data_dir", "validation_split", "max_train_samples",
                  "max_eval_samples", "seed", "strategy", "mixed_precision", "verbose", "epochs",
                  *SPECTRAL_FIELDS)
        base = TransformerConfig(**{k: getattr(config, k) for k in shared})
        return WMSAHyperModel(base, shape, classes, log_dir=log_dir, strategy=strategy)
    return CompressionHyperModel(
        config, shape, classes, bases=config.bases or DEFAULT_BASES,
        schedules=config.schedules or DEFAULT_SCHEDULES,
        quantizers=config.quantizers or DEFAULT_QUANTIZERS,
        keep_ratio_range=config.keep_ratio_range, objective=config.objective,
        min_ratio=config.min_compression_ratio, tradeoff_weight=config.tradeoff_weight,
        log_dir=log_dir, strategy=strategy)


def is_distributed_worker():
    """True in a KerasTuner worker process (oracle env vars set, tuner id not `chief`)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and \
        "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


def _best_model_report(run, config, tuner, best_trial, splits):
    """Evaluates the best trial's stored model on the TEST split; copies it to best_model/."""

    out = run.dir / "best_model"
    out.mkdir(parents=True, exist_ok=True)
    report = {"trial_id": best_trial.trial_id, "score_val": best_trial.score,
              "hyperparameters": best_trial.hyperparameters.values,
              "dataset": {k: splits.info[k] for k in ("name", "source", "n_train", "n_val",
                                                      "n_test")},
              "evaluated_on": "test"}
    if config.spectral_reg:
        schedule = spectral_setup(config).callbacks[0]
        report["spectral"] = {**spectral_report(config),
                              "tau_schedule_by_epoch": [schedule.tau_for_epoch(e)
                                                        for e in range(config.epochs)]}
    trial_file = pathlib.Path(tuner.get_trial_dir(best_trial.trial_id)) / COMPRESSED_FILE
    if config.search_space == "compression" and trial_file.is_file():
        atomic_write_bytes(out / COMPRESSED_FILE, trial_file.read_bytes())
        model = load_compressed(out / COMPRESSED_FILE, attach_state=False)
        report["bytes_float32"] = dense_float32_bytes(model)
        report["bytes_compressed_file"] = int(trial_file.stat().st_size)
        report["compression_ratio"] = report["bytes_float32"] / report["bytes_compressed_file"]
        report["files"] = {"compressed": str(out / COMPRESSED_FILE)}
    else:
        model = tuner.get_best_models(1)[0]

        save_keras_atomic(model, out / "model.keras")
        report["files"] = {"keras": str(out / "model.keras")}
    report["test"] = run.evaluate(model, splits)
    report["latency"] = measure_latency(model, splits.x_test, batch_size=32, repeats=10)
    atomic_write_json(out / "report.json", report)
    return report


def run_search(config):
    """Runs (or resumes) the search described by `config` and writes its results.

    The project folder `<save_dir>/<project_name(config)>` is the engine's resumable run folder
    (with `status.json`); its data are the engine's (`load_data`), and its trials run the
    recipes' own steps (`dwt_keras.tuning.hypermodels`).

    Returns:
        A dict: `project_dir`, `n_trials`, `best_hyperparameters`, `best_score` and the paths
        written (a distributed worker only runs trials and returns its role).
    """

    config.validate()
    with Environment(config) as env:
        strategy = env.strategy if config.strategy != "default" else None
        splits = load_data(config)
        project = project_name(config)
        run = Run.named(config, env, project, recipe="search")
        log_dir = pathlib.Path(config.log_dir) if config.log_dir else run.dir / "tensorboard"
        hypermodel = _hypermodel(config, splits.info, str(log_dir), strategy)
        tuner = make_tuner(config.tuner, hypermodel, config.save_dir, project,
                           config.max_trials, config.executions_per_trial, seed=config.seed,
                           max_epochs=config.epochs, hyperband_factor=config.hyperband_factor,
                           distribution_strategy=strategy)
        if is_distributed_worker():
            # Each trial logs the shared TensorBoard set itself (the hypermodels' `log_dir`), so
            # no TensorBoard callback goes through KerasTuner.
            tuner.search(splits.x_train, splits.y_train,
                         validation_data=(splits.x_val, splits.y_val), epochs=config.epochs,
                         verbose=config.verbose)
            return {"project_dir": str(run.dir), "role": os.environ.get("KERASTUNER_TUNER_ID")}
        with run:
            atomic_write_json(run.dir / "search_config.json", config_dict(config))
            run.set_phase("search")
            tuner.search(splits.x_train, splits.y_train,
                         validation_data=(splits.x_val, splits.y_val), epochs=config.epochs,
                         verbose=config.verbose)
            run.set_phase("results")
            rows = trials_table(tuner)
            csv_path, md_path = write_trials_table(rows, run.dir)
            hparams_dir = write_hparams_dashboard(rows, log_dir)
            best = [t for t in tuner.oracle.get_best_trials(1) if t.score is not None]
            if not best:
                failed = [t for t in tuner.oracle.trials.values() if t.message]
                detail = failed[0].message.strip().splitlines()[-1] if failed \
                    else "no trial finished"
                raise RuntimeError(f"No trial of the search in {run.dir} finished ({len(rows)} "
                                   f"trials; see trials.md). Last error: {detail}")
            result = {"project_dir": str(run.dir), "n_trials": len(rows),
                      "n_completed": sum(r["score"] is not None for r in rows),
                      "files": {"trials_csv": str(csv_path), "trials_md": str(md_path),
                                "tensorboard": str(log_dir), "hparams": str(hparams_dir)}}
            values = {k: v for k, v in best[0].hyperparameters.values.items()
                      if not k.startswith("tuner/")}
            atomic_write_json(run.dir / "best_hyperparameters.json",
                              {"trial_id": best[0].trial_id, "val_score": best[0].score,
                               "objective": config.objective, "hyperparameters": values})
            report = _best_model_report(run, config, tuner, best[0], splits)
            result.update(best_hyperparameters=values, best_score=best[0].score,
                          best_test_accuracy=report["test"]["accuracy"])
            result["files"].update(
                best_hyperparameters=str(run.dir / "best_hyperparameters.json"),
                best_model_report=str(run.dir / "best_model" / "report.json"))
            atomic_write_json(run.dir / "search_summary.json", result)
        return result
