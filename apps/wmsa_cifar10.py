"""Train a wavelet multi-scale attention transformer (W-MSA) or a ViT on CIFAR-10.

The run folder is ``<save_dir>/<run_name>``. Without ``--run_name`` the name is derived from the
settings (model, size, dataset, wavelet, levels, patch size, kernel, epochs, seed, and the
spectral / training-extras settings that change training), so re-running the SAME command
resumes an interrupted run from its last completed epoch (weights, optimizer state, schedule,
history) and does not retrain a finished one. Pass a new ``--run_name`` to start afresh.

Outputs: ``config.json``, ``status.json``, ``history.csv``, ``best.keras`` (best validation
accuracy), ``last.keras``, ``report.json`` (test-split accuracy, per-class precision/recall/F1,
confusion matrix) and TensorBoard logs under ``<log_dir>/<run_name>`` when ``--log_dir`` is set.

Example:

    python apps/wmsa_cifar10.py --flagfile=configs/wmsa_tiny.cfg
    python apps/wmsa_cifar10.py --model=vit --model_size=tiny --patch_size=4 \
        --dataset=cifar10_subset --epochs=20
    python apps/wmsa_cifar10.py --flagfile=configs/wmsa_tiny_subset_spectral.cfg

The flags are the fields of `dwt_keras.experiments.transformer.TransformerConfig`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dwt_keras import cli  # noqa: E402
from dwt_keras.experiments.transformer import TransformerConfig  # noqa: E402

cli.define_flags(TransformerConfig)


def main(argv):
    if len(argv) > 1:
        raise cli.app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dwt_keras.experiments.transformer import run_transformer

    run_transformer(cli.config_from_flags(TransformerConfig))


if __name__ == "__main__":
    cli.run(main)
