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

from dwt_keras import cli  # noqa: E402
from dwt_keras.tuning.search import SearchConfig  # noqa: E402

# The flags are the fields of SearchConfig: the search's own, and the compression settings that
# every compression trial keeps fixed (the searched ones are replaced per trial).
cli.define_flags(SearchConfig)


def main(argv):
    if len(argv) > 1:
        raise cli.app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dwt_keras.tuning.search import run_search

    result = run_search(cli.config_from_flags(SearchConfig))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    cli.run(main)
