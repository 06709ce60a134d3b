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
        # default: a 2-D DCT over the 3x3 taps of each filter, never across channels
        with pytest.warns(UserWarning, match="c3"):
            (p,) = plan_model(m, wav)
        assert p.fallback is not None and "dct" in p.fallback
        assert p.basis == "dct" and p.view == "conv_spatial" and p.transform_axes == (0, 1)
        # flattening across channels only when asked
        with pytest.warns(UserWarning, match="mixes channels"):
            (p,) = plan_model(m, wav, small_kernel_fallback="flatten")
        assert p.view == "conv_flattened" and p.level >= 1  # 16*3*3 = 144 = 16*9 allows levels
    with pytest.warns(UserWarning, match="identity"):
        (p,) = plan_model(m, "haar", small_kernel_fallback="identity")
    assert p.basis == "identity" and "identity" in p.fallback
    # DCT needs no levels: the 3x3 spatial transform is used as is
    (p,) = plan_model(m, "dct")
    assert p.view == "conv_spatial" and p.fallback is None
    with pytest.raises(ValueError, match="Received: small_kernel_fallback='nope'"):
        plan_model(m, "haar", small_kernel_fallback="nope")


def test_default_never_flattens_across_channels():
    """Issue 12: the user's CNN (conv 5x5 16 -> pool -> conv 5x5 32 -> pool -> flatten 4x4x32
    -> dense 128 -> dense 10) used to get a 7-level db2 over the flattened C*H*W axis of the Dense
    and a transform over cin*kh*kw of the convs."""
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 5, name="conv1")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 5, name="conv2")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, name="fc")(x)
    m = keras.Model(inp, keras.layers.Dense(10, name="logits")(x))
    for basis in ("haar", "db2", "db4", "auto", "dct"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plans = plan_model(m, basis)
        views = {p.layer: p.view for p in plans}
        assert not any("flattened" in v for v in views.values()), (basis, views)
        assert views["fc"] in ("receptive_field_hw", "none"), (basis, views)
        assert views["conv2"] in ("conv_spatial", "none"), (basis, views)
    haar = {p.layer: p for p in plan_model(m, "haar")}
    assert haar["fc"].view == "receptive_field_hw" and haar["fc"].level == 2  # 4 -> 2 -> 1


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


@pytest.mark.parametrize("wavelet, taps", [("haar", (8, 4)), ("db2", (16, 8))])
def test_conv_spatial_transform_equals_pywt_wavedec2_over_the_taps(wavelet, taps):
    # Non-square taps and cin != cout: a swap of kh and kw, a transform over one tap axis
    # only, or a mix with the channel axes changes the coefficients.
    inp = keras.Input((20, 20, 3))
    m = keras.Model(inp, keras.layers.Conv2D(5, taps, name="c")(inp))
    (p,) = plan_model(m, wavelet, min_kernel_size=1)
    assert p.view == "conv_spatial" and p.transform_axes == (0, 1) and p.level >= 1
    k = np.random.default_rng(4).standard_normal(taps + (3, 5)).astype(np.float32)
    flat = np.asarray(KernelTransform(p).forward(k))
    ref = pywt.wavedec2(k.astype(np.float64), wavelet, mode="periodization", level=p.level,
                        axes=(0, 1))
    expect = np.concatenate([ref[0].ravel()] + [d.ravel() for lvl in ref[1:] for d in lvl])
    np.testing.assert_allclose(flat, expect, atol=2e-5)
    np.testing.assert_allclose(np.asarray(KernelTransform(p).inverse(flat)), k, atol=2e-5)


def test_conv_kernel_dct_equals_scipy_dctn_over_the_taps():
    inp = keras.Input((12, 12, 2))
    m = keras.Model(inp, keras.layers.Conv2D(4, (5, 3), name="c")(inp))
    (p,) = plan_model(m, "dct", min_kernel_size=1)
    assert p.view == "conv_spatial" and p.transform_axes == (0, 1)
    k = np.random.default_rng(5).standard_normal((5, 3, 2, 4)).astype(np.float32)
    flat = np.asarray(KernelTransform(p).forward(k))
    ref = scipy.fft.dctn(k.astype(np.float64), type=2, norm="ortho", axes=(0, 1))
    np.testing.assert_allclose(flat, ref.ravel(), atol=2e-5)
    np.testing.assert_allclose(np.asarray(KernelTransform(p).inverse(flat)), k, atol=2e-5)


def test_conv_flattened_view_puts_spatial_taps_fastest():
    inp = keras.Input((8, 8, 2))
    m = keras.Model(inp, keras.layers.Conv2D(3, 3, name="c")(inp))
    with pytest.warns(UserWarning):
        (p,) = plan_model(m, "haar", min_kernel_size=1, small_kernel_fallback="flatten")
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


# --------------------------------------------------------------------------- #
# Issue 16: embeddings, layers left dense, override keys, subclassed geometry
# --------------------------------------------------------------------------- #
def _text_model(vocab=200, dim=16):
    inp = keras.Input((12,), dtype="int32")
    x = keras.layers.Embedding(vocab, dim, name="emb")(inp)
    x = keras.layers.GlobalAveragePooling1D(name="gap")(x)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dense(32, name="fc")(x)
    return keras.Model(inp, keras.layers.Dense(3, name="logits")(x))


def test_embeddings_are_compressed_and_dense_layers_listed_with_reasons():
    m = _text_model()
    plans = plan_model(m, "identity")
    by = {p.layer: p for p in plans}
    assert "emb" in by and by["emb"].layer_class == "Embedding"  # 200x16 table
    dense = {d["layer"]: d["reason"] for d in plans.dense_layers}
    assert set(dense) == {"bn", "logits"} and "fc" in by
    assert "96 weights < min_kernel_size=256" in dense["logits"] and "no kernel" in dense["bn"]
    text = bases.format_plan(plans)
    assert "Left dense" in text and "min_kernel_size" in text
    # over the embedding axis of each token, never across tokens
    (p,) = plan_model(m, "haar", layers=["emb"])
    assert p.view == "embedding_axis" and p.x_shape == (16, 200) and p.level >= 1
    t = KernelTransform(p)
    k = np.random.default_rng(0).standard_normal((200, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(t.forward(k)).reshape(-1, 200)[:, 3],
                               np.concatenate(pywt.wavedec(k[3], "haar", mode="periodization",
                                                           level=p.level)), atol=1e-5)
    np.testing.assert_allclose(np.asarray(t.inverse(t.forward(k))), k, atol=1e-5)


def test_embedding_override_is_applied_not_ignored():
    m = _text_model(vocab=10)  # 160 weights: below min_kernel_size, compressed only if named
    plans = {p.layer: p for p in plan_model(m, "haar", layer_overrides={"emb": {"basis": "dct"}})}
    assert plans["emb"].basis == "dct" and plans["emb"].view == "embedding_axis"


def test_embedding_compresses_prunes_and_round_trips_through_the_file(tmp_path):
    from dwt_keras.compression import compress_model, load_compressed, save_compressed

    m = _text_model()
    state = compress_model(m, keep_ratio=0.2, basis="dct", layers=["emb", "fc"], scope="per_layer")
    assert state.kernels["emb"] is m.get_layer("emb").embeddings
    assert np.mean(np.asarray(state.mask_arrays()["emb"])) == pytest.approx(0.2, abs=0.05)
    path = str(tmp_path / "m.dwtc")
    save_compressed(m, path, quantize="none")  # exact values: the round trip is then exact
    back = load_compressed(path)
    np.testing.assert_allclose(back.get_layer("emb").embeddings.numpy(),
                               m.get_layer("emb").embeddings.numpy(), atol=1e-6)


@pytest.mark.parametrize("overrides, match", [
    ({"nope": {"skip": True}}, r"unknown layer.*Received: layer_overrides"),
    ({"gap": {"basis": "dct"}}, r"'gap' \(GlobalAveragePooling1D\) has no kernel.*'emb'"),
    ({"bn": {"skip": True}}, r"'bn' \(BatchNormalization\) has no kernel"),
    ({"fc": {"bases": "dct"}}, r"unknown setting\(s\) \['bases'\]; valid: \['basis'"),
    ({"fc": {"basis": "dct", "level": 2}}, r"'level' applies to wavelet bases.*Received"),
    ({"fc": {"basis": "identity", "mode": "zero"}}, r"'mode' applies to wavelet"),
    ({"fc": {"skip": True, "basis": "dct"}}, r"skip=True takes no other setting"),
    ({"fc": {"basis": "dct", "wavelet": "haar"}}, r"'basis' or 'wavelet', not both"),
    ({"emb": {"geometry": [4, 4]}}, r"geometry applies to a Dense kernel.*Received: geometry"),
    ({"fc": "dct"}, r"must be a dict of settings"),
])
def test_unknown_or_non_applicable_overrides_are_errors(overrides, match):
    with pytest.raises(ValueError, match=match):
        plan_model(_text_model(), "haar", min_kernel_size=1, layer_overrides=overrides)


def test_excluded_and_overridden_is_an_error():
    with pytest.raises(ValueError, match="both in exclude and in layer_overrides"):
        plan_model(_text_model(), "haar", exclude=["fc"], layer_overrides={"fc": {"basis": "dct"}})


class _Subclassed(keras.Model):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(8, 3, padding="same", name="conv")
        self.flat = keras.layers.Flatten()
        self.fc = keras.layers.Dense(16, name="fc")
        self.out = keras.layers.Dense(4, name="out")

    def call(self, x):
        return self.out(self.fc(self.flat(self.conv(x))))


def test_subclassed_dense_after_flatten_warns_and_names_the_override():
    m = _Subclassed()
    m(np.zeros((1, 4, 4, 3), np.float32))
    with pytest.warns(UserWarning, match=r"'fc'.*layer_overrides=\{'fc': \{'geometry': \[H, W, C\]"):
        plans = {p.layer: p for p in plan_model(m, "haar", min_kernel_size=1)}
    assert plans["fc"].view == "input_axis"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no warning once the geometry is given
        fc = {p.layer: p for p in plan_model(m, "haar", min_kernel_size=1, layers=["fc"],
                                             layer_overrides={"fc": {"geometry": [4, 4, 8]}})}
    assert fc["fc"].view == "receptive_field_hw" and fc["fc"].pre_shape == (4, 4, 8, 16)
    # a functional model's Dense is never warned about
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        plan_model(build_model("lenet300", (28, 28, 1), 10), "haar")


def test_one_by_one_convolutions_are_identity_without_a_warning():
    inp = keras.Input((8, 8, 32))
    m = keras.Model(inp, keras.layers.Conv2D(32, 1, name="pw")(inp))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        (p,) = plan_model(m, "db4")
    assert p.basis == "identity" and "1x1" in p.fallback


@keras.saving.register_keras_serializable(package="test_compression_bases")
class _Attention(keras.layers.Layer):
    """Two kernels one level down (as a transformer block's attention)."""

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.qkv = keras.layers.Dense(units, name="qkv")
        self.proj = keras.layers.Dense(units, name="proj")

    def build(self, input_shape):
        self.qkv.build(input_shape)
        self.proj.build((*input_shape[:-1], self.units))

    def call(self, x):
        return self.proj(keras.ops.relu(self.qkv(x)))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package="test_compression_bases")
class _Block(keras.layers.Layer):
    """A block whose sublayer names repeat in every block (attn/qkv, fc)."""

    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.attn = _Attention(units, name="attn")
        self.fc = keras.layers.Dense(units, name="fc")
        self.norm = keras.layers.LayerNormalization(name="norm")

    def build(self, input_shape):
        self.attn.build(input_shape)
        self.fc.build((*input_shape[:-1], self.units))
        self.norm.build((*input_shape[:-1], self.units))

    def call(self, x):
        return self.norm(x + self.fc(self.attn(x)))

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def _blocks_model():
    inputs = keras.Input((32,))
    x = _Block(name="block_0")(inputs)
    x = _Block(name="block_1")(x)
    return keras.Model(inputs, keras.layers.Dense(10, name="out")(x))


def test_kernels_nested_in_custom_layers_are_planned_by_path():
    from dwt_keras.compression import constraints

    model = _blocks_model()
    plan = plan_model(model, "haar", min_kernel_size=64, warn=False)
    nested = ["block_0/attn/qkv", "block_0/attn/proj", "block_0/fc",
              "block_1/attn/qkv", "block_1/attn/proj", "block_1/fc"]
    # the model's own layers first (their stored positions do not move), then the paths
    assert [p.layer for p in plan] == ["out"] + nested
    entry = {d["layer"]: d for d in plan.dense_layers}["block_0"]
    assert "planned by path" in entry["reason"]
    assert entry["n_weights"] == 2 * 32  # the norm's (the nested layers are entries of their own)
    keys = bases.layers_by_key(model)
    assert keys["block_1/attn/qkv"] is model.get_layer("block_1").attn.qkv
    assert keys["block_0/attn/qkv"] is not keys["block_1/attn/qkv"]

    state = constraints.CompressionState.create(model, plan)
    state.prune(0.25)
    kernel = np.asarray(model.get_layer("block_1").attn.qkv.kernel.numpy())
    coeffs = np.asarray(KernelTransform(plan[4]).forward(kernel))
    assert plan[4].layer == "block_1/attn/qkv"
    assert 0 < np.count_nonzero(np.abs(coeffs) > 1e-7) <= int(0.25 * coeffs.size) + 1



def test_a_file_of_nested_kernels_reloads_into_the_right_blocks(tmp_path):
    from dwt_keras.compression import constraints, storage

    model = _blocks_model()
    plan = plan_model(model, "haar", min_kernel_size=64, warn=False)
    constraints.CompressionState.create(model, plan).prune(0.3)
    x = np.random.default_rng(0).normal(size=(8, 32)).astype("float32")
    storage.save_compressed(model, tmp_path / "m.dwtc", quantize=None)
    loaded = storage.load_compressed(tmp_path / "m.dwtc")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)
    for b in ("block_0", "block_1"):  # each block gets its own kernels back, not its twin's
        np.testing.assert_allclose(loaded.get_layer(b).attn.qkv.kernel.numpy(),
                                   model.get_layer(b).attn.qkv.kernel.numpy(), atol=1e-6)
    assert sorted(constraints.get_state(loaded).plans) == sorted(p.layer for p in plan)


def test_a_model_s_own_layers_keep_their_stored_positions(tmp_path):
    # Files written before nested kernels were planned store the position of each compressed
    # layer in the flattened list of the model's own layers; those positions must not move.
    from dwt_keras.compression import constraints, storage

    model = _blocks_model()
    plan = plan_model(model, "haar", layers=["out"], warn=False)
    constraints.CompressionState.create(model, plan).prune(0.3)
    storage.save_compressed(model, tmp_path / "m.dwtc", quantize=None)
    header, _ = storage.read_header((tmp_path / "m.dwtc").read_bytes())
    own = [l.name for l in bases._flatten_layers(model)]
    (entry,) = [e for e in header["weights"] if e["kind"] == "compressed"]
    assert entry["layer_index"] == own.index("out")
    assert [k for k, _ in bases.named_layers(model)][:len(own)] == own


def test_nested_kernels_with_the_same_path_stay_dense_with_a_reason():
    class Twin(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.a = keras.layers.Dense(32, name="inner")
            self.b = keras.layers.Dense(32, name="inner")

        def call(self, x):
            return self.b(self.a(x))

    inputs = keras.Input((64,))
    x = Twin(name="twin")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, name="out")(x))
    with pytest.warns(UserWarning, match="twin"):
        plan = plan_model(model, "haar", min_kernel_size=64)
    assert [p.layer for p in plan] == ["out"]
    entry = {d["layer"]: d for d in plan.dense_layers}["twin"]
    assert "not unique" in entry["reason"] and entry["nested_layers"] == ["twin/inner"]
    # a model's own layers plan without that warning
    flat = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32), keras.layers.Dense(10)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plan_model(flat, "haar", min_kernel_size=64)
