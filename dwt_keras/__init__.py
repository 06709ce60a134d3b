"""dwt-keras: wavelet methods for deep learning in Keras 3.

Public names are imported lazily, so `import dwt_keras` stays fast and a user of one capability
does not pay for the others.
"""

from dwt_keras._lazy import lazy_exports

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    # wavelet transforms (PyWavelets names)
    **{n: "dwt_keras.wavelets" for n in (
        "dwt", "idwt", "wavedec", "waverec", "dwt2", "idwt2", "wavedec2", "waverec2",
        "get_wavelet", "dwt_max_level", "validate_mode", "MODES", "dwt_coeff_len")},
    "DWT2D": "dwt_keras.layers",
    "IDWT2D": "dwt_keras.layers",
    # DWT weight compression
    **{n: "dwt_keras.compression" for n in (
        "save_compressed", "load_compressed", "compress_model", "OneShotCompression",
        "IterativeCompression", "GradualCompression", "CompressionMetrics", "plan_model")},
    "build_model": "dwt_keras.experiments.registry",
    # learnable wavelet layers (Wolter et al. 2020)
    **{n: "dwt_keras.learnable" for n in (
        "WaveletDense", "FastfoodDense", "WaveletGRU", "FastfoodGRU", "WaveletGRUCell",
        "FastfoodGRUCell")},
    # spectral truncation
    **{n: "dwt_keras.spectral" for n in (
        "dct2", "idct2", "SpectralTruncation", "TauScheduler", "SpectralTrainingModel",
        "InterScaleRegularizer", "InterScaleScheduler")},
    # wavelet multi-scale attention transformer and its ViT baseline
    "WaveletTransformer": "dwt_keras.transformer",
    "ViT": "dwt_keras.transformer",
    # data and evaluation
    "load_arrays": "dwt_keras.data",
    "load_dataset": "dwt_keras.data",
    "make_datasets": "dwt_keras.data",
    "classification_metrics": "dwt_keras.evaluation",
    "evaluate_classifier": "dwt_keras.evaluation",
    "measure_latency": "dwt_keras.evaluation",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
