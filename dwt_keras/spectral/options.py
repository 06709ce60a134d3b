"""The spectral-truncation settings as plain values, shared by every app's config.

Kept free of Keras imports so that configs (and the apps' flag checks) stay light.
"""

import dataclasses

__all__ = ["SpectralOptions", "SPECTRAL_FIELDS", "spectral_report"]


@dataclasses.dataclass
class SpectralOptions:
    """The spectral-truncation settings, as fields of an app's config dataclass.

    App configs (`CompressionConfig`, `TrainConfig`, `ExperimentConfig`, ...)
    inherit these fields, so every app has the same names as the flags of
    `define_spectral_flags`; `spectral_from_flags(config)` turns them into a
    `SpectralSetup`.
    """

    spectral_reg: bool = False
    tau_init: float = 0.05
    tau_final: float = 1.0
    truncation_epochs: int = 10
    mask_profile: str = "cosine"
    mask_rolloff: float = 0.1
    spectral_per_step: bool = False


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
