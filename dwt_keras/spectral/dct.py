"""Orthonormal 2-D DCT-II over the spatial axes of channels-last image batches.

The implementation lives in ``dwt_keras.transforms.dct`` (the project's one DCT, shared with
weight compression); this module keeps the spectral package's public names.
"""

from dwt_keras.transforms.dct import (  # noqa: F401
    DCT_METHODS,
    MATMUL_MAX_SIZE,
    dct2,
    dct_matrix,
    idct2,
    lowpass_dct2,
)

__all__ = ["dct2", "idct2", "dct_matrix", "DCT_METHODS", "MATMUL_MAX_SIZE"]
