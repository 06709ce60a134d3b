"""Wavelet tokenizer: non-redundant multi-scale tokens from a J-level 2-D DWT.

An image (B, H, W, C) is transformed with `dwt_keras.wavelets.wavedec2` over its
spatial axes. The tokens are the coefficients of the final approximation A_J and of
the three detail bands (H, V, D) of every level j = J..1 -- never the intermediate
approximations, which are redundant (they are functions of the coarser bands).

With ``mode="periodization"`` (the default) a level maps n samples to ceil(n / 2)
coefficients, so for power-of-two image sides the tokens hold exactly H*W*C
coefficients: the representation is an orthogonal change of basis for orthogonal
wavelets (haar, dbN, symN, coifN). Other modes add boundary coefficients
(floor((n + L - 1) / 2) per level) and are allowed but redundant.

Each subband's coefficients can be grouped into p x p patches (zero-padded up to a
multiple of p) to control the number of tokens; a token then holds p*p*C values.
For 32x32 images, J=3 and p=4 this gives 1 + 3 * (1 + 4 + 16) = 64 tokens of 48
values -- the same count and width as a ViT with 4x4 patches.

Every token carries metadata: its level j (the approximation has level J),
its orientation (0=A, 1=H, 2=V, 3=D) and its position in image-normalised
coordinates, p = (i + 1/2) * 2^j / H for coefficient row i of level j (the centre
of the patch's coefficients when grouped), comparable across scales.
"""

from __future__ import annotations

import math
import warnings

import keras
import numpy as np
import pywt
from keras import ops

ORIENTATIONS = ("A", "H", "V", "D")


def _wavelets_module():
    # Imported lazily so that importing the transformer package never depends on
    # import order inside dwt_keras.
    from dwt_keras import wavelets

    return wavelets


def _pair(value, name):
    if isinstance(value, int):
        return (value, value)
    value = tuple(int(v) for v in value)
    if len(value) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}.")
    return value


def subband_shapes(image_size, n_levels, wavelet, mode="periodization"):
    """Static coefficient shapes of a J-level `wavedec2`, coarse to fine.

    Returns a list of (level, orientation, (h, w)) in the order the tokenizer
    emits subbands: A_J, H_J, V_J, D_J, H_{J-1}, ..., D_1.
    """
    filt_len = pywt.Wavelet(wavelet).dec_len if isinstance(wavelet, str) else wavelet.dec_len
    h, w = image_size
    per_level = []
    for j in range(1, n_levels + 1):
        h = pywt.dwt_coeff_len(h, filt_len, mode)
        w = pywt.dwt_coeff_len(w, filt_len, mode)
        per_level.append((j, (h, w)))
    out = [(n_levels, 0, per_level[-1][1])]
    for j, shape in reversed(per_level):
        for o in (1, 2, 3):
            out.append((j, o, shape))
    return out


def validate_levels(image_size, n_levels):
    """Raises a ValueError if `n_levels` is too deep for the image."""
    h, w = image_size
    if int(n_levels) != n_levels or n_levels < 1:
        raise ValueError(f"n_levels must be a positive integer, got {n_levels!r}.")
    max_levels = int(math.floor(math.log2(min(h, w)))) if min(h, w) >= 1 else 0
    if n_levels > max_levels:
        raise ValueError(
            f"n_levels={n_levels} is too deep for a {h}x{w} image: every level halves the "
            f"image, so at most {max_levels} levels fit (2**n_levels <= min(H, W)). "
            f"Choose n_levels in 1..{max_levels}."
        )


def warn_if_past_max_level(image_size, n_levels, wavelet):
    """Warns, as `wavedec2` does, when `n_levels` exceeds ``dwt_max_level`` for the image."""
    max_level = _wavelets_module().dwt_max_level(tuple(image_size), wavelet)
    if n_levels > max_level:
        h, w = image_size
        name = wavelet if isinstance(wavelet, str) else getattr(wavelet, "name", wavelet)
        warnings.warn(
            f"Level value of {n_levels} is too high: all coefficients will experience boundary "
            f"effects (dwt_max_level={max_level} for a {h}x{w} image and {name}). With "
            "mode='periodization' the tokens still form an exact orthogonal transform (the "
            f"coarsest bands wrap around the image); choose n_levels <= {max_level} to avoid it.",
            UserWarning,
            stacklevel=3,
        )


@keras.saving.register_keras_serializable(package="dwt_keras")
class WaveletTokenizer(keras.layers.Layer):
    """Turns images into non-redundant multi-scale wavelet tokens.

    Args:
        image_size: (H, W) of the input images (an int for square images).
        in_channels: number of image channels C.
        n_levels: number of DWT levels J; 2**J must not exceed min(H, W).
        wavelet: PyWavelets wavelet name (e.g. "haar", "db4").
        mode: DWT boundary mode; "periodization" (default) is the non-redundant one.
        patch_size: group each subband's coefficients into p x p patches
            (zero-padded to a multiple of p); 1 = one token per coefficient
            position (a token then holds the C channel values).
        jit_dwt: with the TensorFlow backend, run the transform and grouping
            through an XLA-compiled function (same values, much faster on CPU).
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        images: float tensor (B, H, W, C).

    Returns:
        tokens of shape (B, N, patch_size**2 * C), subbands concatenated coarse to fine.

    Example:

    ```python
    tok = WaveletTokenizer((32, 32), 3, n_levels=3, wavelet="db4", patch_size=4)
    tokens = tok(images)          # (B, 64, 48)
    images_back = tok.detokenize(tokens)
    meta = tok.token_metadata()   # dict(level, orientation, position, subband)
    ```
    """

    def __init__(
        self,
        image_size,
        in_channels,
        n_levels=3,
        wavelet="db4",
        mode="periodization",
        patch_size=1,
        jit_dwt=True,
        **kwargs,
    ):
        super().__init__(**kwargs)
        wv = _wavelets_module()
        self.jit_dwt = bool(jit_dwt)
        self._jit_fn = None
        self.image_size = _pair(image_size, "image_size")
        self.in_channels = int(in_channels)
        if self.in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}.")
        # Clear ValueErrors (with the list of valid choices) come from the foundation.
        wv.get_wavelet(wavelet)
        wv.validate_mode(mode)
        validate_levels(self.image_size, n_levels)
        warn_if_past_max_level(self.image_size, int(n_levels), wavelet)
        self.n_levels = int(n_levels)
        self.wavelet = wavelet
        self.mode = mode
        self.patch_size = int(patch_size)
        if self.patch_size < 1:
            raise ValueError(f"patch_size must be >= 1, got {patch_size}.")
        self._subbands = subband_shapes(self.image_size, self.n_levels, wavelet, mode)
        p = self.patch_size
        self._grid = [(-(-h // p), -(-w // p)) for _, _, (h, w) in self._subbands]
        self.tokens_per_subband = [gh * gw for gh, gw in self._grid]
        self.num_tokens = int(sum(self.tokens_per_subband))
        self.token_dim = p * p * self.in_channels
        self.num_coefficients = int(
            sum(h * w for _, _, (h, w) in self._subbands) * self.in_channels
        )

    @property
    def subbands(self):
        """List of (level, orientation, (h, w)) per subband, in token order."""
        return list(self._subbands)

    def token_metadata(self):
        """Per-token (level, orientation, position, subband index) as NumPy arrays."""
        H, W = self.image_size
        p = self.patch_size
        levels, orients, pos, sub = [], [], [], []
        for s, ((j, o, (h, w)), (gh, gw)) in enumerate(zip(self._subbands, self._grid)):
            ci = (np.arange(h) + 0.5) * 2.0**j / H  # coefficient centres, normalised
            cj = (np.arange(w) + 0.5) * 2.0**j / W
            # Centre of the real (un-padded) coefficients of each patch.
            pi = np.array([ci[a * p : (a + 1) * p].mean() for a in range(gh)])
            pj = np.array([cj[b * p : (b + 1) * p].mean() for b in range(gw)])
            yy, xx = np.meshgrid(pi, pj, indexing="ij")
            pos.append(np.stack([yy.ravel(), xx.ravel()], axis=-1))
            levels.append(np.full(gh * gw, j, dtype="int32"))
            orients.append(np.full(gh * gw, o, dtype="int32"))
            sub.append(np.full(gh * gw, s, dtype="int32"))
        return {
            "level": np.concatenate(levels),
            "orientation": np.concatenate(orients),
            "position": np.concatenate(pos).astype("float32"),
            "subband": np.concatenate(sub),
        }

    def _group(self, band):
        # band: (B, h, w, C) -> (B, gh*gw, p*p*C), zero-padded to multiples of p.
        p = self.patch_size
        h, w = band.shape[1], band.shape[2]
        gh, gw = -(-h // p), -(-w // p)
        if gh * p != h or gw * p != w:
            band = ops.pad(band, [[0, 0], [0, gh * p - h], [0, gw * p - w], [0, 0]])
        c = self.in_channels
        x = ops.reshape(band, (-1, gh, p, gw, p, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, gh * gw, p * p * c))

    def _ungroup(self, tokens, shape):
        p = self.patch_size
        h, w = shape
        gh, gw = -(-h // p), -(-w // p)
        c = self.in_channels
        x = ops.reshape(tokens, (-1, gh, gw, p, p, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        x = ops.reshape(x, (-1, gh * p, gw * p, c))
        return x[:, :h, :w, :]

    def coefficients(self, images):
        """The `wavedec2` coefficient list of channels-last images."""
        wv = _wavelets_module()
        with warnings.catch_warnings():
            # Deeper than pywt.dwt_max_level only means every coefficient sees the
            # boundary; with periodization that is a wrap-around, still an exact
            # orthogonal transform, so the warning is noise here.
            warnings.filterwarnings("ignore", message="Level value of .* is too high")
            return wv.wavedec2(
                images, self.wavelet, level=self.n_levels, mode=self.mode, axes=(1, 2)
            )

    def _tokenize(self, images):
        coeffs = self.coefficients(images)
        bands = [coeffs[0]]
        for details in coeffs[1:]:
            bands.extend(details)
        return ops.concatenate([self._group(b) for b in bands], axis=1)

    def call(self, images):
        if self.jit_dwt and keras.backend.backend() == "tensorflow":
            if self._jit_fn is None:
                import tensorflow as tf

                # The filter bank is many small strided ops; XLA fuses them (about 10-20x
                # faster on CPU than the plain TF graph). No gradient is needed w.r.t.
                # the input images, so this costs nothing in the backward pass.
                self._jit_fn = tf.function(self._tokenize, jit_compile=True, reduce_retracing=True)
            return self._jit_fn(images)
        return self._tokenize(images)

    def detokenize(self, tokens):
        """Inverse of `call`: tokens (B, N, p*p*C) back to images (B, H, W, C)."""
        wv = _wavelets_module()
        parts = ops.split(tokens, np.cumsum(self.tokens_per_subband)[:-1].tolist(), axis=1)
        bands = [self._ungroup(t, shape) for t, (_, _, shape) in zip(parts, self._subbands)]
        coeffs = [bands[0]] + [tuple(bands[i : i + 3]) for i in range(1, len(bands), 3)]
        images = wv.waverec2(coeffs, self.wavelet, mode=self.mode, axes=(1, 2))
        H, W = self.image_size
        return images[:, :H, :W, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, self.token_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=list(self.image_size),
            in_channels=self.in_channels,
            n_levels=self.n_levels,
            wavelet=self.wavelet,
            mode=self.mode,
            patch_size=self.patch_size,
            jit_dwt=self.jit_dwt,
        )
        return config


@keras.saving.register_keras_serializable(package="dwt_keras")
class PatchTokenizer(keras.layers.Layer):
    """Splits images into non-overlapping p x p pixel patches (the ViT tokens).

    Args:
        image_size: (H, W); both must be multiples of `patch_size`.
        in_channels: number of channels C.
        patch_size: patch side p.
        **kwargs: base `keras.layers.Layer` arguments.

    Call arguments:
        images: (B, H, W, C).

    Returns:
        (B, (H/p) * (W/p), p*p*C) patches in row-major order.

    Example:

    ```python
    tok = PatchTokenizer((32, 32), 3, patch_size=4)
    patches = tok(images)   # (B, 64, 48)
    ```
    """

    def __init__(self, image_size, in_channels, patch_size=4, **kwargs):
        super().__init__(**kwargs)
        self.image_size = _pair(image_size, "image_size")
        self.in_channels = int(in_channels)
        self.patch_size = int(patch_size)
        H, W = self.image_size
        p = self.patch_size
        if p < 1 or H % p or W % p:
            valid = [q for q in range(1, min(H, W) + 1) if H % q == 0 and W % q == 0]
            raise ValueError(
                f"patch_size={patch_size} must divide the image size {H}x{W}; "
                f"valid patch sizes are {valid}."
            )
        self.grid = (H // p, W // p)
        self.num_tokens = self.grid[0] * self.grid[1]
        self.token_dim = p * p * self.in_channels

    def token_metadata(self):
        """Per-token (level, orientation, position) for pixel patches (level 0, orientation 0)."""
        H, W = self.image_size
        p = self.patch_size
        gy = (np.arange(self.grid[0]) + 0.5) * p / H
        gx = (np.arange(self.grid[1]) + 0.5) * p / W
        yy, xx = np.meshgrid(gy, gx, indexing="ij")
        return {
            "level": np.zeros(self.num_tokens, dtype="int32"),
            "orientation": np.zeros(self.num_tokens, dtype="int32"),
            "position": np.stack([yy.ravel(), xx.ravel()], -1).astype("float32"),
            "subband": np.zeros(self.num_tokens, dtype="int32"),
        }

    def call(self, images):
        p, c = self.patch_size, self.in_channels
        gh, gw = self.grid
        x = ops.reshape(images, (-1, gh, p, gw, p, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))
        return ops.reshape(x, (-1, gh * gw, p * p * c))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_tokens, self.token_dim)

    def get_config(self):
        config = super().get_config()
        config.update(
            image_size=list(self.image_size),
            in_channels=self.in_channels,
            patch_size=self.patch_size,
        )
        return config
