"""Spectral-truncation convergence study: a small CNN or W-MSA, with and without the curriculum.

Trains --model (cnn: a small CNN; wmsa: the W-MSA-tiny WaveletTransformer) on --dataset
(default cifar10_subset) for every condition in --conditions (baseline = no truncation, linear
and cosine mask profiles) and every seed in --seeds; measures the epochs and training time to
reach --target_accuracy on the test split, the final test accuracy and the test accuracy at the
best-validation epoch; writes mean ± std over seeds.

Examples:

  python apps/spectral_study.py --flagfile configs/spectral_study.cfg
  python apps/spectral_study.py --seeds 0 --epochs 5 --truncation_epochs 2   # smoke run
  python apps/spectral_study.py --model wmsa --epochs 6 --truncation_epochs 2 --batch_size 128 \
      --lr_schedule cosine --target_accuracy 0.3
  # seeds in parallel processes, then one table:
  python apps/spectral_study.py --flagfile configs/spectral_study.cfg --seeds 2 --save_dir runs_s2
  python apps/spectral_study.py --merge runs_a/.../spectral_study.json,runs_s2/.../spectral_study.json

Each run writes a new folder under --save_dir with spectral_study.json (every epoch of every
run), spectral_study.md (the summary table), masks.png (radial mask profiles), progression.png
(a test image at several tau) and curves.png (test accuracy per epoch, mean ± std over seeds).
The flags are the fields of `dwt_keras.experiments.spectral_study.StudyConfig` (its docstring
says which shared extras a study refuses, and why).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import flags  # noqa: E402

from dwt_keras import cli  # noqa: E402
from dwt_keras.experiments.spectral_study import StudyConfig  # noqa: E402

cli.define_flags(StudyConfig)
if "merge" not in flags.FLAGS:
    flags.DEFINE_list("merge", [], "Instead of training: merge these spectral_study.json files "
                      "(parts of one study run with different --seeds) into a new run folder.")


def main(argv):
    if len(argv) > 1:
        raise cli.app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dwt_keras.experiments.spectral_study import merge_studies, run_study

    if flags.FLAGS.merge:
        _, folder = merge_studies(flags.FLAGS.merge, flags.FLAGS.save_dir,
                                  figures=flags.FLAGS.figures)
        print((folder / "spectral_study.md").read_text())
        print(f"Results in {folder}")
        return
    run_study(cli.config_from_flags(StudyConfig))


if __name__ == "__main__":
    cli.run(main)
