"""The codes inside a compressed file: positions of the kept coefficients, their values, and the
weights stored densely.

Positions (``mask``: which coefficients of a kernel are kept):

* ``"range_bands"`` (format 3): the kept count of each wavelet band (LEB128 varints), then the
  mask range-coded (`constriction`'s range coder) under a Bernoulli model whose probability is
  that band's kept share. The bands of a wavelet plan differ in density by orders of magnitude
  (the coarse approximation is mostly kept, the finest details mostly not); within a band the
  measured masks are close to independent (per-position, per-unit and parent-child contexts gave
  no further gain on LeNet-300-100 and LeNet-5), so this is within ~1 % of the mask's entropy
  under that model.
* ``"delta_varint"``, ``"bitmask"``: LEB128 varints of the gaps between kept indices, or
  ``numpy.packbits`` of the mask, for the file's general-purpose codec to compress (formats 1-2;
  still chosen in format 3 when smaller, e.g. for a nearly dense mask).

Values (the kept coefficients):

* ``"kmeans_range"`` (format 3): a ``2**bits``-entry float16 codebook (k-means, linear
  initialisation as in Deep Compression, sorted), the label histogram (varints) and the labels
  range-coded under it; ``"kmeans_packed"``: the same codebook and the labels bit-packed at
  ``bits`` bits each, when that is smaller (a flat histogram, few values).
* ``"float32"`` (exact), ``"float16"``, ``"int8"`` (symmetric, one scale per layer); ``"kmeans"``
  (formats 1-2: float32 codebook in the header, one byte per label).

Dense weights (biases, normalisation statistics, kernels left dense): ``"float32"``,
``"float16"`` (a weight that does not fit float16 stays float32) or ``"int8"`` (stored as
``"int8_scaled"``: symmetric, one scale per weight).
"""

import numpy as np


class CodingError(ValueError):
    """Encoded data that does not decode (the storage layer reports it as a corrupted file)."""


# --------------------------------------------------------------------------- #
# LEB128 varints
# --------------------------------------------------------------------------- #
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


def varint_read(data, count):
    """The first `count` varints of `data`: ``(values as uint64, bytes used)``."""
    b = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero((b & 0x80) == 0)[:count]
    if ends.size != count:
        raise CodingError(f"Expected {count} varints, found {ends.size}.")
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    lengths = ends - starts + 1
    if count and lengths.max() > 10:
        raise CodingError("A varint longer than 64 bits.")
    out = np.zeros(count, dtype=np.uint64)
    for j in range(int(lengths.max()) if count else 0):
        sel = lengths > j
        out[sel] |= (b[starts[sel] + j].astype(np.uint64) & np.uint64(0x7F)) << np.uint64(7 * j)
    return out, int(ends[-1]) + 1 if count else 0


def varint_decode(data, count):
    """Inverse of `varint_encode` for exactly `count` values filling `data`."""
    values, used = varint_read(data, count)
    if used != len(data):
        raise CodingError(f"Expected {count} varints, found trailing bytes.")
    return values


# --------------------------------------------------------------------------- #
# Range coding (constriction)
# --------------------------------------------------------------------------- #
def _constriction():
    try:
        import constriction
    except ImportError as e:  # a declared dependency; say how to get it
        raise ImportError("Entropy-coded dwt-keras files need the 'constriction' package: "
                          "pip install constriction") from e
    return constriction


class RangeEncoder:
    """A queue of symbols coded one model at a time; `bytes()` is the whole stream."""

    def __init__(self):
        self._c = _constriction()
        self._enc = self._c.stream.queue.RangeEncoder()

    def bernoulli(self, bits, p):
        self._enc.encode(np.asarray(bits, dtype=np.int32),
                         self._c.stream.model.Bernoulli(float(p), perfect=False))

    def categorical(self, symbols, probabilities):
        self._enc.encode(np.asarray(symbols, dtype=np.int32),
                         self._c.stream.model.Categorical(np.asarray(probabilities, np.float64),
                                                          perfect=False))

    def bytes(self):
        return self._enc.get_compressed().astype("<u4").tobytes()


class RangeDecoder:
    """Decodes what `RangeEncoder` wrote, in the same order and with the same models."""

    def __init__(self, data):
        if len(data) % 4:
            raise CodingError("A range-coded stream is a whole number of 32-bit words.")
        self._c = _constriction()
        self._dec = self._c.stream.queue.RangeDecoder(
            np.frombuffer(data, dtype="<u4").astype(np.uint32))

    def bernoulli(self, count, p):
        return self._dec.decode(self._c.stream.model.Bernoulli(float(p), perfect=False), count)

    def categorical(self, count, probabilities):
        return self._dec.decode(self._c.stream.model.Categorical(
            np.asarray(probabilities, np.float64), perfect=False), count)


# --------------------------------------------------------------------------- #
# Positions
# --------------------------------------------------------------------------- #
def band_sizes(plan):
    """Sizes of the wavelet bands of `plan`'s flat coefficient vector, coarsest first (one band
    for identity, dct and redundant plans). Computed from the plan alone: it is part of the file
    format, so it must not depend on how a transform lays out its work."""
    import pywt

    n = int(plan.n_coefficients)
    if plan.basis != "wavelet" or not plan.level:
        return [n]
    axes = list(plan.transform_axes)
    other = int(np.prod([s for a, s in enumerate(plan.x_shape) if a not in axes]))
    dec_len = pywt.Wavelet(plan.wavelet).dec_len
    lens, per_level = [int(plan.x_shape[a]) for a in axes], []
    for _ in range(int(plan.level)):
        lens = [pywt.dwt_coeff_len(m, dec_len, plan.mode) for m in lens]
        per_level.append(int(np.prod(lens)) * other)
    sizes = [per_level[-1]]
    for size in reversed(per_level):
        sizes.extend([size] * (2 ** len(axes) - 1))
    return sizes if sum(sizes) == n else [n]


def _range_bands(mask, sizes):
    parts = np.split(mask, np.cumsum(sizes)[:-1])
    counts = [int(p.sum()) for p in parts]
    enc = RangeEncoder()
    for part, k in zip(parts, counts):
        if 0 < k < part.size:
            enc.bernoulli(part, k / part.size)
    return varint_encode(counts) + enc.bytes()


def _range_bands_decode(data, sizes, kept):
    counts, used = varint_read(data, len(sizes))
    counts = counts.astype(np.int64)
    if np.any(counts > np.asarray(sizes)) or int(counts.sum()) != kept:
        raise CodingError("Band counts do not add up to the kept count.")
    dec, parts = RangeDecoder(data[used:]), []
    for size, k in zip(sizes, counts):
        if k == 0 or k == size:
            parts.append(np.full(size, k == size))
        else:
            parts.append(dec.bernoulli(size, k / size).astype(bool))
    mask = np.concatenate(parts) if parts else np.zeros(0, bool)
    if int(mask.sum()) != kept:
        raise CodingError("Decoded mask does not match the band counts.")
    return mask


def encode_positions(mask, compressed_size, sizes=None):
    """Returns ``(encoding, bytes)``: the smallest of the position codes.

    Args:
        mask: boolean mask of the kept coefficients (flat).
        compressed_size: ``bytes -> int``, the size after the file's general-purpose codec (the
            varint and bitmask codes are left to it; the range code is final).
        sizes: band sizes (`band_sizes`) for ``"range_bands"``; ``None`` leaves that code out
            (formats 1-2).
    """
    mask = np.asarray(mask, dtype=bool).reshape(-1)
    idx = np.flatnonzero(mask)
    candidates = {"bitmask": np.packbits(mask).tobytes(),
                  "delta_varint": varint_encode(np.diff(np.concatenate([[-1], idx])) - 1)}
    cost = {k: compressed_size(v) for k, v in candidates.items()}
    if sizes is not None:
        candidates["range_bands"] = _range_bands(mask, sizes)
        cost["range_bands"] = len(candidates["range_bands"])
    best = min(cost, key=lambda k: (cost[k], k != "range_bands"))
    return best, candidates[best]


def decode_positions(encoding, data, n, kept, sizes=None):
    """Inverse of `encode_positions`: the boolean mask of `n` coefficients, `kept` of them set."""
    if encoding == "bitmask":
        if len(data) != (n + 7) // 8:
            raise CodingError(f"A bitmask of {len(data)} bytes for {n} coefficients.")
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=n).astype(bool)
        if int(bits.sum()) != kept:
            raise CodingError("Bitmask: kept count differs from the header.")
        return bits
    if encoding == "delta_varint":
        gaps = varint_decode(data, kept).astype(np.int64)
        idx = np.cumsum(gaps + 1) - 1
        if kept and (idx[-1] >= n or idx[0] < 0):
            raise CodingError("Position data: index out of range.")
        mask = np.zeros(n, dtype=bool)
        mask[idx] = True
        return mask
    if encoding == "range_bands":
        if sizes is None or sum(sizes) != n:
            raise CodingError("range_bands positions need the plan's band sizes.")
        return _range_bands_decode(data, sizes, kept)
    raise CodingError(f"Unknown position encoding {encoding!r}.")


# --------------------------------------------------------------------------- #
# Values
# --------------------------------------------------------------------------- #
def kmeans_1d(values, n_clusters, seed=0):
    """1-D k-means with linear initialisation (Han et al. 2016), via scikit-learn:
    ``(centroids sorted ascending, labels)``."""
    from sklearn.cluster import KMeans

    v = values.astype(np.float64).reshape(-1, 1)
    init = np.linspace(v.min(), v.max(), n_clusters).reshape(-1, 1)
    km = KMeans(n_clusters=n_clusters, init=init, n_init=1, random_state=seed, max_iter=100)
    labels = km.fit_predict(v)
    centres = km.cluster_centers_.reshape(-1)
    order = np.argsort(centres, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return centres[order].astype(np.float32), rank[labels].astype(np.uint8)


def _pack_bits(labels, bits):
    b = np.unpackbits(labels.astype(np.uint8)[:, None], axis=1)[:, 8 - bits:]
    return np.packbits(b.reshape(-1)).tobytes()


def _unpack_bits(data, bits, count):
    if len(data) != (count * bits + 7) // 8:
        raise CodingError(f"Packed labels: {len(data)} bytes for {count} x {bits} bits.")
    b = np.unpackbits(np.frombuffer(data, np.uint8), count=count * bits).reshape(count, bits)
    return np.packbits(np.pad(b, ((0, 0), (8 - bits, 0))), axis=1).reshape(-1)


def _kmeans_entropy_coded(values, bits, compressed_size):
    k = 2 ** bits
    codebook, labels = kmeans_1d(values, k)
    codebook = codebook.astype(np.float16)
    head = codebook.astype("<f2").tobytes()
    hist = np.bincount(labels, minlength=k)
    enc = RangeEncoder()
    enc.categorical(labels, hist / hist.sum())
    ranged = varint_encode(hist) + enc.bytes()
    packed = _pack_bits(labels, bits)
    deq = codebook.astype(np.float32)[labels]
    if len(ranged) <= compressed_size(packed):
        return {"encoding": "kmeans_range", "bits": bits}, head + ranged, deq
    return {"encoding": "kmeans_packed", "bits": bits}, head + packed, deq


def quantize_values(values, quantize, bits, compressed_size=len, entropy_coded=True):
    """Returns ``(meta, payload bytes, dequantised float32 values)`` for the kept values.

    ``entropy_coded=False`` writes format 1-2 encodings (``"kmeans"`` with the codebook in
    `meta`)."""
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
    k = 2 ** int(bits)
    if values.size <= k:  # a codebook would cost more than the values
        return {"encoding": "float32"}, values.tobytes(), values
    if entropy_coded:
        return _kmeans_entropy_coded(values, int(bits), compressed_size)
    codebook, labels = kmeans_1d(values, k)
    return ({"encoding": "kmeans", "codebook": [float(c) for c in codebook]}, labels.tobytes(),
            codebook[labels])


def dequantize_values(meta, data, count):
    """Inverse of `quantize_values`: `count` float32 values."""
    enc = meta["encoding"]
    fixed = {"float32": np.float32, "float16": np.float16, "int8": np.int8}
    if enc in fixed:
        dtype = np.dtype(fixed[enc])
        if len(data) != count * dtype.itemsize:
            raise CodingError(f"{enc} values: {len(data)} bytes for {count} values.")
        out = np.frombuffer(data, dtype=dtype, count=count).astype(np.float32)
        return out * np.float32(meta["scale"]) if enc == "int8" else out
    if enc == "kmeans":
        codebook = np.asarray(meta["codebook"], dtype=np.float32)
        labels = np.frombuffer(data, dtype=np.uint8, count=count)
        if labels.size and labels.max() >= codebook.size:
            raise CodingError("k-means indices beyond the codebook.")
        return codebook[labels]
    if enc in ("kmeans_range", "kmeans_packed"):
        bits = int(meta["bits"])
        if not 1 <= bits <= 8:
            raise CodingError(f"k-means bits {bits} outside [1, 8].")
        k = 2 ** bits
        codebook = np.frombuffer(data[:2 * k], dtype="<f2").astype(np.float32)
        if codebook.size != k:
            raise CodingError("Truncated k-means codebook.")
        rest = data[2 * k:]
        if enc == "kmeans_packed":
            labels = _unpack_bits(rest, bits, count)
        else:
            hist, used = varint_read(rest, k)
            if int(hist.sum()) != count:
                raise CodingError("k-means label histogram does not add up to the kept count.")
            labels = RangeDecoder(rest[used:]).categorical(count, hist / hist.sum())
        if labels.size and labels.max() >= k:
            raise CodingError("k-means indices beyond the codebook.")
        return codebook[labels]
    raise CodingError(f"Unknown value encoding {enc!r}.")


# --------------------------------------------------------------------------- #
# Weights stored densely
# --------------------------------------------------------------------------- #
SMALL_WEIGHTS = ("float32", "float16", "int8")
_FLOAT16_MAX = float(np.finfo(np.float16).max)


def encode_dense(value, small_weights):
    """``(meta, bytes, decoded value)`` of a weight stored densely (biases, statistics...)."""
    value = np.asarray(value)
    if value.dtype.kind != "f" or small_weights == "float32" or value.size == 0:
        return {"encoding": value.dtype.name}, value.tobytes(), value
    if small_weights == "float16" or np.abs(value).max() == 0:
        if np.abs(value).max() > _FLOAT16_MAX:
            return {"encoding": value.dtype.name}, value.tobytes(), value
        q = value.astype(np.float16)
        return {"encoding": "float16"}, q.tobytes(), q.astype(value.dtype)
    scale = float(np.abs(value).max()) / 127.0
    q = np.clip(np.round(value / scale), -127, 127).astype(np.int8)
    return ({"encoding": "int8_scaled", "scale": scale}, q.tobytes(),
            (q.astype(np.float32) * np.float32(scale)).astype(value.dtype))


def decode_dense(meta, data, shape, dtype):
    """Inverse of `encode_dense`."""
    count = int(np.prod(shape))
    scaled = meta["encoding"] == "int8_scaled"
    enc = np.dtype("int8" if scaled else meta["encoding"])
    if len(data) != count * enc.itemsize:
        raise CodingError(f"A blob of {len(data)} bytes where {count * enc.itemsize} are needed.")
    out = np.frombuffer(data, dtype=enc, count=count)
    if scaled:
        out = out.astype(np.float32) * np.float32(meta["scale"])
    return out.astype(np.dtype(dtype)).reshape(shape)
