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

__all__ = ["APPLY_TO", "PlainModelCallback", "SpectralTrainingModel", "validate_apply_to"]

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

    def get_layer(self, name=None, index=None):
        """The wrapped model's layer (by `name` or `index`), else the wrapper's own.

        Callbacks handed this wrapper during `fit` (compression, TensorBoard, the
        caller's) look layers up by the plain model's names.
        """
        try:
            return self.inner.get_layer(name=name, index=index)
        except ValueError:
            return super().get_layer(name=name, index=index)

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


class PlainModelCallback(keras.callbacks.Callback):
    """Runs `callback` during a `SpectralTrainingModel.fit` as if the plain model were fitted.

    Keras hands every callback the model being fitted, i.e. the wrapper; a
    callback that saves weights (KerasTuner's checkpoints, `ModelCheckpoint`),
    reads the input shape or walks the layers should see the plain model that
    is saved and reloaded later. This adapter gives it the wrapper's `inner`
    model and forwards every hook; a `stop_training` request set on the plain
    model is passed on to the wrapper so that the fit loop stops.

    Args:
        callback: the callback to run.
        model: the plain model it should see (the wrapper's `inner`).

    Example:

    >>> # wrapper.fit(x, y, callbacks=[sched,
    >>> #     PlainModelCallback(keras.callbacks.ModelCheckpoint("m.keras"), wrapper.inner)])
    """

    def __init__(self, callback, model):
        super().__init__()
        self.callback = callback
        self.plain_model = model

    def set_model(self, model):
        super().set_model(model)
        self.callback.set_model(self.plain_model)

    def set_params(self, params):
        super().set_params(params)
        self.callback.set_params(params)

    def _forward(self, hook, *args, **kwargs):
        getattr(self.callback, hook)(*args, **kwargs)
        if getattr(self.plain_model, "stop_training", False) and self.model is not None:
            self.model.stop_training = True


def _forwarding_hook(hook):
    def method(self, *args, **kwargs):
        self._forward(hook, *args, **kwargs)

    method.__name__ = hook
    return method


for _hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
              "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
              "on_predict_batch_begin", "on_predict_batch_end"):
    setattr(PlainModelCallback, _hook, _forwarding_hook(_hook))
del _hook
