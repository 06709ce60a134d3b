"""LiteRT export of the coefficient form: its outputs equal the Keras model's; it holds int8."""

import keras
import numpy as np
import pytest

from dwt_keras.compression import compress_model, get_state
from dwt_keras.compression import coefficient_domain as cd
from dwt_keras.compression import litert
from dwt_keras.experiments.registry import build_model


def _model(basis="haar", keep=0.15, seed=0):
    keras.utils.set_random_seed(seed)
    m = build_model("mlp", (8, 8, 1), 4, widths=(32, 16))
    compress_model(m, keep_ratio=keep, basis=basis, min_kernel_size=1)
    return m


def _x(n=40, seed=3):
    return np.random.default_rng(seed).standard_normal((n, 8, 8, 1)).astype(np.float32)


def _tensors(path):
    interp = litert.make_interpreter(path)
    interp.allocate_tensors()
    return interp.get_tensor_details()


@pytest.mark.parametrize("basis", ["haar", "db2"])
def test_float32_export_equals_the_keras_coefficient_form(tmp_path, basis):
    c = cd.to_coefficient_domain(_model(basis))
    x = _x()
    info = litert.export_litert(c, tmp_path / "m.tflite", quantize="none")
    out = litert.predict_litert(info["path"], x, batch_size=16)
    np.testing.assert_allclose(out, c(x).numpy(), rtol=1e-4, atol=1e-4)
    # the running-sum product: no per-value unit ids, int16 positions, only constants
    assert info["max_abs_value_error"] == {"fc1": 0.0, "fc2": 0.0, "logits": 0.0}


def test_int8_export_holds_int8_values_with_per_unit_scales(tmp_path):
    m = _model("haar")
    c = cd.to_coefficient_domain(m)
    x = _x()
    info = litert.export_litert(c, tmp_path / "q.tflite", quantize="int8")
    layers = {l.name: l for l in c.layers if isinstance(l, cd.WaveletDomainDense)}
    stored = litert.constant_tensors(info["path"])
    int8_sizes = sorted(int(np.prod(d["shape"])) for d in stored if d["dtype"] == "INT8")
    float_shapes = [tuple(d["shape"]) for d in stored if d["dtype"] == "FLOAT32"]
    for name, layer in layers.items():
        served = litert._ServingProduct(layer, "int8")
        expected = served.values.size  # kept values, or the dense matrix of a dense layer
        assert expected in int8_sizes, (name, expected, int8_sizes)
        # per-unit symmetric int8: error at most half a step of that unit's scale
        assert info["max_abs_value_error"][name] <= 0.5 * served.scales.max() + 1e-7
    # the file holds no float32 copy of the kept values: its float32 constants are the biases,
    # the per-unit scales and the transforms' small blocks, filter taps, or the matrices of a
    # short input axis (fc2's 32 inputs at haar's full level: the lo and hi rows of a level,
    # (n / 2, n) each, either way round)
    inputs = {int(np.prod(l.plan.x_shape[:-1])) for l in layers.values()}
    for shape in float_shapes:
        assert int(np.prod(shape)) <= litert.BLOCK_MAX_ENTRIES or (
            len(shape) == 2 and max(shape) in inputs and min(shape) in (max(shape),
                                                                        max(shape) // 2)), shape
    reference = c(x).numpy()
    res = litert.evaluate_litert(info["path"], x, np.argmax(reference, -1), reference=reference)
    assert res["top1_agreement"] >= 0.9
    assert res["max_abs_diff"] < 0.1 * np.abs(reference).max()


def test_export_of_a_dense_model_with_state_converts_it_first(tmp_path):
    m = _model("haar")
    info = litert.export_litert(m, tmp_path / "auto.tflite", quantize="none")
    x = _x(8)
    np.testing.assert_allclose(litert.predict_litert(info["path"], x), m(x).numpy(),
                               rtol=1e-4, atol=1e-4)
    dense = litert.export_dense_litert(m, tmp_path / "dense.tflite")
    assert dense["bytes"] >= 4 * m.count_params()  # the baseline holds every weight in float32
    np.testing.assert_allclose(litert.predict_litert(dense["path"], x), m(x).numpy(),
                               rtol=1e-4, atol=1e-4)
    assert get_state(m) is not None  # the dense model is left as it was


def test_latency_and_interpreter_choice(tmp_path):
    c = cd.to_coefficient_domain(_model())
    a = litert.export_litert(c, tmp_path / "a.tflite")["path"]
    times = litert.litert_latency_ms({"a": a}, _x(2), batch_size=1, repeats=5, warmup=1)
    assert set(times) == {"a"} and times["a"] > 0
    assert litert.interpreter_name() in ("ai_edge_litert", "tf.lite")


def test_bad_arguments():
    c = cd.to_coefficient_domain(_model())
    with pytest.raises(ValueError, match="quantize"):
        litert.export_litert(c, "/tmp/never.tflite", quantize="int4")
    with pytest.raises(ValueError, match="dense_quantize"):
        litert.export_litert(c, "/tmp/never.tflite", dense_quantize="int4")


def test_deployment_report_block(tmp_path):
    import os

    from dwt_keras.compression import deployment, save_compressed

    m = _model("haar")
    path = tmp_path / "m.dwtc"
    save_compressed(m, path)
    x = _x(30)
    y = np.argmax(m(x).numpy(), -1)  # the compressed model's own predictions: accuracy 1
    block = deployment.deployment_report(path, x, y, dense_model=m, litert_dir=tmp_path,
                                         batch_sizes=(1, 4), repeats=2, litert_repeats=3)
    assert set(block["forms"]) == {"dense", "dense_form", "coefficient"}
    for form in block["forms"].values():
        assert {"test_accuracy", "weight_bytes", "macs_per_sample", "latency_ms_batch1",
                "latency_ms_batch4"} <= set(form)
    assert block["forms"]["coefficient"]["test_accuracy"] == 1.0
    assert block["forms"]["coefficient"]["weight_bytes"] < block["forms"]["dense"]["weight_bytes"]
    for key in ("litert_bytes", "litert_test_accuracy", "litert_latency_ms_batch1",
                "dense_litert_latency_ms_batch1"):
        assert key in block
    assert block["litert_bytes"] == os.path.getsize(block["litert_path"])
    assert block["dense_litert_test_accuracy"] == 1.0
    assert block["litert_top1_agreement"] >= 0.9
