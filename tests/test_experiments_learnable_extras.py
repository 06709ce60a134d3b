"""Spectral truncation and the shared training extras in the learnable-wavelet experiments.

Tiny runs: an MNIST subset (192 train / 64 val / 200 test images, loaded once), the adding
problem with T = 10 and synthetic 8x8 images for sequential MNIST. Each test checks a property
that would fail if its flag were ignored.
"""

import dataclasses
import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from dwt_keras.experiments.learnable import LearnableConfig, run_learnable
from dwt_keras.learnable import models as learnable_models
from dwt_keras.spectral.truncation import SequenceImageTruncation
from dwt_keras.spectral.dct import dct2
from dwt_keras.spectral.truncation import SpectralTruncation, spectral_mask

REPO = pathlib.Path(__file__).resolve().parents[1]


@keras.saving.register_keras_serializable(package="test_learnable_extras")
class TrainingInputProbe(keras.layers.Layer):
    """Identity that records, per training call, the share of the batch's DCT energy where the
    tau = 0.05 cosine mask is zero (images given as `(B, H, W, C)` or serialised `(B, H*W, C)`)."""

    def __init__(self, image_shape=(28, 28, 1), slots=64, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(image_shape)
        self.slots = int(slots)
        # Plain tf.Variables, not Keras weights: restoring the best epoch's weights at the end of
        # training must not rewind the record.
        self.high = tf.Variable(tf.zeros(self.slots), trainable=False)
        self.calls = tf.Variable(0.0, trainable=False)
        h, w, _ = self.image_shape
        self._stop = (spectral_mask(h, w, 0.05, "cosine", 0.1) == 0).astype("float32")

    def call(self, x, training=None):
        if not training:
            return x
        coeffs = dct2(tf.reshape(x, (-1, *self.image_shape)))
        energy = tf.square(coeffs)
        share = tf.reduce_sum(energy * self._stop[None, :, :, None]) / tf.reduce_sum(energy)
        i = tf.minimum(tf.cast(self.calls, tf.int32), self.slots - 1)
        self.high.assign(tf.tensor_scatter_nd_update(self.high, [[i]], [share]))
        self.calls.assign_add(1.0)
        return x

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape), "slots": self.slots}


def _with_probe(build, image_shape, holder):
    """Wraps a model builder so that its model starts with a `TrainingInputProbe`."""

    def probed(*args, **kwargs):
        base = build(*args, **kwargs)
        inputs = keras.Input(base.inputs[0].shape[1:])
        holder["probe"] = TrainingInputProbe(image_shape, name="probe")
        return keras.Model(inputs, base(holder["probe"](inputs)), name=base.name)

    return probed


@pytest.fixture(scope="module")
def mnist_subset(tiny_data_dir):
    from dwt_keras.data import load_arrays

    s = load_arrays("mnist", data_dir=str(tiny_data_dir), validation_split=0.1, seed=0)
    info = dict(s.info, n_train=192, n_val=64, n_test=200)

    def background(x):  # MNIST-like: the darker 60 % of the generated pixels exactly 0
        return np.where(x < np.quantile(x, 0.6), 0.0, x).astype(x.dtype)

    return dataclasses.replace(s, x_train=background(s.x_train[:192]), y_train=s.y_train[:192],
                               x_val=background(s.x_val[:64]), y_val=s.y_val[:64],
                               x_test=background(s.x_test[:200]), y_test=s.y_test[:200], info=info)


@pytest.fixture
def small_mnist(mnist_subset, monkeypatch):
    import dwt_keras.data

    monkeypatch.setattr(dwt_keras.data, "load_arrays", lambda *a, **k: dataclasses.replace(mnist_subset))
    return mnist_subset


def _mnist(tmp_path, **kw):
    base = dict(experiment="mnist", fc1="wavelet", epochs=1, batch_size=64, save_dir=str(tmp_path),
                verbose=0, plots=False)
    return LearnableConfig(**{**base, **kw})


def _adding(tmp_path, **kw):
    base = dict(experiment="adding", rnn="wavelet", hidden=16, compress=("state",), levels=2, filter_length=4,
                seq_len=10, epochs=1, steps_per_epoch=3, batch_size=8, n_val=16, n_test=32, optimizer="adam",
                lr=1e-2, lr_decay=1.0, save_dir=str(tmp_path), verbose=0, plots=False)
    return LearnableConfig(**{**base, **kw})


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(experiment="adding", spectral_reg=True),
         "spectral truncation needs image inputs; experiment adding has sequences"),
        (dict(experiment="copy", augment="mnist"), "`augment` needs image inputs"),
        (dict(experiment="adding", saliency_images=2), "mnist only"),
        (dict(experiment="smnist", ensemble=2), "mnist only"),
        (dict(experiment="copy", cv_folds=3), "mnist only"),
        (dict(experiment="adding", dropout=0.2), "has none"),
        (dict(lr_schedule="cosine", lr_decay=0.8), "two schedules"),
        (dict(lr_schedule="warmup"), "must be one of constant"),
        (dict(spectral_reg=True, epochs=2, truncation_epochs=3), "must be <= `epochs`"),
        (dict(spectral_reg=True, tau_init=0.0), "`tau_init` must be > 0.0"),
        (dict(spectral_reg=True, mask_profile="gauss"), "linear, cosine"),
        (dict(cv_folds=1), "must be 0 \\(off\\) or >= 2"),
        (dict(ensemble=0), ">= 1"),
        (dict(init_from="/nonexistent/model.keras"), "is not a file"),
        (dict(freeze=True), "needs `init_from`"),
        (dict(export="onnx"), "must be one of none, tflite, savedmodel"),
    ],
)
@pytest.mark.slow
def test_bad_extras_fail_before_any_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LearnableConfig(**kwargs).validate()


def test_a_schedule_replaces_the_experiments_step_decay():
    # The experiment's lr_decay (mnist: 0.8) applies to the constant schedule only.
    assert LearnableConfig(lr_schedule="cosine").validate().lr_decay == 1.0
    assert LearnableConfig().validate().lr_decay == 0.8
    config = LearnableConfig(experiment="smnist").validate()
    assert (config.optimizer, config.hidden, config.clipnorm) == ("rmsprop", 58, 1.0)


def test_sequence_image_truncation_filters_the_picture_not_the_stream():
    rng = np.random.default_rng(0)
    images = rng.random((3, 8, 8, 2)).astype("float32")
    seq = images.reshape(3, 64, 2)
    layer = SequenceImageTruncation((8, 8, 2), tau=0.2)
    want = SpectralTruncation(tau=0.2)(images, training=True)
    np.testing.assert_allclose(layer(seq, training=True), np.reshape(want, (3, 64, 2)), atol=1e-5)
    assert np.abs(np.asarray(want) - images).max() > 0.05  # it did filter
    np.testing.assert_array_equal(layer(seq, training=False), seq)  # identity outside training
    clone = SequenceImageTruncation.from_config(layer.get_config())
    assert clone.image_shape == (8, 8, 2) and clone.tau == pytest.approx(0.2)
    with pytest.raises(ValueError, match=r"expects sequences \(batch, 64, 2\)"):
        SequenceImageTruncation((8, 8, 2))(np.zeros((1, 60, 2), "float32"), training=True)


def test_mnist_spectral_truncation_reaches_training_inputs_only(tmp_path, small_mnist, monkeypatch):
    holder = {}
    monkeypatch.setattr(learnable_models, "build_mnist_cnn",
                        _with_probe(learnable_models.build_mnist_cnn, (28, 28, 1), holder))
    cfg = _mnist(tmp_path, fc1="dense", dense_units=16, epochs=3, spectral_reg=True, tau_init=0.05,
                 truncation_epochs=2)
    report = run_learnable(cfg)
    spectral = report["spectral"]
    assert spectral["enabled"] and spectral["mask_profile"] == "cosine"
    # tau_init at epoch 1, tau_final at the last truncated epoch, then off (logged as 1)
    assert spectral["tau_history"] == pytest.approx([0.05, 1.0, 1.0])
    assert spectral["phase_history"] == [1.0, 1.0, 0.0]
    high = holder["probe"].high.numpy()
    steps = 3  # 192 images / 64
    assert holder["probe"].calls.numpy() == 3 * steps
    assert high[:steps].max() < 1e-6  # epoch 1 (tau 0.05): nothing above the cut-off reached the model
    assert high[2 * steps:3 * steps].min() > 0.05  # epoch 3: the raw digits, full of high frequencies
    saved = json.loads((pathlib.Path(report["run_dir"]) / "report.json").read_text())
    assert saved["spectral"]["tau_history"] == spectral["tau_history"]
    assert saved["config"]["spectral_reg"] is True
    model = keras.saving.load_model(pathlib.Path(report["run_dir"]) / "model.keras")
    assert model.__class__.__name__ == "Functional"  # the plain classifier, not the training wrapper
    assert not [l for l in model._flatten_layers() if isinstance(l, SpectralTruncation)]


def test_smnist_truncates_the_image_before_serialisation(tmp_path, monkeypatch):
    import dwt_keras.data

    rng = np.random.default_rng(0)

    def tiny(name, data_dir=None, validation_split=0.1, seed=0):
        x = rng.uniform(size=(60, 8, 8, 1)).astype("float32")  # white noise: energy at all radii
        y = rng.integers(0, 10, size=60).astype("int32")
        return dwt_keras.data.DatasetSplits(x[:20], y[:20], x[20:40], y[20:40], x[40:], y[40:],
                                            {"name": name, "num_classes": 10, "n_test": 20})

    monkeypatch.setattr(dwt_keras.data, "load_arrays", tiny)
    holder = {}
    monkeypatch.setattr(learnable_models, "build_sequence_model",
                        _with_probe(learnable_models.build_sequence_model, (8, 8, 1), holder))
    cfg = LearnableConfig(experiment="smnist", rnn="gru", hidden=4, epochs=2, batch_size=10, optimizer="adam",
                              lr=1e-3, lr_decay=1.0, save_dir=str(tmp_path), verbose=0, spectral_reg=True,
                              truncation_epochs=1, augment="mnist", plots=False)
    report = run_learnable(cfg)
    assert report["spectral"]["tau_history"] == pytest.approx([0.05, 1.0])
    assert report["spectral"]["applied_to"] == "training images, before serialisation"
    high = holder["probe"].high.numpy()
    assert high[:2].max() < 1e-6 and high[2:4].min() > 0.05  # 2 steps per epoch


@pytest.mark.slow
def test_mnist_regularisation_augmentation_lr_schedule_saliency_export(tmp_path, small_mnist, monkeypatch):
    import dwt_keras.experiments.run as engine_run
    import dwt_keras.training.augmentation as augmentation

    zero_shares = []
    original = augmentation.augment_training_dataset

    def recording(ds, *args, **kwargs):
        def record(x):
            zero_shares.append(float(np.mean(x.numpy() == 0.0)))
            return x

        out = original(ds, *args, **kwargs)
        return out.map(lambda x, y: (tf.ensure_shape(tf.py_function(record, [x], tf.float32), x.shape), y))

    # the engine imported the function at module level: replace it where the engine calls it
    monkeypatch.setattr(engine_run, "augment_training_dataset", recording)
    cfg = _mnist(tmp_path, fc1="fastfood", epochs=2, lr_schedule="cosine", lr_decay=1.0, l2=1e-3, dropout=0.1,
                 batch_norm=True, augment="mnist", saliency_images=1, export="tflite")
    report = run_learnable(cfg)
    # cosine from lr 1.0 down to 1% over 2 epochs of 3 steps: the rate after epochs 1 and 2
    assert report["history"]["learning_rate"] == pytest.approx([0.505, 0.01], rel=1e-5)
    # noise: no exactly-zero background pixel left (raw MNIST: ~80% zeros)
    assert len(zero_shares) >= 6 and max(zero_shares) < 0.01
    assert np.mean(small_mnist.x_train == 0) > 0.5
    reg = report["regularization"]
    assert reg["penalized_layers"] == ["conv1", "conv2", "fc2"] and reg["layers_without_kernel_penalty"] == ["fc1"]
    run = pathlib.Path(report["run_dir"])
    model = keras.saving.load_model(run / "model.keras")
    names = [l.name for l in model.layers]
    assert {"conv1_bn", "conv1_dropout", "conv2_bn", "conv2_dropout"} <= set(names)
    assert "fc1_dropout" not in names  # nothing is inserted after a structured fc1
    model(small_mnist.x_test[:2])
    # the L2 terms of the three kernels, none for the Fastfood fc1
    l2 = 1e-3 * sum(float(np.sum(model.get_layer(n).kernel.numpy() ** 2)) for n in ("conv1", "conv2", "fc2"))
    assert len(model.losses) == 3 and float(sum(model.losses)) == pytest.approx(l2, rel=1e-4)
    export = report["export"]
    assert export["format"] == "tflite" and (run / "model.tflite").stat().st_size == export["bytes"]
    assert export["max_abs_diff_vs_keras"] < 1e-4 and export["latency_ms_per_batch"] > 0
    assert len(report["saliency"]["files"]) == 1 and pathlib.Path(report["saliency"]["files"][0]).is_file()


def test_default_lr_schedule_keeps_the_step_decay(tmp_path, small_mnist):
    report = run_learnable(_mnist(tmp_path, epochs=2, fc1="dense", dense_units=16))
    assert report["history"]["learning_rate"] == pytest.approx([0.8, 0.64])  # lr_decay 0.8 per epoch
    assert report["spectral"] == {"enabled": False} and "regularization" not in report


def test_early_stopping_stops_and_restores_the_best_epoch(tmp_path, small_mnist):
    # A learning rate of 1e-9 leaves the validation accuracy flat: no improvement after epoch 1.
    cfg = _mnist(tmp_path, fc1="dense", dense_units=16, epochs=5, optimizer="sgd", lr=1e-9, lr_decay=1.0,
                 early_stopping_patience=1)
    report = run_learnable(cfg)
    assert report["epochs_run"] == 2 and report["best_epoch"] == 1
    model = keras.saving.load_model(pathlib.Path(report["run_dir"]) / "model.keras")
    val_acc = np.mean(model.predict(small_mnist.x_val, verbose=0).argmax(-1) == small_mnist.y_val)
    assert val_acc == pytest.approx(report["history"]["val_accuracy"][0])


@pytest.mark.slow
def test_ensemble_averages_member_logits(tmp_path, small_mnist):
    import dwt_keras.training.ensemble  # noqa: F401 -- registers LogitAverage for loading

    report = run_learnable(_mnist(tmp_path, fc1="dense", dense_units=16, ensemble=2))
    run = pathlib.Path(report["run_dir"])
    member_files = [pathlib.Path(d) / "model.keras" for d in report["runs"]]
    members = [keras.saving.load_model(f) for f in member_files]
    ensemble = keras.saving.load_model(report["model_path"])
    assert pathlib.Path(report["model_path"]).parent == run
    x = small_mnist.x_test
    logits = [m.predict(x, verbose=0) for m in members]
    assert np.abs(logits[0] - logits[1]).max() > 1e-3  # different seeds, different members
    np.testing.assert_allclose(ensemble.predict(x, verbose=0), np.mean(logits, axis=0), atol=1e-5)
    assert report["test_accuracy"] == pytest.approx(np.mean(np.mean(logits, 0).argmax(-1) == small_mnist.y_test))
    assert report["params"] == sum(
        int(sum(int(np.prod(v.shape)) for v in m.trainable_variables)) for m in members)
    sizes = [f.stat().st_size for f in member_files]
    assert report["ensemble"]["bytes"]["bytes_total"] == sum(sizes)
    assert [m["seed"] for m in report["members"]] == [0, 1]


def test_cross_validation_reports_mean_of_fold_test_accuracies(tmp_path, small_mnist):
    report = run_learnable(_mnist(tmp_path, fc1="dense", dense_units=16, cv_folds=2))
    cv = report["cross_validation"]
    accs = [f["accuracy"] for f in cv["folds"]]
    assert len(accs) == 2 and report["test_accuracy"] == pytest.approx(np.mean(accs))
    assert [f["n_train"] + f["n_val"] for f in cv["folds"]] == [256, 256]  # train + val pooled
    assert all(f["n"] == 200 for f in cv["folds"])  # each fold's model scored on the test split
    run = pathlib.Path(report["run_dir"])
    assert (run / "report.json").is_file() and not (run / "model.keras").exists()


@pytest.mark.slow
def test_adding_init_from_freeze_l2_and_a_reported_tflite_failure(tmp_path):
    first = run_learnable(_adding(tmp_path, l2=1e-3, export="tflite"))
    assert first["regularization"]["penalized_layers"] == ["readout"]
    assert first["regularization"]["layers_without_kernel_penalty"] == ["wavelet_gru"]
    # The TFLite converter rejects the recurrent loop: reported after training, not raised.
    assert first["export"]["error"].startswith("ConverterError: Lowering tensor list ops is failed")
    assert "--export savedmodel" in first["export"]["hint"]
    src = pathlib.Path(first["run_dir"]) / "model.keras"
    assert src.is_file()
    before = keras.saving.load_model(src)
    second = run_learnable(_adding(tmp_path, init_from=str(src), freeze=True, export="savedmodel", seed=3))
    after = keras.saving.load_model(pathlib.Path(second["run_dir"]) / "model.keras")
    for w0, w1 in zip(before.get_layer("wavelet_gru").get_weights(), after.get_layer("wavelet_gru").get_weights()):
        np.testing.assert_array_equal(w0, w1)  # frozen: loaded and untouched
    assert np.abs(before.get_layer("readout").get_weights()[0] - after.get_layer("readout").get_weights()[0]).max() > 0
    assert second["transfer"]["freeze"] and second["transfer"]["trainable_layers"] == ["readout"]
    assert second["params"] == 16 + 1  # only the read-out trains
    assert second["export"]["max_abs_diff_vs_keras"] < 1e-5  # SavedModel handles the GRU loop
    with pytest.raises(ValueError, match=r"inputs of shape \(10, 2\); the data has \(30, 10\)"):
        run_learnable(_adding(tmp_path, experiment="copy", init_from=str(src)))


@pytest.mark.slow
def test_app_flags(tmp_path):
    """The flags of apps/learnable_wavelet.py are LearnableConfig's: defaults per experiment,
    a schedule replacing the step decay, flag files, and one-line errors before any work."""
    from absl import flags

    from dwt_keras import cli

    def cfg(*argv):
        fv = flags.FlagValues()
        cli.define_flags(LearnableConfig, flag_values=fv)
        fv(["app", *argv])
        try:
            return cli.config_from_flags(LearnableConfig, flag_values=fv).validate()
        except ValueError as e:
            return "ERR " + str(e)

    c = cfg()
    assert (c.lr_schedule, c.lr_decay, c.spectral_reg, c.export) == ("constant", 0.8, False, "none")
    c = cfg("--lr_schedule=cosine", "--spectral_reg", "--tau_init=0.2", "--truncation_epochs=3",
            "--mask_profile=linear", "--l2=1e-4", "--augment=mnist")
    assert (c.lr_schedule, c.lr_decay, c.spectral_reg, c.tau_init, c.truncation_epochs,
            c.mask_profile, c.l2, c.augment) == ("cosine", 1.0, True, 0.2, 3, "linear", 1e-4,
                                                 "mnist")
    assert "two schedules" in cfg("--lr_schedule=cosine", "--lr_decay=0.9")
    assert cfg("--experiment=adding", "--spectral_reg").startswith(
        "ERR spectral truncation needs image inputs; experiment adding has sequences")
    c = cfg(f"--flagfile={REPO / 'configs' / 'learnable_mnist_wavelet_spectral.cfg'}")
    assert (c.fc1, c.spectral_reg, c.truncation_epochs, c.epochs, c.lr_decay) == \
        ("wavelet", True, 5, 20, 0.8)
    # the old flag names still work
    c = cfg("--train_samples=100", "--noplot")
    assert c.max_train_samples == 100 and c.plots is False
    env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "apps/learnable_wavelet.py", "--experiment=copy",
                           "--saliency_images=2", f"--save_dir={tmp_path / 'bad'}"], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "error: --saliency_images is supported for experiment mnist only" in proc.stderr
    assert not (tmp_path / "bad").exists()
