"""Saliency maps (plain gradients, integrated gradients) and activation maps as PNG files.

* Plain gradients (Simonyan et al., 2014): `|d logit_c / d x|`, maximum over the channels.
* Integrated gradients (Sundararajan et al., 2017): `(x - x') * mean_k grad(x' + a_k (x - x'))`
  over `steps + 1` points `a_k` on [0, 1], combined with the trapezoidal rule; by the completeness
  axiom the attributions sum to `logit_c(x) - logit_c(x')` up to the quadrature error, which the
  returned `completeness_gap` reports. The baseline `x'` is black (zeros) by default.
* Activation maps: the mean over channels of the last convolutional layer's output, or, for
  MLPs, the first hidden layer's activations laid out as a near-square grid.

The target class is the model's predicted class unless given.
"""

import math
import pathlib

import keras
import numpy as np

from dwt_keras.training.regularization import KERNEL_LAYERS


def _targets(model, images, class_idx):
    if class_idx is None:
        logits = np.asarray(model(images, training=False))
        return np.argmax(logits, axis=-1)
    class_idx = np.broadcast_to(np.asarray(class_idx, dtype=np.int64), (len(images),))
    return np.array(class_idx)


def _grad_of_target(model, images, targets):
    import tensorflow as tf

    x = tf.convert_to_tensor(images, dtype=tf.float32)
    onehot = tf.one_hot(targets, depth=int(model(x[:1], training=False).shape[-1]))
    with tf.GradientTape() as tape:
        tape.watch(x)
        logits = model(x, training=False)
        target = tf.reduce_sum(logits * onehot, axis=-1)
    return tape.gradient(target, x).numpy(), target.numpy()


def gradient_saliency(model, images, class_idx=None):
    """`max_c |d logit / d x|`, shape `(N, H, W)`.

    Args:
        model: a Keras classifier returning logits.
        images: `(N, H, W, C)` float images.
        class_idx: the target class (int or per-image array); default: the predicted class.
    """
    images = np.asarray(images, dtype=np.float32)
    grads, _ = _grad_of_target(model, images, _targets(model, images, class_idx))
    return np.abs(grads).max(axis=-1)


def integrated_gradients(model, images, class_idx=None, baseline=None, steps=32):
    """Integrated-gradients attributions, shape `(N, H, W, C)`, and the completeness gap.

    Args:
        model, images, class_idx: as in `gradient_saliency`.
        baseline: an image (or batch) `x'`; default zeros.
        steps: intervals of the trapezoidal rule.

    Returns:
        `(attributions, completeness_gap)` where the gap is, per image,
        `sum(attributions) - (logit_c(x) - logit_c(x'))` (0 for an exact integral).
    """
    images = np.asarray(images, dtype=np.float32)
    baseline = np.zeros_like(images) if baseline is None else \
        np.broadcast_to(np.asarray(baseline, dtype=np.float32), images.shape)
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}.")
    targets = _targets(model, images, class_idx)
    alphas = np.linspace(0.0, 1.0, steps + 1, dtype=np.float32)
    weights = np.full(steps + 1, 1.0 / steps, dtype=np.float32)
    weights[[0, -1]] *= 0.5
    total = np.zeros_like(images)
    end_values = {}
    for a, w in zip(alphas, weights):
        g, value = _grad_of_target(model, baseline + a * (images - baseline), targets)
        total += w * g
        if a in (0.0, 1.0):
            end_values[float(a)] = value
    attributions = (images - baseline) * total
    gap = attributions.reshape(len(images), -1).sum(axis=1) - (end_values[1.0] - end_values[0.0])
    return attributions, gap


def _feature_model(model, layer_name=None):
    """A model from the inputs to the chosen layer's output, and that layer."""
    try:
        inputs = model.inputs
    except (AttributeError, ValueError):
        return None, None
    if not inputs:
        return None, None
    layers = [l for l in model.layers if isinstance(l, KERNEL_LAYERS)]
    if layer_name is not None:
        layer = model.get_layer(layer_name)
    else:
        convs = [l for l in layers if len(l.output.shape) == 4]
        hidden = layers[:-1]
        layer = convs[-1] if convs else (hidden[0] if hidden else None)
    if layer is None:
        return None, None
    return keras.Model(inputs, layer.output), layer


def activation_maps(model, images, layer_name=None):
    """Per image, a 2-D map of a layer's activations, or `None` when the model has none.

    Conv layers: the mean over channels of the output (the last conv layer by default). Dense
    layers: the activations of the units laid out row by row in a near-square grid (zero-padded).
    """
    feature_model, layer = _feature_model(model, layer_name)
    if feature_model is None:
        return None, None
    acts = np.asarray(feature_model(np.asarray(images, dtype=np.float32), training=False))
    if acts.ndim == 4:
        return acts.mean(axis=-1), layer.name
    acts = acts.reshape(len(acts), -1)
    cols = int(math.ceil(math.sqrt(acts.shape[1])))
    rows = int(math.ceil(acts.shape[1] / cols))
    padded = np.zeros((len(acts), rows * cols), dtype=acts.dtype)
    padded[:, :acts.shape[1]] = acts
    return padded.reshape(len(acts), rows, cols), layer.name


def write_saliency_pngs(model, images, labels, out_dir, class_names=None, steps=32,
                        layer_name=None):
    """Writes one PNG per image (input, gradients, integrated gradients, activations).

    Args:
        model: a Keras classifier returning logits.
        images, labels: a few test images and their true labels.
        out_dir: the folder of the PNG files (`saliency_<i>.png`).
        class_names: names for the titles.
        steps: integrated-gradients steps.
        layer_name: the activation-map layer (default: see `activation_maps`).

    Returns:
        `{"files": [...], "completeness_gap": [...], "activation_layer": name or None}`.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dwt_keras.utils.io import atomic_save_figure

    images = np.asarray(images, dtype=np.float32)
    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    preds = _targets(model, images, None)
    grads = gradient_saliency(model, images, preds)
    ig, gap = integrated_gradients(model, images, preds, steps=steps)
    acts, act_layer = activation_maps(model, images, layer_name)
    names = class_names or [str(i) for i in range(int(max(preds.max(), np.max(labels))) + 1)]
    files = []
    for i, img in enumerate(images):
        panels = [("input", img.squeeze(-1) if img.shape[-1] == 1 else img, "gray"),
                  ("|gradient|", grads[i], "hot"),
                  ("integrated gradients", ig[i].sum(axis=-1), "seismic")]
        if acts is not None:
            panels.append((f"activations ({act_layer})", acts[i], "viridis"))
        fig, axes = plt.subplots(1, len(panels), figsize=(3 * len(panels), 3.2))
        for ax, (title, data, cmap) in zip(axes, panels):
            if cmap == "seismic":
                lim = float(np.abs(data).max()) or 1.0
                ax.imshow(data, cmap=cmap, vmin=-lim, vmax=lim)
            else:
                ax.imshow(data, cmap=cmap)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"true {names[int(labels[i])]}, predicted {names[int(preds[i])]}", fontsize=10)
        files.append(str(atomic_save_figure(fig, out_dir / f"saliency_{i}.png")))
    return {"files": files, "completeness_gap": gap.tolist(), "activation_layer": act_layer,
            "integrated_gradients_steps": int(steps)}
