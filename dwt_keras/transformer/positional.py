"""Positional encodings: scale-aware (wavelet tokens) and learned (ViT patches)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def fourier_position_features(position, dim, max_frequency):
    """Fixed 2-D sin/cos features of image-normalised positions.

    Args:
        position: (N, 2) positions with the image side normalised to 1.
        dim: output width; features fill dim // 4 frequencies per axis (sin and
            cos), any remainder is zero.
        max_frequency: highest frequency in cycles per image side (e.g. H / 2,
            the pixel Nyquist rate); frequencies are geometric from 1/2 to it.

    Returns:
        (N, dim) float32 NumPy array.
    """
    position = np.asarray(position, dtype="float64")
    n_freq = dim // 4
    out = np.zeros((position.shape[0], dim), dtype="float64")
    if n_freq == 0:
        return out.astype("float32")
    freqs = np.geomspace(0.5, max(max_frequency, 0.5), n_freq)
    ang = 2.0 * np.pi * position[:, :, None] * freqs[None, None, :]  # (N, 2, F)
    feats = np.concatenate([np.sin(ang), np.cos(ang)], axis=-1).reshape(position.shape[0], -1)
    out[:, : feats.shape[1]] = feats
    return out.astype("float32")


@keras.saving.register_keras_serializable(package="dwt_keras")
class ScaleAwarePositionalEncoding(keras.layers.Layer):
    """Learned scale + learned orientation + spatial encoding of tokens.

    enc(t) = E_scale[j] + E_orient[o] + F(p) P, where F are fixed sin/cos
    features of the token position in image-normalised coordinates (the same
    physical place gets the same F at every scale) and P is a learned projection.
    P and the embeddings start small (std 0.02, as a ViT's learned positions), so
    at initialisation the encoding does not swamp the token content.

    Args:
        embed_dim: model width D.
        n_levels: number of wavelet levels J (levels 1..J).
        level: (N,) token levels.
        orientation: (N,) token orientations (0=A, 1=H, 2=V, 3=D).
        position: (N, 2) token positions.
        max_frequency: highest spatial frequency of F, in cycles per image side.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        tokens: (B, N, D) embedded tokens; returns tokens + enc.

    Example:

    ```python
    meta = tokenizer.token_metadata()
    pe = ScaleAwarePositionalEncoding(96, 3, meta["level"], meta["orientation"],
                                      meta["position"], max_frequency=16)
    x = pe(x)
    ```
    """

    def __init__(self, embed_dim, n_levels, level, orientation, position, max_frequency, **kwargs):
        super().__init__(**kwargs)
        self.embed_dim = int(embed_dim)
        self.n_levels = int(n_levels)
        self.level = np.asarray(level, dtype="int32")
        self.orientation = np.asarray(orientation, dtype="int32")
        self.position = np.asarray(position, dtype="float32")
        self.max_frequency = float(max_frequency)
        self._spatial = fourier_position_features(self.position, self.embed_dim, self.max_frequency)

    def build(self, input_shape=None):
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.scale_embedding = self.add_weight(
            name="scale_embedding", shape=(self.n_levels, self.embed_dim), initializer=init
        )
        self.orientation_embedding = self.add_weight(
            name="orientation_embedding", shape=(4, self.embed_dim), initializer=init
        )
        self.spatial_projection = self.add_weight(
            name="spatial_projection_embedding",
            shape=(self._spatial.shape[1], self.embed_dim),
            initializer=init,
        )
        super().build(input_shape)

    def encoding(self):
        """(N, D) encoding added to the tokens."""
        es = ops.take(self.scale_embedding, self.level - 1, axis=0)
        eo = ops.take(self.orientation_embedding, self.orientation, axis=0)
        spatial = ops.matmul(ops.convert_to_tensor(self._spatial, dtype=es.dtype), self.spatial_projection)
        return es + eo + spatial

    def call(self, tokens):
        return tokens + ops.cast(self.encoding(), tokens.dtype)[None]

    def get_config(self):
        config = super().get_config()
        config.update(
            embed_dim=self.embed_dim,
            n_levels=self.n_levels,
            level=self.level.tolist(),
            orientation=self.orientation.tolist(),
            position=self.position.tolist(),
            max_frequency=self.max_frequency,
        )
        return config


@keras.saving.register_keras_serializable(package="dwt_keras")
class LearnedPositionalEmbedding(keras.layers.Layer):
    """A learned (N, D) position embedding added to the tokens (ViT).

    Args:
        num_tokens: N.
        embed_dim: D.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        tokens: (B, N, D).
    """

    def __init__(self, num_tokens, embed_dim, **kwargs):
        super().__init__(**kwargs)
        self.num_tokens = int(num_tokens)
        self.embed_dim = int(embed_dim)

    def build(self, input_shape=None):
        self.embedding = self.add_weight(
            name="embedding",
            shape=(self.num_tokens, self.embed_dim),
            initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        )
        super().build(input_shape)

    def call(self, tokens):
        return tokens + ops.cast(self.embedding, tokens.dtype)[None]

    def get_config(self):
        config = super().get_config()
        config.update(num_tokens=self.num_tokens, embed_dim=self.embed_dim)
        return config
