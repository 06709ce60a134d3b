"""Learnable wavelet / Fastfood layers (Wolter, Lin & Yao, ICANN 2020): the paper's experiments.

Examples:

  # MNIST CNN with a learnable-wavelet fc1 (36,030 parameters), the paper's schedule
  python apps/learnable_wavelet.py --experiment mnist --fc1 wavelet --epochs 20 --save_dir runs
  # adding problem, T=150, GRU with all three recurrent matrices as wavelet layers
  python apps/learnable_wavelet.py --experiment adding --rnn wavelet --hidden 512 --compress all
  # flag files
  python apps/learnable_wavelet.py --flagfile configs/learnable_mnist_wavelet.cfg

  # spectral truncation of the training images during the first 5 epochs (mnist, smnist)
  python apps/learnable_wavelet.py --experiment mnist --spectral_reg --truncation_epochs 5
  # shared training extras
  python apps/learnable_wavelet.py --experiment mnist --lr_schedule cosine --augment mnist \
      --l2 1e-4 --early_stopping_patience 3 --export tflite --saliency_images 4
  python apps/learnable_wavelet.py --experiment mnist --ensemble 3     # or --cv_folds 5
  python apps/learnable_wavelet.py --experiment adding --init_from runs/.../model.keras --freeze

Each run writes a new folder under --save_dir with report.json (params, test_accuracy, ...),
model.keras and, for wavelet layers, filters.png. Settings not given on the command line take
the experiment's defaults (see dwt_keras.learnable.experiments.EXPERIMENT_DEFAULTS).

--lr_schedule constant (the default) keeps the experiment's per-epoch step decay --lr_decay
(mnist: 0.8); any other schedule replaces it (--lr_decay then defaults to 1, and giving both is
an error). --spectral_reg applies to the image experiments only (smnist: the 28x28 image is
filtered before it is serialised); the saved model.keras is the plain model and report.json
records the spectral settings and the tau of every epoch. How each extra applies to structured
layers and to the sequence tasks (and which ones those refuse) is documented in
dwt_keras.learnable.experiments.
"""

import os
import sys

# Runnable from a checkout without installing the package, like the other apps.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app
from absl import flags

from dwt_keras.cli import define_common_flags
from dwt_keras.learnable import experiments as ex
from dwt_keras.spectral.flags import define_spectral_flags
from dwt_keras.training.flags import define_training_flags

define_common_flags(epochs=20, batch_size=64, lr=1.0, dataset="mnist")
define_spectral_flags(truncation_epochs=10)
define_training_flags()
flags.DEFINE_enum("experiment", "mnist", list(ex.EXPERIMENTS), "Which experiment to run.")
flags.DEFINE_enum("fc1", "wavelet", list(ex.FC1_CHOICES), "MNIST CNN: the fc1 layer.")
flags.DEFINE_integer("dense_units", 500, "MNIST CNN: width of the dense fc1.", lower_bound=1)
flags.DEFINE_enum("rnn", "wavelet", list(ex.RNN_CHOICES), "Sequence tasks: GRU variant.")
flags.DEFINE_integer("hidden", 512, "Sequence tasks: GRU hidden size (smnist default: 58).", lower_bound=1)
flags.DEFINE_list("compress", "state,reset,update",
                  "Sequence tasks: recurrent matrices made structured (any of state, reset, update).")
flags.DEFINE_integer("levels", None, "Wavelet levels (default: the deepest allowed).", lower_bound=1)
flags.DEFINE_integer("filter_length", 6, "Length of each learnable wavelet filter.", lower_bound=2)
flags.DEFINE_string("init_wavelet", "haar",
                    "Initial wavelet (a discrete PyWavelets name, zero-padded) or 'random'.")
flags.DEFINE_float("wavelet_loss_weight", 1.0, "Weight of the wavelet loss (0: off).", lower_bound=0.0)
flags.DEFINE_integer("seq_len", 150, "Adding / copy problems: sequence length T.", lower_bound=2)
flags.DEFINE_integer("steps_per_epoch", 50, "Adding / copy problems: generated batches per epoch.",
                     lower_bound=1)
flags.DEFINE_integer("n_val", 500, "Adding / copy problems: validation set size.", lower_bound=1)
flags.DEFINE_integer("n_test", 2000, "Adding / copy problems: test set size.", lower_bound=1)
flags.DEFINE_integer("train_samples", 0, "Image tasks: use only the first N training images (0: all).",
                     lower_bound=0)
flags.DEFINE_enum("optimizer", "adadelta", list(ex.OPTIMIZERS), "Optimizer.")
flags.DEFINE_float("lr_decay", 0.8, "Learning-rate step decay per epoch (1: constant); used with "
                   "--lr_schedule constant only.",
                   lower_bound=0.0, upper_bound=1.0)
flags.DEFINE_float("clipnorm", 0.0, "Gradient-norm clipping (0: off).", lower_bound=0.0)
flags.DEFINE_boolean("plot", True, "Write the learned-filter / frequency-response plot.")
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (0, 1, 2).", lower_bound=0, upper_bound=2)

FLAGS = flags.FLAGS


def config_from_flags():
    """Builds the `ExperimentConfig`; unset flags take the experiment's defaults."""
    values = {}
    for field in ex.ExperimentConfig.__dataclass_fields__:
        if field in FLAGS:
            values[field] = FLAGS[field].value
    for name, value in ex.EXPERIMENT_DEFAULTS[FLAGS.experiment].items():
        if not FLAGS[name].present:
            values[name] = value
    if FLAGS.lr_schedule not in ("constant", "none") and not FLAGS["lr_decay"].present:
        values["lr_decay"] = 1.0  # the chosen schedule replaces the experiment's step decay
    values["compress"] = tuple(values["compress"])
    return ex.ExperimentConfig(**values)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        config = config_from_flags().validate()  # before any data is loaded
    except ValueError as e:
        raise app.UsageError(str(e)) from e
    report = ex.run_experiment(config)
    print(ex.format_summary(report))
    print(f"report: {report['run_dir']}/report.json")


if __name__ == "__main__":
    app.run(main)
