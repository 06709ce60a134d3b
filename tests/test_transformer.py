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
    # Token values are the coefficients (padding aside): compare the A_J subband
    # and the finest diagonal band against PyWavelets.
    n0 = tok.tokens_per_subband[0]
    a_tok = tok._ungroup(tokens[:, :n0], tok.subbands[0][2])
    np.testing.assert_allclose(ops.convert_to_numpy(a_tok), ref[0], atol=1e-4)
    nl = tok.tokens_per_subband[-1]
    d_tok = tok._ungroup(tokens[:, -nl:], tok.subbands[-1][2])
    np.testing.assert_allclose(ops.convert_to_numpy(d_tok), ref[-1][2], atol=1e-4)
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


@pytest.mark.parametrize("cls", ["wmsa", "wmsa_bias_gibbs", "vit"])
def test_keras_round_trip_identical_outputs(cls, tmp_path):
    x = _images((3, 32, 32, 3))
    if cls == "vit":
        m = ViT(patch_size=4, **SMALL)
    elif cls == "wmsa":
        m = WaveletTransformer(n_levels=3, wavelet="db4", patch_size=4, **SMALL)
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
