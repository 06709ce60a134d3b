"""Transformer blocks: pre-norm (kernel) attention + MLP with stochastic depth."""

from __future__ import annotations

import keras
from keras import ops

from dwt_keras.transformer.attention import KernelAttention


@keras.saving.register_keras_serializable(package="dwt_keras")
class DropPath(keras.layers.Layer):
    """Stochastic depth: drops the whole residual branch per sample.

    Surviving samples are scaled by 1 / (1 - rate) so the expectation is unchanged.

    Args:
        rate: drop probability in [0, 1).
        seed: optional int seed.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        x: (B, ...) residual-branch output.
        training: Python bool; identity when False.
    """

    def __init__(self, rate=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"DropPath rate must be in [0, 1), got {rate}.")
        self.rate = float(rate)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        if not training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
        mask = keras.random.uniform(shape, seed=self.seed_generator, dtype="float32") < keep
        return x * ops.cast(mask, x.dtype) / ops.cast(keep, x.dtype)

    def get_config(self):
        config = super().get_config()
        config.update(rate=self.rate, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package="dwt_keras")
class TransformerBlock(keras.layers.Layer):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))), then x + DropPath(MLP(LN(x))).

    With `use_kernel=True` this is the W-MSA block (attention biased by the PSD
    wavelet kernel); with `use_kernel=False` it is a standard ViT block.

    Args:
        embed_dim: model width D.
        num_heads: attention heads (must divide D).
        mlp_ratio: hidden width of the MLP as a multiple of D.
        dropout: dropout rate after the attention projection and in the MLP.
        drop_path: stochastic-depth rate of both residual branches.
        use_kernel: bias attention with the wavelet kernel.
        kernel_mode: "fold" or "bias" (see `KernelAttention`).
        n_levels: wavelet levels (for the kernel).
        spatial_kernel: "rbf" or "gibbs".
        kernel_kwargs: extra `WaveletKernel` arguments.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        x: (B, N, D) tokens.
        token_meta: token metadata dict (needed when `use_kernel=True`).
        training: Python bool.
        return_attention_scores: also return the attention probabilities.

    Example:

    ```python
    block = TransformerBlock(96, 3, use_kernel=True, n_levels=3, drop_path=0.1)
    y = block(x, token_meta=meta, training=True)
    ```
    """

    def __init__(
        self,
        embed_dim,
        num_heads,
        mlp_ratio=2.0,
        dropout=0.0,
        drop_path=0.0,
        use_kernel=False,
        kernel_mode="fold",
        n_levels=1,
        spatial_kernel="rbf",
        kernel_kwargs=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.num_heads = int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = float(dropout)
        self.drop_path = float(drop_path)
        self.use_kernel = bool(use_kernel)
        self.kernel_mode = kernel_mode
        self.n_levels = int(n_levels)
        self.spatial_kernel = spatial_kernel
        self.kernel_kwargs = dict(kernel_kwargs or {})
        hidden = max(1, int(round(self.embed_dim * self.mlp_ratio)))
        self.norm1 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm1")
        self.attn = KernelAttention(
            self.embed_dim,
            self.num_heads,
            use_kernel=self.use_kernel,
            kernel_mode=kernel_mode,
            n_levels=self.n_levels,
            spatial_kernel=spatial_kernel,
            kernel_kwargs=self.kernel_kwargs,
            dropout=self.dropout,
            name="attn",
        )
        self.norm2 = keras.layers.LayerNormalization(epsilon=1e-6, name="norm2")
        self.fc1 = keras.layers.Dense(hidden, activation="gelu", name="fc1")
        self.fc2 = keras.layers.Dense(self.embed_dim, name="fc2")
        self.mlp_dropout = keras.layers.Dropout(self.dropout)
        self.drop_path1 = DropPath(self.drop_path)
        self.drop_path2 = DropPath(self.drop_path)

    def build(self, input_shape):
        self.norm1.build(input_shape)
        self.attn.build(input_shape)
        self.norm2.build(input_shape)
        self.fc1.build(input_shape)
        self.fc2.build(tuple(input_shape[:-1]) + (self.fc1.units,))
        super().build(input_shape)

    def call(self, x, token_meta=None, training=None, return_attention_scores=False):
        attn = self.attn(
            self.norm1(x),
            token_meta=token_meta,
            training=training,
            return_attention_scores=return_attention_scores,
        )
        if return_attention_scores:
            attn, scores = attn
        x = x + self.drop_path1(attn, training=training)
        h = self.mlp_dropout(self.fc1(self.norm2(x)), training=training)
        h = self.mlp_dropout(self.fc2(h), training=training)
        x = x + self.drop_path2(h, training=training)
        if return_attention_scores:
            return x, scores
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            embed_dim=self.embed_dim,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            dropout=self.dropout,
            drop_path=self.drop_path,
            use_kernel=self.use_kernel,
            kernel_mode=self.kernel_mode,
            n_levels=self.n_levels,
            spatial_kernel=self.spatial_kernel,
            kernel_kwargs=self.kernel_kwargs,
        )
        return config
