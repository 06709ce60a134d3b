"""basis="auto": per-layer choice on the current weights, never below magnitude pruning in energy,
recorded in the plan, made at the first pruning; exact modes only."""

import warnings

import keras
import numpy as np
import pytest

from dwt_keras.compression import AutoBasis, bases, compress_model, constraints
from dwt_keras.compression.bases import plan_model
from dwt_keras.experiments.registry import build_model


def _cnn():
    """The issue-12 user's CNN on 28x28x1 (flatten 4x4x32)."""
    inp = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(16, 5, activation="relu", name="conv1")(inp)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(32, 5, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name="fc1")(x)
    return keras.Model(inp, keras.layers.Dense(10, name="logits")(x))


def _set_kernels(model, kind, seed=0):
    """Kernels drawn i.i.d. (uniform/gaussian), heavy-tailed like trained ones (laplace with a
    few outliers), or smooth in space (each filter / receptive field a low-frequency pattern)."""
    rng = np.random.default_rng(seed)
    for layer in bases.compressible_layers(model):
        var = bases.kernel_variable(layer)
        shape = tuple(var.shape)
        if kind == "uniform":
            w = rng.uniform(-1, 1, shape)
        elif kind == "gaussian":
            w = rng.standard_normal(shape)
        elif kind == "trained_like":
            w = rng.laplace(size=shape) * np.where(rng.random(shape) < 0.02, 8.0, 1.0)
        else:  # smooth along the first (spatial) axes
            w = np.cumsum(np.cumsum(rng.standard_normal(shape), axis=0), axis=1 if len(shape) > 2 else 0)
        var.assign(w.astype(np.float32))


def _kept_energy(model, basis, keep, scope):
    weights = model.get_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = compress_model(model, keep_ratio=keep, basis=basis, scope=scope, install=False)
    coeffs = state.coefficients()
    kept = sum(float(np.sum(np.square(coeffs[n])[m])) for n, m in state.mask_arrays().items())
    constraints.detach_state(model)
    model.set_weights(weights)
    return kept, state


@pytest.mark.parametrize("kind", ["uniform", "gaussian", "trained_like", "smooth"])
@pytest.mark.parametrize("scope", ["global", "per_layer"])
def test_auto_never_keeps_less_energy_than_identity(kind, scope):
    model = _cnn()
    _set_kernels(model, kind)
    for keep in (0.3, 0.1, 0.02):
        e_auto, state = _kept_energy(model, "auto", keep, scope)
        e_id, _ = _kept_energy(model, "identity", keep, scope)
        assert e_auto >= e_id * (1 - 1e-6), (kind, scope, keep, e_auto, e_id)
        for p in state.plans.values():
            assert p.choice is not None and p.choice["candidates"][0]["basis"] == "identity"
    if kind == "smooth":  # structure is found: at 2 % a transform wins by far
        assert e_auto > 1.5 * e_id


def test_global_choice_beats_every_single_basis_everywhere():
    model = _cnn()
    _set_kernels(model, "smooth", seed=3)
    e_auto, _ = _kept_energy(model, "auto", 0.05, "global")
    for basis in ("identity", "dct", "haar"):
        e_fixed, _ = _kept_energy(model, basis, 0.05, "global")
        assert e_auto >= e_fixed * (1 - 1e-6), basis


def test_choice_is_recorded_with_every_candidate_and_the_best_wins():
    model = _cnn()
    _set_kernels(model, "smooth", seed=1)
    plans = plan_model(model, "auto", auto_keep_ratio=0.1, scope="per_layer")
    fc1 = {p.layer: p for p in plans}["fc1"]
    c = fc1.choice
    assert c["criterion"] == "energy" and c["keep_ratio"] == 0.1
    labels = {(r["basis"], r["view"], r["level"]) for r in c["candidates"]}
    # 4x4 receptive fields: identity, the 2-D DCT, haar at 1 and 2 levels; no flattened view
    assert labels == {("identity", "none", 0), ("dct", "receptive_field_hw", 0),
                      ("haar", "receptive_field_hw", 1), ("haar", "receptive_field_hw", 2)}
    assert c["energy_kept"] == max(r["energy_kept"] for r in c["candidates"])
    assert (fc1.basis_name, fc1.view, fc1.level) in labels
    # figures agree with a direct computation
    w = model.get_layer("fc1").kernel.numpy()
    row = next(r for r in c["candidates"] if r["basis"] == "identity")
    sq = np.sort(np.square(w.ravel().astype(np.float64)))[::-1]
    assert row["energy_kept"] == pytest.approx(sq[:c["kept"]].sum() / sq.sum(), rel=1e-6)
    d = fc1.to_dict()
    assert d["choice"]["candidates"] and "choice" not in fc1.transform_dict()
    assert bases.LayerPlan.from_dict(d) == fc1
    assert "auto (energy" in bases.format_plan(plans)


def test_flattened_views_only_when_asked():
    model = _cnn()
    plans = plan_model(model, "auto", small_kernel_fallback="flatten")
    views = {r["view"] for p in plans for r in p.choice["candidates"]}
    assert "conv_flattened" in views and "receptive_field_flattened" in views
    plans = plan_model(model, "auto")
    assert not any("flattened" in r["view"] for p in plans for r in p.choice["candidates"])


def test_choice_is_made_again_at_the_first_pruning_on_the_trained_weights():
    model = build_model("lenet300", (28, 28, 1), 10)
    _set_kernels(model, "trained_like")
    plans = plan_model(model, "auto", auto_keep_ratio=0.05)
    state = constraints.CompressionState.create(model, plans)
    state.install()
    assert state.plans["fc1"].basis == "identity"  # heavy-tailed i.i.d.: nothing to gain
    # "training" makes the receptive fields smooth before the first pruning
    _set_kernels(model, "smooth")
    state.prune(keep_ratio=0.5)  # a schedule's first step; the budget stays the final 0.05
    fc1 = state.plans["fc1"]
    assert fc1.basis != "identity" and fc1.choice["keep_ratio"] == 0.05
    assert state.transforms["fc1"].plan == fc1
    assert model.get_layer("fc1").kernel.constraint.transform is state.transforms["fc1"]
    assert state.max_hold_error()["projection_error"] < 1e-5
    # chosen once: later prunings keep the basis
    _set_kernels(model, "trained_like")
    state.prune(keep_ratio=0.05)
    assert state.plans["fc1"] == fc1


def test_gradual_callback_chooses_at_its_first_pruning_at_the_final_keep():
    from dwt_keras.compression import GradualCompression

    model = _cnn()
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((64, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, 64)
    cb = GradualCompression(final_keep=0.1, begin_step=4, end_step=8, frequency=2, basis="auto",
                            verbose=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(x, y, batch_size=16, epochs=3, callbacks=[cb], verbose=0)
    state = constraints.get_state(model)
    assert state.keep_ratio == pytest.approx(0.1)
    assert all(p.choice["keep_ratio"] == 0.1 for p in state.plans.values())
    assert state.max_hold_error()["projection_error"] < 1e-4
    stats = {s["name"]: s for s in state.layer_stats()}
    assert stats["fc1"]["choice"]["candidates"]


def test_loss_criterion_picks_the_least_loss_increase():
    model = build_model("mlp", (8, 8, 1), 3, widths=(32,))
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((32, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, 32)
    before = model.get_weights()
    spec = AutoBasis(wavelets=("haar",), criterion="loss", validation_data=(x, y))
    plans = plan_model(model, spec, min_kernel_size=1, auto_keep_ratio=0.2, scope="per_layer")
    for w0, w1 in zip(before, model.get_weights()):
        np.testing.assert_array_equal(w0, w1)  # candidates evaluated, weights restored
    for p in plans:
        losses = [r["loss"] for r in p.choice["candidates"]]
        assert p.choice["dense_loss"] > 0 and len(losses) > 1
        chosen = next(r for r in p.choice["candidates"] if
                      (r["basis"], r["view"], r["level"]) == (p.basis_name, p.view, p.level))
        assert chosen["loss"] == min(losses)


@pytest.mark.parametrize("kwargs, match", [
    ({"wavelets": ("bior2.2",)}, r"biorthogonal.*Received: wavelets"),
    ({"wavelets": ("dct",)}, r"discrete wavelet names"),
    ({"criterion": "accuracy"}, r"Received: criterion='accuracy'"),
    ({"criterion": "loss"}, r"needs validation_data"),
    ({"keep_ratio": 1.5}, r"Received: keep_ratio=1.5"),
])
def test_auto_basis_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AutoBasis(**kwargs)


def test_auto_passes_through_callbacks_and_deepcopy():
    import copy

    from dwt_keras.compression import OneShotCompression

    spec = AutoBasis(wavelets=("haar",))
    cb = OneShotCompression(keep_ratio=0.1, basis=spec)
    assert copy.deepcopy(cb).get_config()["basis"] is spec
    OneShotCompression(keep_ratio=0.1, basis="auto")


def test_redundant_modes_are_refused_for_compression():
    model = build_model("lenet300", (28, 28, 1), 10)
    with pytest.warns(UserWarning, match="redundant"):
        plans = plan_model(model, "db2", mode="symmetric")  # planning for analysis only
    with pytest.raises(ValueError, match=r"mode='periodization'.*Received: mode='symmetric'"):
        constraints.CompressionState(model, plans)
    with pytest.raises(ValueError, match=r"redundant transform.*periodization"):
        compress_model(model, keep_ratio=0.1, basis="db4", mode="zero")
    from dwt_keras.compression import GradualCompression

    with pytest.raises(ValueError, match=r"Received: mode='zero'"):
        GradualCompression(final_keep=0.1, basis="sym4", mode="zero")
    # exact in every mode: haar (2 taps), dct, identity; auto keeps only exact candidates
    state = compress_model(model, keep_ratio=0.1, basis="haar", mode="symmetric")
    assert state.max_hold_error()["projection_error"] < 1e-5
    constraints.detach_state(model)
    plans = plan_model(model, "auto", mode="zero", auto_keep_ratio=0.1)
    assert not any(p.redundant for p in plans)
    names = {r["basis"] for p in plans for r in p.choice["candidates"]}
    assert names == {"identity", "dct", "haar"}


@pytest.mark.parametrize("basis", ["identity", "dct", "haar", "db2"])
def test_scoring_transform_matches_the_kernel_transform(basis):
    """auto scores candidates with PyWavelets/SciPy: same coefficients (as a set), same
    reconstruction, as the TensorFlow transform that holds the mask."""
    from dwt_keras.compression import auto

    model = _cnn()
    _set_kernels(model, "gaussian")
    for layer in bases.compressible_layers(model):
        for p in bases.candidate_plans(layer, (basis,), warn=False)[-1:]:
            w = bases.kernel_variable(layer).numpy()
            t = auto.NumpyTransform(p)
            c = t.forward(w)
            ref = np.asarray(bases.KernelTransform(p).forward(w), np.float64)
            np.testing.assert_allclose(np.sort(np.abs(c)), np.sort(np.abs(ref)), atol=1e-4)
            np.testing.assert_allclose(t.inverse(c), w, atol=1e-5)
