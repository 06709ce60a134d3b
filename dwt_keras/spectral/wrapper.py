"""Applying spectral truncation to inputs only or to inputs and targets.

Choice made here: a thin `keras.Model` wrapper whose `train_step` low-passes
the batch before delegating to the standard Keras train step. Compared with a
`tf.data` map it (a) reads `tau` from the layer variable at every step, with
no prefetch lag and no retracing, (b) can filter the targets of
autoencoders/codecs with the same mask, and (c) leaves `evaluate`/`predict`
and the wrapped model untouched, so validation and test metrics are always
measured on unfiltered data. For classifiers the `SpectralTruncation` layer
can also simply be placed after the `Input` (it is the identity whenever
`training` is not `True`).
"""

import keras

from dwt_keras.spectral.truncation import SpectralTruncation

__all__ = ["APPLY_TO", "SpectralTrainingModel", "validate_apply_to"]

APPLY_TO = ("inputs", "inputs_and_targets")


def validate_apply_to(apply_to):
    if apply_to not in APPLY_TO:
        raise ValueError(
            f"Unknown apply_to {apply_to!r}; valid choices: {', '.join(APPLY_TO)}."
        )
    return apply_to


@keras.saving.register_keras_serializable(package="dwt_keras")
class SpectralTrainingModel(keras.Model):
    """Wraps a model so that training batches are low-passed in the DCT domain.

    Only `fit` is affected: `train_step` applies `truncation` to `x` (and to
    `y` with `apply_to="inputs_and_targets"`) and then runs the ordinary Keras
    train step. `call`, `evaluate` and `predict` run the wrapped model on the
    data as given. `TauScheduler` finds the truncation layer through this
    wrapper. Compile the wrapper, not the inner model.

    Args:
        model: the Keras model to train (any model taking one image tensor).
        truncation: a `SpectralTruncation` layer (default: a cosine one at
            `tau = 1`, to be scheduled by `TauScheduler`).
        apply_to: `"inputs"` (classifiers) or `"inputs_and_targets"`
            (autoencoders and codecs; targets must be image batches too).
        **kwargs: base `Model` arguments (`name`, ...).

    Call arguments:
        inputs: the wrapped model's inputs.
        training: forwarded to the wrapped model.

    Example:

    >>> inner = keras.Sequential([keras.Input((32, 32, 3)),
    ...                           keras.layers.Conv2D(3, 3, padding="same")])
    >>> ae = SpectralTrainingModel(inner, SpectralTruncation(tau=0.1),
    ...                            apply_to="inputs_and_targets")
    >>> ae.compile("adam", "mse")
    >>> # ae.fit(x, x, epochs=20, callbacks=[TauScheduler(truncation_epochs=5)])
    >>> # ae.inner is the plain trained model, for saving/export.
    """

    def __init__(self, model, truncation=None, apply_to="inputs", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise ValueError(
                f"SpectralTrainingModel wraps a keras.Model; got {type(model).__name__}."
            )
        if truncation is None:
            truncation = SpectralTruncation()
        if not isinstance(truncation, SpectralTruncation):
            raise ValueError(
                "truncation must be a SpectralTruncation layer; got "
                f"{type(truncation).__name__}."
            )
        self.inner = model
        self.truncation = truncation
        self.apply_to = validate_apply_to(apply_to)

    def call(self, inputs, training=None):
        return self.inner(inputs, training=training)

    def build(self, input_shape):
        if not self.inner.built:
            self.inner.build(input_shape)
        if not self.truncation.built:
            self.truncation.build(input_shape)
        self.built = True

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        x = self.truncation(x, training=True)
        if self.apply_to == "inputs_and_targets":
            if y is None:
                raise ValueError(
                    "apply_to='inputs_and_targets' needs targets in the training data."
                )
            y = self.truncation(y, training=True)
        return super().train_step(keras.utils.pack_x_y_sample_weight(x, y, sample_weight))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "model": keras.saving.serialize_keras_object(self.inner),
                "truncation": keras.saving.serialize_keras_object(self.truncation),
                "apply_to": self.apply_to,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        model = keras.saving.deserialize_keras_object(
            config.pop("model"), custom_objects=custom_objects
        )
        truncation = keras.saving.deserialize_keras_object(
            config.pop("truncation"), custom_objects=custom_objects
        )
        return cls(model=model, truncation=truncation, **config)
