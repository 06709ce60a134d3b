"""LiteRT (TensorFlow Lite) export of the coefficient form, and its evaluation and timing.

`export_litert` writes a ``.tflite`` whose graph, for each `WaveletDomainDense`, is the input
transform followed by a sparse product, so that the file holds only the kept coefficients:

* values: int8 with one scale per output unit (``quantize="int8"``, symmetric, per channel),
  float16 or float32, turned to float32 by a ``CAST`` at run time;
* positions: the input coefficient of each value as int16 (int32 beyond 32,767 rows) for a
  ``GATHER``; the output unit of each value is not stored per value: values are sorted by unit
  and the unit ids are rebuilt at run time from the few positions where the unit changes
  (``SCATTER_ND`` + ``CUMSUM``) for an ``UNSORTED_SEGMENT_SUM``;
* the transform: ``dwt_keras.wavelets``' polyphase form on every axis (a few strided slices and
  multiply-adds per level and axis, no matrix constants) unless ``transform_matrices=True``.

Other layers are converted as the TFLite converter does (with ``dense_quantize="dynamic_int8"``,
its dynamic-range quantisation of their weights).

`evaluate_litert` and `litert_latency_ms` run a ``.tflite`` with the LiteRT interpreter
(``ai_edge_litert`` when installed, else ``tf.lite.Interpreter``).

Example:

>>> coeff = load_compressed("model.dwtc", form="coefficient")              # doctest: +SKIP
>>> info = export_litert(coeff, "model.tflite")                              # doctest: +SKIP
>>> evaluate_litert("model.tflite", x_test, y_test)["accuracy"]              # doctest: +SKIP
"""

import contextlib
import os
import time

import numpy as np

from dwt_keras.compression import bases, constraints

QUANTIZE = ("int8", "float16", "none")
DENSE_QUANTIZE = ("none", "dynamic_int8")


def _per_unit_int8(values, units_of):
    """Symmetric int8 with one scale per output unit: ``(q int8, scales float32)``."""
    n_units = int(units_of.max()) + 1 if units_of.size else 0
    peak = np.zeros(n_units, np.float32)
    np.maximum.at(peak, units_of, np.abs(values))
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.round(values / scales[units_of]), -127, 127).astype(np.int8)
    return q, scales


def _index_dtype(limit):
    return np.int16 if limit <= np.iinfo(np.int16).max else np.int32


def _at_run_time(constant, anchor):
    """`constant` read through a ``SLICE`` that starts at the run-time zero `anchor`, so that the
    converter cannot fold a following ``CAST`` into a float32 constant (the file keeps int8)."""
    import tensorflow as tf

    return tf.slice(tf.constant(constant), [anchor] * constant.ndim, constant.shape)


#: The block form of the transform (see `coefficient_domain.InputTransform`) is kept in the file
#: up to this many matrix entries (1 KB in float32); larger blocks use the polyphase form.
BLOCK_MAX_ENTRIES = 256

#: A layer is served with a dense coefficient matrix (int8: 1 byte per entry) instead of the
#: sparse product (about 3 bytes per kept value) from this density on: the file is no larger
#: and a dense product is faster.
DENSE_FROM_DENSITY = 1 / 3


def _quantized(values, unit, units, quantize):
    """``(stored values, per-unit scales or None, dequantised float32 values)``."""
    scales = None
    if quantize == "int8":
        stored, found = _per_unit_int8(values, unit)
        scales = np.ones(units, np.float32)
        scales[: found.size] = found
    elif quantize == "float16":
        stored = values.astype(np.float16)
    else:
        stored = values
    return stored, scales, stored.astype(np.float32) * (scales[unit] if scales is not None else 1.0)


class _ServingProduct:
    """The serving product of one `WaveletDomainDense`, from constants only (see module doc).

    ``"sparse"``: values sorted by unit; ``y_u = S[end_u] - S[end_(u-1)]`` with ``S`` the running
    sum (a float32 ``CUMSUM``) of the gathered, scaled inputs: no per-value unit ids are stored.
    ``"dense"``: the coefficient matrix with its zeros, for layers at least
    `DENSE_FROM_DENSITY` full.
    """

    def __init__(self, layer, quantize, transform_matrices=False):
        from dwt_keras.compression import coefficient_domain

        values = np.asarray(layer.values.numpy(), np.float32)
        positions = np.asarray(layer.positions.numpy(), np.int64)
        rows = np.asarray(layer.rows.numpy(), np.int64)
        self.units, self.n_kept = int(layer.units), int(values.size)
        self.transform = layer.transform
        block = self.transform.block_matrix
        if block is not None and block.size > BLOCK_MAX_ENTRIES and not transform_matrices:
            self.transform = coefficient_domain.InputTransform(layer.plan, block=False)
        n_coef_in = self.transform.n_coef_in
        unit = positions % self.units
        columns = np.asarray(self.transform.z_columns(rows[positions // self.units])
                             if positions.size else positions, np.int64)
        self.kind = "dense" if self.n_kept >= DENSE_FROM_DENSITY * n_coef_in * self.units \
            else "sparse"
        self.values, self.scales, self.dequantized = _quantized(values, unit, self.units,
                                                                quantize)
        if self.kind == "dense":
            matrix = np.zeros((n_coef_in, self.units), self.values.dtype)
            matrix[columns, unit] = self.values
            self.values = matrix
        else:
            self.columns = columns.astype(_index_dtype(n_coef_in))
            ends = np.searchsorted(unit, np.arange(self.units), side="right")
            self.ends = ends.astype(_index_dtype(self.n_kept + 1))

    def __call__(self, x):
        """`x` ``(batch, n_in)`` -> ``(batch, units)`` before bias and activation."""
        import tensorflow as tf

        z = self.transform(x)
        if self.n_kept == 0:
            return tf.zeros((tf.shape(z)[0], self.units), z.dtype)
        anchor = tf.minimum(tf.shape(z)[0], 0)
        values = tf.cast(_at_run_time(self.values, anchor), z.dtype)
        if self.kind == "dense":
            y = tf.linalg.matmul(z, values)
        else:
            taken = tf.gather(z, tf.constant(self.columns), axis=1) * values
            running = tf.pad(tf.cumsum(taken, axis=1), [[0, 0], [1, 0]])
            at_ends = tf.gather(running, tf.constant(self.ends), axis=1)
            y = at_ends - tf.pad(at_ends, [[0, 0], [1, 0]])[:, :-1]
        return y * tf.constant(self.scales) if self.scales is not None else y


@contextlib.contextmanager
def serving_graph(model, quantize="int8", transform_matrices=False):
    """Within the block, `model`'s `WaveletDomainDense` layers compute the serving transform and
    product from constants (the values quantised as `quantize`) instead of their variables.

    Yields ``{layer name: max abs error of the dequantised values}``.
    """
    from dwt_keras import wavelets
    from dwt_keras.compression import coefficient_domain

    if quantize not in QUANTIZE:
        raise ValueError(f"quantize must be one of {QUANTIZE}. Received: quantize={quantize!r}")
    layers = [l for l in bases._flatten_layers(model)
              if isinstance(l, coefficient_domain.WaveletDomainDense)]
    errors = {}
    for layer in layers:
        serving = _ServingProduct(layer, quantize, transform_matrices)
        values = np.asarray(layer.values.numpy(), np.float32)
        errors[layer.name] = float(np.abs(serving.dequantized - values).max(initial=0.0))
        layer._serving = serving
    saved = wavelets.DENSE_MAX_LEN
    if not transform_matrices:
        wavelets.DENSE_MAX_LEN = 0
    try:
        yield errors
    finally:
        wavelets.DENSE_MAX_LEN = saved
        for layer in layers:
            layer._serving = None


def _convert(model, dense_quantize, strip):
    """The converter's flatbuffer of `model`; with `strip`, without tensor names and signature
    strings (LiteRT's ``flatbuffer_utils.strip_strings``: inputs and outputs by index)."""
    data = _converter(model, dense_quantize).convert()
    if not strip:
        return data
    from tensorflow.lite.tools import flatbuffer_utils

    flat = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    flatbuffer_utils.strip_strings(flat)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(flat))


def _converter(model, dense_quantize):
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2)

    spec = tf.TensorSpec((None,) + tuple(model.inputs[0].shape[1:]), model.inputs[0].dtype)
    fn = tf.function(lambda x: model(x, training=False), input_signature=[spec], autograph=False)
    # Freeze the variables: the file holds constants (what is read is what is stored).
    frozen = convert_variables_to_constants_v2(fn.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if dense_quantize == "dynamic_int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def export_litert(model, path, quantize="int8", dense_quantize="none",
                  transform_matrices=False, strip=True):
    """Writes a LiteRT ``.tflite`` of a model, in its coefficient form where it has one.

    Args:
        model: a functional/Sequential Keras model with one input: a coefficient-form model
            (`to_coefficient_domain`, ``load_compressed(..., form="coefficient")``), or a
            compressed dense model with its `CompressionState` (converted first), or any dense
            model (converted as the TFLite converter does).
        path: output file (written atomically).
        quantize: values of the kept coefficients: ``"int8"`` (per-unit scales), ``"float16"``
            or ``"none"`` (float32).
        dense_quantize: ``"none"`` or ``"dynamic_int8"`` (the converter's dynamic-range
            quantisation) for the weights of the other layers.
        transform_matrices: keep ``dwt_keras.wavelets``' dense-matrix form for short axes
            (fewer ops, but the matrices are stored in the file).
        strip: drop tensor names and signature strings from the file (run it by index, as
            `predict_litert` does).

    Returns:
        ``{"path", "bytes", "quantize", "max_abs_value_error": {layer: error}}``.
    """
    from dwt_keras.compression import coefficient_domain
    from dwt_keras.utils.io import atomic_write_bytes

    if dense_quantize not in DENSE_QUANTIZE:
        raise ValueError(f"dense_quantize must be one of {DENSE_QUANTIZE}. "
                         f"Received: dense_quantize={dense_quantize!r}")
    if len(getattr(model, "inputs", None) or []) != 1:
        raise ValueError(f"Model '{model.name}' must be a built functional/Sequential model "
                         "with one input to export.")
    has_coefficient_layers = any(isinstance(l, coefficient_domain.WaveletDomainDense)
                                 for l in bases._flatten_layers(model))
    if not has_coefficient_layers and constraints.get_state(model) is not None:
        model = coefficient_domain.to_coefficient_domain(model)
    with serving_graph(model, quantize, transform_matrices) as errors:
        data = _convert(model, dense_quantize, strip)
    atomic_write_bytes(path, data)
    return {"path": str(path), "bytes": len(data), "quantize": quantize,
            "dense_quantize": dense_quantize, "max_abs_value_error": errors}


def export_dense_litert(model, path, dense_quantize="none", strip=True):
    """The plain converter's ``.tflite`` of `model` (float32, or ``"dynamic_int8"``; `strip` as
    in `export_litert`): the baseline a coefficient-form file is compared with.
    Returns ``{"path", "bytes"}``."""
    from dwt_keras.utils.io import atomic_write_bytes

    if dense_quantize not in DENSE_QUANTIZE:
        raise ValueError(f"dense_quantize must be one of {DENSE_QUANTIZE}. "
                         f"Received: dense_quantize={dense_quantize!r}")
    data = _convert(model, dense_quantize, strip)
    atomic_write_bytes(path, data)
    return {"path": str(path), "bytes": len(data), "dense_quantize": dense_quantize}


def constant_tensors(path):
    """What a ``.tflite`` stores: ``[{"name", "dtype", "shape", "bytes"}]`` of its constant
    tensors, largest first (names are empty in a stripped file)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(os.fspath(path))
    out = []
    for graph in model.subgraphs:
        for t in graph.tensors:
            data = model.buffers[t.buffer].data if t.buffer < len(model.buffers) else None
            if data is not None and len(data):
                name = t.name.decode() if isinstance(t.name, bytes) else (t.name or "")
                out.append({"name": name, "dtype": names.get(t.type, str(t.type)),
                            "shape": [int(v) for v in t.shape], "bytes": int(len(data))})
    return sorted(out, key=lambda d: -d["bytes"])


# --------------------------------------------------------------------------- #
# Running a .tflite
# --------------------------------------------------------------------------- #
def interpreter_name():
    """``"ai_edge_litert"`` if that package is importable, else ``"tf.lite"``."""
    try:
        import ai_edge_litert.interpreter  # noqa: F401
    except ImportError:
        return "tf.lite"
    return "ai_edge_litert"


def make_interpreter(path, num_threads=1, default_delegates=True):
    """A LiteRT interpreter for `path` (``ai_edge_litert`` if installed, else ``tf.lite``).

    Args:
        path: the ``.tflite``.
        num_threads: CPU threads.
        default_delegates: apply the default delegate (XNNPACK) as LiteRT does by default;
            ``False`` runs the built-in kernels only.
    """
    import warnings

    try:
        from ai_edge_litert import interpreter as lite
        cls, resolver = lite.Interpreter, lite.OpResolverType
    except ImportError:
        import tensorflow as tf

        cls, resolver = tf.lite.Interpreter, tf.lite.experimental.OpResolverType
    kind = resolver.AUTO if default_delegates else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        return cls(model_path=os.fspath(path), num_threads=int(num_threads),
                   experimental_op_resolver_type=kind)


def _resize(interp, batch_size):
    inp = interp.get_input_details()[0]
    if int(inp["shape"][0]) != batch_size:
        interp.resize_tensor_input(inp["index"], [batch_size] + list(inp["shape"][1:]))
    interp.allocate_tensors()
    return interp.get_input_details()[0]["index"], interp.get_output_details()[0]["index"]


def predict_litert(path, x, batch_size=256, **interpreter_kwargs):
    """Outputs of the ``.tflite`` at `path` on `x` (NumPy), in batches."""
    x = np.asarray(x, dtype=np.float32)
    interp = make_interpreter(path, **interpreter_kwargs)
    outputs, current = [], None
    for start in range(0, len(x), batch_size):
        chunk = x[start:start + batch_size]
        if current != len(chunk):
            i_in, i_out = _resize(interp, len(chunk))
            current = len(chunk)
        interp.set_tensor(i_in, chunk)
        interp.invoke()
        outputs.append(np.array(interp.get_tensor(i_out)))
    return np.concatenate(outputs, axis=0)


def evaluate_litert(path, x, y, batch_size=256, reference=None, **interpreter_kwargs):
    """Accuracy of the ``.tflite`` on ``(x, y)`` and, given `reference` outputs (e.g. the Keras
    model's), the largest absolute difference and the share of equal top-1 predictions.

    Returns:
        ``{"accuracy", "n", "interpreter"}`` (+ ``"max_abs_diff"``, ``"top1_agreement"``).
    """
    out = predict_litert(path, x, batch_size=batch_size, **interpreter_kwargs)
    y = np.asarray(y).reshape(-1)
    res = {"accuracy": float(np.mean(np.argmax(out, axis=-1) == y)), "n": int(y.size),
           "interpreter": interpreter_name()}
    if reference is not None:
        reference = np.asarray(reference)
        res["max_abs_diff"] = float(np.abs(out - reference).max())
        res["top1_agreement"] = float(np.mean(np.argmax(out, -1) == np.argmax(reference, -1)))
    return res


def litert_latency_ms(paths, x, batch_size=1, repeats=200, warmup=20, **interpreter_kwargs):
    """Median ``invoke()`` time (ms) of each ``.tflite`` in `paths` (``{name: path}``), timed
    in turn within each repeat. Returns ``{name: ms}``."""
    x = np.asarray(x, dtype=np.float32)
    xb = x[:batch_size] if len(x) >= batch_size else np.resize(x, (batch_size,) + x.shape[1:])
    interps = {}
    for name, path in paths.items():
        interp = make_interpreter(path, **interpreter_kwargs)
        i_in, _ = _resize(interp, batch_size)
        interp.set_tensor(i_in, xb)
        for _ in range(int(warmup)):
            interp.invoke()
        interps[name] = interp
    times = {name: [] for name in paths}
    for _ in range(int(repeats)):
        for name, interp in interps.items():
            t0 = time.perf_counter()
            interp.invoke()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t) * 1e3) for name, t in times.items()}
