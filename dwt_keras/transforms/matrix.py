"""Explicit transform matrices: the one builder of DWT and DCT analysis/synthesis matrices.

Weight compression multiplies small kernels by these instead of running the filter bank
(a few large GEMMs per optimizer step beat many small ops). A matrix is ``n x n`` by
definition, so callers bound ``n`` (``compression.bases.MATRIX_MAX_LEN``); the transforms
themselves never build one for long axes.

Example:

>>> import numpy as np
>>> a, s = dwt_matrices(16, "db2", "periodization", level=2)
>>> bool(np.allclose(s @ a, np.eye(16)))
True
"""

from __future__ import annotations

import functools

import numpy as np

from dwt_keras.transforms import dct as _dct
from dwt_keras.transforms import _multilevel

__all__ = ["dwt_matrices", "dct_matrices"]


@functools.lru_cache(maxsize=256)
def _dwt_matrices(n, wavelet, mode, level):
    eye = np.eye(n)
    coeffs = _multilevel.wavedec(eye, wavelet, mode=mode, level=level, axis=0)
    a = np.concatenate([np.asarray(c) for c in coeffs], axis=0)
    sizes = np.cumsum([int(c.shape[0]) for c in coeffs])[:-1]
    parts = np.split(np.eye(a.shape[0]), sizes, axis=0)
    s = np.asarray(_multilevel.waverec(parts, wavelet, mode=mode, axis=0))[:n]
    a.setflags(write=False)
    s.setflags(write=False)
    return a, s


def dwt_matrices(n, wavelet, mode="periodization", level=1):
    """``(A, S)`` float64 of a ``level``-level 1-D DWT of length-``n`` signals.

    ``c = A x`` is ``wavedec(x, wavelet, mode, level)`` concatenated in wavedec's order
    ``[cA_n, cD_n, ..., cD_1]``, and ``x = S c`` is ``waverec`` (cropped to ``n``).

    Args:
        n: signal length.
        wavelet: wavelet name (hashable; ``pywt.Wavelet`` objects by name).
        mode: signal-extension mode.
        level: number of levels (1: one ``dwt`` level, ``[cA; cD]``).
    """
    return _dwt_matrices(int(n), wavelet, mode, int(level))


def dct_matrices(n):
    """``(D, D.T)`` float64: the orthonormal DCT-II of length ``n`` and its inverse."""
    d = _dct.dct_matrix(n, "float64")
    return d, d.T
