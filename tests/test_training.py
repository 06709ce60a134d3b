"""Tests for dwt_keras.training: schedules and the optimizer factory, augmentation,
regularisation, cross-validation, ensembles, saliency, transfer learning and export."""

import copy
import dataclasses
import math

import keras
import numpy as np
import pytest

from dwt_keras.training import (augmentation, cross_validation, ensemble, export, optimizers,
                                regularization, saliency, schedules, transfer)


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
    assert augmentation.build_augmentation("none", (8, 8, 1)) is None
    with pytest.raises(ValueError, match="must be one of"):
        augmentation.resolve_augment("blur")
    with pytest.raises(ValueError, match="layer recipes"):
        augmentation.build_augmentation("mixup", (8, 8, 1))

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
    # crop_flip, per example with tf.image: only moves pixels or brings in the zero padding
    crop_flip = augmentation.example_augmentation("crop_flip")
    out = np.asarray(crop_flip(tf.constant(x[0])))
    assert out.shape == x[0].shape and np.all(np.isin(np.round(out, 6),
                                                       np.append(np.round(x[0], 6), 0.0)))
    assert augmentation.example_augmentation("cifar") is None


def test_training_dataset_mixes_one_hot_labels_only_in_training():
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.random((8, 8, 8, 3), dtype=np.float32)
    y = tf.one_hot(np.arange(8) % 3, 3)
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    mixed = augmentation.augment_training_dataset(ds, "randaugment,mixup", (8, 8, 3), seed=0)
    labels = np.concatenate([b[1] for b in mixed])
    assert labels.shape == (8, 3) and np.allclose(labels.sum(-1), 1.0)
    assert not np.array_equal(labels, np.asarray(y))  # mixed pairs of labels
    assert augmentation.augment_training_dataset(ds, "crop_flip", (8, 8, 3)) is ds


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
    with pytest.raises(ValueError, match="`init_from` is not a file"):
        transfer.check_init_from(tmp_path / "missing.keras")
    junk = tmp_path / "junk.dwtc"
    junk.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="neither a .keras archive nor a file the loaders read "
                                         r"\(no other loader\)"):
        transfer.load_init_model(junk)
    from dwt_keras.compression import load_compressed

    with pytest.raises(ValueError, match="CompressedFileError"):
        transfer.load_init_model(junk, loaders=(load_compressed,))


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

def test_one_optimizer_factory():
    adamw = optimizers.make_optimizer("adamw", 1e-3, clipnorm=1.0, weight_decay=0.05)
    assert isinstance(adamw, keras.optimizers.AdamW) and adamw.clipnorm == 1.0
    assert adamw.weight_decay == pytest.approx(0.05)
    # norms, biases, embeddings and the W-MSA kernel's bandwidths are not decayed
    kernel, bias = keras.Variable(np.ones(2), name="kernel"), keras.Variable(np.ones(2), name="bias")
    assert adamw._use_weight_decay(kernel) and not adamw._use_weight_decay(bias)
    rms = optimizers.make_optimizer("rmsprop", 1e-3)
    assert rms.rho == 0.99 and rms.epsilon == 1e-16  # PyTorch's, see the docstring
    assert optimizers.make_optimizer("sgd", 0.1).momentum == 0.9
    with pytest.raises(ValueError, match="needs optimizer='adamw'"):
        optimizers.make_optimizer("adam", 1e-3, weight_decay=0.1)
    with pytest.raises(ValueError, match="must be one of adam"):
        optimizers.make_optimizer("lamb", 1e-3)


def test_learning_rate_of_a_phase():
    lr = schedules.make_learning_rate(1.0, steps_per_epoch=10, epochs=3, lr_decay=0.8)
    assert [_lr_at(lr, s) for s in (0, 9, 10, 25)] == pytest.approx([1.0, 1.0, 0.8, 0.64])
    warm = schedules.make_learning_rate(1e-3, 10, 5, "warmup_cosine", warmup_epochs=1)
    assert _lr_at(warm, 0) == 0.0 and _lr_at(warm, 10) == pytest.approx(1e-3)
    assert _lr_at(warm, 50) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="two schedules"):
        schedules.make_learning_rate(1e-3, 10, 5, "cosine", lr_decay=0.9)


def test_augment_vocabulary_is_one_list():
    assert augmentation.parse_augment("crop_flip,randaugment,mixup") == (
        "crop_flip", "randaugment", "mixup")
    assert augmentation.parse_augment("none") == () and augmentation.parse_augment(None) == ()
    assert augmentation.needs_one_hot("cutmix") and not augmentation.needs_one_hot("cifar")
    with pytest.raises(ValueError, match="entries must be among"):
        augmentation.parse_augment("jitter")
    with pytest.raises(ValueError, match="at most one"):
        augmentation.parse_augment("mnist,auto")
