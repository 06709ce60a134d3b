"""Format 3 codes: range-coded positions and labels, per-layer bits, dense small weights, the
compact architecture, and the choice of bit widths on a validation split."""

import json

import keras
import numpy as np
import pytest

from dwt_keras.compression import (architecture, coding, compress_model, get_state,
                                   load_compressed, save_compressed, storage)
from dwt_keras.compression.bitwidth import choose_bits
from dwt_keras.experiments.registry import build_model


def _data(n=256, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8, 8, 1), dtype=np.float32)
    y = (x[:, :4].mean((1, 2, 3)) > x[:, 4:].mean((1, 2, 3))).astype("int32")
    return x, y


def _trained(keep=0.3, seed=0):
    keras.utils.set_random_seed(seed)
    m = build_model("mlp", (8, 8, 1), 2, widths=(64, 32))
    m.compile(keras.optimizers.Adam(1e-2),
              keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x, y = _data()
    m.fit(x, y, epochs=3, batch_size=32, verbose=0)
    compress_model(m, keep_ratio=keep, basis="haar", min_kernel_size=1)
    m.fit(x, y, epochs=1, batch_size=32, verbose=0)
    return m


def _header(path):
    return storage.read_header(path.read_bytes())[0]


@pytest.mark.parametrize("encoding", ["kmeans_range", "kmeans_packed"])
def test_kmeans_labels_round_trip_and_choose_the_smaller_code(encoding):
    rng = np.random.default_rng(0)
    if encoding == "kmeans_range":  # a peaked label histogram: range coding wins
        values = np.concatenate([rng.normal(0, 0.01, 3000), rng.normal(1, 0.3, 40)])
    else:  # 80 values over 64 centroids: the histogram would cost more than it saves
        values = rng.uniform(-1, 1, 80)
    meta, data, deq = coding.quantize_values(values.astype(np.float32), "kmeans", 6,
                                             lambda b: len(storage._encode(b, "lzma")))
    assert meta == {"encoding": encoding, "bits": 6}
    back = coding.dequantize_values(meta, data, values.size)
    np.testing.assert_array_equal(back, deq)
    assert np.abs(back - values).max() < 0.05
    codebook = np.frombuffer(data[:128], "<f2")
    assert np.all(np.diff(codebook) >= 0)  # sorted
    if encoding == "kmeans_range":
        assert len(data) < 128 + values.size * 6 / 8 * 0.8


def test_per_layer_bits_are_stored_and_validated(tmp_path):
    m = _trained()
    info = save_compressed(m, tmp_path / "m.dwtc", bits={"fc1": 2, "fc2": 5})
    header = _header(tmp_path / "m.dwtc")
    assert header["bits"] == {"fc1": 2, "fc2": 5, "logits": 6}
    got = {layer["name"]: layer["bits"] for layer in info["layers"]}
    assert got["fc1"] == 2 and got["fc2"] == 5
    few = save_compressed(m, tmp_path / "few.dwtc", bits=2)["bytes"]
    many = save_compressed(m, tmp_path / "many.dwtc", bits=8)["bytes"]
    assert few < info["bytes"] < many
    restored = load_compressed(tmp_path / "m.dwtc")
    err = max(float(np.abs(a - b).max()) for a, b in zip(m.get_weights(), restored.get_weights()))
    assert 0 < err <= info["max_abs_weight_error"] * (1 + 1e-6)
    with pytest.raises(ValueError, match="not compressed: \\['nope'\\]"):
        save_compressed(m, tmp_path / "x.dwtc", bits={"nope": 3})
    with pytest.raises(ValueError, match=r"Received: bits\['fc1'\]=9"):
        save_compressed(m, tmp_path / "x.dwtc", bits={"fc1": 9})


@pytest.mark.parametrize("small_weights, bound", [("float32", 0.0), ("float16", 2.0 ** -11),
                                                  ("int8", 0.5 / 127)])
def test_small_weights_encodings(tmp_path, small_weights, bound):
    m = _trained()
    bias = m.get_layer("fc1").bias
    b = bias.numpy()
    b[0] = 2.0  # the largest |bias|: int8's scale is 2 / 127
    bias.assign(b)
    save_compressed(m, tmp_path / "m.dwtc", quantize=None, small_weights=small_weights)
    entry = next(e for e in _header(tmp_path / "m.dwtc")["weights"] if e["kind"] == "dense")
    assert entry["encoding"] == {"int8": "int8_scaled"}.get(small_weights, small_weights)
    got = load_compressed(tmp_path / "m.dwtc").get_layer("fc1").bias.numpy()
    assert np.abs(got - b).max() <= bound * 2.0 * (1 + 1e-6)
    if small_weights == "float32":
        np.testing.assert_array_equal(got, b)


def test_float16_small_weights_keep_float32_when_out_of_range(tmp_path):
    m = _trained()
    b = m.get_layer("fc1").bias.numpy()
    b[0] = 1e6  # beyond float16's 65504
    m.get_layer("fc1").bias.assign(b)
    save_compressed(m, tmp_path / "m.dwtc")  # defaults: quantised values, float16 biases
    entries = [e for e in _header(tmp_path / "m.dwtc")["weights"] if e["kind"] == "dense"]
    assert [e["encoding"] for e in entries] == ["float32", "float16", "float16"]
    np.testing.assert_array_equal(load_compressed(tmp_path / "m.dwtc").get_layer("fc1").bias, b)


def test_default_small_weights_follow_quantize(tmp_path):
    m = _trained()
    save_compressed(m, tmp_path / "exact.dwtc", quantize=None)
    exact = load_compressed(tmp_path / "exact.dwtc")
    for a, b in zip(m.get_weights(), exact.get_weights()):
        np.testing.assert_array_equal(a, b)
    save_compressed(m, tmp_path / "lossy.dwtc")
    assert _header(tmp_path / "exact.dwtc")["small_weights"] == "float32"
    assert _header(tmp_path / "lossy.dwtc")["small_weights"] == "float16"


@pytest.mark.parametrize("kind", ["lenet5", "sequential"])
def test_compact_architecture_rebuilds_the_same_model(kind):
    if kind == "lenet5":
        model = build_model("lenet5", (28, 28, 1), 10)
    else:
        model = keras.Sequential([keras.Input((6,)), keras.layers.Dense(4, activation="relu",
                                                                        use_bias=False),
                                  keras.layers.Dropout(0.25), keras.layers.Dense(2)])
    full = architecture.full_config(model)
    compact = architecture.compact_config(model)
    assert len(json.dumps(compact)) < 0.7 * len(json.dumps(full))
    rebuilt = keras.models.model_from_json(json.dumps(compact))
    assert architecture.full_config(rebuilt) == full


def test_format_3_file_is_smaller_than_format_1_for_the_same_model(tmp_path):
    m = _trained(keep=0.1)
    data, _ = storage.serialize_compressed(m, snap=False, small_weights="float32")
    header, _ = storage.read_header(data)
    assert {e["positions"]["encoding"] for e in header["weights"] if e["kind"] == "compressed"} \
        <= {"range_bands", "delta_varint", "bitmask"}
    # the same kept coefficients and 6-bit k-means in format 1's codes (lzma over uint8 labels,
    # float32 codebooks in the JSON, varint or bitmask positions, full architecture)
    state = get_state(m)
    masks, coeffs = state.mask_arrays(), state.coefficients()
    v1 = 0
    for n in state.plans:
        _, pos = coding.encode_positions(masks[n], lambda b: len(storage._encode(b, "lzma", 1)))
        meta, vals, _ = coding.quantize_values(np.asarray(coeffs[n])[masks[n]], "kmeans", 6,
                                               entropy_coded=False)
        v1 += len(storage._encode(pos + vals + json.dumps(meta).encode(), "lzma", 1))
    assert len(data) < v1 + 4 * 32 * 3  # + float32 biases in format 1


def test_choose_bits_meets_the_tolerance_and_restores_the_kernels(tmp_path):
    m = _trained()
    x, y = _data(512, seed=1)
    before = [np.array(w) for w in m.get_weights()]
    loose = choose_bits(m, x, y, tolerance=1.0, candidates=(2, 4, 6))
    assert loose["bits"] == {"fc1": 2, "fc2": 2, "logits": 2}
    strict = choose_bits(m, x, y, tolerance=0.0, candidates=(1, 2, 3, 4, 5, 6, 7, 8))
    assert strict["metric"] >= strict["reference"] or set(strict["bits"].values()) == {8}
    for a, b in zip(before, m.get_weights()):
        np.testing.assert_array_equal(a, b)
    save_compressed(m, tmp_path / "m.dwtc", bits=strict["bits"], small_weights="float32")
    restored = load_compressed(tmp_path / "m.dwtc")
    acc = float(np.mean(restored.predict(x, verbose=0).argmax(-1) == y))
    assert acc == pytest.approx(strict["metric"])
    with pytest.raises(ValueError, match="candidates"):
        choose_bits(m, x, y, candidates=(0, 4))
    with pytest.raises(ValueError, match="no CompressionState"):
        choose_bits(build_model("mlp", (8, 8, 1), 2, widths=(4,)), x, y)
