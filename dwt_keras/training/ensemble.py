"""Ensembles of N models averaged at the logits (`--ensemble N`).

The ensemble's prediction is the mean of its members' logits (for members that output
probabilities, the mean of their log-probabilities, which gives the same softmax as averaging the
underlying logits). Its storage cost is the sum of its members' files: `ensemble_bytes` adds them
up so reports never present one member's size as the ensemble's.
"""

import os

import keras
from keras import ops


def validate_ensemble_size(n):
    """`n` must be an integer >= 1 (1: no ensemble)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"--ensemble must be an integer >= 1 (1 = a single model), got {n!r}.")


@keras.saving.register_keras_serializable(package="dwt_keras")
class LogitAverage(keras.layers.Layer):
    """Averages a list of logit tensors (or of probabilities, at the log scale).

    Args:
        from_probabilities: the inputs are probabilities; average `log(p)` instead.
        **kwargs: base `Layer` arguments.

    Call arguments:
        inputs: a list of `(B, num_classes)` tensors.

    Example:

    ```python
    logits = LogitAverage()([m(x) for m in members])
    ```
    """

    def __init__(self, from_probabilities=False, **kwargs):
        super().__init__(**kwargs)
        self.from_probabilities = bool(from_probabilities)

    def call(self, inputs):
        stacked = ops.stack(list(inputs), axis=0)
        if self.from_probabilities:
            stacked = ops.log(ops.maximum(stacked, 1e-12))
        return ops.mean(stacked, axis=0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[0])

    def get_config(self):
        return {**super().get_config(), "from_probabilities": self.from_probabilities}


def build_ensemble(members, input_shape=None, from_probabilities=False, name="ensemble"):
    """A Keras model whose output is the average of the members' logits.

    Args:
        members: a list of >= 1 Keras models with the same input and output shapes (members
            with clashing names are renamed `<name>_member<i>` in place).
        input_shape: the input shape without the batch axis (default: the first member's).
        from_probabilities: the members output probabilities (see `LogitAverage`).
        name: the model name.

    Returns:
        An uncompiled `keras.Model`.
    """
    members = list(members)
    if not members:
        raise ValueError("build_ensemble needs at least one member model.")
    if input_shape is None:
        try:
            input_shape = tuple(members[0].inputs[0].shape[1:])
        except (AttributeError, IndexError, TypeError, ValueError) as e:
            raise ValueError("Pass input_shape= for members without a symbolic input.") from e
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        # Keras needs unique layer names inside a model; members from one builder share theirs.
        for i, m in enumerate(members):
            m.name = f"{names[i]}_member{i}"
    inputs = keras.Input(tuple(input_shape))
    outputs = [m(inputs) for m in members]
    shapes = {tuple(o.shape[1:]) for o in outputs}
    if len(shapes) != 1:
        raise ValueError(f"Ensemble members disagree on their output shapes: {sorted(shapes)}.")
    logits = LogitAverage(from_probabilities=from_probabilities, name="logit_average")(outputs)
    return keras.Model(inputs, logits, name=name)


def train_ensemble(n, train_fn, seed=0):
    """Trains `n` members, member `i` with seed `seed + i`: `train_fn(i, seed + i) -> model`."""
    validate_ensemble_size(n)
    return [train_fn(i, seed + i) for i in range(n)]


def ensemble_bytes(paths):
    """Sizes of the members' files and their total, in bytes."""
    sizes = [int(os.path.getsize(p)) for p in paths]
    return {"members": [{"file": str(p), "bytes": s} for p, s in zip(paths, sizes)],
            "bytes_total": int(sum(sizes)), "n_members": len(sizes)}
