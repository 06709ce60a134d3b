"""Convergence study: does the spectral-truncation curriculum speed up training?

For each condition (``baseline`` = no truncation, ``linear`` and ``cosine``
mask profiles) and each seed, a model (``model="cnn"``: a small CNN;
``model="wmsa"``: the W-MSA-tiny `WaveletTransformer`) is trained for a fixed number of
epochs on the same train/validation split; after every epoch the test accuracy
is measured, as the issue asks for "epochs and wall time to reach a fixed test
accuracy". Validation accuracy is recorded too, and the final report also gives
the test accuracy at the epoch with the best *validation* accuracy (the
model-selection view). Wall time is training time only (first batch to last
batch of each epoch, cumulated; evaluation excluded), on whatever machine runs
it, so compare conditions from the same run only.

Results are written after every run (JSON with every epoch, and a markdown
summary), atomically, so a run cut short still leaves its finished part.

Training extras (`dwt_keras.training`) apply to every condition alike:
`augment` (training split only; the truncation low-passes the augmented batch),
`lr_schedule` (over all `epochs`) and `l1`/`l2`/`dropout`/`batch_norm` on the
CNN. Early stopping is deliberately not offered: every run must last `epochs`
epochs so that the per-epoch curves and the time-to-accuracy metric compare
conditions over the same horizon.
"""

import dataclasses
import json
import math
import os
import pathlib
import platform
import time

import keras
import numpy as np

from dwt_keras.spectral.schedule import TauScheduler, validate_epochs
from dwt_keras.spectral.truncation import SpectralTruncation, _validate_rolloff, validate_tau
from dwt_keras.spectral.wrapper import SpectralTrainingModel
from dwt_keras.training.schedules import current_learning_rate

__all__ = [
    "CONDITIONS",
    "MODELS",
    "StudyConfig",
    "small_cnn",
    "build_study_model",
    "training_data",
    "run_single",
    "summarize",
    "results_markdown",
    "run_study",
    "merge_results",
    "write_results",
    "load_results",
]

CONDITIONS = ("baseline", "linear", "cosine")
#: Models of the study: the small CNN, or W-MSA-tiny (`dwt_keras.transformer`).
MODELS = ("cnn", "wmsa")


@dataclasses.dataclass
class StudyConfig:
    """Settings of the convergence study (see `run_study`).

    Args:
        dataset: dataset name for `dwt_keras.data.load_arrays`.
        data_dir: folder of `<name>.npz` files (None: `$DWT_KERAS_DATA_DIR`).
        conditions: subset of `("baseline", "linear", "cosine")`.
        seeds: model/shuffle seeds (the data split uses `split_seed`).
        epochs: training epochs per run (>= 1).
        truncation_epochs: epochs of the curriculum (>= 0, <= epochs).
        tau_init: first cut-off in (0, 1].
        tau_final: last cut-off in [tau_init, 1].
        rolloff: cosine roll-off width.
        target_accuracy: the fixed test accuracy whose first-reaching epoch
            and wall time are reported, in (0, 1).
        batch_size: training batch size.
        lr: Adam learning rate.
        width: channels of the first CNN stage (doubled twice).
        validation_split: share of the training split held out.
        split_seed: seed of the train/validation split (same for all runs).
        strategy: a `tf.distribute` strategy name (`dwt_keras.training.strategy.STRATEGIES`).
        log_dir: TensorBoard folder (one sub-folder per condition and seed); None: off.
        augment: training-split augmentation (`dwt_keras.training.augmentation.AUGMENTATIONS`).
        lr_schedule: `dwt_keras.training.schedules.LR_SCHEDULES` name, spanning `epochs`.
        l1, l2, dropout, batch_norm: regularisation of the CNN
            (`dwt_keras.training.regularization.apply_regularization`); for
            W-MSA only `dropout` applies (the transformer's own dropout rate).
        model: "cnn" (`small_cnn`, `width` channels) or "wmsa" (W-MSA-tiny:
            `WaveletTransformer(model_size="tiny")` with its defaults, db4, J=3,
            4x4 grouping; `width` is unused). Every condition trains the same
            model with the same optimiser (Adam, `lr`, `lr_schedule`).
    """

    dataset: str = "cifar10_subset"
    data_dir: str = None
    conditions: tuple = CONDITIONS
    seeds: tuple = (0, 1, 2)
    epochs: int = 30
    truncation_epochs: int = 10
    tau_init: float = 0.05
    tau_final: float = 1.0
    rolloff: float = 0.1
    target_accuracy: float = 0.45
    batch_size: int = 64
    lr: float = 1e-3
    width: int = 16
    validation_split: float = 0.1
    split_seed: int = 0
    strategy: str = "default"
    log_dir: str = None
    augment: str = "none"
    lr_schedule: str = "constant"
    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    batch_norm: bool = False
    model: str = "cnn"

    def validate(self):
        """Raises `ValueError` for any invalid setting (before any training)."""
        if self.model not in MODELS:
            raise ValueError(f"Unknown model {self.model!r}; valid choices: {', '.join(MODELS)}.")
        if self.model == "wmsa" and (self.l1 or self.l2 or self.batch_norm):
            raise ValueError(
                "l1, l2 and batch_norm apply to the CNN only (they rebuild a functional model; "
                "W-MSA is subclassed and normalises with LayerNorm); with model='wmsa' use "
                "dropout, or model='cnn'."
            )
        self.conditions = tuple(self.conditions)
        if not self.conditions:
            raise ValueError(f"conditions is empty; valid choices: {', '.join(CONDITIONS)}.")
        for c in self.conditions:
            if c not in CONDITIONS:
                raise ValueError(f"Unknown condition {c!r}; valid choices: {', '.join(CONDITIONS)}.")
        self.seeds = tuple(validate_epochs(s, "seed") for s in self.seeds)
        if not self.seeds:
            raise ValueError("seeds is empty; give at least one non-negative integer seed.")
        self.epochs = validate_epochs(self.epochs, "epochs")
        if self.epochs < 1:
            raise ValueError("epochs must be >= 1.")
        self.truncation_epochs = validate_epochs(self.truncation_epochs)
        if self.truncation_epochs > self.epochs:
            raise ValueError(
                f"truncation_epochs ({self.truncation_epochs}) must be <= epochs ({self.epochs})."
            )
        self.tau_init = validate_tau(self.tau_init, "tau_init")
        self.tau_final = validate_tau(self.tau_final, "tau_final")
        if self.tau_final < self.tau_init:
            raise ValueError(f"tau_final ({self.tau_final}) must be >= tau_init ({self.tau_init}).")
        self.rolloff = _validate_rolloff(self.rolloff)
        if not 0.0 < float(self.target_accuracy) < 1.0:
            raise ValueError(f"target_accuracy must lie in (0, 1); got {self.target_accuracy}.")
        if validate_epochs(self.batch_size, "batch_size") < 1:
            raise ValueError("batch_size must be >= 1.")
        if not float(self.lr) > 0:
            raise ValueError(f"lr must be > 0; got {self.lr}.")
        if validate_epochs(self.width, "width") < 1:
            raise ValueError("width must be >= 1.")
        from dwt_keras.training.flags import TrainingOptions

        TrainingOptions(augment=self.augment, lr_schedule=self.lr_schedule, l1=self.l1, l2=self.l2,
                        dropout=self.dropout, batch_norm=self.batch_norm).validate()
        return self

    def extras(self):
        """The training extras that differ from their defaults (for reports)."""
        defaults = StudyConfig()
        names = ("augment", "lr_schedule", "l1", "l2", "dropout", "batch_norm")  # not `model`
        return {n: getattr(self, n) for n in names if getattr(self, n) != getattr(defaults, n)}


def small_cnn(input_shape, num_classes, width=16, seed=None):
    """Five 3x3 conv layers (width, width, 2w, 2w, 4w), two max-pools, GAP, dense logits."""
    init = keras.initializers.GlorotUniform(seed=seed)
    inp = keras.Input(input_shape)
    x = inp
    for i, ch in enumerate((width, width, 2 * width, 2 * width, 4 * width)):
        x = keras.layers.Conv2D(ch, 3, padding="same", activation="relu", kernel_initializer=init)(x)
        if i in (1, 3):
            x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    out = keras.layers.Dense(num_classes, kernel_initializer=init)(x)
    return keras.Model(inp, out, name="small_cnn")


def build_study_model(cfg, input_shape, num_classes, seed):
    """The study's model for `cfg.model`.

    "cnn": `small_cnn` with the config's regularisation (`l1`, `l2`, `dropout`,
    `batch_norm`). "wmsa": W-MSA-tiny (`WaveletTransformer(model_size="tiny")`,
    library defaults) with `dropout`, built; its initialisation follows the
    global seed that `run_single` sets.
    """
    from dwt_keras.training.regularization import apply_regularization

    if cfg.model == "wmsa":
        from dwt_keras.transformer import WaveletTransformer

        model = WaveletTransformer(
            image_size=tuple(input_shape[:2]),
            in_channels=int(input_shape[2]),
            num_classes=int(num_classes),
            model_size="tiny",
            dropout=float(cfg.dropout),
        )
        model.build((None,) + tuple(input_shape))
        return model

    model = small_cnn(input_shape, num_classes, cfg.width, seed=seed)
    return apply_regularization(model, l1=cfg.l1, l2=cfg.l2, dropout=cfg.dropout,
                                batch_norm=cfg.batch_norm)


def training_data(splits, cfg, seed):
    """`(x, fit_kwargs)` for `Model.fit`: the arrays, or a shuffled, augmented `tf.data` pipeline.

    Without augmentation the arrays go to `fit` as before (Keras shuffles them); with it, a
    `tf.data` pipeline shuffles (seeded, reshuffled every epoch), batches and augments the
    training split only.
    """
    if cfg.augment in (None, "none"):
        return splits.x_train, {"y": splits.y_train, "batch_size": cfg.batch_size, "shuffle": True}
    import tensorflow as tf

    from dwt_keras.training.augmentation import augment_dataset, build_augmentation

    ds = (tf.data.Dataset.from_tensor_slices((splits.x_train, splits.y_train))
          .shuffle(len(splits.x_train), seed=int(seed), reshuffle_each_iteration=True)
          .batch(cfg.batch_size))
    aug = build_augmentation(cfg.augment, splits.x_train.shape[1:], seed=int(seed))
    return augment_dataset(ds, aug).prefetch(2), {"shuffle": False}  # the pipeline shuffles


class _EpochRecorder(keras.callbacks.Callback):
    """Per-epoch training time (batches only) and test accuracy."""

    def __init__(self, x_test, y_test, batch_size=500):
        super().__init__()
        self.x_test, self.y_test, self.batch_size = x_test, y_test, batch_size
        self.records = []

    def __deepcopy__(self, memo):  # holds arrays and a model: share, don't copy
        return self

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()
        self._t_last = self._t0

    def on_train_batch_end(self, batch, logs=None):
        self._t_last = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        train_time = self._t_last - self._t0
        logits = self.model.predict(self.x_test, batch_size=self.batch_size, verbose=0)
        test_acc = float(np.mean(np.argmax(logits, -1) == self.y_test))
        logs = dict(logs or {})
        self.records.append(
            {
                "epoch": int(epoch) + 1,
                "train_time_s": float(train_time),
                "loss": float(logs.get("loss", math.nan)),
                "accuracy": float(logs.get("accuracy", math.nan)),
                "val_loss": float(logs.get("val_loss", math.nan)),
                "val_accuracy": float(logs.get("val_accuracy", math.nan)),
                "test_accuracy": test_acc,
                "tau": float(logs.get("spectral_tau", 1.0)),
                # the rate of the epoch's last step (a schedule moves it within the epoch)
                "learning_rate": current_learning_rate(self.model.optimizer),
                "phase": float(logs.get("spectral_phase", 0.0)),
            }
        )


def _first_reach(values, target):
    for i, v in enumerate(values):
        if v >= target:
            return i
    return None


def run_single(splits, condition, seed, cfg, verbose=0):
    """Trains one (condition, seed) run and returns its per-epoch record and summary."""
    from dwt_keras.utils.seeding import set_seed

    if condition not in CONDITIONS:
        raise ValueError(f"Unknown condition {condition!r}; valid choices: {', '.join(CONDITIONS)}.")
    from dwt_keras.training.callbacks import standard_callbacks
    from dwt_keras.training.schedules import make_lr_schedule
    from dwt_keras.training.strategy import get_strategy

    set_seed(int(seed))
    keras.backend.clear_session()
    num_classes = int(splits.info["num_classes"])
    steps_per_epoch = int(math.ceil(len(splits.x_train) / cfg.batch_size))
    lr = make_lr_schedule(cfg.lr_schedule, cfg.lr, steps_per_epoch, cfg.epochs)
    with get_strategy(cfg.strategy).scope():
        model = build_study_model(cfg, splits.x_train.shape[1:], num_classes, int(seed))
        callbacks = []
        if condition != "baseline":
            trunc = SpectralTruncation(tau=cfg.tau_init, profile=condition, rolloff=cfg.rolloff)
            model = SpectralTrainingModel(model, trunc, apply_to="inputs")
            callbacks.append(TauScheduler(cfg.tau_init, cfg.tau_final, cfg.truncation_epochs))
        model.compile(
            optimizer=keras.optimizers.Adam(lr),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=["accuracy"],
        )
    recorder = _EpochRecorder(splits.x_test, splits.y_test)
    callbacks.append(recorder)
    if cfg.log_dir:
        # TauScheduler runs first, so tau and the phase reach TensorBoard with the epoch's logs.
        callbacks += standard_callbacks(os.path.join(cfg.log_dir, f"{condition}-seed{seed}"), model)
    x_train, fit_kwargs = training_data(splits, cfg, seed)
    t0 = time.perf_counter()
    model.fit(
        x_train,
        epochs=cfg.epochs,
        validation_data=(splits.x_val, splits.y_val),
        callbacks=callbacks,
        verbose=verbose,
        **fit_kwargs,
    )
    total = time.perf_counter() - t0
    rec = recorder.records
    test = [r["test_accuracy"] for r in rec]
    val = [r["val_accuracy"] for r in rec]
    cum = np.cumsum([r["train_time_s"] for r in rec])
    reach = _first_reach(test, cfg.target_accuracy)
    reach_val = _first_reach(val, cfg.target_accuracy)
    best_val = int(np.argmax(val))
    return {
        "condition": condition,
        "seed": int(seed),
        "epochs_to_target": None if reach is None else reach + 1,
        "time_to_target_s": None if reach is None else float(cum[reach]),
        "epochs_to_target_val": None if reach_val is None else reach_val + 1,
        "final_test_accuracy": test[-1],
        "best_val_epoch": best_val + 1,
        "test_accuracy_at_best_val": test[best_val],
        "max_test_accuracy": float(max(test)),
        "train_time_s": float(cum[-1]),
        "wall_time_s": float(total),
        "history": rec,
    }


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, len(a)


_SUMMARY_KEYS = (
    "epochs_to_target",
    "time_to_target_s",
    "epochs_to_target_val",
    "final_test_accuracy",
    "test_accuracy_at_best_val",
    "max_test_accuracy",
    "train_time_s",
)


def summarize(runs):
    """Mean, sample std and count (runs that reached the target) per condition and metric."""
    out = {}
    for cond in dict.fromkeys(r["condition"] for r in runs):
        rs = [r for r in runs if r["condition"] == cond]
        out[cond] = {"n_runs": len(rs)}
        for k in _SUMMARY_KEYS:
            m, s, n = _mean_std([r[k] for r in rs])
            out[cond][k] = {"mean": m, "std": s, "n": n}
    return out


def _fmt(stat, digits=3, pct=False):
    if stat["mean"] is None:
        return "not reached"
    scale = 100.0 if pct else 1.0
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def model_description(cfg):
    """One line naming the study's model (for reports)."""
    if getattr(cfg, "model", "cnn") == "wmsa":
        return ("W-MSA-tiny (WaveletTransformer: width 96, 4 blocks, 3 heads, db4, J=3, "
                "4x4 grouping, LayerNorm on the embedded tokens)")
    return f"Small CNN (width {cfg.width})"


def results_markdown(summary, cfg, info=None, command=None, machine=None):
    """A markdown table of `summarize` output with the study settings."""
    lines = [
        f"{model_description(cfg)} on {cfg.dataset}"
        + (f" ({info['n_train']} train / {info['n_val']} val / {info['n_test']} test)" if info else "")
        + f", {cfg.epochs} epochs, Adam lr {cfg.lr}, batch {cfg.batch_size}, seeds {list(cfg.seeds)}; "
        f"truncation: tau {cfg.tau_init} -> {cfg.tau_final} over {cfg.truncation_epochs} epochs then off "
        f"(cosine roll-off {cfg.rolloff}). Target test accuracy {cfg.target_accuracy:.2f}. "
        "Mean ± sample std over seeds; 'reached' counts the runs that reached the target "
        "(epoch/time means are over those runs only). Time = training batches only."
        + (f" Training extras (all conditions): {cfg.extras()}." if cfg.extras() else ""),
        "",
        "| condition | reached | epochs to target (test) | train time to target (s) "
        "| epochs to target (val) | final test acc (%) | test acc at best val (%) | total train time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cond, s in summary.items():
        lines.append(
            f"| {cond} | {s['epochs_to_target']['n']}/{s['n_runs']} | {_fmt(s['epochs_to_target'], 1)} "
            f"| {_fmt(s['time_to_target_s'], 1)} | {_fmt(s['epochs_to_target_val'], 1)} "
            f"| {_fmt(s['final_test_accuracy'], 1, True)} | {_fmt(s['test_accuracy_at_best_val'], 1, True)} "
            f"| {_fmt(s['train_time_s'], 1)} |"
        )
    if command:
        lines += ["", f"Command: `{command}`"]
    if machine:
        lines += [f"Machine: {machine}"]
    return "\n".join(lines) + "\n"


def machine_description():
    import os

    import tensorflow as tf

    from dwt_keras.utils.machine import cpu_model

    model = cpu_model()
    return (
        f"{os.cpu_count()}-core {platform.machine()} CPU ({model}), shared with other jobs, "
        f"TF {tf.__version__}, Keras {keras.__version__}, no GPU"
    )


def run_study(cfg, out_dir, splits=None, command=None, verbose=0, log=print):
    """Runs every (condition, seed) pair and writes `spectral_study.json` / `.md`.

    Runs are ordered seed-major (all conditions for seed 0, then seed 1, ...)
    so that a study cut short still compares the conditions on equal terms.

    Args:
        cfg: a `StudyConfig` (validated here, before any data is loaded).
        out_dir: folder for the results (created; must be writable).
        splits: preloaded `DatasetSplits` (default: `load_arrays(cfg.dataset)`).
        command: the command line, recorded in the results.
        verbose: Keras `fit` verbosity.
        log: a function taking one progress string.

    Returns:
        The results dict (also written to `out_dir/spectral_study.json`).
    """
    from dwt_keras.utils.io import atomic_write_bytes, atomic_write_json, check_writable_dir

    cfg.validate()
    out_dir = check_writable_dir(pathlib.Path(out_dir))
    if splits is None:
        from dwt_keras.data import load_arrays

        splits = load_arrays(cfg.dataset, cfg.data_dir, cfg.validation_split, cfg.split_seed)
    machine = machine_description()
    runs = []
    results = {}
    for seed in cfg.seeds:
        for cond in cfg.conditions:
            t = time.perf_counter()
            run = run_single(splits, cond, seed, cfg, verbose=verbose)
            runs.append(run)
            log(
                f"[spectral study] {cond} seed {seed}: final test acc {run['final_test_accuracy']:.4f}, "
                f"epochs to {cfg.target_accuracy:.2f}: {run['epochs_to_target']}, "
                f"{time.perf_counter() - t:.0f} s"
            )
            summary = summarize(runs)
            results = {
                "config": dataclasses.asdict(cfg),
                "data": splits.info,
                "machine": machine,
                "command": command,
                "summary": summary,
                "runs": runs,
                "complete": False,
            }
            atomic_write_json(out_dir / "spectral_study.json", results)
            atomic_write_bytes(
                out_dir / "spectral_study.md",
                results_markdown(summary, cfg, splits.info, command, machine).encode(),
            )
    results["complete"] = True
    atomic_write_json(out_dir / "spectral_study.json", results)
    return results


def load_results(path):
    with open(path) as f:
        return json.load(f)


def merge_results(results_list, command=None):
    """Combines study results run in parts (e.g. different seeds in parallel).

    Settings other than the seeds must agree; a (condition, seed) pair present
    twice is an error. Returns a results dict like `run_study`'s, with the
    summary recomputed over all runs and `complete` true only if every part was.
    """
    if not results_list:
        raise ValueError("merge_results needs at least one results dict.")
    base = dict(results_list[0]["config"])
    base.pop("seeds", None)
    runs, seen, seeds = [], set(), []
    for res in results_list:
        cfg = dict(res["config"])
        part_seeds = cfg.pop("seeds", ())
        if {k: v for k, v in cfg.items() if k != "conditions"} != {
            k: v for k, v in base.items() if k != "conditions"
        }:
            raise ValueError("merge_results: the parts were run with different settings.")
        for r in res["runs"]:
            key = (r["condition"], r["seed"])
            if key in seen:
                raise ValueError(f"merge_results: run {key} appears twice.")
            seen.add(key)
            runs.append(r)
        seeds += [s for s in part_seeds if s not in seeds]
    config = dict(results_list[0]["config"], seeds=sorted({r["seed"] for r in runs}))
    return {
        "config": config,
        "data": results_list[0].get("data"),
        "machine": results_list[0].get("machine"),
        "command": command or [r.get("command") for r in results_list],
        "summary": summarize(runs),
        "runs": runs,
        "complete": all(r.get("complete") for r in results_list),
        "parts": len(results_list),
    }


def write_results(results, out_dir):
    """Writes `spectral_study.json` and `spectral_study.md` for a results dict."""
    from dwt_keras.utils.io import atomic_write_bytes, atomic_write_json, check_writable_dir

    out_dir = check_writable_dir(pathlib.Path(out_dir))
    cfg = StudyConfig(**{k: v for k, v in results["config"].items() if k in StudyConfig.__dataclass_fields__})
    cmd = results.get("command")
    cmd = "; ".join(c for c in cmd if c) if isinstance(cmd, list) else cmd
    atomic_write_json(out_dir / "spectral_study.json", results)
    md = results_markdown(results["summary"], cfg, results.get("data"), cmd, results.get("machine"))
    atomic_write_bytes(out_dir / "spectral_study.md", md.encode())
    return out_dir
