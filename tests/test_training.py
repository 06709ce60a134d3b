"""Tests for dwt_keras.training: schedules, augmentation, regularisation, cross-validation,
ensembles, saliency, transfer learning, export and the flags."""

import copy
import dataclasses
import math

import keras
import numpy as np
import pytest
from absl import flags

from dwt_keras.training import (augmentation, cross_validation, ensemble, export, regularization,
                                saliency, schedules, transfer)
from dwt_keras.training.flags import TrainingOptions, define_training_flags


def _mlp(input_shape=(8, 8, 1), classes=3, hidden=6):
    inp = keras.Input(input_shape)
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(hidden, activation="relu", name="fc1")(x)
    out = keras.layers.Dense(classes, name="logits")(x)
    return keras.Model(inp, out, name="mlp")


def _cnn(input_shape=(8, 8, 1), classes=3):
    return keras.Sequential([keras.Input(input_shape),
                             keras.layers.Conv2D(4, 3, activation="relu", name="conv1"),
                             keras.layers.Flatten(),
                             keras.layers.Dense(classes, name="logits")], name="cnn")


def _lr_at(schedule, step):
    return float(keras.ops.convert_to_numpy(schedule(step)))


# -- schedules -----------------------------------------------------------------------------

def test_step_schedule_drops_at_half_and_three_quarters():
    s = schedules.make_lr_schedule("step", 0.1, steps_per_epoch=10, epochs=4)  # 40 steps
    assert _lr_at(s, 0) == pytest.approx(0.1)
    assert _lr_at(s, 20) == pytest.approx(0.1)      # boundary itself still the old value
    assert _lr_at(s, 21) == pytest.approx(0.01)
    assert _lr_at(s, 31) == pytest.approx(0.001)


def test_exponential_and_cosine_end_at_final_fraction():
    for name in ("exponential", "cosine"):
        s = schedules.make_lr_schedule(name, 0.2, steps_per_epoch=5, epochs=4, final_fraction=0.05)
        assert _lr_at(s, 0) == pytest.approx(0.2, rel=1e-5)
        assert _lr_at(s, 20) == pytest.approx(0.01, rel=1e-4)
    cos = schedules.make_lr_schedule("cosine", 1.0, steps_per_epoch=10, epochs=1, final_fraction=0.0)
    # half a cosine: lr(t) = (1 + cos(pi t / T)) / 2
    assert _lr_at(cos, 5) == pytest.approx(0.5, abs=1e-6)


def test_cyclical_triangular_formula():
    s = schedules.CyclicalLearningRate(0.1, 1.0, step_size=4)
    expected = [0.1 + 0.9 * max(0.0, 1 - abs(t / 4 - 2 * math.floor(1 + t / 8) + 1))
                for t in range(17)]
    got = [_lr_at(s, t) for t in range(17)]
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert got[4] == pytest.approx(1.0) and got[8] == pytest.approx(0.1)
    half = schedules.CyclicalLearningRate(0.0, 1.0, step_size=4, mode="triangular2")
    assert _lr_at(half, 12) == pytest.approx(0.5)   # second peak halved
    clone = schedules.CyclicalLearningRate.from_config(s.get_config())
    assert _lr_at(clone, 6) == pytest.approx(_lr_at(s, 6))


def test_schedule_follows_optimizer_iterations_and_survives_deepcopy():
    s = schedules.make_lr_schedule("step", 0.1, steps_per_epoch=2, epochs=2)
    opt = keras.optimizers.SGD(copy.deepcopy(s))
    opt.iterations.assign(3)
    assert schedules.current_learning_rate(opt) == pytest.approx(0.01)


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="Valid choices"):
        schedules.make_lr_schedule("linear", 0.1, 10, 1)
    with pytest.raises(ValueError, match="steps_per_epoch"):
        schedules.make_lr_schedule("cosine", 0.1, 0, 1)
    assert schedules.make_lr_schedule("constant", 0.1, 0, 0) == 0.1


# -- augmentation ----------------------------------------------------------------------------

def test_augmentation_layers_and_dataset():
    import tensorflow as tf

    assert augmentation.resolve_augment("auto", (32, 32, 3)) == "cifar"
    assert augmentation.resolve_augment("auto", (28, 28, 1)) == "mnist"
    assert augmentation.resolve_augment("crop_flip") == "cifar"
    assert augmentation.build_augmentation("none", (8, 8, 1)) is None
    with pytest.raises(ValueError, match="Valid choices"):
        augmentation.resolve_augment("mixup")

    x = np.random.default_rng(0).random((4, 12, 12, 3), dtype=np.float32)
    aug = augmentation.build_augmentation("cifar", (12, 12, 3), seed=1)
    out = np.asarray(aug(x, training=True))
    assert out.shape == x.shape and not np.allclose(out, x)
    # crop + flip only move pixels (or bring in the zero padding): no new values appear
    assert np.all(np.isin(np.round(out, 6), np.append(np.round(x, 6), 0.0)))

    mnist = augmentation.build_augmentation("mnist", (12, 12, 1), seed=1)
    ds = tf.data.Dataset.from_tensor_slices((x[..., :1], np.arange(4))).batch(2)
    batches = list(augmentation.augment_dataset(ds, mnist))
    assert [b[0].shape[0] for b in batches] == [2, 2]
    assert not np.allclose(np.concatenate([b[0] for b in batches]), x[..., :1])
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), np.arange(4))


# -- regularisation --------------------------------------------------------------------------

@pytest.mark.parametrize("builder", [_mlp, _cnn])
def test_regularization_clone(builder):
    model = builder()
    x = np.random.default_rng(0).random((5, 8, 8, 1), dtype=np.float32)
    reg = regularization.apply_regularization(model, l1=0.0, l2=0.5, dropout=0.3, batch_norm=True)
    names = [l.name for l in reg.layers]
    hidden = "fc1" if builder is _mlp else "conv1"
    assert f"{hidden}_bn" in names and f"{hidden}_dropout" in names
    assert "logits_bn" not in names and "logits_dropout" not in names
    # weights were copied by name; the penalty is 0.5 * sum(w^2) per kernel
    for layer in model.layers:
        if layer.weights:
            for a, b in zip(layer.get_weights(), reg.get_layer(layer.name).get_weights()):
                np.testing.assert_array_equal(a, b)
    reg(x)
    expected = sum(0.5 * float(np.sum(np.square(l.get_weights()[0]))) for l in model.layers
                   if isinstance(l, regularization.KERNEL_LAYERS))
    assert float(sum(keras.ops.convert_to_numpy(v) for v in reg.losses)) == \
        pytest.approx(expected, rel=1e-5)
    # dropout is active in training only; inference equals BN-at-init (identity) model
    np.testing.assert_allclose(np.asarray(reg(x, training=False)),
                               np.asarray(model(x)), rtol=1e-2, atol=1e-2)
    assert regularization.apply_regularization(model) is model


def test_regularization_bad_input():
    with pytest.raises(ValueError, match="dropout"):
        regularization.apply_regularization(_mlp(), dropout=1.0)
    with pytest.raises(ValueError, match="l2"):
        regularization.apply_regularization(_mlp(), l2=-1.0)

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(2)

        def call(self, x):
            return self.d(x)

    with pytest.raises(ValueError, match="subclassed"):
        regularization.apply_regularization(Sub(), l2=0.1)


# -- cross-validation ------------------------------------------------------------------------

def _splits(n=60, classes=3, seed=0):
    from dwt_keras.data import DatasetSplits

    rng = np.random.default_rng(seed)
    x = rng.random((n, 4, 4, 1), dtype=np.float32)
    y = np.arange(n) % classes
    return DatasetSplits(x[:40], y[:40], x[40:50], y[40:50], x[50:], y[50:],
                         {"name": "toy", "n_train": 40, "n_val": 10, "n_test": 10,
                          "class_names": ["a", "b", "c"]})


def test_folds_partition_training_split_only():
    splits = _splits()
    folds = list(cross_validation.fold_splits(splits, 5, seed=0))
    assert len(folds) == 5
    pool = np.concatenate([splits.x_train, splits.x_val]).reshape(50, -1)
    seen = []
    for fold, fs in folds:
        assert len(fs.x_train) + len(fs.x_val) == 50
        np.testing.assert_array_equal(fs.x_test, splits.x_test)   # test untouched
        tests = {r.tobytes() for r in splits.x_test.reshape(10, -1)}
        assert not tests & {r.tobytes() for r in fs.x_train.reshape(len(fs.x_train), -1)}
        seen.extend(r.tobytes() for r in fs.x_val.reshape(len(fs.x_val), -1))
        counts = np.bincount(fs.y_val, minlength=3)
        assert counts.max() - counts.min() <= 1   # stratified
    assert sorted(seen) == sorted(r.tobytes() for r in pool)   # each sample validated once


def test_cross_validate_mean_std_on_test_split():
    splits = _splits()
    calls = []

    def train_fn(fs, fold):
        calls.append((fold, len(fs.x_train)))
        return fold

    def evaluate_fn(model, x, y):
        assert len(x) == 10  # the test split
        return {"accuracy": 0.1 * model, "name": "ignored"}

    result = cross_validation.cross_validate(splits, 3, train_fn, evaluate_fn=evaluate_fn)
    assert [c[0] for c in calls] == [0, 1, 2]
    acc = result["summary"]["accuracy"]
    assert acc["mean"] == pytest.approx(0.1)
    assert acc["std"] == pytest.approx(np.std([0.0, 0.1, 0.2], ddof=1))
    assert result["evaluated_on"] == "test"


def test_cv_bad_input():
    for k in (1, -2, True):
        with pytest.raises(ValueError, match="cv_folds"):
            cross_validation.validate_cv_folds(k)
    with pytest.raises(ValueError, match="rarest class"):
        cross_validation.kfold_indices(np.array([0, 0, 0, 1, 1]), 3)


# -- ensembles -------------------------------------------------------------------------------

def test_ensemble_averages_logits(tmp_path):
    x = np.random.default_rng(0).random((6, 8, 8, 1), dtype=np.float32)
    members = [_mlp(), _mlp()]
    ens = ensemble.build_ensemble(members)
    expected = (np.asarray(members[0](x)) + np.asarray(members[1](x))) / 2
    np.testing.assert_allclose(np.asarray(ens(x)), expected, rtol=1e-5, atol=1e-6)
    # probabilities averaged at the log scale give softmax(mean logits)
    probs = [keras.Sequential([m, keras.layers.Softmax()]) for m in members]
    ens_p = ensemble.build_ensemble(probs, input_shape=(8, 8, 1), from_probabilities=True)
    np.testing.assert_allclose(np.asarray(keras.ops.softmax(ens_p(x))),
                               np.asarray(keras.ops.softmax(expected)), rtol=1e-4, atol=1e-6)
    path = tmp_path / "ens.keras"
    ens.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(x)), expected,
                               rtol=1e-5, atol=1e-6)
    files = []
    for i, n in enumerate((10, 25)):
        files.append(tmp_path / f"m{i}.bin")
        files[-1].write_bytes(b"x" * n)
    assert ensemble.ensemble_bytes(files)["bytes_total"] == 35
    with pytest.raises(ValueError, match="ensemble"):
        ensemble.validate_ensemble_size(0)
    seeds = []
    ensemble.train_ensemble(3, lambda i, s: seeds.append(s), seed=5)
    assert seeds == [5, 6, 7]


# -- saliency --------------------------------------------------------------------------------

def test_saliency_gradients_and_integrated_gradients(tmp_path):
    # A linear model: gradient = weight column, IG = x * w exactly.
    w = np.random.default_rng(1).standard_normal((16, 2)).astype(np.float32)
    inp = keras.Input((4, 4, 1))
    out = keras.layers.Dense(2, use_bias=False, name="lin")(keras.layers.Flatten()(inp))
    lin = keras.Model(inp, out)
    lin.get_layer("lin").set_weights([w])
    x = np.random.default_rng(2).random((3, 4, 4, 1), dtype=np.float32)
    g = saliency.gradient_saliency(lin, x, class_idx=1)
    np.testing.assert_allclose(g, np.broadcast_to(np.abs(w[:, 1]).reshape(4, 4), g.shape),
                               rtol=1e-5)
    ig, gap = saliency.integrated_gradients(lin, x, class_idx=0, steps=4)
    np.testing.assert_allclose(ig, x * w[:, 0].reshape(1, 4, 4, 1), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gap, 0.0, atol=1e-4)

    # completeness on a non-linear model: the gap shrinks with more steps
    model = _cnn(input_shape=(4, 4, 1))
    _, gap8 = saliency.integrated_gradients(model, x, steps=8)
    acts, layer = saliency.activation_maps(model, x)
    assert layer == "conv1" and acts.shape == (3, 2, 2)
    acts_mlp, layer_mlp = saliency.activation_maps(_mlp(hidden=10), x.repeat(2, 1).repeat(2, 2))
    assert layer_mlp == "fc1" and acts_mlp.shape == (3, 3, 4)   # 10 units, 3 rows of 4
    info = saliency.write_saliency_pngs(model, x[:2], np.array([0, 1]), tmp_path,
                                        class_names=["a", "b", "c"], steps=8)
    assert len(info["files"]) == 2
    for f in info["files"]:
        with open(f, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"
    assert np.all(np.abs(gap8) < 0.05 + 0.05 * np.abs(np.asarray(model(x))).max())


# -- transfer --------------------------------------------------------------------------------

def test_transfer_from_keras_file(tmp_path):
    base = _mlp(classes=3)
    path = tmp_path / "base.keras"
    base.save(path)
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)

    same, info = transfer.prepare_transfer(path, num_classes=3, freeze=True)
    assert not info["head_replaced"] and info["trainable_layers"] == ["logits"]
    np.testing.assert_allclose(np.asarray(same(x)), np.asarray(base(x)), rtol=1e-6)
    assert [w.name for w in same.trainable_weights] == ["kernel", "bias"]
    assert same.get_layer("fc1").trainable is False

    new, info = transfer.prepare_transfer(path, num_classes=5, freeze=True)
    assert info["head_replaced"] and new.output_shape[-1] == 5
    np.testing.assert_array_equal(new.get_layer("fc1").get_weights()[0],
                                  base.get_layer("fc1").get_weights()[0])
    # a frozen body does not move during training
    new.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = new.get_layer("fc1").get_weights()[0].copy()
    new.fit(np.repeat(x, 4, 0), np.arange(8) % 5, epochs=1, verbose=0)
    np.testing.assert_array_equal(new.get_layer("fc1").get_weights()[0], before)


def test_transfer_bad_input(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        transfer.check_init_from(tmp_path / "missing.keras")
    junk = tmp_path / "junk.dwtc"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="neither"):
        transfer.load_init_model(junk)


# -- export ----------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["savedmodel", "tflite"])
def test_export_measures_what_it_wrote(tmp_path, fmt):
    model = _cnn()
    x = np.random.default_rng(0).random((8, 8, 8, 1), dtype=np.float32)
    info = export.export_model(model, fmt, tmp_path, x, batch_size=4, repeats=3)
    assert info["format"] == fmt and info["bytes"] > 0 and info["batch_size"] == 4
    assert info["latency_ms_per_batch"] > 0
    assert info["latency_ms_per_sample"] == pytest.approx(info["latency_ms_per_batch"] / 4)
    assert info["max_abs_diff_vs_keras"] < 1e-4
    assert (tmp_path / ("model.tflite" if fmt == "tflite" else "savedmodel")).exists()
    assert export.export_model(model, "none", tmp_path, x) is None
    with pytest.raises(ValueError, match="Valid choices"):
        export.export_model(model, "onnx", tmp_path, x)


# -- flags -----------------------------------------------------------------------------------

def _parse(argv):
    fv = flags.FlagValues()
    define_training_flags(fv)
    fv(["prog", *argv])
    return TrainingOptions.from_flags(fv)


@pytest.mark.parametrize("argv,match", [
    (["--cv_folds", "1"], "cv_folds"),
    (["--ensemble", "0"], "ensemble"),
    (["--init_from", "/no/such/model.keras"], "no such file"),
    (["--lr_schedule", "linear"], "constant|none|step"),
    (["--augment", "mixup"], "none|auto|mnist|cifar|crop_flip"),
    (["--export", "onnx"], "none|tflite|savedmodel"),
    (["--dropout", "1.0"], "dropout"),
    (["--freeze"], "needs --init_from"),
    (["--cv_folds", "3", "--ensemble", "2"], "cannot be combined"),
])
def test_flags_reject_bad_values_at_parse_time(argv, match):
    with pytest.raises(flags.IllegalFlagValueError, match=match):
        _parse(argv)


def test_flags_good_values_and_python_validation(tmp_path):
    path = tmp_path / "m.keras"
    _mlp().save(path)
    opts = _parse(["--cv_folds", "3", "--lr_schedule", "cosine", "--augment", "auto", "--l2",
                   "1e-4", "--init_from", str(path), "--freeze", "--export", "tflite"])
    assert (opts.cv_folds, opts.lr_schedule, opts.freeze, opts.export) == \
        (3, "cosine", True, "tflite")
    with pytest.raises(ValueError, match="cannot be combined"):
        dataclasses.replace(opts, ensemble=2).validate()
    with pytest.raises(ValueError, match="ensemble"):
        TrainingOptions(ensemble=0).validate()
    # an app that already owns a flag keeps it
    fv = flags.FlagValues()
    flags.DEFINE_integer("early_stopping_patience", 7, "app's own", flag_values=fv)
    define_training_flags(fv)
    fv(["prog"])
    assert fv.early_stopping_patience == 7 and fv.ensemble == 1


# -- the app helpers -------------------------------------------------------------------------

def test_extras_helpers_end_to_end(tmp_path):
    from dwt_keras.training import extras

    splits = _splits(n=60)
    splits.x_train = splits.x_train.repeat(2, 1).repeat(2, 2)
    splits.x_val = splits.x_val.repeat(2, 1).repeat(2, 2)
    splits.x_test = splits.x_test.repeat(2, 1).repeat(2, 2)
    base = tmp_path / "base.keras"
    _mlp(classes=5).save(base)

    opts = TrainingOptions(init_from=str(base), freeze=True, dropout=0.2, ensemble=2,
                           saliency_images=1, lr_schedule="cosine").validate()
    model = extras.prepare_model(lambda: None, opts, num_classes=3)
    assert model.output_shape[-1] == 3 and "fc1_dropout" in [l.name for l in model.layers]
    assert [l.name for l in model.layers if l.trainable and l.weights] == ["head"]
    lr = extras.learning_rate(opts, 0.1, n_train=40, batch_size=16, epochs=2)
    assert _lr_at(lr, 0) == pytest.approx(0.1) and _lr_at(lr, 6) == pytest.approx(0.001)

    def train_fn(fold_splits, seed):
        keras.utils.set_random_seed(seed)
        m = _mlp()
        m.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(fold_splits.x_train, fold_splits.y_train, epochs=1, verbose=0)
        return m

    def store(m, i):
        path = tmp_path / f"member{i}.keras"
        m.save(path)
        return path

    out = extras.run_folds_or_ensemble(opts, splits, train_fn, seed=3, member_files=store)
    ens = out.pop("model")
    assert out["ensemble"]["n_members"] == 2 and out["ensemble"]["evaluated_on"] == "test"
    sizes = [p.stat().st_size for p in sorted(tmp_path.glob("member*.keras"))]
    assert out["ensemble"]["bytes"]["bytes_total"] == sum(sizes)
    assert 0.0 <= out["ensemble"]["test"]["accuracy"] <= 1.0
    assert ens.output_shape[-1] == 3

    cv = extras.run_folds_or_ensemble(dataclasses.replace(opts, ensemble=1, cv_folds=2), splits,
                                      train_fn)
    assert len(cv["cross_validation"]["folds"]) == 2
    assert extras.run_folds_or_ensemble(TrainingOptions(), splits, train_fn) is None

    done = extras.finish_run(opts, model, splits, tmp_path / "run")
    assert len(done["saliency"]["files"]) == 1 and done["transfer"]["head_replaced"]
    assert "export" not in done
    assert extras.training_callbacks(TrainingOptions(early_stopping_patience=2), None, model)[0] \
        .patience == 2
