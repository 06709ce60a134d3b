"""The training extras wired into the compression experiment (apps/DWT_model.py)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from dwt_keras.compression import load_compressed
from dwt_keras.compression.pipeline import CompressionConfig, run_compression_experiment

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(dataset="mnist", model="mlp", mlp_widths=(32, 16), epochs=1, retrain_epochs=1,
            batch_size=64, max_train_samples=256, max_eval_samples=128, latency_repeats=3,
            keep_ratio=0.1, schedule="oneshot", quantize="none", plots=False, verbose=0)


def _tags(path):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(path), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def test_pipeline_with_extras_tensorboard_saliency_export(tmp_path, data_dir):
    report = run_compression_experiment(CompressionConfig(
        **TINY, save_dir=str(tmp_path / "runs"), log_dir=str(tmp_path / "tb"),
        lr_schedule="cosine", augment="mnist", dropout=0.1, l2=1e-4, saliency_images=2,
        export="tflite"))
    run = pathlib.Path(report["run_dir"])
    extras = report["training_extras"]
    assert extras["options"]["lr_schedule"] == "cosine" and extras["options"]["augment"] == "mnist"
    assert report["distribution"]["num_replicas_in_sync"] == 1
    # saliency maps of the final model, as PNG files in the run folder
    assert len(report["files"]["saliency"]) == 2
    for f in report["files"]["saliency"]:
        assert pathlib.Path(f).read_bytes()[:4] == b"\x89PNG" and str(run) in f
    # export of the decompressed model: size of what was written, outputs that match
    exp = extras["export"]
    assert exp["bytes"] == (run / "model.tflite").stat().st_size
    assert exp["max_abs_diff_vs_keras"] < 1e-4 and exp["latency_ms_per_sample"] > 0
    # regularisation reached the stored model: a dropout layer after each hidden Dense layer
    stored = load_compressed(run / "compressed_model.dwtc")
    names = [l.name for l in stored.layers]
    assert "fc1_dropout" in names and "fc2_dropout" in names and "logits_dropout" not in names
    assert report["compressed"]["mask_hold"]["projection_error"] < 1e-5
    # TensorBoard: the shared set in both phases
    retrain = _tags(tmp_path / "tb" / run.name / "retrain" / "train")
    tags = set(retrain.Tags()["tensors"])
    assert {"epoch_compression_ratio", "coefficient_sparsity/fc1", "coefficient_sparsity/overall",
            "receptive_fields", "receptive_fields/at_train_begin", "coefficient_maps",
            "coefficients/fc1", "epoch_learning_rate"} <= tags
    dense = _tags(tmp_path / "tb" / run.name / "dense" / "train")
    lr_end = float(np.asarray(__import__("tensorflow").make_ndarray(
        dense.Tensors("epoch_learning_rate")[-1].tensor_proto)))
    assert lr_end == pytest.approx(1e-3 * 0.01, rel=1e-4)   # cosine down to 1% of --lr
    sparsity = retrain.Tensors("coefficient_sparsity/overall")[-1]
    assert float(__import__("tensorflow").make_ndarray(sparsity.tensor_proto)) == \
        pytest.approx(report["compressed"]["coefficient_sparsity"], abs=1e-6)


def test_pipeline_init_from_compressed_file(tmp_path, data_dir):
    first = run_compression_experiment(CompressionConfig(**TINY, save_dir=str(tmp_path / "a")))
    second = run_compression_experiment(CompressionConfig(
        **{**TINY, "epochs": 0}, save_dir=str(tmp_path / "b"),
        init_from=first["files"]["compressed_model"]))
    info = second["training_extras"]["transfer"]
    assert info["init_from"] == first["files"]["compressed_model"]
    assert not info["head_replaced"]
    # no dense training: the dense model evaluated is the loaded compressed model
    assert second["dense"]["test_accuracy"] == pytest.approx(first["compressed"]["test_accuracy"])


def _app(argv, tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    return subprocess.run([sys.executable, "apps/DWT_model.py", "--save_dir", str(tmp_path),
                           *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv,match", [
    (["--cv_folds", "1"], "--cv_folds must be 0 (off) or an integer >= 2"),
    (["--ensemble", "0", "--init_from", "/no/such.keras"], "--ensemble must be an integer >= 1"),
])
def test_app_rejects_bad_training_flags(tmp_path, argv, match):
    proc = _app(argv, tmp_path)
    assert proc.returncode != 0 and match in proc.stderr
    assert list(tmp_path.iterdir()) == []
