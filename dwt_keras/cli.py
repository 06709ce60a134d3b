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

    Safe to call twice, and beside absl.logging's own `--log_dir` (an existing flag is reused
    with this call's default).

    Args:
        **defaults: overrides of the defaults above, e.g. `epochs=100, dataset="cifar10"`.
    """
    unknown = set(defaults) - set(_COMMON_DEFAULTS)
    if unknown:
        raise ValueError(f"Unknown common flags {sorted(unknown)}; valid: {sorted(_COMMON_DEFAULTS)}.")
    d = {**_COMMON_DEFAULTS, **defaults}
    # absl.logging already owns --log_dir (default ""), and an app may call this twice: reuse a
    # flag that exists, with this app's default, rather than raising DuplicateFlagError.
    existing = [name for name in d if name in flags.FLAGS]
    for name in existing:
        if name in defaults:
            flags.FLAGS.set_default(name, defaults[name])

    def define(kind, name, help_text, **kwargs):
        if name not in existing:
            getattr(flags, f"DEFINE_{kind}")(name=name, default=d[name], help=help_text, **kwargs)

    define("string", "dataset", "Dataset name: mnist, fashion_mnist, cifar10, cifar100, or any "
           "<name>.npz in --data_dir (e.g. cifar10_subset).")
    define("string", "data_dir", "Folder of <name>.npz files (x_train, y_train, x_test, y_test). "
           "Default: $DWT_KERAS_DATA_DIR, then a download.")
    define("string", "save_dir", "Parent folder of the run folders.")
    define("string", "log_dir", "TensorBoard log folder (off when empty).")
    define("integer", "seed", "Random seed (data split, initialisation, shuffling).", lower_bound=0)
    define("integer", "epochs", "Training epochs.", lower_bound=0)
    define("integer", "batch_size", "Batch size.", lower_bound=1)
    define("float", "lr", "Learning rate.", lower_bound=0.0)
    define("enum", "strategy", "tf.distribute strategy.", enum_values=list(STRATEGIES))
    define("boolean", "mixed_precision", "Train with the mixed_float16 policy (bfloat16 on CPU).")
    define("float", "validation_split", "Share of the training split held out for validation "
           "(model selection).", lower_bound=0.0, upper_bound=0.9)
