"""Inter-scale regularisation ("Phase 2"): consecutive scales should agree.

For each pair of consecutive feature maps (finer `f_i`, coarser `f_{i+1}`) of a
multi-scale model, the finer map is brought to the coarser resolution with the
approximation band of the 2-D DWT (`dwt_keras.wavelets.dwt2`, as many levels as
needed), its channels are mapped to the coarser map's channels by a learned
1x1 projection, and a *bounded* distance between the two is penalised:

* ``"cosine"``: ``1 - cos(P(down(f_i)), f_{i+1})`` per example over all of
  (H, W, C), in [0, 2];
* ``"nmse"``: ``||a - b||^2 / (||a||^2 + ||b||^2 + eps)`` per example, in [0, 2].

Both are invariant to a common rescaling of the two maps, so the projection
cannot lower (or inflate) the penalty by scaling, unlike the unbounded MSE of
the unofficial version. The penalty is averaged over pairs and batch, scaled
by `weight` and added with `add_loss` in training only; it is switched on by
`InterScaleScheduler(start_epoch=k)` (a non-trainable variable, so no
retracing). While off, the computation is skipped at run time.

Connecting a model: any Keras model that exposes its multi-scale maps (finest
first) can do::

    feats = [c1, c2, c3]                       # e.g. outputs of three stages
    feats = InterScaleRegularizer(weight=0.1)(feats)   # identity pass-through
    logits = head(feats[-1])

The layer returns its inputs unchanged so it sits on the path to the outputs
(a functional model drops layers that are not). For token models such as the
W-MSA transformer, reshape each level's tokens to a `(B, h_j, w_j, D)` map
first (`tokens_to_maps`, `level_maps_from_metadata`; the latter's docstring
shows the complete W-MSA wiring).
"""

import copy

import keras
import numpy as np
import tensorflow as tf
from keras import ops

__all__ = [
    "DISTANCES",
    "InterScaleRegularizer",
    "InterScaleScheduler",
    "bounded_distance",
    "find_interscale_layers",
    "level_maps_from_metadata",
    "tokens_to_maps",
]

DISTANCES = ("cosine", "nmse")
_EPS = 1e-8


def bounded_distance(a, b, distance="cosine"):
    """Per-example bounded distance in [0, 2] between two equal-shape batches."""
    if distance not in DISTANCES:
        raise ValueError(f"Unknown distance {distance!r}; valid choices: {', '.join(DISTANCES)}.")
    a = ops.reshape(ops.cast(a, "float32"), (ops.shape(a)[0], -1))
    b = ops.reshape(ops.cast(b, "float32"), (ops.shape(b)[0], -1))
    na = ops.sum(a * a, axis=-1)
    nb = ops.sum(b * b, axis=-1)
    if distance == "cosine":
        cos = ops.sum(a * b, axis=-1) / ops.sqrt(ops.maximum(na * nb, _EPS * _EPS))
        return 1.0 - cos
    return ops.sum((a - b) ** 2, axis=-1) / (na + nb + _EPS)


def _down_levels(fine_hw, coarse_hw, wavelet, mode):
    """Number of DWT levels taking spatial size `fine_hw` to `coarse_hw`, or None."""
    from dwt_keras.wavelets import dwt_coeff_len

    h, w = fine_hw
    for levels in range(0, 16):
        if (h, w) == tuple(coarse_hw):
            return levels
        if h <= 1 and w <= 1:
            return None
        h, w = dwt_coeff_len(h, wavelet, mode), dwt_coeff_len(w, wavelet, mode)
    return None


@keras.saving.register_keras_serializable(package="dwt_keras")
class InterScaleRegularizer(keras.layers.Layer):
    """Bounded inter-scale consistency penalty between consecutive feature maps.

    Args:
        weight: coefficient of the penalty in the training loss (>= 0).
        wavelet: wavelet of the DWT downsampling (any `dwt_keras.wavelets` name).
        mode: DWT signal-extension mode (`dwt_keras.wavelets.MODES`).
        distance: `"cosine"` or `"nmse"` (both bounded in [0, 2]).
        active: initial state of the switch (settable through `active`;
            `InterScaleScheduler` turns it on at a given epoch).
        stop_gradient_coarse: treat the coarser map as a fixed target.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: list of >= 2 channels-last maps `(B, H_i, W_i, C_i)`, finest
            first; each coarser size must be reachable from the previous by
            whole DWT levels (e.g. 32 -> 16 -> 8 with periodization).
        training: the penalty is added only when `True`.

    Returns:
        `inputs`, unchanged.

    Example:

    >>> inp = keras.Input((32, 32, 3))
    >>> c1 = keras.layers.Conv2D(16, 3, padding="same")(inp)
    >>> c2 = keras.layers.Conv2D(32, 3, strides=2, padding="same")(c1)
    >>> c1, c2 = InterScaleRegularizer(weight=0.1, active=False)([c1, c2])
    >>> model = keras.Model(inp, keras.layers.Dense(10)(keras.layers.GlobalAveragePooling2D()(c2)))
    >>> # model.fit(..., callbacks=[InterScaleScheduler(start_epoch=5)])
    """

    def __init__(
        self,
        weight=0.1,
        wavelet="haar",
        mode="periodization",
        distance="cosine",
        active=True,
        stop_gradient_coarse=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        from dwt_keras.wavelets import get_wavelet, validate_mode

        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"weight must be a non-negative number; got {weight!r}.") from None
        if not weight >= 0:
            raise ValueError(f"weight must be a non-negative number; got {weight}.")
        if distance not in DISTANCES:
            raise ValueError(f"Unknown distance {distance!r}; valid choices: {', '.join(DISTANCES)}.")
        get_wavelet(wavelet)  # ValueError listing the valid names
        self.weight = weight
        self.wavelet = wavelet if isinstance(wavelet, str) else wavelet.name
        self.mode = validate_mode(mode)
        self.distance = distance
        self.stop_gradient_coarse = bool(stop_gradient_coarse)
        # Independent of the input shapes, so a callback can set it before
        # the first call builds the layer.
        self._active = self.add_weight(
            name="active",
            shape=(),
            dtype="float32",
            initializer=keras.initializers.Constant(1.0 if active else 0.0),
            trainable=False,
            autocast=False,
        )
        self.projections = []
        self._levels = []

    @property
    def active(self):
        return bool(self._active.numpy() > 0.5)

    @active.setter
    def active(self, value):
        self._active.assign(1.0 if value else 0.0)

    def build(self, input_shape):
        shapes = _check_feature_shapes(input_shape, self.name)
        self._levels = []
        self.projections = []
        for i in range(len(shapes) - 1):
            fine, coarse = shapes[i], shapes[i + 1]
            levels = _down_levels(fine[1:3], coarse[1:3], self.wavelet, self.mode)
            if levels is None or levels == 0:
                raise ValueError(
                    f"InterScaleRegularizer ({self.name}): map {i + 1} has spatial size "
                    f"{tuple(coarse[1:3])}, which is not {fine[1:3]} reduced by one or more "
                    f"'{self.wavelet}' DWT levels (mode '{self.mode}'); pass maps finest "
                    "first, each a DWT-level multiple coarser than the previous."
                )
            proj = keras.layers.Dense(
                coarse[-1], use_bias=False, name=f"projection_{i}", dtype=self.dtype_policy
            )
            proj.build(tuple(fine[:-1]) + (fine[-1],))
            self._levels.append(levels)
            self.projections.append(proj)
        self.built = True

    def _downsample(self, x, levels):
        from dwt_keras.wavelets import dwt2

        for _ in range(levels):
            x = dwt2(x, self.wavelet, mode=self.mode, axes=(1, 2))[0]
        return x

    def penalty(self, features):
        """The unweighted penalty (mean over pairs and batch), in [0, 2]."""
        terms = []
        for i, (levels, proj) in enumerate(zip(self._levels, self.projections)):
            fine = ops.cast(features[i], "float32")
            coarse = ops.cast(features[i + 1], "float32")
            if self.stop_gradient_coarse:
                coarse = ops.stop_gradient(coarse)
            aligned = proj(self._downsample(fine, levels))
            terms.append(ops.mean(bounded_distance(aligned, coarse, self.distance)))
        return ops.mean(ops.stack(terms))

    def call(self, inputs, training=None):
        features = list(inputs)
        if training and self.weight > 0:
            value = ops.cond(
                ops.convert_to_tensor(self._active) > 0.5,
                lambda: self.penalty(features),
                lambda: ops.zeros((), "float32"),
            )
            self.add_loss(self.weight * value)
        return inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "weight": self.weight,
                "wavelet": self.wavelet,
                "mode": self.mode,
                "distance": self.distance,
                "active": self.active,
                "stop_gradient_coarse": self.stop_gradient_coarse,
            }
        )
        return config


def _check_feature_shapes(input_shape, name):
    if not isinstance(input_shape, (list, tuple)) or not input_shape or not isinstance(
        input_shape[0], (list, tuple)
    ):
        raise ValueError(
            f"InterScaleRegularizer ({name}) takes a list of >= 2 feature maps; got shape {input_shape}."
        )
    shapes = [tuple(s) for s in input_shape]
    if len(shapes) < 2:
        raise ValueError(f"InterScaleRegularizer ({name}) needs >= 2 feature maps; got {len(shapes)}.")
    for i, s in enumerate(shapes):
        if len(s) != 4 or any(d is None for d in s[1:]):
            raise ValueError(
                f"InterScaleRegularizer ({name}): feature map {i} must be a channels-last map "
                f"(batch, height, width, channels) with static height/width/channels; got {s}."
            )
    return shapes


def find_interscale_layers(model):
    """All `InterScaleRegularizer` layers inside `model` (nested models included)."""
    found, seen = [], set()

    def visit(layer):
        if id(layer) in seen:
            return
        seen.add(id(layer))
        if isinstance(layer, InterScaleRegularizer):
            found.append(layer)
        for sub in getattr(layer, "_layers", None) or getattr(layer, "layers", None) or []:
            visit(sub)

    visit(model)
    return found


class InterScaleScheduler(keras.callbacks.Callback):
    """Switches `InterScaleRegularizer` layers on from `start_epoch` (0-based).

    Keyed on the epoch Keras passes to `on_epoch_begin`, so `initial_epoch`
    resumes correctly. Adds `interscale_active` (0/1) to the epoch logs.

    Args:
        start_epoch: first epoch with the penalty (>= 0). A natural choice is
            the end of the spectral-truncation phase (`truncation_epochs`).
        layers: a layer or list of layers (default: all found in the model).
    """

    def __init__(self, start_epoch=0, layers=None):
        super().__init__()
        from dwt_keras.spectral.schedule import validate_epochs

        self.start_epoch = validate_epochs(start_epoch, "start_epoch")
        if layers is not None and not isinstance(layers, (list, tuple)):
            layers = [layers]
        self._explicit_layers = list(layers) if layers is not None else None
        self._layers = None
        self._state = None

    def __deepcopy__(self, memo):
        clone = copy.copy(self)
        memo[id(self)] = clone
        clone._model = None
        clone._layers = None
        clone._state = None
        return clone

    def on_train_begin(self, logs=None):
        layers = self._explicit_layers or find_interscale_layers(self.model)
        if not layers:
            raise ValueError("InterScaleScheduler found no InterScaleRegularizer layer in the model.")
        self._layers = layers

    def on_epoch_begin(self, epoch, logs=None):
        self._state = int(epoch) >= self.start_epoch
        for layer in self._layers:
            layer.active = self._state

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["interscale_active"] = float(bool(self._state))

    def get_config(self):
        return {"start_epoch": self.start_epoch}


def tokens_to_maps(tokens, levels, rows, cols, n_levels=None):
    """Regroups a token sequence into one `(B, h_j, w_j, D)` map per level.

    For token models (e.g. the W-MSA transformer, whose `forward_features`
    returns `(B, N, D)` tokens with per-token metadata): tokens of the same
    level and grid cell (all orientations at that cell) are averaged.

    Args:
        tokens: `(B, N, D)` tensor.
        levels: `(N,)` integer level of each token (0 = finest).
        rows: `(N,)` integer row of each token in its level's grid.
        cols: `(N,)` integer column of each token in its level's grid.
        n_levels: number of levels (default `max(levels) + 1`).

    Returns:
        List of maps, finest first.
    """
    levels = np.asarray(levels).astype(np.int64)
    rows = np.asarray(rows).astype(np.int64)
    cols = np.asarray(cols).astype(np.int64)
    if not (levels.shape == rows.shape == cols.shape) or levels.ndim != 1:
        raise ValueError("levels, rows and cols must be 1-D arrays of the same length (one per token).")
    n_levels = int(levels.max()) + 1 if n_levels is None else int(n_levels)
    maps = []
    for j in range(n_levels):
        idx = np.nonzero(levels == j)[0]
        if idx.size == 0:
            raise ValueError(f"No token has level {j}.")
        h, w = int(rows[idx].max()) + 1, int(cols[idx].max()) + 1
        cell = rows[idx] * w + cols[idx]
        counts = np.bincount(cell, minlength=h * w).astype(np.float32)
        if np.any(counts == 0):
            raise ValueError(f"Level {j}: the tokens do not cover its {h}x{w} grid.")
        seg = tf.constant(cell, tf.int32)
        picked = tf.gather(tokens, tf.constant(idx, tf.int32), axis=1)  # (B, n_j, D)
        summed = tf.math.unsorted_segment_sum(tf.transpose(picked, [1, 0, 2]), seg, h * w)
        mean = summed / tf.constant(counts, summed.dtype)[:, None, None]
        maps.append(tf.reshape(tf.transpose(mean, [1, 0, 2]), (-1, h, w, tokens.shape[-1])))
    return maps


def level_maps_from_metadata(features):
    """`(B, h_j, w_j, D)` maps per level from a token model's features and metadata.

    Works with the W-MSA transformer's `forward_features(images)` dict (keys
    `"tokens"`, `"level"`, `"position"`): the grid row/column of each token is
    the rank of its normalised position among its level's positions;
    orientations at the same cell (A, H, V, D) are averaged. Levels are
    returned finest first (smallest level index first).

    Example (the W-MSA transformer with the inter-scale penalty):

    ```python
    class WMSAWithInterScale(keras.Model):
        def __init__(self, wmsa, **kw):
            super().__init__(**kw)
            self.wmsa = wmsa
            self.reg = InterScaleRegularizer(weight=0.1, active=False)

        def call(self, images, training=None):
            f = self.wmsa.forward_features(images, training=training)
            self.reg(level_maps_from_metadata(f), training=training)
            return self.wmsa.head(keras.ops.mean(f["tokens"], axis=1))
    # fit(..., callbacks=[InterScaleScheduler(start_epoch=10)])
    ```

    Args:
        features: dict with `"tokens"` `(B, N, D)`, `"level"` `(N,)` and
            `"position"` `(N, 2)` (row, column centres).

    Returns:
        List of maps, finest level first.
    """
    try:
        tokens, level, pos = features["tokens"], features["level"], features["position"]
    except (KeyError, TypeError):
        raise ValueError(
            "features must be a dict with 'tokens', 'level' and 'position' "
            "(e.g. WaveletTransformer.forward_features output)."
        ) from None
    level = np.asarray(level).astype(np.int64)
    pos = np.asarray(pos, dtype=np.float64)
    if pos.ndim != 2 or pos.shape != (level.shape[0], 2):
        raise ValueError(f"position must have shape (N, 2); got {pos.shape} for N={level.shape[0]}.")
    uniq = np.unique(level)
    lvl_index = np.searchsorted(uniq, level)
    rows = np.zeros_like(level)
    cols = np.zeros_like(level)
    for j in range(len(uniq)):
        idx = lvl_index == j
        rows[idx] = np.searchsorted(np.unique(np.round(pos[idx, 0], 6)), np.round(pos[idx, 0], 6))
        cols[idx] = np.searchsorted(np.unique(np.round(pos[idx, 1], 6)), np.round(pos[idx, 1], 6))
    return tokens_to_maps(tokens, lvl_index, rows, cols, n_levels=len(uniq))
