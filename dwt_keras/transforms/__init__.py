"""Discrete wavelet transforms (and the DCT) for TensorFlow / Keras 3, shaped like PyWavelets.

The functions mirror PyWavelets (``pywt``): the same names, signatures and argument order,
the same coefficient layout, values, shapes and dtypes, for every discrete wavelet and every
signal-extension mode, tested against PyWavelets and through PyWavelets' own test-suite
(``tests/test_pywt_suite.py``). Differences (the default mode is ``periodization``; results
are tensors; ...) are listed in the README. They

* run eagerly, inside ``tf.function``, ``tf.function(jit_compile=True)``, ``tf.data`` and
  Keras layers, each with a formulation that is fast there (``_kernels``),
* use O(n) memory and O(n * filter_len) time per level along every axis, in every mode,
* accept any number of leading dimensions, including an unknown batch size,
* are differentiable, with the adjoint filter bank as explicit gradient.

Modules: ``_wavelets`` (wavelets, modes, levels), ``_plan`` (boundary plans, NumPy),
``_kernels`` (TensorFlow ops along one axis), ``_dwt`` (single level), ``_multilevel``,
``dct`` (the orthonormal DCT-II), ``matrix`` (explicit transform matrices).

Example:

>>> import numpy as np
>>> from dwt_keras.transforms import wavedec2, waverec2
>>> x = np.random.rand(8, 64, 64).astype("float32")
>>> coeffs = wavedec2(x, "db4", level=3)          # periodization by default
>>> [tuple(coeffs[0].shape)] + [tuple(c[0].shape) for c in coeffs[1:]]
[(8, 8, 8), (8, 8, 8), (8, 16, 16), (8, 32, 32)]
>>> float(abs(waverec2(coeffs, "db4") - x).numpy().max()) < 1e-5
True
"""

from dwt_keras.transforms._dwt import dwt, dwt2, idwt, idwt2
from dwt_keras.transforms._multilevel import wavedec, wavedec2, waverec, waverec2
from dwt_keras.transforms._plan import DENSE_MAX_LEN
from dwt_keras.transforms._wavelets import (
    DISCRETE_WAVELETS,
    MODES,
    dwt_coeff_len,
    dwt_max_level,
    get_wavelet,
    validate_mode,
)

__all__ = [
    "MODES",
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
