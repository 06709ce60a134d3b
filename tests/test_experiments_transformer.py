"""The transformer recipe (apps/wmsa_cifar10.py): resumable runs, reports on the test split,
spectral truncation and the shared training extras as they apply to W-MSA / ViT.

Models are tiny (width 16, one block) and runs see 32-80 CIFAR-10-subset images for 1-3 epochs.
"""

import copy
import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest

from dwt_keras.data import load_arrays
from dwt_keras.experiments.registry import build_model
from dwt_keras.experiments.run import Run
from dwt_keras.experiments.transformer import RECIPE, TransformerConfig, default_run_name
from dwt_keras.experiments.transformer import run_transformer as train
from dwt_keras.training.callbacks import ResumableEarlyStopping, read_history
from dwt_keras.training.regularization import regularize_kernel_variables
from dwt_keras.training.schedules import make_learning_rate
from dwt_keras.training.transfer import _path_key, load_weights_from

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _cfg(tmp_path, **kw):
    base = dict(
        model="wmsa", model_size="custom", embed_dim=16, depth=1, num_heads=2, n_levels=2,
        wavelet="haar", dataset="cifar10_subset", max_train_samples=64, epochs=2, batch_size=32,
        warmup_epochs=1, augment="none", save_dir=str(tmp_path), verbose=0, seed=3,
        jit_compile=False,
    )
    base.update(kw)
    return TransformerConfig(**base)


def _vit(tmp_path, **kw):
    return _cfg(tmp_path, **{"model": "vit", "patch_size": 8, **kw})


def _build(cfg, num_classes=10):
    return build_model(cfg.model, (32, 32, 3), num_classes, options=cfg)


def _check_resume(run_dir, cfg):
    RECIPE.check_resume(Run(cfg, run_dir, None, resumable=True), cfg)


def _schedule(cfg, steps):
    return make_learning_rate(cfg.lr, steps, cfg.epochs, cfg.lr_schedule, cfg.warmup_epochs)


class _StopAtFit(keras.callbacks.Callback):
    """Simulates an interruption at the start of epoch `epoch` of the `fit_index`-th fit."""

    def __init__(self, epoch, fit_index=0):
        super().__init__()
        self.epoch, self.fit_index, self.fits = epoch, fit_index, -1

    def __deepcopy__(self, memo):  # one counter across the members of an ensemble
        return self

    def on_train_begin(self, logs=None):
        self.fits += 1

    def on_epoch_begin(self, epoch, logs=None):
        if self.fits == self.fit_index and epoch == self.epoch:
            raise KeyboardInterrupt("simulated interruption")


def _by_key(model):
    return {_path_key(v): np.asarray(v.numpy()) for v in model.weights}


# --------------------------------------------------------------------------- #
# Bad values: clear errors before any data is loaded or anything is written
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(batch_norm=True), "LayerNorm"),
        (dict(lr_schedule="linear"), "constant, none, step"),
        (dict(spectral_reg=True, tau_init=0.0), r"`tau_init` must be > 0.0 and <= 1.0"),
        (dict(spectral_reg=True, tau_init=0.5, tau_final=0.2), "tau_final"),
        (dict(spectral_reg=True, truncation_epochs=-1), "`truncation_epochs` must be >= 0"),
        (dict(spectral_reg=True, mask_profile="box"), "linear, cosine"),
        (dict(cv_folds=1), "cv_folds"),
        (dict(ensemble=0), "ensemble"),
        (dict(cv_folds=2, ensemble=2), "cannot be combined"),
        (dict(init_from="/no/such/model.keras"), "is not a file"),
        (dict(freeze=True), "needs `init_from`"),
        (dict(export="onnx"), "tflite, savedmodel"),
        (dict(l2=-1.0), "`l2` must be >= 0"),
        (dict(saliency_images=-1), "saliency_images"),
        (dict(early_stopping_patience=2, validation_split=0.0), "validation split"),
    ],
)
@pytest.mark.slow
def test_bad_extras_fail_before_training(tmp_path, kw, match):
    with pytest.raises(ValueError, match=match):
        _cfg(tmp_path, **kw).validate()
    with pytest.raises(ValueError, match=match):
        train(_cfg(tmp_path, **kw))
    assert not any(tmp_path.iterdir())  # nothing written


# --------------------------------------------------------------------------- #
# Run names and resume checks
# --------------------------------------------------------------------------- #
def test_run_name_encodes_spectral_settings_and_old_runs_still_resume(tmp_path):
    plain = _cfg(tmp_path, model_size="tiny", wavelet="db4", n_levels=3, patch_size=4,
                 epochs=100, seed=0)
    # The name of a run without the new options is what it was before them.
    assert default_run_name(plain) == "wmsa-tiny-d96x4h3-cifar10_subset-db4-J3-p4-kernel-e100-s0"
    spec = dataclasses.replace(plain, spectral_reg=True)
    spec2 = dataclasses.replace(spec, tau_init=0.1)
    spec3 = dataclasses.replace(spec, mask_profile="linear")
    names = {default_run_name(c) for c in (plain, spec, spec2, spec3)}
    assert len(names) == 4
    assert "spectral_cosine_tau0.05-1_te10" in default_run_name(spec)
    # Inert spectral settings (spectral_reg off) do not change the name.
    assert default_run_name(dataclasses.replace(plain, tau_init=0.3)) == default_run_name(plain)

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    # config.json of a run made before the new settings existed...
    new_keys = {"spectral_reg", "tau_init", "tau_final", "truncation_epochs", "mask_profile",
                "mask_rolloff", "spectral_per_step", "lr_schedule", "early_stopping_patience",
                "l1", "l2", "batch_norm", "cv_folds", "ensemble", "saliency_images", "init_from",
                "freeze", "export"}
    legacy = {k: v for k, v in dataclasses.asdict(plain).items() if k not in new_keys}
    (run_dir / "config.json").write_text(json.dumps(legacy))
    _check_resume(run_dir, plain)  # ...is the same run: it resumes
    with pytest.raises(ValueError, match="spectral_reg"):  # a spectral run never resumes it
        _check_resume(run_dir, spec)
    with pytest.raises(ValueError, match="'l2'"):
        _check_resume(run_dir, dataclasses.replace(plain, l2=1e-4))
    # Post-training outputs may be asked for when re-running a finished run.
    _check_resume(run_dir, dataclasses.replace(plain, export="tflite"))


# --------------------------------------------------------------------------- #
# Library pieces (no training)
# --------------------------------------------------------------------------- #
def test_lr_schedules_follow_the_warmup_then_the_named_schedule(tmp_path):
    from dwt_keras.training.schedules import make_lr_schedule

    steps, lr = 10, 1e-3
    cfg = _cfg(tmp_path, epochs=5, warmup_epochs=1, lr=lr, lr_schedule="step")
    sched = _schedule(cfg, steps)
    after = make_lr_schedule("step", lr, steps_per_epoch=steps, epochs=4)
    values = [float(sched(s)) for s in (0, 5, 10, 25, 31, 49)]
    assert values[:2] == pytest.approx([0.0, lr / 2])
    assert values[2:] == pytest.approx([float(after(s - 10)) for s in (10, 25, 31, 49)])
    assert values[-1] == pytest.approx(lr * 0.01)  # two x0.1 steps over the 40 post-warm-up steps
    # The saved optimizer round-trips the schedule.
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(sched))
    assert [float(clone(s)) for s in (0, 5, 10, 25, 31, 49)] == pytest.approx(values)
    # No warm-up: the named schedule itself; the default is unchanged.
    assert float(_schedule(dataclasses.replace(cfg, warmup_epochs=0), steps)(0)) \
        == pytest.approx(lr)
    default = _schedule(dataclasses.replace(cfg, lr_schedule="warmup_cosine"), steps)
    assert isinstance(default, keras.optimizers.schedules.CosineDecay)
    assert float(default(10)) == pytest.approx(lr) and float(default(50)) == pytest.approx(0.0)


def test_kernel_penalty_enters_the_training_loss(tmp_path):
    cfg = _vit(tmp_path)
    model = _build(cfg)
    paths = regularize_kernel_variables(model, l1=1e-3, l2=1e-2)
    kernels = [v for v in model.trainable_weights if v.path in set(paths)]
    assert kernels and all(v.path.endswith("kernel") for v in kernels)
    assert not any("norm" in p or "pos_embedding" in p for p in paths)
    expected = sum(1e-3 * np.abs(v.numpy()).sum() + 1e-2 * np.square(v.numpy()).sum()
                   for v in kernels)
    assert float(sum(model.losses)) == pytest.approx(expected, rel=1e-4)
    model.compile(loss=keras.losses.CategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((4, 32, 32, 3), dtype=np.float32)
    y = keras.utils.to_categorical([0, 1, 2, 3], 10)
    y_pred = model(x)
    plain = float(keras.losses.CategoricalCrossentropy(from_logits=True)(y, y_pred))
    assert float(model.compute_loss(x=x, y=y, y_pred=y_pred)) == pytest.approx(plain + expected,
                                                                              rel=1e-4)
    assert regularize_kernel_variables(model, 0.0, 0.0) == []


def test_init_from_copies_all_but_a_resized_head_and_freezes(tmp_path):
    cfg = _vit(tmp_path)
    source = _build(cfg, 5)  # another number of classes
    path = tmp_path / "source.keras"
    source.save(path)
    model = _build(cfg)
    info = load_weights_from(model, path, freeze=True)
    assert info["head_replaced"] and info["trainable_layers"] == ["head"]
    src, dst = _by_key(source), _by_key(model)
    head = {_path_key(v) for v in model.head.weights}
    assert all(np.array_equal(src[k], dst[k]) for k in dst if k not in head)
    assert {_path_key(v) for v in model.trainable_variables} == head

    wider = _build(dataclasses.replace(cfg, embed_dim=32))
    with pytest.raises(ValueError, match="another architecture"):
        load_weights_from(wider, path)
    wmsa = _build(dataclasses.replace(cfg, model="wmsa"))
    with pytest.raises(ValueError, match="holds a ViT"):
        load_weights_from(wmsa, path)


def test_early_stopping_continues_its_count_after_a_resume(tmp_path):
    history = tmp_path / "history.csv"
    history.write_text("epoch,val_accuracy\n0,0.1\n1,0.3\n2,0.2\n")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    es = copy.deepcopy(ResumableEarlyStopping(2, history))  # KerasTuner copies callbacks
    es.set_model(model)
    es.on_train_begin()
    assert (es.best, es.best_epoch, es.wait) == (0.3, 1, 1)
    es.on_epoch_end(3, {"val_accuracy": 0.25})  # second epoch without improvement
    assert model.stop_training
    # Keras' own callback would have restarted its count and trained on.
    plain = keras.callbacks.EarlyStopping(monitor="val_accuracy", mode="max", patience=2)
    model.stop_training = False
    plain.set_model(model)
    plain.on_train_begin()
    plain.on_epoch_end(3, {"val_accuracy": 0.25})
    assert not model.stop_training


# --------------------------------------------------------------------------- #
# End to end
# --------------------------------------------------------------------------- #
@pytest.mark.slow
def test_spectral_run_resumes_with_tau_on_schedule_and_saves_plain_classifier(tmp_path, tiny_data_env):
    from dwt_keras.spectral.schedule import find_truncation_layers, tau_at

    cfg = _vit(tmp_path, epochs=3, spectral_reg=True, tau_init=0.2, tau_final=0.6,
               truncation_epochs=2, mask_profile="linear")
    run_dir = tmp_path / default_run_name(cfg)
    assert "spectral_linear_tau0.2-0.6_te2" in run_dir.name
    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(cfg, extra_callbacks=[_StopAtFit(1)]))
    assert len(read_history(run_dir / "history.csv")) == 1

    report = train(cfg)  # the same command: resumes at epoch 2
    history = read_history(run_dir / "history.csv")
    assert [int(r["epoch"]) for r in history] == [0, 1, 2]
    # tau follows the epoch, not the session: epoch 1 (the first resumed one) is 0.6, not 0.2.
    assert [r["spectral_tau"] for r in history] == pytest.approx(
        [tau_at(0, 2, 0.2, 0.6), tau_at(1, 2, 0.2, 0.6), 1.0])
    assert [r["spectral_phase"] for r in history] == [1.0, 1.0, 0.0]
    assert report["spectral"]["tau_history"] == pytest.approx([0.2, 0.6, 1.0])
    assert report["spectral"]["truncation_epochs"] == 2
    assert report["spectral"]["mask_profile"] == "linear"

    for name in ("best.keras", "last.keras"):
        saved = keras.saving.load_model(run_dir / name)
        assert type(saved).__name__ == "ViT"  # the plain classifier
        assert find_truncation_layers(saved) == []
        assert saved.predict(np.zeros((2, 32, 32, 3), np.float32), verbose=0).shape == (2, 10)
    last = keras.saving.load_model(run_dir / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 3 * 2  # the real, resumed optimizer state
    # Validation was never filtered: the logged best val_accuracy is best.keras on raw images.
    splits = load_arrays("cifar10_subset", validation_split=cfg.validation_split, seed=cfg.seed)
    best = keras.saving.load_model(run_dir / "best.keras")
    raw_acc = np.mean(best.predict(splits.x_val, verbose=0).argmax(-1) == splits.y_val.reshape(-1))
    assert raw_acc == pytest.approx(report["selection"]["best_value"], abs=1e-6)
    assert report["test"]["n"] == 200
    assert report["config"]["spectral_reg"] is True


@pytest.mark.slow
def test_transfer_and_regularisation_then_export_of_the_finished_run(
        tmp_path, tiny_data_env):
    from dwt_keras.training.export import _tflite_interpreter

    base = _cfg(tmp_path, epochs=1, warmup_epochs=0)
    source = _build(base)
    source.save(tmp_path / "pre.keras")
    cfg = dataclasses.replace(base, init_from=str(tmp_path / "pre.keras"), freeze=True, l2=1e-2,
                              lr=1e-2)
    report = train(cfg)
    run_dir = pathlib.Path(report["run_dir"])
    extras = report["training_extras"]
    assert extras["transfer"]["trainable_layers"] == ["head"]
    assert not extras["transfer"]["head_replaced"]

    best = keras.saving.load_model(run_dir / "best.keras")
    src, got = _by_key(source), _by_key(best)
    head = {_path_key(v) for v in best.head.weights}
    assert all(np.array_equal(src[k], got[k]) for k in got if k not in head)  # frozen
    assert not all(np.array_equal(src[k], got[k]) for k in head)  # the head trained
    # Only the trainable head kernel is penalised; the logged term is l2 * sum(w^2).
    assert [p.split("/", 1)[1] for p in extras["regularization"]["penalised_kernels"]] \
        == ["head/kernel"]
    assert extras["regularization"]["penalty_last_epoch"] == pytest.approx(
        1e-2 * np.square(got["head/kernel"]).sum(), rel=1e-4)

    # --export on the finished run: exported from best.keras, without retraining.
    again = train(dataclasses.replace(cfg, export="tflite"))
    assert len(read_history(run_dir / "history.csv")) == 1
    export = again["training_extras"]["export"]
    assert json.loads((run_dir / "report.json").read_text())["training_extras"]["export"] == export
    x = load_arrays("cifar10_subset").x_test[:8]
    interpreter = _tflite_interpreter(export["path"])
    inp = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(inp["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    lite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    keras_logits = best.predict(x, verbose=0)
    assert np.max(np.abs(lite - keras_logits)) < 1e-4
    assert export["bytes"] == os.path.getsize(export["path"]) and export["latency_ms_per_batch"] > 0


@pytest.mark.slow
def test_early_stopping_stops_on_a_plateau_and_reports_the_best_epoch(tmp_path, tiny_data_env):
    # lr 1e-9: the predictions cannot change, so val_accuracy never improves after epoch 1.
    cfg = _vit(tmp_path, epochs=5, lr=1e-9, lr_schedule="constant", warmup_epochs=0,
               early_stopping_patience=1)
    report = train(cfg)
    assert len(report["history"]) == 2
    es = report["training_extras"]["early_stopping"]
    assert es["stopped_early"] and es["epochs_run"] == 2
    assert report["selection"]["best_epoch"] == 1


@pytest.mark.slow
def test_ensemble_averages_member_logits_and_resumes_member_by_member(tmp_path, tiny_data_env):
    from dwt_keras.training.schedules import make_lr_schedule

    cfg = _vit(tmp_path, epochs=1, max_train_samples=32, ensemble=2, lr_schedule="exponential",
               saliency_images=1)
    run_dir = tmp_path / default_run_name(cfg)
    with pytest.raises(KeyboardInterrupt):  # interrupted in member 1
        train(dataclasses.replace(cfg, extra_callbacks=[_StopAtFit(0, fit_index=1)]))
    assert (run_dir / "member0" / "report.json").exists()
    assert not (run_dir / "member1" / "report.json").exists()
    member0_history = (run_dir / "member0" / "history.csv").read_text()

    report = train(cfg)
    assert (run_dir / "member0" / "history.csv").read_text() == member0_history  # not retrained
    ens = report["ensemble"]
    members = [keras.saving.load_model(run_dir / f"member{i}" / "best.keras") for i in range(2)]
    assert [json.loads((run_dir / f"member{i}" / "config.json").read_text())["seed"]
            for i in range(2)] == [3, 4]
    splits = load_arrays("cifar10_subset")
    x = splits.x_test
    mean_logits = np.mean([m.predict(x, verbose=0) for m in members], axis=0)
    expected_acc = float(np.mean(mean_logits.argmax(-1) == splits.y_test.reshape(-1)))
    assert ens["test"]["accuracy"] == pytest.approx(expected_acc)
    params = [m.count_params() for m in members]
    assert ens["params"] == {"per_member": params, "total": sum(params)}
    assert ens["bytes"]["bytes_total"] == sum(
        os.path.getsize(run_dir / f"member{i}" / "best.keras") for i in range(2))
    # --lr_schedule exponential (one step, no warm-up left): lr * 0.01 after the step, where
    # the default warm-up + cosine would be at 0.
    last = keras.saving.load_model(run_dir / "member1" / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 1
    assert float(last.optimizer.learning_rate) == pytest.approx(
        float(make_lr_schedule("exponential", 1e-3, 1, 1)(1)))
    assert float(last.optimizer.learning_rate) == pytest.approx(1e-5)
    saved = keras.saving.load_model(run_dir / "ensemble.keras")
    np.testing.assert_allclose(saved.predict(x[:16], verbose=0), mean_logits[:16], atol=1e-5)
    # --saliency_images: for the averaged model, not for each member.
    png = pathlib.Path(report["training_extras"]["saliency"]["files"][0])
    assert png.parent == run_dir / "saliency" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (run_dir / "member0" / "saliency").exists()
    assert train(cfg)["ensemble"]["test"] == ens["test"]  # finished: read back


@pytest.mark.slow
def test_app_cross_validation_with_spectral_and_extras_flags(tmp_path, tiny_data_env):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    args = ["--model=vit", "--model_size=custom", "--embed_dim=16", "--depth=1", "--num_heads=2",
            "--patch_size=8", "--dataset=cifar10_subset", "--max_train_samples=80",
            "--validation_split=0.005",
            "--batch_size=20", "--epochs=1", "--warmup_epochs=0", "--augment=none",
            "--cv_folds=2", "--spectral_reg", "--truncation_epochs=1", "--tau_init=0.3",
            "--lr_schedule=cosine", "--l2=1e-4", "--verbose=0", f"--save_dir={tmp_path}"]
    proc = subprocess.run([sys.executable, str(ROOT / "apps" / "wmsa_cifar10.py"), *args],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert "spectral_cosine_tau0.3-1_te1" in run_dir.name and "cv2" in run_dir.name
    report = json.loads((run_dir / "report.json").read_text())
    cv = report["cross_validation"]
    folds = cv["folds"]
    # Folds partition the training split: its first 80 images plus the validation part.
    pool = 80 + report["data"]["n_val"]
    assert len(folds) == 2 and all(f["n_train"] + f["n_val"] == pool for f in folds)
    assert sum(f["n_val"] for f in folds) == pool
    accs = [f["accuracy"] for f in folds]
    assert cv["summary"]["accuracy"]["mean"] == pytest.approx(np.mean(accs))
    assert cv["summary"]["accuracy"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert all(f["n"] == 200 for f in folds)  # every fold's model scored on the TEST split
    for i in range(2):
        fold = json.loads((run_dir / f"fold{i}" / "report.json").read_text())
        assert fold["config"]["spectral_reg"] and fold["config"]["l2"] == 1e-4
        assert fold["config"]["lr_schedule"] == "cosine" and fold["config"]["seed"] == i
        assert fold["spectral"]["tau_history"] == [0.3]
        assert fold["training_extras"]["regularization"]["penalty_last_epoch"] > 0


@pytest.mark.slow
def test_interrupted_run_resumes_and_reports_on_test_split(tmp_path, tiny_data_env):
    cfg = _cfg(tmp_path)
    run_dir = tmp_path / default_run_name(cfg)
    with pytest.raises(KeyboardInterrupt):
        train(dataclasses.replace(cfg, extra_callbacks=[_StopAtFit(1)]))
    assert [int(r["epoch"]) for r in read_history(run_dir / "history.csv")] == [0]
    assert not (run_dir / "report.json").exists()

    report = train(cfg)  # the same command again: continues at epoch 2
    history = read_history(run_dir / "history.csv")
    assert [int(r["epoch"]) for r in history] == [0, 1]
    last = keras.saving.load_model(run_dir / "last.keras")
    assert int(last.optimizer.iterations.numpy()) == 2 * 2  # 2 epochs x 2 steps, not restarted
    saved = json.loads((run_dir / "report.json").read_text())
    assert saved["test"]["accuracy"] == report["test"]["accuracy"]
    assert report["test"]["n"] == 200  # the whole TEST split of cifar10_subset
    assert sum(map(sum, report["test"]["confusion_matrix"])) == 200
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
        _cfg(tmp_path, **kw).validate()
    with pytest.raises(ValueError, match=match):
        train(_cfg(tmp_path, **kw))
    assert not any(tmp_path.iterdir())  # nothing written


def test_levels_too_deep_for_the_data_fail_before_training(tmp_path, tiny_data_env):
    with pytest.raises(ValueError, match="too deep"):
        train(_cfg(tmp_path, n_levels=6))
    assert not list(tmp_path.rglob("history.csv"))


@pytest.mark.parametrize(
    "flag,expected",
    [
        ("--augment=crop_flip,jitter", ["jitter", "randaugment"]),
        # A shared training extra that does not apply to transformers.
        ("--batch_norm", ["--batch_norm is not applicable", "LayerNorm"]),
        # A flag error is one line, without the usage text.
        ("--epochs=-1", ["error: --epochs must be >= 0", "(see --help)"]),
    ],
)
@pytest.mark.slow
def test_app_rejects_bad_flags_with_clear_message(tmp_path, flag, expected):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "apps" / "wmsa_cifar10.py"), flag, f"--save_dir={tmp_path}"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 2
    assert all(text in proc.stderr for text in expected), proc.stderr[-2000:]
    assert "Train a wavelet" not in proc.stderr  # no usage text before the message
    assert not any(tmp_path.iterdir())
