"""Training features shared by every app: distribution strategies, the TensorBoard callback set,
learning-rate schedules, augmentation, regularisation, cross-validation, ensembles, saliency maps,
transfer learning, export, and their absl flags.

Names are imported on first use, so that `from dwt_keras.training import define_training_flags`
does not pay for the heavier submodules.
"""

from dwt_keras._lazy import lazy_exports

_LAZY = {
    "STRATEGIES": "dwt_keras.training.strategy",
    "get_strategy": "dwt_keras.training.strategy",
    "configure_logical_cpus": "dwt_keras.training.strategy",
    "TensorBoard": "dwt_keras.training.callbacks",
    "standard_callbacks": "dwt_keras.training.callbacks",
    "early_stopping": "dwt_keras.training.callbacks",
    "make_lr_schedule": "dwt_keras.training.schedules",
    "CyclicalLearningRate": "dwt_keras.training.schedules",
    "build_augmentation": "dwt_keras.training.augmentation",
    "apply_regularization": "dwt_keras.training.regularization",
    "recalibrate_batchnorm": "dwt_keras.training.batchnorm",
    "cross_validate": "dwt_keras.training.cross_validation",
    "build_ensemble": "dwt_keras.training.ensemble",
    "write_saliency_pngs": "dwt_keras.training.saliency",
    "prepare_transfer": "dwt_keras.training.transfer",
    "export_model": "dwt_keras.training.export",
    "TrainingOptions": "dwt_keras.training.flags",
    "define_training_flags": "dwt_keras.training.flags",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
