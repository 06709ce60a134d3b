"""tf.distribute strategies: `mirrored` over two logical CPU devices (in a subprocess, because the
CPU must be split before TensorFlow initialises) with the compression and TensorBoard callbacks,
and clear errors for the strategies that cannot work here."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

from dwt_keras.training import strategy as strat

ROOT = pathlib.Path(__file__).resolve().parents[1]

MIRRORED_SCRIPT = textwrap.dedent(r"""
    import json, sys
    import numpy as np
    from dwt_keras.training.strategy import configure_logical_cpus, get_strategy, describe_strategy
    devices = configure_logical_cpus(2)
    import keras
    from dwt_keras.compression import CompressionMetrics, GradualCompression, get_state
    from dwt_keras.models import mlp
    from dwt_keras.training.callbacks import standard_callbacks

    keras.utils.set_random_seed(0)
    strategy = get_strategy("mirrored")
    rng = np.random.default_rng(0)
    x = rng.random((256, 8, 8, 1), dtype=np.float32)
    y = (x.reshape(256, -1).mean(1) > 0.5).astype("int32")
    with strategy.scope():
        model = mlp((8, 8, 1), 2, widths=(32,))
        model.compile(keras.optimizers.Adam(3e-3),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                      metrics=["accuracy"])
    callbacks = [GradualCompression(final_keep=0.1, begin_step=0, end_step=8, frequency=2,
                                    basis="haar", min_kernel_size=64, verbose=0),
                 CompressionMetrics(),
                 *standard_callbacks(sys.argv[1], model)]
    hist = model.fit(x, y, batch_size=32, epochs=2, validation_split=0.25, callbacks=callbacks,
                     verbose=0)
    state = get_state(model)
    masks, coeffs = state.mask_arrays(), state.coefficients()
    outside = max(float(np.abs(np.asarray(coeffs[n])[~masks[n]]).max(initial=0.0)) for n in masks)
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.size for m in masks.values())
    # the whole compression recipe (apps/DWT_model.py) under the same strategy
    from dwt_keras.experiments.compression import CompressionConfig, run_compression

    rep = run_compression(CompressionConfig(
        dataset="mnist", model="mlp", mlp_widths=(32, 16), epochs=1, retrain_epochs=1,
        batch_size=64, max_train_samples=256, max_eval_samples=128, latency_repeats=3,
        keep_ratio=0.1, schedule="gradual", quantize="none", plots=False, verbose=0,
        strategy="mirrored", save_dir=sys.argv[2], log_dir=sys.argv[1] + "_pipeline"))
    print("RESULT" + json.dumps({
        "pipeline": {"replicas": rep["distribution"]["num_replicas_in_sync"],
                     "hold": rep["compressed"]["mask_hold"]["projection_error"],
                     "sparsity": rep["compressed"]["coefficient_sparsity"]},
        "strategy": describe_strategy(strategy), "devices": devices,
        "model_strategy": type(model.distribute_strategy).__name__,
        "loss": hist.history["loss"], "ratio": hist.history.get("compression_ratio"),
        "outside_mask_max": outside, "kept_fraction": kept,
        "steps": int(model.optimizer.iterations.numpy())}))
""")


def _run(script, args, timeout):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, "-c", script, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1]
    return json.loads(line[len("RESULT"):])


@pytest.mark.slow
def test_mirrored_two_logical_cpus_with_compression_and_tensorboard(tmp_path, tiny_data_env):
    out = _run(MIRRORED_SCRIPT, [str(tmp_path / "tb"), str(tmp_path / "runs")], timeout=500)
    assert out["strategy"]["class"] == "MirroredStrategy"
    assert out["strategy"]["num_replicas_in_sync"] == 2
    assert out["model_strategy"] == "MirroredStrategy"
    assert len(out["devices"]) == 2
    assert out["steps"] == 12                     # 192 samples / 32 per global batch * 2 epochs
    # the masks hold exactly after every replicated update
    assert out["outside_mask_max"] < 1e-5
    assert abs(out["kept_fraction"] - 0.1) < 0.02
    assert out["ratio"] and out["ratio"][-1] > 1.0
    # apps/DWT_model.py's pipeline under --strategy mirrored: 2 replicas, masks held exactly
    assert out["pipeline"]["replicas"] == 2
    assert out["pipeline"]["hold"] < 1e-5
    assert out["pipeline"]["sparsity"] == pytest.approx(0.9, abs=0.01)
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(tmp_path / "tb" / "train"), size_guidance={"tensors": 0})
    acc.Reload()
    tags = set(acc.Tags()["tensors"])
    assert {"epoch_loss", "epoch_compression_ratio", "epoch_learning_rate",
            "receptive_fields", "coefficients/fc1"} <= tags


def test_strategy_errors(monkeypatch):
    with pytest.raises(ValueError, match="default, mirrored, multi_worker, tpu"):
        strat.get_strategy("horovod")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="keras-team/keras#20585"):
        strat.get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", json.dumps(
        {"cluster": {"worker": ["localhost:1", "localhost:2"]},
         "task": {"type": "worker", "index": 0}}))
    with pytest.raises(ValueError, match="2 workers"):
        strat.get_strategy("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ValueError, match="TF_CONFIG is not valid JSON"):
        strat.get_strategy("multi_worker")
    monkeypatch.delenv("TF_CONFIG")
    monkeypatch.delenv("TPU_NAME", raising=False)
    with pytest.raises(ValueError, match="no TPU could be reached"):
        strat.get_strategy("tpu")


def test_default_and_single_device_mirrored():
    import tensorflow as tf

    assert strat.get_strategy("default") is tf.distribute.get_strategy()
    assert strat.describe_strategy(strat.get_strategy("default")) == {
        "class": type(tf.distribute.get_strategy()).__name__, "num_replicas_in_sync": 1,
        "devices": []}
    s = strat.get_strategy("mirrored")
    assert strat.get_strategy("mirrored") is s   # one instance per process (collective keys)
    assert strat.describe_strategy(s)["num_replicas_in_sync"] == len(
        tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU"))
    with pytest.raises(RuntimeError, match="before TensorFlow initialises"):
        strat.configure_logical_cpus(2)
