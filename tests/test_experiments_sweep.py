"""The basis x keep-ratio sweep recipe behind apps/compression_sweep.py, on tiny data."""

import json
import pathlib

import numpy as np
import pytest

from dwt_keras.experiments import sweep


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


@pytest.mark.slow
def test_run_sweep_measures_reloaded_files_and_writes_outputs(tmp_path, tiny_data_dir):
    result = sweep.run_sweep(sweep.SweepConfig(
        data_dir=str(tiny_data_dir), model="mlp", mlp_widths=(32,), epochs=2, batch_size=64,
        bases=("identity", "haar"), keep_ratios=(0.5, 0.1), retrain_epochs=1,
        min_kernel_size=16, max_train_samples=256, max_eval_samples=100, save_dir=str(tmp_path),
        verbose=0))
    rows, dense = result["rows"], result["dense"]
    assert [(r["basis"], r["keep_ratio"]) for r in rows] == [
        ("identity", 0.5), ("identity", 0.1), ("haar", 0.5), ("haar", 0.1)]
    for basis in ("identity", "haar"):
        big, small = [r for r in rows if r["basis"] == basis]
        assert small["bytes_compressed_file"] < big["bytes_compressed_file"]
        assert small["coefficient_sparsity"] > big["coefficient_sparsity"] > 0.4
        assert small["mask_projection_error"] < 1e-5
    for r in rows:
        assert r["compression_ratio"] == dense["bytes_float32"] / r["bytes_compressed_file"]
        assert 0.0 <= r["test_accuracy"] <= 1.0
    run = pathlib.Path(result["run_dir"])
    saved = json.loads((run / "sweep.json").read_text())
    assert len(saved["rows"]) == 4 and saved["winner"] == result["winner"]
    assert saved["selected"] == sweep.select_rows(rows, dense, 0.003)
    assert (run / "sweep.csv").read_text().count("\n") == 5
    assert (run / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    # the dense model was selected on validation and evaluated on the test split
    assert 0.0 <= dense["val_accuracy"] <= 1.0 and dense["test_accuracy"] > 0.2
