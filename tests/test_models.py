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


def test_resnet20_is_he_et_al_cifar_resnet_with_027m_params():
    m = build_model("resnet20", (32, 32, 3), 10)
    # 3x3 convs: stem 432 + 6*2304 + (4608 + 5*9216) + (18432 + 5*36864) = 267,696;
    # 19 BatchNorms (2,752 incl. moving statistics) and the 64x10 classifier (650)
    assert m.count_params() == 267696 + 2752 + 650 == 271098
    convs = [l for l in m.layers if l.__class__.__name__ == "Conv2D"]
    assert len(convs) == 19 and all(c.kernel.shape[:2] == (3, 3) for c in convs)
    assert [c.kernel.shape[-1] for c in convs] == [16] * 7 + [32] * 6 + [64] * 6
    assert m.output.shape[-1] == 10
    # option B adds the two 1x1 projections and their BatchNorms
    assert build_model("resnet20", (32, 32, 3), 10, shortcut="projection").count_params() == \
        271098 + 16 * 32 + 4 * 32 + 32 * 64 + 4 * 64
    small = build_model("resnet20", (16, 16, 3), 5, width=4)
    assert small.get_layer("s3b1_conv1").kernel.shape == (3, 3, 8, 16)
    assert build_model("resnet20", (32, 32, 3), 10, depth=32).count_params() > 271098


def test_resnet20_zero_pad_shortcut_subsamples_and_appends_zero_channels():
    import keras

    m = build_model("resnet20", (8, 8, 3), 2, width=4)
    sub = keras.Model(m.get_layer("s2b1_subsample").input, m.get_layer("s2b1_to_clast").output)
    x = np.random.default_rng(0).random((2, 8, 8, 4)).astype("float32")
    y = sub(x).numpy()
    assert y.shape == (2, 4, 4, 8)
    np.testing.assert_array_equal(y[..., 2:6], x[:, ::2, ::2, :])
    assert not y[..., :2].any() and not y[..., 6:].any()


@pytest.mark.parametrize("kwargs, match", [
    ({"depth": 21}, r"Received: depth=21"), ({"width": 0}, r"Received: width=0"),
    ({"shortcut": "B"}, r"Received: shortcut='B'")])
def test_resnet20_arguments_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model("resnet20", (32, 32, 3), 10, **kwargs)


def test_resnet20_round_trips_through_keras_file(tmp_path):
    import keras

    m = build_model("resnet20", (16, 16, 3), 3, width=4)
    path = str(tmp_path / "r.keras")
    m.save(path)
    x = np.random.default_rng(1).random((2, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(keras.models.load_model(path)(x).numpy(), m(x).numpy(), atol=1e-6)
