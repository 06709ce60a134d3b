"""Differentiable discrete wavelet transforms for TensorFlow / Keras 3.

The functions mirror PyWavelets (``pywt``): same names, same argument order,
same coefficient layout and the same coefficient values and shapes, for every
discrete wavelet PyWavelets knows and for all of its signal-extension modes.
They are built from TensorFlow ops only (strided slices, multiply-adds,
concatenations), so they

* run eagerly, inside ``tf.function`` and inside ``tf.function(jit_compile=True)``,
* accept any number of leading dimensions, including an unknown batch size,
* are differentiable with respect to their inputs,
* work in float64, float32, float16 and bfloat16.

Filter banks always come from ``pywt.Wavelet``; pass a name (``"db4"``) or a
``pywt.Wavelet`` object (custom filter banks work).

Implementation (chosen by measurement, see ``benchmarks/results/wavelets.md``):
each 1-D pass is "extend the signal by the mode, then a stride-2 correlation".

* Axes of length ``n <= max(DENSE_MAX_LEN, 4 * filter_length)`` use one dense
  matrix product (the extension and both filters folded into a
  ``(2 * n_out, n)`` matrix): a handful of ops, fast eagerly and under XLA.
* Longer axes extend with slices/concatenations (or a tiny matrix product for
  the extrapolating modes) and evaluate the correlation in polyphase form, as
  a sum of ``filter_length`` strided slices. Under XLA a whole multi-level
  transform fuses into a few memory passes; on CPU this beat strided
  convolutions (``tf.nn.conv2d``/``depthwise_conv2d``, which XLA compiles
  poorly) and dense/banded matrix products.
* Op-by-op execution of the polyphase form is slow, so an eager call on a
  large input (at least ``EAGER_JIT_MIN_SIZE`` elements) runs through a cached
  ``tf.function(jit_compile=True)``. Inside your own ``tf.function`` or a
  Keras model the ops are traced as they are.

The module uses TensorFlow ops rather than ``keras.ops``: the polyphase form
needs strided slicing (``keras.ops.slice`` has no step), static-shape
reshapes with an unknown batch size, and XLA compilation through
``tf.function``; it therefore requires the TensorFlow backend.

Too-deep levels: as in PyWavelets, ``level`` larger than ``dwt_max_level``
emits a ``UserWarning`` ("all coefficients will experience boundary effects")
and proceeds; ``level < 0`` raises ``ValueError``.

Example:

>>> import numpy as np
>>> from dwt_keras.wavelets import wavedec2, waverec2
>>> x = np.random.rand(8, 64, 64).astype("float32")
>>> coeffs = wavedec2(x, "db4", level=3)          # periodization by default
>>> [tuple(coeffs[0].shape)] + [tuple(c[0].shape) for c in coeffs[1:]]
[(8, 8, 8), (8, 8, 8), (8, 16, 16), (8, 32, 32)]
>>> float(abs(waverec2(coeffs, "db4") - x).numpy().max()) < 1e-5
True
"""

from __future__ import annotations

import difflib
import functools
import numbers
import warnings

import numpy as np
import pywt
import tensorflow as tf

__all__ = [
    "MODES",
    "EAGER_JIT_MIN_SIZE",
    "DENSE_MAX_LEN",
    "DISCRETE_WAVELETS",
    "get_wavelet",
    "validate_mode",
    "dwt_max_level",
    "dwt_coeff_len",
    "dwt",
    "idwt",
    "wavedec",
    "waverec",
    "dwt2",
    "idwt2",
    "wavedec2",
    "waverec2",
]

#: Signal-extension modes, with PyWavelets' names and semantics.
#: ``periodization`` is the default: it keeps ``ceil(n / 2)`` coefficients per
#: level (no growth) and, for orthogonal wavelets, is an orthogonal transform.
MODES = (
    "periodization",
    "zero",
    "symmetric",
    "reflect",
    "periodic",
    "constant",
    "smooth",
    "antisymmetric",
    "antireflect",
)

#: Eager calls on inputs with at least this many elements are executed through
#: a cached ``tf.function(jit_compile=True)`` (op-by-op execution of the
#: polyphase form is memory bound; XLA fuses it). Set to ``None`` to disable.
EAGER_JIT_MIN_SIZE = 1 << 16

#: Axes of length n <= max(DENSE_MAX_LEN, 4 * filter_length) are transformed
#: with one dense matrix product; longer ones with the polyphase slice form,
#: whose cost grows with the filter length, not with n. Measured (db4, one
#: dwt2 level, 4.2M elements, see benchmarks/results/wavelets.md): the dense
#: form is faster up to n = 64 (8x the multiply-adds of the polyphase form, but
#: a few ops and an efficient GEMM) and much slower from n = 128 on.
DENSE_MAX_LEN = 64


def _use_dense(n, filter_len):
    return n <= max(DENSE_MAX_LEN, 4 * filter_len)

DISCRETE_WAVELETS = tuple(pywt.wavelist(kind="discrete"))
_CONTINUOUS_WAVELETS = tuple(pywt.wavelist(kind="continuous"))
_CONTINUOUS_FAMILIES = ("morl", "mexh", "gaus", "cgau", "cmor", "shan", "fbsp")


# --------------------------------------------------------------------------- #
# Validation helpers
# --------------------------------------------------------------------------- #
def _discrete_summary():
    return (
        "haar, db1-db38, sym2-sym20, coif1-coif17, bior1.1-bior6.8, "
        "rbio1.1-rbio6.8, dmey (full list: pywt.wavelist(kind='discrete'))"
    )


def get_wavelet(wavelet):
    """Returns the ``pywt.Wavelet`` for a name or object, validating it.

    Args:
        wavelet: a discrete wavelet name known to PyWavelets (``"haar"``,
            ``"db4"``, ``"sym8"``, ``"coif2"``, ``"bior2.2"``, ``"rbio3.1"``,
            ``"dmey"``, ...), a ``pywt.Wavelet`` (custom filter banks work), or
            a sequence of four filters ``(dec_lo, dec_hi, rec_lo, rec_hi)``.

    Returns:
        A ``pywt.Wavelet``.

    Raises:
        ValueError: for continuous wavelets (they have no filter bank),
            unknown names and malformed filter banks; the message lists the
            valid choices.

    Example:

    >>> get_wavelet("db2").dec_len
    4
    """
    if isinstance(wavelet, pywt.Wavelet):
        bank = wavelet.filter_bank
        lens = {len(f) for f in bank}
        if len(lens) != 1 or min(lens) < 2:
            raise ValueError(
                f"Wavelet {wavelet.name!r} has an invalid filter bank: the four "
                f"filters must have the same length (at least 2), got lengths "
                f"{[len(f) for f in bank]}."
            )
        return wavelet
    if isinstance(wavelet, pywt.ContinuousWavelet):
        raise ValueError(_continuous_message(wavelet.name))
    if isinstance(wavelet, (list, tuple)) and len(wavelet) == 4:
        try:
            bank = [np.asarray(f, dtype=np.float64).ravel() for f in wavelet]
        except (TypeError, ValueError) as err:
            raise ValueError(
                "A filter bank must be four numeric sequences "
                "(dec_lo, dec_hi, rec_lo, rec_hi)."
            ) from err
        return get_wavelet(pywt.Wavelet("custom", filter_bank=bank))
    if not isinstance(wavelet, str):
        raise ValueError(
            f"`wavelet` must be a wavelet name, a pywt.Wavelet or a filter bank "
            f"(dec_lo, dec_hi, rec_lo, rec_hi); got {type(wavelet).__name__}. "
            f"Valid names: {_discrete_summary()}."
        )
    name = wavelet.strip()
    if name in DISCRETE_WAVELETS:
        return pywt.Wavelet(name)
    if name.lower() in DISCRETE_WAVELETS:
        return pywt.Wavelet(name.lower())
    low = name.lower()
    if (
        low in _CONTINUOUS_WAVELETS
        or low.startswith(_CONTINUOUS_FAMILIES)
        or low in ("meyer", "morlet", "mexican_hat", "mexicanhat")
    ):
        raise ValueError(_continuous_message(name))
    close = difflib.get_close_matches(low, DISCRETE_WAVELETS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown wavelet {wavelet!r}.{hint} Valid discrete wavelets: "
        f"{_discrete_summary()}."
    )


def _continuous_message(name):
    if name.lower() in ("meyer", "meyr"):
        alt = "use 'dmey', the FIR approximation of the Meyer wavelet"
    else:
        alt = (
            "use a discrete wavelet instead, e.g. 'db4' or 'sym4' (smooth, "
            "compact support), 'coif2' (near-symmetric), 'bior4.4' (symmetric) "
            "or 'dmey' (Meyer)"
        )
    return (
        f"Wavelet {name!r} is a continuous wavelet: it has no filter bank, so "
        f"it cannot be used for a discrete wavelet transform; {alt}. Valid "
        f"discrete wavelets: {_discrete_summary()}."
    )


def validate_mode(mode):
    """Returns the canonical name of a signal-extension mode.

    Args:
        mode: one of ``MODES`` (case-insensitive).

    Raises:
        ValueError: for an unknown mode; the message lists ``MODES``.
    """
    if isinstance(mode, str) and mode.strip().lower() in MODES:
        return mode.strip().lower()
    raise ValueError(
        f"Unknown signal-extension mode {mode!r}. Valid modes: {', '.join(MODES)}."
    )


def _filter_len(wavelet):
    if isinstance(wavelet, numbers.Integral) and not isinstance(wavelet, bool):
        if wavelet < 1:
            raise ValueError(f"Filter length must be >= 1, got {wavelet}.")
        return int(wavelet)
    return get_wavelet(wavelet).dec_len


def dwt_max_level(data_len, wavelet):
    """Maximum useful decomposition level, as ``pywt.dwt_max_level``.

    Args:
        data_len: signal length (int), or a shape tuple (the minimum is used).
        wavelet: wavelet name / ``pywt.Wavelet`` / filter length (int).

    Returns:
        ``floor(log2(data_len / (filter_len - 1)))``, at least 0.
    """
    flen = _filter_len(wavelet)
    if isinstance(data_len, (tuple, list)):
        data_len = min(data_len)
    return pywt.dwt_max_level(int(data_len), flen)


def dwt_coeff_len(data_len, wavelet, mode="periodization"):
    """Number of coefficients of a single-level DWT, as ``pywt.dwt_coeff_len``."""
    return pywt.dwt_coeff_len(int(data_len), _filter_len(wavelet), validate_mode(mode))


def _check_level(sizes, dec_len, level):
    max_level = min(pywt.dwt_max_level(int(s), dec_len) for s in sizes)
    if level is None:
        return max_level
    if isinstance(level, bool) or not isinstance(level, numbers.Integral):
        raise ValueError(f"`level` must be a non-negative int or None, got {level!r}.")
    level = int(level)
    if level < 0:
        raise ValueError(f"`level` must be >= 0 (or None for the maximum), got {level}.")
    if level > max_level:
        warnings.warn(
            f"Level value of {level} is too high: all coefficients will experience "
            f"boundary effects (dwt_max_level={max_level} for these sizes).",
            UserWarning,
            stacklevel=3,
        )
    return level


def _to_tensor(x, name="data"):
    """Converts input to a floating (or complex) tensor with a clear error."""
    if isinstance(x, (tf.Tensor, tf.Variable)):
        dt = x.dtype
        if dt.is_floating or dt.is_complex:
            return tf.convert_to_tensor(x)
        if dt.is_integer or dt == tf.bool:
            # Like PyWavelets, integers are transformed in double precision.
            return tf.cast(x, tf.float64)
        raise ValueError(
            f"`{name}` must be numeric (float16/bfloat16/float32/float64, "
            f"complex or integer), got dtype {dt.name}."
        )
    if type(x).__name__ == "KerasTensor":
        raise ValueError(
            f"`{name}` is a symbolic Keras tensor; inside a functional model use the "
            "layers dwt_keras.layers.DWT2D / IDWT2D (or wrap the call in a layer)."
        )
    try:
        arr = np.asarray(x)
    except Exception as err:  # ragged lists and the like
        raise ValueError(f"`{name}` must be a numeric array, got {type(x).__name__}.") from err
    kind = arr.dtype.kind
    if kind in "iub":
        # Like PyWavelets, integers are transformed in double precision.
        arr = arr.astype(np.float64)
    elif kind not in "fc":
        raise ValueError(
            f"`{name}` must be numeric (float16/bfloat16/float32/float64, complex "
            f"or integer), got an array of dtype {arr.dtype}."
        )
    if arr.ndim == 0:
        raise ValueError(f"`{name}` must have at least one dimension, got a scalar.")
    return tf.convert_to_tensor(arr)


def _norm_axis(axis, rank, what="axis"):
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise ValueError(f"`{what}` must be an int, got {axis!r}.")
    if not -rank <= axis < rank:
        raise ValueError(
            f"`{what}`={axis} is out of range for an input of rank {rank}; valid "
            f"values are {-rank}..{rank - 1}."
        )
    return int(axis) % rank


def _norm_axes2(axes, rank):
    try:
        axes = tuple(axes)
    except TypeError as err:
        raise ValueError(f"`axes` must be a pair of ints, got {axes!r}.") from err
    if len(axes) != 2:
        raise ValueError(f"`axes` must be a pair of ints, got {axes!r}.")
    if rank < 2:
        raise ValueError(f"A 2-D transform needs an input of rank >= 2, got rank {rank}.")
    out = tuple(_norm_axis(a, rank, "axes") for a in axes)
    if out[0] == out[1]:
        raise ValueError(f"`axes` must name two different axes, got {axes!r}.")
    return out


def _static_len(x, ax):
    n = x.shape[ax]
    if n is None:
        raise ValueError(
            f"The length of axis {ax} must be known statically (only non-transformed "
            f"axes such as the batch axis may be None); input shape {x.shape}."
        )
    if n < 1:
        raise ValueError(f"Cannot transform an empty axis (axis {ax} of shape {x.shape}).")
    return int(n)


# --------------------------------------------------------------------------- #
# Filter banks and extension plans (NumPy, cached)
# --------------------------------------------------------------------------- #
class _Bank:
    """Hashable float64 copy of a wavelet's filter bank."""

    __slots__ = ("dec_lo", "dec_hi", "rec_lo", "rec_hi", "length", "_key")

    def __init__(self, w):
        self.dec_lo, self.dec_hi, self.rec_lo, self.rec_hi = (
            tuple(float(v) for v in f) for f in w.filter_bank
        )
        self.length = len(self.dec_lo)
        self._key = (self.dec_lo, self.dec_hi, self.rec_lo, self.rec_hi)

    def __hash__(self):
        return hash(self._key)

    def __eq__(self, other):
        return isinstance(other, _Bank) and self._key == other._key


def _bank(wavelet):
    return _Bank(get_wavelet(wavelet))


def _extension_matrix(n, left, right, mode):
    """(left + n + right, n) matrix E with ``extended = E @ x`` for this mode."""
    if mode == "periodization":
        # PyWavelets first repeats the last sample of odd-length signals.
        ne = n + (n % 2)
        idx = np.minimum(np.mod(np.arange(-left, n + right), ne), n - 1)
        e = np.zeros((left + n + right, n))
        e[np.arange(e.shape[0]), idx] = 1.0
        return e
    if mode == "periodic_coeffs":  # plain wrap, used on coefficients
        idx = np.mod(np.arange(-left, n + right), n)
        e = np.zeros((left + n + right, n))
        e[np.arange(e.shape[0]), idx] = 1.0
        return e
    if mode == "zero_coeffs":
        e = np.zeros((left + n + right, n))
        e[left : left + n] = np.eye(n)
        return e
    eye = np.eye(n)
    pad = ((left, right), (0, 0))
    if mode == "zero":
        return np.pad(eye, pad, mode="constant")
    if mode == "constant":
        return np.pad(eye, pad, mode="edge")
    if mode == "periodic":
        return np.pad(eye, pad, mode="wrap")
    if mode == "symmetric":
        return np.pad(eye, pad, mode="symmetric")
    if mode == "reflect":
        return np.pad(eye, pad, mode="reflect")
    if mode == "antireflect":
        return np.pad(eye, pad, mode="reflect", reflect_type="odd")
    if mode == "antisymmetric":
        # Half-sample antisymmetric: x[-1 - k] = -x[k], period 2n.
        m = np.mod(np.arange(-left, n + right), 2 * n)
        e = np.zeros((left + n + right, n))
        inside = m < n
        rows = np.arange(e.shape[0])
        e[rows[inside], m[inside]] = 1.0
        e[rows[~inside], 2 * n - 1 - m[~inside]] = -1.0
        return e
    if mode == "smooth":
        # Linear extrapolation of the two edge samples; a single sample is
        # extended as a constant (as the PyWavelets DWT does).
        e = np.zeros((left + n + right, n))
        e[left : left + n] = eye
        if n == 1:
            e[:, 0] = 1.0
            return e
        k = np.arange(left, 0, -1)[:, None]
        e[:left, :2] = np.hstack([1.0 + k, -k])
        k = np.arange(1, right + 1)[:, None]
        e[left + n :, n - 2 :] = np.hstack([-k, 1.0 + k])
        return e
    raise ValueError(f"Unknown mode {mode!r}.")


def _runs(rows):
    """Groups extension rows into pieces computable with cheap ops."""
    kinds = []
    for r in rows:
        nz = np.flatnonzero(r)
        if nz.size == 0:
            kinds.append(("z", None))
        elif nz.size == 1 and r[nz[0]] == 1.0:
            kinds.append(("i", int(nz[0])))
        else:
            kinds.append(("g", None))
    pieces = []
    i = 0
    while i < len(rows):
        kind, j = kinds[i]
        k = i + 1
        if kind == "i":
            step = None
            while k < len(rows) and kinds[k][0] == "i":
                s = kinds[k][1] - kinds[k - 1][1]
                if step is None and s in (-1, 0, 1):
                    step = s
                elif s != step:
                    break
                k += 1
            pieces.append(("i", j, step if k - i > 1 else 1, k - i))
        else:
            while k < len(rows) and kinds[k][0] == kind:
                k += 1
            if kind == "z":
                pieces.append(("z", k - i))
            else:
                block = rows[i:k]
                cols = np.flatnonzero(np.any(block != 0, axis=0))
                c0, c1 = int(cols.min()), int(cols.max()) + 1
                pieces.append(("g", c0, c1, np.ascontiguousarray(block[:, c0:c1].T)))
        i = k
    return tuple(pieces)


@functools.lru_cache(maxsize=4096)
def _pad_plan(n, left, right, mode):
    e = _extension_matrix(n, left, right, mode)
    return _runs(e[:left]), _runs(e[left + n :])


@functools.lru_cache(maxsize=4096)
def _analysis_plan(bank, mode, n):
    f = bank.length
    if n < 2 and mode in ("reflect", "antireflect"):
        raise ValueError(
            f"Input length must be greater than 1 along the transformed axis for "
            f"mode {mode!r} (got {n}); use e.g. 'symmetric' or 'periodization'."
        )
    if mode == "periodization":
        nout = (n + 1) // 2
        left = f // 2 - 1
    else:
        nout = (n + f - 1) // 2
        left = f - 2
    right = 2 * (nout - 1) + f - n - left
    g_lo = bank.dec_lo[::-1]
    g_hi = bank.dec_hi[::-1]
    return nout, _pad_plan(n, left, max(0, right), mode), g_lo, g_hi


@functools.lru_cache(maxsize=4096)
def _synthesis_plan(bank, mode, nc):
    f = bank.length
    if mode == "periodization":
        n = 2 * nc
        shift = f // 2 - 1
        ext = "periodic_coeffs"
    else:
        n = 2 * nc - f + 2
        shift = f - 2
        ext = "zero_coeffs"
    if n < 1:
        raise ValueError(
            f"Coefficient arrays of length {nc} are too short for a filter of length "
            f"{f} in mode {mode!r} (they cannot come from a DWT with this wavelet "
            f"and mode)."
        )
    phases = []
    lo_idx, hi_idx = 0, nc - 1
    for e in (0, 1):
        ne = (n - e + 1) // 2
        taps = [
            (j, (e + shift - j) // 2)
            for j in range(f)
            if (e + shift - j) % 2 == 0
        ]
        phases.append((ne, taps))
        if taps and ne > 0:
            lo_idx = min(lo_idx, min(d for _, d in taps))
            hi_idx = max(hi_idx, ne - 1 + max(d for _, d in taps))
    left, right = -lo_idx, hi_idx - (nc - 1)
    return n, left, _pad_plan(nc, left, right, ext), phases


def _plan_matrix(pieces, n):
    """Dense (rows, n) matrix of an extension piece list (inverse of _runs)."""
    rows = []
    for p in pieces:
        if p[0] == "z":
            rows.append(np.zeros((p[1], n)))
        elif p[0] == "i":
            _, j, step, count = p
            m = np.zeros((count, n))
            m[np.arange(count), j + step * np.arange(count)] = 1.0
            rows.append(m)
        else:
            _, c0, c1, mat = p
            m = np.zeros((mat.shape[1], n))
            m[:, c0:c1] = mat.T
            rows.append(m)
    return np.concatenate(rows, axis=0) if rows else np.zeros((0, n))


def _full_extension(plan, n):
    left, right = plan
    return np.concatenate([_plan_matrix(left, n), np.eye(n), _plan_matrix(right, n)])


@functools.lru_cache(maxsize=1024)
def _analysis_matrix(bank, mode, n):
    """(2 * nout, n) matrix [lowpass rows; highpass rows] of one analysis step."""
    nout, plan, g_lo, g_hi = _analysis_plan(bank, mode, n)
    e = _full_extension(plan, n)
    span = 2 * (nout - 1) + 1
    lo = sum(g_lo[m] * e[m : m + span : 2] for m in range(bank.length))
    hi = sum(g_hi[m] * e[m : m + span : 2] for m in range(bank.length))
    return np.concatenate([lo, hi], axis=0)


@functools.lru_cache(maxsize=1024)
def _synthesis_matrices(bank, mode, nc):
    """(n, nc) matrices mapping cA and cD to the reconstructed signal."""
    n, left, plan, phases = _synthesis_plan(bank, mode, nc)
    e = _full_extension(plan, nc)
    out = []
    for filt in (bank.rec_lo, bank.rec_hi):
        m = np.zeros((n, nc))
        for ph, (ne, taps) in enumerate(phases):
            for j, d in taps:
                if ne:
                    m[ph::2][:ne] += filt[j] * e[left + d : left + d + ne]
        out.append(m)
    return tuple(out)


# --------------------------------------------------------------------------- #
# Tensor kernels along one (non-negative) axis
# --------------------------------------------------------------------------- #
def _sl(ax, s):
    return (slice(None),) * ax + (s,)


def _zeros_along(x, ax, count):
    empty = x[_sl(ax, slice(0, 0))]
    pads = [[0, 0]] * x.shape.rank
    pads[ax] = [0, count]
    return tf.pad(empty, pads)


def _piece(x, ax, piece):
    kind = piece[0]
    if kind == "z":
        return _zeros_along(x, ax, piece[1])
    if kind == "i":
        _, j, step, count = piece
        if step == 1:
            return x[_sl(ax, slice(j, j + count))]
        if step == -1:
            stop = j - count
            return x[_sl(ax, slice(j, stop if stop >= 0 else None, -1))]
        one = x[_sl(ax, slice(j, j + 1))]
        return tf.repeat(one, count, axis=ax) if count > 1 else one
    _, c0, c1, mat = piece
    seg = x[_sl(ax, slice(c0, c1))]
    rank = x.shape.rank
    perm = [i for i in range(rank) if i != ax] + [ax]
    inv = np.argsort(perm).tolist()
    seg = tf.transpose(seg, perm) if ax != rank - 1 else seg
    out = tf.tensordot(seg, tf.constant(mat, dtype=x.dtype), axes=[[rank - 1], [0]])
    return tf.transpose(out, inv) if ax != rank - 1 else out


def _extend(x, ax, plan):
    left, right = plan
    if not left and not right:
        return x
    parts = [_piece(x, ax, p) for p in left] + [x] + [_piece(x, ax, p) for p in right]
    return tf.concat(parts, axis=ax)


def _apply_matrix(x, ax, mat):
    """Contracts axis ``ax`` of ``x`` with ``mat`` (out, n): y[.., o, ..] = mat @ x."""
    rank = x.shape.rank
    m = tf.constant(mat, dtype=x.dtype)
    if ax == rank - 1:
        return tf.tensordot(x, tf.transpose(m), axes=[[ax], [0]])
    if ax == rank - 2:
        return tf.linalg.matmul(m, x)  # broadcasts over leading dimensions
    perm = [i for i in range(rank) if i != ax] + [ax]
    y = tf.tensordot(tf.transpose(x, perm), tf.transpose(m), axes=[[rank - 1], [0]])
    return tf.transpose(y, np.argsort(perm).tolist())


def _analysis(x, ax, bank, mode):
    n = _static_len(x, ax)
    if _use_dense(n, bank.length):
        mat = _analysis_matrix(bank, mode, n)
        y = _apply_matrix(x, ax, mat)
        half = mat.shape[0] // 2
        return y[_sl(ax, slice(0, half))], y[_sl(ax, slice(half, None))]
    nout, plan, g_lo, g_hi = _analysis_plan(bank, mode, n)
    xe = _extend(x, ax, plan)
    span = 2 * (nout - 1) + 1
    lo = hi = None
    for m in range(bank.length):
        a, b = g_lo[m], g_hi[m]
        if a == 0.0 and b == 0.0:
            continue
        s = xe[_sl(ax, slice(m, m + span, 2))]
        if a != 0.0:
            lo = s * a if lo is None else lo + s * a
        if b != 0.0:
            hi = s * b if hi is None else hi + s * b
    if lo is None:
        lo = tf.zeros_like(xe[_sl(ax, slice(0, span, 2))])
    if hi is None:
        hi = tf.zeros_like(xe[_sl(ax, slice(0, span, 2))])
    return lo, hi


def _synthesis(ca, cd, ax, bank, mode):
    ref = ca if ca is not None else cd
    nc = _static_len(ref, ax)
    n, left, plan, phases = _synthesis_plan(bank, mode, nc)
    if _use_dense(n, bank.length):
        m_lo, m_hi = _synthesis_matrices(bank, mode, nc)
        if ca is not None and cd is not None:
            both = tf.concat([ca, cd], axis=ax)
            return _apply_matrix(both, ax, np.concatenate([m_lo, m_hi], axis=1))
        return _apply_matrix(ref, ax, m_lo if ca is not None else m_hi)
    exts = []
    if ca is not None:
        exts.append((_extend(ca, ax, plan), bank.rec_lo))
    if cd is not None:
        exts.append((_extend(cd, ax, plan), bank.rec_hi))
    outs = []
    for ne, taps in phases:
        acc = None
        for ce, filt in exts:
            for j, d in taps:
                c = filt[j]
                if c == 0.0 or ne == 0:
                    continue
                s = ce[_sl(ax, slice(left + d, left + d + ne))] * c
                acc = s if acc is None else acc + s
        if acc is None:
            acc = _zeros_along(ref[_sl(ax, slice(0, 0))], ax, ne)
        outs.append(acc)
    x0, x1 = outs
    n0 = (n + 1) // 2
    if n % 2:
        x1 = tf.concat([x1, _zeros_along(x1, ax, 1)], axis=ax)
    stacked = tf.stack([x0, x1], axis=ax + 1)
    shp = tf.shape(x0)
    new_shape = tf.concat([shp[:ax], [2 * n0], shp[ax + 1 :]], axis=0)
    out = tf.reshape(stacked, new_shape)
    static = x0.shape.as_list()
    static[ax] = 2 * n0
    out.set_shape(static)
    if n % 2:
        out = out[_sl(ax, slice(0, n))]
    return out


# --------------------------------------------------------------------------- #
# Eager acceleration
# --------------------------------------------------------------------------- #
def _num_elements(t):
    if t is None:
        return 0
    if isinstance(t, (list, tuple)):
        return sum(_num_elements(v) for v in t)
    n = t.shape.num_elements()
    return n or 0


_JIT_CACHE = {}


def _maybe_jit(fn, key, *tensors):
    """Runs ``fn(*tensors)`` through a cached XLA function for big eager calls."""
    if (
        EAGER_JIT_MIN_SIZE is None
        or not tf.executing_eagerly()
        or _num_elements(list(tensors)) < EAGER_JIT_MIN_SIZE
    ):
        return fn(*tensors)
    key = key + (DENSE_MAX_LEN, _use_dense)
    compiled = _JIT_CACHE.get(key)
    if compiled is None:
        if len(_JIT_CACHE) > 256:
            _JIT_CACHE.clear()
        compiled = tf.function(fn, jit_compile=True, reduce_retracing=False)
        _JIT_CACHE[key] = compiled
    return compiled(*tensors)


def _complex_split(fn, *tensors):
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


def _is_complex(*tensors):
    flat = [t for t in tf.nest.flatten(list(tensors)) if t is not None]
    return any(t.dtype.is_complex for t in flat)


def _coerce_pair(a, b):
    """Converts two coefficient arrays and gives them a common dtype."""
    a = None if a is None else _to_tensor(a, "coefficients")
    b = None if b is None else _to_tensor(b, "coefficients")
    if a is not None and b is not None and a.dtype != b.dtype:
        target = np.result_type(a.dtype.as_numpy_dtype, b.dtype.as_numpy_dtype)
        a = tf.cast(a, target)
        b = tf.cast(b, target)
    return a, b


# --------------------------------------------------------------------------- #
# Public API: 1-D
# --------------------------------------------------------------------------- #
def dwt(data, wavelet, mode="periodization", axis=-1):
    """Single-level 1-D discrete wavelet transform along ``axis``.

    Equals ``pywt.dwt(data, wavelet, mode, axis)`` (values and shapes).

    Args:
        data: array-like or tensor, any rank >= 1; float16/bfloat16/float32/
            float64 (integers are converted to float64, like PyWavelets; complex
            inputs transform real and imaginary parts).
        wavelet: discrete wavelet name or ``pywt.Wavelet`` (see ``get_wavelet``).
        mode: signal-extension mode, one of ``MODES``. Default ``periodization``.
        axis: axis to transform; its length must be known statically.

    Returns:
        ``(cA, cD)``: approximation and detail coefficients.

    Example:

    >>> cA, cD = dwt([1.0, 2.0, 3.0, 4.0], "haar")
    >>> cA.numpy().round(4).tolist()
    [2.1213, 4.9497]
    """
    x = _to_tensor(data)
    bank = _bank(wavelet)
    mode = validate_mode(mode)
    ax = _norm_axis(axis, x.shape.rank)
    _static_len(x, ax)

    def run(t):
        return _analysis(t, ax, bank, mode)

    if x.dtype.is_complex:
        return _complex_split(run, x)
    return _maybe_jit(run, ("dwt", bank, mode, ax), x)


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
    """
    if cA is None and cD is None:
        raise ValueError("At least one of cA and cD must be given (not None).")
    ca, cd = _coerce_pair(cA, cD)
    bank = _bank(wavelet)
    mode = validate_mode(mode)
    ref = ca if ca is not None else cd
    ax = _norm_axis(axis, ref.shape.rank)
    if ca is not None and cd is not None and ca.shape.as_list() != cd.shape.as_list():
        raise ValueError(
            f"cA and cD must have the same shape, got {ca.shape} and {cd.shape}."
        )
    _static_len(ref, ax)

    def run(a, d):
        return _synthesis(a, d, ax, bank, mode)

    if _is_complex(ca, cd):
        return _complex_split(run, ca, cd)
    return _maybe_jit(run, ("idwt", bank, mode, ax, ca is None, cd is None), ca, cd)


def _wavedec_impl(x, ax, bank, mode, level):
    coeffs = []
    a = x
    for _ in range(level):
        a, d = _analysis(a, ax, bank, mode)
        coeffs.append(d)
    coeffs.append(a)
    coeffs.reverse()
    return coeffs


def wavedec(data, wavelet, level=None, mode="periodization", axis=-1):
    """Multi-level 1-D DWT; equals ``pywt.wavedec`` (note the argument order).

    PyWavelets' signature is ``wavedec(data, wavelet, mode, level, axis)``;
    here ``level`` comes before ``mode`` as in the project contract, so pass
    both by keyword when in doubt.

    Args:
        data: input, any rank >= 1 (see ``dwt``).
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        level: decomposition level; ``None`` means ``dwt_max_level``. Deeper
            levels warn (as PyWavelets) and proceed; negative levels raise.
        mode: signal-extension mode, one of ``MODES``.
        axis: axis to transform.

    Returns:
        ``[cA_n, cD_n, ..., cD_1]``.
    """
    x = _to_tensor(data)
    bank = _bank(wavelet)
    mode = validate_mode(mode)
    ax = _norm_axis(axis, x.shape.rank)
    n = _static_len(x, ax)
    level = _check_level([n], bank.length, level)

    def run(t):
        return _wavedec_impl(t, ax, bank, mode, level)

    if x.dtype.is_complex:
        return _complex_split(run, x)
    return _maybe_jit(run, ("wavedec", bank, mode, ax, level), x)


def _trim_to(a, d, ax):
    la, ld = a.shape[ax], d.shape[ax]
    if la == ld + 1:
        return a[_sl(ax, slice(0, ld))]
    if la != ld:
        raise ValueError(
            f"Coefficient shape mismatch along axis {ax}: approximation of length "
            f"{la} cannot be combined with details of length {ld}."
        )
    return a


def _waverec_impl(coeffs, ax, bank, mode):
    a = coeffs[0]
    for d in coeffs[1:]:
        if a is not None and d is not None:
            a = _trim_to(a, d, ax)
        a = _synthesis(a, d, ax, bank, mode)
    return a


def waverec(coeffs, wavelet, mode="periodization", axis=-1):
    """Multi-level inverse 1-D DWT; equals ``pywt.waverec``.

    Args:
        coeffs: ``[cA_n, cD_n, ..., cD_1]`` as returned by ``wavedec``.
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        mode: signal-extension mode used for the forward transform.
        axis: axis along which the coefficients lie.

    Returns:
        The reconstructed signal. As in PyWavelets, an approximation one sample
        longer than the next details is trimmed, so odd lengths reconstruct to
        ``n + 1`` samples in periodization mode (slice the result to ``n``).
    """
    if not isinstance(coeffs, (list, tuple)) or len(coeffs) < 1:
        raise ValueError("`coeffs` must be a non-empty list [cA_n, cD_n, ..., cD_1].")
    bank = _bank(wavelet)
    mode = validate_mode(mode)
    ts = [None if c is None else _to_tensor(c, "coefficients") for c in coeffs]
    if ts[0] is None and len(ts) == 1:
        raise ValueError("`coeffs` holds no arrays.")
    dtypes = {t.dtype for t in ts if t is not None}
    if len(dtypes) > 1:
        target = np.result_type(*[d.as_numpy_dtype for d in dtypes])
        ts = [None if t is None else tf.cast(t, target) for t in ts]
    ref = next(t for t in ts if t is not None)
    ax = _norm_axis(axis, ref.shape.rank)
    if len(ts) == 1:
        return ts[0]

    def run(*cs):
        return _waverec_impl(list(cs), ax, bank, mode)

    if _is_complex(*ts):
        return _complex_split(run, *ts)
    key = ("waverec", bank, mode, ax, tuple(t is None for t in ts))
    return _maybe_jit(run, key, *ts)


# --------------------------------------------------------------------------- #
# Public API: 2-D
# --------------------------------------------------------------------------- #
def _dwt2_impl(x, axes, bank, mode):
    a0, a1 = axes
    lo, hi = _analysis(x, a0, bank, mode)
    aa, ad = _analysis(lo, a1, bank, mode)
    da, dd = _analysis(hi, a1, bank, mode)
    return aa, (da, ad, dd)


def _idwt2_impl(ca, details, axes, bank, mode):
    a0, a1 = axes
    ch, cv, cd = details
    lo = None if (ca is None and cv is None) else _synthesis(ca, cv, a1, bank, mode)
    hi = None if (ch is None and cd is None) else _synthesis(ch, cd, a1, bank, mode)
    if lo is None and hi is None:
        raise ValueError("All coefficient arrays are None.")
    return _synthesis(lo, hi, a0, bank, mode)


def dwt2(data, wavelet, mode="periodization", axes=(-2, -1)):
    """Single-level 2-D DWT over ``axes``; equals ``pywt.dwt2``.

    Args:
        data: input of rank >= 2 (see ``dwt``); e.g. ``(batch, H, W)`` or,
            with ``axes=(1, 2)``, channels-last ``(batch, H, W, C)``.
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        mode: signal-extension mode, one of ``MODES``.
        axes: the two axes to transform (static lengths).

    Returns:
        ``(cA, (cH, cV, cD))``: ``cH`` is the detail along ``axes[0]``
        (horizontal edges), ``cV`` along ``axes[1]``, ``cD`` along both.
    """
    x = _to_tensor(data)
    bank = _bank(wavelet)
    mode = validate_mode(mode)
    axes = _norm_axes2(axes, x.shape.rank)
    for a in axes:
        _static_len(x, a)

    def run(t):
        return _dwt2_impl(t, axes, bank, mode)

    if x.dtype.is_complex:
        return _complex_split(run, x)
    return _maybe_jit(run, ("dwt2", bank, mode, axes), x)


def _unpack2(coeffs):
    try:
        ca, details = coeffs
        ch, cv, cd = details
    except (TypeError, ValueError) as err:
        raise ValueError("`coeffs` must be (cA, (cH, cV, cD)).") from err
    return ca, (ch, cv, cd)


def _coerce_many(arrays):
    ts = [None if a is None else _to_tensor(a, "coefficients") for a in arrays]
    real = [t for t in ts if t is not None]
    if not real:
        raise ValueError("All coefficient arrays are None.")
    dtypes = {t.dtype for t in real}
    if len(dtypes) > 1:
        target = np.result_type(*[d.as_numpy_dtype for d in dtypes])
        ts = [None if t is None else tf.cast(t, target) for t in ts]
    return ts


def idwt2(coeffs, wavelet, mode="periodization", axes=(-2, -1)):
    """Single-level inverse 2-D DWT; equals ``pywt.idwt2``.

    Args:
        coeffs: ``(cA, (cH, cV, cD))``; any entry may be ``None`` (zeros).
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        mode: signal-extension mode used for the forward transform.
        axes: the two transformed axes.

    Returns:
        The reconstructed array.
    """
    ca, details = _unpack2(coeffs)
    ts = _coerce_many([ca, *details])
    bank = _bank(wavelet)
    mode = validate_mode(mode)
    ref = next(t for t in ts if t is not None)
    axes = _norm_axes2(axes, ref.shape.rank)
    shapes = {tuple(t.shape.as_list()) for t in ts if t is not None}
    if len(shapes) > 1:
        raise ValueError(f"All coefficient arrays must have the same shape, got {shapes}.")

    def run(a, h, v, d):
        return _idwt2_impl(a, (h, v, d), axes, bank, mode)

    if _is_complex(*ts):
        return _complex_split(run, *ts)
    key = ("idwt2", bank, mode, axes, tuple(t is None for t in ts))
    return _maybe_jit(run, key, *ts)


def _wavedec2_impl(x, axes, bank, mode, level):
    out = []
    a = x
    for _ in range(level):
        a, det = _dwt2_impl(a, axes, bank, mode)
        out.append(det)
    out.append(a)
    out.reverse()
    return out


def wavedec2(data, wavelet, level=None, mode="periodization", axes=(-2, -1)):
    """Multi-level 2-D DWT; equals ``pywt.wavedec2`` (values and shapes).

    Args:
        data: input of rank >= 2 (see ``dwt2``).
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        level: decomposition level; ``None`` means ``dwt_max_level`` of the
            smaller transformed axis. Deeper levels warn and proceed.
        mode: signal-extension mode, one of ``MODES``.
        axes: the two axes to transform.

    Returns:
        ``[cA_n, (cH_n, cV_n, cD_n), ..., (cH_1, cV_1, cD_1)]``.

    Example:

    >>> import numpy as np
    >>> c = wavedec2(np.zeros((2, 32, 48)), "haar", level=2)
    >>> tuple(c[0].shape), tuple(c[1][0].shape), tuple(c[2][0].shape)
    ((2, 8, 12), (2, 8, 12), (2, 16, 24))
    """
    x = _to_tensor(data)
    bank = _bank(wavelet)
    mode = validate_mode(mode)
    axes = _norm_axes2(axes, x.shape.rank)
    sizes = [_static_len(x, a) for a in axes]
    level = _check_level(sizes, bank.length, level)

    def run(t):
        return _wavedec2_impl(t, axes, bank, mode, level)

    if x.dtype.is_complex:
        return _complex_split(run, x)
    return _maybe_jit(run, ("wavedec2", bank, mode, axes, level), x)


def _waverec2_impl(flat, axes, bank, mode):
    a = flat[0]
    for i in range(1, len(flat), 3):
        det = flat[i : i + 3]
        ref = next((d for d in det if d is not None), None)
        if a is not None and ref is not None:
            for ax in axes:
                a = _trim_to(a, ref, ax)
        a = _idwt2_impl(a, det, axes, bank, mode)
    return a


def waverec2(coeffs, wavelet, mode="periodization", axes=(-2, -1)):
    """Multi-level inverse 2-D DWT; equals ``pywt.waverec2``.

    Args:
        coeffs: ``[cA_n, (cH_n, cV_n, cD_n), ..., (cH_1, cV_1, cD_1)]``.
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        mode: signal-extension mode used for the forward transform.
        axes: the two transformed axes.

    Returns:
        The reconstructed array (odd sizes come back one sample longer in
        periodization mode, as in PyWavelets).
    """
    if not isinstance(coeffs, (list, tuple)) or len(coeffs) < 1:
        raise ValueError(
            "`coeffs` must be a non-empty list [cA_n, (cH_n, cV_n, cD_n), ...]."
        )
    flat = [coeffs[0]]
    for det in coeffs[1:]:
        if not isinstance(det, (list, tuple)) or len(det) != 3:
            raise ValueError(
                "Each detail entry of `coeffs` must be a 3-tuple (cH, cV, cD), got "
                f"{type(det).__name__}."
            )
        flat.extend(det)
    ts = _coerce_many(flat)
    bank = _bank(wavelet)
    mode = validate_mode(mode)
    ref = next(t for t in ts if t is not None)
    axes = _norm_axes2(axes, ref.shape.rank)
    if len(ts) == 1:
        return ts[0]
    for i in range(1, len(ts), 3):
        shapes = {tuple(t.shape.as_list()) for t in ts[i : i + 3] if t is not None}
        if len(shapes) > 1:
            raise ValueError(f"All detail shapes of one level must match, got {shapes}.")

    def run(*cs):
        return _waverec2_impl(list(cs), axes, bank, mode)

    if _is_complex(*ts):
        return _complex_split(run, *ts)
    key = ("waverec2", bank, mode, axes, tuple(t is None for t in ts))
    return _maybe_jit(run, key, *ts)
