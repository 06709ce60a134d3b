"""One-file storage of a compressed model: kept coefficients + positions, quantised, entropy coded.

File layout (little-endian)::

    offset  size  field
    0       8     magic  b"DWTKCMP\\0"
    8       2     format version (1)
    10      1     codec: 0 none, 1 zlib, 2 lzma
    11      1     reserved (0)
    12      8     payload length in bytes (as stored)
    20      8     raw payload length (after decoding)
    28      4     CRC-32 of the stored payload
    32      ...   payload

The decoded payload is a 4-byte header length, a UTF-8 JSON header (the model's architecture from
``model.to_json()``, one entry per weight in ``model.weights`` order, and for each compressed
kernel its `LayerPlan`) and a blob area with:

* small dense weights (biases, normalisation statistics, small kernels): float32, or float16 with
  ``small_weights="float16"``;
* for each compressed kernel: the positions of the kept coefficients, as a bitmask
  (``numpy.packbits``) or as delta-coded indices (LEB128 varints of the gaps), whichever the codec
  compresses smaller; and their values: float32 (exact), float16, int8 (symmetric, one scale per
  layer) or a k-means codebook (``2**bits`` float32 centroids, initialised on a linear grid as in
  Deep Compression) with one uint8 index per value.

``save_compressed`` first *snaps* each compressed kernel to the reconstruction of its kept
coefficients (``W = B^-1(c)``, computed eagerly as ``load_compressed`` does), so without
quantisation the loaded model's predictions equal the in-memory model's bit for bit. With
quantisation, the largest absolute weight error is returned (and stored in the header).
"""

import io
import json
import lzma
import math
import struct
import zlib

import numpy as np

from dwt_keras.compression import bases, constraints

MAGIC = b"DWTKCMP\x00"
VERSION = 1
CODECS = {"none": 0, "zlib": 1, "lzma": 2}
QUANTIZERS = ("none", "float16", "int8", "kmeans")
SMALL_WEIGHTS = ("float32", "float16")
_HEADER = struct.Struct("<8sHBBQQI")


class CompressedFileError(ValueError):
    """A compressed file is not ours, truncated, corrupted, or of an unsupported version."""


# --------------------------------------------------------------------------- #
# Entropy coding and position coding
# --------------------------------------------------------------------------- #
def _encode(data, codec):
    if codec == "none":
        return data
    if codec == "zlib":
        return zlib.compress(data, 9)
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE,
                         preset=9 | lzma.PRESET_EXTREME)


def _decode(data, codec):
    if codec == "none":
        return data
    if codec == "zlib":
        return zlib.decompress(data)
    return lzma.decompress(data, format=lzma.FORMAT_XZ)


def varint_encode(values):
    """LEB128 encoding of non-negative integers (vectorised)."""
    v = np.asarray(values, dtype=np.uint64).reshape(-1)
    if v.size == 0:
        return b""
    nbytes = np.ones(v.size, dtype=np.int64)
    t = v >> np.uint64(7)
    while np.any(t):
        nbytes += (t > 0)
        t = t >> np.uint64(7)
    out = np.zeros(int(nbytes.sum()), dtype=np.uint8)
    starts = np.concatenate([[0], np.cumsum(nbytes)[:-1]])
    for j in range(int(nbytes.max())):
        sel = nbytes > j
        chunk = ((v[sel] >> np.uint64(7 * j)) & np.uint64(0x7F)).astype(np.uint8)
        more = (nbytes[sel] > j + 1).astype(np.uint8) << 7
        out[starts[sel] + j] = chunk | more
    return out.tobytes()


def varint_decode(data, count):
    """Inverse of `varint_encode` for `count` values."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero((b & 0x80) == 0)
    if ends.size != count:
        raise CompressedFileError(f"Corrupted position data: expected {count} varints, "
                                  f"found {ends.size}.")
    starts = np.concatenate([[0], ends[:-1] + 1])
    out = np.zeros(count, dtype=np.uint64)
    lengths = ends - starts + 1
    for j in range(int(lengths.max()) if count else 0):
        sel = lengths > j
        out[sel] |= (b[starts[sel] + j].astype(np.uint64) & np.uint64(0x7F)) << np.uint64(7 * j)
    return out


def _encode_positions(mask, codec):
    """Returns ``(encoding, bytes)``: the smaller (after the codec) of bitmask and delta varints."""
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    idx = np.flatnonzero(mask)
    bitmask = np.packbits(mask).tobytes()
    gaps = np.diff(np.concatenate([[-1], idx])) - 1
    delta = varint_encode(gaps)
    if len(_encode(delta, codec)) < len(_encode(bitmask, codec)):
        return "delta_varint", delta
    return "bitmask", bitmask


def _decode_positions(encoding, data, n, kept):
    if encoding == "bitmask":
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool)
        if int(bits.sum()) != kept:
            raise CompressedFileError("Corrupted bitmask: kept count differs from the header.")
        return bits
    if encoding == "delta_varint":
        gaps = varint_decode(data, kept).astype(np.int64)
        idx = np.cumsum(gaps + 1) - 1
        if kept and (idx[-1] >= n or idx[0] < 0):
            raise CompressedFileError("Corrupted position data: index out of range.")
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
        return mask
    raise CompressedFileError(f"Unknown position encoding {encoding!r}.")


# --------------------------------------------------------------------------- #
# Value quantisation
# --------------------------------------------------------------------------- #
def _kmeans_1d(values, n_clusters, seed=0):
    """1-D k-means with linear initialisation (Han et al. 2016), via scikit-learn."""
    from sklearn.cluster import KMeans

    v = values.astype(np.float64).reshape(-1, 1)
    init = np.linspace(v.min(), v.max(), n_clusters).reshape(-1, 1)
    km = KMeans(n_clusters=n_clusters, init=init, n_init=1, random_state=seed, max_iter=100)
    labels = km.fit_predict(v)
    return km.cluster_centers_.reshape(-1).astype(np.float32), labels.astype(np.uint8)


def _quantize(values, quantize, bits):
    """Returns ``(meta, payload bytes, dequantised float32 values)``."""
    values = np.asarray(values, dtype=np.float32)
    if quantize == "none" or values.size == 0:
        return {"encoding": "float32"}, values.tobytes(), values
    if quantize == "float16":
        q = values.astype(np.float16)
        return {"encoding": "float16"}, q.tobytes(), q.astype(np.float32)
    if quantize == "int8":
        scale = float(np.abs(values).max()) / 127.0 or 1.0
        q = np.clip(np.round(values / scale), -127, 127).astype(np.int8)
        return {"encoding": "int8", "scale": scale}, q.tobytes(), q.astype(np.float32) * np.float32(scale)
    # kmeans
    k = 2 ** int(bits)
    if values.size <= k:
        return {"encoding": "float32"}, values.tobytes(), values
    codebook, labels = _kmeans_1d(values, k)
    return ({"encoding": "kmeans", "codebook": [float(c) for c in codebook]}, labels.tobytes(),
            codebook[labels])


def _dequantize(meta, data, count):
    enc = meta["encoding"]
    if enc == "float32":
        return np.frombuffer(data, dtype=np.float32, count=count).copy()
    if enc == "float16":
        return np.frombuffer(data, dtype=np.float16, count=count).astype(np.float32)
    if enc == "int8":
        return np.frombuffer(data, dtype=np.int8, count=count).astype(np.float32) * np.float32(meta["scale"])
    if enc == "kmeans":
        codebook = np.asarray(meta["codebook"], dtype=np.float32)
        labels = np.frombuffer(data, dtype=np.uint8, count=count)
        if labels.size and labels.max() >= codebook.size:
            raise CompressedFileError("Corrupted k-means indices.")
        return codebook[labels]
    raise CompressedFileError(f"Unknown value encoding {enc!r}.")


# --------------------------------------------------------------------------- #
# Serialisation
# --------------------------------------------------------------------------- #
def _validate_options(quantize, bits, codec, small_weights):
    quantize = "none" if quantize in (None, False) else quantize
    if quantize not in QUANTIZERS:
        raise ValueError(f"Unknown quantize {quantize!r}; valid: {QUANTIZERS} (or None).")
    if codec not in CODECS:
        raise ValueError(f"Unknown codec {codec!r}; valid: {tuple(CODECS)}.")
    if small_weights not in SMALL_WEIGHTS:
        raise ValueError(f"Unknown small_weights {small_weights!r}; valid: {SMALL_WEIGHTS}.")
    if quantize == "kmeans" and not (isinstance(bits, int) and 1 <= bits <= 8):
        raise ValueError(f"kmeans bits must be an integer in [1, 8], got {bits!r}.")
    return quantize


def _default_state(model):
    """Identity basis on every large kernel, keeping its non-zero weights (exact)."""
    plans = bases.plan_model(model, "identity", warn=False)
    state = constraints.CompressionState(model, plans)
    state.set_masks({n: np.asarray(state.kernels[n].numpy()).reshape(-1) != 0
                     for n in state.plans}, project=False)
    return state


def _architecture(model):
    """The model's architecture as JSON-ready dict, without its compile state (optimizer)."""
    config = json.loads(model.to_json())
    config.pop("compile_config", None)
    return config


def serialize_compressed(model, quantize=None, bits=5, codec="lzma", small_weights="float32",
                         snap=True, state=None):
    """Encodes `model` into the compressed file format; returns ``(bytes, info)``.

    See `save_compressed` for the arguments; ``snap=False`` leaves the model untouched (used to
    measure sizes during training).
    """
    import keras

    quantize = _validate_options(quantize, bits, codec, small_weights)
    constraints.check_finite_weights(model)
    state = state or constraints.get_state(model) or _default_state(model)

    if snap:
        kept = state.snap()
    else:
        masks = state.mask_arrays()
        coeffs = state.coefficients()
        kept = {n: (masks[n], np.asarray(coeffs[n], np.float32)[masks[n]]) for n in masks}

    kernel_paths = {state.kernels[n].path: n for n in state.plans}
    blobs = io.BytesIO()

    def put(b):
        off = blobs.tell()
        blobs.write(b)
        return {"offset": off, "nbytes": len(b)}

    entries, layer_info, max_err = [], [], 0.0
    for w in model.weights:
        value = np.asarray(w.numpy())
        entry = {"path": w.path, "shape": [int(s) for s in value.shape], "dtype": str(value.dtype)}
        name = kernel_paths.get(w.path)
        if name is None:
            dt = np.float16 if (small_weights == "float16" and value.dtype.kind == "f") else value.dtype
            entry.update({"kind": "dense", "encoding": np.dtype(dt).name,
                          "blob": put(value.astype(dt).tobytes())})
            if dt != value.dtype:
                max_err = max(max_err, float(np.abs(value.astype(dt).astype(value.dtype) - value).max(initial=0)))
        else:
            plan = state.plans[name]
            mask, values = kept[name]
            pos_enc, pos_bytes = _encode_positions(mask, codec)
            meta, val_bytes, deq = _quantize(values, quantize, bits)
            if meta["encoding"] != "float32" and values.size:
                coeff = np.zeros(plan.n_coefficients, np.float32)
                coeff[mask] = deq
                rec = np.asarray(state.transforms[name].inverse(coeff))
                max_err = max(max_err, float(np.abs(rec - value).max()))
            entry.update({
                "kind": "compressed", "plan": plan.transform_dict(), "n_kept": int(mask.sum()),
                "positions": {"encoding": pos_enc, "blob": put(pos_bytes)},
                "values": {**meta, "blob": put(val_bytes)},
            })
            layer_info.append({"name": name, "kept": int(mask.sum()),
                               "n_coefficients": plan.n_coefficients,
                               "positions_encoding": pos_enc, "positions_bytes": len(pos_bytes),
                               "values_encoding": meta["encoding"], "values_bytes": len(val_bytes)})
        entries.append(entry)

    header = {
        "format": "dwt-keras-compressed",
        "version": VERSION,
        "keras_version": keras.__version__,
        "model_config": _architecture(model),
        "quantize": quantize,
        "bits": int(bits) if quantize == "kmeans" else None,
        "small_weights": small_weights,
        "scope": state.scope,
        "keep_approximation": state.keep_approximation,
        "max_abs_weight_error": max_err,
        "weights": entries,
    }
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw = struct.pack("<I", len(header_bytes)) + header_bytes + blobs.getvalue()
    payload = _encode(raw, codec)
    out = _HEADER.pack(MAGIC, VERSION, CODECS[codec], 0, len(payload), len(raw),
                       zlib.crc32(payload) & 0xFFFFFFFF) + payload
    info = {"bytes": len(out), "codec": codec, "quantize": quantize,
            "max_abs_weight_error": max_err, "layers": layer_info}
    return out, info


def save_compressed(model, path, quantize=None, bits=5, codec="lzma", small_weights="float32",
                    snap=True):
    """Writes `model` to one compressed file (atomically).

    Compressed kernels are those of the `CompressionState` attached to the model (by the
    compression callbacks or `compress_model`); a model without one is stored with the identity
    basis, keeping each large kernel's non-zero weights.

    Args:
        model: a Keras model.
        path: output path (conventionally ``*.dwtc``).
        quantize: ``None`` (float32, exact), ``"float16"``, ``"int8"`` or ``"kmeans"``.
        bits: codebook bits for ``"kmeans"`` (``2**bits`` centroids, 1-8).
        codec: ``"lzma"`` (default), ``"zlib"`` or ``"none"``.
        small_weights: ``"float32"`` or ``"float16"`` for the weights stored densely.
        snap: set each compressed kernel to the reconstruction of its stored coefficients first,
            so that the in-memory model and `load_compressed(path)` agree exactly (float32).

    Returns:
        A dict: ``bytes`` (file size), ``max_abs_weight_error`` (0.0 without quantisation),
        per-layer encodings and sizes.

    Example:

    >>> info = save_compressed(model, "model.dwtc", quantize="kmeans")   # doctest: +SKIP
    >>> restored = load_compressed("model.dwtc")                         # doctest: +SKIP
    """
    from dwt_keras.utils.io import atomic_write_bytes

    data, info = serialize_compressed(model, quantize=quantize, bits=bits, codec=codec,
                                      small_weights=small_weights, snap=snap)
    atomic_write_bytes(path, data)
    info["path"] = str(path)
    return info


def read_header(data):
    """Validates the container and returns ``(header dict, blob bytes)``."""
    if len(data) < _HEADER.size:
        raise CompressedFileError(
            f"Not a dwt-keras compressed file or truncated: {len(data)} bytes, the header alone "
            f"is {_HEADER.size}."
        )
    magic, version, codec_id, _, plen, rawlen, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CompressedFileError("Not a dwt-keras compressed file (bad magic bytes).")
    if version != VERSION:
        raise CompressedFileError(f"Unsupported compressed-file version {version} (this library "
                                  f"reads version {VERSION}).")
    codec = {v: k for k, v in CODECS.items()}.get(codec_id)
    if codec is None:
        raise CompressedFileError(f"Unknown codec id {codec_id}; the file is corrupted.")
    payload = data[_HEADER.size:]
    if len(payload) != plen:
        raise CompressedFileError(
            f"Compressed file truncated or padded: header says {plen} payload bytes, found "
            f"{len(payload)}."
        )
    if zlib.crc32(payload) & 0xFFFFFFFF != crc:
        raise CompressedFileError("Compressed file corrupted: CRC-32 checksum mismatch.")
    try:
        raw = _decode(payload, codec)
    except (lzma.LZMAError, zlib.error) as e:
        raise CompressedFileError(f"Compressed file corrupted: cannot decode payload ({e}).") from e
    if len(raw) != rawlen:
        raise CompressedFileError("Compressed file corrupted: decoded length mismatch.")
    (hlen,) = struct.unpack_from("<I", raw)
    try:
        header = json.loads(raw[4:4 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompressedFileError(f"Compressed file corrupted: bad header ({e}).") from e
    return header, raw[4 + hlen:]


def load_compressed(path, attach_state=True):
    """Loads a model written by `save_compressed`.

    Args:
        path: the file.
        attach_state: attach a `CompressionState` with the stored plans and masks, so that the
            model can be retrained with the masks held (install it) or saved again.

    Returns:
        A Keras model whose weights are the reconstructions of the stored coefficients.

    Raises:
        CompressedFileError (a ``ValueError``): not our format, truncated, or corrupted.
    """
    import keras

    with open(path, "rb") as f:
        data = f.read()
    header, blobs = read_header(data)
    model = keras.models.model_from_json(json.dumps(header["model_config"]))
    if len(model.weights) != len(header["weights"]):
        raise CompressedFileError(
            f"The stored architecture has {len(model.weights)} weights but the file lists "
            f"{len(header['weights'])}."
        )

    def blob(ref):
        off, n = int(ref["offset"]), int(ref["nbytes"])
        if off + n > len(blobs):
            raise CompressedFileError("Compressed file corrupted: blob out of range.")
        return blobs[off:off + n]

    values, plans, masks = [], [], {}
    for w, e in zip(model.weights, header["weights"]):
        shape = tuple(e["shape"])
        if tuple(int(s) for s in w.shape) != shape:
            raise CompressedFileError(f"Weight {e['path']}: stored shape {shape} differs from "
                                      f"the architecture's {tuple(w.shape)}.")
        if e["kind"] == "dense":
            arr = np.frombuffer(blob(e["blob"]), dtype=np.dtype(e["encoding"]),
                                count=int(np.prod(shape))).astype(np.dtype(e["dtype"]))
            values.append(arr.reshape(shape))
            continue
        plan = bases.LayerPlan.from_dict(e["plan"])
        mask = _decode_positions(e["positions"]["encoding"], blob(e["positions"]["blob"]),
                                 plan.n_coefficients, int(e["n_kept"]))
        vals = _dequantize(e["values"], blob(e["values"]["blob"]), int(e["n_kept"]))
        coeff = np.zeros(plan.n_coefficients, np.float32)
        coeff[mask] = vals
        kernel = np.asarray(bases.KernelTransform(plan).inverse(coeff))
        values.append(kernel.reshape(shape))
        plans.append(plan)
        masks[plan.layer] = mask
    model.set_weights(values)
    if attach_state and plans:
        state = constraints.CompressionState.create(
            model, plans, scope=header.get("scope", "global"),
            keep_approximation=header.get("keep_approximation", False))
        state.set_masks(masks, project=False)
    return model


def describe_compressed(path):
    """Header summary of a compressed file (without building the model)."""
    with open(path, "rb") as f:
        data = f.read()
    header, _ = read_header(data)
    return {k: v for k, v in header.items() if k not in ("model_config", "weights")} | {
        "n_weights": len(header["weights"]),
        "compressed_layers": [e["plan"]["layer"] for e in header["weights"] if e["kind"] == "compressed"],
    }
