"""Sweep bases x keep ratios on one trained model; write CSV/JSON and a Pareto plot.

    python apps/compression_sweep.py --dataset mnist --model lenet300 --epochs 10 \
        --bases identity,dct,haar,db2,db4,sym4,coif2,bior2.2 --keep_ratios 0.05,0.03,0.02,0.01 \
        --retrain_epochs 2 --save_dir ./saved_models

The model is trained (early stopping on validation) or loaded with --init_model (a .keras file);
each basis then walks down the keep ratios with retraining (masks held); the smallest file whose
VALIDATION accuracy stays within --tolerance of the dense model is selected per basis and its
TEST accuracy reported. The winner is the basis with the smallest selected file. The flags are
the fields of `dwt_keras.experiments.sweep.SweepConfig`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dwt_keras import cli  # noqa: E402
from dwt_keras.experiments.sweep import SweepConfig  # noqa: E402

cli.define_flags(SweepConfig)


def main(argv):
    if len(argv) > 1:
        raise cli.app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dwt_keras.experiments.sweep import run_sweep

    run_sweep(cli.config_from_flags(SweepConfig))


if __name__ == "__main__":
    cli.run(main)
