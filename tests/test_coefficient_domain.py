"""The coefficient form computes the masked dense model's function, trains, saves and converts."""

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf

from dwt_keras.compression import (GradualCompression, compress_model, get_state,
                                   load_compressed, save_compressed)
from dwt_keras.compression import coefficient_domain as cd
from dwt_keras.compression import deployment
from dwt_keras.experiments.registry import build_model

BASES = ["haar", "db2", "bior2.2", "dct", "identity"]


def _functional(seed=0):
    """Flatten of an (8, 8, 2) map -> 16 -> 8 -> 4: a receptive-field view and 1-D views."""
    keras.utils.set_random_seed(seed)
    return build_model("mlp", (8, 8, 2), 4, widths=(16, 8), activation="tanh")


def _x(n=6, shape=(8, 8, 2), seed=1):
    return np.random.default_rng(seed).standard_normal((n,) + shape).astype(np.float32)


def _compressed(basis="haar", keep=0.3, seed=0, model=None):
    m = model if model is not None else _functional(seed)
    compress_model(m, keep_ratio=keep, basis=basis, min_kernel_size=1)
    return m


def _coefficient_layers(model):
    return [l for l in model.layers if isinstance(l, cd.WaveletDomainDense)]


@pytest.mark.parametrize("basis", BASES)
def test_same_outputs_as_the_masked_dense_model(basis):
    m = _compressed(basis)
    c = cd.to_coefficient_domain(m)
    assert [r["form"] for r in cd.coefficient_domain_record(c)] == ["coefficient"] * 3
    views = [l.plan.view for l in _coefficient_layers(c)]
    expected = {"haar": ["receptive_field_hw", "input_axis", "input_axis"],
                # 6-tap filters allow no level on 8x8: the DCT fallback over the 8x8 receptive
                # field (never a transform across the 2 channels), and over the 8 inputs
                "bior2.2": ["receptive_field_hw", "input_axis", "input_axis"]}
    if basis in expected:
        assert views == expected[basis]
    x = _x()
    np.testing.assert_allclose(c(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-5)


def test_block_form_is_used_for_haar_and_matches_the_generic_form():
    m = _compressed("haar")
    c = cd.to_coefficient_domain(m)
    fc1 = c.get_layer("fc1")
    assert fc1.plan.level == 3  # 3 levels over 8x8: one 8x8 block per channel
    assert fc1.transform.block_matrix.shape == (64, 64)
    generic = cd.InputTransform(fc1.plan, block=False)
    x = _x(3).reshape(3, -1)
    z_block, z_generic = fc1.transform(x).numpy(), generic(x).numpy()
    np.testing.assert_allclose(z_block[:, fc1.transform.z_index], z_generic, atol=1e-5)


@pytest.mark.parametrize("product", ["gather", "rows", "dense"])
def test_every_product_computes_the_same_function(product):
    m = _compressed("db2", keep=0.2)
    c = cd.to_coefficient_domain(m, product=product)
    assert {l.resolved_product for l in _coefficient_layers(c)} == {product}
    x = _x()
    np.testing.assert_allclose(c(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("basis", ["haar", "bior2.2", "dct"])
def test_gradients_equal_those_of_the_masked_dense_model(basis):
    m = _compressed(basis, keep=0.25)
    state = get_state(m)
    c = cd.to_coefficient_domain(m)
    x = tf.constant(_x(5))
    y = tf.constant([0, 1, 2, 3, 1])
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        dense_loss = loss(y, m(x))
        coeff_loss = loss(y, c(x))
    np.testing.assert_allclose(tape.gradient(coeff_loss, x).numpy(),
                               tape.gradient(dense_loss, x).numpy(), rtol=1e-4, atol=1e-6)
    for layer in _coefficient_layers(c):
        name = layer.name
        dense_layer = m.get_layer(name)
        grad_w = tape.gradient(dense_loss, dense_layer.kernel)
        # dL/dc = S^T dL/dW: the adjoint of the synthesis, by autodiff through the inverse
        transform = state.transforms[name]
        probe = tf.zeros(layer.plan.n_coefficients)
        with tf.GradientTape() as t2:
            t2.watch(probe)
            inner = tf.reduce_sum(transform.inverse(probe) * grad_w)
        grad_c = t2.gradient(inner, probe).numpy()
        mask, _ = layer.coefficient_mask_and_values()
        positions = np.flatnonzero(mask)
        got_mask, got = cd.unpack_coefficients(tape.gradient(coeff_loss, layer.values).numpy(),
                                               layer.positions.numpy(), layer.rows.numpy(),
                                               layer.units, layer.plan.n_coefficients)
        assert np.array_equal(got_mask, mask)
        np.testing.assert_allclose(got[positions], grad_c[positions], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(tape.gradient(coeff_loss, layer.bias).numpy(),
                                   tape.gradient(dense_loss, dense_layer.bias).numpy(),
                                   rtol=1e-4, atol=1e-6)


def test_one_sgd_step_equals_a_projected_dense_step_for_an_orthogonal_basis():
    x, y = _x(16), np.arange(16) % 4
    m = _compressed("haar", keep=0.3)
    c = cd.to_coefficient_domain(m)
    for model in (m, c):
        model.compile(keras.optimizers.SGD(0.1),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.train_on_batch(x, y)
    np.testing.assert_allclose(c(x).numpy(), m(x).numpy(), rtol=1e-4, atol=1e-5)
    back = cd.to_dense(c)
    for name in ("fc1", "fc2", "logits"):
        np.testing.assert_allclose(back.get_layer(name).kernel.numpy(),
                                   m.get_layer(name).kernel.numpy(), atol=1e-5)


def test_keras_file_round_trip(tmp_path):
    m = _compressed("bior2.2")
    c = cd.to_coefficient_domain(m, product="gather")
    path = tmp_path / "coefficient.keras"
    c.save(path)
    loaded = keras.models.load_model(path)
    x = _x()
    np.testing.assert_array_equal(loaded(x).numpy(), c(x).numpy())
    for a, b in zip(_coefficient_layers(loaded), _coefficient_layers(c)):
        assert a.get_config() == b.get_config()
        assert a.resolved_product == "gather"
        for wa, wb in zip(a.weights, b.weights):
            assert wa.dtype == wb.dtype
            np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    assert [r["layer"] for r in cd.coefficient_domain_record(loaded)] == ["fc1", "fc2", "logits"]


def test_to_dense_restores_kernels_masks_and_state():
    m = _compressed("db2")
    masks = get_state(m).mask_arrays()
    back = cd.to_dense(cd.to_coefficient_domain(m))
    state = get_state(back)
    assert state is not None and set(state.plans) == set(masks)
    for name, mask in masks.items():
        assert np.array_equal(state.mask_arrays()[name], mask)
        assert type(back.get_layer(name)) is keras.layers.Dense
    assert state.max_hold_error()["projection_error"] < 1e-5
    x = _x()
    np.testing.assert_allclose(back(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-6)


def test_sequential_model_and_only_kept_coefficients_are_held():
    keras.utils.set_random_seed(0)
    m = keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                          keras.layers.Dense(3)])
    compress_model(m, keep_ratio=0.1, basis="haar", min_kernel_size=1)
    c = cd.to_coefficient_domain(m)
    assert isinstance(c, keras.Sequential)
    kept = sum(int(m_.sum()) for m_ in get_state(m).mask_arrays().values())
    values = sum(int(l.values.shape[0]) for l in _coefficient_layers(c))
    assert values == kept
    # values float32 + positions int32 + rows int32 + biases: far below the dense kernels
    assert deployment.weight_bytes(c) < 0.35 * 4 * (64 * 32 + 32 * 3)
    x = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    np.testing.assert_allclose(c(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-6)


def test_unsupported_views_stay_masked_dense_with_their_mask_held():
    keras.utils.set_random_seed(0)
    inp = keras.Input((12, 12, 1))
    h = keras.layers.Conv2D(4, 4, name="conv")(inp)  # 4x4 kernel: spatial view
    h = keras.layers.Flatten()(h)
    out = keras.layers.Dense(5, name="head")(h)
    m = keras.Model(inp, out)
    compress_model(m, keep_ratio=0.3, basis="haar", min_kernel_size=1)
    c = cd.to_coefficient_domain(m)
    record = {r["layer"]: r for r in cd.coefficient_domain_record(c)}
    assert record["conv"]["form"] == "masked_dense" and "Conv2D" in record["conv"]["reason"]
    assert record["head"]["form"] == "coefficient"
    sub = get_state(c)
    assert sub is not None and list(sub.plans) == ["conv"] and sub.installed
    x = np.random.default_rng(0).random((4, 12, 12, 1), dtype=np.float32)
    np.testing.assert_allclose(c(x).numpy(), m(x).numpy(), rtol=1e-5, atol=1e-5)
    c.compile(keras.optimizers.Adam(1e-2), "mse")
    c.fit(x, np.zeros((4, 5), np.float32), epochs=2, verbose=0)
    assert sub.max_hold_error()["projection_error"] < 1e-5


def test_redundant_mode_is_refused_before_any_coefficient_form():
    # a redundant extension mode has more coefficients than weights and no idempotent mask,
    # so the planner refuses it, naming the exact mode, instead of serving a drifting form
    with pytest.raises(ValueError, match=r"mode='periodization'.*Received: mode='symmetric'"):
        compress_model(_functional(), keep_ratio=0.3, basis="db2", mode="symmetric",
                       min_kernel_size=1)


def test_clear_errors():
    with pytest.raises(ValueError, match="no CompressionState"):
        cd.to_coefficient_domain(_functional())

    class Sub(keras.Model):
        def __init__(self):
            super().__init__()
            self.d = keras.layers.Dense(4)

        def call(self, x):
            return self.d(x)

    sub = Sub()
    sub(np.zeros((1, 64), np.float32))
    compress_model(sub, keep_ratio=0.5, basis="identity", min_kernel_size=1)
    with pytest.raises(ValueError, match="subclassed"):
        cd.to_coefficient_domain(sub)
    with pytest.raises(ValueError, match="product"):
        cd.to_coefficient_domain(_compressed(), product="csr")
    plan = get_state(_compressed()).plans["fc1"]
    with pytest.raises(ValueError, match="units"):
        cd.WaveletDomainDense(7, plan, n_kept=1, n_rows=1)


def test_load_compressed_coefficient_form(tmp_path):
    m = _compressed("haar", keep=0.2)
    path = tmp_path / "m.dwtc"
    save_compressed(m, path)
    dense = load_compressed(path)
    coeff = load_compressed(path, form="coefficient")
    x = _x(8)
    np.testing.assert_allclose(coeff(x).numpy(), dense(x).numpy(), rtol=1e-5, atol=1e-6)
    assert {type(l).__name__ for l in coeff.layers} >= {"WaveletDomainDense"}
    assert deployment.weight_bytes(coeff) < deployment.weight_bytes(dense)
    with pytest.raises(ValueError, match="form"):
        load_compressed(path, form="sparse")


def test_retrain_in_the_coefficient_domain_writes_back_with_the_mask_held():
    x, y = _x(64), np.arange(64) % 4
    m = _compressed("haar", keep=0.3)
    m.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = m.get_layer("fc1").kernel.numpy().copy()
    masks = get_state(m).mask_arrays()
    history = cd.retrain_coefficient_domain(m, x, y, epochs=3, batch_size=16, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    assert int(m.optimizer.iterations.numpy()) == 12
    assert not np.allclose(m.get_layer("fc1").kernel.numpy(), before)
    state = get_state(m)
    assert all(np.array_equal(state.mask_arrays()[n], masks[n]) for n in masks)
    assert state.max_hold_error()["projection_error"] < 1e-5
    np.testing.assert_allclose(m(x).numpy(), history.model(x).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="change the masks"):
        cd.retrain_coefficient_domain(m, x, y, epochs=1, verbose=0,
                                      callbacks=[GradualCompression(0.1, end_step=4)])


def test_deployment_profile_keys_and_counts():
    m = _compressed("haar", keep=0.1)
    c = cd.to_coefficient_domain(m, product="gather")
    prof = deployment.deployment_profile({"dense": m, "coefficient": c}, _x(2),
                                         batch_sizes=(1, 4), repeats=2, warmup=1)
    for form in ("dense", "coefficient"):
        assert set(prof[form]) == {"weight_bytes", "macs_per_sample", "latency_ms_batch1",
                                   "latency_ms_batch4"}
    assert prof["dense"]["macs_per_sample"] == 128 * 16 + 16 * 8 + 8 * 4
    kept = sum(l.n_kept for l in _coefficient_layers(c))
    transforms = sum(l.transform.multiply_adds() for l in _coefficient_layers(c))
    assert prof["coefficient"]["macs_per_sample"] == kept + transforms
    assert copy.deepcopy(cd.coefficient_domain_record(c)) == cd.coefficient_domain_record(c)
