"""--cv_folds and --ensemble around the compression experiment (dwt_keras.training.compression_runs).

The experiment itself is replaced by a fast stand-in that writes a real compressed file, so these
tests check the orchestration: folds from the training split only, one parent folder, test-split
evaluation of the logit-averaged ensemble, and byte counts summed over the members."""

import json
import pathlib

import keras
import numpy as np
import pytest

from dwt_keras.compression import compress_model, save_compressed
from dwt_keras.compression.pipeline import CompressionConfig
from dwt_keras.models import mlp
from dwt_keras.training import compression_runs


def _fake_run(calls):
    def run(config, splits):
        calls.append((config, splits))
        keras.utils.set_random_seed(config.seed)
        model = mlp(splits.x_train.shape[1:], 10, widths=(16,))
        compress_model(model, keep_ratio=0.5, basis="haar", min_kernel_size=64)
        run_dir = pathlib.Path(config.save_dir) / config.run_name
        run_dir.mkdir()
        path = run_dir / "compressed_model.dwtc"
        save_compressed(model, path)
        acc = float(np.mean(np.argmax(model.predict(splits.x_test, verbose=0), -1) ==
                            splits.y_test))
        block = {"test_accuracy": acc, "test_loss": 1.0, "f1_macro": 0.5,
                 "compression_ratio": 4 * model.count_params() / path.stat().st_size,
                 "bytes_compressed_file": path.stat().st_size,
                 "bytes_float32": 4 * model.count_params()}
        return {"compressed": block, "dense": dict(block),
                "files": {"compressed_model": str(path), "report": str(run_dir / "report.json")}}
    return run


def _config(tmp_path):
    return CompressionConfig(dataset="mnist", max_train_samples=300, max_eval_samples=200,
                             save_dir=str(tmp_path), seed=3)


def test_cross_validation_runs_folds_of_training_split(tmp_path, data_dir):
    calls = []
    out = compression_runs.run_cross_validation(_config(tmp_path), 3, run_fn=_fake_run(calls))
    (parent,) = list(tmp_path.iterdir())          # exactly one new folder under save_dir
    assert json.loads((parent / "cv_report.json").read_text())["cv_folds"] == 3
    assert [c[0].run_name for c in calls] == ["fold0", "fold1", "fold2"]
    n_pool = len(calls[0][1].x_train) + len(calls[0][1].x_val)
    assert n_pool == 300 + 200                      # training part + validation part
    for _, fs in calls:
        assert len(fs.x_test) == 200                # the test split, untouched
    acc = out["summary"]["test_accuracy"]
    assert acc["mean"] == pytest.approx(np.mean([f["test_accuracy"] for f in out["folds"]]))
    assert acc["std"] == pytest.approx(np.std([f["test_accuracy"] for f in out["folds"]], ddof=1))


def test_ensemble_averages_members_and_sums_bytes(tmp_path, data_dir):
    calls = []
    out = compression_runs.run_ensemble(_config(tmp_path), 2, run_fn=_fake_run(calls))
    assert [c[0].seed for c in calls] == [3, 4]
    files = [pathlib.Path(m["file"]) for m in out["bytes"]["members"]]
    assert out["bytes"]["bytes_total"] == sum(f.stat().st_size for f in files)
    assert out["compression_ratio"] == pytest.approx(
        2 * out["members"][0]["bytes_compressed_file"] * out["members"][0]["compression_ratio"]
        / out["bytes"]["bytes_total"])
    assert out["evaluated_on"] == "test" and out["test"]["n"] == 200
    with pytest.raises(ValueError, match="ensemble"):
        compression_runs.run_ensemble(_config(tmp_path), 0, run_fn=_fake_run([]))
