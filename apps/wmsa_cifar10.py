"""Train a wavelet multi-scale attention transformer (W-MSA) or a ViT on CIFAR-10.

The run folder is ``<save_dir>/<run_name>``. Without ``--run_name`` the name is
derived from the settings (model, size, dataset, wavelet, levels, patch size,
kernel, epochs, seed, and the spectral / training-extras settings that change
training), so re-running the SAME command resumes an interrupted run
from its last completed epoch (weights, optimizer state, schedule, history) and
does not retrain a finished one. Pass a new ``--run_name`` to start afresh.

Outputs: ``config.json``, ``history.csv``, ``best.keras`` (best validation
accuracy), ``last.keras``, ``report.json`` (test-split accuracy, per-class
precision/recall/F1, confusion matrix) and TensorBoard logs under
``<log_dir>/<run_name>`` when ``--log_dir`` is set.

Spectral truncation (``--spectral_reg --tau_init --tau_final --truncation_epochs
--mask_profile``): training images are low-passed in the DCT domain during the
first epochs; validation/test data are never filtered and ``best.keras`` /
``last.keras`` hold the plain classifier. The spectral settings are part of the
run name, so a spectral run never resumes a plain one.

Training extras (``dwt_keras.training``): ``--lr_schedule`` (``warmup_cosine``,
the default, or constant/step/exponential/cosine/cyclical after the
``--warmup_epochs`` linear warm-up), ``--early_stopping_patience`` (on
val_accuracy; the best epoch's ``best.keras`` is reported), ``--l1 --l2``
(kernel penalties), ``--init_from PATH.keras [--freeze]``, ``--saliency_images N``,
``--export tflite|savedmodel``, ``--cv_folds K`` and ``--ensemble N`` (one
resumable sub-run per fold / member in the run folder). ``--batch_norm`` is
refused: the blocks use LayerNorm. ``--augment`` and ``--dropout`` are this
app's own (see their help).

Example:

    python apps/wmsa_cifar10.py --flagfile=configs/wmsa_tiny.cfg
    python apps/wmsa_cifar10.py --model=vit --model_size=tiny --patch_size=4 \
        --dataset=cifar10_subset --epochs=20
    python apps/wmsa_cifar10.py --flagfile=configs/wmsa_tiny_subset_spectral.cfg
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app, flags  # noqa: E402

from dwt_keras.cli import define_common_flags  # noqa: E402
from dwt_keras.spectral.flags import define_spectral_flags  # noqa: E402
from dwt_keras.training.flags import define_training_flags  # noqa: E402
from dwt_keras.training.schedules import LR_SCHEDULES  # noqa: E402
from dwt_keras.transformer.training import (  # noqa: E402
    AUGMENTATIONS,
    MODELS,
    WARMUP_COSINE,
    TrainConfig,
)

define_common_flags(dataset="cifar10", epochs=100, batch_size=128, lr=1e-3)
flags.DEFINE_enum("model", "wmsa", list(MODELS), "wmsa (WaveletTransformer) or vit (baseline).")
flags.DEFINE_enum("model_size", "tiny", ["tiny", "small", "base", "custom"],
                  "tiny (96, 4, 3), small (192, 6, 3), base (384, 12, 6) as (width, depth, "
                  "heads); custom uses --embed_dim/--depth/--num_heads.")
flags.DEFINE_integer("embed_dim", 96, "Width for --model_size=custom.", lower_bound=1)
flags.DEFINE_integer("depth", 4, "Blocks for --model_size=custom.", lower_bound=1)
flags.DEFINE_integer("num_heads", 3, "Heads for --model_size=custom.", lower_bound=1)
flags.DEFINE_integer("n_levels", 3, "W-MSA: DWT levels J (2**J <= image side).", lower_bound=1)
flags.DEFINE_string("wavelet", "db4", "W-MSA: PyWavelets wavelet name (haar, db2, db4, sym4, ...).")
flags.DEFINE_boolean("use_kernel", True, "W-MSA: bias attention with the PSD wavelet kernel.")
flags.DEFINE_enum("kernel_mode", "fold", ["fold", "bias"],
                  "W-MSA: kernel folded into extra q/k dims, or a shared heads x N x N bias.")
flags.DEFINE_enum("spatial_kernel", "rbf", ["rbf", "gibbs"],
                  "W-MSA: spatial kernel (gibbs needs --kernel_mode=bias).")
flags.DEFINE_integer("patch_size", 4, "ViT patch side / W-MSA p x p grouping per subband.",
                     lower_bound=1)
flags.DEFINE_float("weight_decay", 0.05, "AdamW weight decay.", lower_bound=0.0)
flags.DEFINE_integer("warmup_epochs", 5, "Linear warm-up epochs before the cosine decay.",
                     lower_bound=0)
flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_float("drop_path_rate", 0.1, "Stochastic depth (max rate).", lower_bound=0.0,
                   upper_bound=0.99)
flags.DEFINE_float("dropout", 0.0, "Dropout rate.", lower_bound=0.0, upper_bound=0.99)
flags.DEFINE_string("augment", "crop_flip",
                    f"Comma-separated subset of {', '.join(AUGMENTATIONS)}.")
flags.DEFINE_string("run_name", None, "Run folder name under --save_dir (default: derived "
                    "from the settings, so the same command resumes).")
flags.DEFINE_integer("max_train_samples", None, "Use only the first N training images.",
                     lower_bound=1)
flags.DEFINE_integer("verbose", 2, "Keras fit verbosity (0, 1, 2).")
# This app's own versions of two shared extras (define_training_flags skips them).
flags.DEFINE_enum("lr_schedule", WARMUP_COSINE, [WARMUP_COSINE, *LR_SCHEDULES],
                  "warmup_cosine: linear warm-up over --warmup_epochs, then cosine decay to 0. "
                  "constant, step, exponential, cosine (to 1% of --lr), cyclical: the same "
                  "warm-up, then that schedule over the remaining epochs.")
flags.DEFINE_integer("early_stopping_patience", 0,
                     "Stop when val_accuracy (the selection metric) has not improved for this "
                     "many epochs (0: off); best.keras, the best epoch, is reported. Resumable.",
                     lower_bound=0)
# --l1 --l2 --batch_norm --cv_folds --ensemble --saliency_images --init_from --freeze --export
define_training_flags()
# --spectral_reg --tau_init --tau_final --truncation_epochs --mask_profile --mask_rolloff
# --spectral_per_step
define_spectral_flags(truncation_epochs=10)

FLAGS = flags.FLAGS
# Flags named like their TrainConfig fields.
_SPECTRAL_AND_EXTRAS = (
    "spectral_reg", "tau_init", "tau_final", "truncation_epochs", "mask_profile", "mask_rolloff",
    "spectral_per_step", "lr_schedule", "early_stopping_patience", "l1", "l2", "batch_norm",
    "cv_folds", "ensemble", "saliency_images", "freeze", "export",
)


def config_from_flags(f=FLAGS):
    """The `TrainConfig` described by the parsed flags."""
    return TrainConfig(
        model=f.model,
        model_size=f.model_size,
        embed_dim=f.embed_dim,
        depth=f.depth,
        num_heads=f.num_heads,
        n_levels=f.n_levels,
        wavelet=f.wavelet,
        use_kernel=f.use_kernel,
        kernel_mode=f.kernel_mode,
        spatial_kernel=f.spatial_kernel,
        patch_size=f.patch_size,
        dropout=f.dropout,
        drop_path_rate=f.drop_path_rate,
        dataset=f.dataset,
        data_dir=f.data_dir,
        validation_split=f.validation_split,
        max_train_samples=f.max_train_samples,
        epochs=f.epochs,
        batch_size=f.batch_size,
        lr=f.lr,
        weight_decay=f.weight_decay,
        warmup_epochs=f.warmup_epochs,
        label_smoothing=f.label_smoothing,
        augment=f.augment,
        save_dir=f.save_dir,
        run_name=f.run_name,
        log_dir=f.log_dir or None,
        seed=f.seed,
        mixed_precision=f.mixed_precision,
        strategy=f.strategy,
        verbose=f.verbose,
        init_from=f.init_from or None,
        **{name: getattr(f, name) for name in _SPECTRAL_AND_EXTRAS},
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dwt_keras.transformer.training import train, validate_config

    cfg = config_from_flags()
    try:
        validate_config(cfg)  # clear errors before any data is loaded
    except ValueError as err:
        raise app.UsageError(str(err)) from err
    train(cfg)


if __name__ == "__main__":
    app.run(main)
