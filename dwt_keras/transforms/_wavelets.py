"""Wavelets, signal-extension modes and level helpers (NumPy / PyWavelets only).

The validation that every transform shares: which filter bank a ``wavelet`` argument names,
which extension a ``mode`` names (PyWavelets' names and its integer ``pywt.Modes``
constants), per-axis tuples of either for the 2-D functions, and PyWavelets' level rules
(``dwt_max_level``, ``dwt_coeff_len``, the too-deep warning). Error types follow PyWavelets:
``TypeError`` where it raises ``TypeError`` (a mode that is neither a name nor an int),
``ValueError`` for unknown names and values.
"""

from __future__ import annotations

import difflib
import numbers
import warnings
from collections.abc import Iterable

import numpy as np
import pywt

__all__ = [
    "MODES",
    "DISCRETE_WAVELETS",
    "get_wavelet",
    "validate_mode",
    "dwt_max_level",
    "dwt_coeff_len",
]

#: Signal-extension modes, with PyWavelets' names and semantics. ``periodization`` is this
#: library's default: it keeps ``ceil(n / 2)`` coefficients per level (no growth) and, for
#: orthogonal wavelets, is an orthogonal transform.
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

#: PyWavelets' integer mode constants (``pywt.Modes.symmetric``, ...) and their names.
_MODE_CONSTANTS = {int(getattr(pywt.Modes, name)): name for name in pywt.Modes.modes}

DISCRETE_WAVELETS = tuple(pywt.wavelist(kind="discrete"))
_CONTINUOUS_WAVELETS = tuple(pywt.wavelist(kind="continuous"))
_CONTINUOUS_FAMILIES = ("morl", "mexh", "gaus", "cgau", "cmor", "shan", "fbsp")


def _discrete_summary():
    return (
        "haar, db1-db38, sym2-sym20, coif1-coif17, bior1.1-bior6.8, "
        "rbio1.1-rbio6.8, dmey (full list: pywt.wavelist(kind='discrete'))"
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


def get_wavelet(wavelet):
    """Returns the ``pywt.Wavelet`` for a name or object, validating it.

    Args:
        wavelet: a discrete wavelet name known to PyWavelets (``"haar"``, ``"db4"``,
            ``"sym8"``, ``"coif2"``, ``"bior2.2"``, ``"rbio3.1"``, ``"dmey"``, ...), a
            ``pywt.Wavelet`` (custom filter banks work), or a sequence of four filters
            ``(dec_lo, dec_hi, rec_lo, rec_hi)``.

    Returns:
        A ``pywt.Wavelet``.

    Raises:
        ValueError: for continuous wavelets (they have no filter bank), unknown names and
            malformed filter banks; the message lists the valid choices.

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
    if isinstance(wavelet, (list, tuple)) and len(wavelet) == 4 and not all(
        isinstance(w, (str, pywt.Wavelet)) for w in wavelet
    ):
        try:
            bank = [np.asarray(f, dtype=np.float64).ravel() for f in wavelet]
        except (TypeError, ValueError) as err:
            raise ValueError(
                "A filter bank must be four numeric sequences (dec_lo, dec_hi, rec_lo, rec_hi)."
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
    low = name.lower()
    if low in DISCRETE_WAVELETS:
        return pywt.Wavelet(low)
    if (
        low in _CONTINUOUS_WAVELETS
        or low.startswith(_CONTINUOUS_FAMILIES)
        or low in ("meyer", "morlet", "mexican_hat", "mexicanhat")
    ):
        raise ValueError(_continuous_message(name))
    close = difflib.get_close_matches(low, DISCRETE_WAVELETS, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown wavelet {wavelet!r}.{hint} Valid discrete wavelets: {_discrete_summary()}."
    )


def validate_mode(mode):
    """Returns the canonical name of a signal-extension mode.

    Args:
        mode: one of ``MODES`` (case-insensitive), or one of PyWavelets' integer constants
            (``pywt.Modes.periodization``, ...).

    Returns:
        The mode's name, e.g. ``"symmetric"``.

    Raises:
        TypeError: if ``mode`` is neither a string nor an int (as PyWavelets).
        ValueError: for an unknown name or constant; the message lists ``MODES``.

    Example:

    >>> validate_mode("Symmetric"), validate_mode(pywt.Modes.periodization)
    ('symmetric', 'periodization')
    """
    if isinstance(mode, str):
        name = mode.strip().lower()
        if name in MODES:
            return name
    elif isinstance(mode, numbers.Integral) and not isinstance(mode, bool):
        if int(mode) in _MODE_CONSTANTS:
            return _MODE_CONSTANTS[int(mode)]
    else:
        raise TypeError(
            f"`mode` must be a mode name or a pywt.Modes constant, got "
            f"{type(mode).__name__}. Valid modes: {', '.join(MODES)}."
        )
    raise ValueError(
        f"Unknown signal-extension mode {mode!r}. Valid modes: {', '.join(MODES)}."
    )


def per_axis(value, n_axes, what, convert):
    """One converted value per transformed axis, from a value or a sequence of them.

    As PyWavelets' ``_wavelets_per_axis`` / ``_modes_per_axis``: a single value applies to
    every axis; a sequence gives one per axis (length 1 or ``n_axes``).
    """
    single = isinstance(value, (str, numbers.Integral, pywt.Wavelet))
    if what == "wavelet" and isinstance(value, (list, tuple)) and len(value) == 4 and not all(
        isinstance(v, (str, pywt.Wavelet)) for v in value
    ):
        single = True  # a filter bank (dec_lo, dec_hi, rec_lo, rec_hi)
    if single:
        return [convert(value)] * n_axes
    if not isinstance(value, Iterable):
        if what == "mode":
            return [convert(value)] * n_axes  # raises the TypeError of validate_mode
        raise ValueError(f"`{what}` must be a {what}, or one {what} per axis; got {value!r}.")
    values = list(value)
    if len(values) == 1:
        return [convert(values[0])] * n_axes
    if len(values) != n_axes:
        raise ValueError(
            f"The number of {what}s must match the number of axes to be transformed: "
            f"got {len(values)} for {n_axes} axes."
        )
    return [convert(v) for v in values]


def _filter_len(wavelet):
    if isinstance(wavelet, numbers.Integral) and not isinstance(wavelet, bool):
        if wavelet < 1:
            raise ValueError(f"Filter length must be >= 1, got {wavelet}.")
        return int(wavelet)
    return get_wavelet(wavelet).dec_len


def dwt_max_level(data_len, filter_len):
    """Maximum useful decomposition level, as ``pywt.dwt_max_level``.

    Args:
        data_len: signal length (int), or a shape tuple (the minimum is used).
        filter_len: wavelet name, ``pywt.Wavelet`` or filter length (int).

    Returns:
        ``floor(log2(data_len / (filter_len - 1)))``, at least 0.

    Example:

    >>> dwt_max_level(1024, "db4")
    7
    """
    flen = _filter_len(filter_len)
    if isinstance(data_len, (tuple, list)):
        data_len = min(data_len)
    return pywt.dwt_max_level(int(data_len), flen)


def dwt_coeff_len(data_len, filter_len, mode="periodization"):
    """Number of coefficients of a single-level DWT, as ``pywt.dwt_coeff_len``.

    Example:

    >>> dwt_coeff_len(100, "db4", "symmetric"), dwt_coeff_len(100, 8, "periodization")
    (53, 50)
    """
    return pywt.dwt_coeff_len(int(data_len), _filter_len(filter_len), validate_mode(mode))


def check_level(sizes, dec_lens, level):
    """PyWavelets' level rule: ``None`` is the maximum; deeper warns; negative raises."""
    max_level = min(pywt.dwt_max_level(int(s), int(d)) for s, d in zip(sizes, dec_lens))
    if level is None:
        return max_level
    if isinstance(level, bool) or not isinstance(level, numbers.Integral):
        raise ValueError(f"`level` must be a non-negative int or None, got {level!r}.")
    level = int(level)
    if level < 0:
        raise ValueError(
            f"Level value of {level} is too low: `level` must be >= 0 (or None for the maximum)."
        )
    if level > max_level:
        warnings.warn(
            f"Level value of {level} is too high: all coefficients will experience "
            f"boundary effects (dwt_max_level={max_level} for these sizes).",
            UserWarning,
            stacklevel=4,
        )
    return level
