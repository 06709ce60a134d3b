"""Train a model, compress its weights in a wavelet basis with the masks held during retraining,
and write the dense model, the compressed file, report.json and plots into a new run folder.

Example (the main-job command):

    python apps/DWT_model.py --wavelet haar --batch_size 32 --epochs 10 --save_dir ./SavedModels
    python apps/DWT_model.py --flagfile=configs/mnist_lenet5.cfg
    # spectral truncation: the first 2 dense epochs see DCT-low-passed inputs (tau 0.05 -> 1)
    python apps/DWT_model.py --epochs 6 --spectral_reg --truncation_epochs 2 --mask_profile cosine

The flags are the fields of `dwt_keras.experiments.compression.CompressionConfig`; the run is
`run_compression` (the experiment engine).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dwt_keras import cli  # noqa: E402
from dwt_keras.experiments.compression import CompressionConfig  # noqa: E402

cli.define_flags(CompressionConfig)


def main(argv):
    if len(argv) > 1:
        raise cli.app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dwt_keras.experiments.compression import run_compression

    report = run_compression(cli.config_from_flags(CompressionConfig))
    if "cross_validation" in report or "folds" in report:
        acc = report["summary"]["test_accuracy"]
        print(f"{report['cv_folds']}-fold CV, compressed test accuracy {acc['mean']:.4f} +- "
              f"{acc['std']:.4f}: {report['run_dir']}/cv_report.json")
    elif "n_members" in report:
        print(f"Ensemble of {report['n_members']}: test accuracy "
              f"{report['test']['accuracy']:.4f}, {report['bytes']['bytes_total']:,} bytes: "
              f"{report['run_dir']}/ensemble_report.json")
    else:
        print(f"Wrote {report['files']['report']}")


if __name__ == "__main__":
    cli.run(main)
