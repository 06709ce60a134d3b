"""Train a model, compress its weights in a wavelet basis with the masks held during retraining,
and write the dense model, the compressed file, report.json and plots into a new run folder.

Example (the main-job command):

    python apps/DWT_model.py --wavelet haar --batch_size 32 --epochs 10 --save_dir ./SavedModels
    python apps/DWT_model.py --flagfile=configs/mnist_lenet5.cfg
    # spectral truncation: the first 2 dense epochs see DCT-low-passed inputs (tau 0.05 -> 1)
    python apps/DWT_model.py --epochs 6 --spectral_reg --truncation_epochs 2 --mask_profile cosine

All logic lives in `dwt_keras.compression.pipeline`; this file only maps flags to a
`CompressionConfig`.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from dwt_keras.cli import define_common_flags  # noqa: E402

define_common_flags(dataset="mnist", save_dir="./saved_models", epochs=10, batch_size=32, lr=1e-3)

flags.DEFINE_string("model", "lenet300", "Model: lenet300, lenet5, resnet18 or mlp.")
flags.DEFINE_list("mlp_widths", ["300", "100"], "Hidden widths of --model=mlp.")
flags.DEFINE_integer("resnet_width", 64, "Channels of ResNet-18's first stage.")
flags.DEFINE_string("wavelet", "haar", "Basis: a discrete wavelet (haar, db4, sym4, coif2, "
                    "bior2.2, ...), 'dct', or 'identity' (plain magnitude pruning).")
flags.DEFINE_string("mode", "periodization", "Wavelet signal-extension mode.")
flags.DEFINE_integer("level", None, "Decomposition level (default: the largest exact level per "
                     "layer).")
flags.DEFINE_float("keep_ratio", 0.03, "Share of coefficients kept, in (0, 1].")
flags.DEFINE_float("threshold", None, "Keep coefficients with |c| >= threshold instead of a "
                   "keep ratio (oneshot schedule only).")
flags.DEFINE_enum("scope", "global", ["global", "per_layer"], "Coefficient ranking scope.")
flags.DEFINE_boolean("keep_approximation", False, "Always keep the coarsest approximation band.")
flags.DEFINE_string("schedule", "gradual", "oneshot | iterative | gradual.")
flags.DEFINE_integer("retrain_epochs", 5, "Retraining epochs with the masks held.")
flags.DEFINE_float("retrain_lr", None, "Learning rate of the retraining (default --lr).")
flags.DEFINE_list("iterative_keep_ratios", None, "Keep ratios of the iterative stages "
                  "(default: halving from 0.5 down to --keep_ratio).")
flags.DEFINE_integer("early_stopping_patience", 3, "Early-stopping patience on validation loss "
                     "(0: off).")
flags.DEFINE_string("optimizer", "adam", "adam | sgd | adamw.")
flags.DEFINE_integer("min_kernel_size", 256, "Kernels with fewer weights stay dense.")
flags.DEFINE_enum("small_kernel_fallback", "flatten", ["flatten", "identity"],
                  "Basis for kernels too small for one level along their spatial axes.")
flags.DEFINE_string("layer_overrides", None, "Per-layer plan settings as JSON, e.g. "
                    "'{\"fc1\": {\"geometry\": [28, 28, 1], \"level\": 1}, \"logits\": {\"skip\": true}}' "
                    "(keys: basis, mode, level, geometry, small_kernel_fallback, skip).")
flags.DEFINE_string("quantize", "kmeans", "Values of kept coefficients: none | float16 | int8 | "
                    "kmeans.")
flags.DEFINE_integer("quant_bits", 6, "Codebook bits for --quantize=kmeans.")
flags.DEFINE_enum("codec", "lzma", ["lzma", "zlib", "none"], "Entropy coder of the file.")
flags.DEFINE_integer("max_train_samples", None, "Use only this many training samples (quick runs).")
flags.DEFINE_integer("max_eval_samples", None, "Use only this many validation/test samples.")
flags.DEFINE_string("augment", None, "Training augmentation: none | crop_flip.")
flags.DEFINE_integer("latency_batch_size", 32, "Batch size of the latency measurement.")
flags.DEFINE_integer("latency_repeats", 30, "Timed repeats of the latency measurement (median).")
flags.DEFINE_boolean("plots", True, "Write PNG plots.")
flags.DEFINE_integer("verbose", 1, "0: quiet.")
# --lr_schedule --l1 --l2 --dropout --batch_norm --cv_folds --ensemble --saliency_images
# --init_from --freeze --export (--augment and --early_stopping_patience are defined above).
from dwt_keras.training.flags import define_training_flags  # noqa: E402

define_training_flags()
# --spectral_reg --tau_init --tau_final --truncation_epochs --mask_profile --mask_rolloff
# --spectral_per_step: low-pass the dense training's inputs (see dwt_keras.compression.pipeline).
from dwt_keras.spectral.flags import define_spectral_flags  # noqa: E402

define_spectral_flags(truncation_epochs=5)

FLAGS = flags.FLAGS


def config_from_flags():
    """Builds the `CompressionConfig` from the parsed flags."""
    from dwt_keras.compression.pipeline import SPECTRAL_FIELDS, CompressionConfig

    keep_ratio = None if FLAGS.threshold is not None else FLAGS.keep_ratio
    overrides = None
    if FLAGS.layer_overrides:
        try:
            overrides = json.loads(FLAGS.layer_overrides)
        except json.JSONDecodeError as e:
            raise ValueError(f"--layer_overrides is not valid JSON: {e}") from None
        if not isinstance(overrides, dict) or not all(isinstance(v, dict) for v in overrides.values()):
            raise ValueError("--layer_overrides must be a JSON object {layer: {setting: value}}.")
    return CompressionConfig(
        dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, validation_split=FLAGS.validation_split,
        max_train_samples=FLAGS.max_train_samples, max_eval_samples=FLAGS.max_eval_samples,
        augment=FLAGS.augment, model=FLAGS.model,
        mlp_widths=tuple(int(w) for w in FLAGS.mlp_widths), resnet_width=FLAGS.resnet_width,
        epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, lr=FLAGS.lr, optimizer=FLAGS.optimizer,
        seed=FLAGS.seed, early_stopping_patience=FLAGS.early_stopping_patience,
        wavelet=FLAGS.wavelet, mode=FLAGS.mode, level=FLAGS.level, keep_ratio=keep_ratio,
        threshold=FLAGS.threshold, scope=FLAGS.scope, keep_approximation=FLAGS.keep_approximation,
        schedule=FLAGS.schedule, retrain_epochs=FLAGS.retrain_epochs, retrain_lr=FLAGS.retrain_lr,
        iterative_keep_ratios=(None if FLAGS.iterative_keep_ratios is None
                               else tuple(float(r) for r in FLAGS.iterative_keep_ratios)),
        min_kernel_size=FLAGS.min_kernel_size, small_kernel_fallback=FLAGS.small_kernel_fallback,
        layer_overrides=overrides,
        quantize=FLAGS.quantize, quant_bits=FLAGS.quant_bits, codec=FLAGS.codec,
        save_dir=FLAGS.save_dir, log_dir=FLAGS.log_dir or None,
        latency_batch_size=FLAGS.latency_batch_size, latency_repeats=FLAGS.latency_repeats,
        plots=FLAGS.plots, verbose=FLAGS.verbose,
        strategy=FLAGS.strategy, lr_schedule=FLAGS.lr_schedule, l1=FLAGS.l1, l2=FLAGS.l2,
        dropout=FLAGS.dropout, batch_norm=FLAGS.batch_norm, init_from=FLAGS.init_from,
        freeze=FLAGS.freeze, saliency_images=FLAGS.saliency_images, export=FLAGS.export,
        **{name: getattr(FLAGS, name) for name in SPECTRAL_FIELDS},
    )


def main(argv):
    del argv
    from dwt_keras.compression.pipeline import run_compression_experiment, validate_config

    try:
        config = validate_config(config_from_flags())
    except ValueError as e:
        raise app.UsageError(str(e))
    if FLAGS.cv_folds or FLAGS.ensemble > 1:
        from dwt_keras.training import compression_runs

        if FLAGS.cv_folds:
            out = compression_runs.run_cross_validation(config, FLAGS.cv_folds)
            acc = out["summary"]["test_accuracy"]
            print(f"{FLAGS.cv_folds}-fold CV, compressed test accuracy "
                  f"{acc['mean']:.4f} +- {acc['std']:.4f}: {out['run_dir']}/cv_report.json")
        else:
            out = compression_runs.run_ensemble(config, FLAGS.ensemble)
            print(f"Ensemble of {FLAGS.ensemble}: test accuracy {out['test']['accuracy']:.4f}, "
                  f"{out['bytes']['bytes_total']:,} bytes: {out['run_dir']}/ensemble_report.json")
        return
    report = run_compression_experiment(config)
    print(f"Wrote {report['files']['report']}")


if __name__ == "__main__":
    app.run(main)
