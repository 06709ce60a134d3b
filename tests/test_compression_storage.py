"""The compressed file: exact round trip, quantisation error bounds, corruption, sizes."""

import os

import keras
import numpy as np
import pytest

from dwt_keras.compression import (bases, compress_model, load_compressed, save_compressed, sizes,
                                   storage)
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
    info = save_compressed(m, tmp_path / "m.dwtc", quantize=None)
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
    exact = save_compressed(m, tmp_path / "exact.dwtc", quantize=None)["bytes"]
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
    sparse = save_compressed(_pruned("haar", keep=0.02), tmp_path / "a.dwtc", quantize=None,
                             codec="none")
    dense = save_compressed(_pruned("haar", keep=0.5), tmp_path / "b.dwtc", quantize=None,
                            codec="none")
    n = 256 * 64 + 64 * 32 + 32 * 4
    # float32 values of the kept coefficients dominate: about 4 bytes * kept
    assert sparse["bytes"] < 4 * n * 0.02 * 2 + 20000
    assert dense["bytes"] > 4 * n * 0.5
    kinds = {l["positions_encoding"] for l in sparse["layers"]}
    assert kinds <= {"bitmask", "delta_varint", "range_bands"}


def test_model_without_state_keeps_nonzero_weights(tmp_path):
    m = build_model("mlp", (16, 16, 1), 4, widths=(64,))
    k = m.get_layer("fc1").kernel
    w = k.numpy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
    k.assign(w)
    save_compressed(m, tmp_path / "m.dwtc", quantize=None)
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


@pytest.mark.parametrize("codec", sorted(storage.CODECS))
def test_truncated_corrupted_and_foreign_files_raise_clear_errors(tmp_path, codec):
    m = _pruned("haar")
    p = tmp_path / "m.dwtc"
    save_compressed(m, p, codec=codec)
    data = p.read_bytes()
    cases = {"truncated": data[:-10], "padded": data + b"\0", "foreign": b"PK\x03\x04" + b"\0" * 100,
             "empty": b"", "header only": data[:storage._HEADER.size]}
    # one flipped byte in the container's CRC field, in the payload's start, middle and end
    for name, at in (("crc", 28), ("start", storage._HEADER.size),
                     ("middle", (storage._HEADER.size + len(data)) // 2), ("end", len(data) - 1)):
        flipped = bytearray(data)
        flipped[at] ^= 0x01
        cases["flipped " + name] = bytes(flipped)
    for name, bad in cases.items():
        (tmp_path / "bad.dwtc").write_bytes(bad)
        with pytest.raises(CompressedFileError) as err:
            load_compressed(tmp_path / "bad.dwtc")
        expected = {"truncated": "truncated", "padded": "truncated or padded",
                    "foreign": "magic", "empty": "truncated", "header only": "truncated"}
        assert expected.get(name, "checksum") in str(err.value), (name, str(err.value))


def _repacked(tmp_path, data, edit, version=storage.VERSION, codec="lzma"):
    """`data`'s header edited by `edit(header)`, re-packed with a valid CRC."""
    header, blobs = storage.read_header(data)
    edit(header)
    path = tmp_path / "edited.dwtc"
    path.write_bytes(storage.pack_container(header, blobs, codec, version=version))
    return path


def _first(header, kind):
    return next(e for e in header["weights"] if e["kind"] == kind)


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["weights"].pop(), "the file lists"),
    (lambda h: _first(h, "dense")["blob"].update(offset=10**9), "out of range"),
    (lambda h: _first(h, "dense")["blob"].update(offset=-8), "out of range"),
    (lambda h: _first(h, "dense")["blob"].update(nbytes=4), "are needed"),
    (lambda h: _first(h, "compressed")["values"]["blob"].update(nbytes=2), "cannot be decoded"),
    (lambda h: _first(h, "compressed").update(n_kept=10**9), "kept coefficients"),
    (lambda h: _first(h, "compressed")["positions"].update(encoding="zigzag"), "position"),
    (lambda h: _first(h, "compressed").update(layer_index=0), "architecture does not match"),
    (lambda h: _first(h, "compressed").pop("plan"), "cannot be decoded"),
    (lambda h: h.pop("model_config"), "no architecture"),
])
def test_inconsistent_content_in_a_valid_container_is_a_compressed_file_error(tmp_path, edit,
                                                                            message):
    p = tmp_path / "m.dwtc"
    save_compressed(_pruned("haar"), p, quantize=None)
    with pytest.raises(CompressedFileError, match=message):
        load_compressed(_repacked(tmp_path, p.read_bytes(), edit))


def test_unsupported_version_and_codec_id(tmp_path):
    p = tmp_path / "m.dwtc"
    save_compressed(_pruned("haar"), p)
    with pytest.raises(CompressedFileError, match="version 99 .*reads versions 1, 2"):
        load_compressed(_repacked(tmp_path, p.read_bytes(), lambda h: None, version=99))
    data = bytearray(p.read_bytes())
    data[10] = 7  # codec id
    (tmp_path / "codec.dwtc").write_bytes(bytes(data))
    with pytest.raises(CompressedFileError, match="codec id 7"):
        load_compressed(tmp_path / "codec.dwtc")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    m = _pruned("haar")
    p = tmp_path / "m.dwtc"
    save_compressed(m, p)
    good = p.read_bytes()

    def boom(*a, **k):
        raise RuntimeError("interrupted")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(RuntimeError, match="interrupted"):
        save_compressed(_pruned("db2"), p)
    assert p.read_bytes() == good  # the earlier file is intact
    assert sorted(x.name for x in tmp_path.iterdir()) == ["m.dwtc"]


def test_varint_and_position_codes_round_trip():
    from dwt_keras.compression import coding

    rng = np.random.default_rng(0)
    v = np.concatenate([[0, 1, 127, 128, 16383, 16384, 2**31], rng.integers(0, 10**6, 1000)])
    np.testing.assert_array_equal(coding.varint_decode(coding.varint_encode(v), v.size), v)
    sizes = [40, 120, 120, 120, 4600]
    for density in (0.0, 0.001, 0.05, 0.6, 1.0):
        mask = rng.random(5000) < density
        mask[:40] |= density > 0.5  # a dense coarse band, as wavelet plans have
        for enc in ("bitmask", "delta_varint", "range_bands"):
            data = {"bitmask": np.packbits(mask).tobytes(),
                    "delta_varint": coding.varint_encode(np.diff(np.flatnonzero(
                        np.concatenate([[True], mask]))) - 1),
                    "range_bands": coding._range_bands(mask, sizes)}[enc]
            np.testing.assert_array_equal(
                coding.decode_positions(enc, data, mask.size, int(mask.sum()), sizes), mask)
        best, _ = coding.encode_positions(mask, lambda b: len(storage._encode(b, "lzma")), sizes)
        assert best in ("bitmask", "delta_varint", "range_bands")


def test_bad_storage_options():
    m = _pruned("haar")
    with pytest.raises(ValueError, match="quantize"):
        storage.serialize_compressed(m, quantize="int4")
    with pytest.raises(ValueError, match="codec"):
        storage.serialize_compressed(m, codec="brotli")


def test_defaults_are_the_apps_six_bit_kmeans_and_lzma(tmp_path):
    import inspect

    from dwt_keras.compression import CompressionMetrics

    info = save_compressed(_pruned("haar"), tmp_path / "m.dwtc")
    header, _ = storage.read_header((tmp_path / "m.dwtc").read_bytes())
    assert (header["quantize"], info["codec"], header["small_weights"]) \
        == ("kmeans", "lzma", "float16")
    assert header["bits"] == {"fc1": 6, "fc2": 6, "logits": 6}
    # layers with at most 2**6 kept values store them as float32 (no codebook to pay for)
    assert {e["values"]["encoding"] for e in header["weights"] if e["kind"] == "compressed"} \
        & {"kmeans_range", "kmeans_packed"}
    assert (storage.DEFAULT_QUANTIZE, storage.DEFAULT_BITS, storage.DEFAULT_CODEC) \
        == ("kmeans", 6, "lzma")
    for fn in (save_compressed, storage.serialize_compressed, CompressionMetrics):
        params = inspect.signature(fn).parameters
        assert (params["quantize"].default, params["bits"].default, params["codec"].default) \
            == ("kmeans", 6, "lzma"), fn


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


# --------------------------------------------------------------------------- #
# Loading in a fresh process: functional, Sequential and subclassed models
# --------------------------------------------------------------------------- #
_USER_MODELS = '''
import keras
import numpy as np


def _layers():
    return [keras.layers.Conv2D(8, 4, activation="relu"), keras.layers.MaxPooling2D(),
            keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(3)]


@keras.saving.register_keras_serializable(package="dwt_keras_tests")
class Subclassed(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.blocks = _layers()

    def call(self, x):
        for layer in self.blocks:
            x = layer(x)
        return x


def build(kind):
    if kind == "sequential":
        return keras.Sequential([keras.Input((12, 12, 1))] + _layers())
    if kind == "functional":
        inputs = keras.Input((12, 12, 1))
        x = inputs
        for layer in _layers():
            x = layer(x)
        return keras.Model(inputs, x)
    model = Subclassed()
    model(np.zeros((1, 12, 12, 1), "float32"))
    return model
'''

_LOAD_IN_FRESH_PROCESS = '''
import os, sys
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path[:0] = [sys.argv[1], sys.argv[2]]
import keras, numpy as np
import user_models  # registers the subclassed model, as a user's own module would
from dwt_keras.compression import get_state, load_compressed

# Layers created before loading shift Keras' automatic names (conv2d -> conv2d_1 ...).
_ = [keras.layers.Dense(2), keras.layers.Conv2D(2, 3), keras.layers.Dense(2)]
for kind in sys.argv[3:]:
    ref = np.load(os.path.join(sys.argv[2], kind + ".npz"))
    model = load_compressed(os.path.join(sys.argv[2], kind + ".dwtc"))
    pred = model.predict(ref["x"], verbose=0)
    np.testing.assert_array_equal(pred, ref["y"])
    kept = {type(l).__name__: int(m.sum()) for l, m in
            ((get_state(model).layers[n], m) for n, m in get_state(model).mask_arrays().items())}
    print(kind, "OK", sorted(kept.items()))
'''


def test_user_models_load_in_a_fresh_process(tmp_path):
    """Conv and Dense kernels compressed under fit(), saved, loaded in a new process."""
    import subprocess
    import sys

    from dwt_keras.compression import GradualCompression

    (tmp_path / "user_models.py").write_text(_USER_MODELS)
    sys.path.insert(0, str(tmp_path))
    try:
        import user_models
    finally:
        sys.path.remove(str(tmp_path))
    kinds = ["functional", "sequential", "subclassed"]
    rng = np.random.default_rng(0)
    x = rng.random((64, 12, 12, 1), dtype=np.float32)
    y = (x[:, :6].mean((1, 2, 3)) > x[:, 6:].mean((1, 2, 3))).astype("int32")
    for kind in kinds:
        keras.utils.set_random_seed(0)
        model = user_models.build(kind)
        model.compile(keras.optimizers.Adam(1e-2),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        cb = GradualCompression(final_keep=0.2, end_step=4, frequency=2, basis="haar",
                                min_kernel_size=1, verbose=0)
        model.fit(x, y, epochs=2, batch_size=16, callbacks=[cb], verbose=0)
        save_compressed(model, tmp_path / f"{kind}.dwtc", quantize=None)
        np.savez(tmp_path / f"{kind}.npz", x=x[:8], y=model.predict(x[:8], verbose=0))
        header, _ = storage.read_header((tmp_path / f"{kind}.dwtc").read_bytes())
        layers = bases._flatten_layers(model)
        # the stored plan is compact: n_coefficients is left out when it equals the weights
        compressed = [(type(layers[e["layer_index"]]).__name__,
                       e["n_kept"] / e["plan"].get(
                           "n_coefficients", int(np.prod(layers[e["layer_index"]].kernel.shape))))
                      for e in header["weights"] if e["kind"] == "compressed"]
        assert [c for c, _ in compressed] == ["Conv2D", "Dense", "Dense"], (kind, compressed)
        assert all(0 < share < 1 for _, share in compressed), (kind, compressed)
    (tmp_path / "load.py").write_text(_LOAD_IN_FRESH_PROCESS)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    r = subprocess.run([sys.executable, str(tmp_path / "load.py"), root, str(tmp_path), *kinds],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    for kind in kinds:
        assert f"{kind} OK" in r.stdout, r.stdout


def test_format_version_1_files_still_load():
    """``tests/data/format_v1.dwtc`` was written by dwt-keras 9c7fdd3 (format version 1): a
    functional conv + Dense model pruned with ``compress_model(keep_ratio=0.3, basis="haar",
    min_kernel_size=1)`` and saved with ``quantize=None``; the .npz holds its predictions."""
    import pathlib

    data = pathlib.Path(__file__).parent / "data"
    assert storage._HEADER.unpack_from((data / "format_v1.dwtc").read_bytes())[1] == 1
    model = load_compressed(data / "format_v1.dwtc")
    ref = np.load(data / "format_v1_expected.npz")
    np.testing.assert_array_equal(model.predict(ref["x"], verbose=0), ref["y"])
    from dwt_keras.compression import get_state

    assert sorted(get_state(model).plans) == ["conv", "fc", "logits"]
