"""The experiment engine: every app and the tuner run through it.

`run.py` holds the steps every run shares (`Environment`, `load_data`, `Run`: folder and status,
build, compile, fit with the shared callbacks, selection, evaluation, finish, report);
`recipe.py` what a capability supplies (`Recipe`); `members.py` folds and ensembles for every
recipe; `options.py` the settings every recipe shares; `registry.py` the one model registry.
The recipes: `compression` (apps/DWT_model.py), `sweep` (apps/compression_sweep.py),
`transformer` (apps/wmsa_cifar10.py), `learnable` (apps/learnable_wavelet.py),
`spectral_study` (apps/spectral_study.py) and `compare` (apps/compare_models.py).
"""

from dwt_keras._lazy import lazy_exports

_LAZY = {
    "RunOptions": "dwt_keras.experiments.options",
    "TrainingOptions": "dwt_keras.experiments.options",
    "Run": "dwt_keras.experiments.run",
    "Selection": "dwt_keras.experiments.run",
    "Environment": "dwt_keras.experiments.run",
    "load_data": "dwt_keras.experiments.run",
    "Recipe": "dwt_keras.experiments.recipe",
    "build_model": "dwt_keras.experiments.registry",
    "MODELS": "dwt_keras.experiments.registry",
    "CompressionConfig": "dwt_keras.experiments.compression",
    "run_compression": "dwt_keras.experiments.compression",
    "SweepConfig": "dwt_keras.experiments.sweep",
    "run_sweep": "dwt_keras.experiments.sweep",
    "TransformerConfig": "dwt_keras.experiments.transformer",
    "run_transformer": "dwt_keras.experiments.transformer",
    "LearnableConfig": "dwt_keras.experiments.learnable",
    "run_learnable": "dwt_keras.experiments.learnable",
    "StudyConfig": "dwt_keras.experiments.spectral_study",
    "run_study": "dwt_keras.experiments.spectral_study",
    "CompareConfig": "dwt_keras.experiments.compare",
    "run_compare": "dwt_keras.experiments.compare",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
