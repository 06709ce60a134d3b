"""Soft radial low-pass in the 2-D DCT domain ("spectral truncation").

The published (unofficial) mask is ``M = max(0, (tau - r) / tau)`` with
``r = sqrt((u/H)^2 + (v/W)^2)``; methods.md section 4 explains why, taken
literally, it keeps almost nothing at ``tau = 0.05`` and still attenuates
heavily at ``tau = 1``. Here ``r`` is divided by ``sqrt(2)`` so that
``r`` lies in ``[0, 1)`` (``normalize_radius=True``, the default) and a
``cosine`` profile with a flat pass-band is offered that is exactly the
identity at ``tau = 1``.
"""

import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from dwt_keras.spectral.dct import DCT_METHODS, lowpass_dct2

__all__ = [
    "PROFILES",
    "SpectralTruncation",
    "radius_grid",
    "spectral_mask",
    "validate_tau",
    "validate_profile",
]

PROFILES = ("linear", "cosine")


def validate_tau(tau, name="tau"):
    """Returns `tau` as a float after checking it lies in (0, 1]."""
    try:
        value = float(tau)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1]; got {tau!r}.") from None
    if not (0.0 < value <= 1.0) or math.isnan(value):
        raise ValueError(
            f"{name} must lie in (0, 1] (the cut-off as a fraction of the "
            f"normalised DCT radius); got {value}."
        )
    return value


def validate_profile(profile):
    if profile not in PROFILES:
        raise ValueError(
            f"Unknown mask profile {profile!r}; valid choices: {', '.join(PROFILES)}."
        )
    return profile


def _validate_rolloff(rolloff):
    try:
        value = float(rolloff)
    except (TypeError, ValueError):
        raise ValueError(f"rolloff must be a number in [0, 1]; got {rolloff!r}.") from None
    if not (0.0 <= value <= 1.0):
        raise ValueError(
            f"rolloff (width of the cosine roll-off in normalised radius) must lie "
            f"in [0, 1]; got {value}."
        )
    return value


def radius_grid(height, width, normalize=True):
    """DCT-domain radius `r[u, v] = sqrt((u/H)^2 + (v/W)^2)` as a NumPy array.

    Args:
        height: number of rows `H`.
        width: number of columns `W`.
        normalize: divide by `sqrt(2)` so that `r` lies in `[0, 1)`.

    Returns:
        float32 array of shape `(height, width)`.
    """
    u = np.arange(height, dtype=np.float64)[:, None] / height
    v = np.arange(width, dtype=np.float64)[None, :] / width
    r = np.sqrt(u**2 + v**2)
    if normalize:
        r = r / np.sqrt(2.0)
    return r.astype(np.float32)


def _mask_from_radius(r, tau, profile, rolloff):
    """Mask values for radii `r` (array or tensor) and cut-off `tau` (keras.ops)."""
    if profile == "linear":
        return ops.maximum(0.0, (tau - r) / tau)
    if rolloff == 0.0:
        return ops.cast(r <= tau, r.dtype if hasattr(r, "dtype") else "float32")
    t = ops.clip((r - tau) / rolloff, 0.0, 1.0)
    return 0.5 * (1.0 + ops.cos(math.pi * t))


def spectral_mask(height, width, tau, profile="cosine", rolloff=0.1, normalize_radius=True):
    """The `(height, width)` DCT-domain mask as a NumPy array.

    Args:
        height: image height `H`.
        width: image width `W`.
        tau: cut-off in (0, 1].
        profile: `"linear"` (published `max(0, (tau - r)/tau)`) or `"cosine"`
            (1 for `r <= tau`, then a raised-cosine roll-off to 0 over
            `rolloff`).
        rolloff: roll-off width of the cosine profile (normalised radius
            units); 0 gives a hard cut-off. Ignored by `"linear"`.
        normalize_radius: divide `r` by `sqrt(2)` (`r` in [0, 1)). With
            `False` and `profile="linear"` this is the published mask.

    Returns:
        float32 array of shape `(height, width)` with values in [0, 1].

    Example:

    >>> m = spectral_mask(32, 32, tau=1.0, profile="cosine")
    >>> bool((m == 1).all())
    True
    """
    tau = validate_tau(tau)
    validate_profile(profile)
    rolloff = _validate_rolloff(rolloff)
    r = radius_grid(height, width, normalize_radius)
    m = _mask_from_radius(r, np.float32(tau), profile, np.float32(rolloff))
    return np.asarray(ops.convert_to_numpy(m), dtype=np.float32)


@keras.saving.register_keras_serializable(package="dwt_keras")
class SpectralTruncation(keras.layers.Layer):
    """Training-only soft radial low-pass of images in the 2-D DCT domain.

    With `training=True` and the layer active, each image channel is
    transformed with the orthonormal DCT-II over (H, W), multiplied by a
    radial mask `M(r; tau)` and transformed back. One `(H, W)` mask is
    computed per step from a cached radius grid and the current `tau`, and
    broadcast over batch and channels. With `training=False` (evaluation,
    prediction, export) the call returns its input tensor itself: no op is
    added to the graph.

    `tau` and the on/off switch live in non-trainable variables, so a
    schedule (`TauScheduler`) changes them between steps without retracing
    the compiled train function; when the layer is switched off the
    transform is skipped at run time by a conditional.

    Args:
        tau: initial cut-off in (0, 1], as a fraction of the normalised DCT
            radius. Readable and settable through the `tau` property.
        profile: `"cosine"` (1 for `r <= tau`, raised-cosine roll-off of
            width `rolloff`; identity at `tau = 1`) or `"linear"` (the
            published `max(0, (tau - r) / tau)`, never the identity).
        rolloff: width of the cosine roll-off in normalised radius units,
            in [0, 1]; 0 is a hard cut-off. Ignored by `"linear"`.
        normalize_radius: divide `r` by `sqrt(2)` so that `r` lies in [0, 1).
            `False` reproduces the published radius.
        active: initial state of the switch; `False` makes the layer the
            identity in training too (settable through `active`).
        method: DCT implementation, `"auto"`, `"matmul"` or `"fft"`.
        **kwargs: base `Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: channels-last images `(batch, height, width, channels)`.
        training: Python bool; the mask is applied only when `True`.

    Example:

    >>> layer = SpectralTruncation(tau=0.25, profile="cosine")
    >>> x = tf.random.uniform((4, 32, 32, 3))
    >>> y = layer(x, training=True)   # low-passed
    >>> layer(x, training=False) is x
    True
    >>> layer.tau = 0.5               # e.g. from a schedule; no retrace
    """

    def __init__(
        self,
        tau=1.0,
        profile="cosine",
        rolloff=0.1,
        normalize_radius=True,
        active=True,
        method="auto",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self._initial_tau = validate_tau(tau)
        self.profile = validate_profile(profile)
        self.rolloff = _validate_rolloff(rolloff)
        self.normalize_radius = bool(normalize_radius)
        if method not in DCT_METHODS:
            raise ValueError(
                f"Unknown DCT method {method!r}; valid choices: {', '.join(DCT_METHODS)}."
            )
        self.method = method
        # tau and the switch do not depend on the input shape; creating them
        # here lets a schedule set them before the layer is first called
        # (e.g. in on_epoch_begin, before the first train step builds it).
        self._tau = self.add_weight(
            name="tau",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(self._initial_tau),
            trainable=False,
            autocast=False,
        )
        self._active = self.add_weight(
            name="active",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(1.0 if active else 0.0),
            trainable=False,
            autocast=False,
        )
        self._radius = None

    # -- state ---------------------------------------------------------------
    @property
    def tau(self):
        """Current cut-off (float). Setting it validates and assigns in place."""
        return float(self._tau.numpy())

    @tau.setter
    def tau(self, value):
        self._tau.assign(validate_tau(value))

    @property
    def tau_variable(self):
        return self._tau

    @property
    def active(self):
        """Whether the mask is applied in training (bool, settable)."""
        return bool(self._active.numpy() > 0.5)

    @active.setter
    def active(self, value):
        self._active.assign(1.0 if value else 0.0)

    # -- Keras API -----------------------------------------------------------
    def build(self, input_shape):
        _check_image_shape(input_shape, self.name)
        h, w = input_shape[1], input_shape[2]
        if h is not None and w is not None:
            # Cached once per (H, W); the mask itself is an (H, W) elementwise
            # function of this grid and tau.
            self._radius = radius_grid(h, w, self.normalize_radius)
        self.built = True

    def compute_output_shape(self, input_shape):
        return input_shape

    def mask(self, height, width, tau=None):
        """The `(height, width)` mask at `tau` (default: the current value), NumPy."""
        return spectral_mask(
            height,
            width,
            self.tau if tau is None else tau,
            self.profile,
            self.rolloff,
            self.normalize_radius,
        )

    def _mask_tensor(self, x):
        if self._radius is not None and self._radius.shape == tuple(x.shape[1:3]):
            r = tf.constant(self._radius)
        else:
            h = tf.cast(tf.shape(x)[1], tf.float32)
            w = tf.cast(tf.shape(x)[2], tf.float32)
            u = tf.range(h)[:, None] / h
            v = tf.range(w)[None, :] / w
            r = tf.sqrt(u * u + v * v)
            if self.normalize_radius:
                r = r / math.sqrt(2.0)
        tau = tf.convert_to_tensor(self._tau)
        return _mask_from_radius(r, tau, self.profile, self.rolloff)

    def call(self, inputs, training=None):
        if not training:
            return inputs
        if len(inputs.shape) != 4:
            _check_image_shape(inputs.shape, self.name)

        def _truncate():
            mask = self._mask_tensor(inputs)
            return lowpass_dct2(inputs, mask, self.method)

        return ops.cond(
            ops.convert_to_tensor(self._active) > 0.5,
            _truncate,
            lambda: ops.cast(inputs, _truncate_dtype(inputs)),
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "tau": self.tau,
                "profile": self.profile,
                "rolloff": self.rolloff,
                "normalize_radius": self.normalize_radius,
                "active": self.active,
                "method": self.method,
            }
        )
        return config


def _truncate_dtype(x):
    # Both cond branches must agree: lowpass_dct2 casts integer inputs to float32.
    return x.dtype if x.dtype.is_floating else tf.float32


def _check_image_shape(shape, name):
    shape = tuple(shape)
    if len(shape) != 4:
        raise ValueError(
            f"SpectralTruncation ({name}) expects channels-last images of rank 4 "
            f"(batch, height, width, channels); got rank {len(shape)} with shape {shape}."
        )


@keras.saving.register_keras_serializable(package="dwt_keras")
class SequenceImageTruncation(SpectralTruncation):
    """`SpectralTruncation` of images that a model reads as sequences (sequential MNIST).

    A training batch `(batch, H * W, C)` (each image serialised row by row) is reshaped to
    `(batch, H, W, C)`, low-passed in the 2-D DCT domain and serialised again, so the curriculum
    removes the picture's fine detail rather than filtering the 1-D pixel stream (whose "high
    frequencies" would mix horizontal detail with the jump from one row's end to the next row's
    start). Outside training it returns its input unchanged, like `SpectralTruncation`.

    Args:
        image_shape: `(H, W, C)` of the images before serialisation.
        **kwargs: `SpectralTruncation` arguments (`tau`, `profile`, `rolloff`, ...).

    Call arguments:
        inputs: `(batch, H * W, C)` sequences.
        training: Python bool; the mask is applied only when `True`.

    Example:

    >>> layer = SequenceImageTruncation((28, 28, 1), tau=0.1)
    >>> seq = np.random.rand(2, 784, 1).astype("float32")
    >>> layer(seq, training=True).shape
    TensorShape([2, 784, 1])
    """

    def __init__(self, image_shape=(28, 28, 1), **kwargs):
        super().__init__(**kwargs)
        shape = tuple(int(v) for v in image_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"image_shape must be (height, width, channels) of positive sizes; "
                             f"got {image_shape!r}.")
        self.image_shape = shape

    def build(self, input_shape):
        h, w, c = self.image_shape
        if len(input_shape) != 3 or input_shape[1] not in (None, h * w) or input_shape[2] not in (None, c):
            raise ValueError(
                f"{type(self).__name__} ({self.name}) expects sequences (batch, {h * w}, {c}) of "
                f"{h}x{w}x{c} images; got shape {tuple(input_shape)}.")
        super().build((input_shape[0], h, w, c))

    def call(self, inputs, training=None):
        if not training:
            return inputs
        images = keras.ops.reshape(inputs, (-1, *self.image_shape))
        out = super().call(images, training=True)
        return keras.ops.reshape(out, (-1, *inputs.shape[1:]))

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape)}
