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

import numpy as np

from dwt_keras.spectral.options import SPECTRAL_FIELDS, SpectralOptions
from dwt_keras.tuning.objectives import validate_objective

TUNERS = ("random", "bayesian", "hyperband")
SEARCH_SPACES = ("compression", "wmsa")


@dataclasses.dataclass
class SearchConfig(SpectralOptions):
    """Settings of one search (see `apps/tune.py --help` for their meaning)."""

    tuner: str = "random"
    search_space: str = "compression"
    dataset: str = "mnist"
    data_dir: str = None
    save_dir: str = "./tuning"
    log_dir: str = None
    model: str = "lenet300"
    max_trials: int = 10
    executions_per_trial: int = 1
    objective: str = "constrained"
    min_compression_ratio: float = 50.0
    tradeoff_weight: float = 0.01
    epochs: int = 2
    retrain_epochs: int = 1
    hyperband_factor: int = 3
    seed: int = 0
    validation_split: float = 0.1
    max_train_samples: int = 0
    bases: tuple = None
    schedules: tuple = None
    quantizers: tuple = None
    keep_ratio_range: tuple = (0.005, 0.2)
    strategy: str = "default"
    verbose: int = 0
    # spectral truncation of every trial's dense training: the other `SpectralOptions` fields
    truncation_epochs: int = 1

    # Settings that do not change *what* is searched: excluded from the project name so that
    # the same search continues when they change.
    _NOT_IN_NAME = ("max_trials", "save_dir", "log_dir", "data_dir", "verbose", "strategy")

    def validate(self):
        if self.tuner not in TUNERS:
            raise ValueError(f"Unknown tuner {self.tuner!r}. Valid choices: {', '.join(TUNERS)}.")
        if self.search_space not in SEARCH_SPACES:
            raise ValueError(f"Unknown search space {self.search_space!r}. Valid choices: "
                             f"{', '.join(SEARCH_SPACES)}.")
        if self.search_space == "wmsa" and self.objective != "val_accuracy":
            raise ValueError("The wmsa search optimises val_accuracy; pass --objective "
                             "val_accuracy.")
        validate_objective(self.objective, self.min_compression_ratio, self.tradeoff_weight)
        for name in ("max_trials", "executions_per_trial", "epochs", "retrain_epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name} must be >= 1, got {getattr(self, name)}.")
        if self.tuner == "hyperband" and self.hyperband_factor < 2:
            raise ValueError("--hyperband_factor must be >= 2.")
        if self.max_train_samples < 0:
            raise ValueError("--max_train_samples must be >= 0 (0: all).")
        from dwt_keras.training.strategy import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise ValueError(f"Unknown strategy {self.strategy!r}. Valid choices: "
                             f"{', '.join(STRATEGIES)}.")
        from dwt_keras.compression.pipeline import validate_spectral

        # Hyperband's trials train fewer epochs than --epochs (its budget) and resume on
        # schedule; the curriculum must fit in the largest budget.
        validate_spectral(self, self.epochs)
        return self

    def spectral(self):
        """The trials' `SpectralSetup` (disabled without `spectral_reg`)."""
        from dwt_keras.compression.pipeline import spectral_setup

        return spectral_setup(self)

    def identity(self):
        d = dataclasses.asdict(self)
        # Without --spectral_reg the spectral settings change nothing: leaving them out keeps
        # the project name (and resuming) of searches started before they existed.
        skip = set(self._NOT_IN_NAME) | (set() if self.spectral_reg else set(SPECTRAL_FIELDS))
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in sorted(d.items())
                if k not in skip}


def project_name(config):
    """`tune-<space>-<dataset>-<model>-<tuner>-<objective>-<hash>` of the defining settings."""
    digest = hashlib.sha1(json.dumps(config.identity(), sort_keys=True).encode()).hexdigest()[:10]
    model = config.model if config.search_space == "compression" else "wmsa"
    parts = ["tune", config.search_space, config.dataset, model, config.tuner, config.objective,
             digest]
    return "-".join("".join(c if c.isalnum() or c in "._" else "_" for c in p) for p in parts)


def _objective():
    import keras_tuner

    # Every search space returns `val_score`: the size-aware score for compression, the
    # validation accuracy for the others.
    return keras_tuner.Objective("val_score", direction="max")


def make_tuner(kind, hypermodel, directory, project, max_trials, executions_per_trial=1,
               seed=0, max_epochs=2, hyperband_factor=3, distribution_strategy=None):
    """A KerasTuner tuner (`random`, `bayesian`, `hyperband`) that resumes (`overwrite=False`)."""
    import keras_tuner

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
    from dwt_keras.utils.io import atomic_write_bytes

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
    import tensorflow as tf
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


def _load_data(config):
    from dwt_keras.data import load_arrays

    splits = load_arrays(config.dataset, data_dir=config.data_dir,
                         validation_split=config.validation_split, seed=config.seed)
    if len(splits.x_val) == 0:
        raise ValueError("The search scores trials on the validation split: use "
                         "--validation_split > 0.")
    if config.max_train_samples:
        rng = np.random.default_rng(config.seed)
        keep = np.sort(rng.permutation(len(splits.x_train))[:config.max_train_samples])
        splits.x_train, splits.y_train = splits.x_train[keep], splits.y_train[keep]
        splits.info["n_train"] = int(len(keep))
        n_val = max(1, config.max_train_samples // 4)
        splits.x_val, splits.y_val = splits.x_val[:n_val], splits.y_val[:n_val]
        splits.info["n_val"] = int(n_val)
    return splits


def _hypermodel(config, info, log_dir):
    from dwt_keras.tuning.hypermodels import (DEFAULT_BASES, DEFAULT_QUANTIZERS,
                                              DEFAULT_SCHEDULES, CompressionHyperModel,
                                              WMSAHyperModel)

    shape, classes = tuple(info["image_shape"]), info["num_classes"]
    spectral = config.spectral()
    if config.search_space == "wmsa":
        return WMSAHyperModel(shape, classes, log_dir=log_dir, spectral=spectral)
    return CompressionHyperModel(
        config.model, shape, classes, bases=config.bases or DEFAULT_BASES,
        schedules=config.schedules or DEFAULT_SCHEDULES,
        quantizers=config.quantizers or DEFAULT_QUANTIZERS,
        keep_ratio_range=tuple(config.keep_ratio_range), retrain_epochs=config.retrain_epochs,
        objective=config.objective, min_ratio=config.min_compression_ratio,
        tradeoff_weight=config.tradeoff_weight, log_dir=log_dir, spectral=spectral)


def is_distributed_worker():
    """True in a KerasTuner worker process (oracle env vars set, tuner id not `chief`)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and \
        "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "")


def _best_model_report(config, tuner, best_trial, splits, project_dir):
    """Evaluates the best trial's stored model on the TEST split; copies it to best_model/."""
    from dwt_keras.evaluation import evaluate_classifier, measure_latency
    from dwt_keras.tuning.hypermodels import COMPRESSED_FILE
    from dwt_keras.utils.io import atomic_write_bytes, atomic_write_json

    out = pathlib.Path(project_dir) / "best_model"
    out.mkdir(parents=True, exist_ok=True)
    report = {"trial_id": best_trial.trial_id, "score_val": best_trial.score,
              "hyperparameters": best_trial.hyperparameters.values,
              "dataset": {k: splits.info[k] for k in ("name", "source", "n_train", "n_val",
                                                      "n_test")},
              "evaluated_on": "test"}
    spectral = config.spectral()
    if spectral.enabled:
        from dwt_keras.compression.pipeline import spectral_record

        sched = spectral.callbacks[0]
        report["spectral"] = {**spectral_record(spectral),
                              "tau_schedule_by_epoch": [sched.tau_for_epoch(e)
                                                        for e in range(config.epochs)]}
        for key in ("tau_history", "phase_history"):  # not measured per trial here
            report["spectral"].pop(key)
    trial_file = pathlib.Path(tuner.get_trial_dir(best_trial.trial_id)) / COMPRESSED_FILE
    if config.search_space == "compression" and trial_file.is_file():
        from dwt_keras.compression import load_compressed
        from dwt_keras.compression.sizes import dense_float32_bytes

        atomic_write_bytes(out / COMPRESSED_FILE, trial_file.read_bytes())
        model = load_compressed(out / COMPRESSED_FILE, attach_state=False)
        report["bytes_float32"] = dense_float32_bytes(model)
        report["bytes_compressed_file"] = int(trial_file.stat().st_size)
        report["compression_ratio"] = report["bytes_float32"] / report["bytes_compressed_file"]
        report["files"] = {"compressed": str(out / COMPRESSED_FILE)}
    else:
        model = tuner.get_best_models(1)[0]
        from dwt_keras.compression.sizes import save_keras_atomic

        save_keras_atomic(model, out / "model.keras")
        report["files"] = {"keras": str(out / "model.keras")}
    metrics = evaluate_classifier(model, splits.x_test, splits.y_test,
                                  class_names=splits.info.get("class_names"))
    report["test"] = metrics
    report["latency"] = measure_latency(model, splits.x_test, batch_size=32, repeats=10)
    atomic_write_json(out / "report.json", report)
    return report


def run_search(config):
    """Runs (or resumes) the search described by `config` and writes its results.

    Returns:
        A dict: `project_dir`, `n_trials`, `best_hyperparameters`, `best_score` and the paths
        written (empty for a distributed worker, which only runs trials).
    """
    import keras_tuner  # noqa: F401 -- fail early when it is missing

    from dwt_keras.training.strategy import get_strategy
    from dwt_keras.utils.io import atomic_write_json, check_writable_dir
    from dwt_keras.utils.seeding import set_seed

    config.validate()
    check_writable_dir(config.save_dir)
    set_seed(config.seed)
    strategy = get_strategy(config.strategy) if config.strategy != "default" else None
    splits = _load_data(config)
    project = project_name(config)
    project_dir = pathlib.Path(config.save_dir) / project
    log_dir = pathlib.Path(config.log_dir) if config.log_dir else project_dir / "tensorboard"
    hypermodel = _hypermodel(config, splits.info, str(log_dir))
    tuner = make_tuner(config.tuner, hypermodel, config.save_dir, project, config.max_trials,
                       config.executions_per_trial, seed=config.seed, max_epochs=config.epochs,
                       hyperband_factor=config.hyperband_factor,
                       distribution_strategy=strategy)
    if not is_distributed_worker():
        atomic_write_json(project_dir / "search_config.json", dataclasses.asdict(config))

    # Each trial logs the shared TensorBoard set itself (the hypermodels' `log_dir`), so no
    # TensorBoard callback goes through KerasTuner (which would add a second, dense-phase-only
    # HParams session per trial); the HParams dashboard is written below from the trial table.
    tuner.search(splits.x_train, splits.y_train, validation_data=(splits.x_val, splits.y_val),
                 epochs=config.epochs, verbose=config.verbose)
    if is_distributed_worker():
        return {"project_dir": str(project_dir), "role": os.environ.get("KERASTUNER_TUNER_ID")}

    rows = trials_table(tuner)
    csv_path, md_path = write_trials_table(rows, project_dir)
    hparams_dir = write_hparams_dashboard(rows, log_dir)
    best = [t for t in tuner.oracle.get_best_trials(1) if t.score is not None]
    if not best:
        failed = [t for t in tuner.oracle.trials.values() if t.message]
        detail = failed[0].message.strip().splitlines()[-1] if failed else "no trial finished"
        raise RuntimeError(f"No trial of the search in {project_dir} finished ({len(rows)} "
                           f"trials; see trials.md). Last error: {detail}")
    result = {"project_dir": str(project_dir), "n_trials": len(rows),
              "n_completed": sum(r["score"] is not None for r in rows),
              "files": {"trials_csv": str(csv_path), "trials_md": str(md_path),
                        "tensorboard": str(log_dir), "hparams": str(hparams_dir)}}
    if best:
        values = {k: v for k, v in best[0].hyperparameters.values.items()
                  if not k.startswith("tuner/")}
        atomic_write_json(project_dir / "best_hyperparameters.json",
                          {"trial_id": best[0].trial_id, "val_score": best[0].score,
                           "objective": config.objective, "hyperparameters": values})
        report = _best_model_report(config, tuner, best[0], splits, project_dir)
        result.update(best_hyperparameters=values, best_score=best[0].score,
                      best_test_accuracy=report["test"]["accuracy"])
        result["files"].update(best_hyperparameters=str(project_dir / "best_hyperparameters.json"),
                               best_model_report=str(project_dir / "best_model" / "report.json"))
    atomic_write_json(project_dir / "search_summary.json", result)
    return result
