"""The paper's tasks and what a run reports about its wavelet layers.

* The adding problem (`adding_batch`, `adding_accuracy`, `AddingAccuracy`) and the copy-memory
  problem (`copy_batch`), generated on the fly (`generated_dataset`).
* `wavelet_summary` / `plot_filters`: the learned filters of every `WaveletDense` layer, their
  loss terms and frequency responses.
"""

import keras
import numpy as np

from dwt_keras.learnable.wavelet_dense import WaveletDense

COPY_DIGITS = 10  # length of the sequence to remember in the copy task
COPY_CATEGORIES = 10  # 0 blank, 1..8 symbols, 9 delimiter

__all__ = ["COPY_DIGITS", "COPY_CATEGORIES", "adding_batch", "copy_batch", "adding_accuracy",
           "AddingAccuracy", "generated_dataset", "wavelet_layers", "wavelet_summary",
           "plot_filters"]


def adding_batch(batch_size, seq_len, rng):
    """One batch of the adding problem (Hochreiter & Schmidhuber 1997; Arjovsky et al. 2016).

    Channel 0 holds uniform [0, 1) values, channel 1 marks two positions, one in each half of
    the sequence; the target is the sum of the two marked values.

    Args:
        batch_size, seq_len: shape of the batch.
        rng: a `numpy.random.Generator`.

    Returns:
        `(x, y)`: float32 arrays of shapes `(batch, seq_len, 2)` and `(batch, 1)`.
    """
    if seq_len < 2:
        raise ValueError(f"The adding problem needs seq_len >= 2, got {seq_len}.")
    values = rng.uniform(0.0, 1.0, size=(batch_size, seq_len)).astype(np.float32)
    half = seq_len // 2
    first = rng.integers(0, half, size=batch_size)
    second = rng.integers(half, seq_len, size=batch_size)
    marks = np.zeros((batch_size, seq_len), np.float32)
    rows = np.arange(batch_size)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    y = (values[rows, first] + values[rows, second])[:, None]
    return np.stack([values, marks], axis=-1), y.astype(np.float32)


def copy_batch(batch_size, seq_len, rng):
    """One batch of the copy-memory problem (Arjovsky et al. 2016).

    Input: 10 symbols from 1..8, `seq_len - 1` blanks (0), the delimiter 9, then 10 blanks
    (length `seq_len + 20`, one-hot). Target: `seq_len + 10` blanks, then the 10 symbols.

    Returns:
        `(x, y)`: float32 one-hot inputs `(batch, seq_len + 20, 10)` and int32 targets
        `(batch, seq_len + 20)`.
    """
    total = seq_len + 2 * COPY_DIGITS
    symbols = rng.integers(1, 9, size=(batch_size, COPY_DIGITS))
    tokens = np.zeros((batch_size, total), np.int32)
    tokens[:, :COPY_DIGITS] = symbols
    tokens[:, COPY_DIGITS + seq_len - 1] = 9
    targets = np.zeros((batch_size, total), np.int32)
    targets[:, -COPY_DIGITS:] = symbols
    return np.eye(COPY_CATEGORIES, dtype=np.float32)[tokens], targets


def adding_accuracy(y_true, y_pred, tolerance=0.05):
    """The adding metric: the share of predictions with `|y_pred - y_true| < tolerance`."""
    y_true = np.asarray(y_true, np.float64).reshape(-1)
    y_pred = np.asarray(y_pred, np.float64).reshape(-1)
    return float(np.mean(np.abs(y_pred - y_true) < tolerance))


@keras.saving.register_keras_serializable(package="dwt_keras")
class AddingAccuracy(keras.metrics.MeanMetricWrapper):
    """Keras metric: share of `|y_pred - y_true| < tolerance` (the adding problem's accuracy)."""

    def __init__(self, tolerance=0.05, name="adding_accuracy", dtype=None):
        def fn(y_true, y_pred):
            diff = keras.ops.abs(keras.ops.cast(y_pred, "float32") - keras.ops.cast(y_true, "float32"))
            return keras.ops.cast(diff < tolerance, "float32")

        super().__init__(fn, name=name, dtype=dtype)
        self.tolerance = tolerance

    def get_config(self):
        return {"tolerance": self.tolerance, "name": self.name, "dtype": self.dtype}


def generated_dataset(make_batch, batch_size, seq_len, seed):
    """An endless `tf.data` stream of freshly generated batches (fit with `steps_per_epoch`)."""
    import tensorflow as tf

    x0, y0 = make_batch(1, seq_len, np.random.default_rng(0))
    rng = np.random.default_rng(seed)

    def forever():
        while True:
            yield make_batch(batch_size, seq_len, rng)

    spec = (
        tf.TensorSpec((None,) + x0.shape[1:], tf.float32),
        tf.TensorSpec((None,) + y0.shape[1:], tf.as_dtype(y0.dtype)),
    )
    return tf.data.Dataset.from_generator(forever, output_signature=spec).prefetch(2)


def wavelet_layers(model):
    found = []
    for layer in model._flatten_layers(include_self=False):
        if isinstance(layer, WaveletDense):
            found.append(layer)
    return found


def wavelet_summary(model):
    """Per wavelet layer: current `L_pr`, `L_ac` and filters (plain Python values)."""
    summary = {}
    for layer in wavelet_layers(model):
        l_pr, l_ac = layer.wavelet_loss_terms()
        summary[layer.path if hasattr(layer, "path") else layer.name] = {
            "L_pr": float(keras.ops.convert_to_numpy(l_pr)),
            "L_ac": float(keras.ops.convert_to_numpy(l_ac)),
            "filters": {k: v.tolist() for k, v in layer.filters().items()},
        }
    return summary


def plot_filters(model, path, initial=None):
    """Plots every wavelet layer's learned filters and their magnitude responses.

    Args:
        model: a model with `WaveletDense` layers (none: nothing is written).
        path: PNG path (written atomically).
        initial: optional `{layer_name: filters}` of the initial filters, drawn dashed.

    Returns:
        The path, or `None` when the model has no wavelet layer.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import signal

    from dwt_keras.utils.io import atomic_save_figure

    layers = wavelet_layers(model)
    if not layers:
        return None
    keys = ("dec_lo", "dec_hi", "rec_lo", "rec_hi")
    fig, axes = plt.subplots(len(layers), 2, figsize=(10, 3.2 * len(layers)), squeeze=False)
    for row, layer in zip(axes, layers):
        filters = layer.filters()
        start = (initial or {}).get(layer.name)
        for i, key in enumerate(keys):
            taps = np.arange(len(filters[key]))
            row[0].plot(taps + 0.06 * (i - 1.5), filters[key], "o-", label=key, color=f"C{i}")
            w, h = signal.freqz(filters[key], worN=512)
            row[1].plot(w / np.pi, np.abs(h), label=key, color=f"C{i}")
            if start is not None:
                row[0].plot(taps, start[key], ":", color=f"C{i}", alpha=0.6)
                w0, h0 = signal.freqz(start[key], worN=512)
                row[1].plot(w0 / np.pi, np.abs(h0), ":", color=f"C{i}", alpha=0.6)
        l_pr, l_ac = (float(keras.ops.convert_to_numpy(t)) for t in layer.wavelet_loss_terms())
        row[0].set_title(f"{layer.name}: learned filters (dotted: initial)")
        row[0].set_xlabel("tap")
        row[0].legend(fontsize=8)
        row[1].set_title(f"|H(e^jw)|  (L_pr={l_pr:.2e}, L_ac={l_ac:.2e})")
        row[1].set_xlabel("normalised frequency (x pi rad/sample)")
        row[1].legend(fontsize=8)
    fig.tight_layout()
    return atomic_save_figure(fig, path)
