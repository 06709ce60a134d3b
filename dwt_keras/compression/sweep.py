"""Basis x keep-ratio sweeps: which basis gives the smallest file at a given accuracy?

For each basis the model starts from the same trained dense weights and walks down the keep
ratios (iterative pruning): at each ratio it is pruned in that basis, retrained with the masks
held (early stopping on the validation split), written to a compressed file, reloaded, and the
reloaded model is evaluated on the validation and test splits. The smallest file whose
*validation* accuracy stays within ``tolerance`` of the dense model's is selected per basis;
its *test* accuracy is reported (selection never looks at the test split).
"""

import copy
import dataclasses
import math
import os
import tempfile
import time

import numpy as np

DEFAULT_BASES = ("identity", "dct", "haar", "db2", "db4", "sym4", "coif2", "bior2.2")


@dataclasses.dataclass
class SweepResult:
    rows: list
    dense: dict
    selected: dict
    winner: str | None


def _evaluate(model, x, y):
    from dwt_keras.evaluation import evaluate_classifier

    e = evaluate_classifier(model, x, y)
    return e["accuracy"], e["test_loss"]


def run_sweep(model, splits, bases=DEFAULT_BASES, keep_ratios=(0.05, 0.03, 0.02, 0.01),
              retrain_epochs=2, batch_size=128, lr=1e-3, quantize="kmeans", bits=6, codec="lzma",
              tolerance=0.003, mode="periodization", level=None, scope="global",
              early_stopping_patience=1, min_kernel_size=256, verbose=1, on_row=None):
    """Runs the sweep on a trained (dense) `model`.

    Args:
        model: a trained, compiled-or-not Keras model (its weights are the common start).
        splits: `dwt_keras.data.DatasetSplits`.
        bases: basis names.
        keep_ratios: decreasing keep ratios, walked in order per basis.
        retrain_epochs: retraining epochs per ratio (masks held).
        batch_size, lr: retraining settings (Adam).
        quantize, bits, codec: storage settings of the measured file.
        tolerance: accuracy drop (absolute, e.g. 0.003 = 0.3 points) allowed by the selection.
        mode, level, scope, min_kernel_size: compression settings.
        early_stopping_patience: on validation loss, restoring the best weights (0: off).
        verbose: print progress.
        on_row: optional callback ``on_row(row_dict)`` (e.g. to save partial results).

    Returns:
        A `SweepResult`: ``rows`` (one per basis and ratio), ``dense`` metrics, ``selected``
        (per basis: the selected row, or None) and the ``winner`` (smallest selected file).
    """
    import keras

    from dwt_keras.compression import constraints, sizes, storage
    from dwt_keras.compression.api import compress_model

    ratios = [float(r) for r in keep_ratios]
    if any(b > a for a, b in zip(ratios, ratios[1:])):
        raise ValueError(f"keep_ratios must be decreasing, got {ratios}.")
    dense_weights = [w.copy() for w in model.get_weights()]
    config = model.to_json()
    dense_val, dense_val_loss = _evaluate(model, splits.x_val, splits.y_val)
    dense_test, dense_test_loss = _evaluate(model, splits.x_test, splits.y_test)
    dense = {"val_accuracy": dense_val, "test_accuracy": dense_test, "test_loss": dense_test_loss,
             "bytes_float32": sizes.dense_float32_bytes(model)}
    if verbose:
        print(f"dense: val {dense_val:.4f} test {dense_test:.4f}", flush=True)

    import tensorflow as tf

    from dwt_keras.data import make_datasets

    train_ds, val_ds, _ = make_datasets(splits, batch_size=batch_size, seed=0)
    rows = []
    # The files only exist to be measured and reloaded; nothing of them is kept.
    with tempfile.TemporaryDirectory(prefix="dwt_sweep_") as tmpdir:
        for basis in bases:
            keras.backend.clear_session()
            m = keras.models.model_from_json(config)
            m.set_weights(dense_weights)
            for ratio in ratios:
                t0 = time.perf_counter()
                compress_model(m, keep_ratio=ratio, basis=basis, mode=mode, level=level, scope=scope,
                               min_kernel_size=min_kernel_size, install=True)
                m.compile(keras.optimizers.Adam(lr),
                          keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                          metrics=["accuracy"])
                cbs = []
                if early_stopping_patience > 0:
                    cbs.append(keras.callbacks.EarlyStopping(
                        monitor="val_loss", patience=early_stopping_patience,
                        restore_best_weights=True))
                if retrain_epochs > 0:
                    m.fit(train_ds, validation_data=val_ds, epochs=retrain_epochs, callbacks=cbs,
                          verbose=0)
                path = os.path.join(tmpdir, f"{basis}_{ratio}.dwtc")
                info = storage.save_compressed(m, path, quantize=quantize, bits=bits, codec=codec)
                loaded = storage.load_compressed(path)
                val_acc, _ = _evaluate(loaded, splits.x_val, splits.y_val)
                test_acc, test_loss = _evaluate(loaded, splits.x_test, splits.y_test)
                state = constraints.get_state(m)
                row = {
                    "basis": basis, "keep_ratio": ratio, "retrain_epochs": retrain_epochs,
                    "val_accuracy": val_acc, "test_accuracy": test_acc, "test_loss": test_loss,
                    "bytes_compressed_file": info["bytes"],
                    "compression_ratio": dense["bytes_float32"] / info["bytes"],
                    "coefficient_sparsity": state.coefficient_sparsity(),
                    "max_abs_weight_error": info["max_abs_weight_error"],
                    "mask_projection_error": state.max_hold_error()["projection_error"],
                    "seconds": time.perf_counter() - t0,
                }
                rows.append(row)
                if on_row is not None:
                    on_row(row)
                if verbose:
                    print(f"{basis:>8} keep {ratio:<6} val {val_acc:.4f} test {test_acc:.4f} "
                          f"{info['bytes']:>8,} B ({row['compression_ratio']:.1f}x) "
                          f"[{row['seconds']:.0f}s]", flush=True)
                del loaded
    selected = select_rows(rows, dense, tolerance)
    winner = None
    cands = [r for r in selected.values() if r is not None]
    if cands:
        winner = min(cands, key=lambda r: r["bytes_compressed_file"])["basis"]
    return SweepResult(rows, dense, selected, winner)


def select_rows(rows, dense, tolerance=0.003):
    """Per basis: the smallest file whose VALIDATION accuracy is within `tolerance` of the
    dense model's validation accuracy (None if no ratio qualifies)."""
    out = {}
    for basis in dict.fromkeys(r["basis"] for r in rows):
        ok = [r for r in rows if r["basis"] == basis
              and r["val_accuracy"] >= dense["val_accuracy"] - tolerance - 1e-12]
        out[basis] = min(ok, key=lambda r: r["bytes_compressed_file"]) if ok else None
    return out


def write_outputs(result, out_dir, tolerance=0.003, title="", extra=None):
    """Writes ``sweep.csv``, ``sweep.json`` and ``pareto.png`` into `out_dir` (atomically).

    ``extra``: further top-level entries of ``sweep.json`` (e.g. the dense training's
    ``spectral`` block).
    """
    import csv
    import io
    import pathlib

    from dwt_keras.utils.io import atomic_save_figure, atomic_write_bytes, atomic_write_json

    out_dir = pathlib.Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    buf = io.StringIO()
    if result.rows:
        w = csv.DictWriter(buf, fieldnames=list(result.rows[0]))
        w.writeheader()
        w.writerows(result.rows)
    atomic_write_bytes(out_dir / "sweep.csv", buf.getvalue().encode())
    atomic_write_json(out_dir / "sweep.json", {
        "dense": result.dense, "tolerance": tolerance,
        "selection": "smallest file with validation accuracy >= dense validation accuracy - "
                     "tolerance; test accuracy reported",
        "selected": result.selected, "winner": result.winner, "rows": result.rows,
        **(extra or {})})

    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for basis in dict.fromkeys(r["basis"] for r in result.rows):
        rs = sorted((r for r in result.rows if r["basis"] == basis),
                    key=lambda r: r["bytes_compressed_file"])
        ax.plot([r["bytes_compressed_file"] / 1024 for r in rs],
                [100 * r["test_accuracy"] for r in rs], "-o", ms=3, label=basis)
    ax.axhline(100 * result.dense["test_accuracy"], color="k", lw=0.8, label="dense")
    ax.axhline(100 * (result.dense["test_accuracy"] - tolerance), color="k", lw=0.8, ls="--",
               label=f"dense - {100 * tolerance:.1f} pt")
    ax.set_xscale("log")
    ax.set_xlabel("compressed file (KiB, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    ax.set_title(title or "test accuracy vs compressed size")
    atomic_save_figure(fig, out_dir / "pareto.png")
    return out_dir
