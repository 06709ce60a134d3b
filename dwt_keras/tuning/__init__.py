"""KerasTuner search spaces and a resumable search runner (see `apps/tune.py`).

* `CompressionHyperModel`: basis, level, mode, keep ratio, schedule, quantisation, learning rate
  and batch size of the DWT compression pipeline, scored by a size-aware objective
  (`objectives.size_aware_score`).
* `WMSAHyperModel`: width, depth, heads, DWT levels, wavelet, kernel on/off, learning rate and
  weight decay of the wavelet transformer.
* `SearchConfig`, `run_search`: the search behind the app, resumable and distributable.
"""

from dwt_keras._lazy import lazy_exports

_LAZY = {
    "CompressionHyperModel": "dwt_keras.tuning.hypermodels",
    "WMSAHyperModel": "dwt_keras.tuning.hypermodels",
    "size_aware_score": "dwt_keras.tuning.objectives",
    "OBJECTIVES": "dwt_keras.tuning.objectives",
    "SearchConfig": "dwt_keras.tuning.search",
    "run_search": "dwt_keras.tuning.search",
    "project_name": "dwt_keras.tuning.search",
    "make_tuner": "dwt_keras.tuning.search",
    "TUNERS": "dwt_keras.tuning.search",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
