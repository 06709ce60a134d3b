"""Tests for the spectral convergence-study pipeline, its app flags and the figures."""

import json
import types

import numpy as np
import pytest

from dwt_keras.spectral import figures, study


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


@pytest.mark.slow
def test_run_study_records_reach_logic_and_writes_json_and_markdown(tmp_path):
    cfg = study.StudyConfig(epochs=3, truncation_epochs=2, width=2, batch_size=16, lr=0.05,
                            target_accuracy=0.6, seeds=(0,), conditions=("baseline", "cosine"))
    res = study.run_study(cfg, tmp_path, splits=_splits(), log=lambda s: None)
    data = json.loads((tmp_path / "spectral_study.json").read_text())
    assert data["complete"] and [r["condition"] for r in data["runs"]] == ["baseline", "cosine"]
    assert set(data["summary"]) == {"baseline", "cosine"}
    assert "| cosine |" in (tmp_path / "spectral_study.md").read_text()
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
        assert run["time_to_target_s"] == pytest.approx(sum(h["train_time_s"] for h in hist[: reached[0] + 1]))
    else:
        assert run["epochs_to_target"] is None and run["time_to_target_s"] is None
    assert run["final_test_accuracy"] == test[-1]
    best = int(np.argmax([h["val_accuracy"] for h in hist]))
    assert run["test_accuracy_at_best_val"] == test[best]
    # measured on the 40-image test split (val and train have 48): multiples of 1/40
    assert all(abs(a * 40 - round(a * 40)) < 1e-9 for a in test)


def test_summarize_mean_and_sample_std():
    runs = [
        {"condition": "baseline", "epochs_to_target": e, "time_to_target_s": t, "epochs_to_target_val": None,
         "final_test_accuracy": a, "test_accuracy_at_best_val": a, "max_test_accuracy": a, "train_time_s": t}
        for e, t, a in [(3, 10.0, 0.5), (5, 14.0, 0.6), (None, None, 0.4)]
    ]
    s = study.summarize(runs)["baseline"]
    assert s["n_runs"] == 3
    assert s["epochs_to_target"] == {"mean": 4.0, "std": pytest.approx(np.std([3, 5], ddof=1)), "n": 2}
    assert s["final_test_accuracy"]["mean"] == pytest.approx(0.5)
    assert s["final_test_accuracy"]["std"] == pytest.approx(np.std([0.5, 0.6, 0.4], ddof=1))
    assert s["epochs_to_target_val"]["n"] == 0
    md = study.results_markdown(study.summarize(runs), study.StudyConfig().validate())
    assert "| baseline | 2/3 | 4.0 ± 1.4 |" in md
    assert "not reached" in md


def test_config_bad_values():
    cases = [
        (dict(conditions=("baseline", "gauss")), "baseline, linear, cosine"),
        (dict(seeds=(-1,)), "non-negative"),
        (dict(epochs=0), ">= 1"),
        (dict(truncation_epochs=-2), "non-negative"),
        (dict(epochs=5, truncation_epochs=6), "<= epochs"),
        (dict(tau_init=0.0), r"\(0, 1\]"),
        (dict(tau_init=0.5, tau_final=0.4), ">= tau_init"),
        (dict(target_accuracy=1.5), r"\(0, 1\)"),
    ]
    for kw, match in cases:
        with pytest.raises(ValueError, match=match):
            study.StudyConfig(**kw).validate()


@pytest.mark.slow
def test_app_flags_to_config():
    # In a subprocess: the app defines its flags in the global absl FLAGS, which other
    # apps' tests may also load.
    import os
    import pathlib
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    script = (
        "import importlib.util\n"
        "spec = importlib.util.spec_from_file_location('app', 'apps/spectral_study.py')\n"
        "app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)\n"
        "F = app.FLAGS\n"
        "F(['app', '--seeds=3,4', '--conditions=baseline,cosine', '--truncation_epochs=4',\n"
        "   '--tau_init=0.1', '--epochs=7', '--target_accuracy=0.3', '--model=wmsa'])\n"
        "c = app.config_from_flags()\n"
        "print('CFG', c.seeds, c.conditions, c.truncation_epochs, c.tau_init, c.epochs, c.target_accuracy,\n"
        "      c.model)\n"
        "F.unparse_flags(); F(['app']); print('DEFAULT_MODEL', app.config_from_flags().model)\n"
        "F.unparse_flags(); F(['app', '--augment=cifar', '--lr_schedule=cosine', '--l2=1e-4', '--dropout=0.1'])\n"
        "c = app.config_from_flags(); print('EXTRAS', c.extras())\n"
        "for bad in (['--truncation_epochs=-1'], ['--seeds=a'], ['--conditions=baseline,box'],\n"
        "            ['--early_stopping_patience=3'], ['--export=tflite'], ['--model=vit'],\n"
        "            ['--model=wmsa', '--l2=1e-4']):\n"
        "    F.unparse_flags(); F(['app'] + bad)\n"
        "    try:\n"
        "        app.config_from_flags(); print('NOERROR', bad)\n"
        "    except ValueError as e:\n"
        "        print('ERR', str(e).replace(chr(10), ' '))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-c", script], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert "CFG (3, 4) ('baseline', 'cosine') 4 0.1 7 0.3 wmsa" in lines
    assert "DEFAULT_MODEL cnn" in lines
    errs = [l for l in lines if l.startswith(("ERR", "NOERROR"))]
    assert len(errs) == 7 and all(l.startswith("ERR") for l in errs), errs
    assert "valid choices: cnn, wmsa" in errs[5] and "CNN only" in errs[6]
    assert "non-negative" in errs[0] and "--seeds" in errs[1] and "baseline, linear, cosine" in errs[2]
    assert "--early_stopping_patience is not supported" in errs[3] and "same horizon" in errs[3]
    assert "--export is not supported" in errs[4] and "--lr_schedule" in errs[4]
    assert ("EXTRAS {'augment': 'cifar', 'lr_schedule': 'cosine', 'l2': 0.0001, 'dropout': 0.1}"
            in lines)


def _is_png(path):
    data = path.read_bytes()
    return data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_figures_written_as_png(tmp_path):
    img = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    p1 = figures.plot_tau_progression(img, tmp_path / "prog.png", taus=(0.1, 1.0))
    p2 = figures.plot_mask_profiles(tmp_path / "masks.png", taus=(0.1, 0.5, 1.0))
    results = {"config": {"truncation_epochs": 1, "target_accuracy": 0.5}, "runs": [
        {"condition": c, "history": [{"test_accuracy": a} for a in accs]}
        for c, accs in [("baseline", [0.3, 0.5]), ("baseline", [0.4, 0.6]), ("cosine", [0.2, 0.55])]]}
    p3 = figures.plot_study_curves(results, tmp_path / "curves.png")
    assert _is_png(p1) and _is_png(p2) and _is_png(p3)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["curves.png", "masks.png", "prog.png"]  # no temp files
    with pytest.raises(ValueError, match="no runs"):
        figures.plot_study_curves({"runs": []}, tmp_path / "bad.png")
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        figures.plot_mask_profiles(tmp_path / "bad.png", taus=(0.0,))
    with pytest.raises(ValueError, match="one image"):
        figures.plot_tau_progression(np.zeros((2, 8, 8, 3)), tmp_path / "bad.png")


def _fake_results(seeds, conditions=("baseline", "cosine")):
    runs = []
    for seed in seeds:
        for i, c in enumerate(conditions):
            acc = 0.4 + 0.01 * seed + 0.02 * i
            runs.append({"condition": c, "seed": seed, "epochs_to_target": 3 + seed,
                         "time_to_target_s": 1.0 + seed, "epochs_to_target_val": None,
                         "final_test_accuracy": acc, "test_accuracy_at_best_val": acc,
                         "max_test_accuracy": acc, "train_time_s": 2.0,
                         "history": [{"test_accuracy": acc}]})
    cfg = dict(study.StudyConfig(seeds=tuple(seeds), conditions=conditions).__dict__)
    return {"config": cfg, "runs": runs, "summary": study.summarize(runs), "complete": True,
            "command": "x", "data": None, "machine": "m"}


def test_merge_results_recomputes_summary(tmp_path):
    a, b = _fake_results([0, 1]), _fake_results([2])
    merged = study.merge_results([a, b])
    assert merged["config"]["seeds"] == [0, 1, 2] and merged["complete"]
    accs = [0.4, 0.41, 0.42]
    assert merged["summary"]["baseline"]["final_test_accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert merged["summary"]["baseline"]["final_test_accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    out = study.write_results(merged, tmp_path)
    assert "| baseline | 3/3 |" in (out / "spectral_study.md").read_text()
    with pytest.raises(ValueError, match="twice"):
        study.merge_results([a, a])
    c = _fake_results([3])
    c["config"]["epochs"] = 99
    with pytest.raises(ValueError, match="different settings"):
        study.merge_results([a, c])


def test_config_rejects_bad_training_extras():
    for kw, match in [(dict(lr_schedule="linear"), "Valid choices: constant"),
                      (dict(augment="jitter"), "Valid choices: none, auto, mnist"),
                      (dict(dropout=1.0), r"\[0, 1\)"), (dict(l2=-1.0), "l2 must be >= 0")]:
        with pytest.raises(ValueError, match=match):
            study.StudyConfig(**kw).validate()


def test_study_model_carries_regularisation():
    cfg = study.StudyConfig(width=2, l2=1e-2, dropout=0.25, batch_norm=True).validate()
    model = study.build_study_model(cfg, (8, 8, 1), 2, seed=0)
    kinds = [type(l).__name__ for l in model.layers]
    assert kinds.count("Dropout") == 5 and kinds.count("BatchNormalization") == 5  # hidden convs
    model(np.ones((1, 8, 8, 1), np.float32))
    assert len(model.losses) == 6  # an L2 term per conv/dense kernel
    plain = study.build_study_model(study.StudyConfig(width=2).validate(), (8, 8, 1), 2, seed=0)
    assert "Dropout" not in [type(l).__name__ for l in plain.layers] and not plain.losses


def test_training_data_augments_only_the_training_split():
    s = _splits()
    x, kw = study.training_data(s, study.StudyConfig(batch_size=16), seed=0)
    assert x is s.x_train and kw["y"] is s.y_train and kw["shuffle"]
    ds, kw = study.training_data(s, study.StudyConfig(batch_size=16, augment="mnist"), seed=0)
    xb, yb = np.concatenate([b[0] for b in ds]), np.concatenate([b[1] for b in ds])
    assert kw == {"shuffle": False} and xb.shape == s.x_train.shape
    np.testing.assert_array_equal(np.sort(yb), np.sort(s.y_train))  # every sample once per epoch
    # noise and shifts: no augmented image equals any original
    dist = np.abs(xb[:, None] - s.x_train[None]).reshape(len(xb), len(s.x_train), -1).max(-1)
    assert dist.min() > 1e-3


def test_run_single_follows_the_lr_schedule_with_extras():
    cfg = study.StudyConfig(epochs=2, truncation_epochs=1, width=2, batch_size=16, lr=0.01,
                            seeds=(0,), lr_schedule="cosine", augment="mnist", l2=1e-3).validate()
    run = study.run_single(_splits(), "cosine", 0, cfg)
    lrs = [h["learning_rate"] for h in run["history"]]
    # cosine from 0.01 to 1% over 2 epochs x 3 steps: after 3 steps 0.01*(0.01+0.99*0.5)
    assert lrs == pytest.approx([0.01 * (0.01 + 0.99 * 0.5), 0.01 * 0.01], rel=1e-4)
    assert [h["phase"] for h in run["history"]] == [1.0, 0.0]
    md = study.results_markdown(study.summarize([run]), cfg)
    assert "Training extras (all conditions): {'augment': 'mnist', 'lr_schedule': 'cosine'" in md


def test_study_wmsa_model_and_its_settings():
    from dwt_keras.transformer import WaveletTransformer

    cfg = study.StudyConfig(model="wmsa", dropout=0.1).validate()
    model = study.build_study_model(cfg, (8, 8, 1), 2, seed=0)
    assert isinstance(model, WaveletTransformer)
    assert (model.embed_dim, model.depth, model.num_heads, model.dropout) == (96, 4, 3, 0.1)
    assert model(np.ones((2, 8, 8, 1), np.float32)).shape == (2, 2)
    assert "W-MSA-tiny" in study.results_markdown({}, cfg)
    assert "Small CNN (width 16)" in study.results_markdown({}, study.StudyConfig())
    with pytest.raises(ValueError, match="valid choices: cnn, wmsa"):
        study.StudyConfig(model="vit").validate()
    for kw in (dict(l2=1e-3), dict(l1=1e-3), dict(batch_norm=True)):
        with pytest.raises(ValueError, match="CNN only"):
            study.StudyConfig(model="wmsa", **kw).validate()


@pytest.mark.slow
def test_run_single_trains_wmsa_with_the_curriculum():
    cfg = study.StudyConfig(model="wmsa", epochs=2, truncation_epochs=1, batch_size=16, lr=1e-3,
                            seeds=(0,)).validate()
    run = study.run_single(_splits(), "cosine", 0, cfg)
    hist = run["history"]
    assert [h["phase"] for h in hist] == [1.0, 0.0]
    assert [h["tau"] for h in hist] == pytest.approx([0.05, 1.0])
    assert all(np.isfinite(h["loss"]) for h in hist)
    assert all(abs(h["test_accuracy"] * 40 - round(h["test_accuracy"] * 40)) < 1e-9 for h in hist)
