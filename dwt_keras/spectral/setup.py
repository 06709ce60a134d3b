"""Spectral truncation of a training run: the layer, its scheduler and the wrapper, from settings.

Every recipe of the experiment engine wires spectral truncation with::

    spectral = spectral_setup(config, log_dir=...)   # config: a SpectralOptions (sub)class
    trainer = spectral.wrap(model)                   # the model itself without spectral_reg
    trainer.fit(..., callbacks=callbacks + spectral.callbacks)

`spectral_setup` validates the settings (tau in (0, 1], tau_final >= tau_init, ...) whether or
not `spectral_reg` is on, so a typo is reported before any training.
"""

import dataclasses

from dwt_keras.spectral.options import SpectralOptions
from dwt_keras.spectral.schedule import TauScheduler, validate_epochs
from dwt_keras.spectral.truncation import (
    SpectralTruncation,
    _validate_rolloff,
    validate_profile,
    validate_tau,
)
from dwt_keras.spectral.wrapper import SpectralTrainingModel, validate_apply_to
from dwt_keras.utils.options import OptionError

__all__ = ["SpectralSetup", "spectral_setup"]


@dataclasses.dataclass
class SpectralSetup:
    """What an app needs to train with spectral truncation.

    Attributes:
        enabled: `--spectral_reg`.
        layer_kwargs: `SpectralTruncation` arguments (tau, profile, rolloff).
        callbacks: `[TauScheduler]` when enabled, else `[]`. The scheduler finds
            the layer in the model it is given, so the same list works for every
            model `wrap` returns (e.g. KerasTuner trials, which deep-copy it).
        apply_to: `"inputs"` or `"inputs_and_targets"`.
        options: the validated `SpectralOptions` it was made from.
    """

    enabled: bool
    layer_kwargs: dict = dataclasses.field(default_factory=dict)
    callbacks: list = dataclasses.field(default_factory=list)
    apply_to: str = "inputs"
    options: SpectralOptions = None

    def make_layer(self):
        """A new `SpectralTruncation` layer with the flag settings."""
        return SpectralTruncation(**self.layer_kwargs)

    def wrap(self, model, sequence_image_shape=None):
        """Returns `SpectralTrainingModel(model, new layer)` when enabled, else `model`.

        Call before `compile`. The trained plain model is `wrapped.inner`.

        Args:
            model: the plain model.
            sequence_image_shape: `(H, W, C)` when the model reads images as sequences
                (`(batch, H * W, C)`, sequential MNIST): the layer is then a
                `SequenceImageTruncation` that filters the picture, not the pixel stream.
        """
        if not self.enabled:
            return model
        if sequence_image_shape is not None:
            from dwt_keras.spectral.truncation import SequenceImageTruncation

            layer = SequenceImageTruncation(sequence_image_shape, **self.layer_kwargs)
        else:
            layer = self.make_layer()
        return SpectralTrainingModel(model, layer, apply_to=self.apply_to)


def spectral_setup(options, apply_to="inputs", log_dir=None):
    """Validates the spectral settings of `options` and builds the layer and its scheduler.

    Args:
        options: anything with the `SpectralOptions` fields (a recipe config).
        apply_to: `"inputs"` (classifiers) or `"inputs_and_targets"` (autoencoders, codecs).
        log_dir: TensorBoard folder for the `spectral/tau` and `spectral/phase` scalars
            (None or "": History only).

    Returns:
        A `SpectralSetup`.

    Raises:
        ValueError: tau outside (0, 1], tau_final < tau_init, negative truncation_epochs or an
            unknown mask profile (checked even with `spectral_reg=False`).
    """
    def get(name):
        return getattr(options, name, getattr(SpectralOptions, name))

    apply_to = validate_apply_to(apply_to)
    enabled = bool(get("spectral_reg"))
    tau_init = validate_tau(get("tau_init"), "tau_init")
    tau_final = validate_tau(get("tau_final"), "tau_final")
    epochs = validate_epochs(get("truncation_epochs"))
    profile = validate_profile(get("mask_profile"))
    rolloff = _validate_rolloff(get("mask_rolloff"))
    per_step = bool(get("spectral_per_step"))
    if tau_final < tau_init:
        raise OptionError("tau_final", f"`tau_final` must be >= `tau_init`. Received: "
                                       f"tau_final={tau_final}, tau_init={tau_init}")
    settings = SpectralOptions(enabled, tau_init, tau_final, epochs, profile, rolloff, per_step)
    if not enabled:
        return SpectralSetup(enabled=False, apply_to=apply_to, options=settings)
    layer_kwargs = {"tau": tau_init, "profile": profile, "rolloff": rolloff}
    scheduler = TauScheduler(tau_init=tau_init, tau_final=tau_final, truncation_epochs=epochs,
                             per_step=per_step, log_dir=log_dir or None)
    return SpectralSetup(enabled=True, layer_kwargs=layer_kwargs, callbacks=[scheduler],
                         apply_to=apply_to, options=settings)
