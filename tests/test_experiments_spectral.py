"""Spectral truncation (`--spectral_reg`) in the engine's compression runs: apps/DWT_model.py and
its recipe, apps/compression_sweep.py and apps/tune.py.

What must hold: the dense training's inputs are low-passed on the TauScheduler's schedule (a
probe layer measures the high-frequency energy the model actually receives), validation and the
retraining see unfiltered inputs, the saved dense model and the compressed file are the plain
classifier (no SpectralTruncation layer) and their reported test accuracies are those of the
reloaded files, the report records the settings and the tau history, and bad spectral flags stop
the apps before any data is loaded.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from dwt_keras.experiments.compression import CompressionConfig
from dwt_keras.experiments.compression import run_compression as run_compression_experiment
from dwt_keras.spectral.schedule import find_truncation_layers

ROOT = pathlib.Path(__file__).resolve().parents[1]
TINY = dict(dataset="mnist", model="mlp", mlp_widths=(32, 16), epochs=2, retrain_epochs=1,
            batch_size=64, max_train_samples=256, max_eval_samples=128, latency_repeats=2,
            keep_ratio=0.1, schedule="oneshot", quantize="none", plots=False, verbose=0)

# A layer that records, for the inputs it receives, the largest share of DCT energy at normalised
# radius > 0.3, separately for training and inference calls. With the cosine mask at tau = 0.1
# (roll-off 0.1) that share is ~0; for raw MNIST digits it is ~0.13. Exec'd here and in the
# mirrored subprocess.
PROBE_SRC = textwrap.dedent(r"""
    import keras
    import tensorflow as tf

    from dwt_keras.spectral.dct import dct2
    from dwt_keras.spectral.truncation import radius_grid


    @keras.saving.register_keras_serializable(package="test_spectral_apps")
    class HighFrequencyProbe(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            # "mean": under MirroredStrategy each replica assigns its own value.
            self.hf_train = self.add_weight(name="hf_train", shape=(), initializer="zeros",
                                            trainable=False, aggregation="mean")
            self.hf_infer = self.add_weight(name="hf_infer", shape=(), initializer="zeros",
                                            trainable=False, aggregation="mean")

        def call(self, x, training=None):
            energy = tf.square(dct2(x))
            high = tf.constant((radius_grid(x.shape[1], x.shape[2]) > 0.3)[None, :, :, None],
                               tf.float32)
            share = tf.reduce_sum(energy * high) / (tf.reduce_sum(energy) + 1e-12)
            target = self.hf_train if training else self.hf_infer
            target.assign(tf.maximum(target, share))
            return x


    def probe_model(config, info):
        inputs = keras.Input(tuple(info["image_shape"]), name="image")
        x = HighFrequencyProbe(name="probe")(inputs)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
        return keras.Model(inputs, keras.layers.Dense(10, name="logits")(x), name="probed")


    class ReadProbe(keras.callbacks.Callback):
        # Reads the probe at the end of a phase and resets it; `self.model` must be the plain
        # model (the spectral wrapper's callbacks go through PlainModelCallback).
        def __init__(self, out):
            super().__init__()
            self.out = out

        def on_train_end(self, logs=None):
            probe = self.model.get_layer("probe")
            self.out.append({"model": self.model.name, "train": float(probe.hf_train.numpy()),
                             "infer": float(probe.hf_infer.numpy())})
            probe.hf_train.assign(0.0)
            probe.hf_infer.assign(0.0)
""")
exec(PROBE_SRC)  # noqa: S102 -- defines HighFrequencyProbe, probe_model, ReadProbe


def _accuracy(model, x, y):
    return float(np.mean(np.argmax(model.predict(x, verbose=0), -1) == y))


def test_dense_phase_sees_lowpassed_inputs_only(tmp_path, tiny_data_env):
    dense, retrain = [], []
    report = run_compression_experiment(CompressionConfig(
        **{**TINY, "epochs": 1}, model_fn=probe_model, save_dir=str(tmp_path),
        spectral_reg=True, tau_init=0.1, tau_final=0.1, truncation_epochs=1,
        dense_callbacks=[ReadProbe(dense)], retrain_callbacks=[ReadProbe(retrain)]))
    # callbacks see the plain model, not the training wrapper
    assert dense[0]["model"] == "probed" and retrain[0]["model"] == "probed"
    # dense training batches were low-passed at tau = 0.1: no energy beyond r = 0.2 ...
    assert dense[0]["train"] < 1e-6
    # ... while validation (same fit), and the retraining, received the digits as they are
    assert dense[0]["infer"] > 0.05
    assert retrain[0]["train"] > 0.05
    assert report["spectral"]["tau_history"] == [0.1] and report["spectral"]["phase_history"] == [1]


def test_without_spectral_reg_the_probe_sees_raw_inputs(tmp_path, tiny_data_env):
    # The control of the test above: the same run with the flag off trains on raw digits.
    dense = []
    report = run_compression_experiment(CompressionConfig(
        **{**TINY, "epochs": 1, "retrain_epochs": 0}, model_fn=probe_model,
        save_dir=str(tmp_path), tau_init=0.1, tau_final=0.1, truncation_epochs=1,
        dense_callbacks=[ReadProbe(dense)]))
    assert dense[0]["train"] > 0.05
    assert report["spectral"] == {"enabled": False}
    assert "spectral_tau" not in report["history"]["dense"]


def _run_app(app, args, timeout=400):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_NUM_INTRAOP_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    return subprocess.run([sys.executable, str(ROOT / "apps" / app), *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


APP_TINY = ["--model", "mlp", "--mlp_widths", "32,16", "--max_train_samples", "256",
            "--max_eval_samples", "128", "--batch_size", "64", "--retrain_epochs", "1",
            "--keep_ratio", "0.1", "--schedule", "oneshot", "--quantize", "none",
            "--latency_repeats", "2", "--noplots", "--verbose", "0"]


@pytest.mark.slow
def test_dwt_model_app_with_spectral_reg_end_to_end(tmp_path, tiny_data_env):
    import keras

    from dwt_keras.compression import load_compressed
    from dwt_keras.compression.report import validate_report
    from dwt_keras.data import load_arrays

    r = _run_app("DWT_model.py", [*APP_TINY, "--epochs", "3", "--spectral_reg",
                                  "--tau_init", "0.2", "--tau_final", "1.0",
                                  "--truncation_epochs", "2", "--mask_profile", "linear",
                                  "--save_dir", str(tmp_path), "--data_dir", str(tiny_data_env)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (run,) = list(tmp_path.iterdir())
    report = json.loads((run / "report.json").read_text())
    validate_report(report)
    sp = report["spectral"]
    assert sp["enabled"] and sp["mask_profile"] == "linear" and sp["truncation_epochs"] == 2
    # the scheduler moved tau as scheduled (0.2 -> 1.0 over two epochs), then switched off
    assert sp["tau_history"] == pytest.approx([0.2, 1.0, 1.0])
    assert sp["phase_history"] == [1, 1, 0]
    assert report["config"]["spectral_reg"] is True
    # the saved models are the plain classifier, and the report's numbers are theirs
    s = load_arrays("mnist", data_dir=str(tiny_data_env))
    x, y = s.x_test[:128], s.y_test[:128]
    dense = keras.models.load_model(run / "dense_model.keras")
    comp = load_compressed(run / "compressed_model.dwtc")
    for model, block in ((dense, "dense"), (comp, "compressed")):
        assert find_truncation_layers(model) == []
        assert [l.name for l in model.layers] == ["image", "flatten", "fc1", "fc2", "logits"]
        assert _accuracy(model, x, y) == pytest.approx(report[block]["test_accuracy"])


@pytest.mark.parametrize("override, match", [
    ({"tau_init": 0.0}, "`tau_init` must be > 0.0 and <= 1.0"),
    ({"tau_init": 0.5, "tau_final": 0.2}, "`tau_final` must be >= `tau_init`"),
    ({"truncation_epochs": -1}, "`truncation_epochs` must be >= 0"),
    ({"mask_profile": "gaussian"}, "must be one of linear, cosine"),
    ({"epochs": 2, "truncation_epochs": 3}, "exceeds the dense training epochs"),
])
def test_bad_spectral_settings_fail_before_loading_data(tmp_path, override, match, monkeypatch):
    from dwt_keras.experiments import recipe

    def no_data(*a, **k):
        raise AssertionError("data loaded")

    monkeypatch.setattr(recipe, "load_data", no_data)
    with pytest.raises(ValueError, match=re.escape(match)):
        run_compression_experiment(CompressionConfig(**{**TINY, "save_dir": str(tmp_path / "o"),
                                                        "spectral_reg": True, **override}))
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_dwt_model_app_rejects_bad_spectral_flags_before_loading_data(tmp_path):
    # --data_dir does not exist: an app that loaded data first would fail on that instead.
    r = _run_app("DWT_model.py", ["--spectral_reg", "--tau_init", "0.5", "--tau_final", "0.2",
                                  "--save_dir", str(tmp_path / "out"),
                                  "--data_dir", str(tmp_path / "no_data")], timeout=120)
    assert r.returncode != 0
    assert "error: --tau_final must be >= --tau_init. Received: --tau_final=0.2, " \
        "--tau_init=0.5" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.slow
def test_compression_sweep_app_with_spectral_reg(tmp_path, tiny_data_env):
    r = _run_app("compression_sweep.py", [
        "--model", "mlp", "--epochs", "2", "--spectral_reg", "--truncation_epochs", "1",
        "--tau_init", "0.3", "--bases", "haar", "--keep_ratios", "0.1", "--retrain_epochs", "1",
        "--max_train_samples", "256", "--max_eval_samples", "128", "--quantize", "none",
        "--save_dir", str(tmp_path), "--data_dir", str(tiny_data_env)])
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    (run,) = list(tmp_path.iterdir())
    out = json.loads((run / "sweep.json").read_text())
    assert out["spectral"]["tau_history"] == pytest.approx([0.3, 1.0])
    assert out["spectral"]["phase_history"] == [1, 0]
    assert [row["basis"] for row in out["rows"]] == ["haar"]


# -- the tuner ---------------------------------------------------------------------------------

def test_compression_hypermodel_trial_follows_the_tau_schedule():
    import keras
    import keras_tuner

    from dwt_keras.tuning.hypermodels import CompressionHyperModel

    base = CompressionConfig(model="mlp", mlp_widths=(32,), retrain_epochs=1, verbose=0,
                             spectral_reg=True, tau_init=0.25, tau_final=1.0,
                             truncation_epochs=2, min_kernel_size=64)
    hm = CompressionHyperModel(base, (8, 8, 1), 3, bases=("haar",), schedules=("oneshot",),
                               quantizers=("none",), batch_sizes=(16,), min_ratio=1.0)
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)

    class Record(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.epochs = []

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((self.model, logs.get("spectral_tau"), logs.get("spectral_phase")))

    rec = Record()
    rng = np.random.default_rng(0)
    x, y = rng.random((64, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 64)
    out = hm.fit(hp, model, x, y, validation_data=(x[:16], y[:16]), epochs=3, callbacks=[rec])
    assert 0 <= out["val_accuracy"] <= 1 and out["compression_ratio"] > 1
    dense, retrain = rec.epochs[:3], rec.epochs[3:]
    assert all(m is model for m, _, _ in rec.epochs)      # the plain model, never the wrapper
    assert [t for _, t, _ in dense] == pytest.approx([0.25, 1.0, 1.0])
    assert [p for _, _, p in dense] == [1.0, 1.0, 0.0]
    assert len(retrain) == 1 and retrain[0][1] is None   # retraining: no truncation
    assert find_truncation_layers(model) == []


@pytest.mark.slow
def test_search_with_spectral_reg(tmp_path, tiny_data_env):
    from dwt_keras.tuning import search

    tiny = dict(dataset="mnist", epochs=2, retrain_epochs=1, max_train_samples=160,
                bases=("haar",), quantizers=("none",), schedules=("oneshot",), max_trials=1,
                save_dir=str(tmp_path))
    config = search.SearchConfig(**tiny, spectral_reg=True, truncation_epochs=1)
    # the spectral settings name a different search; without the flag they change nothing
    plain = search.SearchConfig(**tiny)
    assert search.project_name(config) != search.project_name(plain)
    assert search.project_name(plain) == search.project_name(
        search.SearchConfig(**tiny, tau_init=0.3))
    result = search.run_search(config)
    assert result["n_completed"] == 1
    project = pathlib.Path(result["project_dir"])
    best = json.loads((project / "best_model" / "report.json").read_text())
    assert best["spectral"]["enabled"]
    assert best["spectral"]["tau_schedule_by_epoch"] == [0.05, None]   # 1 truncated epoch of 2
    assert json.loads((project / "search_config.json").read_text())["spectral_reg"] is True
    with pytest.raises(ValueError, match="exceeds the dense training epochs"):
        search.SearchConfig(**{**tiny, "epochs": 1}, spectral_reg=True,
                            truncation_epochs=2).validate()


def test_tune_app_rejects_bad_spectral_flag_before_training(tmp_path):
    r = _run_app("tune.py", ["--spectral_reg", "--tau_final", "1.5", "--save_dir",
                             str(tmp_path)], timeout=120)
    assert r.returncode != 0
    assert "error: --tau_final must be > 0.0 and <= 1.0" in r.stderr
    assert "Traceback" not in r.stderr
    assert not any(tmp_path.iterdir())


# -- tf.distribute ---------------------------------------------------------------------------

MIRRORED_SCRIPT = textwrap.dedent(r"""
    import json, sys
    from dwt_keras.training.strategy import configure_logical_cpus
    configure_logical_cpus(2)
""") + PROBE_SRC + textwrap.dedent(r"""
    from dwt_keras.experiments.compression import CompressionConfig
    from dwt_keras.experiments.compression import run_compression as run_compression_experiment
    dense = []
    rep = run_compression_experiment(CompressionConfig(
        dataset="mnist", epochs=1, retrain_epochs=1, batch_size=64, max_train_samples=256,
        max_eval_samples=128, latency_repeats=2, keep_ratio=0.1, schedule="oneshot",
        quantize="none", plots=False, verbose=0, strategy="mirrored", save_dir=sys.argv[1],
        model_fn=probe_model, spectral_reg=True, tau_init=0.1, tau_final=0.1,
        truncation_epochs=1, dense_callbacks=[ReadProbe(dense)]))
    print("RESULT" + json.dumps({"replicas": rep["distribution"]["num_replicas_in_sync"],
                                 "tau": rep["spectral"]["tau_history"], "probe": dense[0],
                                 "hold": rep["compressed"]["mask_hold"]["projection_error"]}))
""")


@pytest.mark.slow
def test_spectral_reg_under_mirrored_strategy(tmp_path, tiny_data_env):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2",
               CUDA_VISIBLE_DEVICES="", TF_NUM_INTRAOP_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT, str(tmp_path)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([l for l in proc.stdout.splitlines() if l.startswith("RESULT")][-1][6:])
    assert out["replicas"] == 2 and out["tau"] == [0.1]
    assert out["probe"]["train"] < 1e-6 and out["probe"]["infer"] > 0.05  # filtered per replica
    assert out["hold"] < 1e-5
