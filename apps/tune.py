"""KerasTuner search over the DWT compression pipeline (or the W-MSA transformer).

Examples:

  # random search, 20 trials, size-aware objective (val accuracy subject to >= 50x smaller)
  python apps/tune.py --tuner random --max_trials 20 --epochs 3 --dataset mnist --save_dir tuning
  # Bayesian optimisation / Hyperband, from flag files
  python apps/tune.py --flagfile configs/tune_mnist_bayesian.cfg
  python apps/tune.py --flagfile configs/tune_mnist_hyperband.cfg
  # every trial's dense training starts on DCT-low-passed inputs (spectral truncation)
  python apps/tune.py --epochs 3 --spectral_reg --truncation_epochs 1 --save_dir tuning

Results go to <save_dir>/tune-<space>-<dataset>-<model>-<tuner>-<objective>-<hash>/:
best_hyperparameters.json, trials.csv, trials.md, best_model/ (the best trial's compressed file and
report.json with its TEST-split metrics), search_summary.json, and TensorBoard logs
(tensorboard/trials per trial, tensorboard/hparams for the HParams dashboard):

  tensorboard --logdir <save_dir>/<project>/tensorboard

Re-running the same command continues an interrupted search (raise --max_trials to extend a
finished one). Distributed tuning: start one chief and any number of workers with the same flags
and the same --save_dir (shared file system):

  KERASTUNER_TUNER_ID=chief   KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 python apps/tune.py ...
  KERASTUNER_TUNER_ID=tuner0  KERASTUNER_ORACLE_IP=10.0.0.1 KERASTUNER_ORACLE_PORT=8000 python apps/tune.py ...
"""

import json
import os
import sys

# Runnable as `python apps/tune.py` from a checkout, without installing the package.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app  # noqa: E402
from absl import flags  # noqa: E402

from dwt_keras.cli import define_common_flags  # noqa: E402

_DEFAULTS = dict(epochs=2, save_dir="./tuning", dataset="mnist")
try:
    define_common_flags(**_DEFAULTS)
except flags.DuplicateFlagError:
    # absl.logging (imported by absl.app) already defines --log_dir; reuse it for TensorBoard and
    # define the remaining common flags here.
    for _name, _define, _args, _kw in (
        ("seed", flags.DEFINE_integer, (0, "Random seed."), {"lower_bound": 0}),
        ("epochs", flags.DEFINE_integer, (_DEFAULTS["epochs"], "Dense training epochs per trial "
                                          "(Hyperband: the maximum)."), {"lower_bound": 1}),
        ("batch_size", flags.DEFINE_integer, (32, "Unused: the batch size is searched."), {}),
        ("lr", flags.DEFINE_float, (1e-3, "Unused: the learning rate is searched."), {}),
        ("strategy", flags.DEFINE_enum, ("default", ["default", "mirrored", "multi_worker", "tpu"],
                                         "tf.distribute strategy of each trial."), {}),
        ("mixed_precision", flags.DEFINE_boolean, (False, "Unused by the search."), {}),
        ("validation_split", flags.DEFINE_float, (0.1, "Share of the training split held out "
                                                  "for scoring trials."), {}),
    ):
        if _name not in flags.FLAGS:
            _define(_name, *_args, **_kw)

from dwt_keras.tuning.objectives import OBJECTIVES  # noqa: E402
from dwt_keras.tuning.search import SEARCH_SPACES, TUNERS, SearchConfig  # noqa: E402

flags.DEFINE_enum("tuner", "random", list(TUNERS), "KerasTuner algorithm.")
flags.DEFINE_enum("search_space", "compression", list(SEARCH_SPACES),
                  "compression: the DWT compression pipeline; wmsa: the wavelet transformer.")
flags.DEFINE_string("model", "lenet300", "Model to compress (lenet300, lenet5, resnet18, mlp).")
flags.DEFINE_integer("max_trials", 10, "Total trials of the search (a resumed search counts the "
                     "finished ones).", lower_bound=1)
flags.DEFINE_integer("executions_per_trial", 1, "Trainings per trial (metrics averaged).",
                     lower_bound=1)
flags.DEFINE_enum("objective", "constrained", list(OBJECTIVES),
                  "val_accuracy; constrained: val accuracy subject to --min_compression_ratio; "
                  "tradeoff: val accuracy + --tradeoff_weight * log10(ratio).")
flags.DEFINE_float("min_compression_ratio", 50.0, "Ratio constraint of --objective constrained.",
                   lower_bound=1e-9)
flags.DEFINE_float("tradeoff_weight", 0.01, "Weight of --objective tradeoff.", lower_bound=0.0)
flags.DEFINE_integer("retrain_epochs", 1, "Retraining epochs with the mask held per trial.",
                     lower_bound=1)
flags.DEFINE_integer("hyperband_factor", 3, "Hyperband reduction factor.", lower_bound=2)
flags.DEFINE_integer("max_train_samples", 0, "Use a random subset of this many training images "
                     "(0: all) and a quarter as many validation images, for quick searches.",
                     lower_bound=0)
flags.DEFINE_list("bases", None, "Candidate bases (default: identity, dct, haar, db2, db4, sym4, "
                  "coif2, bior2.2).")
flags.DEFINE_list("schedules", None, "Candidate schedules (default: oneshot, iterative, gradual).")
flags.DEFINE_list("quantizers", None, "Candidate value quantisations (default: none, float16, "
                  "kmeans).")
flags.DEFINE_float("keep_ratio_min", 0.005, "Smallest keep ratio searched.", lower_bound=1e-6,
                   upper_bound=1.0)
flags.DEFINE_float("keep_ratio_max", 0.2, "Largest keep ratio searched.", lower_bound=1e-6,
                   upper_bound=1.0)
flags.DEFINE_integer("verbose", 0, "Keras verbosity during trials.", lower_bound=0, upper_bound=2)
# --spectral_reg --tau_init --tau_final --truncation_epochs --mask_profile --mask_rolloff
# --spectral_per_step: every trial's dense training sees low-passed inputs first.
from dwt_keras.spectral.flags import define_spectral_flags  # noqa: E402

define_spectral_flags(truncation_epochs=1)

FLAGS = flags.FLAGS


def config_from_flags():
    from dwt_keras.compression.pipeline import SPECTRAL_FIELDS

    return SearchConfig(
        tuner=FLAGS.tuner, search_space=FLAGS.search_space, dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir, save_dir=FLAGS.save_dir, log_dir=FLAGS.log_dir or None,
        model=FLAGS.model, max_trials=FLAGS.max_trials,
        executions_per_trial=FLAGS.executions_per_trial, objective=FLAGS.objective,
        min_compression_ratio=FLAGS.min_compression_ratio, tradeoff_weight=FLAGS.tradeoff_weight,
        epochs=FLAGS.epochs, retrain_epochs=FLAGS.retrain_epochs,
        hyperband_factor=FLAGS.hyperband_factor, seed=FLAGS.seed,
        validation_split=FLAGS.validation_split, max_train_samples=FLAGS.max_train_samples,
        bases=tuple(FLAGS.bases) if FLAGS.bases else None,
        schedules=tuple(FLAGS.schedules) if FLAGS.schedules else None,
        quantizers=tuple(FLAGS.quantizers) if FLAGS.quantizers else None,
        keep_ratio_range=(FLAGS.keep_ratio_min, FLAGS.keep_ratio_max),
        strategy=FLAGS.strategy, verbose=FLAGS.verbose,
        **{name: getattr(FLAGS, name) for name in SPECTRAL_FIELDS},
    ).validate()


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags()
    except ValueError as e:
        raise app.UsageError(str(e))
    from dwt_keras.tuning.search import run_search

    result = run_search(config)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    app.run(main)
