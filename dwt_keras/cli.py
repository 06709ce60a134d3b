"""absl flags shared by every app, defined once.

Apps call `define_common_flags(epochs=10, ...)` at import time with their own defaults, then read
`FLAGS.<name>`. Validation happens when flags are parsed, so bad values fail before any data is
loaded or any training starts.
"""

from absl import flags

STRATEGIES = ("default", "mirrored", "multi_worker", "tpu")

_COMMON_DEFAULTS = {
    "dataset": "mnist",
    "data_dir": None,
    "save_dir": "./saved_models",
    "log_dir": None,
    "seed": 0,
    "epochs": 10,
    "batch_size": 32,
    "lr": 1e-3,
    "strategy": "default",
    "mixed_precision": False,
    "validation_split": 0.1,
}


def define_common_flags(**defaults):
    """Defines `--dataset --data_dir --save_dir --log_dir --seed --epochs --batch_size --lr
    --strategy --mixed_precision --validation_split` with the given per-app defaults.

    Safe to call twice (a second call keeps the first definitions).

    Args:
        **defaults: overrides of the defaults above, e.g. `epochs=100, dataset="cifar10"`.
    """
    unknown = set(defaults) - set(_COMMON_DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown common flags {sorted(unknown)}; valid: {sorted(_COMMON_DEFAULTS)}.")
    d = {**_COMMON_DEFAULTS, **defaults}
    if "dataset" in flags.FLAGS:
        return
    flags.DEFINE_string("dataset", d["dataset"], "Dataset name: mnist, fashion_mnist, cifar10, "
                        "cifar100, or any <name>.npz in --data_dir (e.g. cifar10_subset).")
    flags.DEFINE_string("data_dir", d["data_dir"], "Folder of <name>.npz files "
                        "(x_train, y_train, x_test, y_test). Default: $DWT_KERAS_DATA_DIR, "
                        "then a download.")
    flags.DEFINE_string("save_dir", d["save_dir"], "Parent folder of the run folders.")
    flags.DEFINE_string("log_dir", d["log_dir"], "TensorBoard log folder (off when empty).")
    flags.DEFINE_integer("seed", d["seed"], "Random seed (data split, initialisation, shuffling).",
                         lower_bound=0)
    flags.DEFINE_integer("epochs", d["epochs"], "Training epochs.", lower_bound=0)
    flags.DEFINE_integer("batch_size", d["batch_size"], "Batch size.", lower_bound=1)
    flags.DEFINE_float("lr", d["lr"], "Learning rate.", lower_bound=0.0)
    flags.DEFINE_enum("strategy", d["strategy"], list(STRATEGIES), "tf.distribute strategy.")
    flags.DEFINE_boolean("mixed_precision", d["mixed_precision"],
                         "Train with the mixed_float16 policy (bfloat16 on CPU).")
    flags.DEFINE_float("validation_split", d["validation_split"],
                       "Share of the training split held out for validation (model selection).",
                       lower_bound=0.0, upper_bound=0.9)
