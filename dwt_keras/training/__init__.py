"""Training pieces every recipe of the experiment engine uses: distribution strategies, the
optimizer factory and learning-rate schedules, the TensorBoard callback set and the engine's
callbacks, augmentation, regularisation, cross-validation folds, ensembles, saliency maps,
transfer learning and export. Nothing here runs an experiment (that is
`dwt_keras.experiments`), and nothing here imports a capability package.

Names are imported on first use.
"""

from dwt_keras._lazy import lazy_exports

_LAZY = {
    "STRATEGIES": "dwt_keras.training.strategy",
    "get_strategy": "dwt_keras.training.strategy",
    "configure_logical_cpus": "dwt_keras.training.strategy",
    "TensorBoard": "dwt_keras.training.callbacks",
    "standard_callbacks": "dwt_keras.training.callbacks",
    "EpochTimer": "dwt_keras.training.callbacks",
    "ResumableEarlyStopping": "dwt_keras.training.callbacks",
    "make_optimizer": "dwt_keras.training.optimizers",
    "make_lr_schedule": "dwt_keras.training.schedules",
    "make_learning_rate": "dwt_keras.training.schedules",
    "LinearWarmup": "dwt_keras.training.schedules",
    "CyclicalLearningRate": "dwt_keras.training.schedules",
    "build_augmentation": "dwt_keras.training.augmentation",
    "augment_training_dataset": "dwt_keras.training.augmentation",
    "apply_regularization": "dwt_keras.training.regularization",
    "recalibrate_batchnorm": "dwt_keras.training.batchnorm",
    "cross_validate": "dwt_keras.training.cross_validation",
    "build_ensemble": "dwt_keras.training.ensemble",
    "write_saliency_pngs": "dwt_keras.training.saliency",
    "prepare_transfer": "dwt_keras.training.transfer",
    "export_model": "dwt_keras.training.export",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY)
