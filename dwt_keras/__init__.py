"""dwt-keras: wavelet methods for deep learning in Keras 3.

Public names are imported lazily, so `import dwt_keras` stays fast and a user of one capability
does not pay for the others.
"""

import importlib

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    # wavelet transforms (PyWavelets names)
    **{n: "dwt_keras.wavelets" for n in (
        "dwt", "idwt", "wavedec", "waverec", "dwt2", "idwt2", "wavedec2", "waverec2",
        "get_wavelet", "dwt_max_level")},
    "DWT2D": "dwt_keras.layers",
    "IDWT2D": "dwt_keras.layers",
    # data and evaluation
    "load_arrays": "dwt_keras.data",
    "load_dataset": "dwt_keras.data",
    "make_datasets": "dwt_keras.data",
    "classification_metrics": "dwt_keras.evaluation",
    "evaluate_classifier": "dwt_keras.evaluation",
    "measure_latency": "dwt_keras.evaluation",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dwt_keras' has no attribute '{name}'")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
