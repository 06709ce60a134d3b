"""Transfer learning (`--init_from PATH`, `--freeze`).

`PATH` is a Keras `.keras` file, or any other file one of the given `loaders` reads (the engine
passes `dwt_keras.compression.load_compressed`, whose pruned weights are decompressed).

* Sequential / Functional models (`prepare_transfer`): the loaded model is the model; when the
  number of classes differs, the head (the last layer with weights) is replaced by a new Dense
  layer on the same features.
* Subclassed models (`load_weights_from`): the configured model is built first and the file's
  weights are copied into it by weight path; a head with another number of classes keeps its
  fresh initialisation.

`freeze` makes every layer but the head non-trainable (frozen BatchNormalization layers then run
in inference mode, as Keras 3 does for `trainable=False`).
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
        raise ValueError(f"`init_from` is not a file. Pass a .keras file or a compressed model "
                         f"file written by save_compressed(). Received: init_from={str(path)!r}")
    return p


def _is_keras_archive(path):
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return "config.json" in z.namelist()


def load_init_model(path, loaders=()):
    """Loads the model to start from: a `.keras` archive, or a file one of `loaders` reads.

    Args:
        path: the file.
        loaders: functions `path -> keras.Model` tried in order for files that are not `.keras`
            archives (e.g. `dwt_keras.compression.load_compressed`).

    Returns:
        An uncompiled Keras model.
    """
    p = check_init_from(path)
    if _is_keras_archive(p):
        return keras.saving.load_model(p, compile=False)
    errors = []
    for loader in loaders:
        try:
            return loader(p)
        except Exception as e:  # noqa: BLE001 -- every loader's reason is reported below
            errors.append(f"{type(e).__name__}: {e}")
    raise ValueError(f"`init_from` is neither a .keras archive nor a file the loaders read "
                     f"({'; '.join(errors) or 'no other loader'}). Received: init_from={str(path)!r}")


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


def prepare_transfer(path, num_classes, freeze=False, loaders=(), model=None):
    """Loads `path`, adapts its head to `num_classes` if needed, and optionally freezes the rest.

    Args:
        path: a `.keras` or compressed model file.
        num_classes: the classes of the new task.
        freeze: train only the head.
        loaders: see `load_init_model`.
        model: the model already loaded from `path` (skips loading it again).

    Returns:
        `(model, info)`, `info` a JSON-ready dict (source, head replaced, trainable layers).

    Example:

    ```python
    model, info = prepare_transfer("runs/mnist/model.keras", num_classes=10, freeze=True)
    model.compile(...)   # compile after freezing
    ```
    """
    model = load_init_model(path, loaders) if model is None else model
    out_dim = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else None
    replaced = out_dim != int(num_classes)
    if replaced:
        model = replace_head(model, num_classes)
    trainable = freeze_all_but_head(model) if freeze else [l.name for l in model.layers if l.weights]
    return model, {"init_from": str(path), "head_replaced": bool(replaced), "freeze": bool(freeze),
                   "trainable_layers": trainable}


def _path_key(variable):
    # Without the model's own name, which Keras uniquifies (`vi_t`, `vi_t_1`, ...).
    return variable.path.split("/", 1)[-1]


def load_weights_from(model, path, head=None, freeze=False, loaders=()):
    """Copies the weights of the file `path` into the built (subclassed) `model`, by weight path.

    The file must hold a model of the same class and settings. When only the number of classes
    differs, the head keeps its fresh initialisation. With `freeze`, every layer but the head
    becomes non-trainable.

    Args:
        model: the built target model.
        path: a `.keras` (or `loaders`-readable) file.
        head: the head layer (default: `model.head`, else the last layer with weights).
        freeze: train only the head.
        loaders: see `load_init_model`.

    Returns:
        A JSON-ready dict: `init_from`, `head_replaced`, `freeze`, `trainable_layers`,
        `copied_variables`.

    Raises:
        ValueError: another model class, or a weight whose shape differs outside the head.
    """
    source = load_init_model(path, loaders)
    if type(source) is not type(model):
        raise ValueError(
            f"`init_from` holds a {type(source).__name__}, but this run builds a "
            f"{type(model).__name__}: pass the model settings of the run that wrote it. "
            f"Received: init_from={str(path)!r}")
    head = head if head is not None else getattr(model, "head", None) or head_layer(model)
    by_key = {_path_key(v): v for v in source.weights}
    head_ids = {id(v) for v in head.weights}
    head_replaced, copied = False, 0
    for var in model.weights:
        src = by_key.get(_path_key(var))
        if src is not None and tuple(src.shape) == tuple(var.shape):
            var.assign(src)
            copied += 1
        elif id(var) in head_ids and src is not None:
            head_replaced = True  # another number of classes: keep the fresh head
        else:
            found = "missing" if src is None else f"of shape {tuple(src.shape)}"
            raise ValueError(
                f"`init_from`: the weight {_path_key(var)} {tuple(var.shape)} of the configured "
                f"model is {found} in the file; the file holds another architecture (pass the "
                f"model settings of the run that wrote it). Received: init_from={str(path)!r}")
    if freeze:
        for layer in model.layers:
            layer.trainable = layer is head
    trainable = [layer.name for layer in model.layers if layer.trainable and layer.weights]
    return {"init_from": str(path), "head_replaced": head_replaced, "freeze": bool(freeze),
            "trainable_layers": trainable, "copied_variables": copied}
