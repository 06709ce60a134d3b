"""Long signals in O(n) memory, every execution mode, explicit adjoint gradients, and the
PyWavelets conventions (``pywt.Modes`` constants, per-axis tuples, dtypes, error types)."""

import warnings

import keras
import numpy as np
import pytest
import pywt
import tensorflow as tf

from dwt_keras import wavelets as W
from dwt_keras.transforms import _plan, matrix


def _flat2(coeffs):
    return [coeffs[0]] + [c for det in coeffs[1:] for c in det]


def _bounded_plans(monkeypatch, limit=512):
    """Fails the test if any plan builds a matrix with a side longer than ``limit``."""
    real = _plan._extension_matrix

    def guarded(n, left, right, mode):
        assert n <= limit, f"an extension matrix for n={n} was built"
        return real(n, left, right, mode)

    monkeypatch.setattr(_plan, "_extension_matrix", guarded)
    for name in ("analysis_plan", "synthesis_plan", "pad_plan", "analysis_matrix", "synthesis_matrices"):
        getattr(_plan, name).cache_clear()


@pytest.mark.parametrize("mode", ["periodization", "symmetric", "zero", "smooth", "antireflect"])
def test_million_sample_wavedec_without_dense_plans(mode, monkeypatch):
    """10^6 samples: an n x n float64 plan would need 8 TB; the plans stay O(pad^2)."""
    _bounded_plans(monkeypatch)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(1_000_000)
    coeffs = W.wavedec(x, "db4", mode, level=5)
    rec = W.waverec(coeffs, "db4", mode).numpy()[: x.size]
    assert np.abs(rec - x).max() < 1e-9
    ref = pywt.wavedec(x, "db4", mode, level=5)
    for r, g in zip(ref, coeffs):
        assert g.shape == r.shape
        assert np.abs(g.numpy() - r).max() < 1e-9 * max(1.0, np.abs(r).max())


def test_cd_audio_second_every_mode_and_graph(monkeypatch):
    """44,100 samples (one second of CD audio), 6 levels, odd intermediate lengths: the
    length that exhausted memory (and failed under tf.function) with dense plans."""
    _bounded_plans(monkeypatch)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 44_100)).astype(np.float32)
    for mode in pywt.Modes.modes:
        ref = pywt.wavedec(x.astype(np.float64), "sym8", mode, level=6)
        got = W.wavedec(x, "sym8", mode, level=6)
        for r, g in zip(ref, got):
            assert np.abs(g.numpy() - r).max() <= 1e-4 * max(1.0, np.abs(r).max()), mode
    fn = tf.function(lambda t: W.waverec(W.wavedec(t, "db4", "symmetric", 6), "db4", "symmetric"))
    assert np.abs(fn(tf.constant(x)).numpy()[:, : x.shape[1]] - x).max() < 1e-4


# --------------------------------------------------------------------------- #
# Every execution mode
# --------------------------------------------------------------------------- #
class _RoundTrip(keras.layers.Layer):
    def __init__(self, wavelet, mode, **kwargs):
        super().__init__(**kwargs)
        self.wavelet, self.mode = wavelet, mode

    def call(self, x):
        coeffs = W.wavedec2(x, self.wavelet, self.mode, 2, axes=(1, 2))
        ca = coeffs[0] * self.gain
        return W.waverec2([ca] + coeffs[1:], self.wavelet, self.mode, axes=(1, 2))

    def build(self, shape):
        self.gain = self.add_weight(shape=(), initializer="ones", name="gain")


def _pywt_round_trip(x, wavelet, mode, axes):
    ref = pywt.wavedec2(x.astype(np.float64), wavelet, mode, level=2, axes=axes)
    return ref, pywt.waverec2(ref, wavelet, mode, axes=axes)


@pytest.mark.parametrize(
    "wavelet,mode",
    [("haar", "periodization"), ("db4", "periodization"), ("db4", "symmetric"), ("db4", "zero"),
     ("bior4.4", "symmetric"), ("sym8", "zero")],
)
def test_every_execution_mode_matches_pywt(wavelet, mode):
    rng = np.random.default_rng(2)
    # Axes longer than the dense-matrix threshold, so the filter-bank kernels run.
    x = rng.standard_normal((2, 70, 81)).astype(np.float32)
    ref, ref_rec = _pywt_round_trip(x, wavelet, mode, (-2, -1))
    scale = np.abs(x).max()

    def run(t):
        coeffs = W.wavedec2(t, wavelet, mode, 2)
        return tuple(_flat2(coeffs)), W.waverec2(coeffs, wavelet, mode)

    ds = tf.data.Dataset.from_tensors(tf.constant(x)).map(run)
    outputs = {
        "eager": run(tf.constant(x)),
        "tf.function": tf.function(run)(tf.constant(x)),
        "xla": tf.function(run, jit_compile=True)(tf.constant(x)),
        "tf.data": next(iter(ds)),
    }
    for name, (flat, rec) in outputs.items():
        for r, g in zip(_flat2(ref), flat):
            assert np.abs(g.numpy() - r).max() <= 1e-5 * scale, (name, wavelet, mode)
        assert np.abs(rec.numpy() - ref_rec).max() <= 1e-5 * scale, (name, wavelet, mode)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_inside_keras_fit(jit_compile):
    """A layer calling the transforms trains, with and without XLA (channels-last)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((8, 72, 80, 3)).astype(np.float32)
    inputs = keras.Input((72, 80, 3))
    model = keras.Model(inputs, _RoundTrip("db4", "symmetric")(inputs))
    model.compile(keras.optimizers.SGD(0.1), "mse", jit_compile=jit_compile)
    history = model.fit(x, 2.0 * x, epochs=3, batch_size=4, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    # Only the approximation's gain is trained; the target scales everything by 2.
    assert 1.05 < float(model.layers[-1].gain.numpy()) < 3.0
    # With gain 1 the layer is the identity (perfect reconstruction inside the graph).
    model.layers[-1].gain.assign(1.0)
    assert np.abs(model.predict(x, verbose=0) - x).max() < 1e-4


# --------------------------------------------------------------------------- #
# Gradients: the explicit adjoint equals the transposed transform matrix
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize(
    "mode,jit",
    [(m, False) for m in pywt.Modes.modes]
    + [(m, True) for m in ("periodization", "symmetric", "antireflect")],
)
def test_gradient_is_the_transposed_matrix(mode, jit):
    n = 150  # above the dense threshold: the custom-gradient kernels
    rng = np.random.default_rng(4)
    for wavelet in ("db3", "bior2.4"):
        a, s = matrix.dwt_matrices(n, wavelet, mode, level=1)
        h = a.shape[0] // 2
        x = tf.constant(rng.standard_normal((2, n)))
        u = rng.standard_normal((2, a.shape[0]))

        def forward_grad(t):
            with tf.GradientTape() as tape:
                tape.watch(t)
                ca, cd = W.dwt(t, wavelet, mode)
                inner = tf.reduce_sum(ca * u[:, :h]) + tf.reduce_sum(cd * u[:, h:])
            return tape.gradient(inner, t)

        def inverse_grad(ca, cd, w):
            with tf.GradientTape() as tape:
                tape.watch([ca, cd])
                inner = tf.reduce_sum(W.idwt(ca, cd, wavelet, mode) * w)
            return tape.gradient(inner, [ca, cd])

        if jit:
            forward_grad = tf.function(forward_grad, jit_compile=True)
            inverse_grad = tf.function(inverse_grad, jit_compile=True)
        np.testing.assert_allclose(forward_grad(x).numpy(), u @ a, atol=1e-9)
        n_rec = s.shape[0] if mode != "periodization" else n
        w = rng.standard_normal((2, n_rec))
        cs = tf.constant(u[:, :h]), tf.constant(u[:, h:])
        g_a, g_d = inverse_grad(*cs, tf.constant(w))
        expected = w @ s[:n_rec]
        np.testing.assert_allclose(g_a.numpy(), expected[:, :h], atol=1e-9)
        np.testing.assert_allclose(g_d.numpy(), expected[:, h:], atol=1e-9)


def test_second_order_gradient():
    """The adjoint's own gradient is the forward transform (Hessian-vector products work)."""
    x = tf.constant(np.random.default_rng(5).standard_normal((1, 130)))
    with tf.GradientTape() as outer:
        outer.watch(x)
        with tf.GradientTape() as inner:
            inner.watch(x)
            energy = tf.reduce_sum(W.dwt(x, "sym4", "symmetric")[0] ** 2)
        g = inner.gradient(energy, x)
        gsum = tf.reduce_sum(g * x)
    hv = outer.gradient(gsum, x)
    a, _ = matrix.dwt_matrices(130, "sym4", "symmetric", level=1)
    lo = a[: a.shape[0] // 2]
    np.testing.assert_allclose(hv.numpy(), 4 * x.numpy() @ lo.T @ lo, atol=1e-9)


# --------------------------------------------------------------------------- #
# PyWavelets' conventions
# --------------------------------------------------------------------------- #
def test_positional_arguments_in_pywavelets_order():
    x = np.random.default_rng(6).standard_normal((3, 40, 44))
    for r, g in zip(_flat2(pywt.wavedec2(x, "db2", "reflect", 2, (0, 2))),
                    _flat2(W.wavedec2(x, "db2", "reflect", 2, (0, 2)))):
        np.testing.assert_allclose(g.numpy(), r, atol=1e-10)
    for r, g in zip(pywt.wavedec(x, "db2", "zero", 3, 1), W.wavedec(x, "db2", "zero", 3, 1)):
        np.testing.assert_allclose(g.numpy(), r, atol=1e-10)


def test_modes_constants_and_per_axis_tuples():
    assert sorted(W.MODES) == sorted(pywt.Modes.modes)   # every PyWavelets mode, no other
    x = np.random.default_rng(7).standard_normal((2, 30, 36))
    for name in pywt.Modes.modes:
        const = getattr(pywt.Modes, name)
        np.testing.assert_allclose(W.dwt(x, "db2", const)[1].numpy(), pywt.dwt(x, "db2", name)[1], atol=1e-10)
    wavelets, modes = ("db2", "sym3"), ("periodization", pywt.Modes.symmetric)
    ref = pywt.wavedec2(x, wavelets, modes, level=2)
    got = W.wavedec2(x, wavelets, modes, level=2)
    for r, g in zip(_flat2(ref), _flat2(got)):
        np.testing.assert_allclose(g.numpy(), r, atol=1e-10)
    np.testing.assert_allclose(W.waverec2(got, wavelets, modes).numpy(), pywt.waverec2(ref, wavelets, modes), atol=1e-10)
    # dwt2 on the same axis twice transforms it twice, as PyWavelets does (also with a few
    # trailing channels, where the kernels otherwise move the axes last).
    for data in (x, x[..., :3]):
        for r, g in zip(_flat2(pywt.dwt2(data, "haar", "zero", axes=(1, 1))),
                        _flat2(W.dwt2(data, "haar", "zero", axes=(1, 1)))):
            np.testing.assert_allclose(g.numpy(), r, atol=1e-10)


def test_dtypes_follow_pywavelets():
    x = np.random.default_rng(8).standard_normal(40)
    for dt_in, dt_out in [(np.int8, "float64"), (np.float16, "float32"), (np.float32, "float32"),
                          (np.float64, "float64"), (np.complex64, "complex64"),
                          (np.longdouble, "float64"), (np.clongdouble, "complex128")]:
        data = (x * 10).astype(dt_in) if dt_in is np.int8 else x.astype(dt_in)
        ca, _ = W.dwt(data, "db2", "symmetric")
        assert ca.dtype.name == dt_out == pywt.dwt(data, "db2", "symmetric")[0].dtype.name
    rec = W.idwt(*W.dwt(x.astype(np.float16), "db2"), "db2")
    assert rec.dtype.name == "float32"
    assert np.abs(rec.numpy() - x.astype(np.float16)).max() < 1e-5


def test_error_types_follow_pywavelets():
    x = np.zeros((4, 8))
    for fn in (W.dwt, pywt.dwt):
        with pytest.raises(TypeError):
            fn(x, "haar", mode=None)
        with pytest.raises(ValueError):
            fn(x, "haar", mode="nonexistent")
        with pytest.raises(ValueError):  # numpy's AxisError is a ValueError
            fn(x, "haar", axis=3)
    for fn in (W.dwt2, pywt.dwt2):
        with pytest.raises(TypeError):
            fn(x, "haar", axes=1)
    for fn in (W.wavedec2, pywt.wavedec2):
        with pytest.raises(ValueError):
            fn(x, "haar", axes=(0, 0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(UserWarning, match="too high"):
            W.wavedec(np.zeros(16), "db4", level=5)


# --------------------------------------------------------------------------- #
# Layout: outside XLA the kernels run with the batch as their vector lanes
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("shape,axes,perm", [
    ((64, 256, 256), (1, 2), [1, 2, 0]),         # a batch of images: transformed axes first
    ((64, 65536), (1,), [1, 0]),                 # a batch of signals
    ((16, 96, 96, 3), (1, 2), [1, 2, 0, 3]),     # channels-last batch
    ((1, 96, 96, 3), (1, 2), [0, 3, 1, 2]),      # one image, 3 channels: transformed axes last
    ((256, 256), (0, 1), None),                  # one image: nothing to vectorise over
    ((256, 64), (0,), None),                     # already first
    ((4, 96, 96, 32), (1, 2), None),             # 32 channels follow: depthwise already
    ((None, 96, 96), (1, 2), None),              # unknown batch: the trailing lanes stay
])
def test_the_layout_puts_the_batch_in_the_kernels_vector_lanes(shape, axes, perm):
    from dwt_keras.transforms._dwt import _layout

    assert _layout(tf.TensorShape(shape), axes, taps=8) == perm


@pytest.mark.parametrize("two_d", [True, False])
def test_a_batch_transforms_with_depthwise_kernels_only_and_equals_pywt(two_d):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 96, 80) if two_d else (24, 200))
    if two_d:
        def roundtrip(t):
            c = W.wavedec2(t, "db4", "symmetric", 2)
            return c, W.waverec2(c, "db4", "symmetric")
        expected = pywt.wavedec2(x, "db4", "symmetric", 2)
        flat = [expected[0]] + [d for det in expected[1:] for d in det]
    else:
        def roundtrip(t):
            c = W.wavedec(t, "db4", "symmetric", 3)
            return c, W.waverec(c, "db4", "symmetric")
        flat = pywt.wavedec(x, "db4", "symmetric", 3)
    graph = tf.function(roundtrip)
    ops = [op.type for op in graph.get_concrete_function(tf.constant(x)).graph.get_operations()]
    assert "Transpose" in ops and "DepthwiseConv2dNative" in ops
    assert "Conv2D" not in ops  # the few-lane two-channel convolution of a last axis
    coeffs, back = graph(tf.constant(x))
    for got, want in zip(tf.nest.flatten(coeffs), flat):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-10)
    np.testing.assert_allclose(back.numpy(), x, atol=1e-10)


def test_the_layout_leaves_short_axes_and_very_wide_batches_alone():
    from dwt_keras.transforms._dwt import MAX_FILTER_VALUES, _layout

    assert _layout(tf.TensorShape((1024, 32, 32)), (1, 2), 8) is None    # matrix products
    assert _layout(tf.TensorShape((256, 48, 48)), (1, 2), 8, signal_scale=2) == [1, 2, 0]
    batch = MAX_FILTER_VALUES // (256 * 8)                                # db4's 8 taps
    assert _layout(tf.TensorShape((batch, 256, 256)), (1, 2), 8) == [1, 2, 0]
    assert _layout(tf.TensorShape((batch + 1, 256, 256)), (1, 2), 8) is None  # too large
    assert _layout(tf.TensorShape((batch, 256, 256)), (1, 2), 16) is None     # sym8's 16 taps
