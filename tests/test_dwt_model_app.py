"""apps/DWT_model.py and the pipeline behind it: one run folder, the report schema, bad input."""

import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dwt_keras.compression import load_compressed
from dwt_keras.compression.pipeline import CompressionConfig, run_compression_experiment
from dwt_keras.compression.report import validate_report

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(dataset="mnist", model="mlp", mlp_widths=(32, 16), epochs=1, retrain_epochs=1,
            batch_size=64, max_train_samples=384, max_eval_samples=128, latency_repeats=3,
            keep_ratio=0.1, verbose=0)


def test_pipeline_writes_one_run_folder_with_report_and_files(tmp_path, data_dir):
    report = run_compression_experiment(CompressionConfig(
        wavelet="haar", schedule="gradual", quantize="kmeans", quant_bits=5,
        save_dir=str(tmp_path), log_dir=str(tmp_path / "tb"), **TINY))
    runs = [p for p in tmp_path.iterdir() if p.name != "tb"]
    assert len(runs) == 1
    run = runs[0]
    on_disk = json.loads((run / "report.json").read_text())
    validate_report(on_disk)
    for name in ("dense_model.keras", "compressed_model.dwtc", "training_curves.png",
                 "layer_sparsity.png", "receptive_fields.png"):
        assert (run / name).is_file(), name
    d, c = on_disk["dense"], on_disk["compressed"]
    assert on_disk["dataset"]["n_test"] == 128 and c["n_test_evaluated"] == 128
    assert d["bytes_float32"] == 4 * (784 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10)
    assert c["bytes_compressed_file"] == (run / "compressed_model.dwtc").stat().st_size
    assert c["compression_ratio"] == pytest.approx(d["bytes_float32"] / c["bytes_compressed_file"])
    assert c["coefficient_sparsity"] == pytest.approx(0.9, abs=0.01)
    assert [l["name"] for l in c["layers"]] == ["fc1", "fc2"]  # logits (160 weights) stay dense
    assert c["layers"][0]["view"] == "receptive_field_hw"
    assert c["mask_hold"]["projection_error"] < 1e-5
    # the reported compressed accuracy is the reloaded file's, on the test split
    m = load_compressed(run / "compressed_model.dwtc")
    from dwt_keras.data import load_arrays

    s = load_arrays("mnist")
    acc = float(np.mean(np.argmax(m.predict(s.x_test[:128], verbose=0), -1) == s.y_test[:128]))
    assert acc == pytest.approx(c["test_accuracy"])
    # TensorBoard: per-layer sparsity and the ratio per epoch
    tb_files = list((tmp_path / "tb").rglob("events.out.tfevents*"))
    assert any("compression" in str(p) for p in tb_files)
    assert "compression_ratio" in on_disk["history"]["retrain"]


@pytest.mark.parametrize("override, match", [
    ({"wavelet": "morl"}, "continuous"),
    ({"wavelet": "db99"}, "Unknown"),
    ({"mode": "wrap"}, "mode"),
    ({"keep_ratio": 0.0}, "keep_ratio"),
    ({"keep_ratio": 1.5}, "keep_ratio"),
    ({"model": "vgg"}, "lenet300"),
    ({"schedule": "cosine"}, "oneshot"),
    ({"dataset": "no_such_dataset"}, "no_such_dataset"),
])
def test_bad_input_fails_before_training(tmp_path, override, match, data_dir, monkeypatch):
    import keras

    def no_fit(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(keras.Model, "fit", no_fit)
    with pytest.raises(ValueError, match=match):
        run_compression_experiment(CompressionConfig(**{**TINY, "save_dir": str(tmp_path),
                                                        **override}))
    assert list(tmp_path.iterdir()) == []


def test_unwritable_save_dir_fails_before_training(tmp_path, monkeypatch):
    import keras

    monkeypatch.setattr(keras.Model, "fit", lambda *a, **k: (_ for _ in ()).throw(AssertionError))
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ValueError, match="Cannot write"):
        run_compression_experiment(CompressionConfig(**{**TINY, "save_dir": str(blocker / "x")}))


def _run_app(args, env_extra=None, timeout=600):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env_extra or {})}
    return subprocess.run([sys.executable, str(ROOT / "apps" / "DWT_model.py"), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def test_app_with_flagfile_and_env_data_dir(tmp_path, data_dir):
    save = tmp_path / "SavedModels"
    (save / "earlier-run").mkdir(parents=True)
    r = _run_app(["--flagfile=configs/mnist_mlp_tiny.cfg", "--wavelet", "haar", "--batch_size",
                  "32", "--epochs", "1", "--save_dir", str(save), "--latency_batch_size", "16",
                  "--verbose", "1"],
                 env_extra={"DWT_KERAS_DATA_DIR": str(data_dir)})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    runs = sorted(p.name for p in save.iterdir())
    assert len(runs) == 2 and "earlier-run" in runs  # exactly one new folder, the old one kept
    run = save / [n for n in runs if n != "earlier-run"][0]
    report = json.loads((run / "report.json").read_text())
    validate_report(report)
    assert report["wavelet"] == "haar" and report["dataset"]["source"].endswith("mnist.npz")
    assert report["dense"]["latency_batch_size"] == 16
    assert "test accuracy" in r.stdout and "compression ratio" in r.stdout
    assert "receptive_field_hw" in r.stdout  # the per-layer plan is printed


def test_app_rejects_bad_wavelet_before_training(tmp_path):
    r = _run_app(["--wavelet", "morl", "--save_dir", str(tmp_path / "out")], timeout=300)
    assert r.returncode != 0
    assert "continuous" in (r.stdout + r.stderr)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
