"""Gradients, XLA compilation, unknown batch sizes and low precision."""

import numpy as np
import pytest
import pywt
import tensorflow as tf

from dwt_keras import wavelets as W


def _flat2(coeffs):
    return [coeffs[0]] + [c for det in coeffs[1:] for c in det]


def _check_directional_derivatives(fn, inputs, seed, n_dirs=3, eps=1e-3):
    """Compares backprop with central finite differences along random directions.

    For random u (output weights) and v (input direction), u . J v from
    ``tape.gradient`` must equal (u . f(x + eps v) - u . f(x - eps v)) / (2 eps).
    """
    rng = np.random.default_rng(seed)
    inputs = [tf.constant(t) for t in inputs]
    out = fn(*inputs)
    u = [tf.constant(rng.standard_normal(o.shape)) for o in tf.nest.flatten(out)]

    def scalar(*ts):
        return tf.add_n([tf.reduce_sum(a * b) for a, b in zip(tf.nest.flatten(fn(*ts)), u)])

    with tf.GradientTape() as tape:
        tape.watch(inputs)
        value = scalar(*inputs)
    grads = tape.gradient(value, inputs)
    assert all(g is not None for g in grads)
    for _ in range(n_dirs):
        v = [rng.standard_normal(t.shape) for t in inputs]
        plus = scalar(*[t + eps * d for t, d in zip(inputs, v)])
        minus = scalar(*[t - eps * d for t, d in zip(inputs, v)])
        numeric = float(plus - minus) / (2 * eps)
        analytic = sum(float(tf.reduce_sum(g * d)) for g, d in zip(grads, v))
        assert abs(numeric - analytic) <= 1e-8 * max(1.0, abs(analytic)), (numeric, analytic)


# Sizes on both sides of DENSE_MAX_LEN exercise both kernels.
@pytest.mark.parametrize(
    "wavelet,mode,n",
    [
        ("db2", "periodization", 11),
        ("sym4", "symmetric", 70),
        ("bior2.2", "smooth", 9),
        ("coif1", "antireflect", 67),
        ("haar", "periodic", 5),
        ("db3", "zero", 80),
        ("rbio3.3", "reflect", 66),
    ],
)
def test_gradients_match_finite_differences(wavelet, mode, n):
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, n))
    _check_directional_derivatives(
        lambda t: W.wavedec(t, wavelet, level=2, mode=mode), [x], seed=n
    )
    coeffs = [np.asarray(c) for c in W.wavedec(x, wavelet, level=2, mode=mode)]
    _check_directional_derivatives(
        lambda *cs: W.waverec(list(cs), wavelet, mode=mode), coeffs, seed=n + 1
    )


def test_gradients_2d_and_adjoint():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 9, 12))
    _check_directional_derivatives(
        lambda t: W.wavedec2(t, "db2", level=1, mode="symmetric"), [x], seed=0
    )
    coeffs = W.wavedec2(x, "db2", level=1, mode="symmetric")
    flat = [np.asarray(c) for c in _flat2(coeffs)]
    _check_directional_derivatives(
        lambda a, h, v, d: W.waverec2([a, (h, v, d)], "db2", mode="symmetric"), flat, seed=1
    )
    # Periodization with an orthogonal wavelet is an orthogonal map, so the
    # gradient of <w, dwt(x)> is idwt(w) (the adjoint is the inverse).
    x = tf.constant(rng.standard_normal((3, 96, 80)))
    coeffs = W.wavedec2(x, "sym3", level=2)
    w = [tf.constant(rng.standard_normal(c.shape)) for c in _flat2(coeffs)]
    with tf.GradientTape() as tape:
        tape.watch(x)
        flat = _flat2(W.wavedec2(x, "sym3", level=2))
        inner = tf.add_n([tf.reduce_sum(a * b) for a, b in zip(flat, w)])
    grad = tape.gradient(inner, x)
    packed = [w[0]] + [tuple(w[i : i + 3]) for i in range(1, len(w), 3)]
    np.testing.assert_allclose(grad.numpy(), W.waverec2(packed, "sym3").numpy(), atol=1e-10)


def test_jit_compile_unknown_batch_matches_pywt():
    spec = tf.TensorSpec((None, 40, 72), tf.float32)

    @tf.function(jit_compile=True, input_signature=[spec])
    def roundtrip(t):
        coeffs = W.wavedec2(t, "db3", level=2, mode="symmetric")
        return _flat2(coeffs), W.waverec2(coeffs, "db3", mode="symmetric")

    @tf.function(jit_compile=True, input_signature=[tf.TensorSpec((None, 3, 100), tf.float32)])
    def one_d(t):
        coeffs = W.wavedec(t, "coif2", level=3, mode="periodization")
        return coeffs, W.waverec(coeffs, "coif2", mode="periodization")

    rng = np.random.default_rng(1)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 40, 72)).astype(np.float32)
        flat, rec = roundtrip(tf.constant(x))
        ref = _flat2(pywt.wavedec2(x.astype(np.float64), "db3", "symmetric", level=2))
        for r, g in zip(ref, flat):
            assert g.shape == r.shape
            assert np.abs(g.numpy() - r).max() <= 1e-5 * np.abs(x).max()
        assert np.abs(rec.numpy() - x).max() <= 1e-5 * np.abs(x).max()
        y = rng.standard_normal((batch, 3, 100)).astype(np.float32)
        coeffs, rec1 = one_d(tf.constant(y))
        for r, g in zip(pywt.wavedec(y.astype(np.float64), "coif2", "periodization", level=3), coeffs):
            assert np.abs(g.numpy() - r).max() <= 1e-5 * np.abs(y).max()
        assert np.abs(rec1.numpy() - y).max() <= 1e-5 * np.abs(y).max()
    # One trace serves every batch size.
    assert roundtrip.experimental_get_tracing_count() == 1


def test_gradient_inside_jit():
    @tf.function(jit_compile=True)
    def grad_of_energy(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            coeffs = W.wavedec2(t, "haar", level=1)
            energy = tf.reduce_sum(coeffs[0] ** 2)
        return tape.gradient(energy, t)

    x = tf.constant(np.random.default_rng(2).standard_normal((2, 8, 8)))
    # d/dx ||A x||^2 = 2 A^T A x, with A the haar approximation map.
    approx = W.wavedec2(x, "haar", level=1)[0]
    expected = W.waverec2([approx, (None, None, None)], "haar") * 2
    np.testing.assert_allclose(grad_of_energy(x).numpy(), expected.numpy(), atol=1e-12)


def test_eager_large_input_matches():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 128, 160)).astype(np.float32)
    coeffs = W.wavedec2(x, "db4", level=3)
    ref = pywt.wavedec2(x.astype(np.float64), "db4", "periodization", level=3)
    for r, g in zip(_flat2(ref), _flat2(coeffs)):
        assert np.abs(g.numpy() - r).max() <= 1e-5 * np.abs(x).max()
    rec = W.waverec2(coeffs, "db4")
    assert np.abs(rec.numpy() - x).max() <= 1e-5 * np.abs(x).max()


# Documented tolerances for reduced precision, relative to max|x| (coefficient
# and reconstruction errors). float16 has a 10-bit mantissa (eps ~ 1e-3),
# bfloat16 a 7-bit one (eps ~ 8e-3); the multi-tap sums add a few ulps.
LOW_PRECISION_TOL = {"float16": 1e-2, "bfloat16": 6e-2}


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("wavelet,n", [("db4", 96), ("sym2", 20), ("bior2.2", 70)])
def test_low_precision_runs_within_documented_tolerance(dtype, wavelet, n):
    rng = np.random.default_rng(4)
    x64 = rng.standard_normal((2, n, n))
    x = tf.cast(tf.constant(x64), dtype)
    x_rounded = tf.cast(x, tf.float64).numpy()
    coeffs = W.wavedec2(x, wavelet, level=2)
    # As PyWavelets: float16 is computed in and returned as float32; bfloat16 (unknown to
    # PyWavelets) is computed in float32 and returned as bfloat16.
    assert coeffs[0].dtype.name == {"float16": "float32", "bfloat16": "bfloat16"}[dtype]
    ref = pywt.wavedec2(x_rounded, wavelet, "periodization", level=2)
    tol = LOW_PRECISION_TOL[dtype] * np.abs(x_rounded).max()
    for r, g in zip(_flat2(ref), _flat2(coeffs)):
        assert np.abs(tf.cast(g, tf.float64).numpy() - r).max() <= tol
    rec = tf.cast(W.waverec2(coeffs, wavelet), tf.float64).numpy()
    assert np.abs(rec - x_rounded).max() <= tol

    @tf.function(jit_compile=True)
    def compiled(t):
        return W.waverec2(W.wavedec2(t, wavelet, level=2), wavelet)

    rec_jit = tf.cast(compiled(x), tf.float64).numpy()
    assert np.abs(rec_jit - x_rounded).max() <= tol


@pytest.mark.parametrize("mode", ["periodization", "symmetric"])
def test_short_axes_backward_is_one_product_per_forward_product(mode):
    # 32 x 32 images: every level takes the dense-matrix path (short axes). Automatic
    # differentiation of a product with a constant matrix would also form the matrix's
    # gradient (one more product each, reduced over the batch), and the strided slices that
    # split or trim coefficients would scatter their gradients (StridedSliceGrad).
    products = ("MatMul", "BatchMatMulV2")

    def roundtrip(t):
        return W.waverec2(W.wavedec2(t, "db4", mode, 2), "db4", mode)

    @tf.function
    def forward_and_backward(t):
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = roundtrip(t)
        return tape.gradient(y, t, output_gradients=tf.ones_like(y))

    x = tf.zeros((4, 32, 32))
    forward = [op.type for op in tf.function(roundtrip).get_concrete_function(x).graph
               .get_operations()]
    both = [op.type for op in forward_and_backward.get_concrete_function(x).graph
            .get_operations()]
    n_forward = sum(t in products for t in forward)
    assert n_forward >= 8
    assert sum(t in products for t in both) == 2 * n_forward
    assert "StridedSliceGrad" not in both
    # and the gradient is still the adjoint: <W x, y> = <x, W^T y> for the round trip
    rng = np.random.default_rng(0)
    xv, yv = (tf.constant(rng.standard_normal((4, 32, 32))) for _ in range(2))
    with tf.GradientTape() as tape:
        tape.watch(xv)
        inner = tf.reduce_sum(roundtrip(xv) * yv)
    adjoint = tape.gradient(inner, xv)
    np.testing.assert_allclose(float(tf.reduce_sum(adjoint * xv)), float(inner), rtol=1e-10)
