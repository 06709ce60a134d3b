"""Model registry: parameter counts match the published architectures; unknown names fail."""

import numpy as np
import pytest

from dwt_keras.experiments.registry import MODELS, build_model


def test_lenet300_matches_han_et_al():
    m = build_model("lenet300", (28, 28, 1), 10)
    # 784*300+300 + 300*100+100 + 100*10+10 (Han et al. 2015: 267K parameters)
    assert m.count_params() == 784 * 300 + 300 + 300 * 100 + 100 + 100 * 10 + 10 == 266610
    assert [l.units for l in m.layers if hasattr(l, "units")] == [300, 100, 10]


def test_lenet5_is_the_caffe_lenet_with_431k_params():
    m = build_model("lenet5", (28, 28, 1), 10)
    assert m.count_params() == 431080  # methods.md section 2 / Han et al. 2016
    assert m.get_layer("fc1").kernel.shape == (800, 500)


def test_resnet18_cifar_variant():
    m = build_model("resnet18", (32, 32, 3), 10)
    assert m.get_layer("stem_conv").kernel.shape == (3, 3, 3, 64)  # 3x3 stem, no max-pool
    assert not any("pool" in l.name and "gap" not in l.name for l in m.layers)
    assert 11.1e6 < m.count_params() < 11.2e6
    assert m.output.shape[-1] == 10
    convs = [l for l in m.layers if l.__class__.__name__ == "Conv2D"]
    assert len([c for c in convs if c.kernel.shape[0] == 3]) == 17  # stem + 16 block convs


def test_resnet18_small_width_runs():
    m = build_model("resnet18", (16, 16, 3), 5, width=8)
    out = m(np.zeros((2, 16, 16, 3), "float32"))
    assert out.shape == (2, 5)


def test_mlp_widths():
    m = build_model("mlp", (8, 8, 1), 3, widths=(16, 7))
    assert [l.units for l in m.layers if hasattr(l, "units")] == [16, 7, 3]
    with pytest.raises(ValueError, match="positive"):
        build_model("mlp", (8, 8, 1), 3, widths=(0,))


def test_unknown_model_lists_choices():
    with pytest.raises(ValueError, match="lenet6") as e:
        build_model("lenet6", (28, 28, 1), 10)
    for name in MODELS:
        assert name in str(e.value)
