"""Fastfood linear layer (Le, Sarlos & Smola 2013; Yang et al., "Deep Fried Convnets" 2015).

`y = S H G P H B x` with `H` the orthonormal Walsh-Hadamard transform (`H_n / sqrt(n)`), `B`, `G`,
`S` learnable diagonals and `P` a fixed permutation drawn from a seed. The transform runs in
O(n log n) with reshapes, additions and subtractions; no Hadamard matrix is built.
"""

import keras
import numpy as np
from keras import ops

from dwt_keras.learnable._structured import StructuredDense
from dwt_keras.learnable._structured import check_positive_int as _check_positive_int


def next_power_of_two(n):
    """The smallest power of two >= n."""
    return 1 << (int(n) - 1).bit_length()


def fast_walsh_hadamard(x, normalize=True):
    """Walsh-Hadamard transform along the last axis, in Sylvester (natural) order.

    Equal to `x @ scipy.linalg.hadamard(n)` (divided by `sqrt(n)` when `normalize`), computed in
    `log2(n)` butterfly stages of O(n) each.

    Args:
        x: a tensor of shape `(batch, n)`, `n` a power of two.
        normalize: divide by `sqrt(n)` so the transform is orthonormal (and its own inverse).

    Returns:
        A tensor of the same shape.
    """
    n = x.shape[-1]
    if n is None or n & (n - 1):
        raise ValueError(f"fast_walsh_hadamard needs a static power-of-two length, got {n}.")
    y = x
    half = 1
    while half < n:
        # Stage with stride `half`: H_2 applied to every pair (i, i + half) inside blocks of 2*half.
        y = ops.reshape(y, (-1, n // (2 * half), 2, half))
        a = y[:, :, 0, :]
        b = y[:, :, 1, :]
        y = ops.reshape(ops.stack([a + b, a - b], axis=2), (-1, n))
        half *= 2
    if normalize:
        y = y * ops.cast(1.0 / np.sqrt(n), y.dtype)
    return y


@keras.saving.register_keras_serializable(package="dwt_keras")
class FastfoodDense(StructuredDense):
    """Fastfood linear layer: `y = S H G P H B x` with an O(n log n) Walsh-Hadamard transform.

    Width scheme: the layer works at width `n = next_power_of_two(max(input_dim, units))`. The
    input is scaled by `B` (length `input_dim`) and zero-padded to `n`; `P` permutes and `G`
    scales all `n` entries between the two (orthonormal) Hadamard transforms; the result is
    truncated to its first `units` entries and scaled by `S` (length `units`). Parameters:
    `input_dim + n + units` (+ `units` with `use_bias`), i.e. `3n` when `input_dim = units = n`.
    Scales that would only ever multiply padding zeros are not created.

    Initialisation (Fastfood): `B` random signs, `G` standard normal, `S` ones, all seeded, so the
    initial matrix is a random Gaussian-like matrix with approximately norm-preserving rows.

    Args:
        units: output width.
        use_bias: add a learnable bias of length `units`.
        seed: integer seed of the permutation and of the random initial `B` and `G`; `None` draws
            one at construction and stores it in the config.
        bias_initializer: initializer of the bias.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        inputs: a tensor of shape `(..., input_dim)`.

    Example:

    ```python
    layer = FastfoodDense(1024, seed=0)
    y = layer(np.random.rand(4, 1024).astype("float32"))  # 3 * 1024 parameters
    ```
    """

    def __init__(self, units, use_bias=False, seed=0, bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        self.units = _check_positive_int("units", units)
        self.use_bias = bool(use_bias)
        if seed is None:
            seed = int(np.random.default_rng().integers(0, 2**31 - 1))
        self.seed = _check_positive_int("seed", seed, minimum=0)
        self.bias_initializer = keras.initializers.get(bias_initializer)

    def build(self, input_shape):
        in_dim = input_shape[-1]
        if in_dim is None:
            raise ValueError("FastfoodDense needs a known last input dimension.")
        self._in_dim = int(in_dim)
        self.width = next_power_of_two(max(self._in_dim, self.units))
        rng = np.random.default_rng(self.seed)
        self.permutation = rng.permutation(self.width).astype("int32")
        signs = rng.choice(np.array([-1.0, 1.0], dtype=np.float32), size=self._in_dim)
        gauss = rng.standard_normal(self.width).astype("float32")
        self.input_scale = self.add_weight(
            name="input_scale", shape=(self._in_dim,), initializer=keras.initializers.Constant(signs)
        )
        self.middle_scale = self.add_weight(
            name="middle_scale", shape=(self.width,), initializer=keras.initializers.Constant(gauss)
        )
        self.output_scale = self.add_weight(name="output_scale", shape=(self.units,), initializer="ones")
        if self.use_bias:
            self.bias = self.add_weight(name="bias", shape=(self.units,), initializer=self.bias_initializer)
        else:
            self.bias = None

    _prepared_weights = ("middle_scale",)

    def transform(self, x, prepared):
        """`H G P H x` on a `(batch, width)` tensor, given `prepare()`'s tensors."""
        x = fast_walsh_hadamard(x)
        x = ops.take(x, self.permutation, axis=-1) * prepared["middle_scale"]
        return fast_walsh_hadamard(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "use_bias": self.use_bias,
                "seed": self.seed,
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            }
        )
        return config
