"""Learnable wavelet / Fastfood layers (Wolter, Lin & Yao, ICANN 2020): the paper's experiments.

Examples:

  python apps/learnable_wavelet.py --experiment mnist --fc1 wavelet --epochs 20 --save_dir runs
  python apps/learnable_wavelet.py --experiment adding --rnn wavelet --hidden 512 --compress all
  python apps/learnable_wavelet.py --flagfile configs/learnable_mnist_wavelet.cfg

  python apps/learnable_wavelet.py --experiment mnist --spectral_reg --truncation_epochs 5
  python apps/learnable_wavelet.py --experiment mnist --lr_schedule cosine --augment mnist \
      --l2 1e-4 --early_stopping_patience 3 --export tflite --saliency_images 4
  python apps/learnable_wavelet.py --experiment mnist --ensemble 3     # or --cv_folds 5
  python apps/learnable_wavelet.py --experiment adding --init_from runs/.../model.keras --freeze

Each run writes a new folder under --save_dir with report.json (params, test_accuracy, ...),
model.keras and, for wavelet layers, filters.png. Settings not given take the experiment's
defaults (dwt_keras.experiments.learnable.EXPERIMENT_DEFAULTS); how each shared extra applies to
structured layers and to the sequence tasks is documented in dwt_keras.experiments.learnable.
The flags are the fields of `LearnableConfig`.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dwt_keras import cli  # noqa: E402
from dwt_keras.experiments.learnable import LearnableConfig  # noqa: E402

cli.define_flags(LearnableConfig)


def main(argv):
    if len(argv) > 1:
        raise cli.app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dwt_keras.experiments.learnable import format_summary, run_learnable

    report = run_learnable(cli.config_from_flags(LearnableConfig))
    print(format_summary(report))
    print(f"report: {report['run_dir']}/report.json")


if __name__ == "__main__":
    cli.run(main)
