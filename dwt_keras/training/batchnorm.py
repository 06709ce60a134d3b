"""BatchNorm recalibration: re-estimate the moving statistics on training batches.

Pruning a network (or loading one from a compressed file) changes every activation downstream,
so the moving mean and variance that BatchNorm learnt for the dense weights no longer match
what its inputs are; inference then normalises with the wrong statistics (a CIFAR ResNet can fall
to chance). `recalibrate_batchnorm` runs the model on some training batches with every
BatchNormalization layer normalising with its batch statistics (as in training; the rest of the
model in inference mode: no dropout) and sets each layer's moving mean and variance to the exact
mean and (biased) variance of its inputs over all those samples. No trainable weight changes.
"""

import numpy as np


def _batches(data, batch_size, batches):
    """Yields input batches ``x`` from an array, an ``(x, ...)`` tuple, or an iterable of either
    (``tf.data.Dataset``, generator), at most `batches` of them."""
    if isinstance(data, (tuple, list)) and len(data) and hasattr(data[0], "shape"):
        data = data[0]  # (x, y[, sample_weight]) arrays
    if hasattr(data, "shape") and hasattr(data, "__getitem__") and not hasattr(data, "element_spec"):
        n = int(data.shape[0])
        starts = range(0, n, batch_size)
        for i, start in enumerate(starts):
            if batches is not None and i >= batches:
                return
            yield data[start:start + batch_size]
        return
    for i, item in enumerate(data):
        if batches is not None and i >= batches:
            return
        yield item[0] if isinstance(item, (tuple, list)) else item


def recalibrate_batchnorm(model, data, batches=None, batch_size=128, layers=None):
    """Re-estimates the moving mean / variance of `model`'s BatchNormalization layers.

    Args:
        model: a built Keras model (functional, Sequential or subclassed).
        data: training inputs: an array, an ``(x, y)`` tuple of arrays, or an iterable of
            batches ``x`` or ``(x, y[, w])`` such as a ``tf.data.Dataset``. Augmented training
            batches are right; validation or test data is not (it would leak).
        batches: number of batches to use (``None``: all of `data`).
        batch_size: batch size when `data` is an array.
        layers: names of the BatchNormalization layers to recalibrate (default: all).

    Returns:
        ``{layer name: number of values per channel its statistics were computed from}``
        (samples times spatial positions).

    Raises:
        ValueError: bad arguments, a model without BatchNormalization, or no data.

    Example:

    >>> import numpy as np                                               # doctest: +SKIP
    >>> recalibrate_batchnorm(model, x_train, batches=50)                # doctest: +SKIP
    {'stem_bn': 6553600, ...}
    """
    import keras

    if batches is not None and (isinstance(batches, bool) or not isinstance(batches, int)
                                or batches < 1):
        raise ValueError(f"batches must be a positive int or None. Received: batches={batches!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int. Received: batch_size={batch_size!r}")
    bns = [l for l in model._flatten_layers(include_self=False)
           if isinstance(l, keras.layers.BatchNormalization)]
    if layers is not None:
        unknown = sorted(set(layers) - {l.name for l in bns})
        if unknown:
            raise ValueError(f"Unknown BatchNormalization layer(s) {unknown}; the model has "
                             f"{[l.name for l in bns]}. Received: layers={list(layers)!r}")
        bns = [l for l in bns if l.name in set(layers)]
    if not bns:
        raise ValueError(f"Model '{model.name}' has no BatchNormalization layer to recalibrate.")

    sums = {}  # layer name -> [count, sum, sum of squares] per channel (float64)

    def patched(layer, original):
        axes = None

        def call(inputs, training=None, mask=None):
            nonlocal axes
            x = np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(inputs, "float32")),
                           np.float64)
            if axes is None:
                axis = layer.axis if isinstance(layer.axis, int) else layer.axis[0]
                axis = axis % x.ndim
                axes = tuple(i for i in range(x.ndim) if i != axis)
            acc = sums.setdefault(layer.name, [0, 0.0, 0.0])
            acc[0] += int(np.prod([x.shape[i] for i in axes]))
            acc[1] = acc[1] + x.sum(axis=axes)
            acc[2] = acc[2] + np.square(x).sum(axis=axes)
            # normalise with the batch statistics, as in training, for the layers downstream
            return original(inputs, training=True, mask=mask)

        return call

    saved = {}
    try:
        for l in bns:
            saved[l.name] = (l.momentum, l.__dict__.get("call"))
            l.momentum = 1.0  # the in-call moving-average update leaves the statistics alone
            object.__setattr__(l, "call", patched(l, type(l).call.__get__(l)))
        seen = 0
        for x in _batches(data, batch_size, batches):
            model(x, training=False)
            seen += 1
    finally:
        for l in bns:
            momentum, own_call = saved.get(l.name, (l.momentum, None))
            l.momentum = momentum
            if own_call is None:
                l.__dict__.pop("call", None)
            else:
                object.__setattr__(l, "call", own_call)
    if not seen:
        raise ValueError("recalibrate_batchnorm got no batch from `data`.")
    out = {}
    for l in bns:
        if l.name not in sums:
            continue  # not on the path of these inputs
        count, s, sq = sums[l.name]
        mean = s / count
        var = np.maximum(sq / count - np.square(mean), 0.0)
        l.moving_mean.assign(mean.astype(l.moving_mean.dtype))
        l.moving_variance.assign(var.astype(l.moving_variance.dtype))
        out[l.name] = count
    return out
