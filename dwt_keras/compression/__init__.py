"""DWT weight compression for Keras models: prune in a wavelet (or DCT / identity) basis that
follows the weights' geometry, retrain with the coefficient mask held, store only what is kept.

Main entry points:

* `plan_model` (bases): the per-layer transform plan (axes, levels, fallbacks); ``basis="auto"`` /
  `AutoBasis` chooses each layer's basis on its trained weights (auto).
* `OneShotCompression`, `IterativeCompression`, `GradualCompression` (callbacks): schedules for
  ``model.fit()``; `CompressionMetrics` logs sparsity and the measured compression ratio.
* `compress_model`: one-shot pruning without a callback.
* `add_compressibility_penalty` (penalty): L1 / log-sum / group-lasso training in the basis;
  `dead_units` lists the output units that can be removed.
* `save_compressed` / `load_compressed` (storage): the compressed file; `choose_bits` (bitwidth):
  per-layer k-means bit widths chosen on a validation split
  (``load_compressed(path, form="coefficient")`` for the coefficient form).
* `WaveletDomainDense`, `to_coefficient_domain`, `to_dense`, `retrain_coefficient_domain`
  (coefficient_domain): layers that hold and multiply only the kept coefficients.
* `deployment_profile` (deployment): memory, multiply-adds and latency of served forms.
* `export_litert`, `evaluate_litert`, `litert_latency_ms` (litert): the LiteRT export.
* `compression_scalars`, `compression_histograms` (tensorboard): what `--log_dir` shows of it.

The whole experiment behind ``apps/DWT_model.py`` is the engine's compression recipe,
`dwt_keras.experiments.compression.run_compression`.
"""

from dwt_keras._lazy import lazy_exports

_LAZY = {
    "plan_model": "dwt_keras.compression.bases",
    "format_plan": "dwt_keras.compression.bases",
    "LayerPlan": "dwt_keras.compression.bases",
    "AutoBasis": "dwt_keras.compression.bases",
    "CompressibilityPenalty": "dwt_keras.compression.penalty",
    "add_compressibility_penalty": "dwt_keras.compression.penalty",
    "remove_compressibility_penalty": "dwt_keras.compression.penalty",
    "dead_units": "dwt_keras.compression.penalty",
    "KernelTransform": "dwt_keras.compression.bases",
    "select_masks": "dwt_keras.compression.selection",
    "CompressionState": "dwt_keras.compression.constraints",
    "CoefficientMaskConstraint": "dwt_keras.compression.constraints",
    "get_state": "dwt_keras.compression.constraints",
    "compress_model": "dwt_keras.compression.api",
    "OneShotCompression": "dwt_keras.compression.callbacks",
    "IterativeCompression": "dwt_keras.compression.callbacks",
    "GradualCompression": "dwt_keras.compression.callbacks",
    "CompressionMetrics": "dwt_keras.compression.callbacks",
    "save_compressed": "dwt_keras.compression.storage",
    "load_compressed": "dwt_keras.compression.storage",
    "CompressedFileError": "dwt_keras.compression.storage",
    "byte_breakdown": "dwt_keras.compression.storage",
    "choose_bits": "dwt_keras.compression.bitwidth",
    "dense_float32_bytes": "dwt_keras.compression.sizes",
    "size_report": "dwt_keras.compression.sizes",
    "compression_scalars": "dwt_keras.compression.tensorboard",
    "compression_histograms": "dwt_keras.compression.tensorboard",
    "WaveletDomainDense": "dwt_keras.compression.coefficient_domain",
    "to_coefficient_domain": "dwt_keras.compression.coefficient_domain",
    "to_dense": "dwt_keras.compression.coefficient_domain",
    "coefficient_domain_record": "dwt_keras.compression.coefficient_domain",
    "retrain_coefficient_domain": "dwt_keras.compression.coefficient_domain",
    "copy_coefficients_back": "dwt_keras.compression.coefficient_domain",
    "deployment_profile": "dwt_keras.compression.deployment",
    "export_litert": "dwt_keras.compression.litert",
    "export_dense_litert": "dwt_keras.compression.litert",
    "evaluate_litert": "dwt_keras.compression.litert",
    "litert_latency_ms": "dwt_keras.compression.litert",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
