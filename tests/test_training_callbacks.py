"""Tests for the shared TensorBoard callback set (dwt_keras.training.callbacks)."""

import copy

import keras
import numpy as np
import pytest
import pywt
import tensorflow as tf

from dwt_keras.training import callbacks as cbm
from dwt_keras.training.schedules import make_lr_schedule


def _events(path):
    from tensorboard.backend.event_processing import event_accumulator as ea

    acc = ea.EventAccumulator(str(path), size_guidance={"tensors": 0})
    acc.Reload()
    return acc


def _values(acc, tag):
    return {e.step: tf.make_ndarray(e.tensor_proto) for e in acc.Tensors(tag)}


def _mlp():
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                             keras.layers.Dense(6, activation="relu", name="fc1"),
                             keras.layers.Dense(3, name="logits")], name="mlp")


def _data(n=48):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 3, n)


def test_standard_callbacks_write_scalars_images_histograms(tmp_path):
    x, y = _data()
    model = _mlp()
    lr = make_lr_schedule("step", 0.01, steps_per_epoch=3, epochs=2)   # 3 steps of 16
    model.compile(keras.optimizers.SGD(lr),
                  keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    initial_fields = cbm.receptive_fields(model)
    taus = []

    def tau(m):
        taus.append(int(m.optimizer.iterations.numpy()))
        return {"tau": 0.25 * len(taus)}

    callbacks = cbm.standard_callbacks(tmp_path, model, extra_scalars=tau)
    callbacks = copy.deepcopy(callbacks)   # KerasTuner copies callbacks before each trial
    model.fit(x, y, batch_size=16, epochs=2, validation_data=(x[:8], y[:8]),
              callbacks=callbacks, verbose=0)
    train = _events(tmp_path / "train")
    tags = set(train.Tags()["tensors"])
    for tag in ("epoch_loss", "epoch_accuracy", "epoch_learning_rate", "tau", "sparsity/fc1",
                "sparsity/overall", "receptive_fields", "receptive_fields/at_train_begin",
                "coefficient_maps", "coefficients/fc1", "coefficients/logits"):
        assert tag in tags, tag
    assert "epoch_loss" in _events(tmp_path / "validation").Tags()["tensors"]

    # the logged learning rate is the schedule's value at the optimizer's step
    lrs = _values(train, "epoch_learning_rate")
    # boundaries at steps 3 and 4 of 6: epoch 0 ends at step 3 (still 0.01), epoch 1 at step 6
    assert float(lrs[0]) == pytest.approx(0.01, rel=1e-6)
    assert float(lrs[1]) == pytest.approx(1e-4, rel=1e-6)
    assert {k: float(v) for k, v in _values(train, "tau").items()} == {0: 0.25, 1: 0.5}
    assert taus == [3, 6]
    assert float(_values(train, "sparsity/fc1")[0]) == 0.0

    # the image written at train begin is the grid of the initial receptive fields
    png = _values(train, "receptive_fields/at_train_begin")[0][2]
    img = tf.io.decode_png(png).numpy().astype(np.float32) / 255.0
    expected = cbm._grid(cbm._to_display(initial_fields))[0]
    assert img.shape[:2] == expected.shape[:2]
    np.testing.assert_allclose(img[..., 0], expected[..., 0], atol=1.0 / 255 + 1e-6)

    # histograms hold the coefficients of every kernel (Parseval: same energy as the kernel)
    hist = _values(train, "coefficients/fc1")[1]   # rows: [left, right, count]
    assert hist[:, 2].sum() == 64 * 6


def test_coefficient_map_matches_pywavelets_layout():
    img = np.random.default_rng(3).standard_normal((16, 16)).astype(np.float32)
    arr, _ = pywt.coeffs_to_array(pywt.wavedec2(img, "db2", level=2, mode="periodization"))
    arr = np.abs(arr)
    arr = np.log1p(arr / arr.max() * 100.0)
    np.testing.assert_allclose(cbm.wavelet_coefficient_map(img, "db2", 2), arr / arr.max(),
                               atol=1e-5)
    # level capped at what the size allows (8 -> 3 levels of haar)
    assert cbm.wavelet_coefficient_map(img[:8, :8], "haar", 9).shape == (8, 8)


def test_kernel_coefficients_follow_image_geometry():
    k = np.random.default_rng(4).standard_normal((64, 5)).astype(np.float32)
    c = cbm._kernel_coefficients(k, "haar", 2, "periodization", (8, 8, 1))
    # orthogonal transform over each unit's 8x8 field: same energy, same count
    assert c.size == k.size
    assert np.sum(c ** 2) == pytest.approx(np.sum(k ** 2), rel=1e-5)
    unit0 = pywt.coeffs_to_array(pywt.wavedec2(k[:, 0].reshape(8, 8), "haar", level=2,
                                               mode="periodization"))[0]
    assert np.sort(np.abs(unit0.ravel())) == pytest.approx(
        np.sort(np.abs(cbm._kernel_coefficients(k[:, :1], "haar", 2, "periodization",
                                                 (8, 8, 1)))), rel=1e-5)


def test_receptive_fields_for_conv_and_non_image_dense():
    conv = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(5, 3)])
    fields = cbm.receptive_fields(conv)
    np.testing.assert_array_equal(fields, np.moveaxis(conv.layers[0].get_weights()[0], -1, 0))
    flat = keras.Sequential([keras.Input((10,)), keras.layers.Dense(4)])
    assert cbm.receptive_fields(flat) is None
    assert cbm.receptive_field_images()(flat) is None


def test_attention_images_from_wmsa_model():
    from dwt_keras.transformer import WaveletTransformer

    model = WaveletTransformer(image_size=(8, 8), in_channels=1, num_classes=3, embed_dim=8,
                               depth=2, num_heads=2, n_levels=1, wavelet="haar", patch_size=2)
    x = np.random.default_rng(0).random((2, 8, 8, 1), dtype=np.float32)
    model(x)
    imgs = cbm.attention_map_images(x)(model)
    maps = model.attention_maps(x[:1])
    assert imgs.shape[0] == 2 and imgs.shape[1] == imgs.shape[2] == maps[0].shape[-1]
    first = np.asarray(maps[0])[0].mean(axis=0)
    np.testing.assert_allclose(imgs[0, ..., 0], first / first.max(), rtol=1e-5)
    assert cbm.attention_map_images(x)(_mlp()) is None
    assert "attention" in cbm.standard_callbacks("unused", model, sample_images=x)[0].image_fns
    assert "attention" not in cbm.standard_callbacks("unused", _mlp(), sample_images=x)[0].image_fns


def test_callback_survives_deepcopy_after_use_and_off_switch(tmp_path):
    x, y = _data(16)
    model = _mlp()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    (tb,) = cbm.standard_callbacks(tmp_path / "a", model)
    model.fit(x, y, epochs=1, verbose=0, callbacks=[tb])
    tb2 = copy.deepcopy(tb)
    tb2.log_dir = str(tmp_path / "b")
    model.fit(x, y, epochs=1, verbose=0, callbacks=[tb2])
    assert "epoch_loss" in _events(tmp_path / "b" / "train").Tags()["tensors"]
    assert cbm.standard_callbacks(None, model) == []
    timer = copy.deepcopy(cbm.EpochTimer())  # the engine's timer survives deep copy too
    model.fit(x, y, epochs=2, verbose=0, callbacks=[timer])
    assert len(timer.times) == 2 and all(t > 0 for t in timer.times)
    with pytest.raises(ValueError, match="callable"):
        cbm.TensorBoard(str(tmp_path), image_fns={"x": 3})
