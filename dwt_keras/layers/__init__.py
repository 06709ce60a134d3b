"""Keras layers of dwt_keras."""

from dwt_keras.layers.dwt2d import DWT2D, IDWT2D

__all__ = ["DWT2D", "IDWT2D"]
