"""The one model registry: every model an app or the tuner trains, built by name.

`build_model(name, input_shape, num_classes, options=config)` builds a registered model; each
entry names the config fields it reads (e.g. `mlp` reads `mlp_widths`, `resnet18` reads
`resnet_width`, `wmsa` the transformer settings), so every recipe builds its models the same way
and the tuner builds exactly what the app trains.

| name | model | options read |
|---|---|---|
| `lenet300` | LeNet-300-100 | |
| `lenet5` | the Caffe LeNet-5 | |
| `mlp` | an MLP on flattened images | `mlp_widths` |
| `resnet18` | ResNet-18, CIFAR variant | `resnet_width` |
| `resnet20` | ResNet-20 of He et al. (CIFAR, option-A shortcuts) | `resnet_width` |
| `small_cnn` | the spectral study's 5-layer CNN | `width`, `seed` |
| `learnable_cnn` | the learnable-wavelet paper's MNIST CNN | `fc1`, `dense_units`, `levels`, ... |
| `sequence_rnn` | a GRU / wavelet GRU / Fastfood GRU with a read-out | `rnn`, `hidden`, ... |
| `wmsa`, `vit` | the wavelet transformer and its ViT baseline | `model_size`, `embed_dim`, ... |

Example:

```python
model = build_model("mlp", (28, 28, 1), 10, options=config)   # config.mlp_widths
model = build_model("resnet18", (32, 32, 3), 10, width=16)  # a builder keyword
```
"""

from __future__ import annotations

import dataclasses

__all__ = ["MODELS", "ModelSpec", "build_model", "register_model", "model_options"]


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Args:
        builder: `builder(input_shape, num_classes, **kwargs) -> keras.Model`.
        options: `{builder keyword: config field}` read from `options=` when present.
        description: one line for listings.
    """

    builder: object
    options: tuple = ()
    description: str = ""


MODELS = {}


def register_model(name, builder, options=None, description=""):
    """Adds a model to the registry (an existing name is replaced)."""
    MODELS[name] = ModelSpec(builder, tuple((options or {}).items()), description)
    return MODELS[name]


def model_options(name, options=None, **overrides):
    """The builder keywords of model `name` taken from a config (`options`) and `overrides`."""
    spec = _spec(name)
    kwargs = {}
    skip = getattr(options, "not_model_options", ())
    for keyword, field in spec.options:
        if options is not None and hasattr(options, field) and field not in skip:
            kwargs[keyword] = getattr(options, field)
    kwargs.update(overrides)
    return kwargs


def build_model(name, input_shape, num_classes, options=None, **overrides):
    """Builds registered model `name` for inputs of `input_shape` and `num_classes` outputs.

    Args:
        name: a key of `MODELS`.
        input_shape: the input shape without the batch axis (`(H, W, C)` for images).
        num_classes: the width of the output (logits).
        options: a config whose fields the entry reads (see the table above).
        **overrides: builder keywords that win over `options`.

    Raises:
        ValueError: an unknown name (the message lists the valid ones).
    """
    spec = _spec(name)
    return spec.builder(tuple(input_shape), int(num_classes),
                        **model_options(name, options, **overrides))


def _spec(name):
    if name not in MODELS:
        raise ValueError(f"`model` must be one of {', '.join(sorted(MODELS))}. "
                         f"Received: model={name!r}")
    return MODELS[name]


# --------------------------------------------------------------------------------------------
# The entries. Builders import their capability package on first use, so listing the registry
# stays light.


def _plain(function_name):
    def build(input_shape, num_classes, **kwargs):
        from dwt_keras import models

        # an unset option (None) leaves the builder's default, e.g. each ResNet's own width
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        if "widths" in kwargs:
            kwargs["widths"] = tuple(int(w) for w in kwargs["widths"])
        return getattr(models, function_name)(input_shape, num_classes, **kwargs)

    return build


def _learnable_cnn(input_shape, num_classes, **kwargs):
    from dwt_keras.learnable.models import build_mnist_cnn

    return build_mnist_cnn(input_shape=input_shape, num_classes=num_classes, **kwargs)


def _sequence_rnn(input_shape, num_classes, **kwargs):
    from dwt_keras.learnable.models import build_sequence_model

    kwargs["compress"] = tuple(kwargs.get("compress", ()) or ()) or None
    if kwargs["compress"] is None:
        kwargs.pop("compress")
    return build_sequence_model(input_shape=input_shape, output_units=num_classes, **kwargs)


def transformer_dims(model_size, embed_dim=96, depth=4, num_heads=3):
    """`(embed_dim, depth, num_heads)` of a transformer size (`"custom"`: the given three)."""
    from dwt_keras.transformer.models import MODEL_SIZES

    if model_size == "custom":
        return int(embed_dim), int(depth), int(num_heads)
    if model_size not in MODEL_SIZES:
        raise ValueError(f"`model_size` must be one of {', '.join([*MODEL_SIZES, 'custom'])}. "
                         f"Received: model_size={model_size!r}")
    return MODEL_SIZES[model_size]


def _transformer(kind):
    def build(input_shape, num_classes, model_size="tiny", embed_dim=96, depth=4, num_heads=3,
              **kwargs):
        from dwt_keras.transformer.models import build_model as build_transformer

        d, n_blocks, heads = transformer_dims(model_size, embed_dim, depth, num_heads)
        model = build_transformer(kind, image_size=tuple(input_shape[:2]),
                                  in_channels=int(input_shape[2]), num_classes=int(num_classes),
                                  embed_dim=d, depth=n_blocks, num_heads=heads, **kwargs)
        model.build((None, *input_shape))
        return model

    return build


register_model("lenet300", _plain("lenet300"), description="LeNet-300-100 (266,610 parameters)")
register_model("lenet5", _plain("lenet5"), description="Caffe LeNet-5 (431,080 parameters)")
register_model("mlp", _plain("mlp"), {"widths": "mlp_widths"}, "MLP on flattened images")
register_model("resnet18", _plain("resnet18"), {"width": "resnet_width"},
               "ResNet-18, CIFAR variant")
register_model("resnet20", _plain("resnet20"), {"width": "resnet_width"},
               "ResNet-20 of He et al., CIFAR (271,098 parameters)")
register_model("small_cnn", _plain("small_cnn"), {"width": "width", "seed": "seed"},
               "the spectral study's CNN")
register_model("learnable_cnn", _learnable_cnn, {
    "fc1": "fc1", "dense_units": "dense_units", "levels": "levels",
    "filter_length": "filter_length", "init_wavelet": "init_wavelet",
    "wavelet_loss_weight": "wavelet_loss_weight", "seed": "seed"},
    "the learnable-wavelet paper's MNIST CNN (dense, wavelet or Fastfood fc1)")
register_model("sequence_rnn", _sequence_rnn, {
    "rnn": "rnn", "hidden": "hidden", "compress": "compress", "levels": "levels",
    "filter_length": "filter_length", "init_wavelet": "init_wavelet",
    "wavelet_loss_weight": "wavelet_loss_weight", "seed": "seed",
    "return_sequences": "return_sequences"},
    "a GRU, wavelet GRU or Fastfood GRU with a Dense read-out")
_TRANSFORMER_OPTIONS = {k: k for k in (
    "model_size", "embed_dim", "depth", "num_heads", "n_levels", "wavelet", "use_kernel",
    "kernel_mode", "spatial_kernel", "embedding", "patch_size", "mlp_ratio", "dropout",
    "drop_path_rate")}
register_model("wmsa", _transformer("wmsa"), _TRANSFORMER_OPTIONS,
               "wavelet multi-scale attention transformer")
register_model("vit", _transformer("vit"), _TRANSFORMER_OPTIONS, "ViT baseline")
