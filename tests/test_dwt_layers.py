"""DWT2D / IDWT2D: layouts against PyWavelets, exact inversion, serialization."""

import numpy as np
import pytest
import pywt
import tensorflow as tf

import keras
from dwt_keras import wavelets as W
from dwt_keras.layers import DWT2D, IDWT2D


def _images(shape=(2, 24, 40, 3), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _close(a, b, scale=1.0):
    assert np.asarray(a).shape == np.asarray(b).shape
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5 * scale, rtol=0)


@pytest.mark.parametrize("mode", ["periodization", "symmetric", "zero"])
def test_stacked_layout_matches_pywt(mode):
    x = _images((2, 21, 16, 3))
    y = DWT2D("db2", mode=mode)(x)
    ca, (ch, cv, cd) = pywt.dwt2(x.astype(np.float64), "db2", mode, axes=(1, 2))
    c = x.shape[-1]
    assert y.shape == ca.shape[:3] + (4 * c,)
    for k, band in enumerate((ca, ch, cv, cd)):
        _close(y[..., k * c : (k + 1) * c], band, np.abs(x).max())
    rec = IDWT2D("db2", mode=mode, output_size=(21, 16))(y)
    _close(rec, x, np.abs(x).max())


@pytest.mark.parametrize("mode", ["periodization", "reflect"])
def test_list_layout_matches_pywt_and_inverts(mode):
    x = _images((2, 33, 40, 2), seed=1)
    out = DWT2D("sym3", level=2, mode=mode)(x)
    ref = pywt.wavedec2(x.astype(np.float64), "sym3", mode, level=2, axes=(1, 2))
    assert len(out) == 3
    _close(out[0], ref[0], np.abs(x).max())
    for got, det in zip(out[1:], ref[1:]):
        _close(got, np.concatenate(det, axis=-1), np.abs(x).max())
    rec = IDWT2D("sym3", level=2, mode=mode, output_size=(33, 40))(out)
    _close(rec, x, np.abs(x).max())


def test_mosaic_layout_matches_coeffs_to_array():
    x = _images((2, 32, 48, 3), seed=2)
    y = DWT2D("db4", level=3, layout="mosaic")(x)
    ref = pywt.wavedec2(x.astype(np.float64), "db4", "periodization", level=3, axes=(1, 2))
    arr, _ = pywt.coeffs_to_array(ref, axes=(1, 2))
    assert y.shape == x.shape
    _close(y, arr, np.abs(x).max())
    # Orthogonal wavelet + periodization: the mosaic keeps the energy.
    np.testing.assert_allclose(np.sum(np.square(y)), np.sum(np.square(x)), rtol=1e-5)
    _close(IDWT2D("db4", level=3, layout="mosaic")(y), x, np.abs(x).max())


def test_functional_model_unknown_batch_and_jit():
    inp = keras.Input((32, 32, 3))
    coeffs = DWT2D("bior2.2", level=2)(inp)
    out = IDWT2D("bior2.2", level=2)(coeffs)
    model = keras.Model(inp, out)
    assert model.output_shape == (None, 32, 32, 3)
    compiled = tf.function(model, jit_compile=True)
    for batch in (1, 3):
        x = _images((batch, 32, 32, 3), seed=batch)
        _close(compiled(x), x, np.abs(x).max())
        _close(model.predict(x, verbose=0), x, np.abs(x).max())


def test_keras_file_round_trip(tmp_path):
    inp = keras.Input((16, 24, 2))
    y = DWT2D("coif1", level=1, mode="symmetric")(inp)
    z = keras.layers.Conv2D(4, 3, padding="same")(y)
    z = keras.layers.Conv2D(8, 1)(z)
    out = IDWT2D("coif1", level=1, mode="symmetric", output_size=(16, 24))(z)
    model = keras.Model(inp, out)
    path = tmp_path / "dwt_model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = _images((3, 16, 24, 2), seed=5)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    layer = loaded.layers[1]
    assert isinstance(layer, DWT2D)
    assert (layer.level, layer.mode, layer.layout) == (1, "symmetric", "stacked")


def test_custom_wavelet_config_round_trip():
    bank = pywt.Wavelet("db3").filter_bank
    custom = pywt.Wavelet("my_db3", filter_bank=bank)
    layer = DWT2D(custom, level=2, mode="zero")
    config = layer.get_config()
    assert config["wavelet"]["filter_bank"][0] == pytest.approx(list(bank[0]))
    clone = DWT2D.from_config(config)
    x = _images((1, 20, 20, 1), seed=6)
    for a, b in zip(layer(x), clone(x)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    ref = pywt.wavedec2(x.astype(np.float64), custom, "zero", level=2, axes=(1, 2))
    _close(clone(x)[0], ref[0], np.abs(x).max())
    inv = IDWT2D.from_config(IDWT2D(custom, level=2, mode="zero").get_config())
    _close(inv(clone(x))[:, :20, :20], x, np.abs(x).max())
    # Named wavelets are stored by name.
    assert DWT2D("sym4").get_config()["wavelet"] == "sym4"


def test_mixed_precision_layers_run():
    x = _images((2, 32, 32, 3), seed=7)
    fwd = DWT2D("db2", level=2, dtype="mixed_float16")
    inv = IDWT2D("db2", level=2, dtype="mixed_float16")
    coeffs = fwd(x)
    assert coeffs[0].dtype.name == "float16"
    rec = inv(coeffs)
    # Tolerance documented in dwt_keras.wavelets: 1e-2 of max|x| in float16.
    assert np.abs(np.asarray(rec, np.float32) - x).max() <= 1e-2 * np.abs(x).max()


def test_gradient_flows_through_layers():
    x = tf.constant(_images((2, 16, 16, 1), seed=8))
    layer = DWT2D("haar", level=1)
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x)
        loss = tf.reduce_sum(y[..., :1])  # the approximation band only
    grad = tape.gradient(loss, x)
    # d/dx sum(cA) for haar is 1/2 everywhere (each cA = (a+b+c+d)/2).
    np.testing.assert_allclose(grad.numpy(), 0.5, atol=1e-6)


def test_layer_argument_validation():
    with pytest.raises(ValueError, match="level"):
        DWT2D("haar", level=0)
    with pytest.raises(ValueError, match="layout='stacked' holds a single level"):
        DWT2D("haar", level=2, layout="stacked")
    with pytest.raises(ValueError, match="Unknown layout 'grid'"):
        IDWT2D("haar", layout="grid")
    with pytest.raises(ValueError, match="needs mode='periodization'"):
        DWT2D("haar", level=2, mode="symmetric", layout="mosaic")
    with pytest.raises(ValueError, match="continuous wavelet"):
        DWT2D("morl")
    with pytest.raises(ValueError, match="Unknown signal-extension mode"):
        IDWT2D("haar", mode="wrap")
    with pytest.raises(ValueError, match="divisible by 2\\*\\*level=4"):
        DWT2D("haar", level=2, layout="mosaic")(np.zeros((1, 10, 12, 1), np.float32))
    with pytest.raises(ValueError, match="expected ndim=4, found ndim=3"):
        DWT2D("haar")(np.zeros((1, 8, 8), np.float32))  # not channels-last 4-D
    with pytest.raises(ValueError, match="expects a list of 3 tensors"):
        IDWT2D("haar", level=2)(np.zeros((1, 8, 8, 4), np.float32))


def test_layers_equal_functional_api():
    x = _images((2, 40, 56, 2), seed=9)
    out = DWT2D("rbio2.4", level=2, mode="periodic")(x)
    ref = W.wavedec2(x, "rbio2.4", level=2, mode="periodic", axes=(1, 2))
    np.testing.assert_array_equal(np.asarray(out[0]), ref[0].numpy())
    np.testing.assert_array_equal(
        np.asarray(out[2]), tf.concat(list(ref[2]), axis=-1).numpy()
    )
