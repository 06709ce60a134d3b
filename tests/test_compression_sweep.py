"""The basis x keep-ratio sweep behind apps/compression_sweep.py, on a tiny model."""

import json

import keras
import numpy as np

from dwt_keras.compression import sweep
from dwt_keras.data import DatasetSplits


def _tiny_splits(seed=0):
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(64, 3))

    def make(n):
        x = rng.random((n, 8, 8, 1)).astype("float32")
        return x, np.argmax(x.reshape(n, -1) @ proj, axis=1).astype("int32")

    (xt, yt), (xv, yv), (xs, ys) = make(256), make(64), make(64)
    return DatasetSplits(xt, yt, xv, yv, xs, ys, {"name": "toy", "num_classes": 3})


def test_select_rows_takes_smallest_file_within_validation_tolerance():
    dense = {"val_accuracy": 0.90}
    rows = [
        {"basis": "haar", "val_accuracy": 0.899, "test_accuracy": 0.5, "bytes_compressed_file": 500},
        {"basis": "haar", "val_accuracy": 0.897, "test_accuracy": 0.9, "bytes_compressed_file": 300},
        {"basis": "haar", "val_accuracy": 0.80, "test_accuracy": 0.99, "bytes_compressed_file": 100},
        {"basis": "identity", "val_accuracy": 0.85, "test_accuracy": 0.99, "bytes_compressed_file": 50},
    ]
    selected = sweep.select_rows(rows, dense, tolerance=0.003)
    # the test accuracy never influences the choice; identity has no qualifying row
    assert selected["haar"]["bytes_compressed_file"] == 300
    assert selected["identity"] is None


def test_run_sweep_measures_reloaded_files_and_writes_outputs(tmp_path):
    splits = _tiny_splits()
    model = keras.Sequential([
        keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(32, activation="relu"),
        keras.layers.Dense(3),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(splits.x_train, splits.y_train, epochs=2, verbose=0)
    result = sweep.run_sweep(model, splits, bases=("identity", "haar"), keep_ratios=(0.5, 0.1),
                             retrain_epochs=1, batch_size=64, min_kernel_size=16, verbose=0)
    assert [(r["basis"], r["keep_ratio"]) for r in result.rows] == [
        ("identity", 0.5), ("identity", 0.1), ("haar", 0.5), ("haar", 0.1)]
    for basis in ("identity", "haar"):
        big, small = [r for r in result.rows if r["basis"] == basis]
        assert small["bytes_compressed_file"] < big["bytes_compressed_file"]
        assert small["coefficient_sparsity"] > big["coefficient_sparsity"] > 0.4
        assert small["mask_projection_error"] < 1e-5
    for r in result.rows:
        assert r["compression_ratio"] == result.dense["bytes_float32"] / r["bytes_compressed_file"]
        assert 0.0 <= r["test_accuracy"] <= 1.0
    sweep.write_outputs(result, tmp_path, title="toy")
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert len(saved["rows"]) == 4 and saved["winner"] == result.winner
    assert (tmp_path / "sweep.csv").read_text().count("\n") == 5
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
