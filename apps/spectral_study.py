"""Spectral-truncation convergence study: a small CNN or W-MSA, with and without the curriculum.

Trains --model (cnn: a small CNN; wmsa: the W-MSA-tiny WaveletTransformer) on --dataset (default cifar10_subset) for every condition in
--conditions (baseline = no truncation, linear and cosine mask profiles) and
every seed in --seeds; measures the epochs and training time to reach
--target_accuracy on the test split, the final test accuracy and the test
accuracy at the best-validation epoch; writes mean ± std over seeds.

Examples:

  python apps/spectral_study.py --flagfile configs/spectral_study.cfg
  python apps/spectral_study.py --seeds 0 --epochs 5 --truncation_epochs 2   # smoke run
  python apps/spectral_study.py --model wmsa --epochs 6 --truncation_epochs 2 --batch_size 128 \
      --lr_schedule cosine --target_accuracy 0.3
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

Training extras shared with the other apps that apply to every condition alike:
--augment, --lr_schedule, --l1, --l2, --dropout, --batch_norm (with --model wmsa only
--dropout of these applies; --l1/--l2/--batch_norm are refused), e.g.

  python apps/spectral_study.py --flagfile configs/spectral_study.cfg --augment cifar --lr_schedule cosine

The other shared extras are refused with a clear error: --early_stopping_patience
(every run must last --epochs epochs for the curves and the time-to-accuracy
metric to compare conditions over the same horizon), --cv_folds, --ensemble,
--saliency_images, --init_from/--freeze and --export (a study compares
training runs; it keeps no final model).
"""

import os
import sys

# Runnable from a checkout without installing the package, like the other apps.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags

from dwt_keras.cli import define_common_flags
from dwt_keras.spectral.flags import define_spectral_flags
from dwt_keras.training.flags import TrainingOptions, define_training_flags

define_common_flags(dataset="cifar10_subset", epochs=30, batch_size=64, lr=1e-3)
define_spectral_flags(truncation_epochs=10)
define_training_flags()


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
_define(flags.DEFINE_string, "model", "cnn",
        "Model of the study: cnn (small CNN, --width) or wmsa (W-MSA-tiny WaveletTransformer).")
_define(flags.DEFINE_boolean, "figures", True, "Write masks.png and progression.png.")
_define(flags.DEFINE_list, "merge", [],
        "Instead of training: merge these spectral_study.json files (parts of one study run "
        "with different --seeds) into a new run folder.")
_define(flags.DEFINE_integer, "verbose", 0, "Keras fit verbosity (0, 1, 2).", lower_bound=0,
        upper_bound=2)

FLAGS = flags.FLAGS

# Shared training extras that a convergence study cannot honour, and why.
_REFUSED_EXTRAS = {
    "early_stopping_patience": "every run must last --epochs epochs so that conditions are "
                               "compared over the same horizon",
    "cv_folds": "the study already repeats runs over --seeds",
    "ensemble": "the study already repeats runs over --seeds",
    "saliency_images": "the study keeps no final model",
    "init_from": "every run starts from a fresh, seeded model",
    "freeze": "every run starts from a fresh, seeded model",
    "export": "the study keeps no final model",
}


def _check_extras():
    opts = TrainingOptions.from_flags(FLAGS)
    for name, why in _REFUSED_EXTRAS.items():
        if getattr(opts, name) != getattr(TrainingOptions(), name):
            raise ValueError(
                f"--{name} is not supported by spectral_study ({why}). Supported extras: "
                "--augment, --lr_schedule, --l1, --l2, --dropout, --batch_norm.")
    return opts


def config_from_flags():
    from dwt_keras.spectral.study import StudyConfig

    try:
        seeds = tuple(int(s) for s in FLAGS.seeds)
    except ValueError:
        raise ValueError(f"--seeds must be a comma-separated list of integers; got {FLAGS.seeds}.") from None
    opts = _check_extras()
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
        model=FLAGS.model,
        validation_split=FLAGS.validation_split,
        split_seed=FLAGS.seed,
        strategy=FLAGS.strategy,
        log_dir=FLAGS.log_dir or None,
        augment=opts.augment,
        lr_schedule=opts.lr_schedule,
        l1=opts.l1,
        l2=opts.l2,
        dropout=opts.dropout,
        batch_norm=opts.batch_norm,
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
    try:
        cfg = config_from_flags()  # bad settings stop here, before any data or training
    except ValueError as e:
        raise app.UsageError(str(e)) from e
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
