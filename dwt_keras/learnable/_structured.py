"""Shared plumbing of the structured linear layers (`WaveletDense`, `FastfoodDense`).

Both layers compute `y = S T(pad(B x))[:units] (+ bias)` for a structured square transform `T`
of width `self.width >= max(input_dim, units)`; only `T` differs. The base class holds the width
scheme (scale, zero-pad, truncate, scale, bias), the per-pass cast of the weights (`prepare`) and
a `call` that accepts any leading axes.
"""

import keras
import numpy as np
from keras import ops


def check_positive_int(name, value, minimum=1):
    """`int(value)` if it is an integer >= `minimum`, else a `ValueError` naming the argument."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return int(value)


class StructuredDense(keras.layers.Layer):
    """Base class: a structured linear map between `(batch, input_dim)` and `(batch, units)`.

    Subclasses build `self.width`, `self._in_dim`, the weights `input_scale` (length
    `input_dim`), `output_scale` (length `units`) and `bias` (or `None`), list their other
    per-pass weights in `_prepared_weights`, and implement `transform(x, prepared)` (the square
    `width -> width` map). Not registered: only the concrete layers are serialised.
    """

    # Names of weights, besides the scales and the bias, that `prepare` casts once per pass.
    _prepared_weights = ()

    def prepare(self, dtype=None):
        """The weight-derived tensors of one forward pass (cast scales and bias).

        They depend on the weights only, so a recurrent cell computes them once per sequence
        (outside the time loop) and hands them to `apply` at every step.
        """
        dtype = dtype or self.compute_dtype
        names = ("input_scale", "output_scale") + tuple(self._prepared_weights)
        prepared = {name: ops.cast(getattr(self, name), dtype) for name in names}
        if self.bias is not None:
            prepared["bias"] = ops.cast(self.bias, dtype)
        return prepared

    def transform(self, x, prepared):
        """The structured `(batch, width) -> (batch, width)` part of the map."""
        raise NotImplementedError

    def apply(self, inputs, prepared):
        """The layer's linear map on `(batch, input_dim)` inputs, given `prepare()`'s tensors."""
        x = inputs * prepared["input_scale"]
        if self.width > self._in_dim:
            x = ops.pad(x, [[0, 0], [0, self.width - self._in_dim]])
        y = self.transform(x, prepared)
        if self.units < self.width:
            y = y[:, : self.units]
        y = y * prepared["output_scale"]
        if "bias" in prepared:
            y = y + prepared["bias"]
        return y

    def call(self, inputs):
        x = ops.convert_to_tensor(inputs, dtype=self.compute_dtype)
        lead_shape = ops.shape(x)[:-1]
        y = self.apply(ops.reshape(x, (-1, self._in_dim)), self.prepare(x.dtype))
        return ops.reshape(y, tuple(lead_shape) + (self.units,))

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)
