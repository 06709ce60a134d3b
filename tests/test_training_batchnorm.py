"""BatchNorm recalibration: moving statistics become the data's, nothing trainable changes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from dwt_keras.experiments.registry import build_model
from dwt_keras.training import recalibrate_batchnorm


def _model():
    inp = keras.Input((6,))
    x = keras.layers.BatchNormalization(name="bn0")(inp)
    x = keras.layers.Dense(4, name="fc")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    return keras.Model(inp, keras.layers.BatchNormalization(name="bn1")(x))


def test_moving_statistics_become_the_data_statistics_and_weights_stay():
    m = _model()
    data = (np.random.default_rng(0).standard_normal((500, 6)) * 3 + 2).astype("float32")
    before = {w.path: np.array(w.numpy()) for w in m.weights}
    seen = recalibrate_batchnorm(m, data, batch_size=64)
    assert seen == {"bn0": 500, "bn1": 500}
    bn0 = m.get_layer("bn0")
    np.testing.assert_allclose(bn0.moving_mean.numpy(), data.mean(0), atol=1e-5)
    np.testing.assert_allclose(bn0.moving_variance.numpy(), data.var(0), rtol=1e-5)
    for w in m.weights:
        if "moving" in w.path:
            assert not np.allclose(before[w.path], w.numpy()), w.path
        else:
            np.testing.assert_array_equal(before[w.path], w.numpy())  # kernels, gamma, beta
    # bn1 saw the Dense outputs of the recalibrated bn0 (dropout off)
    z = keras.Model(m.input, m.get_layer("fc").output)(data)
    np.testing.assert_allclose(m.get_layer("bn1").moving_mean.numpy(), np.mean(z, 0), atol=1e-4)
    # the layers are restored: inference is deterministic and uses the new statistics
    assert "call" not in vars(bn0) and bn0.momentum == pytest.approx(0.99)
    np.testing.assert_allclose(m(data[:4]), m(data[:4]), atol=0)


def test_batches_datasets_and_resnet():
    m = build_model("resnet20", (8, 8, 3), 3, width=4)
    x = np.random.default_rng(1).random((48, 8, 8, 3)).astype("float32")
    ds = tf.data.Dataset.from_tensor_slices((x, np.zeros(48))).batch(16)
    seen = recalibrate_batchnorm(m, ds, batches=2)
    assert seen["stem_bn"] == 2 * 16 * 8 * 8 and len(seen) == 19
    np.testing.assert_allclose(m.get_layer("stem_bn").moving_mean.numpy(),
                               np.asarray(m.get_layer("stem_conv")(x[:32])).mean((0, 1, 2)),
                               atol=1e-5)
    assert recalibrate_batchnorm(m, (x, None), batches=1, batch_size=8)["stem_bn"] == 8 * 64


@pytest.mark.parametrize("kwargs, match", [
    ({"batches": 0}, r"Received: batches=0"), ({"batch_size": 0}, r"Received: batch_size=0"),
    ({"layers": ["nope"]}, r"Unknown BatchNormalization.*Received: layers")])
def test_arguments_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        recalibrate_batchnorm(_model(), np.zeros((4, 6), "float32"), **kwargs)


def test_model_without_batchnorm_is_an_error():
    with pytest.raises(ValueError, match="no BatchNormalization"):
        recalibrate_batchnorm(build_model("lenet300", (28, 28, 1), 10), np.zeros((2, 28, 28, 1)))
