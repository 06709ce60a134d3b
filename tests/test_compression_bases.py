"""Per-layer plans and transforms: geometry, levels, fallbacks, and PyWavelets/SciPy oracles."""

import warnings

import keras
import numpy as np
import pytest
import pywt
import scipy.fft

from dwt_keras.compression import bases
from dwt_keras.compression.bases import KernelTransform, plan_model
from dwt_keras.experiments.registry import build_model


def _conv_flatten_dense(h=8, w=8, c=4, units=6):
    inp = keras.Input((h, w, 3))
    x = keras.layers.Conv2D(c, 3, padding="same", name="conv")(inp)
    x = keras.layers.Flatten(name="flat")(x)
    x = keras.layers.Dense(units, name="fc")(x)
    x = keras.layers.Dense(5, name="out")(x)
    return keras.Model(inp, x)


def test_lenet300_plan_follows_geometry():
    plans = plan_model(build_model("lenet300", (28, 28, 1), 10), "haar")
    fc1, fc2, out = plans
    assert fc1.view == "receptive_field_hw" and fc1.pre_shape == (28, 28, 1, 300)
    assert fc1.transform_axes == (0, 1) and fc1.level == 2  # 28 -> 14 -> 7 (exact levels)
    assert fc2.view == "input_axis" and fc2.transform_axes == (0,) and fc2.level == 2  # 300=4*75
    assert out.view == "input_axis"
    assert all(p.n_coefficients == p.n_weights for p in plans)


def test_dense_after_flatten_of_feature_map_is_detected():
    m = _conv_flatten_dense()
    fc = {p.layer: p for p in plan_model(m, "haar", min_kernel_size=1)}["fc"]
    assert fc.view == "receptive_field_hw" and fc.pre_shape == (8, 8, 4, 6)
    assert fc.level == 3


def test_user_overrides_geometry_basis_and_skip():
    m = build_model("lenet300", (28, 28, 1), 10)
    plans = {p.layer: p for p in plan_model(m, "haar", layer_overrides={
        "fc2": {"geometry": (10, 30)}, "fc1": {"basis": "dct"}, "logits": {"skip": True}})}
    assert set(plans) == {"fc1", "fc2"}
    assert plans["fc1"].basis == "dct"
    assert plans["fc2"].view == "receptive_field_hw" and plans["fc2"].pre_shape == (10, 30, 1, 100)
    with pytest.raises(ValueError, match="does not match"):
        plan_model(m, "haar", layer_overrides={"fc2": {"geometry": (7, 7)}})
    with pytest.raises(ValueError, match="unknown layer"):
        plan_model(m, "haar", layer_overrides={"nope": {"skip": True}})


def test_small_conv_kernel_never_gets_a_silent_zero_level_dwt():
    inp = keras.Input((8, 8, 16))
    x = keras.layers.Conv2D(16, 3, name="c3")(inp)
    m = keras.Model(inp, x)
    for wav in ("haar", "db2", "db4"):
        with pytest.warns(UserWarning, match="c3"):
            (p,) = plan_model(m, wav)
        assert p.fallback is not None
        assert p.basis == "identity" or p.level >= 1
        assert p.view == "conv_flattened"  # 16*3*3 = 144 = 16*9 allows levels
    with pytest.warns(UserWarning, match="identity"):
        (p,) = plan_model(m, "haar", small_kernel_fallback="identity")
    assert p.basis == "identity" and "identity" in p.fallback
    # DCT needs no levels: the 3x3 spatial transform is used as is
    (p,) = plan_model(m, "dct")
    assert p.view == "conv_spatial" and p.fallback is None


def test_large_conv_kernel_uses_spatial_axes():
    inp = keras.Input((16, 16, 2))
    m = keras.Model(inp, keras.layers.Conv2D(4, 8, name="c8")(inp))
    (p,) = plan_model(m, "haar", min_kernel_size=1)
    assert p.view == "conv_spatial" and p.transform_axes == (0, 1) and p.level == 3


def test_requested_level_too_deep_is_lowered_with_warning():
    m = build_model("lenet300", (28, 28, 1), 10)
    with pytest.warns(UserWarning, match="level 5 requested"):
        plans = plan_model(m, "haar", level=5)
    assert plans[0].level == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert plan_model(m, "haar", level=1)[0].level == 1


@pytest.mark.parametrize("bad, match", [
    ("morl", "continuous"), ("db99", "Unknown"), ("", "basis"), ("mexh", "continuous")])
def test_bad_basis_names(bad, match):
    m = build_model("lenet300", (28, 28, 1), 10)
    with pytest.raises(ValueError, match=match):
        plan_model(m, bad)


def test_bad_mode():
    m = build_model("lenet300", (28, 28, 1), 10)
    with pytest.raises(ValueError, match="periodization"):
        plan_model(m, "haar", mode="wrap-around")


@pytest.mark.parametrize("wavelet", ["haar", "db2", "sym4", "bior2.2"])
def test_receptive_field_transform_equals_pywt_wavedec2(wavelet):
    rng = np.random.default_rng(0)
    m = build_model("mlp", (16, 16, 1), 3, widths=(5,))
    p = plan_model(m, wavelet)[0]
    k = rng.standard_normal((256, 5)).astype(np.float32)
    flat = np.asarray(KernelTransform(p).forward(k))
    ref = pywt.wavedec2(k.reshape(16, 16, 1, 5).astype(np.float64), wavelet, mode="periodization",
                        level=p.level, axes=(0, 1))
    expect = np.concatenate([ref[0].ravel()] + [d.ravel() for lvl in ref[1:] for d in lvl])
    np.testing.assert_allclose(flat, expect, atol=2e-5)
    back = np.asarray(KernelTransform(p).inverse(flat))
    np.testing.assert_allclose(back, k, atol=2e-5)


def test_input_axis_transform_equals_pywt_wavedec():
    rng = np.random.default_rng(1)
    m = build_model("mlp", (8, 8, 1), 4, widths=(32,))
    p = {q.layer: q for q in plan_model(m, "db2", min_kernel_size=1)}["logits"]
    assert p.view == "input_axis"
    k = rng.standard_normal((32, 4)).astype(np.float32)
    flat = np.asarray(KernelTransform(p).forward(k))
    ref = pywt.wavedec(k.astype(np.float64), "db2", mode="periodization", level=p.level, axis=0)
    np.testing.assert_allclose(flat, np.concatenate([c.ravel() for c in ref]), atol=2e-5)


def test_dct_equals_scipy_orthonormal_dctn():
    rng = np.random.default_rng(2)
    m = build_model("lenet300", (28, 28, 1), 10)
    p = plan_model(m, "dct")[0]
    k = rng.standard_normal((784, 300)).astype(np.float32)
    flat = np.asarray(KernelTransform(p).forward(k))
    ref = scipy.fft.dctn(k.reshape(28, 28, 1, 300).astype(np.float64), type=2, norm="ortho",
                         axes=(0, 1))
    np.testing.assert_allclose(flat, ref.ravel(), atol=2e-5)
    assert KernelTransform(p).approximation_mask().sum() == 300  # one DC term per unit


def test_conv_flattened_view_puts_spatial_taps_fastest():
    inp = keras.Input((8, 8, 2))
    m = keras.Model(inp, keras.layers.Conv2D(3, 3, name="c")(inp))
    with pytest.warns(UserWarning):
        (p,) = plan_model(m, "haar", min_kernel_size=1)
    assert p.view == "conv_flattened" and p.x_shape == (18, 3)
    k = np.arange(54, dtype=np.float32).reshape(3, 3, 2, 3)
    t = KernelTransform(p)
    x = np.asarray(t._to_x(k))
    np.testing.assert_array_equal(x[:9, 0], k[:, :, 0, 0].ravel())  # cin=0: its 9 taps in a row
    np.testing.assert_allclose(np.asarray(t.inverse(t.forward(k))), k, atol=1e-4)


def test_energy_preserved_for_orthogonal_bases():
    rng = np.random.default_rng(3)
    m = build_model("lenet300", (28, 28, 1), 10)
    k = rng.standard_normal((784, 300)).astype(np.float32)
    for basis in ("haar", "db4", "sym4", "coif2", "dct", "identity"):
        c = np.asarray(KernelTransform(plan_model(m, basis)[0]).forward(k))
        np.testing.assert_allclose(np.sum(c.astype(np.float64) ** 2), np.sum(k.astype(np.float64) ** 2),
                                   rtol=1e-5)


def test_wavelet_beats_identity_only_on_structured_weights():
    """methods.md: on i.i.d. weights keeping 10% leaves ~0.75 relative error in any basis; on
    smooth receptive fields the wavelet basis wins by far."""
    rng = np.random.default_rng(4)
    m = build_model("lenet300", (28, 28, 1), 10)
    p_haar, p_id = plan_model(m, "db4")[0], plan_model(m, "identity")[0]
    iid = rng.standard_normal((784, 300)).astype(np.float32)
    e_w = bases.relative_error_after_keep(iid, p_haar, 0.1)
    e_i = bases.relative_error_after_keep(iid, p_id, 0.1)
    assert 0.7 < e_w < 0.8 and 0.7 < e_i < 0.8
    yy, xx = np.mgrid[0:28, 0:28] / 28.0
    smooth = np.stack([np.sin(2 * np.pi * (a * xx + b * yy)) for a, b in rng.uniform(0.2, 1.5, (300, 2))],
                      axis=-1).reshape(784, 300).astype(np.float32)
    assert bases.relative_error_after_keep(smooth, p_haar, 0.1) < 0.5 * bases.relative_error_after_keep(
        smooth, p_id, 0.1)


def test_redundant_mode_warns():
    m = build_model("lenet300", (28, 28, 1), 10)
    with pytest.warns(UserWarning, match="redundant"):
        plans = plan_model(m, "db2", mode="symmetric")
    assert plans[0].redundant and plans[0].n_coefficients > plans[0].n_weights
    k = np.random.default_rng(5).standard_normal((784, 300)).astype(np.float32)
    t = KernelTransform(plans[0])
    np.testing.assert_allclose(np.asarray(t.inverse(t.forward(k))), k, atol=1e-4)


def test_plan_round_trips_through_dict_and_formats():
    plans = plan_model(build_model("lenet300", (28, 28, 1), 10), "sym4")
    for p in plans:
        assert bases.LayerPlan.from_dict(p.to_dict()) == p
    text = bases.format_plan(plans)
    assert "receptive_field_hw" in text and "fc1" in text and "sym4" in text
