"""Tests for the inter-scale regulariser (Phase 2 of spectral regularisation)."""

import copy

import keras
import numpy as np
import pytest
import pywt
import tensorflow as tf

from dwt_keras.spectral.interscale import (
    InterScaleRegularizer,
    InterScaleScheduler,
    bounded_distance,
    find_interscale_layers,
    tokens_to_maps,
)


def _maps(seed=0, b=2):
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((b, 16, 16, 4)).astype(np.float32),
        rng.standard_normal((b, 8, 8, 6)).astype(np.float32),
        rng.standard_normal((b, 2, 2, 5)).astype(np.float32),  # two DWT levels below 8x8
    ]


def _np_cosine(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return 1 - (a * b).sum(1) / np.sqrt((a * a).sum(1) * (b * b).sum(1))


def _np_nmse(a, b):
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    return ((a - b) ** 2).sum(1) / ((a * a).sum(1) + (b * b).sum(1))


def _approx(x, wavelet, levels):
    for _ in range(levels):
        x = pywt.dwt2(x, wavelet, mode="periodization", axes=(1, 2))[0]
    return x


@pytest.mark.parametrize("distance", ["cosine", "nmse"])
@pytest.mark.parametrize("wavelet", ["haar", "db2"])
def test_penalty_matches_numpy_reference(distance, wavelet):
    feats = _maps()
    reg = InterScaleRegularizer(weight=1.0, wavelet=wavelet, distance=distance)
    reg.build([f.shape for f in feats])
    assert reg._levels == [1, 2]
    kernels = [p.kernel.numpy() for p in reg.projections]
    ref_fn = _np_cosine if distance == "cosine" else _np_nmse
    ref = np.mean([
        ref_fn(_approx(feats[0], wavelet, 1) @ kernels[0], feats[1]).mean(),
        ref_fn(_approx(feats[1], wavelet, 2) @ kernels[1], feats[2]).mean(),
    ])
    value = float(reg.penalty([tf.constant(f) for f in feats]))
    assert value == pytest.approx(ref, rel=1e-4, abs=1e-5)
    assert 0.0 <= value <= 2.0


def test_distance_is_bounded_and_scale_invariant():
    rng = np.random.default_rng(1)
    a = rng.standard_normal((3, 4, 4, 2)).astype(np.float32)
    b = rng.standard_normal((3, 4, 4, 2)).astype(np.float32)
    for dist in ("cosine", "nmse"):
        d = bounded_distance(a, b, dist).numpy()
        assert np.all(d >= -1e-6) and np.all(d <= 2 + 1e-6)
        # a common rescaling (what an aligner could do) leaves it unchanged
        np.testing.assert_allclose(bounded_distance(1e3 * a, 1e3 * b, dist).numpy(), d, rtol=1e-4)
        np.testing.assert_allclose(bounded_distance(a, a, dist).numpy(), 0.0, atol=1e-6)
        np.testing.assert_allclose(bounded_distance(a, -a, dist).numpy(), 2.0, atol=1e-5)
    # cosine ignores the scale of one side entirely: the projection cannot shrink it
    np.testing.assert_allclose(
        bounded_distance(50 * a, b, "cosine").numpy(), bounded_distance(a, b, "cosine").numpy(), rtol=1e-4)
    with pytest.raises(ValueError, match="cosine, nmse"):
        bounded_distance(a, b, "mse")


def test_penalty_zero_when_scales_agree():
    fine = np.random.default_rng(2).standard_normal((2, 8, 8, 3)).astype(np.float32)
    coarse = _approx(fine, "haar", 1) @ np.eye(3, dtype=np.float32)
    reg = InterScaleRegularizer(distance="nmse")
    reg.build([fine.shape, coarse.shape])
    reg.projections[0].kernel.assign(np.eye(3, dtype=np.float32))
    assert float(reg.penalty([fine, coarse])) < 1e-6


def _model(start_active):
    inp = keras.Input((16, 16, 3))
    c1 = keras.layers.Conv2D(4, 3, padding="same", name="c1")(inp)
    c2 = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="c2")(c1)
    c1, c2 = InterScaleRegularizer(weight=0.5, active=start_active, name="isr")([c1, c2])
    out = keras.layers.Dense(3)(keras.layers.GlobalAveragePooling2D()(c2))
    return keras.Model(inp, out)


def test_loss_added_only_in_training_and_when_active():
    model = _model(start_active=False)
    reg = model.get_layer("isr")
    x = np.random.default_rng(3).random((4, 16, 16, 3), dtype=np.float32)
    model(x, training=True)
    assert float(sum(model.losses)) == 0.0
    reg.active = True
    model(x, training=True)
    (loss,) = model.losses
    c1 = keras.Model(model.input, model.get_layer("c1").output)(x)
    c2 = keras.Model(model.input, model.get_layer("c2").output)(x)
    expected = 0.5 * float(reg.penalty([c1, c2]))
    assert float(loss) == pytest.approx(expected, rel=1e-5)
    assert float(loss) > 0.0
    model(x, training=False)
    assert float(sum(model.losses)) == 0.0


def test_gradients_reach_projection_and_features():
    model = _model(start_active=True)
    x = np.random.default_rng(4).random((2, 16, 16, 3), dtype=np.float32)
    with tf.GradientTape() as tape:
        model(x, training=True)
        loss = sum(model.losses)
    reg = model.get_layer("isr")
    watched = [reg.projections[0].kernel, model.get_layer("c1").kernel, model.get_layer("c2").kernel]
    grads = tape.gradient(loss, watched)
    assert all(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads)


def test_scheduler_switches_on_at_start_epoch_and_resumes():
    model = _model(start_active=True)
    model.compile(keras.optimizers.SGD(0.0), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(5)
    x, y = rng.random((8, 16, 16, 3), dtype=np.float32), rng.integers(0, 3, 8)
    sched = InterScaleScheduler(start_epoch=2)
    hist = model.fit(x, y, epochs=4, batch_size=8, callbacks=[sched], verbose=0).history
    assert hist["interscale_active"] == [0.0, 0.0, 1.0, 1.0]
    # lr = 0: the loss rises exactly by weight * penalty when the switch turns on
    assert hist["loss"][0] == pytest.approx(hist["loss"][1], rel=1e-6)
    assert hist["loss"][2] > hist["loss"][1] + 1e-3
    clone = copy.deepcopy(sched)
    assert clone.model is None and clone.start_epoch == 2
    model2 = _model(start_active=False)
    model2.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    hist2 = model2.fit(x, y, epochs=3, initial_epoch=1, batch_size=8, callbacks=[clone], verbose=0).history
    assert hist2["interscale_active"] == [0.0, 1.0]
    assert find_interscale_layers(model2) == [model2.get_layer("isr")]


def test_round_trip(tmp_path):
    model = _model(start_active=True)
    x = np.random.default_rng(6).random((2, 16, 16, 3), dtype=np.float32)
    model(x, training=True)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    a, b = model.get_layer("isr"), loaded.get_layer("isr")
    np.testing.assert_allclose(b.projections[0].kernel.numpy(), a.projections[0].kernel.numpy())
    loaded(x, training=True)
    model(x, training=True)
    assert float(loaded.losses[0]) == pytest.approx(float(model.losses[0]), rel=1e-6)
    assert b.get_config()["distance"] == "cosine" and b.active


def test_bad_input():
    f16, f8 = (2, 16, 16, 4), (2, 8, 8, 4)
    with pytest.raises(ValueError, match=">= 2 feature maps"):
        InterScaleRegularizer().build([f16])
    with pytest.raises(ValueError, match="channels-last"):
        InterScaleRegularizer().build([(2, 16, 16), (2, 8, 8)])
    with pytest.raises(ValueError, match="not .* reduced"):
        InterScaleRegularizer().build([f16, (2, 12, 12, 4)])
    with pytest.raises(ValueError, match="not .* reduced"):
        InterScaleRegularizer().build([f8, f16])  # coarsest first
    with pytest.raises(ValueError, match="cosine, nmse"):
        InterScaleRegularizer(distance="l2")
    with pytest.raises(ValueError, match="non-negative"):
        InterScaleRegularizer(weight=-1)
    with pytest.raises(ValueError, match="Unknown wavelet 'nope'"):
        InterScaleRegularizer(wavelet="nope")
    with pytest.raises(ValueError, match="non-negative"):
        InterScaleScheduler(start_epoch=-1)


def test_tokens_to_maps_regroups_by_level_and_cell():
    # level 0: 2x2 grid with two orientations per cell; level 1: 1x1 grid, one token
    levels = [0, 0, 0, 0, 0, 0, 0, 0, 1]
    rows = [0, 0, 0, 0, 1, 1, 1, 1, 0]
    cols = [0, 1, 0, 1, 0, 1, 0, 1, 0]
    tokens = np.arange(2 * 9 * 3, dtype=np.float32).reshape(2, 9, 3)
    m0, m1 = tokens_to_maps(tf.constant(tokens), levels, rows, cols)
    assert m0.shape == (2, 2, 2, 3) and m1.shape == (2, 1, 1, 3)
    np.testing.assert_allclose(m0[:, 0, 1].numpy(), (tokens[:, 1] + tokens[:, 3]) / 2)
    np.testing.assert_allclose(m0[:, 1, 0].numpy(), (tokens[:, 4] + tokens[:, 6]) / 2)
    np.testing.assert_allclose(m1[:, 0, 0].numpy(), tokens[:, 8])
    with pytest.raises(ValueError, match="cover"):
        tokens_to_maps(tf.constant(tokens[:, :3]), [0, 0, 0], [0, 0, 1], [0, 1, 1])


@pytest.mark.slow
def test_wmsa_levels_through_the_regularizer():
    # Integration with the W-MSA transformer: its levels (finest first: 4x4, 2x2, 1x1
    # grids for 32x32 inputs, J=3, p=4) become maps and the penalty trains the model.
    from dwt_keras.spectral.interscale import level_maps_from_metadata
    from dwt_keras.transformer import WaveletTransformer

    wmsa = WaveletTransformer(image_size=(32, 32), in_channels=3, num_classes=4, embed_dim=16,
                              depth=1, num_heads=2, n_levels=3, wavelet="haar", patch_size=4)

    class WMSAWithInterScale(keras.Model):
        def __init__(self, inner, **kw):
            super().__init__(**kw)
            self.inner = inner
            self.reg = InterScaleRegularizer(weight=1.0, active=True)

        def call(self, images, training=None):
            f = self.inner.forward_features(images, training=training)
            self.reg(level_maps_from_metadata(f), training=training)
            return self.inner.head(keras.ops.mean(f["tokens"], axis=1))

    x = np.random.default_rng(7).random((2, 32, 32, 3), dtype=np.float32)
    feats = wmsa.forward_features(x)
    maps = level_maps_from_metadata(feats)
    assert [tuple(m.shape) for m in maps] == [(2, 4, 4, 16), (2, 2, 2, 16), (2, 1, 1, 16)]
    # each map cell is the mean of that level's tokens at that grid position
    lvl, pos, tok = feats["level"], feats["position"], feats["tokens"].numpy()
    fine = np.nonzero(lvl == lvl.min())[0]
    first = fine[np.argmin(pos[fine, 0] * 10 + pos[fine, 1])]
    same_cell = fine[np.all(np.isclose(pos[fine], pos[first]), axis=1)]
    np.testing.assert_allclose(maps[0][:, 0, 0].numpy(), tok[:, same_cell].mean(1), atol=1e-6)

    model = WMSAWithInterScale(wmsa)
    with tf.GradientTape() as tape:
        model(x, training=True)
        loss = sum(model.losses)
    assert 0.0 < float(loss) <= 2.0
    grads = tape.gradient(loss, model.trainable_variables)
    assert sum(g is not None and float(tf.reduce_max(tf.abs(g))) > 0 for g in grads) > 3
