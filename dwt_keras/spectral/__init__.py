"""Spectral truncation (a DCT-domain frequency curriculum) and inter-scale regularisation.

Public API:

* `dct2`, `idct2`: orthonormal 2-D DCT-II / inverse over (H, W) of
  channels-last batches.
* `SpectralTruncation`: training-only radial low-pass layer (tau in a
  non-trainable variable); `spectral_mask`, `radius_grid`.
* `TauScheduler`: the tau_init -> tau_final curriculum callback.
* `SpectralTrainingModel`: filters inputs, or inputs and targets, in `fit` only.
* `InterScaleRegularizer`, `InterScaleScheduler`: the "Phase 2" penalty
  between consecutive scales of multi-scale features;
  `level_maps_from_metadata` / `tokens_to_maps` turn token models' levels
  (the W-MSA transformer's) into maps.
* `SequenceImageTruncation`: the same for images read as sequences (sequential MNIST).
* `setup.spectral_setup`: the layer, scheduler and wrapper of a run from its settings
  (`options.SpectralOptions`).
* `study`: the statistics and table of the convergence study (the runs are
  `dwt_keras.experiments.spectral_study`); `figures`: the tau-progression and mask-profile PNGs.
"""

from dwt_keras.spectral.dct import dct2, dct_matrix, idct2
from dwt_keras.spectral.interscale import (
    InterScaleRegularizer,
    InterScaleScheduler,
    level_maps_from_metadata,
    tokens_to_maps,
)
from dwt_keras.spectral.schedule import TauScheduler, find_truncation_layers, tau_at
from dwt_keras.spectral.truncation import (
    PROFILES,
    SequenceImageTruncation,
    SpectralTruncation,
    radius_grid,
    spectral_mask,
)
from dwt_keras.spectral.wrapper import APPLY_TO, SpectralTrainingModel

__all__ = [
    "APPLY_TO",
    "InterScaleRegularizer",
    "InterScaleScheduler",
    "PROFILES",
    "SequenceImageTruncation",
    "SpectralTrainingModel",
    "SpectralTruncation",
    "TauScheduler",
    "dct2",
    "dct_matrix",
    "find_truncation_layers",
    "idct2",
    "level_maps_from_metadata",
    "radius_grid",
    "spectral_mask",
    "tau_at",
    "tokens_to_maps",
]
