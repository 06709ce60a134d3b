"""Spectral-truncation convergence study: a small CNN with and without the curriculum.

Trains a small CNN on --dataset (default cifar10_subset) for every condition in
--conditions (baseline = no truncation, linear and cosine mask profiles) and
every seed in --seeds; measures the epochs and training time to reach
--target_accuracy on the test split, the final test accuracy and the test
accuracy at the best-validation epoch; writes mean ± std over seeds.

Examples:

  python apps/spectral_study.py --flagfile configs/spectral_study.cfg
  python apps/spectral_study.py --seeds 0 --epochs 5 --truncation_epochs 2   # smoke run
  # seeds in parallel processes, then one table:
  python apps/spectral_study.py --flagfile configs/spectral_study.cfg --seeds 2 --save_dir runs_s2
  python apps/spectral_study.py --merge runs_a/.../spectral_study.json,runs_s2/.../spectral_study.json

Each run writes a new folder under --save_dir with spectral_study.json (every
epoch of every run), spectral_study.md (the summary table), masks.png (radial
mask profiles), progression.png (a test image at several tau) and curves.png
(test accuracy per epoch, mean ± std over seeds).
The spectral flags --spectral_reg and --mask_profile are accepted for
uniformity with the other apps but unused: this app always compares the
conditions listed in --conditions.
"""

import sys

from absl import app
from absl import flags

from dwt_keras.cli import define_common_flags
from dwt_keras.spectral.flags import define_spectral_flags

define_common_flags(dataset="cifar10_subset", epochs=30, batch_size=64, lr=1e-3)
define_spectral_flags(truncation_epochs=10)


def _define(define, name, *args, **kwargs):
    # Tests may import several apps into one process; keep the first definition.
    if name not in flags.FLAGS:
        define(name, *args, **kwargs)


_define(flags.DEFINE_list, "conditions", "baseline,linear,cosine",
        "Conditions to compare: any of baseline, linear, cosine.")
_define(flags.DEFINE_list, "seeds", "0,1,2", "Model/shuffle seeds (one run per condition and seed).")
_define(flags.DEFINE_float, "target_accuracy", 0.45,
        "Fixed test accuracy for the time-to-accuracy metric.")
_define(flags.DEFINE_integer, "width", 16, "Channels of the CNN's first stage.", lower_bound=1)
_define(flags.DEFINE_boolean, "figures", True, "Write masks.png and progression.png.")
_define(flags.DEFINE_list, "merge", [],
        "Instead of training: merge these spectral_study.json files (parts of one study run "
        "with different --seeds) into a new run folder.")
_define(flags.DEFINE_integer, "verbose", 0, "Keras fit verbosity (0, 1, 2).", lower_bound=0,
        upper_bound=2)

FLAGS = flags.FLAGS


def config_from_flags():
    from dwt_keras.spectral.study import StudyConfig

    try:
        seeds = tuple(int(s) for s in FLAGS.seeds)
    except ValueError:
        raise ValueError(f"--seeds must be a comma-separated list of integers; got {FLAGS.seeds}.") from None
    return StudyConfig(
        dataset=FLAGS.dataset,
        data_dir=FLAGS.data_dir,
        conditions=tuple(FLAGS.conditions),
        seeds=seeds,
        epochs=FLAGS.epochs,
        truncation_epochs=FLAGS.truncation_epochs,
        tau_init=FLAGS.tau_init,
        tau_final=FLAGS.tau_final,
        rolloff=FLAGS.mask_rolloff,
        target_accuracy=FLAGS.target_accuracy,
        batch_size=FLAGS.batch_size,
        lr=FLAGS.lr,
        width=FLAGS.width,
        validation_split=FLAGS.validation_split,
        split_seed=FLAGS.seed,
        strategy=FLAGS.strategy,
        log_dir=FLAGS.log_dir or None,
    ).validate()


def main(argv):
    del argv
    from dwt_keras.data import load_arrays
    from dwt_keras.spectral import figures, study
    from dwt_keras.utils.io import make_run_dir

    if FLAGS.merge:
        merged = study.merge_results([study.load_results(p) for p in FLAGS.merge],
                                     command="python " + " ".join(sys.argv))
        run_dir = study.write_results(merged, make_run_dir(FLAGS.save_dir, "spectral-study-merged"))
        if FLAGS.figures:
            figures.plot_study_curves(merged, run_dir / "curves.png")
        print((run_dir / "spectral_study.md").read_text())
        print(f"Results in {run_dir}")
        return
    cfg = config_from_flags()  # ValueError on bad settings, before any data or training
    run_dir = make_run_dir(FLAGS.save_dir, f"spectral-study-{cfg.dataset}")
    splits = load_arrays(cfg.dataset, cfg.data_dir, cfg.validation_split, cfg.split_seed)
    if FLAGS.figures:
        figures.plot_mask_profiles(run_dir / "masks.png", rolloff=cfg.rolloff)
        figures.plot_tau_progression(splits.x_test[0], run_dir / "progression.png",
                                     profile="cosine", rolloff=cfg.rolloff)
    command = "python " + " ".join(sys.argv)
    results = study.run_study(cfg, run_dir, splits=splits, command=command, verbose=FLAGS.verbose)
    if FLAGS.figures:
        figures.plot_study_curves(results, run_dir / "curves.png")
    print((run_dir / "spectral_study.md").read_text())
    print(f"Results in {run_dir}")



if __name__ == "__main__":
    app.run(main)
