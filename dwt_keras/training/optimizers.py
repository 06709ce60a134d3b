"""The one optimizer factory of every training phase.

`make_optimizer(name, learning_rate, ...)` covers what the recipes train with: Adam, AdamW (with
weight decay and variables excluded from it by name), SGD with momentum, Adadelta, and an RMSprop
that matches PyTorch's (the learnable-wavelet paper's framework), plus gradient-norm clipping.

Example:

```python
opt = make_optimizer("adamw", make_learning_rate(1e-3, 352, 100, "warmup_cosine", 5),
                     weight_decay=0.05, clipnorm=1.0, exclude_from_weight_decay=NO_DECAY)
```
"""

import keras

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "adadelta")
#: Variables (by name) that AdamW does not decay: biases, norms, embeddings and the W-MSA
#: kernel's bandwidths.
NO_DECAY = ("bias", "gamma", "beta", "embedding", "bandwidth", "rho_logit")


def make_optimizer(name, learning_rate, clipnorm=0.0, weight_decay=0.0,
                   exclude_from_weight_decay=NO_DECAY, momentum=0.9):
    """A Keras optimizer.

    Args:
        name: one of `OPTIMIZERS`.
        learning_rate: a float or a `LearningRateSchedule` (`make_learning_rate`).
        clipnorm: clip each gradient to this norm (0: no clipping).
        weight_decay: decoupled weight decay (`adamw`; the other optimizers refuse a non-zero
            value rather than ignoring it).
        exclude_from_weight_decay: variable names that `adamw` does not decay.
        momentum: the momentum of `sgd`.

    `rmsprop` divides by `sqrt(v) + 1e-8` with rho 0.99, as PyTorch does: Keras adds its epsilon
    inside the square root, so its default 1e-7 floors the divisor at 3e-4, which kept even a
    plain GRU at chance on the adding problem for 4,750 steps (BENCHMARKS.md).
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"`optimizer` must be one of {', '.join(OPTIMIZERS)}. "
                         f"Received: optimizer={name!r}")
    if not float(clipnorm) >= 0.0:
        raise ValueError(f"`clipnorm` must be >= 0 (0: no clipping). Received: clipnorm={clipnorm}")
    if not float(weight_decay) >= 0.0:
        raise ValueError(f"`weight_decay` must be >= 0. Received: weight_decay={weight_decay}")
    if weight_decay and name != "adamw":
        raise ValueError(f"`weight_decay` needs optimizer='adamw' (decoupled weight decay). "
                         f"Received: weight_decay={weight_decay}, optimizer={name!r}")
    kwargs = {"learning_rate": learning_rate}
    if clipnorm:
        kwargs["clipnorm"] = float(clipnorm)
    if name == "adam":
        return keras.optimizers.Adam(**kwargs)
    if name == "adamw":
        opt = keras.optimizers.AdamW(weight_decay=float(weight_decay), **kwargs)
        if exclude_from_weight_decay:
            opt.exclude_from_weight_decay(var_names=list(exclude_from_weight_decay))
        return opt
    if name == "sgd":
        return keras.optimizers.SGD(momentum=float(momentum), **kwargs)
    if name == "rmsprop":
        return keras.optimizers.RMSprop(rho=0.99, epsilon=1e-16, **kwargs)
    return keras.optimizers.Adadelta(**kwargs)
