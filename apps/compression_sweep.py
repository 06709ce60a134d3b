"""Sweep bases x keep ratios on one trained model; write CSV/JSON and a Pareto plot.

    python apps/compression_sweep.py --dataset mnist --model lenet300 --epochs 10 \
        --bases identity,dct,haar,db2,db4,sym4,coif2,bior2.2 --keep_ratios 0.05,0.03,0.02,0.01 \
        --retrain_epochs 2 --save_dir ./saved_models

The model is trained (early stopping on validation) or loaded with --init_model (a .keras file);
each basis then walks down the keep ratios with retraining (masks held); the smallest file whose
VALIDATION accuracy stays within --tolerance of the dense model is selected per basis and its
TEST accuracy reported. The winner is the basis with the smallest selected file.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from dwt_keras.cli import define_common_flags  # noqa: E402

define_common_flags(dataset="mnist", save_dir="./saved_models", epochs=10, batch_size=128, lr=1e-3)

flags.DEFINE_string("model", "lenet300", "lenet300 | lenet5 | resnet18 | mlp.")
flags.DEFINE_string("init_model", None, "A trained .keras model to start from (skips training).")
flags.DEFINE_list("bases", ["identity", "dct", "haar", "db2", "db4", "sym4", "coif2", "bior2.2"],
                  "Bases to compare.")
flags.DEFINE_list("keep_ratios", ["0.05", "0.03", "0.02", "0.01"], "Decreasing keep ratios.")
flags.DEFINE_integer("retrain_epochs", 2, "Retraining epochs per keep ratio.")
flags.DEFINE_float("tolerance", 0.003, "Allowed validation accuracy drop for the selection.")
flags.DEFINE_string("quantize", "kmeans", "none | float16 | int8 | kmeans.")
flags.DEFINE_integer("quant_bits", 6, "k-means codebook bits.")
flags.DEFINE_string("mode", "periodization", "Wavelet mode.")
flags.DEFINE_integer("max_train_samples", None, "Training subset (quick runs).")
flags.DEFINE_integer("max_eval_samples", None, "Validation/test subset (quick runs).")
# --spectral_reg ...: low-pass the inputs of the dense training's first epochs (not of the
# per-ratio retraining, which starts from the trained model).
from dwt_keras.spectral.flags import define_spectral_flags  # noqa: E402

define_spectral_flags(truncation_epochs=5)
FLAGS = flags.FLAGS


def main(argv):
    del argv
    import keras

    from dwt_keras.compression import pipeline, sweep
    from dwt_keras.compression.bases import basis_kind
    from dwt_keras.compression.selection import validate_keep_ratio
    from dwt_keras.utils.io import check_writable_dir, make_run_dir
    from dwt_keras.utils.seeding import set_seed

    try:
        for b in FLAGS.bases:
            basis_kind(b)
        ratios = [validate_keep_ratio(float(r)) for r in FLAGS.keep_ratios]
        cfg = pipeline.validate_config(pipeline.CompressionConfig(
            dataset=FLAGS.dataset, data_dir=FLAGS.data_dir, model=FLAGS.model,
            epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, lr=FLAGS.lr, seed=FLAGS.seed,
            validation_split=FLAGS.validation_split, max_train_samples=FLAGS.max_train_samples,
            max_eval_samples=FLAGS.max_eval_samples, quantize=FLAGS.quantize,
            quant_bits=FLAGS.quant_bits, mode=FLAGS.mode, save_dir=FLAGS.save_dir,
            **{name: getattr(FLAGS, name) for name in pipeline.SPECTRAL_FIELDS}))
        if FLAGS.init_model and cfg.spectral_reg:
            raise ValueError("--spectral_reg acts on the dense training, which --init_model "
                             "skips; drop one of them.")
        check_writable_dir(FLAGS.save_dir)
    except ValueError as e:
        raise app.UsageError(str(e))
    set_seed(FLAGS.seed)
    splits = pipeline.load_data(cfg)
    spectral = pipeline.spectral_setup(cfg)
    history = None
    if FLAGS.init_model:
        model = keras.models.load_model(FLAGS.init_model)
    else:
        from dwt_keras.data import make_datasets

        model = pipeline.build_model_for(cfg, splits.info)
        tr, va, _ = make_datasets(splits, batch_size=cfg.batch_size, seed=cfg.seed)
        # Early stopping on validation loss (patience 3) restoring the best weights; with
        # --spectral_reg it starts after the curriculum.
        history = pipeline.fit_dense(model, cfg, tr, va, lr=cfg.lr, spectral=spectral)
    run_dir = make_run_dir(FLAGS.save_dir, f"sweep-{cfg.dataset}-{model.name}")
    result = sweep.run_sweep(model, splits, bases=FLAGS.bases, keep_ratios=ratios,
                             retrain_epochs=FLAGS.retrain_epochs, batch_size=cfg.batch_size,
                             lr=cfg.lr, quantize=cfg.quantize, bits=cfg.quant_bits,
                             tolerance=FLAGS.tolerance, mode=cfg.mode)
    sweep.write_outputs(result, run_dir, tolerance=FLAGS.tolerance,
                        title=f"{cfg.dataset} / {model.name}",
                        extra={"spectral": pipeline.spectral_record(spectral, history)})
    print(f"dense test accuracy {result.dense['test_accuracy']:.4f}")
    for basis, row in result.selected.items():
        if row is None:
            print(f"{basis:>8}: no keep ratio within {FLAGS.tolerance:.3f} on validation")
        else:
            print(f"{basis:>8}: keep {row['keep_ratio']:<6} {row['bytes_compressed_file']:>8,} B "
                  f"({row['compression_ratio']:.1f}x), test accuracy {row['test_accuracy']:.4f}")
    print(f"winner (smallest file within tolerance on validation): {result.winner}")
    print(f"Wrote {run_dir}")


if __name__ == "__main__":
    app.run(main)
