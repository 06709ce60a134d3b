"""Single-level discrete wavelet transforms: ``dwt``/``idwt`` (1-D), ``dwt2``/``idwt2`` (2-D).

Each is built from one operation along one axis, ``analysis`` (signal -> cA, cD) and
``synthesis`` (cA, cD -> signal), whose gradients are defined explicitly as their adjoints
(``tf.custom_gradient``): the adjoint of a filter bank is a filter bank of the same cost, so
the backward pass costs what the forward does instead of what automatic differentiation of
slices and pads costs. Short axes use one dense matrix product (bounded size, see
``_plan.use_dense``), differentiated as a matrix product.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from dwt_keras.transforms import _kernels as K
from dwt_keras.transforms import _plan
from dwt_keras.transforms._utils import no_autograph as _no_autograph
from dwt_keras.transforms._utils import (
    common_dtype,
    norm_axes2,
    norm_axis,
    run_real,
    to_tensor,
)
from dwt_keras.transforms._wavelets import per_axis, validate_mode

__all__ = ["dwt", "idwt", "dwt2", "idwt2"]


# --------------------------------------------------------------------------- #
# One level along one axis, with explicit adjoints
# --------------------------------------------------------------------------- #
def _zeros_if_none(g, like):
    return tf.zeros_like(like) if g is None else g


def _analysis_core(x, ax, p):
    return K.corr_down(K.extend(x, ax, p.pads), ax, p.filters, p.n_out)


def _analysis_adjoint_core(lo, hi, ax, p):
    if p.wrap is not None:
        return _wrapped_up_conv([lo, hi], ax, p.wrap, p.n, p.filters)
    return K.fold(K.up_conv([lo, hi], ax, p.filters), ax, p.pads, p.n, p.left)


def _wrapped_up_conv(coeffs, ax, wrap, n, filters):
    """The periodic ``fold(up_conv(coeffs))``: ``up_conv`` of the periodically extended
    coefficients, cropped to the ``n`` samples (see `_plan.SynthesisPlan`)."""
    pads, start = wrap
    return K.up_conv([K.extend(c, ax, pads) for c in coeffs], ax,
                     filters)[K.sl(ax, slice(start, start + n))]


def _analysis_op(x, ax, p):
    @tf.custom_gradient
    def op(t):
        lo, hi = _analysis_core(t, ax, p)

        def grad(d_lo, d_hi):
            return _analysis_adjoint_op(_zeros_if_none(d_lo, lo), _zeros_if_none(d_hi, hi), ax, p)

        return (lo, hi), grad

    return op(x)


def _analysis_adjoint_op(lo, hi, ax, p):
    @tf.custom_gradient
    def op(a, d):
        y = _analysis_adjoint_core(a, d, ax, p)

        def grad(dy):
            return _analysis_op(dy, ax, p)

        return y, grad

    return op(lo, hi)


def _synthesis_core(coeffs, ax, p, filters):
    if p.wrap is not None:
        return _wrapped_up_conv(coeffs, ax, p.wrap, p.n, filters)
    return K.fold(K.up_conv(coeffs, ax, filters), ax, p.pads, p.n, p.left)


def _synthesis_adjoint_core(x, ax, p, filters):
    return K.corr_down(K.extend(x, ax, p.pads), ax, filters, p.n_coeffs)


def _synthesis_op(coeffs, ax, p, filters):
    @tf.custom_gradient
    def op(*cs):
        y = _synthesis_core(list(cs), ax, p, filters)

        def grad(dy):
            return _synthesis_adjoint_op(dy, ax, p, filters)

        return y, grad

    return op(*coeffs)


def _synthesis_adjoint_op(x, ax, p, filters):
    @tf.custom_gradient
    def op(t):
        outs = _synthesis_adjoint_core(t, ax, p, filters)

        def grad(*d):
            return _synthesis_op([_zeros_if_none(g, o) for g, o in zip(d, outs)], ax, p, filters)

        return tuple(outs), grad

    return op(x)


def _matrix_op(x, ax, mat):
    """``mat`` applied along ``ax`` (``K.apply_matrix``), differentiated explicitly as ``mat.T``
    applied to the upstream gradient: automatic differentiation of the product would also form
    the gradient of the constant matrix (a product as large as the forward one, reduced over
    the batch when the matrix is broadcast), which nothing uses."""

    @tf.custom_gradient
    def op(t):
        def grad(dy):
            return _matrix_op(dy, ax, mat.T)

        return K.apply_matrix(t, ax, mat), grad

    return op(x)


def analysis(x, ax, b, mode):
    """``(cA, cD)`` of one level along axis ``ax`` (non-negative) of a real tensor."""
    n = K.static_len(x, ax)
    if _plan.use_dense(n, b.length):
        # rows [lo; hi], applied as two products: splitting one product's output would copy
        # it, and slicing it would make the gradient scatter into zero tensors of full size
        mat = _plan.analysis_matrix(b, mode, n)
        half = mat.shape[0] // 2
        return _matrix_op(x, ax, mat[:half]), _matrix_op(x, ax, mat[half:])
    return _analysis_op(x, ax, _plan.analysis_plan(b, mode, n))


def synthesis(ca, cd, ax, b, mode):
    """One inverse level along ``ax``; ``ca`` or ``cd`` may be None (zeros)."""
    ref = ca if ca is not None else cd
    nc = K.static_len(ref, ax)
    p = _plan.synthesis_plan(b, mode, nc)
    if _plan.use_dense(p.n, b.length):
        m_lo, m_hi = _plan.synthesis_matrices(b, mode, nc)
        # a sum of two products, not one product of the concatenated coefficients (a copy)
        parts = [_matrix_op(c, ax, m) for c, m in ((ca, m_lo), (cd, m_hi)) if c is not None]
        return parts[0] if len(parts) == 1 else parts[0] + parts[1]
    present = [(c, f) for c, f in zip((ca, cd), p.filters) if c is not None]
    return _synthesis_op([c for c, _ in present], ax, p, tuple(f for _, f in present))


# --------------------------------------------------------------------------- #
# Public API
# --------------------------------------------------------------------------- #
@_no_autograph
def dwt(data, wavelet, mode="periodization", axis=-1):
    """Single-level 1-D discrete wavelet transform along ``axis``.

    Equals ``pywt.dwt(data, wavelet, mode, axis)`` (values, shapes and dtypes).

    Args:
        data: array-like or tensor, any rank >= 1 (see the dtype rules in
            ``dwt_keras.transforms``: integers -> float64, float16 -> float32, complex
            inputs transform real and imaginary parts).
        wavelet: discrete wavelet name, ``pywt.Wavelet`` or filter bank (``get_wavelet``).
        mode: signal-extension mode, one of ``MODES`` or a ``pywt.Modes`` constant.
            Default ``periodization``.
        axis: axis to transform; its length must be known statically.

    Returns:
        ``(cA, cD)``: approximation and detail coefficients.

    Example:

    >>> cA, cD = dwt([1.0, 2.0, 3.0, 4.0], "haar")
    >>> cA.numpy().round(4).tolist()
    [2.1213, 4.9497]
    """
    x = to_tensor(data)
    b = _plan.bank(wavelet)
    mode = validate_mode(mode)
    ax = norm_axis(axis, x.shape.rank)
    K.static_len(x, ax)
    def run(t):
        return in_fast_layout([t], (ax,), lambda ts, axes: tuple(analysis(ts[0], axes[0], b, mode)),
                              [b])

    return run_real(run, [x], ("dwt", b, mode, ax))


@_no_autograph
def idwt(cA, cD, wavelet, mode="periodization", axis=-1):
    """Single-level inverse 1-D DWT along ``axis``; equals ``pywt.idwt``.

    Args:
        cA: approximation coefficients, or ``None`` (treated as zeros).
        cD: detail coefficients (same shape as ``cA``), or ``None``.
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        mode: signal-extension mode used for the forward transform.
        axis: axis along which the coefficients lie.

    Returns:
        The reconstructed signal (length ``2 * len(cA)`` in periodization mode,
        ``2 * len(cA) - filter_len + 2`` otherwise, as PyWavelets).

    Example:

    >>> idwt([2.1213, 4.9497], [-0.7071, -0.7071], "haar").numpy().round(3).tolist()
    [1.0, 2.0, 3.0, 4.0]
    """
    if cA is None and cD is None:
        raise ValueError("At least one of cA and cD must be given (not None).")
    ca, cd = common_dtype([None if c is None else to_tensor(c, "coefficients") for c in (cA, cD)])
    b = _plan.bank(wavelet)
    mode = validate_mode(mode)
    ref = ca if ca is not None else cd
    ax = norm_axis(axis, ref.shape.rank)
    if ca is not None and cd is not None and ca.shape.as_list() != cd.shape.as_list():
        raise ValueError(f"cA and cD must have the same shape, got {ca.shape} and {cd.shape}.")
    K.static_len(ref, ax)
    def run(a, d):
        return in_fast_layout([a, d], (ax,), lambda cs, axes: synthesis(*cs, axes[0], b, mode),
                              [b], inverse=True)

    return run_real(run, [ca, cd], ("idwt", b, mode, ax))


#: Outside XLA the kernels are convolutions vectorised over the elements that follow the
#: transformed axis (depthwise over them, or, when none follow, a two-channel convolution that
#: uses few vector lanes). When at most this many elements follow the last transformed axis,
#: the transform runs on a transposed copy: with the transformed axes first when the other
#: dimensions hold more elements than this (a batch of images or signals: every kernel is then
#: depthwise over batch x channels; quiet, one thread, db4 symmetric, plain graph, transposes
#: included: 64x256x256 wavedec2 + waverec2 0.62 -> 0.49 of PyWavelets' time, 64x65536 wavedec +
#: waverec 1.30 -> 1.08; `benchmarks/bench_wavelets_layout.py`), else with them last (one
#: image of 2..16 channels: a depthwise convolution over 3 channels wastes most of its lanes;
#: 16x256x256x3 db4: 1.1-3.1x PyWavelets' time untransposed).
SMALL_TRAILING = 16


#: The axes-first layout is used while the depthwise filters of the first transformed axis
#: hold at most this many values: one copy of the taps per element that follows the axis
#: (16,384 x 8 for a 64x256x256 batch and db4: 512 KB per filter), constants that every trace
#: and every new ``tf.data`` iterator carries. Measured (quiet, one thread, BENCHMARKS.md "The
#: layout"): db4 64x256x256 plain graph 0.40 -> 0.35 of PyWavelets' time, a new ``tf.data``
#: iterator 30-50 ms more; with sym8 / coif3 (16-18 taps) the first call reached 1.0 s.
MAX_FILTER_VALUES = 1 << 17


def _first_axis_lanes(dims, axes, others):
    """The elements that follow the first transformed axis in the axes-first layout."""
    return int(np.prod([dims[a] for a in axes[1:]] + [dims[d] for d in others], dtype=np.int64))


def _layout(shape, axes, taps, signal_scale=1):
    """The permutation the kernels run fastest in (see ``SMALL_TRAILING``), or None.
    ``taps``: the longest filter; ``signal_scale``: 2 when ``shape`` is of coefficients (an
    inverse's signal is twice as long)."""
    dims = shape.as_list()
    rank = len(dims)
    if all(dims[a] is not None and _plan.use_dense(signal_scale * dims[a], taps) for a in axes):
        return None  # short axes: matrix products, which any layout serves
    after = dims[max(axes) + 1:]
    trailing = None if None in after else int(np.prod(after, dtype=np.int64))
    if trailing is None or trailing > SMALL_TRAILING or len(set(axes)) < len(axes):
        return None
    others = [d for d in range(rank) if d not in axes]
    lanes = [dims[d] for d in others]
    if (None not in lanes and int(np.prod(lanes, dtype=np.int64)) > SMALL_TRAILING
            and _first_axis_lanes(dims, axes, others) * taps <= MAX_FILTER_VALUES):
        perm = list(axes) + others
    elif len(axes) == 2 and trailing > 1:
        perm = others + list(axes)
    else:
        return None
    return None if perm == list(range(rank)) else perm


def in_fast_layout(tensors, axes, body, banks, inverse=False):
    """``body(tensors, axes)``, outside XLA on tensors transposed into the layout the kernels
    are fastest in (``SMALL_TRAILING``), the results transposed back. All ``tensors`` share
    the dimensions outside ``axes``; ``banks``: the filter banks used; ``inverse``: the
    tensors are coefficients."""
    # the longest along the axes (the finest coefficients of an inverse) decides
    ref = max((t for t in tensors if t is not None),
              key=lambda t: int(np.prod([t.shape[a] or 0 for a in axes])))
    taps = max(b.length for b in banks)
    perm = None if K.in_xla_context() else _layout(ref.shape, tuple(axes), taps,
                                                   2 if inverse else 1)
    if perm is None:
        return body(tensors, tuple(axes))
    back = np.argsort(perm).tolist()
    moved = [None if t is None else tf.transpose(t, perm) for t in tensors]
    out = body(moved, tuple(perm.index(a) for a in axes))
    return tf.nest.map_structure(lambda c: tf.transpose(c, back), out)


def dwt2_impl(x, axes, banks, modes):
    a0, a1 = axes
    lo, hi = analysis(x, a0, banks[0], modes[0])
    aa, ad = analysis(lo, a1, banks[1], modes[1])
    da, dd = analysis(hi, a1, banks[1], modes[1])
    return aa, (da, ad, dd)


def idwt2_impl(ca, details, axes, banks, modes):
    a0, a1 = axes
    ch, cv, cd = details
    lo = None if (ca is None and cv is None) else synthesis(ca, cv, a1, banks[1], modes[1])
    hi = None if (ch is None and cd is None) else synthesis(ch, cd, a1, banks[1], modes[1])
    if lo is None and hi is None:
        raise ValueError("All coefficient arrays are None.")
    return synthesis(lo, hi, a0, banks[0], modes[0])


def banks_and_modes(wavelet, mode, n_axes):
    """One filter bank and one mode per axis (PyWavelets' per-axis tuples)."""
    return (
        per_axis(wavelet, n_axes, "wavelet", _plan.bank),
        per_axis(mode, n_axes, "mode", validate_mode),
    )


@_no_autograph
def dwt2(data, wavelet, mode="periodization", axes=(-2, -1)):
    """Single-level 2-D DWT over ``axes``; equals ``pywt.dwt2``.

    Args:
        data: input of rank >= 2 (see ``dwt``); e.g. ``(batch, H, W)`` or, with
            ``axes=(1, 2)``, channels-last ``(batch, H, W, C)``.
        wavelet: discrete wavelet name or ``pywt.Wavelet``, or one per axis.
        mode: signal-extension mode, or one per axis.
        axes: the two axes to transform (static lengths; as in PyWavelets, the same axis
            twice transforms it twice).

    Returns:
        ``(cA, (cH, cV, cD))``: ``cH`` is the detail along ``axes[0]`` (horizontal edges),
        ``cV`` along ``axes[1]``, ``cD`` along both.

    Example:

    >>> import numpy as np
    >>> cA, (cH, cV, cD) = dwt2(np.ones((4, 6)), "haar")
    >>> cA.shape, float(cA[0, 0]), float(cD[0, 0])
    (TensorShape([2, 3]), 2.0, 0.0)
    """
    x = to_tensor(data)
    axes = norm_axes2(axes, x.shape.rank, unique=False)
    banks, modes = banks_and_modes(wavelet, mode, 2)
    for a in axes:
        K.static_len(x, a)
    def run(t):
        return in_fast_layout([t], axes, lambda ts, ax: dwt2_impl(ts[0], ax, banks, modes), banks)

    return run_real(run, [x], ("dwt2", *banks, *modes, axes))


def unpack2(coeffs):
    try:
        ca, details = coeffs
        ch, cv, cd = details
    except (TypeError, ValueError) as err:
        raise ValueError("`coeffs` must be (cA, (cH, cV, cD)).") from err
    return ca, (ch, cv, cd)


def coerce_many(arrays):
    ts = [None if a is None else to_tensor(a, "coefficients") for a in arrays]
    if all(t is None for t in ts):
        raise ValueError("At least one coefficient array must be given (not None).")
    return common_dtype(ts)


@_no_autograph
def idwt2(coeffs, wavelet, mode="periodization", axes=(-2, -1)):
    """Single-level inverse 2-D DWT; equals ``pywt.idwt2``.

    Args:
        coeffs: ``(cA, (cH, cV, cD))``; any entry may be ``None`` (zeros).
        wavelet: discrete wavelet name or ``pywt.Wavelet``, or one per axis.
        mode: signal-extension mode used for the forward transform, or one per axis.
        axes: the two transformed axes.

    Returns:
        The reconstructed array.

    Example:

    >>> import numpy as np
    >>> x = np.arange(24.0).reshape(4, 6)
    >>> bool(np.allclose(idwt2(dwt2(x, "db2"), "db2"), x))
    True
    """
    ca, details = unpack2(coeffs)
    ts = coerce_many([ca, *details])
    ref = next(t for t in ts if t is not None)
    axes = norm_axes2(axes, ref.shape.rank, unique=False)
    banks, modes = banks_and_modes(wavelet, mode, 2)
    shapes = {tuple(t.shape.as_list()) for t in ts if t is not None}
    if len(shapes) > 1:
        raise ValueError(f"All coefficient arrays must have the same shape, got {shapes}.")
    def run(*cs):
        return in_fast_layout(list(cs), axes,
                              lambda c, ax: idwt2_impl(c[0], tuple(c[1:]), ax, banks, modes),
                              banks, inverse=True)

    return run_real(run, ts, ("idwt2", *banks, *modes, axes))
