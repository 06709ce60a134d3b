"""Coefficient selection: exact budgets, scopes, thresholds, approximation band, schedules."""

import math

import numpy as np
import pytest

from dwt_keras.compression.selection import polynomial_keep, select_masks


def _coeffs(seed=0):
    rng = np.random.default_rng(seed)
    return {"a": rng.standard_normal(1000), "b": 3 * rng.standard_normal(200)}


def test_global_keeps_exactly_the_largest():
    c = _coeffs()
    m = select_masks(c, keep_ratio=0.1)
    assert sum(v.sum() for v in m.values()) == 120
    allc = np.concatenate([np.abs(c["a"]), np.abs(c["b"])])
    kept = np.concatenate([m["a"], m["b"]])
    assert allc[kept].min() >= allc[~kept].max()
    assert m["b"].sum() > m["a"].sum()  # the larger layer-scale wins under a global ranking


def test_per_layer_and_dict_ratios():
    c = _coeffs()
    m = select_masks(c, keep_ratio=0.1, scope="per_layer")
    assert m["a"].sum() == 100 and m["b"].sum() == 20
    m = select_masks(c, keep_ratio={"a": 0.5})
    assert m["a"].sum() == 500 and m["b"].all()
    with pytest.raises(ValueError, match="unknown"):
        select_masks(c, keep_ratio={"zzz": 0.5})


def test_threshold_and_never_empty():
    c = {"a": np.array([0.1, -2.0, 0.5, 3.0]), "b": np.array([0.01, 0.02])}
    m = select_masks(c, threshold=0.5)
    assert m["a"].tolist() == [False, True, True, True]
    assert m["b"].sum() == 1  # never drops a whole kernel


def test_keep_approximation_counts_in_budget():
    c = {"a": np.array([0.0, 0.1, 5.0, 4.0, 3.0])}
    approx = {"a": np.array([True, True, False, False, False])}
    m = select_masks(c, keep_ratio=0.6, keep_approximation=True, approximation_masks=approx)
    assert m["a"].tolist() == [True, True, True, False, False]


@pytest.mark.parametrize("bad", [0, 0.0, -0.1, 1.5, float("nan"), "0.5", True])
def test_bad_keep_ratio(bad):
    with pytest.raises(ValueError, match="keep_ratio"):
        select_masks(_coeffs(), keep_ratio=bad)


def test_non_finite_coefficients_name_the_layer():
    with pytest.raises(ValueError, match="'b'"):
        select_masks({"a": np.ones(3), "b": np.array([1.0, np.nan])}, keep_ratio=0.5)


def test_polynomial_decay_endpoints_and_monotone():
    ks = [polynomial_keep(s, 1.0, 0.05, 100, 1100) for s in range(0, 1300, 50)]
    assert ks[0] == 1.0 and math.isclose(ks[-1], 0.05)
    assert all(b <= a + 1e-12 for a, b in zip(ks, ks[1:]))
    # cubic: half way through, sparsity = s_f (1 - 0.5^3)
    assert math.isclose(polynomial_keep(600, 1.0, 0.05, 100, 1100), 1 - 0.95 * (1 - 0.125))
