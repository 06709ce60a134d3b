"""The orthonormal DCT-II: the one implementation used by spectral truncation and by
weight compression.

* ``dct_matrix(n)``: the ``(n, n)`` orthonormal DCT-II matrix ``D`` (``X = D x``,
  ``x = D.T X``), equal to ``scipy.fft.dct(np.eye(n), norm="ortho", axis=0)``.
* ``dct(x, axis, inverse=False)``: along one axis of a tensor (``tf.signal.dct``).
* ``dct2`` / ``idct2`` / ``lowpass_dct2``: over the spatial axes of channels-last image
  batches, with two implementations chosen by measurement (``benchmarks/bench_spectral.py``;
  an earlier busy-machine measurement whose result file was not kept, to be repeated on a
  quiet machine):

  - ``"matmul"``: multiply by the DCT matrix along H and W (plain 2-D GEMMs); on the
    project's 2-core CPU it was faster than the FFT path for 32x32 to 128x128 images.
  - ``"fft"``: ``tf.signal.dct`` (FFT-based) along each axis; N log N per row, so it wins
    for large images (at 256x256 each won one of two runs).

  ``"auto"`` (the default) picks ``"matmul"`` when both spatial sizes are at most
  ``MATMUL_MAX_SIZE`` and ``"fft"`` otherwise. Both are differentiable, usable inside
  ``tf.function``/XLA, and equal to ``scipy.fft.dctn(x, axes=(1, 2), norm="ortho")`` to
  float32 rounding.

Example:

>>> import numpy as np
>>> d = dct_matrix(8, "float64")
>>> bool(np.allclose(d @ d.T, np.eye(8)))
True
"""

import functools

import numpy as np
import tensorflow as tf

__all__ = ["dct", "dct2", "idct2", "lowpass_dct2", "dct_matrix", "DCT_METHODS", "MATMUL_MAX_SIZE"]

DCT_METHODS = ("auto", "matmul", "fft")

#: Largest spatial size for which "auto" uses the matrix product. Measured on the busy 2-core
#: CPU (benchmarks/bench_spectral.py): matmul won up to 128, 256 was a toss-up.
MATMUL_MAX_SIZE = 128


@functools.lru_cache(maxsize=64)
def _dct_matrix_np(n):
    k = np.arange(n, dtype=np.float64)[:, None]
    i = np.arange(n, dtype=np.float64)[None, :]
    m = np.sqrt(2.0 / n) * np.cos(np.pi * (2.0 * i + 1.0) * k / (2.0 * n))
    m[0, :] /= np.sqrt(2.0)
    m.setflags(write=False)
    return m


def dct_matrix(n, dtype="float32"):
    """Orthonormal DCT-II matrix `D` of size `(n, n)`: `X = D @ x`, `x = D.T @ X`.

    Args:
        n: transform length (positive int).
        dtype: NumPy dtype of the returned array.

    Returns:
        A `(n, n)` NumPy array with `D @ D.T == I`.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"dct_matrix: n must be a positive integer, got {n}.")
    return _dct_matrix_np(n).astype(dtype)


def dct(x, axis, inverse=False):
    """Orthonormal DCT-II (or its inverse, DCT-III) of ``x`` along ``axis``.

    Equal to ``scipy.fft.dct(x, type=2, norm="ortho", axis=axis)`` (``idct`` for
    ``inverse=True``). float32/float64 tensors.
    """
    rank = len(x.shape)
    axis = axis % rank
    perm = list(range(rank))
    perm[axis], perm[-1] = perm[-1], perm[axis]
    y = tf.transpose(x, perm) if axis != rank - 1 else x
    y = (tf.signal.idct if inverse else tf.signal.dct)(y, type=2, norm="ortho")
    return tf.transpose(y, perm) if axis != rank - 1 else y


def _check_method(method):
    if method not in DCT_METHODS:
        raise ValueError(
            f"Unknown DCT method {method!r}; valid choices: {', '.join(DCT_METHODS)}."
        )


def _check_rank(x, name):
    rank = x.shape.rank
    if rank != 4:
        raise ValueError(
            f"{name} expects a channels-last image batch of rank 4 "
            f"(batch, height, width, channels); got rank {rank} with shape {x.shape}."
        )


def _resolve_method(method, h, w):
    _check_method(method)
    if method != "auto":
        return method
    if h is None or w is None:
        return "fft"  # the matrix needs static sizes
    return "matmul" if max(h, w) <= MATMUL_MAX_SIZE else "fft"


def _as_float(x):
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    return x


# The helpers below work on a channels-first (B, C, H, W) layout so a forward-mask-inverse
# pipeline pays for one transpose in and one out instead of four.


def _to_cf(x):
    return tf.transpose(x, [0, 3, 1, 2])


def _to_cl(x):
    return tf.transpose(x, [0, 2, 3, 1])


def _gemm_last_axis(x, d, inverse):
    """Applies `d` (or `d.T` for the inverse) along the last axis of `x`."""
    n = x.shape[-1]
    rows = tf.reshape(x, [-1, n])
    # forward: y = x @ D^T; inverse: y = x @ D.
    out = tf.matmul(rows, d, transpose_b=not inverse)
    return tf.reshape(out, tf.shape(x))


def _dct2_cf(x, method, inverse=False):
    """DCT-II (or its inverse) over the last two axes of a (B, C, H, W) tensor."""
    h, w = x.shape[-2], x.shape[-1]
    method = _resolve_method(method, h, w)
    if method == "matmul":
        if h is None or w is None:
            raise ValueError(
                "DCT method 'matmul' needs static height and width; "
                f"got shape {x.shape}. Use method='fft' or 'auto'."
            )
        # float16/bfloat16 inputs are transformed in float32 by the callers.
        dh = tf.constant(dct_matrix(h, x.dtype.as_numpy_dtype))
        dw = tf.constant(dct_matrix(w, x.dtype.as_numpy_dtype))
        # Plain 2-D GEMMs on (rows, length) views: a broadcast batched matmul of (n, n)
        # against (B, 1, H, W) crashes oneDNN in TF 2.21 (C = 1).
        y = _gemm_last_axis(x, dw, inverse)
        y = tf.linalg.matrix_transpose(y)
        y = _gemm_last_axis(y, dh, inverse)
        return tf.linalg.matrix_transpose(y)
    fn = tf.signal.idct if inverse else tf.signal.dct
    y = fn(x, type=2, norm="ortho")  # over W
    y = tf.linalg.matrix_transpose(y)
    y = fn(y, type=2, norm="ortho")  # over H
    return tf.linalg.matrix_transpose(y)


def _compute_dtype(x):
    # tf.signal.dct only supports float32/float64; low-precision inputs are transformed in
    # float32 and cast back.
    if x.dtype in (tf.float16, tf.bfloat16):
        return tf.float32
    return x.dtype


def _dct2_channels_last(x, method, inverse, name):
    _check_method(method)
    x = _as_float(x)
    _check_rank(x, name)
    out_dtype = x.dtype
    x = tf.cast(x, _compute_dtype(x))
    y = _to_cl(_dct2_cf(_to_cf(x), method, inverse=inverse))
    return tf.cast(y, out_dtype)


def dct2(x, method="auto"):
    """Orthonormal 2-D DCT-II over height and width of a channels-last batch.

    Equal to `scipy.fft.dctn(x, type=2, axes=(1, 2), norm="ortho")`.

    Args:
        x: tensor of shape `(batch, height, width, channels)`; integer inputs are cast to
            float32.
        method: `"auto"`, `"matmul"` or `"fft"` (see the module docstring).

    Returns:
        The DCT coefficients, same shape and floating dtype as `x`.

    Example:

    >>> x = tf.random.normal((2, 8, 8, 3))
    >>> y = dct2(x)
    >>> float(tf.reduce_max(tf.abs(idct2(y) - x))) < 1e-5
    True
    """
    return _dct2_channels_last(x, method, inverse=False, name="dct2")


def idct2(x, method="auto"):
    """Inverse of `dct2` (orthonormal DCT-III) over height and width.

    Equal to `scipy.fft.idctn(x, type=2, axes=(1, 2), norm="ortho")`.

    Args:
        x: DCT coefficients of shape `(batch, height, width, channels)`.
        method: `"auto"`, `"matmul"` or `"fft"`.

    Returns:
        The reconstructed images, same shape and dtype as `x`.

    Example:

    >>> x = tf.random.normal((2, 8, 8, 3))
    >>> float(tf.reduce_max(tf.abs(idct2(dct2(x)) - x))) < 1e-5
    True
    """
    return _dct2_channels_last(x, method, inverse=True, name="idct2")


def lowpass_dct2(x, mask, method="auto"):
    """`idct2(dct2(x) * mask)` with a (H, W) mask broadcast over batch and channels.

    Keeps the channels-first layout between the forward and inverse transforms (one
    transpose in, one out).

    Args:
        x: tensor `(batch, height, width, channels)`.
        mask: tensor `(height, width)` of DCT-domain gains.
        method: `"auto"`, `"matmul"` or `"fft"`.

    Returns:
        Filtered images, same shape and dtype as `x`.
    """
    _check_method(method)
    x = _as_float(x)
    _check_rank(x, "lowpass_dct2")
    out_dtype = x.dtype
    cdt = _compute_dtype(x)
    xc = _to_cf(tf.cast(x, cdt))
    coeffs = _dct2_cf(xc, method) * tf.cast(mask, cdt)
    y = _to_cl(_dct2_cf(coeffs, method, inverse=True))
    return tf.cast(y, out_dtype)
