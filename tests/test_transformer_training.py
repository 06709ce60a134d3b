"""Tests of the W-MSA training pipeline (resume, report, validation) and the apps."""

import json
import os
import subprocess
import sys
import pathlib

import keras
import pytest

from dwt_keras.transformer.training import (
    TrainConfig,
    default_run_name,
    read_history,
    train,
    validate_config,
)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _cfg(tmp_path, **kw):
    base = dict(
        model="wmsa", model_size="custom", embed_dim=16, depth=1, num_heads=2, n_levels=2,
        wavelet="haar", dataset="cifar10_subset", max_train_samples=64, epochs=2, batch_size=32,
        warmup_epochs=1, augment="none", save_dir=str(tmp_path), verbose=0, seed=3,
    )
    base.update(kw)
    return TrainConfig(**base)


class _StopAt(keras.callbacks.Callback):
    """Simulates an interruption at the start of a given epoch."""

    def __init__(self, epoch):
        super().__init__()
        self.stop_epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise KeyboardInterrupt("simulated interruption")


@pytest.mark.slow
def test_interrupted_run_resumes_and_reports_on_test_split(tmp_path, data_dir):
    cfg = _cfg(tmp_path)
    run_dir = tmp_path / default_run_name(cfg)
    with pytest.raises(KeyboardInterrupt):
        train(cfg, callbacks=[_StopAt(1)])
    assert [int(r["epoch"]) for r in read_history(run_dir / "history.csv")] == [0]
    assert not (run_dir / "report.json").exists()

    report = train(cfg)  # the same command again: continues at epoch 2
    history = read_history(run_dir / "history.csv")
    assert [int(r["epoch"]) for r in history] == [0, 1]
    last = keras.saving.load_model(run_dir / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 2 * 2  # 2 epochs x 2 steps, not restarted
    saved = json.loads((run_dir / "report.json").read_text())
    assert saved["test"]["accuracy"] == report["test"]["accuracy"]
    assert report["test"]["n"] == 1000  # the TEST split of cifar10_subset
    assert sum(map(sum, report["test"]["confusion_matrix"])) == 1000
    assert len(report["test"]["per_class"]) == 10
    assert report["selection"]["monitor"] == "val_accuracy"
    assert report["selection"]["best_epoch"] in (1, 2)
    assert not (run_dir / "backup").exists()

    again = train(cfg)  # finished: not retrained
    assert again["test"] == report["test"]
    assert len(read_history(run_dir / "history.csv")) == 2

    with pytest.raises(ValueError, match="different settings"):
        train(_cfg(tmp_path, run_name=run_dir.name, lr=0.5))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(model="cnn"), "wmsa"),
        (dict(augment="crop_flip,jitter"), "jitter"),
        (dict(model_size="huge"), "tiny"),
        (dict(wavelet="nope"), "nope"),
        (dict(embed_dim=16, num_heads=3), "does not divide"),
        (dict(strategy="gpu9"), "mirrored"),
    ],
)
def test_bad_training_settings_fail_before_training(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        validate_config(_cfg(tmp_path, **kw))
    with pytest.raises(ValueError, match=match):
        train(_cfg(tmp_path, **kw))
    assert not any(tmp_path.iterdir())  # nothing written


def test_levels_too_deep_for_the_data_fail_before_training(tmp_path, data_dir):
    with pytest.raises(ValueError, match="too deep"):
        train(_cfg(tmp_path, n_levels=6))
    assert not list(tmp_path.rglob("history.csv"))


@pytest.mark.parametrize(
    "flag,expected",
    [
        ("--augment=crop_flip,jitter", ["jitter", "randaugment"]),
        # A shared training extra that does not apply to transformers.
        ("--batch_norm", ["--batch_norm is not applicable", "LayerNorm"]),
    ],
)
def test_app_rejects_bad_flags_with_clear_message(tmp_path, flag, expected):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "apps" / "wmsa_cifar10.py"), flag, f"--save_dir={tmp_path}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode != 0
    assert all(text in proc.stderr for text in expected), proc.stderr[-2000:]
    assert not any(tmp_path.iterdir())
