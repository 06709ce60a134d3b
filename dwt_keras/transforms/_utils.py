"""Input conversion shared by the transforms: dtypes, axes, complex inputs.

Dtype rules follow PyWavelets: integers and booleans are transformed in float64; float16 is
computed in and returned as float32; float128 / complex256 (NumPy's long double) are
converted to float64 / complex128. bfloat16 (which PyWavelets does not know) is computed in
float32 and returned as bfloat16. Complex inputs transform their real and imaginary parts.
"""

from __future__ import annotations

import functools
import numbers

import numpy as np
import tensorflow as tf

def no_autograph(fn):
    """Marks a public transform as plain Python for AutoGraph.

    Inside a user's ``tf.function`` AutoGraph would otherwise convert every function the
    transforms call (parsing their source the first time): measured, that made the first
    trace of ``wavedec2`` + ``waverec2`` take 13 s instead of about 1 s. The transforms
    have no data-dependent Python control flow, so there is nothing to convert.
    """
    return functools.wraps(fn)(tf.autograph.experimental.do_not_convert(fn))


_LONG = {np.dtype(np.longdouble): np.float64, np.dtype(np.clongdouble): np.complex128}


def to_tensor(x, name="data"):
    """A floating or complex tensor for ``x``, with PyWavelets' dtype rules."""
    if isinstance(x, (tf.Tensor, tf.Variable)):
        dt = x.dtype
        if dt.is_floating or dt.is_complex:
            return tf.convert_to_tensor(x)
        if dt.is_integer or dt == tf.bool:
            return tf.cast(x, tf.float64)
        raise ValueError(
            f"`{name}` must be numeric (float16/bfloat16/float32/float64, complex or "
            f"integer), got dtype {dt.name}."
        )
    if type(x).__name__ == "KerasTensor":
        raise ValueError(
            f"`{name}` is a symbolic Keras tensor; inside a functional model use the layers "
            "dwt_keras.layers.DWT2D / IDWT2D (or wrap the call in a layer)."
        )
    try:
        arr = np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise ValueError(f"`{name}` must be a numeric array, got {type(x).__name__}.") from err
    kind = arr.dtype.kind
    if kind in "iub":
        arr = arr.astype(np.float64)
    elif kind not in "fc":
        raise ValueError(
            f"`{name}` must be numeric (float16/bfloat16/float32/float64, complex or "
            f"integer), got an array of dtype {arr.dtype}."
        )
    elif arr.dtype in _LONG and arr.dtype.itemsize > np.dtype(_LONG[arr.dtype]).itemsize:
        arr = arr.astype(_LONG[arr.dtype])  # TensorFlow has no long double
    if arr.ndim == 0:
        raise ValueError(f"`{name}` must have at least one dimension, got a scalar.")
    return tf.convert_to_tensor(arr)


def compute_dtype(dtype):
    """``(compute, result)`` dtypes for an input dtype."""
    if dtype == tf.float16:
        return tf.float32, tf.float32
    if dtype == tf.bfloat16:
        return tf.float32, tf.bfloat16
    return dtype, dtype


def norm_axis(axis, rank, what="axis"):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"`{what}` must be an int, got {axis!r}.")
    if not -rank <= axis < rank:
        raise np.exceptions.AxisError(
            f"`{what}`={axis} is out of range for an input of rank {rank}; valid values are "
            f"{-rank}..{rank - 1}."
        )
    return int(axis) % rank


def norm_axes2(axes, rank, unique):
    """Two non-negative axes; ``unique`` (the multi-level functions) rejects a repeat."""
    try:
        axes = tuple(axes)
    except TypeError as err:
        raise TypeError(f"`axes` must be a pair of ints, got {axes!r}.") from err
    if len(axes) != 2:
        raise ValueError(f"Expected 2 axes, got axes={axes!r}.")
    if rank < 2:
        raise ValueError(f"A 2-D transform needs an input of rank >= 2, got rank {rank}.")
    out = tuple(norm_axis(a, rank, "axes") for a in axes)
    if unique and out[0] == out[1]:
        raise ValueError(f"The axes must be unique, got axes={axes!r}.")
    return out


def is_complex(*tensors):
    flat = [t for t in tf.nest.flatten(list(tensors)) if t is not None]
    return any(t.dtype.is_complex for t in flat)


def complex_split(fn, *tensors):
    """Applies a real linear map to the real and imaginary parts."""

    def part(t, which):
        if t is None:
            return None
        if isinstance(t, (list, tuple)):
            return type(t)(part(v, which) for v in t)
        return tf.math.real(t) if which == "r" else tf.math.imag(t)

    re = fn(*[part(t, "r") for t in tensors])
    im = fn(*[part(t, "i") for t in tensors])
    return tf.nest.map_structure(lambda r, i: tf.complex(r, i), re, im)


def common_dtype(tensors):
    """Casts a list of tensors (None allowed) to their common dtype."""
    real = [t for t in tensors if t is not None]
    dtypes = {t.dtype for t in real}
    if len(dtypes) > 1:
        target = np.result_type(*[d.as_numpy_dtype for d in dtypes])
        tensors = [None if t is None else tf.cast(t, target) for t in tensors]
    return tensors


#: Eager calls on inputs with at least this many elements run as one cached graph function
#: (plain ``tf.function``, no XLA, so a new shape costs a trace of ~0.1-0.5 s, not an XLA
#: compile): op-by-op eager execution pays Python and dispatch overhead per op and runs the
#: independent branches of a 2-D level one after the other. Smaller calls stay op by op
#: (tracing would cost more than it saves). ``None`` disables the dispatch.
EAGER_GRAPH_MIN_SIZE = 1 << 16
_GRAPHS = {}


def _num_elements(tensors):
    return sum((t.shape.num_elements() or 0) for t in tensors if t is not None)


def run_real(fn, tensors, key=None):
    """Runs ``fn`` on real tensors in the compute dtype; complex inputs part by part.

    ``key`` (hashable, naming ``fn`` and its static arguments) lets large eager calls run
    through a cached graph function (see ``EAGER_GRAPH_MIN_SIZE``).
    """
    if (
        key is not None
        and EAGER_GRAPH_MIN_SIZE is not None
        and tf.executing_eagerly()
        and _num_elements(tensors) >= EAGER_GRAPH_MIN_SIZE
    ):
        key = key + (tuple(t is None for t in tensors),)
        graph = _GRAPHS.get(key)
        if graph is None:
            if len(_GRAPHS) > 512:
                _GRAPHS.clear()
            inner = fn

            def graph_fn(*ts):
                return run_real(inner, list(ts))

            graph = _GRAPHS[key] = tf.function(graph_fn, reduce_retracing=False, autograph=False)
        return graph(*tensors)
    if is_complex(*tensors):
        return complex_split(fn, *tensors)
    ref = next(t for t in tensors if t is not None)
    compute, result = compute_dtype(ref.dtype)
    if compute != ref.dtype:
        tensors = [None if t is None else tf.cast(t, compute) for t in tensors]
    out = fn(*tensors)
    if result != compute:
        out = tf.nest.map_structure(lambda t: tf.cast(t, result), out)
    return out
