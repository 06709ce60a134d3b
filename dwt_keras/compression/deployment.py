"""What a served model costs: weights held in memory, multiply-adds per sample, latency.

`deployment_profile` measures these for several forms of one model (the dense model, the dense
form of a compressed file, its coefficient form) in the same run, the latencies interleaved, so
that report.json can put them side by side.

Example:

>>> forms = {"dense": dense, "dense_form": load_compressed(p),                     # doctest: +SKIP
...          "coefficient": load_compressed(p, form="coefficient")}
>>> deployment_profile(forms, x_test)["coefficient"]["latency_ms_batch1"]      # doctest: +SKIP
"""

import time

import numpy as np

from dwt_keras.compression import bases, constraints

_KERNEL_CLASSES = ("Dense", "EinsumDense", "Conv1D", "Conv2D", "Conv3D", "DepthwiseConv2D",
                   "SeparableConv2D", "Conv1DTranspose", "Conv2DTranspose")


def weight_bytes(model):
    """Bytes of every weight the model holds (its variables, trainable or not, at their dtype),
    plus the masks of an attached `CompressionState` (they are held too)."""
    total = sum(int(np.prod(w.shape)) * np.dtype(w.dtype).itemsize for w in model.weights)
    state = constraints.get_state(model)
    if state is not None:
        total += sum(int(np.prod(m.shape)) * np.dtype(m.dtype.as_numpy_dtype).itemsize
                     for m in state.masks.values())
    return int(total)


def _output_positions(layer):
    """Number of output positions (product of non-batch, non-channel output dims)."""
    try:
        shape = tuple(layer.output.shape)
    except (AttributeError, ValueError):
        return 1
    dims = [int(s) for s in shape[1:-1] if s is not None]
    return int(np.prod(dims)) if dims else 1


def multiply_adds(model):
    """Multiply-adds per sample of the model's kernels.

    ``Dense``/``EinsumDense``: the kernel's size (times the positions it is applied at);
    convolutions: kernel size times output positions; `WaveletDomainDense`: its input transform
    plus its product as executed (`WaveletDomainDense.multiply_adds`). Biases, normalisation,
    activations and pooling are not counted.
    """
    from dwt_keras.compression import coefficient_domain

    total = 0
    for layer in bases._flatten_layers(model):
        if isinstance(layer, coefficient_domain.WaveletDomainDense):
            total += layer.multiply_adds() * _output_positions(layer)
            continue
        if type(layer).__name__ not in _KERNEL_CLASSES:
            continue
        for name in ("kernel", "depthwise_kernel", "pointwise_kernel"):
            kernel = getattr(layer, name, None)
            if kernel is not None:
                total += int(np.prod(kernel.shape)) * _output_positions(layer)
    return int(total)


def _batch(x, batch_size):
    reps = -(-batch_size // len(x))
    return np.concatenate([x] * reps, axis=0)[:batch_size] if reps > 1 else x[:batch_size]


def deployment_profile(forms, x, batch_sizes=(1, 256), repeats=30, warmup=3):
    """Memory, multiply-adds and latency of several models on the same inputs.

    Latency: ``model(x, training=False)`` inside a ``tf.function`` (what a server runs), median
    over `repeats` calls after `warmup` calls, the forms timed in turn within each repeat so
    that a change of machine load affects all alike.

    Args:
        forms: ``{name: keras.Model}``.
        x: sample inputs (at least one; repeated to fill a batch).
        batch_sizes: the batch sizes timed.
        repeats, warmup: timed and untimed calls per form and batch size.

    Returns:
        ``{name: {"weight_bytes", "macs_per_sample", "latency_ms_batch<B>" for each B}}``.
    """
    import tensorflow as tf

    if not forms:
        raise ValueError("forms must name at least one model.")
    if int(repeats) < 1 or int(warmup) < 0:
        raise ValueError(f"Need repeats >= 1 and warmup >= 0. Received: repeats={repeats}, "
                         f"warmup={warmup}")
    x = np.asarray(x, dtype=np.float32)
    out = {name: {"weight_bytes": weight_bytes(m), "macs_per_sample": multiply_adds(m)}
           for name, m in forms.items()}
    for bs in batch_sizes:
        xb = tf.constant(_batch(x, int(bs)))
        calls = {name: tf.function(lambda t, m=m: m(t, training=False))
                 for name, m in forms.items()}
        for fn in calls.values():
            for _ in range(max(1, int(warmup))):
                fn(xb).numpy()
        times = {name: [] for name in forms}
        for _ in range(int(repeats)):
            for name, fn in calls.items():
                t0 = time.perf_counter()
                fn(xb).numpy()
                times[name].append(time.perf_counter() - t0)
        for name in forms:
            out[name][f"latency_ms_batch{int(bs)}"] = float(np.median(times[name]) * 1e3)
    return out
