"""Compressibility training: the penalty is in the loss, equals a hand computation, moves the
coefficients, follows the compression state's plans, serialises; dead units are reported."""

import copy

import keras
import numpy as np
import pytest
import pywt

from dwt_keras.compression import (CompressibilityPenalty, add_compressibility_penalty,
                                   compress_model, constraints, dead_units,
                                   remove_compressibility_penalty)
from dwt_keras.compression.bases import plan_model


def _mlp():
    inp = keras.Input((4, 4, 1))
    x = keras.layers.Flatten()(inp)
    x = keras.layers.Dense(6, activation="relu", name="fc")(x)  # 16x6, 4x4 receptive fields
    return keras.Model(inp, keras.layers.Dense(3, name="out")(x))


def test_penalty_is_in_model_losses_and_equals_a_hand_computation():
    m = _mlp()
    pens = add_compressibility_penalty(m, basis="haar", l1=0.01, log_sum=0.002, group=0.03,
                                       log_sum_epsilon=0.05, min_kernel_size=1)
    assert set(pens) == {"fc", "out"} and len(m.losses) == 2
    k = m.get_layer("fc").kernel.numpy().astype(np.float64)
    # by hand: 2-level haar over each unit's 4x4 receptive field (PyWavelets)
    c = np.stack([np.concatenate([a.ravel() for a in
                                  [pywt.wavedec2(k[:, j].reshape(4, 4), "haar", "periodization",
                                                 level=2)[0]] +
                                  [d for lvl in pywt.wavedec2(k[:, j].reshape(4, 4), "haar",
                                                              "periodization", level=2)[1:]
                                   for d in lvl]]) for j in range(6)], axis=1)
    expect = (0.01 * np.abs(c).sum() + 0.002 * np.log1p(np.abs(c) / 0.05).sum()
              + 0.03 * np.linalg.norm(c, axis=0).sum())
    assert float(pens["fc"](m.get_layer("fc").kernel)) == pytest.approx(expect, rel=1e-5)
    assert sorted(float(v) for v in m.losses) == pytest.approx(
        sorted(float(p(m.get_layer(n).kernel)) for n, p in pens.items()), rel=1e-6)
    # and in the compiled training loss
    m.compile("sgd", "mse")
    x, y = np.zeros((2, 4, 4, 1), np.float32), np.zeros((2, 3), np.float32)
    y_pred = m(x)
    data_loss = float(keras.losses.MeanSquaredError()(y, y_pred))
    total = float(m.compute_loss(x=x, y=y, y_pred=y_pred))
    assert total == pytest.approx(data_loss + sum(float(v) for v in m.losses), rel=1e-5)


def _train(penalty, steps=60, seed=0):
    keras.utils.set_random_seed(seed)
    m = _mlp()
    if penalty:
        add_compressibility_penalty(m, basis="haar", l1=0.03, min_kernel_size=1)
    m.compile(keras.optimizers.SGD(0.05), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    rng = np.random.default_rng(seed)
    x = rng.random((64, 4, 4, 1)).astype("float32")
    y = rng.integers(0, 3, 64)
    m.fit(x, y, batch_size=16, epochs=steps // 4, verbose=0)
    plan = {p.layer: p for p in plan_model(m, "haar", min_kernel_size=1)}["fc"]
    return float(np.abs(np.asarray(CompressibilityPenalty(plan, l1=1.0).coefficients(
        m.get_layer("fc").kernel))).sum())


def test_optimizer_steps_with_the_penalty_shrink_the_coefficients():
    with_penalty, without = _train(True), _train(False)
    assert with_penalty < 0.85 * without, (with_penalty, without)


def test_penalty_follows_the_compression_state_plans():
    m = _mlp()
    pens = add_compressibility_penalty(m, basis="haar", l1=1e-3, min_kernel_size=1)
    assert pens["fc"].plan.basis == "wavelet"
    compress_model(m, keep_ratio=0.5, basis="dct", min_kernel_size=1)  # planned later
    assert m.get_layer("fc").kernel.regularizer is pens["fc"]
    assert pens["fc"].plan.basis == "dct"
    # attached after the state exists: uses its plans directly
    pens2 = add_compressibility_penalty(m, basis="haar", group=1e-3)
    assert pens2["fc"].plan.basis == "dct"


def test_penalty_serialises_and_keeps_a_previous_regularizer():
    inp = keras.Input((16,))
    m = keras.Model(inp, keras.layers.Dense(8, kernel_regularizer=keras.regularizers.L2(0.1),
                                            name="fc")(inp))
    pens = add_compressibility_penalty(m, basis="dct", l1=1e-2, min_kernel_size=1)
    k = m.get_layer("fc").kernel
    l2 = 0.1 * float(np.sum(np.square(k.numpy())))
    l1 = 1e-2 * float(np.abs(np.asarray(CompressibilityPenalty(pens["fc"].plan, l1=1.0)
                                        .coefficients(k))).sum())
    assert float(pens["fc"](k)) == pytest.approx(l1 + l2, rel=1e-5)
    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(pens["fc"]))
    assert isinstance(again, CompressibilityPenalty)
    assert float(again(k)) == pytest.approx(float(pens["fc"](k)), rel=1e-6)
    assert again.get_config() == pens["fc"].get_config()
    assert copy.deepcopy(pens["fc"]).get_config() == pens["fc"].get_config()
    assert remove_compressibility_penalty(m) == ["fc"]
    assert isinstance(k.regularizer, keras.regularizers.L2)
    # the layer's config never carries the penalty (files stay free of it)
    assert "CompressibilityPenalty" not in m.to_json()


@pytest.mark.parametrize("kwargs, match", [
    ({"l1": -1}, r"Received: l1=-1"),
    ({"group": float("nan")}, r"Received: group=nan"),
    ({"log_sum": "big"}, r"Received: log_sum='big'"),
    ({}, r"at least one of l1, log_sum, group"),
    ({"l1": 1e-3, "log_sum_epsilon": 0}, r"Received: log_sum_epsilon=0"),
])
def test_arguments_are_validated_by_name(kwargs, match):
    with pytest.raises(ValueError, match=match):
        add_compressibility_penalty(_mlp(), basis="haar", min_kernel_size=1, **kwargs)


def test_dead_units_are_reported_with_and_without_a_state():
    m = _mlp()
    k = m.get_layer("fc").kernel
    w = k.numpy()
    w[:, [1, 4]] = 0.0
    k.assign(w)
    add_compressibility_penalty(m, basis="haar", group=1e-3, min_kernel_size=1)
    assert dead_units(m)["fc"] == [1, 4]
    state = compress_model(m, keep_ratio=0.5, basis="haar", min_kernel_size=1,
                           scope="per_layer")
    assert state.dead_units()["fc"][:2] == [1, 4]
    stats = {s["name"]: s for s in state.layer_stats()}
    assert stats["fc"]["dead_units"] == state.dead_units()["fc"] and stats["fc"]["n_units"] == 6
    # a unit whose kept coefficients are all masked out is dead too
    masks = state.mask_arrays()
    masks["out"][np.arange(masks["out"].size) % 3 == 2] = False
    state.set_masks(masks)
    assert 2 in state.dead_units()["out"]
    constraints.detach_state(m)


def _train_units(group, seed=0):
    keras.utils.set_random_seed(seed)
    m = _mlp()
    if group:
        add_compressibility_penalty(m, basis="haar", group=group, min_kernel_size=1)
    m.compile(keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(
        from_logits=True))
    rng = np.random.default_rng(seed)
    x = rng.random((64, 4, 4, 1)).astype("float32")
    m.fit(x, (x[:, :2, :2, 0].sum(axis=(1, 2)) > 1).astype("int32"), batch_size=16, epochs=30,
          verbose=0)
    return m, np.sort(np.linalg.norm(m.get_layer("fc").kernel.numpy(), axis=0))


def test_group_penalty_drives_whole_units_to_zero():
    m, with_group = _train_units(0.15)
    _, without = _train_units(0.0)
    # structured shrinkage: the weakest units vanish, the strongest survive
    assert with_group[:2].sum() < 0.02 * without[:2].sum(), (with_group, without)
    assert with_group[-1] > 0.05 * without[-1]
    dead = dead_units(m, tol=0.1)["fc"]
    assert 2 <= len(dead) < 6
