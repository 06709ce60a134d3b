"""Keras layers for the 2-D discrete wavelet transform of channels-last images.

``DWT2D`` and ``IDWT2D`` wrap ``dwt_keras.wavelets.wavedec2`` / ``waverec2``
over the spatial axes of ``(batch, height, width, channels)`` tensors. They
have no weights; they are exact inverses of each other for every wavelet and
mode (up to floating-point rounding, and up to the PyWavelets convention that
odd sizes come back one sample larger, which ``output_size`` crops).

Layouts (``layout`` argument, identical for both layers):

* ``"stacked"`` (default for ``level=1``): one tensor
  ``(batch, h, w, 4 * C)``, band-major: channels ``[0, C)`` hold the
  approximation ``cA`` of every input channel, then ``cH``, ``cV``, ``cD``
  (``out[..., k * C + c]`` is band ``k`` of input channel ``c``). ``cH`` is the
  detail along the height axis (horizontal edges), ``cV`` along the width axis.
* ``"list"`` (default for ``level > 1``): a list of ``level + 1`` tensors
  ``[cA_n, D_n, ..., D_1]``, ``cA_n`` of shape ``(batch, h_n, w_n, C)`` and each
  ``D_j = concat([cH_j, cV_j, cD_j], -1)`` of shape ``(batch, h_j, w_j, 3 * C)``,
  coarsest level first (the order of ``pywt.wavedec2``).
* ``"mosaic"``: one tensor of the input's shape holding the classic wavelet
  image (``pywt.coeffs_to_array`` layout: ``cA_n`` top-left; at each level
  ``cV`` top-right, ``cH`` bottom-left, ``cD`` bottom-right). Requires
  ``mode="periodization"`` and height/width divisible by ``2 ** level``; for
  orthogonal wavelets it is then an orthogonal change of basis.
"""

from __future__ import annotations

import keras
import numpy as np
import pywt
import tensorflow as tf

from dwt_keras import wavelets as _wv

LAYOUTS = ("stacked", "list", "mosaic")


def _wavelet_config(wavelet):
    """A JSON-serialisable description of a wavelet (name or custom bank)."""
    w = _wv.get_wavelet(wavelet)
    if isinstance(wavelet, str) or (
        w.name in _wv.DISCRETE_WAVELETS
        and w.filter_bank == pywt.Wavelet(w.name).filter_bank
    ):
        return w.name
    return {"name": w.name, "filter_bank": [list(map(float, f)) for f in w.filter_bank]}


def _wavelet_from_config(cfg):
    if isinstance(cfg, dict):
        return pywt.Wavelet(cfg.get("name", "custom"), filter_bank=cfg["filter_bank"])
    return cfg


def _check_common(wavelet, level, mode, layout):
    w = _wv.get_wavelet(_wavelet_from_config(wavelet))
    mode = _wv.validate_mode(mode)
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
        raise ValueError(f"`level` must be an int >= 1, got {level!r}.")
    if layout is None:
        layout = "stacked" if level == 1 else "list"
    if layout not in LAYOUTS:
        raise ValueError(f"Unknown layout {layout!r}. Valid layouts: {', '.join(LAYOUTS)}.")
    if layout == "stacked" and level != 1:
        raise ValueError(
            "layout='stacked' holds a single level; use layout='list' or 'mosaic' "
            f"for level={level}."
        )
    if layout == "mosaic" and mode != "periodization":
        raise ValueError(
            f"layout='mosaic' needs mode='periodization' (no coefficient growth), "
            f"got mode={mode!r}; use layout='list' for other modes."
        )
    return w, int(level), mode, layout


def _check_spatial(shape, level, layout, wavelet, what):
    if len(shape) != 4:
        raise ValueError(
            f"{what} expects channels-last images (batch, height, width, channels), "
            f"got an input of rank {len(shape)}: {tuple(shape)}."
        )
    h, w = shape[1], shape[2]
    if h is None or w is None:
        raise ValueError(f"{what} needs static height and width, got {tuple(shape)}.")
    if layout == "mosaic" and (h % 2**level or w % 2**level):
        raise ValueError(
            f"layout='mosaic' needs height and width divisible by 2**level="
            f"{2**level}, got {h}x{w}."
        )
    max_level = pywt.dwt_max_level(min(h, w), wavelet.dec_len)
    return h, w, max_level


@keras.saving.register_keras_serializable(package="dwt_keras")
class DWT2D(keras.layers.Layer):
    """Multi-level 2-D discrete wavelet transform of channels-last images.

    Equals ``pywt.wavedec2(x, wavelet, mode, level, axes=(1, 2))`` with the
    coefficients arranged as described by ``layout`` (see the module
    docstring).

    Args:
        wavelet: discrete wavelet name (``"haar"``, ``"db4"``, ``"sym8"``,
            ``"bior2.2"``, ...) or a ``pywt.Wavelet`` (custom banks are saved
            with their filters).
        level: number of decomposition levels (>= 1). Levels deeper than
            ``pywt.dwt_max_level`` warn, as in PyWavelets.
        mode: signal-extension mode (``dwt_keras.wavelets.MODES``); default
            ``"periodization"`` (no coefficient growth).
        layout: ``"stacked"``, ``"list"`` or ``"mosaic"``; ``None`` picks
            ``"stacked"`` for ``level=1`` and ``"list"`` otherwise.
        **kwargs: base ``keras.layers.Layer`` arguments (``name``, ``dtype``).

    Call arguments:
        inputs: tensor ``(batch, height, width, channels)``; height and width
            must be static, the batch size may be unknown.

    Returns:
        A tensor (``"stacked"``, ``"mosaic"``) or a list of tensors
        (``"list"``).

    Example:

    >>> import numpy as np
    >>> x = np.random.rand(2, 32, 32, 3).astype("float32")
    >>> DWT2D("haar")(x).shape
    TensorShape([2, 16, 16, 12])
    >>> [tuple(c.shape) for c in DWT2D("db2", level=2)(x)]
    [(2, 8, 8, 3), (2, 8, 8, 9), (2, 16, 16, 9)]
    """

    def __init__(self, wavelet="haar", level=1, mode="periodization", layout=None, **kwargs):
        super().__init__(**kwargs)
        self._wavelet_cfg = _wavelet_config(_wavelet_from_config(wavelet))
        self.wavelet, self.level, self.mode, self.layout = _check_common(
            wavelet, level, mode, layout
        )
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        _check_spatial(input_shape, self.level, self.layout, self.wavelet, "DWT2D")
        self.built = True

    def call(self, inputs):
        coeffs = _wv.wavedec2(
            inputs, self.wavelet, mode=self.mode, level=self.level, axes=(1, 2)
        )
        # The transforms return float16 input as float32 (as PyWavelets); a layer returns
        # its compute dtype (Keras' mixed-precision convention).
        coeffs = tf.nest.map_structure(lambda t: tf.cast(t, self.compute_dtype), coeffs)
        if self.layout == "stacked":
            ca, det = coeffs
            return tf.concat([ca, *det], axis=-1)
        if self.layout == "list":
            return [coeffs[0]] + [tf.concat(list(d), axis=-1) for d in coeffs[1:]]
        mosaic = coeffs[0]
        for ch, cv, cd in coeffs[1:]:
            top = tf.concat([mosaic, cv], axis=2)
            bottom = tf.concat([ch, cd], axis=2)
            mosaic = tf.concat([top, bottom], axis=1)
        return mosaic

    def get_config(self):
        config = super().get_config()
        config.update(
            wavelet=self._wavelet_cfg, level=self.level, mode=self.mode, layout=self.layout
        )
        return config


@keras.saving.register_keras_serializable(package="dwt_keras")
class IDWT2D(keras.layers.Layer):
    """Inverse of ``DWT2D``: reconstructs channels-last images.

    Equals ``pywt.waverec2(coeffs, wavelet, mode, axes=(1, 2))`` on the
    coefficients unpacked from ``layout``. Use the same ``wavelet``, ``level``,
    ``mode`` and ``layout`` as the forward layer.

    Args:
        wavelet: discrete wavelet name or ``pywt.Wavelet``.
        level: number of levels of the coefficients (>= 1).
        mode: signal-extension mode used by the forward transform.
        layout: ``"stacked"``, ``"list"`` or ``"mosaic"`` (``None``: as
            ``DWT2D``).
        output_size: optional ``(height, width)`` to crop the result to (odd
            sizes reconstruct one sample larger, as in PyWavelets).
        **kwargs: base ``keras.layers.Layer`` arguments.

    Call arguments:
        inputs: the output of ``DWT2D`` with the same arguments.

    Returns:
        A tensor ``(batch, height, width, channels)``.

    Example:

    >>> import numpy as np
    >>> x = np.random.rand(2, 32, 32, 3).astype("float32")
    >>> y = IDWT2D("db2", level=2)(DWT2D("db2", level=2)(x))
    >>> bool(np.abs(np.asarray(y) - x).max() < 1e-5)
    True
    """

    def __init__(
        self,
        wavelet="haar",
        level=1,
        mode="periodization",
        layout=None,
        output_size=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._wavelet_cfg = _wavelet_config(_wavelet_from_config(wavelet))
        self.wavelet, self.level, self.mode, self.layout = _check_common(
            wavelet, level, mode, layout
        )
        if output_size is not None:
            try:
                output_size = tuple(int(s) for s in output_size)
            except (TypeError, ValueError) as err:
                raise ValueError(f"`output_size` must be (height, width), got {output_size!r}.") from err
            if len(output_size) != 2 or min(output_size) < 1:
                raise ValueError(f"`output_size` must be (height, width), got {output_size!r}.")
        self.output_size = output_size

    def build(self, input_shape):
        if self.layout == "list":
            if not isinstance(input_shape, (list, tuple)) or len(input_shape) != self.level + 1:
                raise ValueError(
                    f"IDWT2D(layout='list', level={self.level}) expects a list of "
                    f"{self.level + 1} tensors [cA_n, D_n, ..., D_1]."
                )
            shapes = list(input_shape)
        else:
            shapes = [input_shape]
        for s in shapes:
            if len(s) != 4 or s[1] is None or s[2] is None or s[3] is None:
                raise ValueError(
                    f"IDWT2D expects channels-last tensors with static height, width "
                    f"and channels, got {tuple(s)}."
                )
        if self.layout == "stacked" and input_shape[-1] % 4:
            raise ValueError(
                f"layout='stacked' expects 4 * C channels [A, H, V, D], got {input_shape[-1]}."
            )
        if self.layout == "mosaic":
            _check_spatial(input_shape, self.level, self.layout, self.wavelet, "IDWT2D")
        self.built = True

    def _coeffs(self, inputs):
        if self.layout == "stacked":
            ca, ch, cv, cd = tf.split(inputs, 4, axis=-1)
            return [ca, (ch, cv, cd)]
        if self.layout == "list":
            out = [inputs[0]]
            for d in inputs[1:]:
                out.append(tuple(tf.split(d, 3, axis=-1)))
            return out
        h, w = inputs.shape[1], inputs.shape[2]
        details = []
        for j in range(self.level):
            hj, wj = h // 2 ** (j + 1), w // 2 ** (j + 1)
            block = inputs[:, : 2 * hj, : 2 * wj]
            details.append(
                (block[:, hj:, :wj], block[:, :hj, wj:], block[:, hj:, wj:])
            )
        hn, wn = h // 2**self.level, w // 2**self.level
        return [inputs[:, :hn, :wn]] + details[::-1]

    def call(self, inputs):
        out = _wv.waverec2(self._coeffs(inputs), self.wavelet, mode=self.mode, axes=(1, 2))
        out = tf.cast(out, self.compute_dtype)
        if self.output_size is not None:
            out = out[:, : self.output_size[0], : self.output_size[1]]
        return out

    def get_config(self):
        config = super().get_config()
        config.update(
            wavelet=self._wavelet_cfg,
            level=self.level,
            mode=self.mode,
            layout=self.layout,
            output_size=None if self.output_size is None else list(self.output_size),
        )
        return config
