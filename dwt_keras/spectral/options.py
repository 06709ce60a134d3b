"""The spectral-truncation settings as plain values, shared by every recipe's config.

Kept free of Keras imports so that configs (and the apps' flag checks) stay light.
"""

import dataclasses

from dwt_keras.utils.options import option

__all__ = ["SpectralOptions", "SPECTRAL_FIELDS", "spectral_report"]


@dataclasses.dataclass
class SpectralOptions:
    """The spectral-truncation settings, as fields of a recipe's config dataclass.

    Recipe configs (`dwt_keras.experiments`) inherit these fields, and the apps' flags are made
    from them (same names); `dwt_keras.spectral.setup.spectral_setup(config)` turns them into a
    `SpectralSetup`.
    """

    spectral_reg: bool = option(
        False, "Spectral truncation: low-pass training inputs in the 2-D DCT domain with a radial "
        "cut-off tau growing from --tau_init to --tau_final over --truncation_epochs epochs, then "
        "train on unfiltered data.")
    tau_init: float = option(0.05, "First spectral cut-off, in (0, 1].", minimum=0.0,
                             exclusive_minimum=True, maximum=1.0)
    tau_final: float = option(1.0, "Last spectral cut-off, in [tau_init, 1].", minimum=0.0,
                              exclusive_minimum=True, maximum=1.0)
    truncation_epochs: int = option(10, "Number of epochs with spectral truncation (>= 0).",
                                    minimum=0)
    mask_profile: str = option(
        "cosine", "Radial DCT mask: 'cosine' (flat pass-band r <= tau, cosine roll-off; identity "
        "at tau = 1) or 'linear' (published max(0, (tau - r) / tau)).",
        choices=("linear", "cosine"))
    mask_rolloff: float = option(
        0.1, "Width of the cosine mask roll-off in normalised radius units, in [0, 1].",
        minimum=0.0, maximum=1.0)
    spectral_per_step: bool = option(
        False, "Update tau every training step (from the optimizer's iterations) instead of "
        "every epoch.")


SPECTRAL_FIELDS = tuple(f.name for f in dataclasses.fields(SpectralOptions))


def spectral_report(options, tau_history=(), phase_history=(), **extra):
    """The ``spectral`` block of an app's report.json.

    Args:
        options: anything with the `SPECTRAL_FIELDS` attributes.
        tau_history, phase_history: per epoch, the τ of its last step (1.0
            once off: Keras' History logs it) and 1 while truncation is on.
        **extra: app-specific entries (what was filtered, ...).

    Returns:
        ``{"enabled": False}`` without ``spectral_reg``, else the settings,
        ``tau_history``, ``phase_history`` and ``extra``.
    """
    if not options.spectral_reg:
        return {"enabled": False}
    out = {"enabled": True}
    out.update({k: getattr(options, k) for k in SPECTRAL_FIELDS[1:]})
    out["tau_history"] = [_number(v, float) for v in tau_history]
    out["phase_history"] = [_number(v, lambda x: int(float(x))) for v in phase_history]
    out.update(extra)
    return out


def _number(value, cast):
    # Histories read back from CSV (resumed runs) hold strings, and "" for a missing value.
    return None if value is None or value == "" else cast(value)
