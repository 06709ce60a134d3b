"""Tests of the learnable wavelet / Fastfood layers against PyWavelets, SciPy and formulas."""

import numpy as np
import pytest
import pywt
import scipy.linalg

import keras
from keras import ops

from dwt_keras.learnable import FastfoodDense
from dwt_keras.learnable import FastfoodGRU
from dwt_keras.learnable import FastfoodGRUCell
from dwt_keras.learnable import WaveletDense
from dwt_keras.learnable import WaveletGRU
from dwt_keras.learnable import WaveletGRUCell
from dwt_keras.learnable import coefficient_lengths
from dwt_keras.learnable import fast_walsh_hadamard
from dwt_keras.learnable import num_coefficients
from dwt_keras.learnable import padded_filter_bank
from dwt_keras.learnable import wavelet_analysis
from dwt_keras.learnable import wavelet_filter_loss
from dwt_keras.learnable import wavelet_synthesis


def _np(t):
    return np.asarray(ops.convert_to_numpy(t))


def _t(a, dtype="float64"):
    return ops.convert_to_tensor(np.asarray(a, dtype=dtype))


def _random_bank(length, seed):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=length) for _ in range(4)]


def _oracle_wavelet_dense(layer, x):
    """y = S W^-1 G P W B x with PyWavelets' wavedec / waverec on the layer's current filters."""
    f = layer.filters()
    bank = [f["dec_lo"], f["dec_hi"], f["rec_lo"], f["rec_hi"]]
    w = pywt.Wavelet("learned", filter_bank=[np.asarray(b, np.float64) for b in bank])
    n, units, in_dim = layer.width, layer.units, x.shape[-1]
    xb = x.astype(np.float64) * _np(layer.input_scale)
    xb = np.pad(xb, [(0, 0), (0, n - in_dim)])
    coeffs = pywt.wavedec(xb, w, mode="zero", level=layer.num_levels, axis=-1)
    flat = np.concatenate(coeffs, axis=-1)
    flat = flat[:, layer.permutation] * _np(layer.coefficient_scale)
    sizes = np.cumsum([c.shape[-1] for c in coeffs])[:-1]
    y = pywt.waverec(np.split(flat, sizes, axis=-1), w, mode="zero", axis=-1)[:, :n]
    y = y[:, :units] * _np(layer.output_scale)
    if layer.bias is not None:
        y = y + _np(layer.bias)
    return y


# ---------------------------------------------------------------- transforms and filter banks


def test_coefficient_count_and_parameter_count_of_the_paper():
    assert coefficient_lengths(800, 6, 6) == [402, 203, 104, 54, 29, 17]
    assert num_coefficients(800, 6, 6) == 826
    layer = WaveletDense(800, levels=6, filter_length=6, init_wavelet="haar", seed=0)
    layer.build((None, 800))
    assert layer.count_params() == 2 * 800 + 826 + 4 * 6 == 2450
    assert all(len(w.shape) == 1 for w in layer.trainable_weights)  # only diagonals and filters


def test_analysis_and_synthesis_equal_pywavelets():
    for (wavelet, n, levels) in [("haar", 101, 4), ("db2", 77, 3), ("sym6", 255, 3), ("db6", 99, 3)]:
        w = pywt.Wavelet(wavelet)
        x = np.random.default_rng(0).normal(size=(3, n))
        coeffs = wavelet_analysis(_t(x), _t(w.dec_lo), _t(w.dec_hi), levels)
        expected = pywt.wavedec(x, w, mode="zero", level=levels, axis=-1)
        assert [c.shape[-1] for c in coeffs] == [e.shape[-1] for e in expected]
        for got, want in zip(coeffs, expected):
            np.testing.assert_allclose(_np(got), want, atol=1e-12)
        lengths = coefficient_lengths(n, w.dec_len, levels)
        rec = wavelet_synthesis([_t(e) for e in expected], _t(w.rec_lo), _t(w.rec_hi), lengths[::-1][1:] + [n])
        np.testing.assert_allclose(_np(rec), pywt.waverec(expected, w, mode="zero", axis=-1)[:, :n], atol=1e-12)
        np.testing.assert_allclose(_np(rec), x, atol=1e-12)


def test_transforms_equal_pywavelets_for_arbitrary_filters():
    for (length, n) in [(2, 9), (4, 40), (6, 37), (8, 64)]:
        bank = _random_bank(length, seed=length)
        w = pywt.Wavelet("random", filter_bank=bank)
        x = np.random.default_rng(1).normal(size=(2, n))
        levels = min(3, max(1, pywt.dwt_max_level(n, length)))
        coeffs = wavelet_analysis(_t(x), _t(bank[0]), _t(bank[1]), levels)
        expected = pywt.wavedec(x, w, mode="zero", level=levels, axis=-1)
        for got, want in zip(coeffs, expected):
            np.testing.assert_allclose(_np(got), want, rtol=1e-10, atol=1e-10)
        lengths = coefficient_lengths(n, length, levels)
        rec = wavelet_synthesis([_t(e) for e in expected], _t(bank[2]), _t(bank[3]), lengths[::-1][1:] + [n])
        np.testing.assert_allclose(
            _np(rec), pywt.waverec(expected, w, mode="zero", axis=-1)[:, :n], rtol=1e-10, atol=1e-9
        )


def test_odd_filter_length_follows_the_full_convolution():
    # PyWavelets pads odd filters; the paper's lengths c_j = floor((c_{j-1} + L - 1) / 2) are
    # the odd samples of the full convolution, for any L.
    h0, h1, _, _ = _random_bank(5, seed=9)
    x = np.random.default_rng(3).normal(size=(1, 23))
    coeffs = wavelet_analysis(_t(x), _t(h0), _t(h1), 2)
    a1, d1 = np.convolve(x[0], h0)[1::2], np.convolve(x[0], h1)[1::2]
    a2, d2 = np.convolve(a1, h0)[1::2], np.convolve(a1, h1)[1::2]
    assert [c.shape[-1] for c in coeffs] == [len(a2), len(d2), len(d1)] == [8, 8, 13]
    for got, want in zip(coeffs, (a2, d2, d1)):
        np.testing.assert_allclose(_np(got)[0], want, atol=1e-12)


def test_layer_reconstruction_is_identity_with_initial_filters():
    # The bug of the public code (wrong coefficient offsets) broke exactly this from level 3 on.
    cases = [("haar", 6, 801, 6), ("haar", 6, 97, 3), ("db2", 6, 333, 5), ("db3", 10, 129, 3),
             ("sym6", 12, 255, 4), ("db6", 12, 513, 5), ("coif2", 12, 101, 3)]
    for wavelet, filter_length, n, levels in cases:
        layer = WaveletDense(n, levels=levels, filter_length=filter_length, init_wavelet=wavelet, seed=0)
        layer.build((None, n))
        x = np.random.default_rng(2).normal(size=(4, n)).astype("float32")
        rec = _np(layer.synthesize(layer.analyze(_t(x, "float32"))))
        np.testing.assert_allclose(rec, x, atol=5e-6, err_msg=f"{wavelet} L={filter_length} n={n} J={levels}")


def test_wavelet_loss_vanishes_for_orthogonal_banks():
    for wavelet in ["haar", "db2", "db3", "db6", "sym3", "sym6", "coif2"]:
        w = pywt.Wavelet(wavelet)
        l_pr, l_ac = wavelet_filter_loss(*(_t(f) for f in (w.dec_lo, w.dec_hi, w.rec_lo, w.rec_hi)))
        assert float(_np(l_pr)) < 1e-12 and float(_np(l_ac)) < 1e-12


def test_padded_banks_keep_both_loss_terms_zero():
    for (wavelet, filter_length) in [("haar", 6), ("haar", 4), ("db2", 6), ("db2", 8), ("sym6", 14)]:
        bank = padded_filter_bank(wavelet, filter_length)
        assert all(len(v) == filter_length for v in bank.values())
        l_pr, l_ac = wavelet_filter_loss(*(_t(bank[k]) for k in ("dec_lo", "dec_hi", "rec_lo", "rec_hi")))
        assert float(_np(l_pr)) < 1e-12 and float(_np(l_ac)) < 1e-12


def test_wavelet_loss_is_clearly_positive_for_random_filters():
    layer = WaveletDense(64, levels=2, filter_length=6, init_wavelet="random", seed=3)
    layer.build((None, 64))
    l_pr, l_ac = (float(_np(t)) for t in layer.wavelet_loss_terms())
    assert l_pr > 0.1 and l_ac > 0.1
    # and the formula by hand, for a fixed bank
    h0, h1, f0, f1 = _random_bank(4, seed=5)
    p = np.convolve(h0, f0) + np.convolve(h1, f1)
    target = np.zeros(7)
    target[3] = 2.0
    m = (-1.0) ** (3 - np.arange(4))
    want_ac = np.sum((f0 - m * h1) ** 2) + np.sum((f1 + m * h0) ** 2)
    got_pr, got_ac = wavelet_filter_loss(_t(h0), _t(h1), _t(f0), _t(f1))
    np.testing.assert_allclose(float(_np(got_pr)), np.sum((p - target) ** 2), rtol=1e-12)
    np.testing.assert_allclose(float(_np(got_ac)), want_ac, rtol=1e-12)


# ---------------------------------------------------------------- the layer


def test_wavelet_dense_equals_pywavelets_oracle():
    for (in_dim, units, use_bias) in [(37, 37, False), (50, 30, True), (30, 50, False)]:
        layer = WaveletDense(units, levels=2, filter_length=4, init_wavelet="random", use_bias=use_bias, seed=7)
        layer.build((None, in_dim))
        rng = np.random.default_rng(8)
        # Non-trivial diagonals and bias so that every factor is exercised.
        extra = [layer.bias] if use_bias else []
        for var in [layer.input_scale, layer.coefficient_scale, layer.output_scale] + extra:
            var.assign(rng.normal(size=var.shape).astype("float32"))
        x = rng.normal(size=(5, in_dim)).astype("float32")
        np.testing.assert_allclose(_np(layer(x)), _oracle_wavelet_dense(layer, x), rtol=1e-4, atol=1e-4)
        expected_params = in_dim + units + num_coefficients(max(in_dim, units), 4, 2) + 16 + (units if use_bias else 0)
        assert layer.count_params() == expected_params


def test_wavelet_dense_is_linear_and_keeps_leading_axes():
    layer = WaveletDense(24, levels=2, filter_length=4, init_wavelet="db2", seed=1)
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 3, 24)).astype("float32")
    ya, yb, yab = (_np(layer(v)) for v in (a, b, 2 * a - b))
    assert ya.shape == (3, 24)
    np.testing.assert_allclose(yab, 2 * ya - yb, atol=1e-5)
    seq = rng.normal(size=(2, 5, 24)).astype("float32")
    np.testing.assert_allclose(_np(layer(seq)).reshape(10, 24), _np(layer(seq.reshape(10, 24))), atol=1e-6)


def test_no_dense_n_by_n_tensor_in_the_graph():
    import tensorflow as tf

    n = 256
    for layer in (WaveletDense(n, levels=5, seed=0), FastfoodDense(n, seed=0)):
        layer.build((None, n))

        @tf.function
        def fwd_bwd(x, layer=layer):
            with tf.GradientTape() as tape:
                y = layer(x)
            return tape.gradient(tf.reduce_sum(y * y), layer.trainable_variables)

        graph = fwd_bwd.get_concrete_function(tf.TensorSpec((1, n), tf.float32)).graph
        biggest = max(
            int(np.prod([d for d in out.shape if d is not None]))
            for op in graph.get_operations()
            for out in op.outputs
            if out.shape.rank is not None
        )
        assert biggest < n * n // 8, (type(layer).__name__, biggest)


def test_permutation_and_random_filters_are_seeded():
    def make(seed, init="random"):
        layer = WaveletDense(40, levels=2, filter_length=4, init_wavelet=init, seed=seed)
        layer.build((None, 40))
        return layer

    a, b, c = make(3), make(3), make(4)
    np.testing.assert_array_equal(a.permutation, b.permutation)
    assert not np.array_equal(a.permutation, c.permutation)
    np.testing.assert_array_equal(a.filters()["dec_lo"], b.filters()["dec_lo"])
    assert not np.allclose(a.filters()["dec_lo"], c.filters()["dec_lo"])
    assert sorted(a.permutation.tolist()) == list(range(a.num_coefficients))
    unseeded = WaveletDense(40, levels=2, filter_length=4, seed=None)
    assert isinstance(unseeded.get_config()["seed"], int)


def test_add_loss_weight_and_metric():
    layer = WaveletDense(32, levels=2, filter_length=4, init_wavelet="random", wavelet_loss_weight=2.5, seed=0)
    inputs = keras.Input((32,))
    model = keras.Model(inputs, keras.layers.Dense(1)(layer(inputs)))
    x = np.random.default_rng(0).normal(size=(16, 32)).astype("float32")
    model(x)
    expected = 2.5 * float(_np(layer.wavelet_loss()))
    assert expected > 0.1
    np.testing.assert_allclose(float(_np(model.losses[0])), expected, rtol=1e-6)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    history = model.fit(x, np.zeros((16, 1), "float32"), epochs=1, batch_size=16, verbose=0)
    metric = f"{layer.name}_wavelet_loss"
    np.testing.assert_allclose(history.history[metric][0], expected / 2.5, rtol=1e-5)

    off = WaveletDense(32, levels=2, filter_length=4, init_wavelet="random", wavelet_loss_weight=0.0, seed=0)
    off(x)
    assert off.losses == []


def test_training_moves_the_filters_and_reduces_the_loss():
    layer = WaveletDense(16, levels=2, filter_length=4, init_wavelet="random", seed=1)
    model = keras.Sequential([keras.Input((16,)), layer])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss="mse")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 16)).astype("float32")
    before = layer.filters()["dec_lo"].copy()
    start = float(_np(layer.wavelet_loss()))
    model.fit(x, x, epochs=10, batch_size=64, verbose=0)
    assert not np.allclose(before, layer.filters()["dec_lo"])
    assert float(_np(layer.wavelet_loss())) < 0.5 * start


def test_constructor_rejects_bad_arguments():
    for (kwargs, match) in [
        (dict(filter_length=1), "filter_length"),
        (dict(levels=9), "too deep"),
        (dict(levels=0), "levels"),
        (dict(init_wavelet="db99"), "Unknown init_wavelet"),
        (dict(init_wavelet="db4", filter_length=6), "longer than"),
        (dict(init_wavelet="haar", filter_length=5), "odd number"),
        (dict(wavelet_loss_weight=-1.0), "wavelet_loss_weight"),
        (dict(mode="periodization"), "mode"),
        (dict(seed=-1), "seed"),
    ]:
        args = dict(levels=2, filter_length=6, init_wavelet="haar")
        args.update(kwargs)
        with pytest.raises(ValueError, match=match):
            WaveletDense(64, **args)
    with pytest.raises(ValueError, match="units"):
        WaveletDense(0)


def test_levels_default_to_the_deepest_allowed():
    layer = WaveletDense(800, filter_length=6)
    layer.build((None, 800))
    assert layer.num_levels == pywt.dwt_max_level(800, 6)
    with pytest.raises(ValueError, match="too deep"):
        WaveletDense(10, levels=3, input_dim=10)


# ---------------------------------------------------------------- Fastfood


def test_fast_walsh_hadamard_equals_scipy():
    for n in [1, 2, 8, 64, 256]:
        x = np.random.default_rng(n).normal(size=(3, n))
        h = scipy.linalg.hadamard(n)
        np.testing.assert_allclose(_np(fast_walsh_hadamard(_t(x), normalize=False)), x @ h, atol=1e-10)
        y = _np(fast_walsh_hadamard(_t(x)))
        np.testing.assert_allclose(y, x @ h / np.sqrt(n), atol=1e-12)
        np.testing.assert_allclose(np.linalg.norm(y, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-12)
    with pytest.raises(ValueError, match="power-of-two"):
        fast_walsh_hadamard(_t(np.zeros((1, 6))))


def test_fastfood_dense_equals_explicit_formula():
    for (in_dim, units) in [(16, 16), (20, 12), (12, 20)]:
        layer = FastfoodDense(units, use_bias=True, seed=2)
        layer.build((None, in_dim))
        n = layer.width
        assert n == 1 << (max(in_dim, units) - 1).bit_length()
        rng = np.random.default_rng(3)
        layer.output_scale.assign(rng.normal(size=units).astype("float32"))
        layer.bias.assign(rng.normal(size=units).astype("float32"))
        x = rng.normal(size=(4, in_dim)).astype("float32")
        h = scipy.linalg.hadamard(n) / np.sqrt(n)
        v = np.pad(x * _np(layer.input_scale), [(0, 0), (0, n - in_dim)]) @ h
        v = v[:, layer.permutation] * _np(layer.middle_scale)
        want = (v @ h)[:, :units] * _np(layer.output_scale) + _np(layer.bias)
        np.testing.assert_allclose(_np(layer(x)), want, rtol=1e-4, atol=1e-5)
        assert layer.count_params() == in_dim + n + units + units


def test_fastfood_parameter_count_is_3n_for_square_power_of_two():
    layer = FastfoodDense(1024, seed=0)
    layer.build((None, 1024))
    assert layer.count_params() == 3 * 1024


# ---------------------------------------------------------------- recurrent cells


def test_wavelet_gru_cell_step_matches_the_gru_equations():
    cell = WaveletGRUCell(16, compress="state,update", levels=2, filter_length=4, init_wavelet="random", seed=0)
    cell.build((None, 3))
    rng = np.random.default_rng(0)
    cell.bias.assign(rng.normal(size=48).astype("float32"))
    x = rng.normal(size=(5, 3)).astype("float32")
    h = rng.normal(size=(5, 16)).astype("float32")
    out, _ = cell(x, [h])
    kernel, bias = _np(cell.kernel), _np(cell.bias)
    xz, xr, xh = np.split(x @ kernel + bias, 3, axis=-1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    z = sig(xz + _oracle_wavelet_dense(cell.structured["update"], h))
    r = sig(xr + h @ _np(cell.recurrent_kernels["reset"]))
    cand = np.tanh(xh + _oracle_wavelet_dense(cell.structured["state"], r * h))
    np.testing.assert_allclose(_np(out), z * h + (1 - z) * cand, rtol=1e-4, atol=1e-5)


def test_paper_sized_wavelet_gru_stays_under_10k_parameters():
    model = keras.Sequential([keras.Input((150, 2)), WaveletGRU(512, compress="all", seed=0), keras.layers.Dense(1)])
    # kernel 2x1536 + bias 1536 + 3 x (2*512 + N_c + 4L) + read-out 513
    n_c = num_coefficients(512, 6, pywt.dwt_max_level(512, 6))
    assert model.count_params() == 3072 + 1536 + 3 * (1024 + n_c + 24) + 513
    assert model.count_params() <= 10_000


def test_gru_layers_add_loss_once_per_sequence_and_validate_compress():
    layer = WaveletGRU(8, compress=["state"], levels=1, filter_length=4, init_wavelet="random", seed=0)
    x = np.random.default_rng(0).normal(size=(2, 5, 3)).astype("float32")
    layer(x)
    assert len(layer.losses) == 1
    np.testing.assert_allclose(float(_np(layer.losses[0])), float(_np(layer.cell.wavelet_loss())), rtol=1e-6)
    with pytest.raises(ValueError, match="compress"):
        WaveletGRUCell(8, compress="state,forget")
    assert FastfoodGRUCell(8, compress=["all"]).compress == FastfoodGRUCell(8, compress="all").compress == [
        "update", "reset", "state"]
    with pytest.raises(ValueError, match="filter_length"):
        WaveletGRU(8, filter_length=1)


@pytest.mark.parametrize(
    "cls, kwargs, compress",
    [
        (WaveletGRU, {"levels": 2, "filter_length": 4, "init_wavelet": "random"}, "all"),
        (WaveletGRU, {"levels": 1, "filter_length": 6, "init_wavelet": "haar"}, "state,reset"),
        (FastfoodGRU, {}, "update"),
    ],
)
def test_materialized_recurrent_matrices_give_the_structured_outputs_and_gradients(cls, kwargs, compress):
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 6, 2)).astype("float32")
    layers_ = [cls(12, compress=compress, seed=1, recurrent_impl=impl, **kwargs) for impl in ("structured", "materialized")]
    for layer in layers_:
        layer(x)
    # Weights away from the initial values, so the filters, scales and dense kernels all matter.
    layers_[0].set_weights([w + rng.normal(scale=0.3, size=w.shape).astype("float32") for w in layers_[0].get_weights()])
    layers_[1].set_weights(layers_[0].get_weights())
    outputs, grads = [], []
    for layer in layers_:
        with tf.GradientTape() as tape:
            y = layer(x)
            loss = ops.sum(ops.square(y)) + ops.sum(layer.losses)
        outputs.append(_np(y))
        grads.append([_np(g) for g in tape.gradient(loss, layer.trainable_variables)])
    assert layers_[0].cell.prepare().keys() == {"structured"}
    assert layers_[1].cell.prepare()["update_reset"].shape == (12, 24)
    np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-6)
    assert len(grads[0]) == len(grads[1]) == len(layers_[0].trainable_variables)
    for g_structured, g_materialized in zip(*grads):
        assert np.abs(g_structured).max() > 0
        np.testing.assert_allclose(g_materialized, g_structured, rtol=1e-4, atol=1e-5 * np.abs(g_structured).max())


def test_recurrent_impl_auto_choice_validation_and_config():
    from dwt_keras.learnable.recurrent import AUTO_MATERIALIZE_MAX_UNITS

    assert WaveletGRUCell(16, levels=1).resolved_recurrent_impl() == "materialized"
    big = FastfoodGRUCell(AUTO_MATERIALIZE_MAX_UNITS + 1)
    assert big.resolved_recurrent_impl() == "structured"
    assert FastfoodGRUCell(16, recurrent_impl="structured").resolved_recurrent_impl() == "structured"
    with pytest.raises(ValueError, match="recurrent_impl='fused'.*auto, structured, materialized"):
        WaveletGRU(8, levels=1, recurrent_impl="fused")
    layer = FastfoodGRU(8, compress="state", recurrent_impl="materialized")
    assert layer.get_config()["recurrent_impl"] == "materialized"
    assert FastfoodGRU.from_config(layer.get_config()).cell.recurrent_impl == "materialized"


# ---------------------------------------------------------------- serialization


def test_keras_file_round_trip_gives_identical_outputs(tmp_path):
    rng = np.random.default_rng(0)
    dense_in = keras.Input((24,))
    h = WaveletDense(20, levels=2, filter_length=4, init_wavelet="db2", use_bias=True, seed=4)(dense_in)
    h = FastfoodDense(10, use_bias=True, seed=5)(h)
    seq_in = keras.Input((6, 3))
    s = WaveletGRU(8, compress="state,reset", levels=1, filter_length=4, init_wavelet="random", seed=1)(seq_in)
    s2 = FastfoodGRU(8, compress="update", seed=2, recurrent_impl="structured")(seq_in)
    model = keras.Model([dense_in, seq_in], [h, s, s2])
    x = [rng.normal(size=(3, 24)).astype("float32"), rng.normal(size=(3, 6, 3)).astype("float32")]
    for var in model.trainable_variables:  # move away from the initial values
        var.assign(var + rng.normal(scale=0.1, size=var.shape).astype("float32"))
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    for a, b in zip(model(x), loaded(x)):
        np.testing.assert_array_equal(_np(a), _np(b))
    assert [layer.cell.recurrent_impl for layer in loaded.layers[-2:]] == ["auto", "structured"]
    for cls, layer in ((WaveletDense, model.layers[1]),):
        clone = cls.from_config(layer.get_config())
        assert clone.get_config() == layer.get_config()
    cell = FastfoodGRUCell(8, compress="all", seed=3)
    assert FastfoodGRUCell.from_config(cell.get_config()).get_config() == cell.get_config()
