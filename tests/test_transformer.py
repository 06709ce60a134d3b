"""Tests of the W-MSA transformer components and models (dwt_keras.transformer)."""

import keras
import numpy as np
import pytest
import pywt
from keras import ops

from dwt_keras.transformer import (
    KernelAttention,
    ViT,
    WaveletKernel,
    WaveletTokenizer,
    WaveletTransformer,
)
from dwt_keras.transformer.kernel import N_ORIENTATIONS

SMALL = dict(embed_dim=24, depth=2, num_heads=3, drop_path_rate=0.0)


def _images(shape, seed=0):
    return np.random.default_rng(seed).random(shape).astype("float32")


# --------------------------------------------------------------------------- tokenizer
@pytest.mark.parametrize(
    "size,channels,levels,wavelet,p",
    [((32, 32), 3, 3, "db4", 1), ((32, 32), 3, 3, "db4", 4), ((28, 28), 1, 2, "haar", 4),
     ((24, 40), 2, 3, "sym2", 2)],
)
def test_tokenizer_count_values_and_reconstruction(size, channels, levels, wavelet, p):
    tok = WaveletTokenizer(size, channels, n_levels=levels, wavelet=wavelet, patch_size=p)
    x = _images((2,) + size + (channels,))
    tokens = ops.convert_to_numpy(tok(x))
    assert tokens.shape == (2, tok.num_tokens, p * p * channels)

    # Oracle: PyWavelets, over the spatial axes of the channels-last images.
    ref = pywt.wavedec2(x, wavelet, mode="periodization", level=levels, axes=(1, 2))
    bands = [ref[0]] + [b for det in ref[1:] for b in det]
    n_coef = sum(b[0].size for b in bands)
    assert tok.num_coefficients == n_coef
    if all(s % 2**levels == 0 for s in size):
        # Non-redundant: exactly as many coefficients as pixel values.
        assert n_coef == size[0] * size[1] * channels
    if p == 1:
        assert tokens[0].size == n_coef
    # Token values are the coefficients (padding aside): every subband, in token order
    # (A_J, then H, V, D from the coarsest level to the finest), against PyWavelets.
    starts = np.cumsum([0] + tok.tokens_per_subband)
    assert len(tok.subbands) == len(bands)
    for s, ((_, _, shape), band) in enumerate(zip(tok.subbands, bands)):
        assert shape == band.shape[1:3]
        got = tok._ungroup(tokens[:, starts[s]:starts[s + 1]], shape)
        np.testing.assert_allclose(ops.convert_to_numpy(got), band, atol=1e-4, err_msg=f"band {s}")
    # Zero padding only (no coefficient is duplicated or lost).
    np.testing.assert_allclose(np.sum(tokens**2), sum(np.sum(b**2) for b in bands), rtol=1e-4)

    back = ops.convert_to_numpy(tok.detokenize(tok(x)))
    assert back.shape == x.shape
    np.testing.assert_allclose(back, x, atol=2e-5)


def test_tokenizer_metadata_positions_are_image_normalised():
    tok = WaveletTokenizer((32, 32), 3, n_levels=3, wavelet="haar", patch_size=1)
    meta = tok.token_metadata()
    n = tok.num_tokens
    assert n == 1024 and meta["position"].shape == (n, 2)
    # 4x4 approximation (level 3, orientation A) then H, V, D of levels 3, 2, 1.
    assert list(meta["level"][:64]) == [3] * 64
    assert list(meta["orientation"][:16]) == [0] * 16 and set(meta["orientation"][16:]) == {1, 2, 3}
    assert np.sum(meta["level"] == 1) == 3 * 256
    # p = (i + 1/2) * 2^j / H: first A_3 coefficient at (0.5 * 8 / 32) = 0.125.
    np.testing.assert_allclose(meta["position"][0], [0.125, 0.125])
    np.testing.assert_allclose(meta["position"][3], [0.125, 0.875])
    # Every subband covers the image symmetrically: mean position 0.5 at each scale.
    for s in np.unique(meta["subband"]):
        np.testing.assert_allclose(meta["position"][meta["subband"] == s].mean(0), [0.5, 0.5])
    grouped = WaveletTokenizer((32, 32), 3, n_levels=3, wavelet="db4", patch_size=4)
    assert grouped.num_tokens == 64 and grouped.token_dim == 48


@pytest.mark.parametrize("size,levels,p", [((24, 40), 3, 1), ((24, 40), 2, 2), ((40, 24), 2, 3)])
def test_token_positions_on_non_square_images_follow_the_formula(size, levels, p):
    # Row r and column c of a level-j subband sit at ((r + 1/2) 2^j / H, (c + 1/2) 2^j / W); a
    # patch token sits at the mean of its real (un-padded) coefficients' positions.
    H, W = size
    tok = WaveletTokenizer(size, 1, n_levels=levels, wavelet="haar", patch_size=p)
    meta = tok.token_metadata()
    expected = []
    for j, _, (h, w) in tok.subbands:
        assert (h, w) == (H // 2**j, W // 2**j)
        for a in range(-(-h // p)):
            for b in range(-(-w // p)):
                rows = np.arange(a * p, min((a + 1) * p, h))
                cols = np.arange(b * p, min((b + 1) * p, w))
                expected.append([np.mean((rows + 0.5) * 2**j / H),
                                 np.mean((cols + 0.5) * 2**j / W)])
    np.testing.assert_allclose(meta["position"], np.array(expected), atol=1e-6)
    # Both coordinates span the same normalised range although H != W.
    for s in np.unique(meta["subband"]):
        if p == 1:
            np.testing.assert_allclose(meta["position"][meta["subband"] == s].mean(0), [0.5, 0.5],
                                       atol=1e-6)


def test_levels_past_dwt_max_level_warn_as_wavedec2_does():
    import warnings

    # db4 (8 taps) on 28x28: dwt_max_level = floor(log2(28 / 7)) = 2, as in PyWavelets.
    assert pywt.dwt_max_level(28, pywt.Wavelet("db4").dec_len) == 2
    with pytest.warns(UserWarning, match=r"Level value of 3 is too high.*dwt_max_level=2"):
        WaveletTransformer(image_size=(28, 28), in_channels=1, num_classes=10, n_levels=3,
                           wavelet="db4", patch_size=1, **SMALL)
    with pytest.warns(UserWarning, match="dwt_max_level=2"):
        WaveletTokenizer((28, 28), 1, n_levels=3, wavelet="db4")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a level within dwt_max_level: no warning
        WaveletTransformer(image_size=(28, 28), in_channels=1, num_classes=10, n_levels=2,
                           wavelet="db4", patch_size=1, **SMALL)
        WaveletTokenizer((32, 32), 3, n_levels=5, wavelet="haar")


# --------------------------------------------------------------------------- kernel
def _token_set():
    meta = WaveletTokenizer((32, 32), 1, n_levels=3, wavelet="haar", patch_size=2).token_metadata()
    return meta["level"], meta["orientation"], meta["position"]


@pytest.mark.parametrize("spatial", ["rbf", "gibbs"])
def test_kernel_strictly_positive_and_psd(spatial):
    level, orient, pos = _token_set()
    kern = WaveletKernel(num_heads=3, n_levels=3, spatial_kernel=spatial)
    kern.build()
    rng = np.random.default_rng(0)
    for trial in range(3):
        if trial:  # random parameters (bandwidths ~0.2..1.7, rho ~0.2..0.8)
            for w in kern.weights:
                w.assign(rng.uniform(-1.5, 1.5, w.shape).astype("float32"))
        K = ops.convert_to_numpy(kern.kernel_matrix(level, orient, pos, dtype="float64"))
        assert K.shape == (3, len(level), len(level))
        assert np.all(K > 0)
        np.testing.assert_allclose(K, np.transpose(K, (0, 2, 1)), atol=1e-12)
        for h in range(3):
            assert np.linalg.eigvalsh(K[h]).min() >= -1e-6 * max(1.0, K[h].max())
    # Extreme parameters: K may underflow in floating point, but the log-kernel that
    # attention actually adds stays finite (K > 0 in exact arithmetic), and rho stays
    # strictly inside (0, 1).
    for w in kern.weights:
        w.assign(rng.normal(0.0, 8.0, w.shape).astype("float32"))
    logk = ops.convert_to_numpy(kern.log_kernel(level, orient, pos))
    assert np.all(np.isfinite(logk))
    rho = ops.convert_to_numpy(kern.rhos())
    assert np.all((rho > 0) & (rho < 1))


SOFTPLUS_FLOOR = 1e-3  # the kernel's bandwidths are softplus(raw) + 1e-3 (never 0)


@pytest.mark.parametrize("spatial", ["rbf", "gibbs"])
def test_kernel_entries_equal_the_hand_computed_formula(spatial):
    # Three tokens (level, orientation, position); every factor differs between them.
    level = np.array([1, 2, 3])
    orient = np.array([1, 1, 3])
    pos = np.array([[0.25, 0.75], [0.5, 0.5], [0.125, 0.375]])
    s, rho = 0.8, 0.3
    bandwidths = [0.4, 0.15]  # one per head
    kern = WaveletKernel(num_heads=2, n_levels=3, spatial_kernel=spatial, scale_bandwidth=s,
                         spatial_bandwidths=bandwidths, rho=rho)
    kern.build()
    if spatial == "gibbs":  # a bandwidth per head and level: set distinct values by hand
        per_level = np.array([[0.3, 0.5, 0.2], [0.1, 0.25, 0.4]])
        kern.spatial_raw.assign(np.log(np.expm1(per_level - SOFTPLUS_FLOOR)).astype("float32"))
    logk = ops.convert_to_numpy(kern.log_kernel(level, orient, pos, dtype="float64"))
    s = s + SOFTPLUS_FLOOR
    for h in range(2):
        for a in range(3):
            for b in range(3):
                k_scale = np.exp(-(level[a] - level[b]) ** 2 / (2 * s**2))
                k_orient = 1.0 if orient[a] == orient[b] else rho
                d2 = np.sum((pos[a] - pos[b]) ** 2)
                if spatial == "rbf":
                    ell = bandwidths[h] + SOFTPLUS_FLOOR
                    k_space = np.exp(-d2 / (2 * ell**2))
                else:  # Gibbs: (2 l l' / (l^2 + l'^2)) exp(-|p - p'|^2 / (l^2 + l'^2))
                    la, lb = per_level[h, level[a] - 1], per_level[h, level[b] - 1]
                    k_space = 2 * la * lb / (la**2 + lb**2) * np.exp(-d2 / (la**2 + lb**2))
                expected = np.log(k_scale * k_orient * k_space)
                # log K is of order 1-10 here: an absolute tolerance is meaningful
                np.testing.assert_allclose(logk[h, a, b], expected, atol=1e-4,
                                           err_msg=f"{spatial} head {h} tokens {a},{b}")
    np.testing.assert_allclose(ops.convert_to_numpy(kern.rhos()), rho, atol=1e-6)


def test_orientation_factor_is_the_rho_gram_matrix():
    kern = WaveletKernel(num_heads=2, n_levels=1, rho=0.3)
    kern.build()
    orient = np.arange(N_ORIENTATIONS)
    same = np.zeros((4, 2))  # same level and position: only k_orient differs from 1
    K = ops.convert_to_numpy(kern.kernel_matrix(np.ones(4), orient, same, dtype="float64"))
    expected = 0.7 * np.eye(4) + 0.3  # (1 - rho) I + rho 11^T
    np.testing.assert_allclose(K[0], expected, rtol=1e-4)


def test_folded_kernel_equals_log_kernel_up_to_row_constant():
    level, orient, pos = _token_set()
    kern = WaveletKernel(num_heads=3, n_levels=3)
    kern.build()
    qe, ke = kern.fold_features(level, orient, pos, dtype="float64")
    folded = np.einsum("hne,hme->hnm", ops.convert_to_numpy(qe), ops.convert_to_numpy(ke))
    explicit = ops.convert_to_numpy(kern.log_kernel(level, orient, pos, dtype="float64"))
    diff = folded - explicit
    # The difference must not depend on the key (softmax over keys cancels it) ...
    np.testing.assert_allclose(diff - diff[:, :, :1], 0.0, atol=1e-9)
    # ... and is not trivially zero because the terms are non-trivial.
    assert np.ptp(explicit) > 1.0


def test_attention_fold_equals_bias_and_is_additive_log_bias():
    level, orient, pos = _token_set()
    meta = {
        "level": ops.convert_to_tensor(level),
        "orientation": ops.convert_to_tensor(orient),
        "position": ops.convert_to_tensor(pos),
    }
    x = _images((2, len(level), 24))
    fold = KernelAttention(24, 3, use_kernel=True, kernel_mode="fold", n_levels=3)
    bias = KernelAttention(24, 3, use_kernel=True, kernel_mode="bias", n_levels=3)
    y_fold = fold(x, token_meta=meta)
    bias(x, token_meta=meta)
    bias.set_weights(fold.get_weights())
    y_bias = bias(x, token_meta=meta)
    y_expl, probs = fold(x, token_meta=meta, return_attention_scores=True)
    np.testing.assert_allclose(ops.convert_to_numpy(y_fold), ops.convert_to_numpy(y_bias), atol=1e-5)
    np.testing.assert_allclose(ops.convert_to_numpy(y_fold), ops.convert_to_numpy(y_expl), atol=1e-5)

    # softmax(s + log K) == K * exp(s), renormalised (NOT s * K).
    qkv = ops.convert_to_numpy(fold.qkv(x)).reshape(2, len(level), 3, 3, 8)
    q, k = qkv[:, :, 0], qkv[:, :, 1]
    s = np.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(8)
    K = ops.convert_to_numpy(fold.kernel.kernel_matrix(level, orient, pos, dtype="float64"))
    w = K[None] * np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(ops.convert_to_numpy(probs), w / w.sum(-1, keepdims=True), atol=1e-5)


# --------------------------------------------------------------------------- models
@pytest.mark.parametrize("shape", [(32, 32, 3), (28, 28, 1), (24, 40, 3)])
def test_model_shapes(shape):
    x = _images((2,) + shape)
    levels = 2 if shape[0] == 28 else 3
    m = WaveletTransformer(image_size=shape[:2], in_channels=shape[2], num_classes=7,
                           n_levels=levels, wavelet="db4", patch_size=4, **SMALL)
    assert tuple(m(x).shape) == (2, 7)
    feats = m.forward_features(x)
    n = m.num_tokens
    assert tuple(feats["tokens"].shape) == (2, n, 24)
    assert feats["level"].shape == (n,) and feats["position"].shape == (n, 2)
    v = ViT(image_size=shape[:2], in_channels=shape[2], num_classes=7, patch_size=4, **SMALL)
    assert tuple(v(x).shape) == (2, 7)


def test_model_sizes_and_default_signature():
    m = WaveletTransformer(image_size=(32, 32), in_channels=3, num_classes=10, embed_dim=192,
                           depth=6, num_heads=3, n_levels=3, wavelet="db4", use_kernel=True)
    assert (m.embed_dim, m.depth, m.num_heads, m.num_tokens) == (192, 6, 3, 64)
    tiny = WaveletTransformer(model_size="tiny")
    assert (tiny.embed_dim, tiny.depth, tiny.num_heads) == (96, 4, 3)
    assert (ViT(model_size="base").embed_dim, ViT(model_size="base").depth) == (384, 12)


@pytest.mark.parametrize(
    "cls", ["wmsa", "wmsa_bias_gibbs", "vit", "wmsa_layernorm_klr", "wmsa_subband_rms"]
)
def test_keras_round_trip_identical_outputs(cls, tmp_path):
    x = _images((3, 32, 32, 3))
    if cls == "vit":
        m = ViT(patch_size=4, **SMALL)
    elif cls == "wmsa":
        m = WaveletTransformer(n_levels=3, wavelet="db4", patch_size=4, **SMALL)
    elif cls == "wmsa_layernorm_klr":
        m = WaveletTransformer(n_levels=3, wavelet="db4", patch_size=4, token_norm="layernorm",
                               kernel_lr_multiplier=10.0, **SMALL)
    elif cls == "wmsa_subband_rms":
        m = WaveletTransformer(n_levels=2, wavelet="haar", patch_size=4,
                               token_norm="subband_rms", **SMALL)
    else:
        m = WaveletTransformer(n_levels=2, wavelet="haar", patch_size=2, kernel_mode="bias",
                               spatial_kernel="gibbs", **SMALL)
    y = ops.convert_to_numpy(m(x))
    path = tmp_path / "model.keras"
    m.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(m)
    np.testing.assert_array_equal(ops.convert_to_numpy(loaded(x)), y)
    assert loaded.get_config() == m.get_config()


def test_models_saved_before_token_norm_existed_load_as_before():
    m = WaveletTransformer(n_levels=2, wavelet="haar", patch_size=4, **SMALL)
    config = m.get_config()
    for key in ("token_norm", "kernel_lr_multiplier"):
        config.pop(key)
    config["kernel_kwargs"] = {}
    old = WaveletTransformer.from_config(config)
    assert old.token_norm == "none" and old.kernel_lr_multiplier == 1.0
    assert old.blocks[0].attn.kernel.lr_multiplier == 1.0


def _content_rms_per_subband(model, x):
    """RMS of the embedded (and normalised) token content, per subband, before positions."""
    tokens = model.tokenizer(x)
    if model.token_norm == "subband_rms":
        tokens = model.token_normalization(tokens)
    emb = model.token_embedding(tokens)
    if model.token_norm == "layernorm":
        emb = model.token_normalization(emb)
    emb = ops.convert_to_numpy(emb)
    sub = model.token_metadata()["subband"]
    return np.array([np.sqrt(np.mean(emb[:, sub == s] ** 2)) for s in np.unique(sub)])


def test_token_norm_equalises_subband_scales_at_init():
    # Smooth images (a blurred random field) have the natural-image energy decay
    # across levels that makes the raw subbands differ in scale by orders of magnitude.
    rng = np.random.default_rng(0)
    x = rng.random((4, 32, 32, 3)).astype("float32")
    for _ in range(3):
        x = 0.25 * (np.roll(x, 1, 1) + np.roll(x, -1, 1) + np.roll(x, 1, 2) + np.roll(x, -1, 2))
    rms = {}
    for norm in ("none", "layernorm", "subband_rms"):
        keras.utils.set_random_seed(0)
        m = WaveletTransformer(n_levels=3, wavelet="db4", patch_size=4, token_norm=norm, **SMALL)
        m.build((None, 32, 32, 3))
        rms[norm] = _content_rms_per_subband(m, x)
    assert rms["none"].max() / rms["none"].min() > 100
    # LayerNorm: every token has unit RMS over its width.
    np.testing.assert_allclose(rms["layernorm"], 1.0, rtol=2e-2)
    # Subband RMS: coefficients at unit scale, so subbands differ only through their
    # (equal-variance glorot) embeddings.
    assert rms["subband_rms"].max() / rms["subband_rms"].min() < 3
    m = WaveletTransformer(n_levels=3, wavelet="db4", patch_size=4, token_norm="subband_rms",
                           **SMALL)
    raw = ops.convert_to_numpy(m.tokenizer(x))
    normed = ops.convert_to_numpy(m.token_normalization(m.tokenizer(x)))
    sub = m.token_metadata()["subband"]
    for s in np.unique(sub):
        band = normed[:, sub == s]
        ms = np.mean(raw[:, sub == s].astype("float64") ** 2, axis=(1, 2))
        expected = np.sqrt(ms / (ms + m.token_normalization.epsilon))  # 1 up to epsilon
        np.testing.assert_allclose(np.sqrt(np.mean(band**2, axis=(1, 2))), expected, rtol=1e-4)
        assert np.all(expected > 0.99)
        # One positive factor per image and subband: relative sizes inside it are kept.
        ratio = band / raw[:, sub == s]
        assert np.allclose(ratio, ratio[:, :1, :1], rtol=1e-4)


@pytest.mark.slow
def test_kernel_lr_multiplier_same_kernel_and_faster_learning():
    x = _images((8, 32, 32, 3))
    y = np.arange(8) % 3
    moved, kernels = {}, {}
    for mult in (1.0, 10.0):
        keras.utils.set_random_seed(0)
        m = WaveletTransformer(num_classes=3, n_levels=2, wavelet="haar", patch_size=4,
                               kernel_lr_multiplier=mult, **SMALL)
        m.build((None, 32, 32, 3))
        kern = m.blocks[0].attn.kernel
        meta = m.token_metadata()
        kernels[mult] = ops.convert_to_numpy(
            kern.log_kernel(meta["level"], meta["orientation"], meta["position"]))

        def params():
            return np.concatenate([ops.convert_to_numpy(v).ravel() for v in (
                kern.spatial_bandwidth_values(), kern.scale_bandwidths(), kern.rhos())])

        before = params()
        m.compile(optimizer=keras.optimizers.Adam(1e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        for _ in range(3):
            m.train_on_batch(x, y)
        moved[mult] = np.abs(params() - before)
    # Same function at initialisation (log K: entries of order 1-100, so an absolute
    # tolerance; K itself goes down to ~1e-17, where only a relative one would mean anything)...
    np.testing.assert_allclose(kernels[10.0], kernels[1.0], atol=1e-4)
    # ...but an Adam step moves the raw parameters ~lr in stored units, i.e. 10x
    # further in the units the kernel uses.
    assert np.all(moved[10.0] > 0)
    assert 5.0 < np.median(moved[10.0] / np.maximum(moved[1.0], 1e-12)) < 15.0


@pytest.mark.slow
def test_training_steps_lower_the_loss():
    x = _images((16, 32, 32, 3))
    y = np.arange(16) % 4
    m = WaveletTransformer(num_classes=4, n_levels=2, wavelet="haar", patch_size=4, **SMALL)
    m.compile(optimizer=keras.optimizers.Adam(3e-3),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    first = float(m.train_on_batch(x, y))
    for _ in range(25):
        last = float(m.train_on_batch(x, y))
    assert last < 0.5 * first


def test_kernel_parameters_receive_gradients():
    import tensorflow as tf

    x = _images((4, 32, 32, 3))
    m = WaveletTransformer(num_classes=3, n_levels=2, wavelet="haar", patch_size=4, **SMALL)
    m(x)
    kern = m.blocks[0].attn.kernel
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(m(x)))
    grads = tape.gradient(loss, [kern.scale_raw, kern.rho_logit, kern.spatial_raw])
    assert all(g is not None and np.any(np.asarray(g) != 0) for g in grads)


@pytest.mark.slow
def test_mixed_precision_forward_and_step():
    x = _images((4, 32, 32, 3))
    y = np.arange(4) % 3
    small = dict(SMALL, depth=1)
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        m = WaveletTransformer(num_classes=3, n_levels=3, wavelet="db4", patch_size=4, **small)
        out = m(x)
        assert out.dtype == "float32"
        m.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        loss = float(m.train_on_batch(x, y))
        assert np.isfinite(loss)
        weights = m.get_weights()
    finally:
        keras.mixed_precision.set_global_policy("float32")
    ref = WaveletTransformer(num_classes=3, n_levels=3, wavelet="db4", patch_size=4, **small)
    ref(x)
    ref.set_weights(weights)
    m_out = ops.convert_to_numpy(m(x))
    np.testing.assert_allclose(m_out, ops.convert_to_numpy(ref(x)), atol=0.15)


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(n_levels=6), "too deep"),
        (dict(embed_dim=96, num_heads=5), "does not divide"),
        (dict(wavelet="db99"), "db99"),
        (dict(model_size="huge"), "tiny"),
        (dict(kernel_mode="dense"), "fold"),
        (dict(kernel_mode="fold", spatial_kernel="gibbs"), "gibbs"),
        (dict(patch_size=0), "patch_size"),
        (dict(token_norm="batchnorm"), "layernorm"),
        (dict(kernel_lr_multiplier=0.0), "kernel_lr_multiplier"),
        (dict(kernel_lr_multiplier=2.0, kernel_kwargs={"lr_multiplier": 3.0}), "disagree"),
    ],
)
def test_bad_settings_raise_clear_errors(kwargs, match):
    base = dict(image_size=(32, 32), in_channels=3, num_classes=10, embed_dim=24, depth=1,
                num_heads=3)
    base.update(kwargs)
    with pytest.raises(ValueError, match=match):
        WaveletTransformer(**base)


def test_vit_and_input_errors():
    with pytest.raises(ValueError, match="valid patch sizes"):
        ViT(image_size=(30, 30), patch_size=4, **SMALL)
    m = WaveletTransformer(n_levels=2, wavelet="haar", **SMALL)
    with pytest.raises(ValueError, match="expects images of shape"):
        m(_images((1, 28, 28, 1)))


# --------------------------------------------------------------------------- analysis
def test_analytic_flops_match_the_weights_and_the_filter_bank():
    from dwt_keras.transformer.analysis import count_flops, dwt_flops

    for m in (WaveletTransformer(n_levels=3, wavelet="db4", patch_size=4, **SMALL),
              ViT(patch_size=4, **SMALL)):
        m.build((None, 32, 32, 3))
        f = count_flops(m)
        n = m.num_tokens
        # Every token goes once through every Dense kernel of the blocks: 2 * N * size.
        dense = sum(int(np.prod(w.shape)) for b in m.blocks
                    for w in (b.attn.qkv.kernel, b.attn.proj.kernel, b.fc1.kernel, b.fc2.kernel))
        pb = f["per_block"]
        assert m.depth * (pb["qkv"] + pb["proj"] + pb["mlp"]) == 2 * n * dense
        emb = m.token_embedding.kernel
        assert f["embedding"] == 2 * n * int(np.prod(emb.shape[1:]))
    # db4 (8 taps), one level of 32x32x1 with periodization: rows then columns,
    # 32*32 outputs per pass, 8 multiply-adds each.
    assert dwt_flops((32, 32), 1, 1, "db4", "periodization") == 2 * (2 * 8 * 32 * 32)


def test_collect_runs_reads_model_only_settings_from_the_saved_model(tmp_path):
    import json
    import zipfile

    from dwt_keras.transformer.analysis import collect_runs

    def run(folder, model, seed, acc, saved_config=None):
        d = tmp_path / folder / f"{model}-s{seed}"
        d.mkdir(parents=True)
        cfg = dict(model=model, model_size="tiny", dataset="cifar10_subset", epochs=10,
                   seed=seed, use_kernel=True, wavelet="db4", n_levels=3, patch_size=4)
        (d / "report.json").write_text(json.dumps(
            {"config": cfg, "test": {"accuracy": acc, "f1_macro": acc}, "params": 1}))
        if saved_config is not None:
            cls = "WaveletTransformer" if model == "wmsa" else "ViT"
            with zipfile.ZipFile(d / "best.keras", "w") as z:
                z.writestr("config.json", json.dumps({"class_name": cls, "config": saved_config}))

    # Saved before token_norm existed (no key) vs with the current default.
    run("old", "wmsa", 0, 0.30, saved_config={"n_levels": 3})
    run("old", "wmsa", 1, 0.32, saved_config={"n_levels": 3})
    run("new", "wmsa", 0, 0.40, saved_config=WaveletTransformer(**SMALL).get_config())
    run("old", "vit", 0, 0.35, saved_config={})
    # Without a kernel, the kernel's learning-rate setting does not define a variant.
    run("new", "wmsa_nk", 0, 0.38, saved_config={"token_norm": "layernorm",
                                                 "kernel_lr_multiplier": 1.0})
    nk = tmp_path / "new" / "wmsa_nk-s0" / "report.json"
    rep = json.loads(nk.read_text())
    rep["config"].update(model="wmsa", use_kernel=False)
    nk.write_text(json.dumps(rep))
    rows = {r["variant"]: r for r in collect_runs([tmp_path / "old", tmp_path / "new"])}
    assert set(rows) == {"wmsa", "wmsa_previous", "vit", "wmsa_nokernel"}
    assert rows["wmsa_previous"]["seeds"] == [0, 1]
    np.testing.assert_allclose(rows["wmsa_previous"]["test_accuracy_mean"], 0.31)
    np.testing.assert_allclose(rows["wmsa_previous"]["test_accuracy_std"],
                               np.std([0.3, 0.32], ddof=1))
    assert rows["wmsa"]["seeds"] == [0] and rows["wmsa"]["test_accuracy_std"] is None
    # One folder given as a plain path still works.
    assert {r["variant"] for r in collect_runs(tmp_path / "new")} == {"wmsa", "wmsa_nokernel"}
