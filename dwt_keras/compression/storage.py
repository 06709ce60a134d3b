"""One-file storage of a compressed model: kept coefficients + positions, quantised, entropy coded.

File layout (little-endian)::

    offset  size  field
    0       8     magic  b"DWTKCMP\\0"
    8       2     format version (3; versions 1 and 2 are still read)
    10      1     codec: 0 none, 1 zlib, 2 lzma (format 3: raw LZMA2; 1-2: the .xz container)
    11      1     reserved (0)
    12      8     payload length in bytes (as stored)
    20      8     raw payload length (after decoding)
    28      4     CRC-32 of the stored payload
    32      ...   payload

The decoded payload is a 4-byte header length, a UTF-8 JSON header and a blob area. The header
holds the model's architecture (format 3: compacted, see `architecture.compact_config`; 1-2: the
full ``model.to_json()``), the storage options, and one entry per weight in ``model.weights``
order: for a weight stored densely its encoding, for each compressed kernel its `LayerPlan`, its
layer's position in the flattened layer list (formats 2-3) and the encodings of the positions
and values of its kept coefficients. The codes are described in `coding`:

* positions: per-band range coding (format 3), or delta varints / a bitmask for the codec;
* values: float32 (exact), float16, int8, or a ``2**bits``-entry k-means codebook with the labels
  range-coded or bit-packed (format 3; ``bits`` may differ per layer);
* weights stored densely (biases, normalisation statistics, small kernels): float32, float16 or
  int8 (``small_weights``).

Weights are matched to the rebuilt model by position, never by name: entry ``i`` is
``model.weights[i]``, checked against the stored ``layer_index``. Layer names are not stable
across processes for a subclassed model (Keras numbers auto-named layers per process), weight
paths neither; the positions are.

``save_compressed`` first *snaps* each compressed kernel to the reconstruction of its kept
coefficients (``W = B^-1(c)``, computed eagerly as ``load_compressed`` does), so without
quantisation the loaded model's predictions equal the in-memory model's bit for bit. With
quantisation, the largest absolute weight error is returned (and stored in the header).
"""

import dataclasses
import io
import json
import lzma
import struct
import zlib

import numpy as np

from dwt_keras.compression import architecture, bases, coding, constraints

MAGIC = b"DWTKCMP\x00"
VERSION = 3
#: Format versions `load_compressed` reads (1: layers matched by weight position only; 2: plus
#: the layer's position; 3: entropy-coded positions and values, compact architecture).
READABLE_VERSIONS = (1, 2, 3)
CODECS = {"none": 0, "zlib": 1, "lzma": 2}
QUANTIZERS = ("none", "float16", "int8", "kmeans")
SMALL_WEIGHTS = coding.SMALL_WEIGHTS
#: Defaults of `save_compressed`, `CompressionMetrics` and the apps' storage settings: 6-bit
#: k-means values (a 64-entry codebook per layer, as Deep Compression's conv layers), lzma, and
#: the weights stored densely (biases...) in float16 when the values are quantised, float32
#: when they are not ("auto").
DEFAULT_QUANTIZE = "kmeans"
DEFAULT_BITS = 6
DEFAULT_CODEC = "lzma"
DEFAULT_SMALL_WEIGHTS = "auto"
_HEADER = struct.Struct("<8sHBBQQI")
_LZMA2 = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "dict_size": 1 << 24}]


class CompressedFileError(ValueError):
    """A compressed file is not ours, truncated, corrupted, or of an unsupported version."""


# --------------------------------------------------------------------------- #
# General-purpose codec over the payload
# --------------------------------------------------------------------------- #
def _encode(data, codec, version=VERSION):
    if codec == "none":
        return data
    if codec == "zlib":
        return zlib.compress(data, 9)
    if version >= 3:  # raw LZMA2: the .xz container's 48 bytes are pure overhead here
        return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA2)
    return lzma.compress(data, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE,
                         preset=9 | lzma.PRESET_EXTREME)


def _decode(data, codec, version=VERSION):
    if codec == "none":
        return data
    if codec == "zlib":
        return zlib.decompress(data)
    if version >= 3:
        return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=_LZMA2)
    return lzma.decompress(data, format=lzma.FORMAT_XZ)


# --------------------------------------------------------------------------- #
# Options
# --------------------------------------------------------------------------- #
def _validate_bits(bits, name="bits"):
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 8:
        raise ValueError(f"kmeans {name} must be an integer in [1, 8]. Received: {name}={bits!r}")


def _validate_options(quantize, bits, codec, small_weights):
    quantize = "none" if quantize in (None, False) else quantize
    if quantize not in QUANTIZERS:
        raise ValueError(f"Unknown quantize {quantize!r}; valid: {QUANTIZERS} (or None).")
    if codec not in CODECS:
        raise ValueError(f"Unknown codec {codec!r}; valid: {tuple(CODECS)}.")
    if small_weights not in SMALL_WEIGHTS + ("auto",):
        raise ValueError(f"Unknown small_weights {small_weights!r}; valid: "
                         f"{SMALL_WEIGHTS + ('auto',)}.")
    if quantize == "kmeans":
        if isinstance(bits, dict):
            for layer, b in bits.items():
                _validate_bits(b, f"bits[{layer!r}]")
        else:
            _validate_bits(bits)
    return quantize


def _layer_bits(bits, state):
    """``{layer: bits}`` for every compressed layer; layers a dict leaves out get DEFAULT_BITS."""
    if not isinstance(bits, dict):
        return {n: int(bits) for n in state.plans}
    unknown = sorted(set(bits) - set(state.plans))
    if unknown:
        raise ValueError(f"bits names layers that are not compressed: {unknown}; compressed "
                         f"layers: {sorted(state.plans)}.")
    return {n: int(bits.get(n, DEFAULT_BITS)) for n in state.plans}


# --------------------------------------------------------------------------- #
# Serialisation
# --------------------------------------------------------------------------- #
def _default_state(model):
    """Identity basis on every large kernel, keeping its non-zero weights (exact)."""
    plans = bases.plan_model(model, "identity", warn=False)
    state = constraints.CompressionState(model, plans)
    state.set_masks({n: np.asarray(state.kernels[n].numpy()).reshape(-1) != 0
                     for n in state.plans}, project=False)
    return state


def _kept_coefficients(state, snap):
    if snap:
        return state.snap()
    masks, coeffs = state.mask_arrays(), state.coefficients()
    return {n: (masks[n], np.asarray(coeffs[n], np.float32)[masks[n]]) for n in masks}


#: Plan fields a format 3 file leaves out: the rebuilt model's layer and weight give them.
_DERIVED_PLAN_FIELDS = ("layer", "layer_class", "kernel_shape", "n_weights")
#: Plan fields the file leaves out when they hold their implied value (``None``, the
#: description text, ``n_coefficients == n_weights`` of a non-redundant transform,
#: ``pre_shape == x_shape``); `_full_plan` restores them. About 180 bytes of a LeNet-300 file.
_IMPLIED = {"axes": None, "fallback": None, "redundant": False, "wavelet": None, "mode": None,
            "perm": None}


def _stored_plan(plan):
    # transform_dict: the transform only, not the auto basis' record of its candidates
    d = {k: v for k, v in plan.transform_dict().items() if k not in _DERIVED_PLAN_FIELDS}
    for k, implied in _IMPLIED.items():
        if k == "axes" or d.get(k) == implied:
            d.pop(k, None)
    if not plan.redundant and d["n_coefficients"] == plan.n_weights:
        d.pop("n_coefficients")
    if d["pre_shape"] == d["x_shape"]:
        d.pop("pre_shape")
    return d


def _full_plan(stored, layer, shape):
    n_weights = int(np.prod(shape))
    full = {"layer": layer.name, "layer_class": type(layer).__name__,
            "kernel_shape": list(shape), "n_weights": n_weights, **_IMPLIED,
            "n_coefficients": n_weights, "pre_shape": stored.get("x_shape"), **stored}
    if full["axes"] is None:
        full["axes"] = f"{full['view']} (as stored)"
    return full


def _blob_refs(header):
    """The blob references of `header`'s entries in file order, with their offsets (implied in
    format 3: blobs follow each other)."""
    refs = []
    for e in header["weights"]:
        if e["kind"] == "dense":
            refs.append(e["blob"])
        elif e["kind"] == "compressed":
            refs.extend([e["positions"]["blob"], e["values"]["blob"]])
    offset = 0
    for ref in refs:
        if "offset" not in ref:
            ref["offset"] = offset
        offset = int(ref["offset"]) + int(ref["nbytes"])
    return refs


def serialize_compressed(model, quantize=DEFAULT_QUANTIZE, bits=DEFAULT_BITS, codec=DEFAULT_CODEC,
                         small_weights=DEFAULT_SMALL_WEIGHTS, snap=True, state=None):
    """Encodes `model` into the compressed file format; returns ``(bytes, info)``.

    See `save_compressed` for the arguments; ``snap=False`` leaves the model untouched (used to
    measure sizes during training).
    """
    import keras

    quantize = _validate_options(quantize, bits, codec, small_weights)
    if small_weights == "auto":
        small_weights = "float32" if quantize == "none" else "float16"
    constraints.check_finite_weights(model)
    state = state or constraints.get_state(model) or _default_state(model)
    layer_bits = _layer_bits(bits, state) if quantize == "kmeans" else None
    kept = _kept_coefficients(state, snap)

    def after_codec(data):
        return len(_encode(data, codec))

    kernel_names = {id(state.kernels[n]): n for n in state.plans}
    layer_index = {id(layer): i for i, (_, layer) in enumerate(bases.named_layers(model))}
    blobs = io.BytesIO()

    def put(b):  # format 3: blobs follow each other in entry order (offsets implied)
        blobs.write(b)
        return {"nbytes": len(b)}

    entries, layer_info, max_err = [], [], 0.0
    for w in model.weights:
        value = np.asarray(w.numpy())
        entry = {"shape": [int(s) for s in value.shape]}
        if value.dtype != np.float32:
            entry["dtype"] = str(value.dtype)
        name = kernel_names.get(id(w))
        if name is None:
            meta, data, decoded = coding.encode_dense(value, small_weights)
            entry.update({"kind": "dense", **meta, "blob": put(data)})
            if value.dtype.kind == "f" and value.size:
                max_err = max(max_err, float(np.abs(decoded.astype(np.float64) - value).max()))
        else:
            plan = state.plans[name]
            mask, values = kept[name]
            pos_enc, pos_bytes = coding.encode_positions(mask, after_codec,
                                                         coding.band_sizes(plan))
            meta, val_bytes, deq = coding.quantize_values(
                values, quantize, layer_bits[name] if layer_bits else None, after_codec)
            if meta["encoding"] != "float32" and values.size:
                coeff = np.zeros(plan.n_coefficients, np.float32)
                coeff[mask] = deq
                rec = np.asarray(state.transforms[name].inverse(coeff))
                max_err = max(max_err, float(np.abs(rec - value).max()))
            entry.update({
                "kind": "compressed", "plan": _stored_plan(plan), "n_kept": int(mask.sum()),
                "layer_index": layer_index[id(state.layers[name])],
                "positions": {"encoding": pos_enc, "blob": put(pos_bytes)},
                "values": {**meta, "blob": put(val_bytes)},
            })
            layer_info.append({"name": name, "kept": int(mask.sum()),
                               "n_coefficients": plan.n_coefficients,
                               "positions_encoding": pos_enc, "positions_bytes": len(pos_bytes),
                               "values_encoding": meta["encoding"],
                               "bits": meta.get("bits"), "values_bytes": len(val_bytes)})
        entries.append(entry)

    header = {
        "format": "dwt-keras-compressed",
        "version": VERSION,
        "keras_version": keras.__version__,
        "model_config": architecture.compact_config(model),
        "quantize": quantize,
        "bits": layer_bits,
        "small_weights": small_weights,
        "scope": state.scope,
        "keep_approximation": state.keep_approximation,
        "max_abs_weight_error": max_err,
        "weights": entries,
    }
    out = pack_container(header, blobs.getvalue(), codec)
    info = {"bytes": len(out), "codec": codec, "quantize": quantize, "bits": layer_bits,
            "small_weights": small_weights, "max_abs_weight_error": max_err,
            "layers": layer_info}
    return out, info


def save_compressed(model, path, quantize=DEFAULT_QUANTIZE, bits=DEFAULT_BITS, codec=DEFAULT_CODEC,
                    small_weights=DEFAULT_SMALL_WEIGHTS, snap=True):
    """Writes `model` to one compressed file (atomically).

    Compressed kernels are those of the `CompressionState` attached to the model (by the
    compression callbacks or `compress_model`); a model without one is stored with the identity
    basis, keeping each large kernel's non-zero weights.

    Args:
        model: a Keras model.
        path: output path (conventionally ``*.dwtc``).
        quantize: ``"kmeans"`` (default: a ``2**bits``-entry codebook per layer, the labels
            entropy coded), ``"int8"``, ``"float16"``, or ``None`` (float32 values: the loaded
            model equals the in-memory one).
        bits: codebook bits for ``"kmeans"``, 1-8 (default 6): an int for every layer, or
            ``{layer name: bits}`` (layers left out get 6); `bitwidth.choose_bits` picks them
            on a validation set.
        codec: ``"lzma"`` (default), ``"zlib"`` or ``"none"``: the general-purpose codec over
            the header and the codes that are not entropy coded already.
        small_weights: ``"float32"``, ``"float16"`` or ``"int8"`` for the weights stored densely
            (biases, normalisation statistics, kernels left dense); ``"auto"`` (default):
            float16 when `quantize` rounds the values, float32 with ``quantize=None``.
        snap: set each compressed kernel to the reconstruction of its stored coefficients first,
            so that the in-memory model and `load_compressed(path)` agree exactly (float32).

    Returns:
        A dict: ``bytes`` (file size), ``max_abs_weight_error`` (0.0 when nothing is rounded),
        the options used and per-layer encodings and sizes.

    Example:

    >>> info = save_compressed(model, "model.dwtc")  # 6-bit k-means, float16 biases, lzma  # doctest: +SKIP
    >>> restored = load_compressed("model.dwtc")                                         # doctest: +SKIP
    """
    from dwt_keras.utils.io import atomic_write_bytes

    data, info = serialize_compressed(model, quantize=quantize, bits=bits, codec=codec,
                                      small_weights=small_weights, snap=snap)
    atomic_write_bytes(path, data)
    info["path"] = str(path)
    return info


def pack_container(header, blobs, codec, version=VERSION):
    """The file's bytes: container header, then the codec's encoding of the 4-byte header
    length, the JSON `header` and the `blobs` (inverse of `read_header`)."""
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw = struct.pack("<I", len(header_bytes)) + header_bytes + blobs
    payload = _encode(raw, codec, version)
    return _HEADER.pack(MAGIC, version, CODECS[codec], 0, len(payload), len(raw),
                        zlib.crc32(payload) & 0xFFFFFFFF) + payload


def _container(data):
    """Validates the container: ``(version, codec, payload)``."""
    if len(data) < _HEADER.size:
        raise CompressedFileError(
            f"Not a dwt-keras compressed file or truncated: {len(data)} bytes, the header alone "
            f"is {_HEADER.size}."
        )
    magic, version, codec_id, _, plen, rawlen, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CompressedFileError("Not a dwt-keras compressed file (bad magic bytes).")
    if version not in READABLE_VERSIONS:
        raise CompressedFileError(
            f"Unsupported compressed-file version {version} (this library reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); a newer dwt-keras wrote it: upgrade.")
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
    return version, codec, payload, rawlen


def read_header(data):
    """Validates the container and returns ``(header dict, blob bytes)``."""
    version, codec, payload, rawlen = _container(data)
    try:
        raw = _decode(payload, codec, version)
    except (lzma.LZMAError, zlib.error) as e:
        raise CompressedFileError(f"Compressed file corrupted: cannot decode payload ({e}).") from e
    if len(raw) != rawlen or len(raw) < 4:
        raise CompressedFileError("Compressed file corrupted: decoded length mismatch.")
    (hlen,) = struct.unpack_from("<I", raw)
    try:
        header = json.loads(raw[4:4 + hlen].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CompressedFileError(f"Compressed file corrupted: bad header ({e}).") from e
    if not isinstance(header, dict):
        raise CompressedFileError("Compressed file corrupted: the header is not an object.")
    header.setdefault("version", version)
    return header, raw[4 + hlen:]


def _blob(blobs, ref):
    off, n = int(ref["offset"]), int(ref["nbytes"])
    if off < 0 or n < 0 or off + n > len(blobs):
        raise CompressedFileError(f"Compressed file corrupted: blob [{off}, {off + n}) out of "
                                  f"range (the blob area holds {len(blobs)} bytes).")
    return blobs[off:off + n]


def _decode_weight(e, i, w, blobs, owners):
    """``(value, plan or None, mask or None)`` of weight `i` from its header entry `e`."""
    shape = tuple(int(s) for s in e["shape"])
    if tuple(int(s) for s in w.shape) != shape:
        raise CompressedFileError(f"Weight {i} ('{w.path}'): stored shape {shape} differs from "
                                  f"the architecture's {tuple(w.shape)}.")
    dtype = e.get("dtype", "float32")
    if e["kind"] == "dense":
        return coding.decode_dense(e, _blob(blobs, e["blob"]), shape, dtype), None, None
    if e["kind"] != "compressed":
        raise CompressedFileError(f"Unknown weight kind {e['kind']!r}.")
    plan = _plan_for(e, i, w, owners)
    n_kept = int(e["n_kept"])
    if not 0 <= n_kept <= plan.n_coefficients:
        raise CompressedFileError(f"Compressed file corrupted: {n_kept} kept coefficients of "
                                  f"{plan.n_coefficients}.")
    mask = coding.decode_positions(e["positions"]["encoding"], _blob(blobs, e["positions"]["blob"]),
                                   plan.n_coefficients, n_kept, coding.band_sizes(plan))
    vals = coding.dequantize_values(e["values"], _blob(blobs, e["values"]["blob"]), n_kept)
    coeff = np.zeros(plan.n_coefficients, np.float32)
    coeff[mask] = vals
    kernel = np.asarray(bases.KernelTransform(plan).inverse(coeff))
    return kernel.reshape(shape), plan, mask


def _kernel_owners(model):
    """``{id(kernel variable): (position in `bases.named_layers`, key, layer)}``."""
    owners = {}
    for i, (key, layer) in enumerate(bases.named_layers(model)):
        kernel = bases.kernel_variable(layer)  # a kernel, or an Embedding's embeddings
        if kernel is not None:
            owners[id(kernel)] = (i, key, layer)
    return owners


def _plan_for(entry, weight_index, weight, owners):
    """The entry's plan, for the rebuilt model's layer that owns `weight` (the stable key is the
    weight's position, checked against the stored layer position)."""
    index, key, layer = owners.get(id(weight), (None, None, None))
    stored = entry.get("layer_index")
    if layer is None or (stored is not None and int(stored) != index):
        raise CompressedFileError(
            f"Weight {weight_index} is stored as the compressed kernel of layer {stored} "
            f"('{entry['plan'].get('layer', '?')}'), but in the rebuilt model it is "
            f"'{weight.path}' of layer {index}: the architecture does not match the weights.")
    plan = bases.LayerPlan.from_dict(_full_plan(entry["plan"], layer, weight.shape))
    return dataclasses.replace(plan, layer=key)


def load_compressed(path, attach_state=True, form="dense"):
    """Loads a model written by `save_compressed`.

    Args:
        path: the file.
        attach_state: attach a `CompressionState` with the stored plans and masks, so that the
            model can be retrained with the masks held (install it) or saved again.

        form: ``"dense"``: dense kernels, the reconstructions of the stored coefficients;
            ``"coefficient"``: `coefficient_domain.WaveletDomainDense` layers holding only the
            kept coefficients (see `coefficient_domain.to_coefficient_domain`; kernels it does
            not support stay masked dense), same predictions within float32 round-off.

    Returns:
        A Keras model whose weights are the reconstructions of the stored coefficients.

    Raises:
        CompressedFileError (a ``ValueError``): not our format, truncated, or corrupted.
    """
    if form not in ("dense", "coefficient"):
        raise ValueError(f"`form` must be 'dense' or 'coefficient'. Received: form={form!r}")
    import keras

    with open(path, "rb") as f:
        data = f.read()
    header, blobs = read_header(data)
    if not isinstance(header.get("model_config"), dict) or not isinstance(header.get("weights"), list):
        raise CompressedFileError("Compressed file corrupted: the header has no architecture "
                                  "or weight list.")
    model = keras.models.model_from_json(json.dumps(header["model_config"]))
    if len(model.weights) != len(header["weights"]):
        raise CompressedFileError(
            f"The stored architecture has {len(model.weights)} weights but the file lists "
            f"{len(header['weights'])}."
        )
    owners = _kernel_owners(model)
    values, plans, masks = [], [], {}
    for i, (w, e) in enumerate(zip(model.weights, header["weights"])):
        try:
            if i == 0:
                _blob_refs(header)
            value, plan, mask = _decode_weight(e, i, w, blobs, owners)
        except CompressedFileError:
            raise
        except (KeyError, TypeError, IndexError, ValueError) as err:
            # A valid container whose content does not add up (a writer's bug, or an edit).
            raise CompressedFileError(f"Compressed file corrupted: weight {i} cannot be decoded "
                                      f"({type(err).__name__}: {err}).") from err
        values.append(value)
        if plan is not None:
            plans.append(plan)
            masks[plan.layer] = mask
    model.set_weights(values)
    if (attach_state or form == "coefficient") and plans:
        state = constraints.CompressionState.create(
            model, plans, scope=header.get("scope", "global"),
            keep_approximation=header.get("keep_approximation", False))
        state.set_masks(masks, project=False)
    if form == "coefficient" and plans:
        from dwt_keras.compression import coefficient_domain

        return coefficient_domain.to_coefficient_domain(model)
    return model


def describe_compressed(path):
    """Header summary of a compressed file (without building the model)."""
    with open(path, "rb") as f:
        data = f.read()
    header, _ = read_header(data)
    return {k: v for k, v in header.items() if k not in ("model_config", "weights")} | {
        "n_weights": len(header["weights"]),
        "compressed_layers": [e["plan"].get("layer", e.get("layer_index"))
                              for e in header["weights"] if e["kind"] == "compressed"],
    }


def byte_breakdown(data):
    """Where the bytes of a compressed file go.

    The general-purpose codec compresses the header and the blobs together, so each part's
    share is measured as the size of that part compressed *alone* with the file's codec
    (``coded``; entropy-coded blobs are already final). The parts' sum therefore differs a
    little from the payload; ``file`` is the file's true size.

    Args:
        data: the file's bytes.

    Returns:
        ``{"file", "container", "payload", "parts": {part: {"raw", "coded"}}}`` with parts
        ``architecture``, ``header`` (the rest of the JSON header), ``positions``,
        ``codebooks``, ``values`` (the kept values less their codebooks) and ``dense`` (the
        weights stored densely).
    """
    version, codec, payload, _ = _container(data)
    header, blobs = read_header(data)
    _blob_refs(header)
    arch = json.dumps(header.pop("model_config"), separators=(",", ":")).encode("utf-8")
    parts = {k: [] for k in ("positions", "codebooks", "values", "dense")}
    final = {"positions": [], "values": []}  # entropy-coded: not left to the codec
    for e in header["weights"]:
        if e["kind"] == "dense":
            parts["dense"].append(_blob(blobs, e["blob"]))
            continue
        pos = _blob(blobs, e["positions"]["blob"])
        (final if e["positions"]["encoding"] == "range_bands" else parts)["positions"].append(pos)
        val, meta = _blob(blobs, e["values"]["blob"]), e["values"]
        if meta["encoding"] in ("kmeans_range", "kmeans_packed"):
            k = 2 * 2 ** int(meta["bits"])
            parts["codebooks"].append(val[:k])
            (final if meta["encoding"] == "kmeans_range" else parts)["values"].append(val[k:])
        elif meta["encoding"] == "kmeans":
            parts["codebooks"].append(json.dumps(meta.pop("codebook")).encode())
            parts["values"].append(val)
        else:
            parts["values"].append(val)

    def coded(chunks):
        joined = b"".join(chunks)
        return len(_encode(joined, codec, version)) if joined else 0

    out = {"architecture": {"raw": len(arch), "coded": coded([arch])}}
    rest = json.dumps(header, separators=(",", ":")).encode("utf-8")
    out["header"] = {"raw": len(rest), "coded": coded([rest])}
    for k, chunks in parts.items():
        done = b"".join(final.get(k, []))
        out[k] = {"raw": sum(map(len, chunks)) + len(done), "coded": coded(chunks) + len(done)}
    return {"file": len(data), "container": _HEADER.size, "payload": len(payload),
            "version": version, "codec": codec, "parts": out}
