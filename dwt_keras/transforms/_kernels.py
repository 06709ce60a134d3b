"""TensorFlow kernels of one transform level along one axis.

Two formulations of the same filter bank, chosen per call by the execution mode (measured,
see BENCHMARKS.md, "why graph mode was slow"):

* Under XLA (``tf.function(jit_compile=True)``, Keras ``jit_compile=True``): polyphase sums
  of strided slices. XLA fuses a whole level into one or two memory passes.
* Everywhere else (eager, plain ``tf.function``, ``tf.data``, Keras without XLA): the signal
  is reshaped into its two polyphase components (free) and filtered by one convolution per
  filter -- a depthwise convolution over the trailing elements, or a two-channel
  convolution when the axis is the last one. Outside XLA, TensorFlow's CPU kernel for
  strided slices works element by element: one db4 level along one axis of a 64x256x256
  batch took 178-193 ms as slices and 7-17 ms as convolutions (graph mode, same run); XLA,
  conversely, compiles depthwise convolutions into slow loops (325 ms for the same level). Neither needs an n x n matrix: memory is O(n) and time O(n * filter_len).

``extend`` applies a boundary plan (``_plan.pad_plan``), ``fold`` its adjoint;
``corr_down`` (correlate and keep every second sample) and ``up_conv`` (upsample and filter)
are each other's adjoints.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf


def in_xla_context():
    """True while tracing inside an XLA-compiled function."""
    if tf.executing_eagerly():
        return False
    try:
        from tensorflow.python.framework import ops
        from tensorflow.python.ops import control_flow_util

        return bool(control_flow_util.GraphOrParentsInXlaContext(ops.get_default_graph()))
    except (ImportError, AttributeError):  # private API moved: the slice form is always correct
        return True


def sl(ax, s):
    return (slice(None),) * ax + (s,)


def crop(x, ax, start, length):
    """``x[..., start:start + length, ...]`` along ``ax`` as a ``Slice`` op, whose gradient is
    one pad; a strided slice's gradient (``StridedSliceGrad``) scatters element by element and
    cost more than the rest of a small inverse transform's backward pass (measured)."""
    begin = [0] * x.shape.rank
    begin[ax] = start
    size = [-1] * x.shape.rank
    size[ax] = length
    return tf.slice(x, begin, size)


def static_len(x, ax):
    n = x.shape[ax]
    if n is None:
        raise ValueError(
            f"The length of axis {ax} must be known statically (only non-transformed axes "
            f"such as the batch axis may be None); input shape {x.shape}."
        )
    if n < 1:
        raise ValueError(f"Cannot transform an empty axis (axis {ax} of shape {x.shape}).")
    return int(n)


def _with_len(x, ax, length):
    """Dynamic shape of ``x`` with axis ``ax`` set to ``length`` (static where known)."""
    dims = x.shape.as_list()
    dims[ax] = length
    if all(d is not None for d in dims):
        return dims
    shp = tf.shape(x)
    return tf.concat([shp[:ax], [length], shp[ax + 1 :]], axis=0)


def _reshape(x, shape, static):
    out = tf.reshape(x, shape)
    if not isinstance(shape, list):
        out.set_shape(static)
    return out


def _trailing(x, ax):
    """Product of the dimensions after ``ax`` (None if one is unknown)."""
    t = 1
    for d in x.shape.as_list()[ax + 1 :]:
        if d is None:
            return None
        t *= d
    return t


def zeros_along(x, ax, count):
    pads = [[0, 0]] * x.shape.rank
    pads[ax] = [0, count]
    return tf.pad(x[sl(ax, slice(0, 0))], pads)


def apply_matrix(x, ax, mat):
    """Contracts axis ``ax`` of ``x`` with ``mat`` (out, n): ``y[.., o, ..] = mat @ x``."""
    rank = x.shape.rank
    if ax == rank - 1:
        n = x.shape[ax]
        y = tf.matmul(tf.reshape(x, [-1, n]), tf.constant(np.ascontiguousarray(mat.T), dtype=x.dtype))
        return _reshape(y, _with_len(x, ax, mat.shape[0]), x.shape[:ax].concatenate([mat.shape[0]]))
    m = tf.constant(mat, dtype=x.dtype)
    if ax == rank - 2:
        return tf.linalg.matmul(m, x)  # broadcasts over leading dimensions
    perm = [i for i in range(rank) if i != ax] + [ax]
    y = tf.tensordot(tf.transpose(x, perm), tf.transpose(m), axes=[[rank - 1], [0]])
    return tf.transpose(y, np.argsort(perm).tolist())


# --------------------------------------------------------------------------- #
# Boundary extension and its adjoint
# --------------------------------------------------------------------------- #
def _piece(x, ax, piece):
    kind = piece[0]
    if kind == "z":
        return zeros_along(x, ax, piece[1])
    if kind == "i":
        _, j, step, count = piece
        if step == 1:
            return x[sl(ax, slice(j, j + count))]
        if step == -1:
            stop = j - count
            return x[sl(ax, slice(j, stop if stop >= 0 else None, -1))]
        one = x[sl(ax, slice(j, j + 1))]
        return tf.repeat(one, count, axis=ax) if count > 1 else one
    _, c0, c1, mat = piece
    return apply_matrix(x[sl(ax, slice(c0, c1))], ax, mat.T)


def extend(x, ax, pads):
    """``E x``: the signal with its boundary pieces (``_plan.pad_plan``) attached."""
    left, right = pads[0], pads[1]
    if not left and not right:
        return x
    parts = [_piece(x, ax, p) for p in left] + [x] + [_piece(x, ax, p) for p in right]
    return tf.concat(parts, axis=ax)


def _piece_rows(p):
    return p[1] if p[0] == "z" else (p[3] if p[0] == "i" else p[3].shape[1])


def _piece_adjoint(seg, ax, p):
    """``(start, values)``: where and what the adjoint of one piece adds to the signal."""
    if p[0] == "i":
        _, j, step, count = p
        if step == 1:
            return j, seg
        if step == -1:
            return j - count + 1, tf.reverse(seg, [ax])
        return j, tf.reduce_sum(seg, axis=ax, keepdims=True)
    _, c0, _, mat = p
    return c0, apply_matrix(seg, ax, mat)


def fold(y, ax, pads, n, left):
    """``E^T y``: adds the boundary part of an extended signal back onto its samples."""
    lp, rp, head, tail = pads
    x = y[sl(ax, slice(left, left + n))]
    adds = {"head": [], "tail": []}
    for pieces, row in ((lp, 0), (rp, left + n)):
        for p in pieces:
            rows = _piece_rows(p)
            if p[0] != "z":
                start, vals = _piece_adjoint(y[sl(ax, slice(row, row + rows))], ax, p)
                region = "head" if start < head else "tail"
                offset = start if region == "head" else start - (n - tail)
                size = head if region == "head" else tail
                span = vals.shape[ax]
                if offset or span != size:
                    pad = [[0, 0]] * y.shape.rank
                    pad[ax] = [offset, size - offset - span]
                    vals = tf.pad(vals, pad)
                adds[region].append(vals)
            row += rows
    if not adds["head"] and not adds["tail"]:
        return x
    if tail == 0:
        return x + tf.add_n(adds["head"])
    parts = [x[sl(ax, slice(0, head))], x[sl(ax, slice(head, n - tail))], x[sl(ax, slice(n - tail, n))]]
    if adds["head"]:
        parts[0] = parts[0] + tf.add_n(adds["head"])
    if adds["tail"]:
        parts[2] = parts[2] + tf.add_n(adds["tail"])
    return tf.concat(parts, axis=ax)


# --------------------------------------------------------------------------- #
# Filtering: correlate-and-downsample and its adjoint, upsample-and-filter
# --------------------------------------------------------------------------- #
def _even(filters):
    """Filters padded with a zero tap to an even length (custom odd-length banks)."""
    length = len(filters[0])
    if length % 2 == 0:
        return [np.asarray(f, dtype=np.float64) for f in filters], length
    return [np.append(np.asarray(f, dtype=np.float64), 0.0) for f in filters], length + 1


def _fit_len(x, ax, length):
    n = x.shape[ax]
    if n > length:
        return x[sl(ax, slice(0, length))]
    if n < length:
        return tf.concat([x, zeros_along(x, ax, length - n)], axis=ax)
    return x


@functools.lru_cache(maxsize=512)
def _depthwise_filter(taps, channels, dtype):
    """``(h, w, channels, 1)`` depthwise filter: ``taps`` (h, w) repeated over the channels."""
    taps = np.asarray(taps, dtype=np.float64)
    f = np.broadcast_to(taps[:, :, None, None], taps.shape + (channels, 1))
    return np.ascontiguousarray(f, dtype=dtype)


def _np_dtype(x):
    return x.dtype.as_numpy_dtype


def corr_down(xe, ax, filters, n_out):
    """``out_f[k] = sum_m f[m] xe[2k + m]`` for each filter, ``k < n_out``."""
    (taps, length) = _even(filters)
    xe = _fit_len(xe, ax, 2 * (n_out - 1) + length)
    trailing = _trailing(xe, ax)
    if in_xla_context() or trailing is None:
        return _corr_down_slices(xe, ax, taps, n_out)
    half = length // 2
    m = n_out + half - 1
    out_shape = _with_len(xe, ax, n_out)
    static = xe.shape.as_list()
    static[ax] = n_out
    dt = _np_dtype(xe)
    if trailing == 1:
        # One two-channel (even, odd) convolution per filter: de-interleaving a joint
        # (lo, hi) output would cost more than the second convolution.
        # (conv2d over a height-1 image: what conv1d runs, without its expand/squeeze ops)
        xr = tf.reshape(xe, [-1, 1, m, 2])
        outs = []
        for f in taps:
            y = tf.nn.conv2d(xr, f.reshape(1, half, 2, 1).astype(dt), 1, "VALID")
            outs.append(_reshape(y, out_shape, static))
        return outs
    xr = tf.reshape(xe, [-1, m, 2, trailing])
    outs = []
    for f in taps:
        w = _depthwise_filter(tuple(map(tuple, f.reshape(half, 2))), trailing, dt)
        y = tf.nn.depthwise_conv2d(xr, w, [1, 1, 1, 1], "VALID")
        outs.append(_reshape(y, out_shape, static))
    return outs


def _corr_down_slices(xe, ax, taps, n_out):
    span = 2 * (n_out - 1) + 1
    outs = [None] * len(taps)
    for m in range(len(taps[0])):
        s = None
        for i, f in enumerate(taps):
            c = f[m]
            if c == 0.0:
                continue
            if s is None:
                s = xe[sl(ax, slice(m, m + span, 2))]
            outs[i] = s * c if outs[i] is None else outs[i] + s * c
    ref = None
    for i, o in enumerate(outs):
        if o is None:
            ref = ref if ref is not None else xe[sl(ax, slice(0, span, 2))]
            outs[i] = tf.zeros_like(ref)
    return outs


def up_conv(coeffs, ax, filters):
    """The adjoint of ``corr_down``: ``y[2k + m] += f[m] c[k]``, length ``2 (nc - 1) + L``."""
    (taps, length) = _even(filters)
    nc = static_len(coeffs[0], ax)
    half = length // 2
    m = nc + half - 1
    full = 2 * (nc - 1) + len(filters[0])
    trailing = _trailing(coeffs[0], ax)
    if in_xla_context() or trailing is None:
        y = _up_conv_slices(coeffs, ax, taps, half, m)
    else:
        out_shape = _with_len(coeffs[0], ax, 2 * m)
        static = coeffs[0].shape.as_list()
        static[ax] = 2 * m
        dt = _np_dtype(coeffs[0])
        # w[j, c, e] = f_c[2 (half - 1 - j) + e]: the phase-e taps of filter c, reversed.
        rev = [f.reshape(half, 2)[::-1] for f in taps]
        if trailing == 1:
            # Phases come out as channels (interleaved for free); one convolution per
            # coefficient array, since interleaving cA and cD would cost more.
            pad = [[0, 0], [0, 0], [half - 1, half - 1], [0, 0]]
            y = tf.add_n([
                tf.nn.conv2d(tf.reshape(c, [-1, 1, nc, 1]), r[None, :, None, :].astype(dt), 1, pad)
                for c, r in zip(coeffs, rev)
            ])
        else:
            s = tf.stack([tf.reshape(c, [-1, nc, trailing]) for c in coeffs], axis=2)
            phases = []
            for e in (0, 1):
                taps_e = np.stack([r[:, e] for r in rev], axis=1)  # (half, nf)
                w = _depthwise_filter(tuple(map(tuple, taps_e)), trailing, dt)
                phases.append(
                    tf.nn.depthwise_conv2d(s, w, [1, 1, 1, 1], [[0, 0], [half - 1, half - 1], [0, 0], [0, 0]])
                )
            y = tf.concat(phases, axis=2)
        y = _reshape(y, out_shape, static)
    return y if 2 * m == full else y[sl(ax, slice(0, full))]


def _up_conv_slices(coeffs, ax, taps, half, m):
    pads = [[0, 0]] * coeffs[0].shape.rank
    pads[ax] = [half - 1, half - 1]
    padded = [tf.pad(c, pads) if half > 1 else c for c in coeffs]
    phases = []
    for e in (0, 1):
        acc = None
        for j in range(half):
            for c, f in zip(padded, taps):
                coef = f[2 * j + e]
                if coef == 0.0:
                    continue
                s = c[sl(ax, slice(half - 1 - j, half - 1 - j + m))] * coef
                acc = s if acc is None else acc + s
        if acc is None:
            acc = tf.zeros_like(padded[0][sl(ax, slice(0, m))])
        phases.append(acc)
    stacked = tf.stack(phases, axis=ax + 1)
    out_shape = _with_len(phases[0], ax, 2 * m)
    static = phases[0].shape.as_list()
    static[ax] = 2 * m
    return _reshape(stacked, out_shape, static)
