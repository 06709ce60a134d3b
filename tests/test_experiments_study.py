"""The convergence-study recipe (apps/spectral_study.py): conditions x seeds over a fixed
horizon, per-epoch test accuracy, the shared extras applied to every condition alike."""

import dataclasses
import json
import pathlib
import types

import numpy as np
import pytest

from dwt_keras.experiments import spectral_study as recipe
from dwt_keras.experiments.recipe import config_dict
from dwt_keras.experiments.run import Environment, Run
from dwt_keras.experiments.spectral_study import StudyConfig, run_study
from dwt_keras.spectral import study


def _splits(n=48, n_test=40, seed=0):
    rng = np.random.default_rng(seed)
    # two classes separable by mean brightness, so a tiny CNN learns them in a few epochs
    y = rng.integers(0, 2, 2 * n + n_test).astype(np.int32)
    x = (rng.random((len(y), 8, 8, 1)) * 0.5 + 0.5 * y[:, None, None, None]).astype(np.float32)
    return types.SimpleNamespace(
        x_train=x[:n], y_train=y[:n], x_val=x[n:2 * n], y_val=y[n:2 * n],
        x_test=x[2 * n:], y_test=y[2 * n:],
        info={"num_classes": 2, "n_train": n, "n_val": n, "n_test": n_test, "name": "synthetic"},
    )


def _single(splits, condition, seed, cfg, tmp_path):
    with Environment(cfg) as env:
        run = Run(cfg, tmp_path, env, track=False)
        return recipe.RECIPE.run_single(run, splits, condition, seed)


@pytest.mark.slow
def test_run_study_records_reach_logic_and_writes_json_and_markdown(tmp_path):
    cfg = StudyConfig(epochs=3, truncation_epochs=2, width=2, batch_size=16, lr=0.05,
                      target_accuracy=0.6, seeds=(0,), conditions=("baseline", "cosine"),
                      save_dir=str(tmp_path), figures=False)
    res = run_study(cfg, splits=_splits())
    (folder,) = list(tmp_path.iterdir())
    data = json.loads((folder / "spectral_study.json").read_text())
    assert json.loads((folder / "status.json").read_text())["state"] == "done"
    assert data["complete"] and [r["condition"] for r in data["runs"]] == ["baseline", "cosine"]
    assert set(data["summary"]) == {"baseline", "cosine"}
    assert "| cosine |" in (folder / "spectral_study.md").read_text()
    assert res["summary"] == data["summary"]
    base, run = data["runs"]
    assert [h["phase"] for h in base["history"]] == [0.0, 0.0, 0.0]
    hist = run["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert [h["phase"] for h in hist] == [1.0, 1.0, 0.0]
    assert [h["tau"] for h in hist] == pytest.approx([0.05, 1.0, 1.0])
    test = [h["test_accuracy"] for h in hist]
    reached = [i for i, a in enumerate(test) if a >= 0.6]
    if reached:
        assert run["epochs_to_target"] == reached[0] + 1
        assert run["time_to_target_s"] == pytest.approx(
            sum(h["train_time_s"] for h in hist[: reached[0] + 1]))
    else:
        assert run["epochs_to_target"] is None and run["time_to_target_s"] is None
    assert run["final_test_accuracy"] == test[-1]
    best = int(np.argmax([h["val_accuracy"] for h in hist]))
    assert run["test_accuracy_at_best_val"] == test[best]
    # measured on the 40-image test split (val and train have 48): multiples of 1/40
    assert all(abs(a * 40 - round(a * 40)) < 1e-9 for a in test)


@pytest.mark.parametrize("kw,match", [
    (dict(conditions=("baseline", "gauss")), "baseline, linear, cosine"),
    (dict(seeds=(-1,)), "`seeds` must be >= 0"),
    (dict(epochs=0), ">= 1"),
    (dict(truncation_epochs=-2), "`truncation_epochs` must be >= 0"),
    (dict(epochs=5, truncation_epochs=6), "must be <= `epochs`"),
    (dict(tau_init=0.0), "`tau_init` must be > 0.0"),
    (dict(tau_init=0.5, tau_final=0.4), "must be >= `tau_init`"),
    (dict(target_accuracy=1.5), "`target_accuracy` must be > 0.0 and < 1.0"),
    (dict(lr_schedule="linear"), "must be one of constant"),
    (dict(augment="jitter"), "entries must be among none, auto, mnist"),
    (dict(augment="mixup"), "one-hot labels"),
    (dict(dropout=1.0), "`dropout` must be >= 0.0 and < 1.0"),
    (dict(l2=-1.0), "`l2` must be >= 0"),
    (dict(early_stopping_patience=3), "not supported by the spectral study.*same horizon"),
    (dict(export="tflite"), "`export` is not supported"),
    (dict(model="vit"), "must be one of cnn, wmsa"),
    (dict(model="wmsa", l2=1e-3), "CNN only"),
    (dict(model="wmsa", batch_norm=True), "CNN only"),
])
@pytest.mark.slow
def test_config_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig(**kw).validate()


def test_app_flags_to_config():
    from absl import flags

    from dwt_keras import cli

    def cfg(*argv):
        fv = flags.FlagValues()
        cli.define_flags(StudyConfig, flag_values=fv)
        fv(["app", *argv])
        return cli.config_from_flags(StudyConfig, flag_values=fv).validate()

    c = cfg("--seeds=3,4", "--conditions=baseline,cosine", "--truncation_epochs=4",
            "--tau_init=0.1", "--epochs=7", "--target_accuracy=0.3", "--model=wmsa",
            "--mask_rolloff=0.2", "--seed=5")
    assert (c.seeds, c.conditions, c.truncation_epochs, c.tau_init, c.epochs, c.target_accuracy,
            c.model, c.mask_rolloff, c.seed) == ((3, 4), ("baseline", "cosine"), 4, 0.1, 7, 0.3,
                                                 "wmsa", 0.2, 5)
    assert cfg().model == "cnn"
    with pytest.raises(ValueError, match="comma-separated list of int"):
        cfg("--seeds=a")
    c = cfg("--augment=cifar", "--lr_schedule=cosine", "--l2=1e-4", "--dropout=0.1")
    md = study.results_markdown({}, config_dict(c))
    assert ("Training extras (all conditions): {'augment': 'cifar', 'lr_schedule': 'cosine', "
            "'l2': 0.0001, 'dropout': 0.1}") in md


def test_study_model_carries_regularisation(tmp_path):
    from dwt_keras.experiments.run import prepare_model

    def built(config):
        model, _ = prepare_model(config, None, lambda: recipe.build_study_model(
            config, (8, 8, 1), 2, seed=0), 2)
        return model

    model = built(StudyConfig(width=2, l2=1e-2, dropout=0.25, batch_norm=True).validate())
    kinds = [type(l).__name__ for l in model.layers]
    assert kinds.count("Dropout") == 5 and kinds.count("BatchNormalization") == 5  # hidden convs
    model(np.ones((1, 8, 8, 1), np.float32))
    assert len(model.losses) == 6  # an L2 term per conv/dense kernel
    plain = built(StudyConfig(width=2).validate())
    assert "Dropout" not in [type(l).__name__ for l in plain.layers] and not plain.losses


def test_run_single_follows_the_lr_schedule_with_extras(tmp_path):
    cfg = StudyConfig(epochs=2, truncation_epochs=1, width=2, batch_size=16, lr=0.01,
                      seeds=(0,), lr_schedule="cosine", augment="mnist", l2=1e-3).validate()
    run = _single(_splits(), "cosine", 0, cfg, tmp_path)
    lrs = [h["learning_rate"] for h in run["history"]]
    # cosine from 0.01 to 1% over 2 epochs x 3 steps: after 3 steps 0.01*(0.01+0.99*0.5)
    assert lrs == pytest.approx([0.01 * (0.01 + 0.99 * 0.5), 0.01 * 0.01], rel=1e-4)
    assert [h["phase"] for h in run["history"]] == [1.0, 0.0]
    md = study.results_markdown(study.summarize([run]), config_dict(cfg))
    assert "Training extras (all conditions): {'augment': 'mnist', 'lr_schedule': 'cosine'" in md


def test_study_wmsa_model_and_its_settings():
    from dwt_keras.transformer import WaveletTransformer

    cfg = StudyConfig(model="wmsa", dropout=0.1).validate()
    model = recipe.build_study_model(cfg, (8, 8, 1), 2, seed=0)
    assert isinstance(model, WaveletTransformer)
    assert (model.embed_dim, model.depth, model.num_heads, model.dropout) == (96, 4, 3, 0.1)
    assert model(np.ones((2, 8, 8, 1), np.float32)).shape == (2, 2)
    assert "W-MSA-tiny" in study.results_markdown({}, config_dict(cfg))
    assert "Small CNN (width 16)" in study.results_markdown({}, config_dict(StudyConfig()))


@pytest.mark.slow
def test_run_single_trains_wmsa_with_the_curriculum(tmp_path):
    cfg = StudyConfig(model="wmsa", epochs=2, truncation_epochs=1, batch_size=16, lr=1e-3,
                      seeds=(0,)).validate()
    run = _single(_splits(), "cosine", 0, cfg, tmp_path)
    hist = run["history"]
    assert [h["phase"] for h in hist] == [1.0, 0.0]
    assert [h["tau"] for h in hist] == pytest.approx([0.05, 1.0])
    assert all(np.isfinite(h["loss"]) for h in hist)
    assert all(abs(h["test_accuracy"] * 40 - round(h["test_accuracy"] * 40)) < 1e-9 for h in hist)
