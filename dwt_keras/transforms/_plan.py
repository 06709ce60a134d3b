"""Filter banks and boundary plans of one transform level (NumPy, cached, O(n)).

A level along one axis is "extend the signal by the mode, then correlate with the two
analysis filters and keep every second sample" (analysis), or "upsample-and-filter the two
coefficient arrays, then fold the result back onto the signal" (synthesis: the fold is a
crop for the zero-extending modes and a periodic wrap for ``periodization``).

The extension ``x_ext = E x`` is never a matrix: it is ``[left pieces, x, right pieces]``,
each piece a slice, a reversed slice, a repeated sample, zeros or (``smooth``,
``antireflect``, ``antisymmetric``) a tiny matrix applied to a few edge samples. The pieces
are found from a short signal of at most ``2 * (pad + 2)`` samples and then shifted to the
real length, so building a plan costs O(pad^2) whatever ``n`` is, and applying it O(n).
Only short axes (``n <= max(DENSE_MAX_LEN, 4 * filter_len)``) get a dense matrix, whose
size is therefore bounded.
"""

from __future__ import annotations

import functools

import numpy as np

from dwt_keras.transforms._wavelets import get_wavelet

#: Axes of length n <= max(DENSE_MAX_LEN, 4 * filter_len) are transformed with one dense
#: matrix product (a handful of ops: the cheapest form for short axes and small images,
#: where per-op overhead dominates); longer axes with the O(n) filter-bank kernels.
DENSE_MAX_LEN = 64


def use_dense(n, filter_len):
    return n <= max(DENSE_MAX_LEN, 4 * filter_len)


class Bank:
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
        return isinstance(other, Bank) and self._key == other._key


def bank(wavelet):
    """The ``Bank`` of a wavelet argument (names cached: the per-call cost of small inputs)."""
    if isinstance(wavelet, str):
        return _named_bank(wavelet)
    return Bank(get_wavelet(wavelet))


@functools.lru_cache(maxsize=256)
def _named_bank(name):
    return Bank(get_wavelet(name))


# --------------------------------------------------------------------------- #
# Extension
# --------------------------------------------------------------------------- #
def _extension_matrix(n, left, right, mode):
    """Dense ``(left + n + right, n)`` extension matrix; only ever built for short ``n``."""
    rows = np.arange(-left, n + right)
    e = np.zeros((left + n + right, n))
    if mode == "periodization":
        # PyWavelets first repeats the last sample of odd-length signals.
        ne = n + (n % 2)
        e[np.arange(e.shape[0]), np.minimum(np.mod(rows, ne), n - 1)] = 1.0
        return e
    if mode in ("periodic", "wrap"):  # "wrap": plain periodic fold of a synthesis output
        e[np.arange(e.shape[0]), np.mod(rows, n)] = 1.0
        return e
    if mode == "zero":
        e[left : left + n] = np.eye(n)
        return e
    if mode == "antisymmetric":
        # Half-sample antisymmetric: x[-1 - k] = -x[k], period 2n.
        m = np.mod(rows, 2 * n)
        inside = m < n
        r = np.arange(e.shape[0])
        e[r[inside], m[inside]] = 1.0
        e[r[~inside], 2 * n - 1 - m[~inside]] = -1.0
        return e
    if mode == "smooth":
        # Linear extrapolation of the two edge samples; a single sample is extended as a
        # constant (as the PyWavelets DWT does).
        e[left : left + n] = np.eye(n)
        if n == 1:
            e[:, 0] = 1.0
            return e
        k = np.arange(left, 0, -1)[:, None]
        e[:left, :2] = np.hstack([1.0 + k, -k])
        k = np.arange(1, right + 1)[:, None]
        e[left + n :, n - 2 :] = np.hstack([-k, 1.0 + k])
        return e
    np_mode = {
        "constant": ("edge", {}),
        "symmetric": ("symmetric", {}),
        "reflect": ("reflect", {}),
        "antireflect": ("reflect", {"reflect_type": "odd"}),
    }[mode]
    return np.pad(np.eye(n), ((left, right), (0, 0)), mode=np_mode[0], **np_mode[1])


def _runs(rows, offset):
    """Groups extension rows into pieces computable with cheap ops (columns + ``offset``)."""
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
            pieces.append(("i", offset(j), step if k - i > 1 else 1, k - i))
        else:
            while k < len(rows) and kinds[k][0] == kind:
                k += 1
            if kind == "z":
                pieces.append(("z", k - i))
            else:
                block = rows[i:k]
                cols = np.flatnonzero(np.any(block != 0, axis=0))
                c0, c1 = int(cols.min()), int(cols.max()) + 1
                mat = np.ascontiguousarray(block[:, c0:c1].T)
                pieces.append(("g", offset(c0), offset(c1 - 1) + 1, mat))
        i = k
    return tuple(pieces)


@functools.lru_cache(maxsize=4096)
def pad_plan(n, left, right, mode):
    """``(left_pieces, right_pieces, head, tail)`` of the extension of a length-``n`` axis.

    Every piece reads samples in ``[0, head)`` or ``[n - tail, n)`` (the two never overlap),
    which is what the adjoint (``fold``) needs. Cost O(pad^2), independent of ``n``.
    """
    short = 2 * (max(left, right) + 2)
    if n <= short:
        e = _extension_matrix(n, left, right, mode)
        ident = lambda c: c  # noqa: E731
        return _runs(e[:left], ident), _runs(e[left + n :], ident), n, 0
    # Same parity as n, so periodization's odd-length rule is the same.
    k = short + (short + n) % 2
    half = k // 2
    e = _extension_matrix(k, left, right, mode)
    shift = lambda c: c if c < half else c + (n - k)  # noqa: E731
    pieces = _runs(e[:left], shift), _runs(e[left + k :], shift)
    for p in pieces[0] + pieces[1]:
        # Each piece reads one edge only: what the shift to length n relies on.
        assert _piece_span(p)[1] <= half or _piece_span(p)[0] >= n - (k - half), (n, mode, p)
    return pieces[0], pieces[1], half, k - half


def _piece_span(p):
    """``[lo, hi)``: the samples a piece reads."""
    if p[0] == "z":
        return 0, 0
    if p[0] == "g":
        return p[1], p[2]
    _, j, step, count = p
    last = j + step * (count - 1)
    return min(j, last), max(j, last) + 1


def plan_matrix(pieces, n):
    """Dense ``(rows, n)`` matrix of a piece list (short axes and tests only)."""
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


def full_extension(plan, n):
    left, right = plan[0], plan[1]
    return np.concatenate([plan_matrix(left, n), np.eye(n), plan_matrix(right, n)])


# --------------------------------------------------------------------------- #
# One level: analysis and synthesis plans
# --------------------------------------------------------------------------- #
class AnalysisPlan:
    """``lo, hi = corr_down(E x)``: ``n`` samples -> ``n_out`` coefficients each.

    ``wrap``: as `SynthesisPlan.wrap`, for the adjoint (the gradient) where ``E`` is a plain
    periodic extension (``periodization`` of an even length).
    """

    __slots__ = ("n", "n_out", "left", "right", "pads", "filters", "wrap")

    def __init__(self, n, n_out, left, right, pads, filters, wrap=None):
        self.n, self.n_out, self.left, self.right = n, n_out, left, right
        self.pads, self.filters, self.wrap = pads, filters, wrap


class SynthesisPlan:
    """``x = fold(up_conv(cA, cD))``: ``n_coeffs`` coefficients -> ``n`` samples.

    ``wrap`` (``periodization``): ``(pads, start)``: the same ``x`` computed as ``up_conv`` of
    the coefficients extended periodically (``pads``: a `pad_plan` of the coefficients, mode
    ``"wrap"``), cropped at ``start``: the periodic fold of the output becomes two slices of the
    input (fewer ops in a graph than the fold's slices, pads and sums; the same arithmetic).
    """

    __slots__ = ("n_coeffs", "n", "left", "right", "pads", "filters", "wrap")

    def __init__(self, n_coeffs, n, left, right, pads, filters, wrap=None):
        self.n_coeffs, self.n, self.left, self.right = n_coeffs, n, left, right
        self.pads, self.filters, self.wrap = pads, filters, wrap


def _periodic_wrap(n_coeffs, n, left, filter_len):
    """``(pads, start)`` of `SynthesisPlan.wrap`, or None where the coefficients are
    shorter than the extension (very short axes keep the fold) and for custom odd-length banks
    (whose up_conv output is cropped to the odd length: they keep the fold)."""
    if filter_len % 2:
        return None
    length = filter_len
    # x[i] = sum_j c[j mod n_coeffs] f[i + left - 2 j] over 0 <= i + left - 2 j < length
    before = (length - 1 - left) // 2
    after = (n - 1 + left) // 2 - n_coeffs + 1
    if before < 0 or after < 0 or max(before, after) > n_coeffs:
        return None
    return pad_plan(n_coeffs, before, after, "wrap"), left + 2 * before


@functools.lru_cache(maxsize=4096)
def analysis_plan(b, mode, n):
    f = b.length
    if n < 2 and mode in ("reflect", "antireflect"):
        raise ValueError(
            f"Input length must be greater than 1 along the transformed axis for mode "
            f"{mode!r} (got {n}); use e.g. 'symmetric' or 'periodization'."
        )
    if mode == "periodization":
        n_out = (n + 1) // 2
        left = f // 2 - 1
    else:
        n_out = (n + f - 1) // 2
        left = f - 2
    right = max(0, 2 * (n_out - 1) + f - n - left)
    # Correlation filters (PyWavelets convolves with dec_lo: correlate with it reversed).
    filters = (b.dec_lo[::-1], b.dec_hi[::-1])
    # odd lengths: PyWavelets repeats the last sample first, so E is not periodic (keep the fold)
    wrap = _periodic_wrap(n_out, n, left, f) if mode == "periodization" and n % 2 == 0 else None
    return AnalysisPlan(n, n_out, left, right, pad_plan(n, left, right, mode), filters, wrap)


@functools.lru_cache(maxsize=4096)
def synthesis_plan(b, mode, n_coeffs):
    f = b.length
    if mode == "periodization":
        n = 2 * n_coeffs
        left = f // 2 - 1
        fold = "wrap"
    else:
        n = 2 * n_coeffs - f + 2
        left = f - 2
        fold = "zero"
    if n < 1:
        raise ValueError(
            f"Coefficient arrays of length {n_coeffs} are too short for a filter of length "
            f"{f} in mode {mode!r} (they cannot come from a DWT with this wavelet and mode)."
        )
    full = 2 * (n_coeffs - 1) + f  # length of the upsampled-and-filtered signal
    right = full - n - left
    if right < 0:  # periodization of very short inputs: pad the full signal with zeros
        right = 0
    wrap = _periodic_wrap(n_coeffs, n, left, f) if mode == "periodization" else None
    return SynthesisPlan(
        n_coeffs, n, left, right, pad_plan(n, left, right, fold), (b.rec_lo, b.rec_hi), wrap
    )


# --------------------------------------------------------------------------- #
# Dense matrices of one level (short axes only: n <= max(DENSE_MAX_LEN, 4 * filter_len))
# --------------------------------------------------------------------------- #
def _corr_down_matrix(filt, n_ext, n_out):
    m = np.zeros((n_out, n_ext))
    for k in range(n_out):
        m[k, 2 * k : 2 * k + len(filt)] = filt
    return m


@functools.lru_cache(maxsize=1024)
def analysis_matrix(b, mode, n):
    """``(2 * n_out, n)`` matrix [lowpass rows; highpass rows] of one analysis step."""
    p = analysis_plan(b, mode, n)
    e = full_extension(p.pads, n)
    lo = _corr_down_matrix(p.filters[0], e.shape[0], p.n_out) @ e
    hi = _corr_down_matrix(p.filters[1], e.shape[0], p.n_out) @ e
    out = np.concatenate([lo, hi], axis=0)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=1024)
def synthesis_matrices(b, mode, n_coeffs):
    """``(n, n_coeffs)`` matrices mapping cA and cD to the reconstructed signal."""
    p = synthesis_plan(b, mode, n_coeffs)
    e = full_extension(p.pads, p.n)  # (left + n + right, n): the fold is its transpose
    full = e.shape[0]
    out = []
    for filt in p.filters:
        up = _corr_down_matrix(filt, full, n_coeffs).T  # up_conv: the correlation's adjoint
        m = e.T @ up
        m.setflags(write=False)
        out.append(m)
    return tuple(out)
