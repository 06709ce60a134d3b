"""Positive semi-definite multi-scale attention kernel for wavelet tokens.

The kernel between two wavelet tokens t = (j, o, p) and t' = (j', o', p') is the
Schur (element-wise) product of three kernels, each positive semi-definite (PSD)
and strictly positive:

    K(t, t') = k_scale(j, j') * k_orient(o, o') * k_spatial(p, p')

    k_scale(j, j')    = exp(-(j - j')^2 / (2 s^2))              (RBF over the level)
    k_orient(o, o')   = (1 - rho) [o == o'] + rho,  rho in (0, 1)  ((1-rho) I + rho 11^T)
    k_spatial(p, p')  = exp(-|p - p'|^2 / (2 l^2))              (RBF, or Gibbs with a
                                                                 bandwidth per level)

By the Schur product theorem K is PSD, and every entry is > 0 so log K is finite.
K enters attention as an ADDITIVE log-bias, softmax(q.k / sqrt(d) + log K), i.e.
the attention weights are the softmax weights re-weighted by K and renormalised
(multiplying the logits by K instead, as a public version did, gives far tokens a
logit of 0 -- uniform weight -- instead of suppressing them).

Two equivalent ways to apply the bias are provided:

* ``log_kernel`` returns one (heads, N, N) log-kernel that is broadcast over the
  batch (never a batch x heads x N x N tensor);
* ``fold_features`` returns extra query/key features (9 per head for RBF) whose
  dot product equals log K up to a per-query constant, which the softmax cancels:
  -|p - p'|^2 / (2 l^2) = p.p'/l^2 - |p'|^2/(2 l^2) - |p|^2/(2 l^2), the same for the
  level, and the 4x4 orientation table is bilinear in one-hot codes. Any fused
  attention kernel (``keras.ops.dot_product_attention`` without a bias) then runs
  the kernelised attention.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

SPATIAL_KERNELS = ("rbf", "gibbs")
N_ORIENTATIONS = 4  # A, H, V, D


def _inverse_softplus(x):
    x = np.asarray(x, dtype="float64")
    return x + np.log(-np.expm1(-x))


def default_spatial_bandwidths(num_heads, low=0.2, high=1.0):
    """Per-head initial spatial bandwidths, geometric between `high` and `low`.

    Heads start at different ranges (one nearly global, one local) so that the
    model begins with a multi-range locality prior it can then learn away from.
    """
    if num_heads == 1:
        return np.array([math.sqrt(low * high)])
    return np.geomspace(high, low, num_heads)


@keras.saving.register_keras_serializable(package="dwt_keras")
class WaveletKernel(keras.layers.Layer):
    """Learnable PSD kernel over (level, orientation, position), one per head.

    The bandwidths are parameterised through a softplus and the orientation
    correlation through a sigmoid, so every parameter value gives a valid
    (strictly positive, PSD) kernel.

    Args:
        num_heads: number of attention heads; every head has its own bandwidths.
        n_levels: number of wavelet levels J (levels are 1..J); used for the
            per-level bandwidths of the Gibbs kernel.
        spatial_kernel: ``"rbf"`` (one bandwidth per head) or ``"gibbs"`` (one
            bandwidth per head and level; non-stationary, still PSD). Only the
            RBF form can be folded into q/k.
        scale_bandwidth: initial RBF bandwidth over the level index.
        spatial_bandwidths: initial spatial bandwidths (a float, or one per head),
            in image-normalised units (the image side is 1). Defaults to
            `default_spatial_bandwidths(num_heads)`.
        rho: initial orientation correlation, in (0, 1).
        rho_min: lower bound on rho; keeps log k_orient finite (>= log rho_min).
        lr_multiplier: every raw parameter is stored divided by this factor and
            multiplied back when used (value = f(lr_multiplier * stored)). The
            kernel is the same function, but the stored variables' gradients grow
            by the factor, so an Adam-type optimiser (whose step size is about
            the learning rate whatever the gradient's scale) moves the kernel's
            bandwidths and rho about `lr_multiplier` times faster than the rest
            of the model. 1 = plain parameters.
        **kwargs: base `keras.layers.Layer` arguments.

    Example:

    ```python
    kern = WaveletKernel(num_heads=3, n_levels=3)
    level = np.array([3, 3, 2, 1]); orient = np.array([0, 1, 2, 3])
    pos = np.random.rand(4, 2)
    K = kern.kernel_matrix(level, orient, pos)  # (3, 4, 4), PSD, > 0
    ```
    """

    def __init__(
        self,
        num_heads,
        n_levels,
        spatial_kernel="rbf",
        scale_bandwidth=1.0,
        spatial_bandwidths=None,
        rho=0.5,
        rho_min=1e-4,
        lr_multiplier=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if not float(lr_multiplier) > 0.0:
            raise ValueError(f"lr_multiplier must be > 0, got {lr_multiplier}.")
        self.lr_multiplier = float(lr_multiplier)
        if spatial_kernel not in SPATIAL_KERNELS:
            raise ValueError(
                f"Unknown spatial_kernel {spatial_kernel!r}; choose one of {SPATIAL_KERNELS}."
            )
        if not 0.0 < float(rho_min) < float(rho) < 1.0:
            raise ValueError(
                f"Need 0 < rho_min < rho < 1, got rho={rho}, rho_min={rho_min}."
            )
        if int(num_heads) < 1 or int(n_levels) < 1:
            raise ValueError(
                f"num_heads and n_levels must be >= 1, got {num_heads} and {n_levels}."
            )
        self.num_heads = int(num_heads)
        self.n_levels = int(n_levels)
        self.spatial_kernel = spatial_kernel
        self.scale_bandwidth = float(scale_bandwidth)
        if spatial_bandwidths is None:
            spatial_bandwidths = default_spatial_bandwidths(self.num_heads)
        bw = np.broadcast_to(np.asarray(spatial_bandwidths, dtype="float64"), (self.num_heads,))
        if np.any(bw <= 0):
            raise ValueError(f"spatial_bandwidths must be > 0, got {spatial_bandwidths}.")
        self.spatial_bandwidths = [float(b) for b in bw]
        self.rho = float(rho)
        self.rho_min = float(rho_min)

    def build(self, input_shape=None):
        h = self.num_heads
        m = self.lr_multiplier
        self.scale_raw = self.add_weight(
            name="scale_bandwidth_raw",
            shape=(h,),
            initializer=keras.initializers.Constant(
                float(_inverse_softplus(self.scale_bandwidth)) / m
            ),
            dtype="float32",
        )
        # Exact initial rho despite the rho_min offset of `rhos()`.
        u = (self.rho - self.rho_min) / (1.0 - self.rho_min)
        rho_logit = math.log(u / (1.0 - u))
        self.rho_logit = self.add_weight(
            name="rho_logit",
            shape=(h,),
            initializer=keras.initializers.Constant(rho_logit / m),
            dtype="float32",
        )
        init = (_inverse_softplus(self.spatial_bandwidths) / m).astype("float32")
        if self.spatial_kernel == "gibbs":
            init = np.repeat(init[:, None], self.n_levels, axis=1)
        self.spatial_raw = self.add_weight(
            name="spatial_bandwidth_raw",
            shape=init.shape,
            initializer=keras.initializers.Constant(init),
            dtype="float32",
        )
        super().build(input_shape)

    # -- constrained parameters ------------------------------------------------
    def scale_bandwidths(self):
        """RBF bandwidth over levels, per head, shape (heads,)."""
        return ops.softplus(self.lr_multiplier * self.scale_raw) + 1e-3

    def rhos(self):
        """Orientation correlation rho in (rho_min, 1), per head, shape (heads,)."""
        logit = self.lr_multiplier * self.rho_logit
        return self.rho_min + (1.0 - self.rho_min) * ops.sigmoid(logit)

    def spatial_bandwidth_values(self):
        """Spatial bandwidths: (heads,) for RBF, (heads, n_levels) for Gibbs."""
        return ops.softplus(self.lr_multiplier * self.spatial_raw) + 1e-3

    # -- explicit kernel -------------------------------------------------------
    def _check_built(self):
        if not self.built:
            self.build()

    def log_kernel(self, level, orientation, position, dtype="float32"):
        """log K per head: a (heads, N, N) tensor, shared across the batch.

        Args:
            level: (N,) token levels j (1..J).
            orientation: (N,) integer orientations (0=A, 1=H, 2=V, 3=D).
            position: (N, 2) token positions in image-normalised coordinates.
            dtype: computation dtype.
        """
        self._check_built()
        level = ops.cast(ops.convert_to_tensor(level), dtype)
        orientation = ops.cast(ops.convert_to_tensor(orientation), "int32")
        position = ops.cast(ops.convert_to_tensor(position), dtype)

        s = ops.cast(self.scale_bandwidths(), dtype)[:, None, None]
        dj = level[:, None] - level[None, :]
        log_ks = -ops.square(dj)[None] / (2.0 * ops.square(s))

        rho = ops.cast(self.rhos(), dtype)[:, None, None]
        same = ops.cast(ops.equal(orientation[:, None], orientation[None, :]), dtype)[None]
        log_ko = ops.log(rho + (1.0 - rho) * same)

        diff = position[:, None, :] - position[None, :, :]
        d2 = ops.sum(ops.square(diff), axis=-1)[None]
        bw = ops.cast(self.spatial_bandwidth_values(), dtype)
        if self.spatial_kernel == "rbf":
            log_kp = -d2 / (2.0 * ops.square(bw)[:, None, None])
        else:
            idx = ops.cast(level, "int32") - 1
            lt = ops.take(bw, idx, axis=1)  # (heads, N): bandwidth of each token's level
            l2 = ops.square(lt)
            denom = l2[:, :, None] + l2[:, None, :]
            # Gibbs kernel in 2-D: (2 l l' / (l^2 + l'^2)) exp(-|p - p'|^2 / (l^2 + l'^2)).
            log_kp = ops.log(2.0 * lt[:, :, None] * lt[:, None, :] / denom) - d2 / denom
        return log_ks + log_ko + log_kp

    def kernel_matrix(self, level, orientation, position, dtype="float32"):
        """K = exp(log K) per head, shape (heads, N, N). Strictly positive, PSD."""
        return ops.exp(self.log_kernel(level, orientation, position, dtype=dtype))

    # -- folded form -------------------------------------------------------------
    @property
    def fold_dim(self):
        """Number of extra q/k features per head that carry the kernel (RBF only)."""
        return 2 + N_ORIENTATIONS + 3

    def fold_features(self, level, orientation, position, dtype="float32"):
        """Extra query/key features that carry log K through a plain dot product.

        Returns `(q_extra, k_extra)`, each of shape (heads, N, fold_dim), with
        `q_extra[h] @ k_extra[h].T == log_kernel[h] + c[h][:, None]` for a
        per-query constant c (cancelled by the softmax over keys).

        Positions are centred at 0.5 first (the kernel is translation invariant)
        to keep the folded terms small, which matters in float16/bfloat16.
        """
        self._check_built()
        if self.spatial_kernel != "rbf":
            raise ValueError(
                "Only the 'rbf' spatial kernel can be folded into q/k; the Gibbs kernel's "
                "bandwidth depends on both tokens. Use kernel_mode='bias' with spatial_kernel='gibbs'."
            )
        level = ops.cast(ops.convert_to_tensor(level), dtype)
        orientation = ops.cast(ops.convert_to_tensor(orientation), "int32")
        position = ops.cast(ops.convert_to_tensor(position), dtype) - 0.5
        n = ops.shape(level)[0]
        h = self.num_heads

        # Centre levels too (translation invariant in j).
        level = level - 0.5 * (1.0 + self.n_levels)
        s = ops.cast(self.scale_bandwidths(), dtype)[:, None]  # (h, 1)
        ones = ops.ones((h, n), dtype=dtype)
        lev = ops.broadcast_to(level[None, :], (h, n))
        # -(j - j')^2 / (2 s^2) = j j'/s^2 - j'^2/(2 s^2) - [j^2 / (2 s^2)]
        q_scale = ops.stack([lev / s, ones], axis=-1)
        k_scale = ops.stack([lev / s, -ops.square(lev) / (2.0 * ops.square(s))], axis=-1)

        rho = ops.cast(self.rhos(), dtype)[:, None, None]
        eye = ops.eye(N_ORIENTATIONS, dtype=dtype)[None]
        table = ops.log(rho + (1.0 - rho) * eye)  # (h, 4, 4)
        onehot = ops.one_hot(orientation, N_ORIENTATIONS, dtype=dtype)  # (N, 4)
        q_orient = ops.einsum("no,hop->hnp", onehot, table)
        k_orient = ops.broadcast_to(onehot[None], (h, n, N_ORIENTATIONS))

        bw = ops.cast(self.spatial_bandwidth_values(), dtype)[:, None, None]  # (h, 1, 1)
        pos = ops.broadcast_to(position[None], (h, n, 2))
        sq = ops.sum(ops.square(pos), axis=-1, keepdims=True)
        q_space = ops.concatenate([pos / bw, ops.ones((h, n, 1), dtype=dtype)], axis=-1)
        k_space = ops.concatenate([pos / bw, -sq / (2.0 * ops.square(bw))], axis=-1)

        q_extra = ops.concatenate([q_scale, q_orient, q_space], axis=-1)
        k_extra = ops.concatenate([k_scale, k_orient, k_space], axis=-1)
        return q_extra, k_extra

    def call(self, level, orientation, position):
        return self.log_kernel(level, orientation, position)

    def get_config(self):
        config = super().get_config()
        config.update(
            num_heads=self.num_heads,
            n_levels=self.n_levels,
            spatial_kernel=self.spatial_kernel,
            scale_bandwidth=self.scale_bandwidth,
            spatial_bandwidths=list(self.spatial_bandwidths),
            rho=self.rho,
            rho_min=self.rho_min,
            lr_multiplier=self.lr_multiplier,
        )
        return config
