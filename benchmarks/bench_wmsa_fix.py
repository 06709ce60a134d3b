"""Cheap pilot runs for W-MSA's slow start: token normalisation and kernel learning rate.

Each run is the accuracy benchmark's budget (`bench_wmsa_accuracy.py`: CIFAR-10
subset, batch 128, AdamW 1e-3 with 1 warm-up epoch then cosine decay over
`--epochs`) but stops after `--stop_after` epochs, so the first epochs of the real
schedule are compared at a fraction of the cost. Variants differ only in the
`WaveletTransformer` arguments `token_norm` and `kernel_lr_multiplier`. Selection
uses the VALIDATION accuracy printed per epoch; the test report that
`training.train` always writes is not used here.

Usage:
    python benchmarks/bench_wmsa_fix.py --token_norm layernorm --kernel_lr_multiplier 10 \
        --seed 0 --stop_after 3 --save_dir saved_models/wmsa_fix
"""

import argparse
import dataclasses
import functools
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from dwt_keras.transformer import models  # noqa: E402
from dwt_keras.experiments.transformer import TrainConfig  # noqa: E402
from dwt_keras.experiments.transformer import run_transformer as train  # noqa: E402


class StopAfter(keras.callbacks.Callback):
    """Stops `fit` after `n` epochs (counted with the resumed epoch index)."""

    def __init__(self, n):
        super().__init__()
        self.n = int(n)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.n:
            self.model.stop_training = True


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--token_norm", default="none", choices=models.TOKEN_NORMS)
    ap.add_argument("--kernel_lr_multiplier", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--warmup_epochs", type=int, default=1)
    ap.add_argument("--stop_after", type=int, default=3)
    ap.add_argument("--data_dir", default=os.environ.get("DWT_KERAS_DATA_DIR", "/work/shared/data"))
    ap.add_argument("--save_dir", default="saved_models/wmsa_fix")
    args = ap.parse_args()

    # TrainConfig has no fields for these W-MSA options; `build_model` ignores
    # arguments a model does not take, so adding them here reaches only W-MSA.
    models.build_model = functools.partial(
        models.build_model,
        token_norm=args.token_norm,
        kernel_lr_multiplier=args.kernel_lr_multiplier,
    )
    name = f"fix-{args.token_norm}-klr{args.kernel_lr_multiplier:g}-s{args.seed}-stop{args.stop_after}"
    cfg = TrainConfig(
        model="wmsa",
        model_size="tiny",
        dataset="cifar10_subset",
        data_dir=args.data_dir,
        epochs=args.epochs,
        warmup_epochs=args.warmup_epochs,
        save_dir=args.save_dir,
        run_name=name,
        seed=args.seed,
        verbose=2,
    )
    rep = train(dataclasses.replace(cfg, extra_callbacks=[StopAfter(args.stop_after)]))
    model = keras.saving.load_model(os.path.join(rep["run_dir"], "last.keras"), compile=False)
    kern = model.blocks[0].attn.kernel
    kernel_params = None
    if kern is not None:
        kernel_params = {
            "spatial_bandwidths": keras.ops.convert_to_numpy(kern.spatial_bandwidth_values()).tolist(),
            "scale_bandwidths": keras.ops.convert_to_numpy(kern.scale_bandwidths()).tolist(),
            "rho": keras.ops.convert_to_numpy(kern.rhos()).tolist(),
        }
    print(json.dumps({
        "run": name,
        "val_accuracy": [r["val_accuracy"] for r in rep["history"]],
        "train_accuracy": [r["accuracy"] for r in rep["history"]],
        "epoch_time_s": [r["epoch_time_s"] for r in rep["history"]],
        "block0_kernel": kernel_params,
    }))


if __name__ == "__main__":
    main()
