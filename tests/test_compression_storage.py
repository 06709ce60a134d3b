"""The compressed file: exact round trip, quantisation error bounds, corruption, sizes."""

import os

import keras
import numpy as np
import pytest

from dwt_keras.compression import compress_model, load_compressed, save_compressed, sizes, storage
from dwt_keras.compression.storage import CompressedFileError
from dwt_keras.experiments.registry import build_model


def _pruned(basis="haar", keep=0.1, seed=0):
    keras.utils.set_random_seed(seed)
    m = build_model("mlp", (16, 16, 1), 4, widths=(64, 32))
    compress_model(m, keep_ratio=keep, basis=basis, min_kernel_size=1)
    return m


def _x(n=64):
    return np.random.default_rng(1).random((n, 16, 16, 1), dtype=np.float32)


@pytest.mark.parametrize("basis", ["haar", "db4", "bior2.2", "dct", "identity"])
def test_round_trip_is_exact_without_quantisation(tmp_path, basis):
    m = _pruned(basis)
    info = save_compressed(m, tmp_path / "m.dwtc")
    assert info["max_abs_weight_error"] == 0.0
    m2 = load_compressed(tmp_path / "m.dwtc")
    x = _x()
    np.testing.assert_array_equal(m.predict(x, verbose=0), m2.predict(x, verbose=0))
    for a, b in zip(m.get_weights(), m2.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert os.path.getsize(tmp_path / "m.dwtc") == info["bytes"]


@pytest.mark.parametrize("quantize", ["float16", "int8", "kmeans"])
def test_quantised_round_trip_within_stated_error(tmp_path, quantize):
    m = _pruned("db2")
    exact = save_compressed(m, tmp_path / "exact.dwtc")["bytes"]
    info = save_compressed(m, tmp_path / "q.dwtc", quantize=quantize, bits=4)
    err = info["max_abs_weight_error"]
    assert 0 < err < 0.05
    m2 = load_compressed(tmp_path / "q.dwtc")
    worst = max(float(np.abs(a - b).max()) for a, b in zip(m.get_weights(), m2.get_weights()))
    assert worst <= err * (1 + 1e-6)
    assert info["bytes"] < exact
    x = _x()
    p1, p2 = m.predict(x, verbose=0), m2.predict(x, verbose=0)
    assert np.abs(p1 - p2).max() < 0.1 * np.abs(p1).max()


def test_file_stores_only_kept_coefficients(tmp_path):
    sparse = save_compressed(_pruned("haar", keep=0.02), tmp_path / "a.dwtc", codec="none")
    dense = save_compressed(_pruned("haar", keep=0.5), tmp_path / "b.dwtc", codec="none")
    n = 256 * 64 + 64 * 32 + 32 * 4
    # float32 values of the kept coefficients dominate: about 4 bytes * kept
    assert sparse["bytes"] < 4 * n * 0.02 * 2 + 20000
    assert dense["bytes"] > 4 * n * 0.5
    kinds = {l["positions_encoding"] for l in sparse["layers"]}
    assert kinds <= {"bitmask", "delta_varint"}


def test_model_without_state_keeps_nonzero_weights(tmp_path):
    m = build_model("mlp", (16, 16, 1), 4, widths=(64,))
    k = m.get_layer("fc1").kernel
    w = k.numpy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    k.assign(w)
    save_compressed(m, tmp_path / "m.dwtc")
    m2 = load_compressed(tmp_path / "m.dwtc")
    np.testing.assert_array_equal(m2.get_layer("fc1").kernel.numpy(), w)


def test_loaded_model_can_be_retrained_with_masks_held(tmp_path):
    m = _pruned("haar")
    save_compressed(m, tmp_path / "m.dwtc")
    m2 = load_compressed(tmp_path / "m.dwtc")
    from dwt_keras.compression import get_state

    state = get_state(m2)
    state.install()
    m2.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    m2.fit(_x(), np.zeros(64, "int32"), epochs=1, batch_size=32, verbose=0)
    assert state.max_hold_error()["projection_error"] < 1e-5


def test_truncated_corrupted_and_foreign_files_raise_clear_errors(tmp_path):
    m = _pruned("haar")
    p = tmp_path / "m.dwtc"
    save_compressed(m, p)
    data = p.read_bytes()
    (tmp_path / "trunc.dwtc").write_bytes(data[:-10])
    with pytest.raises(CompressedFileError, match="truncated"):
        load_compressed(tmp_path / "trunc.dwtc")
    flipped = bytearray(data)
    flipped[len(data) // 2] ^= 0xFF
    (tmp_path / "flip.dwtc").write_bytes(bytes(flipped))
    with pytest.raises(CompressedFileError, match="checksum"):
        load_compressed(tmp_path / "flip.dwtc")
    (tmp_path / "foreign.dwtc").write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(CompressedFileError, match="magic"):
        load_compressed(tmp_path / "foreign.dwtc")
    (tmp_path / "empty.dwtc").write_bytes(b"")
    with pytest.raises(ValueError, match="truncated"):
        load_compressed(tmp_path / "empty.dwtc")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    m = _pruned("haar")
    p = tmp_path / "m.dwtc"
    save_compressed(m, p)
    good = p.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(RuntimeError):
        save_compressed(_pruned("db2"), p)
    assert p.read_bytes() == good  # the earlier file is intact
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.dwtc"]


def test_varint_and_position_codes_round_trip():
    rng = np.random.default_rng(0)
    v = np.concatenate([[0, 1, 127, 128, 16383, 16384, 2**31], rng.integers(0, 10**6, 1000)])
    np.testing.assert_array_equal(storage.varint_decode(storage.varint_encode(v), v.size), v)
    for density in (0.001, 0.05, 0.6):
        mask = rng.random(5000) < density
        enc, data = storage._encode_positions(mask, "lzma")
        np.testing.assert_array_equal(
            storage._decode_positions(enc, data, mask.size, int(mask.sum())), mask)


def test_bad_storage_options():
    m = _pruned("haar")
    with pytest.raises(ValueError, match="quantize"):
        storage.serialize_compressed(m, quantize="int4")
    with pytest.raises(ValueError, match="codec"):
        storage.serialize_compressed(m, codec="brotli")


def test_sizes_in_bytes(tmp_path):
    m = build_model("lenet300", (28, 28, 1), 10)
    assert sizes.dense_float32_bytes(m) == 4 * 266610
    m.compile("adam", "mse")
    rep = sizes.size_report(m, keras_path=tmp_path / "m.keras")
    # saved without optimizer slots: about the float32 size plus the config
    assert 4 * 266610 < rep["bytes_keras"] < 4 * 266610 * 1.1
    assert rep["bytes_keras_zip"] < rep["bytes_keras"]
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert reloaded.count_params() == 266610
