"""`--cv_folds` and `--ensemble` for the compression experiment (`apps/DWT_model.py`).

Both run the whole compression experiment several times inside ONE new parent folder under
`--save_dir` (each run in its own sub-folder with its usual `report.json` and compressed file),
then write a summary there:

* `cv_report.json`: fold `i` trains on the other folds of the *training* split and early-stops
  on fold `i`; every fold's compressed model is evaluated on the official test split; the
  summary holds the mean and sample standard deviation (ddof=1) of the test metrics of the dense
  and of the compressed models, and of the compression ratio.
* `ensemble_report.json`: N runs with seeds `seed, ..., seed + N - 1`; their compressed files are
  loaded and averaged at the logits; the ensemble is evaluated on the test split and its size is
  the sum of its members' compressed files (its compression ratio: one dense float32 model's
  bytes times N over that sum, i.e. against a dense ensemble of the same size).
"""

import dataclasses



def _compressed_scalars(report):
    c, d = report["compressed"], report["dense"]
    return {"test_accuracy": c["test_accuracy"], "test_loss": c["test_loss"],
            "f1_macro": c["f1_macro"], "compression_ratio": c["compression_ratio"],
            "bytes_compressed_file": c["bytes_compressed_file"],
            "dense_test_accuracy": d["test_accuracy"]}


def run_cross_validation(config, k, run_fn=None):
    """Runs the compression experiment on `k` folds of the training split.

    Args:
        config: a `CompressionConfig` (its `save_dir` gets one new parent folder).
        k: folds (>= 2).
        run_fn: `run_fn(config, splits) -> report` (default: `run_compression_experiment`).

    Returns:
        The summary dict (also written as `<parent>/cv_report.json`).
    """
    from dwt_keras.compression import pipeline
    from dwt_keras.training.cross_validation import fold_splits, summarize_folds, validate_cv_folds
    from dwt_keras.utils.io import atomic_write_json, make_run_dir

    validate_cv_folds(k)
    run_fn = run_fn or pipeline.run_compression_experiment
    splits = pipeline.load_data(config)
    parent = make_run_dir(config.save_dir, f"cv{k}-{config.dataset}-{config.model}-{config.wavelet}")
    folds = []
    for fold, fs in fold_splits(splits, k, seed=config.seed):
        fold_config = dataclasses.replace(config, save_dir=str(parent), run_name=f"fold{fold}")
        report = run_fn(fold_config, fs)
        row = _compressed_scalars(report)
        row.update(fold=fold, n_train=fs.info["n_train"], n_val=fs.info["n_val"],
                   report=report["files"]["report"])
        folds.append(row)
    summary = summarize_folds([{k2: v for k2, v in r.items()
                                if k2 not in ("fold", "n_train", "n_val", "report")}
                               for r in folds])
    out = {"cv_folds": k, "seed": config.seed, "evaluated_on": "test",
           "folds_from": "training split (train + validation parts pooled)", "folds": folds,
           "summary": summary, "run_dir": str(parent)}
    atomic_write_json(parent / "cv_report.json", out)
    return out


def run_ensemble(config, n, run_fn=None):
    """Runs the compression experiment `n` times (seeds `seed + i`) and averages the members.

    Returns:
        The summary dict (also written as `<parent>/ensemble_report.json`).
    """
    from dwt_keras.compression import pipeline
    from dwt_keras.compression.storage import load_compressed
    from dwt_keras.evaluation import evaluate_classifier
    from dwt_keras.training.ensemble import build_ensemble, ensemble_bytes, validate_ensemble_size
    from dwt_keras.utils.io import atomic_write_json, make_run_dir

    validate_ensemble_size(n)
    run_fn = run_fn or pipeline.run_compression_experiment
    splits = pipeline.load_data(config)
    parent = make_run_dir(config.save_dir, f"ensemble{n}-{config.dataset}-{config.model}-"
                                           f"{config.wavelet}")
    reports = []
    for i in range(n):
        member_config = dataclasses.replace(config, save_dir=str(parent), run_name=f"member{i}",
                                            seed=config.seed + i)
        reports.append(run_fn(member_config, splits))
    files = [r["files"]["compressed_model"] for r in reports]
    members = [load_compressed(f, attach_state=False) for f in files]
    model = build_ensemble(members, input_shape=splits.x_test.shape[1:])
    metrics = evaluate_classifier(model, splits.x_test, splits.y_test,
                                  class_names=splits.info.get("class_names"))
    sizes = ensemble_bytes(files)
    dense_bytes = int(reports[0]["dense"]["bytes_float32"])
    out = {
        "n_members": n, "seeds": [config.seed + i for i in range(n)], "evaluated_on": "test",
        "test": metrics,
        "members": [_compressed_scalars(r) for r in reports],
        "bytes": sizes,
        "bytes_float32_ensemble": dense_bytes * n,
        "compression_ratio": dense_bytes * n / sizes["bytes_total"],
        "compression_ratio_vs_one_dense_model": dense_bytes / sizes["bytes_total"],
        "run_dir": str(parent),
    }
    atomic_write_json(parent / "ensemble_report.json", out)
    return out
