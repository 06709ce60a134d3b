"""Applying the training extras in an app with a few calls.

Every app that trains a classifier does the same steps around its own model and report; these
helpers do them from `TrainingOptions` (see `dwt_keras.training.flags`):

```python
opts = TrainingOptions.from_flags(FLAGS)
strategy = get_strategy(FLAGS.strategy)
train_ds = augment_train_dataset(train_ds, opts, splits.info["image_shape"], FLAGS.seed)
model = prepare_model(lambda: build_model(...), opts, strategy, num_classes)
lr = learning_rate(opts, FLAGS.lr, splits.info["n_train"], FLAGS.batch_size, FLAGS.epochs,
                   strategy)
with strategy.scope():
    model.compile(optimizer=keras.optimizers.Adam(lr), ...)
callbacks = training_callbacks(opts, FLAGS.log_dir, model, sample_images=splits.x_val[:4])
model.fit(train_ds, validation_data=val_ds, epochs=FLAGS.epochs, callbacks=callbacks)
report["extras"] = finish_run(opts, model, splits, run_dir)
```

`--cv_folds` and `--ensemble` wrap a whole training run: `run_folds_or_ensemble`.
"""

import math

import numpy as np

from dwt_keras.training.flags import TrainingOptions


def augment_train_dataset(train_ds, opts, image_shape, seed=0):
    """Adds `--augment` to the (batched) training pipeline; other splits are never augmented."""
    from dwt_keras.training.augmentation import augment_dataset, build_augmentation

    return augment_dataset(train_ds, build_augmentation(opts.augment, image_shape, seed=seed))


def prepare_model(build_fn, opts, strategy=None, num_classes=None):
    """Builds (or loads with `--init_from`) the model under `strategy` and regularises it.

    Args:
        build_fn: `() -> keras.Model` (the app's own builder; not called with `--init_from`).
        opts: `TrainingOptions`.
        strategy: the `tf.distribute` strategy whose scope holds the variables.
        num_classes: classes of the task (a loaded model's head is replaced if it differs).

    Returns:
        An uncompiled model (`model._dwt_transfer` holds the transfer info when loaded).
    """
    import contextlib

    from dwt_keras.training.regularization import apply_regularization
    from dwt_keras.training.transfer import prepare_transfer

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        info = None
        if opts.init_from:
            if num_classes is None:
                raise ValueError("prepare_model needs num_classes with --init_from.")
            model, info = prepare_transfer(opts.init_from, num_classes, freeze=opts.freeze)
        else:
            model = build_fn()
        model = apply_regularization(model, l1=opts.l1, l2=opts.l2, dropout=opts.dropout,
                                     batch_norm=opts.batch_norm)
        if info is not None and opts.freeze:
            from dwt_keras.training.transfer import freeze_all_but_head

            freeze_all_but_head(model)   # layers inserted by regularisation stay frozen too
    if info is not None:
        object.__setattr__(model, "_dwt_transfer", info)
    return model


def learning_rate(opts, lr, n_train, batch_size, epochs, strategy=None):
    """The `--lr_schedule` for `epochs` epochs of `n_train` samples (global batch size).

    `batch_size` is the global batch (what `tf.data` batches); under a strategy each replica gets
    `batch_size / num_replicas`, and the number of optimizer steps is unchanged.
    """
    from dwt_keras.training.schedules import make_lr_schedule

    steps = max(1, int(math.ceil(int(n_train) / int(batch_size))))
    return make_lr_schedule(opts.lr_schedule, lr, steps_per_epoch=steps, epochs=max(1, epochs))


def training_callbacks(opts, log_dir, model, sample_images=None, **tensorboard_kwargs):
    """The TensorBoard set (`--log_dir`) and early stopping (`--early_stopping_patience`)."""
    from dwt_keras.training.callbacks import early_stopping, standard_callbacks

    callbacks = standard_callbacks(log_dir, model, sample_images=sample_images,
                                   **tensorboard_kwargs)
    es = early_stopping(opts.early_stopping_patience)
    return callbacks + ([es] if es is not None else [])


def finish_run(opts, model, splits, run_dir, n_saliency=None):
    """Saliency PNGs (`--saliency_images`) and the export (`--export`) of the final model.

    Returns:
        A JSON-ready dict with `saliency` and `export` entries (absent when off).
    """
    import pathlib

    out = {}
    n = opts.saliency_images if n_saliency is None else n_saliency
    if n:
        from dwt_keras.training.saliency import write_saliency_pngs

        out["saliency"] = write_saliency_pngs(
            model, splits.x_test[:n], splits.y_test[:n], pathlib.Path(run_dir) / "saliency",
            class_names=splits.info.get("class_names"))
    if opts.export not in (None, "none"):
        from dwt_keras.training.export import export_model

        out["export"] = export_model(model, opts.export, run_dir, splits.x_test)
    if getattr(model, "_dwt_transfer", None):
        out["transfer"] = model._dwt_transfer
    return out


def run_folds_or_ensemble(opts, splits, train_fn, evaluate_fn=None, seed=0, member_files=None):
    """Runs `--cv_folds` or `--ensemble` around `train_fn`, or returns `None` when both are off.

    Args:
        opts: `TrainingOptions`.
        splits: the `DatasetSplits`.
        train_fn: `train_fn(splits, seed) -> model`: one complete training run (the app's own,
            with its callbacks and compression); for folds, `splits` is the fold's.
        evaluate_fn: `(model, x, y) -> dict` on the test split; default `evaluate_classifier`.
        seed: the base seed (fold assignment; ensemble member `i` uses `seed + i`).
        member_files: `fn(model, i) -> path` that stores ensemble member `i` (e.g. its compressed
            file) so the report counts the ensemble's total bytes.

    Returns:
        `{"cross_validation": ...}`, or `{"ensemble": ..., "model": <the averaged Keras model>}`
        (pop `"model"` before writing the report), with test-split metrics.
    """
    from dwt_keras.evaluation import evaluate_classifier

    if evaluate_fn is None:
        def evaluate_fn(model, x, y):
            return evaluate_classifier(model, x, y, class_names=splits.info.get("class_names"))

    if opts.cv_folds:
        from dwt_keras.training.cross_validation import cross_validate

        return {"cross_validation": cross_validate(
            splits, opts.cv_folds, lambda fs, fold: train_fn(fs, seed + fold), evaluate_fn,
            seed=seed)}
    if opts.ensemble > 1:
        from dwt_keras.training.ensemble import build_ensemble, ensemble_bytes, train_ensemble

        members = train_ensemble(opts.ensemble, lambda i, s: train_fn(splits, s), seed=seed)
        member_metrics = [evaluate_fn(m, splits.x_test, splits.y_test) for m in members]
        model = build_ensemble(members, input_shape=splits.x_test.shape[1:])
        result = {"n_members": opts.ensemble, "evaluated_on": "test",
                  "test": evaluate_fn(model, splits.x_test, splits.y_test),
                  "members_test_accuracy": [float(m.get("accuracy", np.nan))
                                            for m in member_metrics]}
        if member_files is not None:
            result["bytes"] = ensemble_bytes([member_files(m, i) for i, m in enumerate(members)])
        return {"ensemble": result, "model": model}
    return None


__all__ = ["TrainingOptions", "augment_train_dataset", "prepare_model", "learning_rate",
           "training_callbacks", "finish_run", "run_folds_or_ensemble"]
