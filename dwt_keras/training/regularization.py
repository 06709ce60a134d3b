"""`--l1 --l2 --dropout --batch_norm` applied to any Sequential or Functional model by cloning.

The model builders stay free of these options: `apply_regularization(model, ...)` returns a clone
whose Dense/Conv kernels carry an L1/L2 penalty and whose *hidden* Dense/Conv layers (those whose
output is not a model output) are followed by `BatchNormalization` and/or `Dropout`. The output
layer is never followed by either, so the model still returns plain logits. Layer names are kept
(inserted layers are named `<layer>_bn`, `<layer>_dropout`), so per-layer options keyed on names
(e.g. compression overrides) still apply, and weights are copied into the clone by name.
"""

import keras

KERNEL_LAYERS = (
    keras.layers.Dense,
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
    keras.layers.SeparableConv2D,
)


def validate_regularization(l1=0.0, l2=0.0, dropout=0.0, batch_norm=False):
    """Raises `ValueError` for negative penalties or a dropout rate outside [0, 1)."""
    for name, value in (("l1", l1), ("l2", l2)):
        if not float(value) >= 0.0:
            raise ValueError(f"`{name}` must be >= 0. Received: {name}={value}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ValueError(f"`dropout` must be in [0, 1). Received: dropout={dropout}")
    if not isinstance(batch_norm, bool):
        raise ValueError(f"`batch_norm` must be True or False. Received: batch_norm={batch_norm!r}")


def regularize_kernel_variables(model, l1=0.0, l2=0.0):
    """Puts an L1/L2 penalty on every trainable `kernel` variable of `model`, in place.

    For subclassed models, which `apply_regularization` cannot clone: Keras adds
    `variable.regularizer` terms to `model.losses`, hence to the compiled training loss. Kernels
    are the `kernel` variables (Dense, embedding and attention projections); biases, norms,
    positional embeddings and other parameters are not penalised. The penalty is a training
    setting: it is not stored in `.keras` files.

    Returns:
        The paths of the penalised variables (empty when `l1 == l2 == 0`).
    """
    validate_regularization(l1, l2)
    if not (l1 or l2):
        return []
    paths = []
    for variable in model.trainable_weights:
        if variable.name == "kernel":
            variable.regularizer = keras.regularizers.L1L2(l1=float(l1), l2=float(l2))
            paths.append(variable.path)
    return paths


def _hidden_kernel_layers(model):
    """Names of Dense/Conv layers whose outputs are not model outputs."""
    kernel_layers = [l for l in model.layers if isinstance(l, KERNEL_LAYERS)]
    if isinstance(model, keras.Sequential):
        return {l.name for l in kernel_layers[:-1]}
    output_ids = {id(t) for t in keras.tree.flatten(model.outputs)}
    return {l.name for l in kernel_layers if id(l.output) not in output_ids}


def apply_regularization(model, l1=0.0, l2=0.0, dropout=0.0, batch_norm=False,
                         copy_weights=True):
    """Returns a regularised clone of `model` (or `model` itself when nothing is asked).

    Args:
        model: a built `keras.Sequential` or Functional model.
        l1, l2: kernel penalties of every Dense/Conv layer (`keras.regularizers.L1L2`).
        dropout: rate of the `Dropout` inserted after each hidden Dense/Conv layer (0: none).
        batch_norm: insert `BatchNormalization` after each hidden Dense/Conv layer.
        copy_weights: copy the existing weights into the clone (by layer name).

    Returns:
        A new, uncompiled model (compile it inside the strategy scope you train with).

    Raises:
        ValueError: bad values, or a subclassed model (pass the options to its builder instead).

    Example:

    ```python
    model = apply_regularization(build_model("lenet300"), l2=1e-4, dropout=0.2)
    ```
    """
    validate_regularization(l1, l2, dropout, batch_norm)
    if not (l1 or l2 or dropout or batch_norm):
        return model
    # keras.Model(inputs, outputs) returns an instance of Keras' (private) Functional class.
    functional = type(model).__name__ == "Functional"
    if not (isinstance(model, keras.Sequential) or functional):
        raise ValueError(
            f"apply_regularization needs a Sequential or Functional model; {type(model).__name__} "
            "is subclassed: pass l1/l2/dropout/batch_norm to its constructor instead."
        )
    hidden = _hidden_kernel_layers(model)
    regularizer = keras.regularizers.L1L2(l1=float(l1), l2=float(l2)) if (l1 or l2) else None

    def clone_layer(layer):
        config = layer.get_config()
        if regularizer is not None and isinstance(layer, KERNEL_LAYERS):
            key = "depthwise_regularizer" if isinstance(layer, keras.layers.DepthwiseConv2D) \
                else "kernel_regularizer"
            config[key] = keras.regularizers.L1L2(l1=float(l1), l2=float(l2))
        return layer.__class__.from_config(config)

    def extras(name):
        out = []
        if batch_norm:
            out.append(keras.layers.BatchNormalization(name=f"{name}_bn"))
        if dropout:
            out.append(keras.layers.Dropout(float(dropout), name=f"{name}_dropout"))
        return out

    if isinstance(model, keras.Sequential):
        layers = []
        for layer in model.layers:
            layers.append(clone_layer(layer))
            if layer.name in hidden:
                layers.extend(extras(layer.name))
        clone = keras.Sequential([keras.Input(model.inputs[0].shape[1:]), *layers],
                                 name=model.name)
    else:
        def call_layer(layer, *args, **kwargs):
            out = layer(*args, **kwargs)
            if layer.name in hidden:
                for extra in extras(layer.name):
                    out = extra(out)
            return out

        clone = keras.models.clone_model(model, clone_function=clone_layer,
                                         call_function=call_layer)
    if copy_weights:
        for layer in model.layers:
            if layer.weights:
                clone.get_layer(layer.name).set_weights(layer.get_weights())
    return clone
