"""What a served model costs: weights held in memory, multiply-adds per sample, latency.

`deployment_profile` measures these for several forms of one model (the dense model, the dense
form of a compressed file, its coefficient form) in the same run, the latencies interleaved, so
that report.json can put them side by side; `deployment_report` is the whole ``deployment``
block of a run's report, LiteRT files included.

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


def deployment_profile(forms, x, batch_sizes=(1, 256), repeats=30, warmup=3, jit_compile=False):
    """Memory, multiply-adds and latency of several models on the same inputs.

    Latency: ``model(x, training=False)`` inside a ``tf.function`` (what a server runs), median
    over `repeats` calls after `warmup` calls, the forms timed in turn within each repeat so
    that a change of machine load affects all alike.

    Args:
        forms: ``{name: keras.Model}``.
        x: sample inputs (at least one; repeated to fill a batch).
        batch_sizes: the batch sizes timed.
        repeats, warmup: timed and untimed calls per form and batch size.
        jit_compile: time XLA-compiled calls instead.

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
        calls = {name: tf.function(lambda t, m=m: m(t, training=False), jit_compile=jit_compile)
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


def _test_accuracy(model, x, y, batch_size=500):
    return float(np.mean(np.argmax(model.predict(x, batch_size=batch_size, verbose=0), -1)
                         == np.asarray(y).reshape(-1)))


def deployment_report(compressed_path, x_test, y_test, dense_model=None, litert_dir=None,
                      quantize="int8", batch_sizes=(1, 256), repeats=30, litert_repeats=1000):
    """The ``deployment`` block of a run's report: each served form measured in the same run.

    Forms: ``dense`` (`dense_model`, if given), ``dense_form`` (``load_compressed(path)``) and
    ``coefficient`` (``load_compressed(path, form="coefficient")``), each with its test accuracy
    and `deployment_profile`. With `litert_dir`, also the LiteRT files of the coefficient form
    (``coefficient.tflite``, values as `quantize`) and of the dense model
    (``dense_float32.tflite``, the plain converter's), their bytes, test accuracy through the
    LiteRT interpreter and batch-1 latency (timed in turn).

    Args:
        compressed_path: a file written by `save_compressed`.
        x_test, y_test: the test split (NumPy).
        dense_model: the trained dense model (optional; its ``.tflite`` is the dense baseline,
            else the dense form's is).
        litert_dir: folder for the ``.tflite`` files (None: no LiteRT part).
        quantize: `litert.export_litert`'s values encoding.
        batch_sizes, repeats: `deployment_profile`'s.
        litert_repeats: ``invoke()`` calls timed per file.

    Returns:
        ``{"forms": {form: {"test_accuracy", "weight_bytes", "macs_per_sample",
        "latency_ms_batch1", "latency_ms_batch256"}}, "coefficient_layers": [...]}`` and, with
        `litert_dir`: ``litert_path``, ``litert_bytes``, ``litert_test_accuracy``,
        ``litert_top1_agreement`` (with the Keras coefficient form), ``litert_max_abs_diff``,
        ``litert_latency_ms_batch1``, ``dense_litert_path``, ``dense_litert_bytes``,
        ``dense_litert_test_accuracy``, ``dense_litert_latency_ms_batch1``,
        ``litert_interpreter``.

    Example:

    >>> report["deployment"] = deployment_report(run / "compressed_model.dwtc", x_test, y_test,
    ...                                          dense_model=dense, litert_dir=run)  # doctest: +SKIP
    """
    import os

    from dwt_keras.compression import coefficient_domain, litert, storage

    forms = {}
    if dense_model is not None:
        forms["dense"] = dense_model
    forms["dense_form"] = storage.load_compressed(compressed_path)
    forms["coefficient"] = coefficient_domain.to_coefficient_domain(forms["dense_form"])
    profile = deployment_profile(forms, x_test, batch_sizes=batch_sizes, repeats=repeats)
    out = {"forms": {name: {"test_accuracy": _test_accuracy(m, x_test, y_test), **profile[name]}
                     for name, m in forms.items()},
           "coefficient_layers": coefficient_domain.coefficient_domain_record(forms["coefficient"])}
    if litert_dir is None:
        return out
    os.makedirs(litert_dir, exist_ok=True)
    coefficient_file = litert.export_litert(forms["coefficient"],
                                            os.path.join(litert_dir, "coefficient.tflite"),
                                            quantize=quantize)
    dense_file = litert.export_dense_litert(forms.get("dense", forms["dense_form"]),
                                            os.path.join(litert_dir, "dense_float32.tflite"))
    reference = forms["coefficient"].predict(x_test, batch_size=500, verbose=0)
    lite = litert.evaluate_litert(coefficient_file["path"], x_test, y_test, reference=reference)
    dense_lite = litert.evaluate_litert(dense_file["path"], x_test, y_test)
    latency = litert.litert_latency_ms({"coefficient": coefficient_file["path"],
                                        "dense": dense_file["path"]}, x_test, batch_size=1,
                                       repeats=litert_repeats)
    out.update({
        "litert_path": coefficient_file["path"], "litert_bytes": coefficient_file["bytes"],
        "litert_quantize": quantize, "litert_test_accuracy": lite["accuracy"],
        "litert_top1_agreement": lite["top1_agreement"], "litert_max_abs_diff": lite["max_abs_diff"],
        "litert_latency_ms_batch1": latency["coefficient"],
        "dense_litert_path": dense_file["path"], "dense_litert_bytes": dense_file["bytes"],
        "dense_litert_test_accuracy": dense_lite["accuracy"],
        "dense_litert_latency_ms_batch1": latency["dense"],
        "litert_interpreter": lite["interpreter"],
    })
    return out
