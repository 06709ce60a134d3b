"""Multi-head self-attention with an optional PSD wavelet kernel (W-MSA attention)."""

from __future__ import annotations

import keras
from keras import ops

from dwt_keras.transformer.kernel import SPATIAL_KERNELS, WaveletKernel

KERNEL_MODES = ("fold", "bias")


@keras.saving.register_keras_serializable(package="dwt_keras")
class KernelAttention(keras.layers.Layer):
    """Multi-head self-attention, optionally biased by a wavelet kernel.

    attn = softmax(q k^T / sqrt(d) + log K) v, with K the per-head PSD kernel of
    `WaveletKernel` over the tokens' (level, orientation, position).

    Two implementations of the same function (chosen by ``kernel_mode``):

    * ``"fold"`` (default): the kernel is carried by ``WaveletKernel.fold_dim``
      extra query/key features per head and attention runs through
      ``keras.ops.dot_product_attention`` with no bias tensor at all.
    * ``"bias"``: one (heads, N, N) log-kernel is computed per call and broadcast
      over the batch as the additive ``bias`` (never batch x heads x N x N in
      memory as an input; the backend adds it to the logits).

    Args:
        embed_dim: model width D.
        num_heads: number of heads; must divide `embed_dim`.
        use_kernel: apply the wavelet kernel; False gives plain attention.
        kernel_mode: "fold" or "bias" (see above).
        n_levels: number of wavelet levels (for the kernel).
        spatial_kernel: "rbf" or "gibbs" (Gibbs requires kernel_mode="bias").
        kernel_kwargs: optional dict of extra `WaveletKernel` arguments.
        dropout: dropout rate on the output projection.
        qkv_bias: use biases in the q/k/v projection.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        x: (B, N, D) tokens.
        token_meta: dict with "level" (N,), "orientation" (N,), "position" (N, 2);
            required when `use_kernel=True`.
        training: Python bool.
        return_attention_scores: also return the (B, heads, N, N) attention
            probabilities (computed explicitly; for analysis and plots).

    Example:

    ```python
    attn = KernelAttention(96, 3, use_kernel=True, n_levels=3)
    y = attn(x, token_meta=meta)
    ```
    """

    def __init__(
        self,
        embed_dim,
        num_heads,
        use_kernel=True,
        kernel_mode="fold",
        n_levels=1,
        spatial_kernel="rbf",
        kernel_kwargs=None,
        dropout=0.0,
        qkv_bias=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        validate_heads(embed_dim, num_heads)
        if kernel_mode not in KERNEL_MODES:
            raise ValueError(f"Unknown kernel_mode {kernel_mode!r}; choose one of {KERNEL_MODES}.")
        if spatial_kernel not in SPATIAL_KERNELS:
            raise ValueError(
                f"Unknown spatial_kernel {spatial_kernel!r}; choose one of {SPATIAL_KERNELS}."
            )
        if use_kernel and kernel_mode == "fold" and spatial_kernel == "gibbs":
            raise ValueError(
                "spatial_kernel='gibbs' cannot be folded into q/k; use kernel_mode='bias'."
            )
        self.embed_dim = int(embed_dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.embed_dim // self.num_heads
        self.use_kernel = bool(use_kernel)
        self.kernel_mode = kernel_mode
        self.n_levels = int(n_levels)
        self.spatial_kernel = spatial_kernel
        self.kernel_kwargs = dict(kernel_kwargs or {})
        self.dropout = float(dropout)
        self.qkv_bias = bool(qkv_bias)
        self.qkv = keras.layers.Dense(3 * self.embed_dim, use_bias=self.qkv_bias, name="qkv")
        self.proj = keras.layers.Dense(self.embed_dim, name="proj")
        self.proj_dropout = keras.layers.Dropout(self.dropout)
        self.kernel = None
        if self.use_kernel:
            self.kernel = WaveletKernel(
                self.num_heads,
                self.n_levels,
                spatial_kernel=spatial_kernel,
                name="wavelet_kernel",
                **self.kernel_kwargs,
            )

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build(tuple(input_shape[:-1]) + (self.embed_dim,))
        if self.kernel is not None:
            self.kernel.build()
        super().build(input_shape)

    def _qkv(self, x):
        b, n = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (b, n, 3, self.num_heads, self.head_dim))
        return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each (B, N, heads, hd)

    def _meta(self, token_meta):
        if token_meta is None:
            raise ValueError("use_kernel=True needs token_meta (level, orientation, position).")
        return token_meta["level"], token_meta["orientation"], token_meta["position"]

    def log_kernel(self, token_meta):
        """The (heads, N, N) log-kernel added to the logits (float32)."""
        return self.kernel.log_kernel(*self._meta(token_meta))

    def call(self, x, token_meta=None, training=None, return_attention_scores=False):
        q, k, v = self._qkv(x)
        scale = 1.0 / float(self.head_dim) ** 0.5
        if return_attention_scores:
            logits = ops.einsum("bqhd,bkhd->bhqk", ops.cast(q, "float32"), ops.cast(k, "float32"))
            logits = logits * scale
            if self.use_kernel:
                logits = logits + self.log_kernel(token_meta)[None]
            probs = ops.softmax(logits, axis=-1)
            out = ops.einsum("bhqk,bkhd->bqhd", ops.cast(probs, v.dtype), v)
        elif not self.use_kernel:
            out = ops.dot_product_attention(q, k, v, scale=scale)
        elif self.kernel_mode == "bias":
            bias = self.log_kernel(token_meta)[None]  # (1, heads, N, N), broadcast over B
            out = ops.dot_product_attention(q, k, v, bias=ops.cast(bias, q.dtype), scale=scale)
        else:
            q_extra, k_extra = self.kernel.fold_features(*self._meta(token_meta))
            b = ops.shape(x)[0]
            # (heads, N, E) -> (B, N, heads, E); the fold is exact up to a per-query
            # constant, which the softmax cancels.
            q_extra = ops.transpose(ops.cast(q_extra, q.dtype), (1, 0, 2))[None]
            k_extra = ops.transpose(ops.cast(k_extra, k.dtype), (1, 0, 2))[None]
            shape = (b,) + tuple(q_extra.shape[1:])
            q = ops.concatenate([q * ops.cast(scale, q.dtype), ops.broadcast_to(q_extra, shape)], -1)
            k = ops.concatenate([k, ops.broadcast_to(k_extra, shape)], axis=-1)
            out = ops.dot_product_attention(q, k, v, scale=1.0)
        b, n = ops.shape(x)[0], ops.shape(x)[1]
        out = ops.reshape(out, (b, n, self.embed_dim))
        out = self.proj_dropout(self.proj(out), training=training)
        if return_attention_scores:
            return out, probs
        return out

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            embed_dim=self.embed_dim,
            num_heads=self.num_heads,
            use_kernel=self.use_kernel,
            kernel_mode=self.kernel_mode,
            n_levels=self.n_levels,
            spatial_kernel=self.spatial_kernel,
            kernel_kwargs=self.kernel_kwargs,
            dropout=self.dropout,
            qkv_bias=self.qkv_bias,
        )
        return config


def validate_heads(embed_dim, num_heads):
    """Raises a ValueError unless `num_heads` divides `embed_dim`."""
    embed_dim, num_heads = int(embed_dim), int(num_heads)
    if embed_dim < 1 or num_heads < 1:
        raise ValueError(
            f"embed_dim and num_heads must be >= 1, got {embed_dim} and {num_heads}."
        )
    if embed_dim % num_heads:
        divisors = [h for h in range(1, min(embed_dim, 16) + 1) if embed_dim % h == 0]
        raise ValueError(
            f"num_heads={num_heads} does not divide embed_dim={embed_dim}; "
            f"valid head counts up to 16 are {divisors}."
        )
