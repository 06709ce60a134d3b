"""Shared absl flags for spectral truncation and their translation to objects.

Every training app wires spectral truncation with::

    from dwt_keras.spectral.flags import define_spectral_flags, spectral_from_flags
    define_spectral_flags()                      # at import, next to the other flags
    ...
    spectral = spectral_from_flags(FLAGS, log_dir=FLAGS.log_dir)  # in main(), before compile
    model = spectral.wrap(model)                 # no-op without --spectral_reg
    model.fit(..., callbacks=callbacks + spectral.callbacks)
"""

import dataclasses

from absl import flags

from dwt_keras.spectral.options import SPECTRAL_FIELDS, SpectralOptions, spectral_report
from dwt_keras.spectral.schedule import TauScheduler, validate_epochs
from dwt_keras.spectral.truncation import (
    PROFILES,
    SpectralTruncation,
    _validate_rolloff,
    validate_profile,
    validate_tau,
)
from dwt_keras.spectral.wrapper import SpectralTrainingModel, validate_apply_to

__all__ = [
    "define_spectral_flags",
    "spectral_from_flags",
    "spectral_report",
    "SpectralOptions",
    "SpectralSetup",
    "SPECTRAL_FIELDS",
]


def define_spectral_flags(flag_values=flags.FLAGS, truncation_epochs=10):
    """Defines `--spectral_reg --tau_init --tau_final --truncation_epochs
    --mask_profile --mask_rolloff --spectral_per_step` (idempotent).

    Args:
        flag_values: the `absl.flags.FlagValues` to define them in.
        truncation_epochs: default of `--truncation_epochs`.
    """

    def define(kind, name, default, help_, **kw):
        if name not in flag_values:
            getattr(flags, kind)(name=name, default=default, help=help_, flag_values=flag_values, **kw)

    define(
        "DEFINE_bool",
        "spectral_reg",
        False,
        "Spectral truncation: low-pass training inputs in the 2-D DCT domain with a "
        "radial cut-off tau growing from --tau_init to --tau_final over "
        "--truncation_epochs epochs, then train on unfiltered data.",
    )
    define("DEFINE_float", "tau_init", 0.05, "First spectral cut-off, in (0, 1].")
    define("DEFINE_float", "tau_final", 1.0, "Last spectral cut-off, in [tau_init, 1].")
    define(
        "DEFINE_integer",
        "truncation_epochs",
        truncation_epochs,
        "Number of epochs with spectral truncation (>= 0).",
    )
    define(
        "DEFINE_enum",
        "mask_profile",
        "cosine",
        "Radial DCT mask: 'cosine' (flat pass-band r <= tau, cosine roll-off; identity "
        "at tau = 1) or 'linear' (published max(0, (tau - r) / tau)).",
        enum_values=list(PROFILES),
    )
    define(
        "DEFINE_float",
        "mask_rolloff",
        0.1,
        "Width of the cosine mask roll-off in normalised radius units, in [0, 1].",
    )
    define(
        "DEFINE_bool",
        "spectral_per_step",
        False,
        "Update tau every training step (from the optimizer's iterations) instead of "
        "every epoch.",
    )


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

    def wrap(self, model):
        """Returns `SpectralTrainingModel(model, new layer)` when enabled, else `model`.

        Call before `compile`. The trained plain model is `wrapped.inner`.
        """
        if not self.enabled:
            return model
        return SpectralTrainingModel(model, self.make_layer(), apply_to=self.apply_to)


def spectral_from_flags(flag_values=flags.FLAGS, apply_to="inputs", log_dir=None, **overrides):
    """Validates the spectral flags and builds the layer and its scheduler.

    Raises `ValueError` (before any training) for tau outside (0, 1],
    tau_final < tau_init, negative epochs or an unknown profile.

    Args:
        flag_values: parsed `FlagValues` (or any object with the flag
            attributes).
        apply_to: `"inputs"` (classifiers) or `"inputs_and_targets"`
            (autoencoders, codecs).
        log_dir: TensorBoard folder for the `spectral/tau` and
            `spectral/phase` scalars (None or "": History only).
        **overrides: values that replace flag values (same names).

    Returns:
        A `SpectralSetup`.
    """
    def get(name, default):
        if name in overrides:
            return overrides[name]
        return getattr(flag_values, name, default)

    apply_to = validate_apply_to(apply_to)
    enabled = bool(get("spectral_reg", False))
    tau_init = validate_tau(get("tau_init", 0.05), "tau_init")
    tau_final = validate_tau(get("tau_final", 1.0), "tau_final")
    epochs = validate_epochs(get("truncation_epochs", 10))
    profile = validate_profile(get("mask_profile", "cosine"))
    rolloff = _validate_rolloff(get("mask_rolloff", 0.1))
    per_step = bool(get("spectral_per_step", False))
    if tau_final < tau_init:
        raise ValueError(f"--tau_final ({tau_final}) must be >= --tau_init ({tau_init}).")
    options = SpectralOptions(enabled, tau_init, tau_final, epochs, profile, rolloff, per_step)
    if not enabled:
        return SpectralSetup(enabled=False, apply_to=apply_to, options=options)
    layer_kwargs = {"tau": tau_init, "profile": profile, "rolloff": rolloff}
    sched = TauScheduler(
        tau_init=tau_init,
        tau_final=tau_final,
        truncation_epochs=epochs,
        per_step=per_step,
        log_dir=log_dir or None,  # absl's --log_dir defaults to ""
    )
    return SpectralSetup(enabled=True, layer_kwargs=layer_kwargs, callbacks=[sched],
                         apply_to=apply_to, options=options)
