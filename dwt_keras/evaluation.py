"""Test-split metrics and inference latency, shared by every app's report.

Metrics come from scikit-learn so that every report in the project computes precision, recall
and F1 the same, well-known way.
"""

import time

import numpy as np


def _to_class_predictions(scores):
    scores = np.asarray(scores)
    if scores.ndim == 1:
        return scores.astype(np.int64)
    return np.argmax(scores, axis=-1)


def classification_metrics(y_true, scores, class_names=None):
    """Accuracy, macro and per-class precision/recall/F1 and the confusion matrix.

    Args:
        y_true: integer labels, shape `(N,)`.
        scores: logits or probabilities `(N, num_classes)`, or predicted labels `(N,)`.
        class_names: optional list of names; defaults to the class indices as strings.

    Returns:
        A JSON-ready dict with `accuracy`, `precision_macro`, `recall_macro`, `f1_macro`,
        `per_class` (a list of dicts with name, precision, recall, f1, support) and
        `confusion_matrix` (rows: true class, columns: predicted class).
    """
    from sklearn import metrics

    y_true = np.asarray(y_true).reshape(-1).astype(np.int64)
    scores = np.asarray(scores)
    y_pred = _to_class_predictions(scores)
    if y_pred.shape[0] != y_true.shape[0]:
        raise ValueError(
            f"y_true has {y_true.shape[0]} samples but the predictions have {y_pred.shape[0]}."
        )
    if scores.ndim == 2:
        num_classes = scores.shape[-1]
    else:
        num_classes = int(max(y_true.max(initial=0), y_pred.max(initial=0))) + 1
    labels = np.arange(num_classes)
    if class_names is None:
        class_names = [str(i) for i in labels]
    p, r, f, s = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    pm, rm, fm, _ = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average="macro", zero_division=0
    )
    return {
        "accuracy": float(metrics.accuracy_score(y_true, y_pred)),
        "precision_macro": float(pm),
        "recall_macro": float(rm),
        "f1_macro": float(fm),
        "per_class": [
            {
                "name": str(class_names[i]),
                "precision": float(p[i]),
                "recall": float(r[i]),
                "f1": float(f[i]),
                "support": int(s[i]),
            }
            for i in labels
        ],
        "confusion_matrix": metrics.confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def evaluate_classifier(model, x, y, batch_size=256, class_names=None, from_logits=None):
    """Evaluates a classifier on held-out data (use the TEST split for reports).

    Args:
        model: a Keras model returning logits or probabilities.
        x, y: inputs and integer labels.
        batch_size: batch size for prediction.
        class_names: optional class names for the per-class table.
        from_logits: whether the outputs are logits; `None` infers it (outputs that are not
            rows summing to 1 within 1e-3 are treated as logits).

    Returns:
        `classification_metrics(...)` plus `test_loss` (mean sparse categorical cross-entropy)
        and `n` (the number of samples).
    """
    import keras

    scores = np.asarray(model.predict(x, batch_size=batch_size, verbose=0), dtype=np.float64)
    if from_logits is None:
        sums = scores.sum(axis=-1)
        from_logits = not (np.all(scores >= 0) and np.allclose(sums, 1.0, atol=1e-3))
    loss = keras.losses.sparse_categorical_crossentropy(
        np.asarray(y).reshape(-1), scores, from_logits=from_logits
    )
    result = classification_metrics(y, scores, class_names=class_names)
    result["test_loss"] = float(np.mean(np.asarray(loss)))
    result["n"] = int(np.asarray(y).shape[0])
    return result


def measure_latency(model, x, batch_size=32, repeats=30, warmup=3):
    """Median inference latency of `model` on one batch, after warm-up.

    The model is called through a `tf.function` (as `predict` does), on the same fixed batch
    `x[:batch_size]`, `repeats` times; the median is robust to a shared, noisy machine.

    Returns:
        A dict with `batch_size`, `repeats`, `latency_ms_per_batch` (median),
        `latency_ms_per_batch_p90` and `latency_ms_per_sample`.
    """
    import tensorflow as tf

    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0.")
    batch = tf.convert_to_tensor(np.asarray(x[:batch_size]))
    n = int(batch.shape[0])
    if n == 0:
        raise ValueError("measure_latency needs at least one sample.")

    @tf.function
    def infer(inputs):
        return model(inputs, training=False)

    for _ in range(max(warmup, 1)):
        infer(batch).numpy()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        infer(batch).numpy()
        times.append((time.perf_counter() - t0) * 1e3)
    median = float(np.median(times))
    return {
        "batch_size": n,
        "repeats": int(repeats),
        "latency_ms_per_batch": median,
        "latency_ms_per_batch_p90": float(np.percentile(times, 90)),
        "latency_ms_per_sample": median / n,
    }


def format_metrics_table(metrics):
    """A plain-text table of `evaluate_classifier` metrics (overall, per class, confusion)."""
    lines = [
        f"test accuracy: {metrics['accuracy']:.4f}   macro F1: "
        f"{metrics.get('f1_macro', float('nan')):.4f}   test loss: "
        f"{metrics.get('test_loss', float('nan')):.4f}   n={metrics.get('n')}",
        f"{'class':<14}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}",
    ]
    for row in metrics.get("per_class", []):
        lines.append(f"{row['name'][:13]:<14}{row['precision']:>10.4f}{row['recall']:>10.4f}"
                     f"{row['f1']:>10.4f}{row['support']:>10d}")
    cm = metrics.get("confusion_matrix")
    if cm:
        lines.append("confusion matrix (rows = true, columns = predicted):")
        width = max(4, max(len(str(v)) for r in cm for v in r) + 1)
        lines += ["".join(f"{v:>{width}d}" for v in r) for r in cm]
    return "\n".join(lines)
