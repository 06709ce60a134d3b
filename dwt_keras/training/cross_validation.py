"""k-fold cross-validation (`--cv_folds`) on the training split, scored on the test split.

The folds partition the official *training* split only (the training and validation parts of a
`DatasetSplits`, pooled). Fold `i` trains on the other `k - 1` folds and uses fold `i` as its
validation data (early stopping, model selection); every fold's model is then evaluated on the
untouched official test split, and the report gives the mean and the sample standard deviation
(ddof=1) of each test metric across the `k` models. The test split never takes part in training
or selection.
"""

import dataclasses

import numpy as np


def validate_cv_folds(k):
    """`k` must be 0 (off) or an integer >= 2."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or (k != 0 and k < 2):
        raise ValueError(f"--cv_folds must be 0 (off) or an integer >= 2, got {k!r}: one fold "
                         "would leave no data to validate on.")


def kfold_indices(y, k, seed=0, stratified=True):
    """`k` (train_idx, val_idx) pairs over `len(y)` samples (scikit-learn's (Stratified)KFold).

    Raises:
        ValueError: `k < 2`, more folds than samples, or (stratified) than samples of a class.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    validate_cv_folds(k)
    if k == 0:
        raise ValueError("kfold_indices needs k >= 2.")
    y = np.asarray(y).reshape(-1)
    if k > len(y):
        raise ValueError(f"--cv_folds {k} exceeds the {len(y)} training samples.")
    if stratified:
        counts = np.bincount(y.astype(np.int64))
        smallest = int(counts[counts > 0].min())
        if k > smallest:
            raise ValueError(f"--cv_folds {k} exceeds the {smallest} samples of the rarest class; "
                             "use fewer folds.")
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
        return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)), y)]
    splitter = KFold(n_splits=k, shuffle=True, random_state=seed)
    return [(tr, va) for tr, va in splitter.split(np.zeros(len(y)))]


def fold_splits(splits, k, seed=0):
    """Yields `(fold, DatasetSplits)` for each of the `k` folds of the pooled training split.

    The test arrays are passed through unchanged.
    """
    x_pool = np.concatenate([splits.x_train, splits.x_val]) if len(splits.x_val) else splits.x_train
    y_pool = np.concatenate([splits.y_train, splits.y_val]) if len(splits.y_val) else splits.y_train
    for fold, (tr, va) in enumerate(kfold_indices(y_pool, k, seed=seed)):
        info = dict(splits.info, fold=fold, cv_folds=k, n_train=int(len(tr)), n_val=int(len(va)))
        yield fold, dataclasses.replace(
            splits, x_train=x_pool[tr], y_train=y_pool[tr], x_val=x_pool[va], y_val=y_pool[va],
            info=info)


def summarize_folds(fold_results):
    """Mean and sample std (ddof=1) of every numeric top-level metric across folds."""
    keys = [k for k, v in fold_results[0].items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)]
    summary = {}
    for key in keys:
        values = np.array([float(r[key]) for r in fold_results if key in r])
        summary[key] = {
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            "values": values.tolist(),
        }
    return summary


def cross_validate(splits, k, train_fn, evaluate_fn=None, seed=0):
    """Trains one model per fold and scores each on the test split.

    Args:
        splits: a `DatasetSplits` (its training + validation parts are pooled into folds).
        k: the number of folds (>= 2).
        train_fn: `train_fn(fold_splits, fold) -> model` (train on `fold_splits.x_train`, select
            or early-stop on `fold_splits.x_val`).
        evaluate_fn: `evaluate_fn(model, x_test, y_test) -> dict`; default
            `dwt_keras.evaluation.evaluate_classifier`.
        seed: the fold assignment seed.

    Returns:
        `{"cv_folds": k, "folds": [per-fold metrics + n_train/n_val], "summary": {metric: {mean,
        std, values}}}`.

    Example:

    ```python
    result = cross_validate(splits, 5, lambda s, i: train_model(s, seed=i))
    print(result["summary"]["accuracy"])   # {"mean": ..., "std": ..., "values": [...]}
    ```
    """
    validate_cv_folds(k)
    if k == 0:
        raise ValueError("cross_validate needs k >= 2.")
    if evaluate_fn is None:
        from dwt_keras.evaluation import evaluate_classifier

        def evaluate_fn(model, x, y):
            return evaluate_classifier(model, x, y, class_names=splits.info.get("class_names"))

    folds = []
    for fold, fs in fold_splits(splits, k, seed=seed):
        model = train_fn(fs, fold)
        metrics = dict(evaluate_fn(model, splits.x_test, splits.y_test))
        metrics.update(fold=fold, n_train=fs.info["n_train"], n_val=fs.info["n_val"])
        folds.append(metrics)
    summary = summarize_folds([{k2: v for k2, v in f.items()
                                if k2 not in ("fold", "n_train", "n_val", "n")} for f in folds])
    return {"cv_folds": k, "seed": seed, "evaluated_on": "test", "folds": folds,
            "summary": summary}
