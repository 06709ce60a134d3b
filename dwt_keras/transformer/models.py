"""`WaveletTransformer` (W-MSA) and the `ViT` baseline, as Keras models.

Both map (B, H, W, C) float images to (B, num_classes) logits, share the same
transformer blocks, final LayerNorm, mean-token pooling and linear head, and
differ only in their tokens, positional encoding and (optionally) the kernel.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from dwt_keras.transformer.attention import KERNEL_MODES, validate_heads
from dwt_keras.transformer.blocks import TransformerBlock
from dwt_keras.transformer.kernel import SPATIAL_KERNELS
from dwt_keras.transformer.positional import (
    LearnedPositionalEmbedding,
    ScaleAwarePositionalEncoding,
)
from dwt_keras.transformer.tokenizer import PatchTokenizer, WaveletTokenizer, _pair

#: name -> (embed_dim, depth, num_heads)
MODEL_SIZES = {
    "tiny": (96, 4, 3),
    "small": (192, 6, 3),
    "base": (384, 12, 6),
}
EMBEDDINGS = ("per_subband", "shared")
TOKEN_NORMS = ("none", "layernorm", "subband_rms")


def resolve_model_size(model_size, embed_dim, depth, num_heads):
    """(embed_dim, depth, num_heads) from a preset name, or the explicit values."""
    if model_size is None:
        return int(embed_dim), int(depth), int(num_heads)
    if model_size not in MODEL_SIZES:
        raise ValueError(
            f"Unknown model_size {model_size!r}; choose one of {sorted(MODEL_SIZES)} "
            "or pass embed_dim/depth/num_heads."
        )
    return MODEL_SIZES[model_size]


@keras.saving.register_keras_serializable(package="dwt_keras")
class SubbandEmbedding(keras.layers.Layer):
    """Linear token embedding, with its own matrix per subband or one shared.

    Wavelet subbands have very different statistics (the approximation carries
    most of the energy), so by default each subband gets its own projection.

    Args:
        embed_dim: output width D.
        tokens_per_subband: list with the number of tokens of each subband, in
            token order; `None` or a single entry = one shared projection.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        tokens: (B, N, d_in).
    """

    def __init__(self, embed_dim, tokens_per_subband=None, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.tokens_per_subband = (
            [int(t) for t in tokens_per_subband] if tokens_per_subband else None
        )

    @property
    def n_groups(self):
        return len(self.tokens_per_subband) if self.tokens_per_subband else 1

    def build(self, input_shape):
        d_in = int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.n_groups, d_in, self.embed_dim),
            initializer="glorot_uniform",
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.n_groups, self.embed_dim), initializer="zeros"
        )
        super().build(input_shape)

    def call(self, tokens):
        if self.n_groups == 1:
            return ops.matmul(tokens, self.kernel[0]) + self.bias[0]
        splits = np.cumsum(self.tokens_per_subband)[:-1].tolist()
        parts = ops.split(tokens, splits, axis=1)
        out = [ops.matmul(t, self.kernel[s]) + self.bias[s] for s, t in enumerate(parts)]
        return ops.concatenate(out, axis=1)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.embed_dim,)

    def get_config(self):
        config = super().get_config()
        config.update(embed_dim=self.embed_dim, tokens_per_subband=self.tokens_per_subband)
        return config


@keras.saving.register_keras_serializable(package="dwt_keras")
class SubbandRMSNorm(keras.layers.Layer):
    """Divides every subband of every image by its own RMS (no parameters).

    The subbands of an orthonormal DWT differ in scale by orders of magnitude
    (on CIFAR-10 with db4, J=3: A_3 ~4, level-1 details ~0.03-0.08), so after a
    linear embedding the fine-scale tokens are invisible next to the
    approximation and the positional encoding. Dividing each subband of each
    image by the root mean square of its coefficients puts every subband at
    unit scale while keeping the relative sizes of the tokens inside a subband
    (where the edges are).

    Args:
        tokens_per_subband: number of tokens of each subband, in token order.
        epsilon: added to the mean square (an all-zero subband stays zero).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        tokens: (B, N, d) raw wavelet tokens.
    """

    def __init__(self, tokens_per_subband, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.tokens_per_subband = [int(t) for t in tokens_per_subband]
        self.epsilon = float(epsilon)

    def call(self, tokens):
        splits = np.cumsum(self.tokens_per_subband)[:-1].tolist()
        parts = ops.split(tokens, splits, axis=1) if splits else [tokens]
        out = [
            t * ops.rsqrt(ops.mean(ops.square(t), axis=(1, 2), keepdims=True) + self.epsilon)
            for t in parts
        ]
        return ops.concatenate(out, axis=1) if len(out) > 1 else out[0]

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(tokens_per_subband=self.tokens_per_subband, epsilon=self.epsilon)
        return config


class _TokenTransformer(keras.Model):
    """Shared trunk: tokens -> blocks -> LayerNorm -> mean pool -> linear head."""

    def _init_trunk(
        self,
        image_size,
        in_channels,
        num_classes,
        embed_dim,
        depth,
        num_heads,
        mlp_ratio,
        dropout,
        drop_path_rate,
        use_kernel,
        kernel_mode,
        n_levels,
        spatial_kernel,
        kernel_kwargs,
    ):
        self.image_size = _pair(image_size, "image_size")
        self.in_channels = int(in_channels)
        self.num_classes = int(num_classes)
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}.")
        validate_heads(embed_dim, num_heads)
        if int(depth) < 1:
            raise ValueError(f"depth must be >= 1, got {depth}.")
        if kernel_mode not in KERNEL_MODES:
            raise ValueError(f"Unknown kernel_mode {kernel_mode!r}; choose one of {KERNEL_MODES}.")
        if spatial_kernel not in SPATIAL_KERNELS:
            raise ValueError(
                f"Unknown spatial_kernel {spatial_kernel!r}; choose one of {SPATIAL_KERNELS}."
            )
        self.embed_dim, self.depth, self.num_heads = int(embed_dim), int(depth), int(num_heads)
        self.mlp_ratio = float(mlp_ratio)
        self.dropout = float(dropout)
        self.drop_path_rate = float(drop_path_rate)
        self.use_kernel = bool(use_kernel)
        self.kernel_mode = kernel_mode
        self.spatial_kernel = spatial_kernel
        self.kernel_kwargs = dict(kernel_kwargs or {})
        rates = np.linspace(0.0, self.drop_path_rate, self.depth) if self.depth > 1 else [0.0]
        self.blocks = [
            TransformerBlock(
                self.embed_dim,
                self.num_heads,
                mlp_ratio=self.mlp_ratio,
                dropout=self.dropout,
                drop_path=float(r),
                use_kernel=self.use_kernel,
                kernel_mode=kernel_mode,
                n_levels=n_levels,
                spatial_kernel=spatial_kernel,
                kernel_kwargs=self.kernel_kwargs,
                name=f"block_{i}",
            )
            for i, r in enumerate(rates)
        ]
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.token_dropout = keras.layers.Dropout(self.dropout)
        # float32 head: logits stay float32 under mixed precision.
        self.head = keras.layers.Dense(self.num_classes, dtype="float32", name="head")

    # -- hooks implemented by subclasses ---------------------------------------
    def _embed(self, images, training=None):
        raise NotImplementedError

    def token_metadata(self):
        """Per-token metadata dict of NumPy arrays (level, orientation, position, subband)."""
        return self.tokenizer.token_metadata()

    @property
    def num_tokens(self):
        return self.tokenizer.num_tokens

    # -- Keras plumbing ----------------------------------------------------------
    def _check_input(self, shape):
        expected = self.image_size + (self.in_channels,)
        got = tuple(shape[1:])
        if len(got) != 3 or any(g is not None and g != e for g, e in zip(got, expected)):
            raise ValueError(
                f"{type(self).__name__} expects images of shape (batch, {expected[0]}, "
                f"{expected[1]}, {expected[2]}) (channels last), got {tuple(shape)}."
            )

    def _meta_tensors(self):
        meta = self.token_metadata()
        return {
            "level": ops.convert_to_tensor(meta["level"], dtype="int32"),
            "orientation": ops.convert_to_tensor(meta["orientation"], dtype="int32"),
            "position": ops.convert_to_tensor(meta["position"], dtype="float32"),
        }

    def build(self, input_shape):
        self._check_input(input_shape)
        n, d = self.num_tokens, self.embed_dim
        self._build_embedding(input_shape)
        for block in self.blocks:
            block.build((None, n, d))
        self.norm.build((None, n, d))
        self.head.build((None, d))
        self.built = True

    def forward_features(self, images, training=False, return_attention_scores=False):
        """Token features after the last block and LayerNorm, plus their metadata.

        Args:
            images: (B, H, W, C) float images.
            training: Python bool.
            return_attention_scores: also return a list with the (B, heads, N, N)
                attention probabilities of every block.

        Returns:
            dict with "tokens" (B, N, D) and the per-token metadata "level",
            "orientation", "position" (N, 2) and "subband" (NumPy arrays), plus
            "attention" when requested.
        """
        images = ops.convert_to_tensor(images)
        self._check_input(images.shape)
        x = self._embed(images, training=training)
        x = self.token_dropout(x, training=training)
        meta = self._meta_tensors()
        scores = []
        for block in self.blocks:
            if return_attention_scores:
                x, s = block(x, token_meta=meta, training=training, return_attention_scores=True)
                scores.append(s)
            else:
                x = block(x, token_meta=meta, training=training)
        out = dict(self.token_metadata())
        out["tokens"] = self.norm(x)
        if return_attention_scores:
            out["attention"] = scores
        return out

    def call(self, images, training=None):
        feats = self.forward_features(images, training=training)["tokens"]
        return self.head(ops.mean(feats, axis=1))

    def attention_maps(self, images):
        """List (one per block) of (B, heads, N, N) attention probabilities."""
        return self.forward_features(images, training=False, return_attention_scores=True)[
            "attention"
        ]

    def learned_kernels(self):
        """Per block, the (heads, N, N) learned kernel K over this model's tokens (NumPy)."""
        meta = self.token_metadata()
        out = []
        for block in self.blocks:
            kern = block.attn.kernel
            if kern is None:
                return []
            out.append(
                keras.ops.convert_to_numpy(
                    kern.kernel_matrix(meta["level"], meta["orientation"], meta["position"])
                )
            )
        return out

    def _trunk_config(self):
        return dict(
            image_size=list(self.image_size),
            in_channels=self.in_channels,
            num_classes=self.num_classes,
            embed_dim=self.embed_dim,
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_ratio=self.mlp_ratio,
            dropout=self.dropout,
            drop_path_rate=self.drop_path_rate,
        )


@keras.saving.register_keras_serializable(package="dwt_keras")
class WaveletTransformer(_TokenTransformer):
    """Wavelet multi-scale attention transformer (W-MSA) image classifier.

    Images are tokenised by a J-level 2-D DWT into non-redundant multi-scale
    tokens (optionally grouped into p x p patches per subband), embedded,
    given a scale-aware positional encoding, and processed by pre-norm
    transformer blocks whose attention logits get the additive log of a learned
    PSD kernel over (level, orientation, position).

    Args:
        image_size: (H, W) of the inputs.
        in_channels: image channels C.
        num_classes: number of output logits.
        embed_dim: model width D (ignored when `model_size` is given).
        depth: number of blocks (ignored when `model_size` is given).
        num_heads: attention heads, must divide D (ignored when `model_size` is given).
        n_levels: DWT levels J (2**J <= min(H, W)).
        wavelet: PyWavelets wavelet name.
        use_kernel: bias attention with the wavelet kernel; False = plain
            attention over the same tokens (ablation).
        patch_size: p x p grouping of each subband's coefficients. With
            periodization, 32x32 inputs, J=3 and p=4 there are 64 tokens.
        mode: DWT boundary mode ("periodization" is the non-redundant one).
        model_size: "tiny" (96, 4, 3), "small" (192, 6, 3), "base" (384, 12, 6)
            as (embed_dim, depth, num_heads), or None to use the explicit values.
        mlp_ratio: MLP hidden width / D.
        dropout: dropout rate (tokens, attention projection, MLP).
        drop_path_rate: stochastic depth, linearly increasing to this rate.
        kernel_mode: "fold" (kernel in extra q/k dims, no bias tensor) or "bias"
            (one heads x N x N log-kernel shared over the batch).
        spatial_kernel: "rbf" or "gibbs" (per-level bandwidths; needs kernel_mode="bias").
        kernel_kwargs: extra `WaveletKernel` arguments (initial bandwidths, rho).
        embedding: "per_subband" (a projection per subband) or "shared".
        level_scaling: multiply level-j coefficients by 2**-j before the embedding.
            An orthonormal 2-D DWT multiplies the low-pass content by 2 per level,
            so A_J is ~2**J times the pixel scale; the rescale puts every subband
            back in pixel units (fixed, invertible, no parameters). Off by default:
            in a 40-step memorisation check on 64 CIFAR images it slowed
            optimisation (loss 1.75 vs 0.21 without it).
        token_norm: equalises the very different scales of the subbands before
            the positional encoding is added: "layernorm" (default; a LayerNorm
            over the width of every embedded token), "subband_rms"
            (`SubbandRMSNorm` on the coefficients, before the embedding) or
            "none" (the behaviour of models saved without this setting). Without
            it the 48 level-1 tokens of the tiny CIFAR model embed at ~1/10 of
            the positional encoding's scale, the pooled features barely depend
            on the image at initialisation, and training sat at chance for two
            epochs (BENCHMARKS.md, W-MSA section 2a).
        kernel_lr_multiplier: the kernel's bandwidths and rho learn this many
            times faster than the other weights (`WaveletKernel(lr_multiplier=...)`);
            1 = the same rate (models saved without this setting). Default 10:
            at rate 1 the bandwidths had not moved from their initial values
            (to 2 decimals) after 290 AdamW steps at lr <= 1e-3.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        images: (B, H, W, C) float images.
        training: Python bool.

    Example:

    ```python
    model = WaveletTransformer(image_size=(32, 32), in_channels=3, num_classes=10,
                               model_size="tiny", n_levels=3, wavelet="db4", patch_size=4)
    logits = model(images)                      # (B, 10)
    feats = model.forward_features(images)      # tokens (B, 64, 96) + metadata
    ```
    """

    def __init__(
        self,
        image_size=(32, 32),
        in_channels=3,
        num_classes=10,
        embed_dim=192,
        depth=6,
        num_heads=3,
        n_levels=3,
        wavelet="db4",
        use_kernel=True,
        patch_size=4,
        mode="periodization",
        model_size=None,
        mlp_ratio=2.0,
        dropout=0.0,
        drop_path_rate=0.1,
        kernel_mode="fold",
        spatial_kernel="rbf",
        kernel_kwargs=None,
        embedding="per_subband",
        level_scaling=False,
        token_norm="layernorm",
        kernel_lr_multiplier=10.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        embed_dim, depth, num_heads = resolve_model_size(model_size, embed_dim, depth, num_heads)
        self.level_scaling = bool(level_scaling)
        if embedding not in EMBEDDINGS:
            raise ValueError(f"Unknown embedding {embedding!r}; choose one of {EMBEDDINGS}.")
        if token_norm not in TOKEN_NORMS:
            raise ValueError(f"Unknown token_norm {token_norm!r}; choose one of {TOKEN_NORMS}.")
        if not float(kernel_lr_multiplier) > 0.0:
            raise ValueError(f"kernel_lr_multiplier must be > 0, got {kernel_lr_multiplier}.")
        self.token_norm = token_norm
        self.kernel_lr_multiplier = float(kernel_lr_multiplier)
        kernel_kwargs = dict(kernel_kwargs or {})
        if float(kernel_kwargs.get("lr_multiplier", self.kernel_lr_multiplier)) != (
            self.kernel_lr_multiplier
        ):
            raise ValueError(
                "kernel_kwargs['lr_multiplier'] and kernel_lr_multiplier disagree "
                f"({kernel_kwargs['lr_multiplier']} vs {kernel_lr_multiplier}); pass one of them."
            )
        kernel_kwargs["lr_multiplier"] = self.kernel_lr_multiplier
        if use_kernel and spatial_kernel == "gibbs" and kernel_mode == "fold":
            raise ValueError(
                "spatial_kernel='gibbs' cannot be folded into q/k; use kernel_mode='bias'."
            )
        # The DWT runs in float32 even under mixed precision (cheap, and keeps the
        # coefficients exact); the embedding casts to the compute dtype.
        self.tokenizer = WaveletTokenizer(
            image_size,
            in_channels,
            n_levels=n_levels,
            wavelet=wavelet,
            mode=mode,
            patch_size=patch_size,
            dtype="float32",
            name="wavelet_tokenizer",
        )
        self.n_levels = int(n_levels)
        self.wavelet = wavelet
        self.mode = mode
        self.patch_size = int(patch_size)
        self.embedding = embedding
        self._init_trunk(
            image_size,
            in_channels,
            num_classes,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio,
            dropout,
            drop_path_rate,
            use_kernel,
            kernel_mode,
            self.n_levels,
            spatial_kernel,
            kernel_kwargs,
        )
        meta = self.tokenizer.token_metadata()
        self.token_normalization = None
        if token_norm == "layernorm":
            self.token_normalization = keras.layers.LayerNormalization(
                epsilon=1e-6, name="token_norm"
            )
        elif token_norm == "subband_rms":
            self.token_normalization = SubbandRMSNorm(
                self.tokenizer.tokens_per_subband, dtype="float32", name="token_norm"
            )
        self.token_embedding = SubbandEmbedding(
            self.embed_dim,
            self.tokenizer.tokens_per_subband if embedding == "per_subband" else None,
            name="token_embedding",
        )
        self.pos_encoding = ScaleAwarePositionalEncoding(
            self.embed_dim,
            self.n_levels,
            meta["level"],
            meta["orientation"],
            meta["position"],
            max_frequency=max(self.image_size) / 2.0,
            name="pos_encoding",
        )

    def _build_embedding(self, input_shape):
        self.tokenizer.build(input_shape)
        tok_shape = (None, self.num_tokens, self.tokenizer.token_dim)
        self.token_embedding.build(tok_shape)
        if self.token_norm == "layernorm":
            self.token_normalization.build((None, self.num_tokens, self.embed_dim))
        elif self.token_norm == "subband_rms":
            self.token_normalization.build(tok_shape)
        self.pos_encoding.build((None, self.num_tokens, self.embed_dim))

    def _embed(self, images, training=None):
        tokens = self.tokenizer(ops.cast(images, "float32"))
        if self.level_scaling:
            scale = 2.0 ** -self.token_metadata()["level"].astype("float32")
            tokens = tokens * ops.convert_to_tensor(scale[None, :, None])
        if self.token_norm == "subband_rms":
            tokens = self.token_normalization(tokens)
        x = self.token_embedding(tokens)
        if self.token_norm == "layernorm":
            x = self.token_normalization(x)
        return self.pos_encoding(x)

    def get_config(self):
        config = super().get_config()
        config.update(self._trunk_config())
        config.update(
            n_levels=self.n_levels,
            wavelet=self.wavelet,
            use_kernel=self.use_kernel,
            patch_size=self.patch_size,
            mode=self.mode,
            kernel_mode=self.kernel_mode,
            spatial_kernel=self.spatial_kernel,
            kernel_kwargs=self.kernel_kwargs,
            embedding=self.embedding,
            level_scaling=self.level_scaling,
            token_norm=self.token_norm,
            kernel_lr_multiplier=self.kernel_lr_multiplier,
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        # Models saved before these options existed had neither (same weights layout).
        config.setdefault("token_norm", "none")
        config.setdefault("kernel_lr_multiplier", 1.0)
        return cls(**config)


@keras.saving.register_keras_serializable(package="dwt_keras")
class ViT(_TokenTransformer):
    """Vision Transformer baseline: pixel patches + learned positions + the same blocks.

    Args:
        image_size: (H, W); both multiples of `patch_size`.
        in_channels: image channels C.
        num_classes: number of output logits.
        embed_dim: width D (ignored when `model_size` is given).
        depth: blocks (ignored when `model_size` is given).
        num_heads: heads (ignored when `model_size` is given).
        patch_size: patch side p (32x32 with p=4: 64 tokens).
        model_size: "tiny", "small", "base" (same presets as `WaveletTransformer`) or None.
        mlp_ratio: MLP hidden width / D.
        dropout: dropout rate.
        drop_path_rate: stochastic depth, linearly increasing to this rate.
        **kwargs: base `keras.Model` arguments.

    Call arguments:
        images: (B, H, W, C) float images.
        training: Python bool.

    Example:

    ```python
    vit = ViT(image_size=(32, 32), in_channels=3, num_classes=10, model_size="tiny",
              patch_size=4)
    logits = vit(images)
    ```
    """

    def __init__(
        self,
        image_size=(32, 32),
        in_channels=3,
        num_classes=10,
        embed_dim=192,
        depth=6,
        num_heads=3,
        patch_size=4,
        model_size=None,
        mlp_ratio=2.0,
        dropout=0.0,
        drop_path_rate=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        embed_dim, depth, num_heads = resolve_model_size(model_size, embed_dim, depth, num_heads)
        self.tokenizer = PatchTokenizer(image_size, in_channels, patch_size, name="patch_tokenizer")
        self.patch_size = int(patch_size)
        self._init_trunk(
            image_size,
            in_channels,
            num_classes,
            embed_dim,
            depth,
            num_heads,
            mlp_ratio,
            dropout,
            drop_path_rate,
            False,
            "fold",
            1,
            "rbf",
            None,
        )
        self.token_embedding = SubbandEmbedding(self.embed_dim, None, name="patch_embedding")
        self.pos_embedding = LearnedPositionalEmbedding(
            self.num_tokens, self.embed_dim, name="pos_embedding"
        )

    def _build_embedding(self, input_shape):
        self.tokenizer.build(input_shape)
        self.token_embedding.build((None, self.num_tokens, self.tokenizer.token_dim))
        self.pos_embedding.build((None, self.num_tokens, self.embed_dim))

    def _embed(self, images, training=None):
        return self.pos_embedding(self.token_embedding(self.tokenizer(images)))

    def get_config(self):
        config = super().get_config()
        config.update(self._trunk_config())
        config.update(patch_size=self.patch_size)
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)


def build_model(model="wmsa", **kwargs):
    """Builds a `WaveletTransformer` ("wmsa") or `ViT` ("vit") from keyword arguments.

    Arguments that do not apply to the chosen model (e.g. `n_levels` for a ViT)
    are ignored, so one flag set can build either model.
    """
    import inspect

    classes = {"wmsa": WaveletTransformer, "vit": ViT}
    if model not in classes:
        raise ValueError(f"Unknown model {model!r}; choose one of {sorted(classes)}.")
    cls = classes[model]
    params = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in kwargs.items() if k in params})
