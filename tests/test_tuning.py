"""Tests for dwt_keras.tuning and apps/tune.py: objectives, resumable searches, results files,
the HParams dashboard, Hyperband, the W-MSA space, bad flags, and a chief + worker search."""

import csv
import dataclasses
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from dwt_keras.tuning import objectives, search

ROOT = pathlib.Path(__file__).resolve().parents[1]

# Small but real: 160 MNIST training images, 40 validation images, one epoch each phase.
TINY = dict(dataset="mnist", epochs=1, retrain_epochs=1, max_train_samples=160,
            bases=("haar", "identity"), quantizers=("none",), schedules=("oneshot", "gradual"))


# -- objectives ------------------------------------------------------------------------------

def test_size_aware_objectives():
    f = objectives.size_aware_score
    assert f(0.9, 3.0, "val_accuracy") == 0.9
    assert f(0.9, 60.0, "constrained", min_ratio=50) == 0.9
    # every feasible trial beats every infeasible one; closer to the ratio ranks higher
    assert f(0.10, 50.0, "constrained", min_ratio=50) > f(0.99, 49.0, "constrained", min_ratio=50)
    assert f(0.9, 40.0, "constrained", min_ratio=50) > f(0.9, 10.0, "constrained", min_ratio=50)
    assert f(0.9, 5.0, "constrained", min_ratio=50) == pytest.approx(0.9 - 1 - 1)
    assert f(0.9, 100.0, "tradeoff", weight=0.01) == pytest.approx(0.92)
    with pytest.raises(ValueError, match="Valid choices"):
        f(0.9, 10.0, "pareto")
    with pytest.raises(ValueError, match="compression_ratio"):
        f(0.9, 0.0, "tradeoff")


def test_project_name_ignores_max_trials_only():
    a = search.SearchConfig(**TINY, max_trials=2, save_dir="/x")
    b = dataclasses.replace(a, max_trials=9, save_dir="/y", verbose=1)
    assert search.project_name(a) == search.project_name(b)
    assert search.project_name(a).startswith("tune-compression-mnist-lenet300-random-constrained-")
    for change in (dict(tuner="bayesian"), dict(epochs=3), dict(seed=1), dict(bases=("db4",))):
        assert search.project_name(dataclasses.replace(a, **change)) != search.project_name(a)


def test_search_config_errors():
    for bad, match in ((dict(tuner="grid"), "random, bayesian, hyperband"),
                       (dict(objective="f1"), "val_accuracy, constrained, tradeoff"),
                       (dict(strategy="tpu2"), "default, mirrored"),
                       (dict(max_trials=0), "max_trials"),
                       (dict(search_space="wmsa"), "val_accuracy")):
        with pytest.raises(ValueError, match=match):
            search.SearchConfig(**bad).validate()


# -- a search, interrupted and resumed ---------------------------------------------------------

def _rows(project_dir):
    with open(project_dir / "trials.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_random_search_resumes_and_writes_results(tmp_path, tiny_data_env, monkeypatch):
    from dwt_keras.tuning import hypermodels

    config = search.SearchConfig(**TINY, tuner="random", max_trials=2, save_dir=str(tmp_path))
    original = hypermodels.CompressionHyperModel.fit
    calls = []

    def interrupted_fit(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("simulated interruption in trial 2")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(hypermodels.CompressionHyperModel, "fit", interrupted_fit)
    with pytest.raises(KeyboardInterrupt):
        search.run_search(config)
    project = tmp_path / search.project_name(config)
    first = json.loads((project / "trial_0" / "trial.json").read_text())
    assert first["status"] == "COMPLETED"
    assert json.loads((project / "trial_1" / "trial.json").read_text())["status"] == "RUNNING"

    resumed = []

    def counting_fit(self, *args, **kwargs):
        resumed.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(hypermodels.CompressionHyperModel, "fit", counting_fit)
    result = search.run_search(config)   # the same command again
    assert len(resumed) == 1              # only the interrupted trial is trained again
    assert result["project_dir"] == str(project)
    assert (result["n_trials"], result["n_completed"]) == (2, 2)
    again = json.loads((project / "trial_0" / "trial.json").read_text())
    assert again["score"] == first["score"]          # the finished trial was not re-run
    rows = _rows(project)
    assert [r["status"] for r in rows] == ["COMPLETED", "COMPLETED"]
    assert {"val_score", "val_accuracy", "compression_ratio", "hp/wavelet", "hp/keep_ratio",
            "hp/batch_size", "hp/schedule"} <= set(rows[0])
    assert float(rows[0]["score"]) >= float(rows[1]["score"])   # sorted best first
    assert (project / "trials.md").read_text().startswith("| trial_id |")

    best = json.loads((project / "best_hyperparameters.json").read_text())
    assert best["hyperparameters"]["wavelet"] in ("haar", "identity")
    assert float(best["val_score"]) == pytest.approx(float(rows[0]["score"]))

    # the best model is the stored file that was scored: same validation accuracy
    report = json.loads((project / "best_model" / "report.json").read_text())
    assert report["evaluated_on"] == "test" and report["test"]["n"] == 300
    from dwt_keras.compression import load_compressed

    from dwt_keras.experiments.run import load_data

    splits = load_data(config)
    stored = load_compressed(project / "best_model" / "model.dwtc", attach_state=False)
    val_acc = float(np.mean(np.argmax(stored.predict(splits.x_val, verbose=0), -1) ==
                            splits.y_val))
    assert val_acc == pytest.approx(float(rows[0]["val_accuracy"]), abs=1e-6)
    assert report["compression_ratio"] == pytest.approx(float(rows[0]["compression_ratio"]),
                                                        rel=1e-9)

    # HParams dashboard: the experiment config and one session per trial
    from tensorboard.backend.event_processing import event_accumulator as ea

    hp_root = project / "tensorboard" / "hparams"
    acc = ea.EventAccumulator(str(hp_root)); acc.Reload()
    assert "_hparams_/experiment" in acc.Tags()["tensors"]
    for trial_id in ("0", "1"):
        acc = ea.EventAccumulator(str(hp_root / trial_id)); acc.Reload()
        assert "_hparams_/session_start_info" in acc.Tags()["tensors"]
        assert "val_score" in acc.Tags()["tensors"]
    trial_logs = project / "tensorboard" / "trials" / "0" / "execution0"
    acc = ea.EventAccumulator(str(trial_logs / "retrain" / "train"), size_guidance={"tensors": 0})
    acc.Reload()
    assert {"epoch_compression_ratio", "coefficient_sparsity/overall", "receptive_fields",
            "coefficient_maps"} <= set(acc.Tags()["tensors"])
    assert (trial_logs / "dense" / "validation").is_dir()


@pytest.mark.slow
def test_hyperband_two_trials(tmp_path, tiny_data_env):
    config = search.SearchConfig(**{**TINY, "epochs": 2}, tuner="hyperband", max_trials=2,
                                 save_dir=str(tmp_path), objective="tradeoff")
    result = search.run_search(config)
    assert result["n_completed"] == 2
    rows = _rows(pathlib.Path(result["project_dir"]))
    assert all(r["hp/tuner/epochs"] for r in rows)
    for r in rows:   # the tradeoff score is recomputed from the recorded metrics
        assert float(r["val_score"]) == pytest.approx(
            float(r["val_accuracy"]) + 0.01 * np.log10(float(r["compression_ratio"])), rel=1e-6)


@pytest.mark.slow
def test_wmsa_hypermodel_builds_and_fits():
    import keras_tuner

    from dwt_keras.tuning.hypermodels import WMSAHyperModel

    hm = WMSAHyperModel(None, (8, 8, 1), 3, widths=(8,), depths=(1, 1), heads=(2,),
                        levels=(1, 5), batch_sizes=(8,))
    assert hm.levels == [1]   # 2**5 > 8: dropped
    hp = keras_tuner.HyperParameters()
    model = hm.build(hp)
    assert {"width", "depth", "heads", "levels", "wavelet", "use_kernel", "lr",
            "weight_decay"} <= set(hp.values)
    rng = np.random.default_rng(0)
    x, y = rng.random((16, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, 16)
    out = hm.fit(hp, model, x, y, validation_data=(x[:8], y[:8]), epochs=1)
    assert out["val_score"] == out["val_accuracy"] and 0 <= out["val_accuracy"] <= 1
    with pytest.raises(ValueError, match="divisible"):
        WMSAHyperModel(widths=(10,), heads=(4,))


# -- the app ---------------------------------------------------------------------------------

def _app_env(**extra):
    # No PYTHONPATH: the app must run from a checkout as documented (`python apps/tune.py`).
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    env.pop("PYTHONPATH", None)
    env.update(extra)
    return env


@pytest.mark.parametrize("argv,match", [
    (["--tuner", "grid"], "random|bayesian|hyperband"),
    (["--objective", "f1"], "val_accuracy|constrained|tradeoff"),
    (["--strategy", "horovod"], "default|mirrored|multi_worker|tpu"),
    (["--max_trials", "0"], "max_trials"),
])
@pytest.mark.slow
def test_tune_app_rejects_bad_flags_before_training(tmp_path, argv, match):
    proc = subprocess.run([sys.executable, "apps/tune.py", "--save_dir", str(tmp_path), *argv],
                          cwd=ROOT, env=_app_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert match.split("|")[0] in proc.stderr and "Traceback" not in proc.stderr
    assert not any(tmp_path.iterdir())   # nothing was started


def _free_port():
    """A port that was free a moment ago. The chief binds it only later, so another process can
    take it in between: `_chief_and_worker` retries with a new port when the chief cannot bind."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _chief_and_worker(argv, port, data_dir):
    """Runs the chief and one worker on `port`; returns their exit codes and outputs."""
    procs, logs = {}, {}
    try:
        for role in ("chief", "tuner0"):
            env = _app_env(KERASTUNER_TUNER_ID=role, KERASTUNER_ORACLE_IP="127.0.0.1",
                           KERASTUNER_ORACLE_PORT=str(port), DWT_KERAS_DATA_DIR=str(data_dir))
            logs[role] = tempfile.TemporaryFile("w+")   # files, not pipes: nothing blocks
            procs[role] = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=logs[role],
                                           stderr=subprocess.STDOUT, text=True)
        # The chief ends after the worker has run every trial, or at once when it cannot bind
        # its port; a worker without a chief would wait for one: it is killed below.
        procs["chief"].wait(timeout=400)
        if procs["chief"].returncode == 0:
            procs["tuner0"].wait(timeout=400)
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()
    outputs = {}
    for role, log in logs.items():
        log.seek(0)
        outputs[role] = log.read()
        log.close()
    return {role: p.returncode for role, p in procs.items()}, outputs


@pytest.mark.slow
def test_distributed_chief_and_worker(tmp_path, tiny_data_env):
    argv = [sys.executable, "apps/tune.py", "--tuner", "bayesian", "--max_trials", "2",
            "--epochs", "1", "--dataset", "mnist", "--save_dir", str(tmp_path),
            "--max_train_samples", "160", "--bases", "haar", "--quantizers", "none",
            "--schedules", "oneshot"]
    for _ in range(3):   # the port was taken between _free_port() and the chief's bind: retry
        codes, outputs = _chief_and_worker(argv, _free_port(), tiny_data_env)
        if codes["chief"] == 0 or "Failed to bind" not in outputs["chief"]:
            break
        for leftover in tmp_path.iterdir():   # a fresh search on the next port
            shutil.rmtree(leftover)
    assert codes["chief"] == 0, outputs["chief"][-3000:]
    assert codes["tuner0"] == 0, outputs["tuner0"][-3000:]
    (project,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    rows = _rows(project)
    assert len(rows) == 2 and all(r["status"] == "COMPLETED" for r in rows)
    # the chief only serves the oracle: the worker ran the trials and wrote their files
    assert (project / "trial_0" / "model.dwtc").is_file()
    assert json.loads((project / "best_model" / "report.json").read_text())["evaluated_on"] == "test"
    assert '"n_completed": 2' in outputs["chief"]


def test_tune_flagfiles_parse():
    import glob

    from absl import flags

    from dwt_keras import cli

    seen = []
    for path in sorted(glob.glob(str(ROOT / "configs" / "tune_*.cfg"))):
        fv = flags.FlagValues()
        cli.define_flags(search.SearchConfig, flag_values=fv)
        fv(["tune", f"--flagfile={path}"])
        c = cli.config_from_flags(search.SearchConfig, flag_values=fv).validate()
        seen.append((c.tuner, c.search_space, search.project_name(c)))
    assert len(seen) >= 4
    assert {t for t, _, _ in seen} == {"random", "bayesian", "hyperband"}
    assert any(space == "wmsa" for _, space, _ in seen)
    assert len({name for _, _, name in seen}) == len(seen)


# -- the tuner searches what the app trains ---------------------------------------------------

def test_a_trial_builds_what_the_app_builds_with_the_same_values():
    """For fixed hyperparameters, the tuner's trial and apps/DWT_model.py with the equivalent
    flags get the same config, schedule (keep ratio at several steps), optimizer and model."""
    import keras
    import keras_tuner
    from absl import flags

    from dwt_keras import cli
    from dwt_keras.experiments import compression
    from dwt_keras.experiments.run import Run
    from dwt_keras.tuning.hypermodels import CompressionHyperModel

    fixed = dict(wavelet="db2", level=2, mode="periodization", keep_ratio=0.04,
                 quantize="kmeans", lr=2e-3, batch_size=64)
    for schedule in ("gradual", "iterative", "oneshot"):
        base = search.SearchConfig(model="lenet300", epochs=3, retrain_epochs=4, seed=1)
        hm = CompressionHyperModel(base, (28, 28, 1), 10)
        hp = keras_tuner.HyperParameters()
        for name, value in {**fixed, "schedule": schedule}.items():
            hp.Fixed(name, value)
        trial = hm.trial_config(hp)
        fv = flags.FlagValues()
        cli.define_flags(compression.CompressionConfig, flag_values=fv)
        fv(["DWT_model.py", "--model=lenet300", "--epochs=3", "--retrain_epochs=4", "--seed=1",
            "--truncation_epochs=1", f"--schedule={schedule}",
            *(f"--{k}={v}" for k, v in fixed.items())])
        app = cli.config_from_flags(compression.CompressionConfig, flag_values=fv).validate()
        # Everything but where the run writes and how much it prints.
        where = ("save_dir", "log_dir", "run_name", "verbose")
        shared = [f.name for f in dataclasses.fields(app) if f.name not in where]
        assert {k: getattr(trial, k) for k in shared} == {k: getattr(app, k) for k in shared}
        # the same schedule: the keep ratio the callback applies at several steps
        steps = 100
        cb_trial, epochs_trial, final_trial = compression.make_schedule(trial, steps)
        cb_app, epochs_app, final_app = compression.make_schedule(app, steps)
        assert (type(cb_trial), epochs_trial, final_trial) == (type(cb_app), epochs_app, final_app)
        if schedule == "gradual":
            for step in (0, 10, 50, 120, 199, 400):
                assert cb_trial.keep_at(step) == cb_app.keep_at(step)
            assert cb_app.keep_at(400) == pytest.approx(0.04)
            # the app's ramp: over the first half of the retraining steps
            assert cb_app.keep_at(int(0.5 * 4 * steps)) == pytest.approx(0.04)
            assert cb_app.keep_at(int(0.25 * 4 * steps)) > 0.04
        elif schedule == "iterative":
            assert cb_trial.keep_ratios == cb_app.keep_ratios == [0.5, 0.25, 0.125, 0.0625, 0.04]
        # the same optimizer configuration and the same model
        opt_trial = Run(trial, ".", None, track=False).make_optimizer(steps, trial.epochs)
        opt_app = Run(app, ".", None, track=False).make_optimizer(steps, app.epochs)
        ignore_name = {"name": None}  # Keras numbers the second optimizer's name
        assert {**opt_trial.get_config(), **ignore_name} == {**opt_app.get_config(), **ignore_name}
        keras.utils.set_random_seed(0)
        model_trial = hm.build(hp)
        keras.utils.set_random_seed(0)
        model_app = compression.build(app, {"image_shape": (28, 28, 1), "num_classes": 10})
        assert model_trial.to_json() == model_app.to_json()
        for a, b in zip(model_trial.get_weights(), model_app.get_weights()):
            np.testing.assert_array_equal(a, b)  # the same initialisation too
