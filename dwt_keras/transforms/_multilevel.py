"""Multi-level transforms built on the single level: ``wavedec``/``waverec`` (1-D) and
``wavedec2``/``waverec2`` (2-D), with PyWavelets' signatures and coefficient layout."""

from __future__ import annotations

from dwt_keras.transforms import _kernels as K
from dwt_keras.transforms import _plan
from dwt_keras.transforms._dwt import (
    analysis,
    in_fast_layout,
    banks_and_modes,
    coerce_many,
    dwt2_impl,
    idwt2_impl,
    synthesis,
)
from dwt_keras.transforms._utils import no_autograph as _no_autograph
from dwt_keras.transforms._utils import common_dtype, norm_axes2, norm_axis, run_real, to_tensor
from dwt_keras.transforms._wavelets import check_level, validate_mode

__all__ = ["wavedec", "waverec", "wavedec2", "waverec2"]


def _trim_to(a, d, ax):
    """PyWavelets' rule: an approximation one longer than the next details is trimmed."""
    la, ld = a.shape[ax], d.shape[ax]
    if la == ld + 1:
        return K.crop(a, ax, 0, ld)
    if la != ld:
        raise ValueError(
            f"Coefficient shape mismatch along axis {ax}: approximation of length {la} "
            f"cannot be combined with details of length {ld}."
        )
    return a


@_no_autograph
def _decompose(t, level, step):
    """``[cA_n, D_n, ..., D_1]``: ``level`` applications of ``step`` (a -> (a, details))."""
    details = []
    for _ in range(level):
        t, d = step(t)
        details.append(d)
    return [t] + details[::-1]


def wavedec(data, wavelet, mode="periodization", level=None, axis=-1):
    """Multi-level 1-D DWT; equals ``pywt.wavedec(data, wavelet, mode, level, axis)``.

    Args:
        data: input, any rank >= 1 (see ``dwt``).
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        mode: signal-extension mode, one of ``MODES`` or a ``pywt.Modes`` constant.
        level: decomposition level; ``None`` means ``dwt_max_level``. Deeper levels warn
            (as PyWavelets) and proceed; negative levels raise.
        axis: axis to transform.

    Returns:
        ``[cA_n, cD_n, ..., cD_1]``.

    Example:

    >>> import numpy as np
    >>> [c.shape[0] for c in wavedec(np.zeros(1000), "db4", level=3)]
    [125, 125, 250, 500]
    """
    x = to_tensor(data)
    b = _plan.bank(wavelet)
    mode = validate_mode(mode)
    ax = norm_axis(axis, x.shape.rank)
    n = K.static_len(x, ax)
    level = check_level([n], [b.length], level)

    def decompose(ts, axes):
        return _decompose(ts[0], level, lambda a: analysis(a, axes[0], b, mode))

    def run(t):
        return in_fast_layout([t], (ax,), decompose, [b])

    return run_real(run, [x], ("wavedec", b, mode, ax, level))


def _coefficient_list(coeffs, what):
    if not isinstance(coeffs, (list, tuple)) or len(coeffs) < 1:
        raise ValueError(f"`coeffs` must be a non-empty list {what}.")
    return list(coeffs)


@_no_autograph
def waverec(coeffs, wavelet, mode="periodization", axis=-1):
    """Multi-level inverse 1-D DWT; equals ``pywt.waverec``.

    Args:
        coeffs: ``[cA_n, cD_n, ..., cD_1]`` as returned by ``wavedec``.
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        mode: signal-extension mode used for the forward transform.
        axis: axis along which the coefficients lie.

    Returns:
        The reconstructed signal. As in PyWavelets, an approximation one sample longer than
        the next details is trimmed, so odd lengths reconstruct to ``n + 1`` samples in
        periodization mode (slice the result to ``n``).

    Example:

    >>> import numpy as np
    >>> x = np.arange(16.0)
    >>> bool(np.allclose(waverec(wavedec(x, "db2", level=2), "db2"), x))
    True
    """
    coeffs = _coefficient_list(coeffs, "[cA_n, cD_n, ..., cD_1]")
    for d in coeffs[1:]:
        if isinstance(d, (dict, list, tuple)):
            raise ValueError(
                f"Unexpected detail coefficient type: {type(d).__name__}. Detail coefficients "
                "must be arrays as returned by wavedec; with pywt.array_to_coeffs or "
                "pywt.unravel_coeffs, pass output_format='wavedec'."
            )
    b = _plan.bank(wavelet)
    mode = validate_mode(mode)
    ts = [None if c is None else to_tensor(c, "coefficients") for c in coeffs]
    if all(t is None for t in ts):
        raise ValueError("`coeffs` holds no arrays.")
    ts = common_dtype(ts)
    ref = next(t for t in ts if t is not None)
    ax = norm_axis(axis, ref.shape.rank)
    if len(ts) == 1:
        return ts[0]

    def reconstruct(cs, axes):
        a = cs[0]
        for d in cs[1:]:
            if a is not None and d is not None:
                a = _trim_to(a, d, axes[0])
            a = synthesis(a, d, axes[0], b, mode)
        return a

    def run(*cs):
        return in_fast_layout(list(cs), (ax,), reconstruct, [b], inverse=True)

    return run_real(run, ts, ("waverec", b, mode, ax))


@_no_autograph
def wavedec2(data, wavelet, mode="periodization", level=None, axes=(-2, -1)):
    """Multi-level 2-D DWT; equals ``pywt.wavedec2(data, wavelet, mode, level, axes)``.

    Args:
        data: input of rank >= 2 (see ``dwt2``).
        wavelet: discrete wavelet name or ``pywt.Wavelet``, or one per axis.
        mode: signal-extension mode, or one per axis.
        level: decomposition level; ``None`` means the smallest ``dwt_max_level`` of the
            two axes. Deeper levels warn and proceed.
        axes: the two (different) axes to transform.

    Returns:
        ``[cA_n, (cH_n, cV_n, cD_n), ..., (cH_1, cV_1, cD_1)]``.

    Example:

    >>> import numpy as np
    >>> c = wavedec2(np.zeros((2, 32, 48)), "haar", level=2)
    >>> tuple(c[0].shape), tuple(c[1][0].shape), tuple(c[2][0].shape)
    ((2, 8, 12), (2, 8, 12), (2, 16, 24))
    """
    x = to_tensor(data)
    axes = norm_axes2(axes, x.shape.rank, unique=True)
    banks, modes = banks_and_modes(wavelet, mode, 2)
    sizes = [K.static_len(x, a) for a in axes]
    level = check_level(sizes, [b.length for b in banks], level)

    def decompose(ts, ax):
        return _decompose(ts[0], level, lambda a: dwt2_impl(a, ax, banks, modes))

    def run(t):
        return in_fast_layout([t], axes, decompose, banks)

    return run_real(run, [x], ("wavedec2", *banks, *modes, axes, level))


@_no_autograph
def waverec2(coeffs, wavelet, mode="periodization", axes=(-2, -1)):
    """Multi-level inverse 2-D DWT; equals ``pywt.waverec2``.

    Args:
        coeffs: ``[cA_n, (cH_n, cV_n, cD_n), ..., (cH_1, cV_1, cD_1)]``.
        wavelet: discrete wavelet name or ``pywt.Wavelet``, or one per axis.
        mode: signal-extension mode used for the forward transform, or one per axis.
        axes: the two transformed axes.

    Returns:
        The reconstructed array (odd sizes come back one sample longer in periodization
        mode, as in PyWavelets).

    Example:

    >>> import numpy as np
    >>> x = np.random.default_rng(0).random((8, 8))
    >>> bool(np.allclose(waverec2(wavedec2(x, "db1", level=2), "db1"), x))
    True
    """
    coeffs = _coefficient_list(coeffs, "[cA_n, (cH_n, cV_n, cD_n), ...]")
    flat = [coeffs[0]]
    for det in coeffs[1:]:
        if not isinstance(det, (list, tuple)) or len(det) != 3:
            raise ValueError(
                "Each detail entry of `coeffs` must be a 3-tuple (cH, cV, cD), got "
                f"{type(det).__name__}."
            )
        flat.extend(det)
    ts = coerce_many(flat)
    ref = next(t for t in ts if t is not None)
    axes = norm_axes2(axes, ref.shape.rank, unique=True)
    banks, modes = banks_and_modes(wavelet, mode, 2)
    if len(ts) == 1:
        return ts[0]
    for i in range(1, len(ts), 3):
        shapes = {tuple(t.shape.as_list()) for t in ts[i : i + 3] if t is not None}
        if len(shapes) > 1:
            raise ValueError(f"All detail shapes of one level must match, got {shapes}.")

    def reconstruct(cs, axes):
        a = cs[0]
        for i in range(1, len(cs), 3):
            det = cs[i : i + 3]
            d_ref = next((d for d in det if d is not None), None)
            if a is not None and d_ref is not None:
                for ax in axes:
                    a = _trim_to(a, d_ref, ax)
            a = idwt2_impl(a, det, axes, banks, modes)
        return a

    def run(*cs):
        return in_fast_layout(list(cs), axes, reconstruct, banks, inverse=True)

    return run_real(run, ts, ("waverec2", *banks, *modes, axes))
