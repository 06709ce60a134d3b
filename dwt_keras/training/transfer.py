"""Transfer learning (`--init_from PATH`, `--freeze`).

`PATH` is a Keras `.keras` file or a file written by `dwt_keras.compression.save_compressed` (its
pruned weights are decompressed). When the number of classes differs, the head (the last layer
with weights) is replaced by a new Dense layer on the same features; `freeze` makes every layer
but the head non-trainable (frozen BatchNormalization layers then run in inference mode, as
Keras 3 does for `trainable=False`).
"""

import pathlib
import zipfile

import keras


def check_init_from(path):
    """Raises `ValueError` when `path` is given but is not a readable file."""
    if not path:
        return None
    p = pathlib.Path(path).expanduser()
    if not p.is_file():
        raise ValueError(f"--init_from {path}: no such file. Pass a .keras file or a compressed "
                         "model file written by save_compressed().")
    return p


def _is_keras_archive(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return "config.json" in z.namelist()


def load_init_model(path):
    """Loads the model to start from: a `.keras` archive or a compressed model file.

    Returns:
        An uncompiled Keras model.
    """
    p = check_init_from(path)
    if _is_keras_archive(p):
        return keras.saving.load_model(p, compile=False)
    from dwt_keras.compression import load_compressed

    try:
        return load_compressed(p)
    except Exception as e:  # noqa: BLE001 -- re-raised with what the file was expected to be
        raise ValueError(f"--init_from {path}: neither a .keras archive nor a readable compressed "
                         f"model file ({type(e).__name__}: {e}).") from e


def head_layer(model):
    """The last layer with weights (the classifier head)."""
    for layer in reversed(model.layers):
        if layer.weights:
            return layer
    raise ValueError(f"Model {model.name!r} has no layer with weights.")


def replace_head(model, num_classes, name="head"):
    """A model on the same features with a new, freshly initialised `Dense(num_classes)` head.

    Only for Sequential / Functional models whose head is their last layer.
    """
    head = head_layer(model)
    if head is not model.layers[-1]:
        raise ValueError(f"The head {head.name!r} is not the last layer; cannot replace it.")
    features = head.input
    outputs = keras.layers.Dense(int(num_classes), name=name)(features)
    return keras.Model(model.inputs, outputs, name=f"{model.name}_transfer")


def freeze_all_but_head(model):
    """Sets `trainable=False` on every layer except the head; returns the trainable layer names."""
    head = head_layer(model)
    for layer in model.layers:
        layer.trainable = layer is head
    return [head.name]


def prepare_transfer(path, num_classes, freeze=False):
    """Loads `path`, adapts its head to `num_classes` if needed, and optionally freezes the rest.

    Args:
        path: a `.keras` or compressed model file.
        num_classes: the classes of the new task.
        freeze: train only the head.

    Returns:
        `(model, info)`, `info` a JSON-ready dict (source, head replaced, trainable layers).

    Example:

    ```python
    model, info = prepare_transfer("runs/mnist/model.keras", num_classes=10, freeze=True)
    model.compile(...)   # compile after freezing
    ```
    """
    model = load_init_model(path)
    out_dim = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else None
    replaced = out_dim != int(num_classes)
    if replaced:
        model = replace_head(model, num_classes)
    trainable = freeze_all_but_head(model) if freeze else [l.name for l in model.layers if l.weights]
    return model, {"init_from": str(path), "head_replaced": bool(replaced), "freeze": bool(freeze),
                   "trainable_layers": trainable}
