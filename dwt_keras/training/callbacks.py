"""The TensorBoard callback set every app shares behind `--log_dir`.

`standard_callbacks(log_dir, model, ...)` returns one `TensorBoard` callback (a subclass of
`keras.callbacks.TensorBoard`) that writes, per epoch:

* scalars: Keras' own (loss, accuracy and every other metric in `logs`, such as the
  `compression_ratio` that `CompressionMetrics` adds; `learning_rate`; the validation metrics),
  the exact-zero share of every kernel (`weight_sparsity_scalars`), plus whatever
  `extra_scalars(model)` returns (tau, the coefficient-domain sparsity of compressed layers that
  `dwt_keras.compression.tensorboard` provides, ...),
* images: first-layer receptive fields, their 2-D wavelet coefficient maps, and attention maps
  when the model has an `attention_maps(images)` method (W-MSA), plus any `image_fns`; each one
  is also written once when training begins, under `<name>/at_train_begin`, so the images before
  and after compression (or any other change) can be compared,
* histograms: every weight (Keras' `histogram_freq`) and the wavelet coefficients of every
  Dense/Conv kernel (`coefficient_histograms`), plus any `histogram_fns` (which replace a default
  of the same tag).

The module also holds the callbacks every training phase of the experiment engine uses:
`EpochTimer` (wall time and learning rate per epoch in the logs) and `ResumableEarlyStopping`
(early stopping whose state continues from a run's `history.csv`).

Open it with `tensorboard --logdir <log_dir>`.

The callback holds no TensorFlow state until `fit()` starts (writers are created lazily), so it
survives `copy.deepcopy` (KerasTuner copies callbacks for every trial), and it reads everything it
logs from the model and `logs` at epoch end (no counters of its own), so it behaves the same with
`initial_epoch`, resumed searches and `tf.distribute` strategies.
"""

import copy
import csv
import math
import pathlib
import time

import keras
import numpy as np

from dwt_keras.training.regularization import KERNEL_LAYERS


def _first_kernel_layer(model):
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, KERNEL_LAYERS) and layer.weights:
            return layer
    return None


def _input_image_shape(model):
    try:
        shape = tuple(model.inputs[0].shape[1:])
    except (AttributeError, IndexError, TypeError, ValueError):
        shape = getattr(model, "_dwt_image_shape", None)
    if shape is None or len(shape) != 3 or any(v is None for v in shape):
        return None
    return tuple(int(v) for v in shape)


def _to_display(fields):
    """(N, H, W, C) signed weights -> [0, 1] images with 0 at mid-grey, one scale per field."""
    fields = np.asarray(fields, dtype=np.float32)
    if fields.shape[-1] not in (1, 3):
        fields = fields.mean(axis=-1, keepdims=True)
    scale = np.abs(fields).reshape(len(fields), -1).max(axis=1)
    scale = np.where(scale > 0, scale, 1.0).reshape(-1, 1, 1, 1)
    return np.clip(0.5 + 0.5 * fields / scale, 0.0, 1.0)


def _grid(images, pad=1):
    """Tiles (N, H, W, C) images into one (1, rows*H, cols*W, C) image (pad value 1)."""
    n, h, w, c = images.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    out = np.ones((rows * (h + pad) - pad, cols * (w + pad) - pad, c), dtype=np.float32)
    for i, img in enumerate(images):
        r, q = divmod(i, cols)
        out[r * (h + pad):r * (h + pad) + h, q * (w + pad):q * (w + pad) + w] = img
    return out[None]


def receptive_fields(model, max_units=16):
    """First-layer receptive fields as signed arrays of shape (N, H, W, C).

    Conv2D: each output channel's `(kh, kw, cin)` kernel. Dense on a flattened image: each unit's
    input weights reshaped to the model's input shape `(H, W, C)`. Returns `None` when the first
    kernel layer has no image geometry (e.g. a Dense layer after a non-image input).

    Args:
        model: a built Keras model.
        max_units: how many units / channels to return (the first ones).
    """
    layer = _first_kernel_layer(model)
    if layer is None:
        return None
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    if kernel.ndim == 4:  # Conv2D: (kh, kw, cin, cout)
        return np.moveaxis(kernel, -1, 0)[:max_units]
    if kernel.ndim == 2:
        shape = _input_image_shape(model)
        if shape is None or int(np.prod(shape)) != kernel.shape[0]:
            return None
        return kernel.T[:max_units].reshape(-1, *shape)
    return None


def wavelet_coefficient_map(image, wavelet="haar", level=2, mode="periodization"):
    """Magnitudes of a 2-D multi-level DWT, laid out like `pywt.coeffs_to_array`.

    The transform is `dwt_keras.wavelets.wavedec2`; the layout (approximation top-left, then the
    detail bands of each level) is PyWavelets'. The level is capped at the largest level the image
    size allows. Values are `log1p(|c|)`, scaled to [0, 1].

    Args:
        image: a 2-D array (H, W).
        wavelet, level, mode: the DWT.

    Returns:
        A 2-D float32 array.
    """
    import pywt

    from dwt_keras import wavelets

    image = np.asarray(image, dtype=np.float32)
    max_level = min(wavelets.dwt_max_level(s, wavelet) for s in image.shape)
    level = max(1, min(int(level), max_level)) if max_level >= 1 else 0
    if level == 0:
        arr = np.abs(image)
    else:
        coeffs = wavelets.wavedec2(image, wavelet, level=level, mode=mode)
        coeffs = [np.asarray(coeffs[0])] + [tuple(np.asarray(c) for c in d) for d in coeffs[1:]]
        arr, _ = pywt.coeffs_to_array(coeffs)
        arr = np.abs(arr)
    arr = np.log1p(arr / (arr.max() + 1e-12) * 100.0)
    return (arr / (arr.max() + 1e-12)).astype(np.float32)


def receptive_field_images(max_units=16):
    """An image function: a grid of the first-layer receptive fields (0 = mid-grey)."""

    def fn(model):
        fields = receptive_fields(model, max_units)
        return None if fields is None else _grid(_to_display(fields))

    return fn


def coefficient_map_images(wavelet="haar", level=2, mode="periodization", max_units=16):
    """An image function: wavelet coefficient maps of the first-layer receptive fields.

    After coefficient-domain pruning most of each map is black: the kept coefficients show
    where the compressed layer stores its information.
    """

    def fn(model):
        fields = receptive_fields(model, max_units)
        if fields is None:
            return None
        maps = [wavelet_coefficient_map(f.mean(axis=-1), wavelet, level, mode) for f in fields]
        return _grid(np.stack(maps)[..., None])

    return fn


def attention_map_images(sample_images):
    """An image function: per block, the head-averaged (N, N) attention of the first sample.

    Uses the model's `attention_maps(images)` method (W-MSA and ViT models have one); returns
    `None` for models without it.
    """
    sample = np.asarray(sample_images[:1], dtype=np.float32)

    def fn(model):
        if not callable(getattr(model, "attention_maps", None)):
            return None
        maps = model.attention_maps(sample)
        mats = [keras.ops.convert_to_numpy(m)[0].mean(axis=0) for m in maps]
        mats = [m / (m.max() + 1e-12) for m in mats]
        return np.stack(mats)[..., None].astype(np.float32)

    return fn


def _kernel_coefficients(kernel, wavelet, level, mode, image_shape):
    """Wavelet coefficients of one kernel along the axes where its weights have geometry."""
    from dwt_keras import wavelets

    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim == 2 and image_shape is not None and int(np.prod(image_shape)) == k.shape[0]:
        # Dense on a flattened image: transform each unit's (H, W, C) field over H and W.
        fields = np.moveaxis(k.T.reshape(-1, *image_shape), -1, 1)  # (units, C, H, W)
        lvl = min(level, *(wavelets.dwt_max_level(s, wavelet) for s in image_shape[:2]))
        if lvl < 1:
            return k.ravel()
        coeffs = wavelets.wavedec2(fields, wavelet, level=lvl, mode=mode)
        parts = [np.asarray(coeffs[0]).ravel()]
        parts += [np.asarray(c).ravel() for band in coeffs[1:] for c in band]
        return np.concatenate(parts)
    if k.ndim == 4 and min(k.shape[:2]) >= 2:
        lvl = min(level, *(wavelets.dwt_max_level(s, wavelet) for s in k.shape[:2]))
        if lvl >= 1:
            coeffs = wavelets.wavedec2(np.moveaxis(k, (0, 1), (-2, -1)), wavelet, level=lvl,
                                       mode=mode)
            parts = [np.asarray(coeffs[0]).ravel()]
            parts += [np.asarray(c).ravel() for band in coeffs[1:] for c in band]
            return np.concatenate(parts)
    # Otherwise 1-D along the input axis (flattened kh*kw*cin for small conv kernels).
    k2 = k.reshape(-1, k.shape[-1]).T
    lvl = min(level, wavelets.dwt_max_level(k2.shape[-1], wavelet))
    if lvl < 1:
        return k.ravel()
    coeffs = wavelets.wavedec(k2, wavelet, level=lvl, mode=mode, axis=-1)
    return np.concatenate([np.asarray(c).ravel() for c in coeffs])


def coefficient_histograms(wavelet="haar", level=2, mode="periodization"):
    """A histogram function: wavelet coefficients of every Dense/Conv kernel, per layer.

    Dense layers on a flattened image are transformed over the image's H and W axes, conv kernels
    over their spatial axes when those allow one level, other kernels along the input axis.
    Once the model is compressed, `compression_histograms` uses the compression's own transform.
    """

    def fn(model):
        shape = _input_image_shape(model)
        out = {}
        first = True
        for layer in model._flatten_layers(include_self=False, recursive=True):
            if isinstance(layer, KERNEL_LAYERS) and layer.weights:
                kernel = keras.ops.convert_to_numpy(layer.kernel)
                out[f"coefficients/{layer.name}"] = _kernel_coefficients(
                    kernel, wavelet, level, mode, shape if first else None)
                first = False
        return out

    return fn


def weight_sparsity_scalars(model):
    """Share of exactly-zero entries in every Dense/Conv kernel (`sparsity/<layer>`), overall too."""
    out, zeros, total = {}, 0, 0
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, KERNEL_LAYERS) and layer.weights:
            k = keras.ops.convert_to_numpy(layer.kernel)
            z = int(np.count_nonzero(k == 0))
            out[f"sparsity/{layer.name}"] = z / k.size
            zeros, total = zeros + z, total + k.size
    if total:
        out["sparsity/overall"] = zeros / total
    return out


# Named `TensorBoard` on purpose: KerasTuner recognises TensorBoard callbacks by class name and
# then gives each trial its own log folder and an HParams entry.
class TensorBoard(keras.callbacks.TensorBoard):
    """`keras.callbacks.TensorBoard` plus hook-based scalars, images and histograms.

    Args:
        log_dir: the TensorBoard folder.
        extra_scalars: `fn(model) -> {tag: float}` called at each epoch end, or a list of them.
        image_fns: `{tag: fn(model) -> (N, H, W, C) array in [0, 1] or None}`; `None` skips.
        histogram_fns: `{tag: fn(model) -> array or {tag: array}}`.
        image_freq: write images every this many epochs (0: never).
        histogram_freq: weight and `histogram_fns` histograms every this many epochs (0: never).
        max_images: `max_outputs` of each image summary.
        **kwargs: other `keras.callbacks.TensorBoard` arguments (`update_freq`, ...).

    Example:

    ```python
    tb = TensorBoard("logs/run1", extra_scalars=weight_sparsity_scalars,
                     image_fns={"receptive_fields": receptive_field_images()})
    model.fit(x, y, validation_split=0.1, callbacks=[tb])
    ```
    """

    def __init__(self, log_dir, extra_scalars=None, image_fns=None, histogram_fns=None,
                 image_freq=1, histogram_freq=1, max_images=8, **kwargs):
        kwargs.setdefault("write_graph", False)
        super().__init__(log_dir=log_dir, histogram_freq=histogram_freq, **kwargs)
        if extra_scalars is None:
            extra_scalars = []
        elif callable(extra_scalars):
            extra_scalars = [extra_scalars]
        self.extra_scalars = list(extra_scalars)
        self.image_fns = dict(image_fns or {})
        self.histogram_fns = dict(histogram_fns or {})
        self.image_freq = int(image_freq)
        self.max_images = int(max_images)
        for name, fn in [("extra_scalars", f) for f in self.extra_scalars] + \
                list(self.image_fns.items()) + list(self.histogram_fns.items()):
            if not callable(fn):
                raise ValueError(f"TensorBoard hook {name!r} must be callable, got {fn!r}.")

    def __deepcopy__(self, memo):
        # A used TensorBoard callback holds the tf.summary module and open writers, which cannot
        # be copied; a copy starts without them (they are created again on the next fit()).
        new = type(self).__new__(type(self))
        skip = {"_model", "model", "_writers", "_summary_module", "_prev_summary_state"}
        for key, value in self.__dict__.items():
            if key not in skip:
                new.__dict__[key] = copy.deepcopy(value, memo)
        new._writers, new._summary_module, new._prev_summary_state = {}, None, []
        return new

    def _write_images(self, step, suffix=""):
        with self._train_writer.as_default():
            for tag, fn in self.image_fns.items():
                images = fn(self.model)
                if images is not None:
                    images = np.asarray(images, dtype=np.float32)
                    self.summary.image(tag + suffix, images, step=step,
                                       max_outputs=self.max_images)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.image_fns and self.image_freq:
            step = int(self.params.get("initial_epoch", 0) or 0) if self.params else 0
            self._write_images(step, "/at_train_begin")

    def on_epoch_end(self, epoch, logs=None):
        super().on_epoch_end(epoch, logs)
        with self._train_writer.as_default():
            for fn in self.extra_scalars:
                for tag, value in (fn(self.model) or {}).items():
                    self.summary.scalar(tag, float(value), step=epoch)
            if self.histogram_freq and epoch % self.histogram_freq == 0:
                for tag, fn in self.histogram_fns.items():
                    values = fn(self.model)
                    items = values.items() if isinstance(values, dict) else [(tag, values)]
                    for name, v in items:
                        self.summary.histogram(name, np.asarray(v, dtype=np.float32), step=epoch)
        if self.image_fns and self.image_freq and epoch % self.image_freq == 0:
            self._write_images(epoch)
        self._train_writer.flush()


def standard_callbacks(log_dir, model=None, sample_images=None, wavelet="haar", level=2,
                       mode="periodization", extra_scalars=None, image_fns=None,
                       histogram_fns=None, image_freq=1, histogram_freq=1, max_units=16,
                       **tensorboard_kwargs):
    """The shared TensorBoard callback set; an empty list when `log_dir` is empty.

    Args:
        log_dir: TensorBoard folder (`--log_dir`); `None`/`""` turns logging off.
        model: the model to be trained (optional; used only to decide which default images apply).
        sample_images: a few input images for attention maps.
        wavelet, level, mode: the DWT of the coefficient maps and histograms (use the
            compression's).
        extra_scalars: `fn(model) -> {tag: float}` (or a list); `weight_sparsity_scalars` is
            always included.
        image_fns, histogram_fns: added to (and overriding by tag) the defaults:
            `receptive_fields`, `coefficient_maps`, `attention` (when the model or `sample_images`
            allow it) and the per-layer coefficient histograms (`coefficient_histograms`).
        image_freq, histogram_freq: in epochs.
        max_units: receptive fields shown per image.
        **tensorboard_kwargs: passed to `keras.callbacks.TensorBoard`.

    Returns:
        A list of callbacks for `fit()`.

    Example:

    ```python
    callbacks = standard_callbacks(FLAGS.log_dir, model, sample_images=splits.x_val[:4],
                                   extra_scalars=lambda m: {"tau": tau_schedule.current})
    model.fit(train_ds, validation_data=val_ds, callbacks=callbacks)
    ```
    """
    if not log_dir:
        return []
    scalars = [weight_sparsity_scalars]
    if extra_scalars is not None:
        scalars += list(extra_scalars) if isinstance(extra_scalars, (list, tuple)) \
            else [extra_scalars]
    images = {
        "receptive_fields": receptive_field_images(max_units),
        "coefficient_maps": coefficient_map_images(wavelet, level, mode, max_units),
    }
    has_attention = model is None or callable(getattr(model, "attention_maps", None))
    if sample_images is not None and has_attention:
        images["attention"] = attention_map_images(sample_images)
    images.update(image_fns or {})
    histograms = {"coefficients": coefficient_histograms(wavelet, level, mode)}
    histograms.update(histogram_fns or {})
    return [TensorBoard(str(log_dir), extra_scalars=scalars, image_fns=images,
                        histogram_fns=histograms, image_freq=image_freq,
                        histogram_freq=histogram_freq, **tensorboard_kwargs)]


class EpochTimer(keras.callbacks.Callback):
    """Adds `epoch_time_s` (wall time of the epoch) and `learning_rate` (the rate of the epoch's
    last step) to the epoch's logs; place it before loggers (CSVLogger, TensorBoard).

    `times` keeps the wall time of every epoch of this `fit`. Deep-copyable (floats only).

    Args:
        log_learning_rate: add `learning_rate` to the logs.
    """

    def __init__(self, log_learning_rate=True):
        super().__init__()
        self.times = []
        self._t0 = None
        self.log_learning_rate = bool(log_learning_rate)

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        from dwt_keras.training.schedules import current_learning_rate

        if self._t0 is None:
            return
        elapsed = time.perf_counter() - self._t0
        self.times.append(elapsed)
        if logs is not None:
            logs["epoch_time_s"] = elapsed
            if self.log_learning_rate and getattr(self.model, "optimizer", None) is not None:
                logs.setdefault("learning_rate", current_learning_rate(self.model.optimizer))


def read_history(path):
    """Rows of a `history.csv` (`CSVLogger`), one per epoch (the last row wins for a repeated
    epoch, as after a resumed run)."""
    path = pathlib.Path(path)
    if not path.exists():
        return []
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                rows[int(row["epoch"])] = {
                    k: (float(v) if v not in ("", None) else None) for k, v in row.items()
                }
            except (KeyError, ValueError):
                continue
    return [rows[k] for k in sorted(rows)]


def early_stopping_state(history, monitor, mode="max"):
    """`(best_value, best_epoch, epochs_since_best)` of `history.csv` rows, or `None`."""
    rows = [r for r in history if r.get(monitor) is not None]
    if not rows:
        return None
    values = np.array([r[monitor] for r in rows], dtype=np.float64)
    # The first best wins, as Keras counts strict improvements only.
    best = int(np.argmax(values) if mode == "max" else np.argmin(values))
    return float(values[best]), int(rows[best]["epoch"]), len(rows) - 1 - best


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """`EarlyStopping` whose state continues from `history.csv` when a run resumes.

    Keras' `EarlyStopping` starts counting afresh at every `fit`, so an interrupted and resumed
    run would stop later than an uninterrupted one. This one reads the epochs already logged
    (best value, epochs since it) at the start of training. Weights are not restored in memory:
    the engine reports the checkpoint of the best epoch on the same monitor.

    Args:
        patience: epochs without improvement before stopping.
        history_path: the run's `history.csv`.
        monitor: the selection metric.
        mode: `"max"` or `"min"`.
        verbose: print when it stops.
    """

    def __init__(self, patience, history_path, monitor="val_accuracy", mode="max", verbose=1):
        super().__init__(monitor=monitor, mode=mode, patience=int(patience), verbose=verbose,
                         restore_best_weights=False)
        self.history_path = str(history_path)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        state = early_stopping_state(read_history(self.history_path), self.monitor, self.mode)
        if state is not None:
            self.best, self.best_epoch, self.wait = state
