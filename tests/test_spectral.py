"""Tests for dwt_keras.spectral: DCT, masks, SpectralTruncation, TauScheduler, wiring."""

import copy
import types

import keras
import numpy as np
import pytest
import scipy.fft
import tensorflow as tf

from dwt_keras.spectral import (
    SpectralTrainingModel,
    SpectralTruncation,
    TauScheduler,
    dct2,
    dct_matrix,
    find_truncation_layers,
    idct2,
    radius_grid,
    spectral_mask,
)
from dwt_keras.spectral.options import SpectralOptions
from dwt_keras.spectral.setup import spectral_setup


def _rand(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _scipy_truncate(x, mask):
    c = scipy.fft.dctn(x.astype(np.float64), axes=(1, 2), norm="ortho")
    return scipy.fft.idctn(c * mask[None, :, :, None], axes=(1, 2), norm="ortho")


# --------------------------------------------------------------------------- DCT
def test_dct2_matches_scipy_and_round_trips():
    for method in ("matmul", "fft", "auto"):
        for shape in ((2, 8, 8, 3), (3, 12, 7, 2), (1, 33, 20, 1)):
            x = _rand(shape)
            y = dct2(tf.constant(x), method=method).numpy()
            ref = scipy.fft.dctn(x.astype(np.float64), axes=(1, 2), norm="ortho")
            np.testing.assert_allclose(y, ref, atol=2e-5, rtol=0)
            np.testing.assert_allclose(
                idct2(tf.constant(ref.astype(np.float32)), method=method).numpy(),
                scipy.fft.idctn(ref, axes=(1, 2), norm="ortho"),
                atol=2e-5,
            )
            assert np.abs(idct2(y, method=method).numpy() - x).max() <= 1e-5, (method, shape)


def test_dct_matrix_orthonormal():
    d = dct_matrix(9, "float64")
    np.testing.assert_allclose(d @ d.T, np.eye(9), atol=1e-12)
    # row k is the sampled cosine of frequency k (DCT-II definition)
    n = np.arange(9)
    np.testing.assert_allclose(d[3], np.sqrt(2 / 9) * np.cos(np.pi * (2 * n + 1) * 3 / 18))


@pytest.mark.parametrize("method", ["matmul", "fft"])
def test_dct2_gradient_is_inverse_transform(method):
    # The orthonormal DCT is linear with D^-1 = D^T, so d<g, dct2(x)>/dx = idct2(g).
    x = tf.constant(_rand((2, 6, 10, 3), 1))
    g = tf.constant(_rand((2, 6, 10, 3), 2))
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(dct2(x, method=method) * g)
    grad = tape.gradient(loss, x)
    np.testing.assert_allclose(grad.numpy(), idct2(g, method=method).numpy(), atol=1e-5)


def test_dct2_bad_input():
    with pytest.raises(ValueError, match="rank 4"):
        dct2(tf.zeros((8, 8, 3)))
    with pytest.raises(ValueError, match="rank 4"):
        idct2(tf.zeros((1, 2, 8, 8, 3)))
    with pytest.raises(ValueError, match="matmul"):
        dct2(tf.zeros((1, 8, 8, 1)), method="dft")


# -------------------------------------------------------------------------- masks
def test_radius_grid_normalised_to_unit_interval():
    r = radius_grid(10, 10)
    assert r[0, 0] == 0.0
    assert np.isclose(r[5, 5], 0.5)  # sqrt(0.5^2 + 0.5^2) / sqrt(2)
    assert r.max() < 1.0
    assert np.isclose(radius_grid(10, 10, normalize=False)[5, 5], np.sqrt(0.5))


def test_linear_mask_values_at_known_radii():
    m = spectral_mask(10, 10, tau=0.8, profile="linear")
    assert m[0, 0] == 1.0
    assert np.isclose(m[5, 5], (0.8 - 0.5) / 0.8)  # r = 0.5
    assert m[9, 9] == 0.0  # r = 0.9 > tau
    assert np.isclose(m[4, 0], (0.8 - 0.4 / np.sqrt(2)) / 0.8)


def test_cosine_mask_values_at_known_radii():
    m = spectral_mask(10, 10, tau=0.4, profile="cosine", rolloff=0.2)
    assert m[0, 0] == 1.0
    assert m[4, 0] == 1.0  # r = 0.283 <= tau: pass-band
    assert np.isclose(m[5, 5], 0.5, atol=1e-6)  # r = tau + rolloff / 2
    assert m[9, 9] == 0.0  # r = 0.9 >= tau + rolloff
    hard = spectral_mask(10, 10, tau=0.5, profile="cosine", rolloff=0.0)
    assert hard[5, 5] == 1.0 and hard[6, 5] == 0.0
    # monotone non-increasing in r
    r = radius_grid(10, 10).ravel()
    vals = m.ravel()[np.argsort(r, kind="stable")]
    assert np.all(np.diff(vals) <= 1e-7)


def test_cosine_mask_is_identity_at_tau_one_but_linear_is_not():
    assert np.all(spectral_mask(32, 32, 1.0, "cosine") == 1.0)
    assert np.all(spectral_mask(17, 40, 1.0, "cosine", rolloff=0.3) == 1.0)
    assert spectral_mask(32, 32, 1.0, "linear").min() < 0.5


def test_published_mask_reproduces_methods_figures():
    # methods.md section 4: on 32x32 the published mask keeps 4 of 1024
    # coefficients at tau = 0.05; at tau = 1 its mean is 0.28 and 21% >= 0.5.
    pub = lambda tau: spectral_mask(32, 32, tau, "linear", normalize_radius=False)
    assert int((pub(0.05) > 0).sum()) == 4
    assert abs(pub(1.0).mean() - 0.28) < 0.005
    assert abs((pub(1.0) >= 0.5).mean() - 0.21) < 0.005


def test_mask_bad_input():
    for tau in (0.0, -0.1, 1.01, float("nan"), "a"):
        with pytest.raises(ValueError, match=r"\(0, 1\]"):
            spectral_mask(8, 8, tau)
    with pytest.raises(ValueError, match="linear, cosine"):
        spectral_mask(8, 8, 0.5, profile="gaussian")
    with pytest.raises(ValueError, match="rolloff"):
        spectral_mask(8, 8, 0.5, rolloff=-0.1)


# -------------------------------------------------------------------------- layer
@pytest.mark.parametrize("profile", ["linear", "cosine"])
def test_layer_training_matches_scipy_reference(profile):
    x = _rand((3, 16, 12, 2))
    layer = SpectralTruncation(tau=0.3, profile=profile, rolloff=0.15)
    y = layer(tf.constant(x), training=True).numpy()
    ref = _scipy_truncate(x, spectral_mask(16, 12, 0.3, profile, 0.15))
    np.testing.assert_allclose(y, ref, atol=2e-5)
    assert np.abs(y - x).max() > 0.1  # it really filters


def test_layer_cosine_tau_one_is_identity_in_training():
    x = _rand((2, 16, 16, 3))
    y = SpectralTruncation(tau=1.0, profile="cosine")(tf.constant(x), training=True)
    assert np.abs(y.numpy() - x).max() <= 1e-5


def test_layer_inference_returns_input_unchanged_with_no_ops():
    layer = SpectralTruncation(tau=0.1)
    x = tf.constant(_rand((2, 16, 16, 3)))
    assert layer(x, training=False) is x
    assert layer(x) is x  # training defaults to inference
    fn = tf.function(lambda t: layer(t, training=False))
    graph = fn.get_concrete_function(tf.TensorSpec((None, 16, 16, 3))).graph
    op_types = {op.type for op in graph.get_operations()}
    assert op_types <= {"Placeholder", "Identity", "NoOp"}, op_types
    # training graph for comparison does contain the transform
    fn_t = tf.function(lambda t: layer(t, training=True))
    ops_t = {op.type for op in fn_t.get_concrete_function(tf.TensorSpec((None, 16, 16, 3))).graph.get_operations()}
    assert ops_t - {"Placeholder", "Identity", "NoOp"}


def test_model_predict_is_unfiltered():
    inp = keras.Input((16, 16, 3))
    out = SpectralTruncation(tau=0.05)(inp)
    model = keras.Model(inp, out)
    x = _rand((4, 16, 16, 3))
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)


def test_changing_tau_changes_output_without_retracing():
    layer = SpectralTruncation(tau=0.2, profile="cosine")
    traces = []

    @tf.function
    def f(t):
        traces.append(1)
        return layer(t, training=True)

    x = tf.constant(_rand((2, 16, 16, 3)))
    y1 = f(x).numpy()
    layer.tau = 0.6
    assert layer.tau == pytest.approx(0.6)
    y2 = f(x).numpy()
    layer.active = False
    y3 = f(x).numpy()
    assert len(traces) == 1
    np.testing.assert_allclose(y2, _scipy_truncate(x.numpy(), spectral_mask(16, 16, 0.6)), atol=2e-5)
    assert np.abs(y1 - y2).max() > 1e-2
    np.testing.assert_array_equal(y3, x.numpy())  # switched off: identity


def test_layer_bad_input():
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        SpectralTruncation(tau=0.0)
    layer = SpectralTruncation(tau=0.5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        layer.tau = 1.5
    assert layer.tau == 0.5
    with pytest.raises(ValueError, match="rank 4"):
        layer(tf.zeros((16, 16, 3)), training=True)
    with pytest.raises(ValueError, match="rank 4"):
        layer(tf.zeros((2, 16, 16, 3, 1)), training=True)
    with pytest.raises(ValueError, match="linear, cosine"):
        SpectralTruncation(profile="box")


def test_layer_keras_round_trip(tmp_path):
    inp = keras.Input((12, 12, 2))
    layer = SpectralTruncation(tau=0.5, profile="linear", name="st")
    out = keras.layers.Conv2D(2, 3, padding="same")(layer(inp))
    model = keras.Model(inp, out)
    layer.tau = 0.35
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    st = loaded.get_layer("st")
    assert st.tau == pytest.approx(0.35) and st.profile == "linear"
    x = _rand((2, 12, 12, 2))
    np.testing.assert_allclose(loaded(x, training=True), model(x, training=True), atol=1e-6)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
    cfg = layer.get_config()
    clone = SpectralTruncation.from_config(cfg)
    assert (clone.tau, clone.profile, clone.rolloff, clone.active) == (
        pytest.approx(0.35), "linear", layer.rolloff, True)


# ----------------------------------------------------------------------- schedule
def test_schedule_values_at_given_epochs():
    s = TauScheduler(tau_init=0.05, tau_final=1.0, truncation_epochs=5)
    expected = [0.05 + 0.95 * e / 4 for e in range(5)]
    assert [s.tau_for_epoch(e) for e in range(5)] == pytest.approx(expected)
    assert s.tau_for_epoch(5) is None and s.tau_for_epoch(50) is None  # off
    assert s.tau_for_step(0, 10) == pytest.approx(0.05)
    assert s.tau_for_step(49, 10) == pytest.approx(1.0)
    assert s.tau_for_step(50, 10) is None
    assert TauScheduler(truncation_epochs=0).tau_for_epoch(0) is None


def test_schedule_bad_input():
    with pytest.raises(ValueError, match="non-negative"):
        TauScheduler(truncation_epochs=-1)
    with pytest.raises(ValueError, match="non-negative"):
        TauScheduler(truncation_epochs=2.5)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        TauScheduler(tau_init=0.0)
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        TauScheduler(tau_final=1.2)
    with pytest.raises(ValueError, match=">= tau_init"):
        TauScheduler(tau_init=0.5, tau_final=0.2)
    with pytest.raises(ValueError, match="non-negative"):
        TauScheduler().tau_for_epoch(-1)


def _tiny_classifier(with_layer=True, profile="cosine"):
    inp = keras.Input((8, 8, 1))
    x = SpectralTruncation(profile=profile, name="st")(inp) if with_layer else inp
    x = keras.layers.Flatten()(x)
    model = keras.Model(inp, keras.layers.Dense(2)(x))
    model.compile(keras.optimizers.SGD(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


class _Probe(keras.callbacks.Callback):
    """Records the layer's tau/active as seen by each train batch."""

    def __init__(self, layer):
        super().__init__()
        self.layer, self.seen = layer, []

    def on_train_batch_begin(self, batch, logs=None):
        self.seen.append((self.layer.tau, self.layer.active))


def _xy(n=16):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1), dtype=np.float32), rng.integers(0, 2, n)


def test_scheduler_drives_layer_and_logs_history(tmp_path):
    keras.utils.set_random_seed(0)
    model = _tiny_classifier()
    layer = model.get_layer("st")
    sched = TauScheduler(0.1, 0.9, truncation_epochs=3, log_dir=str(tmp_path / "tb"))
    probe = _Probe(layer)
    x, y = _xy()
    hist = model.fit(x, y, epochs=5, batch_size=8, callbacks=[sched, probe], verbose=0)
    assert hist.history["spectral_tau"] == pytest.approx([0.1, 0.5, 0.9, 1.0, 1.0])
    assert hist.history["spectral_phase"] == [1.0, 1.0, 1.0, 0.0, 0.0]
    # two batches per epoch; the layer saw the scheduled value and was off after epoch 3
    assert [a for _, a in probe.seen] == [True] * 6 + [False] * 4
    assert [t for t, _ in probe.seen[:6]] == pytest.approx([0.1, 0.1, 0.5, 0.5, 0.9, 0.9])
    events = list((tmp_path / "tb").glob("events.out.tfevents*"))
    assert events, "no TensorBoard event file written"
    tags = set()
    for e in tf.compat.v1.train.summary_iterator(str(events[0])):
        tags.update(v.tag for v in e.summary.value)
    assert {"spectral/tau", "spectral/phase"} <= tags


def test_scheduler_resumes_from_initial_epoch():
    model = _tiny_classifier()
    sched = TauScheduler(0.2, 1.0, truncation_epochs=5)
    x, y = _xy()
    hist = model.fit(x, y, epochs=6, initial_epoch=3, batch_size=8, callbacks=[sched], verbose=0)
    assert hist.history["spectral_tau"] == pytest.approx([0.2 + 0.8 * 3 / 4, 1.0, 1.0])
    assert hist.history["spectral_phase"] == [1.0, 1.0, 0.0]


def test_scheduler_per_step_keyed_on_optimizer_iterations():
    model = _tiny_classifier()
    layer = model.get_layer("st")
    sched = TauScheduler(0.1, 1.0, truncation_epochs=2, per_step=True)
    probe = _Probe(layer)
    x, y = _xy()
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[sched, probe], verbose=0)
    # resume in a new fit call: the global step (2) continues the schedule
    model.fit(x, y, epochs=3, initial_epoch=1, batch_size=8, callbacks=[sched, probe], verbose=0)
    taus = [t for t, a in probe.seen if a]
    assert taus == pytest.approx([0.1 + 0.9 * s / 3 for s in range(4)])
    assert [a for _, a in probe.seen] == [True] * 4 + [False] * 2


def test_scheduler_survives_deepcopy_and_reuse():
    sched = TauScheduler(0.1, 1.0, truncation_epochs=2)
    x, y = _xy()
    model = _tiny_classifier()
    model.fit(x, y, epochs=1, batch_size=8, callbacks=[sched], verbose=0)
    clone = copy.deepcopy(sched)
    assert clone.model is None and clone.get_config() == sched.get_config()
    assert sched.model is model  # original untouched
    model2 = _tiny_classifier()
    hist = model2.fit(x, y, epochs=3, batch_size=8, callbacks=[clone], verbose=0)
    assert hist.history["spectral_tau"] == pytest.approx([0.1, 1.0, 1.0])
    assert not model2.get_layer("st").active and model.get_layer("st").active


def test_scheduler_without_layer_raises():
    x, y = _xy()
    with pytest.raises(ValueError, match="no SpectralTruncation layer"):
        _tiny_classifier(with_layer=False).fit(x, y, epochs=1, callbacks=[TauScheduler()], verbose=0)


# ------------------------------------------------------------------------ wrapper
def _identity_conv(shape):
    inp = keras.Input(shape)
    c = shape[-1]
    eye = keras.initializers.Constant(np.eye(c, dtype=np.float32).reshape(1, 1, c, c))
    conv = keras.layers.Conv2D(c, 1, use_bias=False, kernel_initializer=eye)
    return keras.Model(inp, conv(inp))


@pytest.mark.parametrize("apply_to", ["inputs", "inputs_and_targets"])
def test_wrapper_filters_inputs_or_inputs_and_targets(apply_to):
    # Identity model, lr = 0: the training loss is the MSE between what the
    # wrapper feeds as input and as target in the train step.
    x = _rand((4, 8, 8, 1))
    trunc = SpectralTruncation(tau=0.2, profile="cosine")
    model = SpectralTrainingModel(_identity_conv((8, 8, 1)), trunc, apply_to=apply_to)
    model.compile(keras.optimizers.SGD(0.0), "mse")
    loss = model.fit(x, x, epochs=1, batch_size=4, verbose=0).history["loss"][0]
    xf = _scipy_truncate(x, spectral_mask(8, 8, 0.2))
    if apply_to == "inputs":
        assert loss == pytest.approx(np.mean((xf - x) ** 2), rel=1e-4)
        assert loss > 1e-3
    else:
        assert loss < 1e-10
    assert model.evaluate(x, x, verbose=0) < 1e-10  # evaluation is unfiltered
    assert find_truncation_layers(model) == [trunc]


def test_wrapper_round_trip(tmp_path):
    model = SpectralTrainingModel(_identity_conv((8, 8, 1)), SpectralTruncation(tau=0.3), "inputs_and_targets")
    model.compile("sgd", "mse")
    x = _rand((4, 8, 8, 1))
    model.fit(x, x, epochs=1, verbose=0)
    model.save(tmp_path / "w.keras")
    loaded = keras.models.load_model(tmp_path / "w.keras")
    assert loaded.apply_to == "inputs_and_targets" and loaded.truncation.tau == pytest.approx(0.3)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


def test_wrapper_bad_input():
    with pytest.raises(ValueError, match="inputs, inputs_and_targets"):
        SpectralTrainingModel(_identity_conv((8, 8, 1)), apply_to="targets")
    with pytest.raises(ValueError, match="keras.Model"):
        SpectralTrainingModel(keras.layers.Dense(2))


# -------------------------------------------------------------------------- flags
def test_setup_from_options_builds_layer_scheduler_and_wrapper():
    setup = spectral_setup(SpectralOptions(spectral_reg=True, tau_init=0.1, truncation_epochs=4,
                                           mask_profile="linear"))
    assert setup.enabled
    (sched,) = setup.callbacks
    assert sched.truncation_epochs == 4 and sched.tau_final == 1.0
    inner = _identity_conv((8, 8, 1))
    wrapped = setup.wrap(inner)
    assert isinstance(wrapped, SpectralTrainingModel) and wrapped.inner is inner
    assert wrapped.truncation.profile == "linear" and wrapped.truncation.tau == pytest.approx(0.1)
    # each wrap gets its own layer (tuner trials must not share tau variables)
    assert setup.wrap(_identity_conv((8, 8, 1))).truncation is not wrapped.truncation
    # the two documented lines train end to end
    wrapped.compile(keras.optimizers.SGD(0.0), "mse")
    x = _rand((4, 8, 8, 1))
    hist = wrapped.fit(x, x, epochs=5, verbose=0, callbacks=setup.callbacks).history
    assert hist["spectral_tau"] == pytest.approx([0.1, 0.4, 0.7, 1.0, 1.0])
    assert hist["spectral_phase"] == [1.0, 1.0, 1.0, 1.0, 0.0]

    setup = spectral_setup(SpectralOptions())
    assert not setup.enabled and setup.callbacks == [] and setup.wrap(inner) is inner


def test_setup_bad_values_raise_before_training():
    cases = [
        (dict(tau_init=0.0), r"\(0, 1\]"),
        (dict(tau_final=2.0), r"\(0, 1\]"),
        (dict(truncation_epochs=-3), "non-negative"),
        (dict(tau_init=0.9, tau_final=0.5), ">= `tau_init`"),
        (dict(mask_profile="hann"), "linear, cosine"),
    ]
    for bad, match in cases:
        values = dict(spectral_reg=True, tau_init=0.05, tau_final=1.0, truncation_epochs=2,
                      mask_profile="cosine")
        values.update(bad)
        with pytest.raises(ValueError, match=match):
            spectral_setup(types.SimpleNamespace(**values))
