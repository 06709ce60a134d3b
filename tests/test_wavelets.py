"""PyWavelets-oracle tests for dwt_keras.wavelets.

Every discrete wavelet of ``pywt.wavelist(kind='discrete')`` is checked in
every supported mode for 1-D (single and multi level) transforms, against
PyWavelets in float64. Sizes are drawn per wavelet with a seeded RNG from three
classes: shorter than the filter, odd, and even/longer than the filter, so the
boundary handling is exercised for every mode. The 2-D and the slice-kernel
tests (which consume the same per-axis plans) give each wavelet a rotating
share of the modes in the default run, so every wavelet and every mode is
covered; ``python -m pytest -m slow`` runs their full wavelet x mode grid.
"""

import warnings
import zlib

import keras
import numpy as np
import pytest
import pywt

from dwt_keras import wavelets as W
from dwt_keras.transforms import _plan

WAVELETS = pywt.wavelist(kind="discrete")
# PyWavelets' list, not the implementation's own: a mode dropped from (or misnamed in)
# `W.MODES` fails here instead of silently leaving the tests.
MODES = tuple(pywt.Modes.modes)
F64_TOL = 1e-10


def _rotating_modes(wavelet, k):
    """`k` of the modes for `wavelet`, rotating through MODES along WAVELETS (every mode is
    covered by about len(WAVELETS) * k / len(MODES) wavelets of all families)."""
    i = WAVELETS.index(wavelet)
    return [MODES[(k * i + j) % len(MODES)] for j in range(k)]


def _seed(*parts):
    return zlib.crc32("|".join(map(str, parts)).encode())


def _assert_close(ref, got, tol=F64_TOL, what=""):
    got = np.asarray(got)
    assert got.shape == ref.shape, f"{what}: shape {got.shape} != pywt {ref.shape}"
    # Absolute for unit-scale data; the extrapolating modes (smooth,
    # antireflect) with long filters produce coefficients of 1e5 and more, where
    # only a relative bound is meaningful for either implementation.
    scale = max(1.0, float(np.max(np.abs(ref), initial=0.0)))
    err = float(np.max(np.abs(got - ref), initial=0.0))
    assert err <= tol * scale, f"{what}: max abs error {err:.3g} > {tol * scale:.3g}"


def _assert_reconstructs(x, rec, ref_rec, what):
    """Perfect reconstruction, except that 'dmey' (an FIR approximation of the
    Meyer wavelet) is only nearly perfect: there, match PyWavelets' own error."""
    allowed = max(F64_TOL, float(np.abs(ref_rec - x).max()) * (1 + 1e-6))
    err = float(np.abs(rec - x).max())
    assert err <= allowed * max(1.0, float(np.abs(x).max())), f"{what}: reconstruction error {err:.3g}"


def _flat2(coeffs):
    return [coeffs[0]] + [c for det in coeffs[1:] for c in det]


def _lengths(wavelet, mode):
    """Seeded lengths: short (< filter), odd, and even/longer than the filter."""
    flen = pywt.Wavelet(wavelet).dec_len
    rng = np.random.default_rng(_seed(wavelet, mode))
    lo = 2 if mode in ("reflect", "antireflect") else 1
    short = int(rng.integers(lo, max(lo + 1, flen)))
    odd = int(rng.integers(flen // 2, flen + 8)) | 1
    even = 2 * int(rng.integers(flen // 2 + 1, flen + 6))
    return short, odd, even


def _check_dwt_idwt(x, wavelet, mode, what):
    ref_a, ref_d = pywt.dwt(x, wavelet, mode)
    got_a, got_d = W.dwt(x, wavelet, mode)
    _assert_close(ref_a, got_a, what=what + " cA")
    _assert_close(ref_d, got_d, what=what + " cD")
    _assert_close(
        pywt.idwt(ref_a, ref_d, wavelet, mode),
        W.idwt(got_a, got_d, wavelet, mode),
        what=what + " idwt",
    )


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_dwt_idwt_wavedec_waverec_match_pywt(wavelet):
    for mode in MODES:
        rng = np.random.default_rng(_seed("1d", wavelet, mode))
        for n in _lengths(wavelet, mode):
            x = rng.standard_normal((2, n))
            _check_dwt_idwt(x, wavelet, mode, f"{wavelet}/{mode}/n={n}")
        # Multi-level, default (maximum) level.
        n = _lengths(wavelet, mode)[-1] + 1
        x = rng.standard_normal((n,))
        ref = pywt.wavedec(x, wavelet, mode)
        got = W.wavedec(x, wavelet, mode=mode)
        assert len(got) == len(ref)
        for r, g in zip(ref, got):
            _assert_close(r, g, what=f"{wavelet}/{mode} wavedec")
        rec = W.waverec(got, wavelet, mode=mode)
        ref_rec = pywt.waverec(ref, wavelet, mode)
        _assert_close(ref_rec, rec, what="waverec")
        _assert_reconstructs(x, np.asarray(rec)[:n], ref_rec[:n], f"{wavelet}/{mode}")


def _check_polyphase(wavelet, modes, monkeypatch):
    monkeypatch.setattr(_plan, "use_dense", lambda n, filter_len: False)
    for mode in modes:
        rng = np.random.default_rng(_seed("poly", wavelet, mode))
        n = _lengths(wavelet, mode)[int(rng.integers(0, 3))]
        _check_dwt_idwt(rng.standard_normal((2, n)), wavelet, mode, f"{wavelet}/{mode}/n={n}")


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_polyphase_kernel_matches_pywt(wavelet, monkeypatch):
    """The slice (polyphase) kernel used for long axes, forced on short lengths
    too (multiple wrap-arounds of the extension).

    Its cost grows with the filter length, so each wavelet gets one of the
    modes, rotating through the list: every wavelet and every mode is covered
    (each mode by ~12 wavelets of all families); the (wavelet, mode) plans it
    consumes are checked on the full grid by the dense-kernel test above, and
    the slow run takes every mode (test_polyphase_kernel_full_grid).
    """
    _check_polyphase(wavelet, _rotating_modes(wavelet, 1), monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("wavelet", WAVELETS)
def test_polyphase_kernel_full_grid(wavelet, monkeypatch):
    _check_polyphase(wavelet, MODES, monkeypatch)


def test_both_kernels_on_long_axes():
    """Lengths just above the dense threshold take the slice kernel by default."""
    for wavelet in ("haar", "db5", "sym8", "coif4", "bior3.9", "rbio6.8", "dmey", "db38"):
        threshold = max(W.DENSE_MAX_LEN, 4 * pywt.Wavelet(wavelet).dec_len)
        for mode in MODES:
            rng = np.random.default_rng(_seed("long", wavelet, mode))
            n = threshold + int(rng.integers(1, 40))
            _check_dwt_idwt(rng.standard_normal((1, n)), wavelet, mode, f"{wavelet}/{mode}/n={n}")


@pytest.mark.parametrize("wavelet", WAVELETS)
def test_wavedec2_waverec2_match_pywt_non_square(wavelet):
    """Three modes per wavelet, rotating (each mode by ~35 wavelets); the slow run: all."""
    _check_wavedec2_non_square(wavelet, _rotating_modes(wavelet, 3))


@pytest.mark.slow
@pytest.mark.parametrize("wavelet", WAVELETS)
def test_wavedec2_waverec2_full_grid(wavelet):
    _check_wavedec2_non_square(wavelet, MODES)


def _check_wavedec2_non_square(wavelet, modes):
    flen = pywt.Wavelet(wavelet).dec_len
    for mode in modes:
        rng = np.random.default_rng(_seed("2d", wavelet, mode))
        # Capped at 40 so this stays on the (cheap) dense kernel; the slice
        # kernel is covered in 1-D above and in the float32 test below.
        h = int(rng.integers(2, min(flen + 10, 40)))
        w = h + int(rng.integers(1, 7))  # never square
        if rng.random() < 0.5:
            h, w = w, h
        level = int(rng.integers(1, 3))
        x = rng.standard_normal((2, h, w))
        what = f"{wavelet}/{mode}/{h}x{w}/level={level}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # too-deep levels warn in both
            ref = pywt.wavedec2(x, wavelet, mode, level=level)
            got = W.wavedec2(x, wavelet, level=level, mode=mode)
        assert len(got) == len(ref)
        for r, g in zip(_flat2(ref), _flat2(got)):
            _assert_close(r, g, what=what)
        rec = W.waverec2(got, wavelet, mode=mode)
        ref_rec = pywt.waverec2(ref, wavelet, mode)
        _assert_close(ref_rec, rec, what=what + " waverec2")
        _assert_reconstructs(x, np.asarray(rec)[:, :h, :w], ref_rec[:, :h, :w], what)


@pytest.mark.parametrize("mode", MODES)
def test_dwt2_idwt2_single_level(mode):
    rng = np.random.default_rng(_seed("dwt2", mode))
    for wavelet in ("haar", "db3", "bior2.4"):
        x = rng.standard_normal((3, 9, 14))
        ref_a, ref_det = pywt.dwt2(x, wavelet, mode)
        got_a, got_det = W.dwt2(x, wavelet, mode)
        for r, g in zip([ref_a, *ref_det], [got_a, *got_det]):
            _assert_close(r, g, what=f"{wavelet}/{mode} dwt2")
        _assert_close(
            pywt.idwt2((ref_a, ref_det), wavelet, mode),
            W.idwt2((got_a, got_det), wavelet, mode),
            what=f"{wavelet}/{mode} idwt2",
        )


@pytest.mark.parametrize(
    "wavelet", ["haar", "db2", "db4", "sym5", "coif3", "bior3.5", "rbio2.8", "dmey"]
)
def test_float32_tolerance_and_reconstruction(wavelet):
    rng = np.random.default_rng(_seed("f32", wavelet))
    flen = pywt.Wavelet(wavelet).dec_len
    # Both axes just above the dense threshold (and different), so the first level runs the
    # slice (polyphase) kernel along both axes of the 2-D transform, not the dense matrices.
    threshold = max(W.DENSE_MAX_LEN, 4 * flen)
    h, w = threshold + 5, threshold + 11
    assert not _plan.use_dense(h, flen) and not _plan.use_dense(w, flen)
    x = (rng.standard_normal((2, h, w)) * 3).astype(np.float32)
    scale = float(np.abs(x).max())
    for mode in ("periodization", "zero", "symmetric", "reflect", "periodic"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # level 2 is too deep for dmey
            ref = pywt.wavedec2(x.astype(np.float64), wavelet, mode, level=2)
            got = W.wavedec2(x, wavelet, level=2, mode=mode)
        assert got[0].dtype.name == "float32"
        for r, g in zip(_flat2(ref), _flat2(got)):
            assert np.abs(np.asarray(g) - r).max() <= 1e-5 * scale, (wavelet, mode)
        rec = np.asarray(W.waverec2(got, wavelet, mode=mode))[:, :h, :w]
        ref_rec = pywt.waverec2(ref, wavelet, mode)[:, :h, :w]
        assert np.abs(rec - ref_rec).max() <= 1e-5 * scale, (wavelet, mode)
        # Perfect reconstruction (dmey, an FIR approximation, only nearly).
        pywt_err = np.abs(ref_rec - x).max()
        assert np.abs(rec - x).max() <= pywt_err + 1e-5 * scale, (wavelet, mode)


def test_axes_and_leading_dims():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 11, 3, 13))
    for axis in (0, 1, 2, -1, -3):
        if x.shape[axis] < 2:
            continue
        for r, g in zip(pywt.dwt(x, "db2", "symmetric", axis=axis), W.dwt(x, "db2", "symmetric", axis=axis)):
            _assert_close(r, g, what=f"axis={axis}")
        ref = pywt.wavedec(x, "db1", "periodization", level=2, axis=axis)
        got = W.wavedec(x, "db1", level=2, mode="periodization", axis=axis)
        for r, g in zip(ref, got):
            _assert_close(r, g, what=f"wavedec axis={axis}")
        _assert_close(
            pywt.waverec(ref, "db1", "periodization", axis=axis),
            W.waverec(got, "db1", mode="periodization", axis=axis),
        )
    # Channels-last images and reversed axis order (cH/cV swap roles).
    for axes in ((1, 3), (-1, -3), (3, 1), (0, 1)):
        ref = pywt.wavedec2(x, "sym3", "reflect", level=1, axes=axes)
        got = W.wavedec2(x, "sym3", level=1, mode="reflect", axes=axes)
        for r, g in zip(_flat2(ref), _flat2(got)):
            _assert_close(r, g, what=f"axes={axes}")
        _assert_close(
            pywt.waverec2(ref, "sym3", "reflect", axes=axes),
            W.waverec2(got, "sym3", mode="reflect", axes=axes),
        )


def test_level_none_max_level_and_too_deep():
    x = np.random.default_rng(1).standard_normal((40, 70))
    assert W.dwt_max_level(70, "db2") == pywt.dwt_max_level(70, 4)
    assert W.dwt_max_level((40, 70), "db2") == pywt.dwt_max_level(40, 4)
    assert len(W.wavedec2(x, "db2")) == len(pywt.wavedec2(x, "db2", "periodization"))
    assert len(W.wavedec(x, "db2")) == pywt.dwt_max_level(70, 4) + 1
    # Too deep: warn and proceed, like PyWavelets.
    deep = pywt.dwt_max_level(70, 4) + 2
    with pytest.warns(UserWarning, match="too high"):
        got = W.wavedec(x, "db2", level=deep, mode="symmetric")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = pywt.wavedec(x, "db2", "symmetric", level=deep)
    assert len(got) == len(ref) == deep + 1
    for r, g in zip(ref, got):
        _assert_close(r, g)
    with pytest.raises(ValueError, match=">= 0"):
        W.wavedec(x, "db2", level=-1)
    # Level 0 returns the input as the only approximation.
    (only,) = W.wavedec2(x, "db2", level=0)
    np.testing.assert_array_equal(np.asarray(only), x)


def test_custom_filter_banks():
    bank = pywt.Wavelet("db3").filter_bank
    custom = pywt.Wavelet("mine", filter_bank=bank)
    x = np.random.default_rng(2).standard_normal((3, 21))
    for wav in (custom, bank):
        for r, g in zip(pywt.wavedec(x, custom, "zero", level=2), W.wavedec(x, wav, level=2, mode="zero")):
            _assert_close(r, g)
    # A bank that is not a db filter: scaled haar (still a valid linear map).
    odd = pywt.Wavelet("odd", filter_bank=([1, 2], [2, -1], [2, 1], [-1, 2]))
    for r, g in zip(pywt.dwt(x, odd, "symmetric"), W.dwt(x, odd, "symmetric")):
        _assert_close(r, g)


def test_integer_and_complex_inputs():
    xi = np.arange(30).reshape(3, 10)
    got = W.dwt(xi, "db2", "symmetric")
    assert got[0].dtype.name == "float64"
    for r, g in zip(pywt.dwt(xi, "db2", "symmetric"), got):
        _assert_close(r, g)
    rng = np.random.default_rng(3)
    xc = rng.standard_normal((2, 12, 10)) + 1j * rng.standard_normal((2, 12, 10))
    ref = pywt.wavedec2(xc, "sym2", "periodic", level=1)
    got = W.wavedec2(xc, "sym2", level=1, mode="periodic")
    for r, g in zip(_flat2(ref), _flat2(got)):
        _assert_close(r, g)
    _assert_close(pywt.waverec2(ref, "sym2", "periodic"), W.waverec2(got, "sym2", mode="periodic"))


def test_none_coefficients_are_zeros():
    rng = np.random.default_rng(4)
    a, d = rng.standard_normal((2, 2, 9))
    _assert_close(pywt.idwt(a, None, "db2", "zero"), W.idwt(a, None, "db2", "zero"))
    _assert_close(pywt.idwt(None, d, "db2", "zero"), W.idwt(None, d, "db2", "zero"))
    c = [rng.standard_normal((5, 6)) for _ in range(4)]
    ref = pywt.idwt2((c[0], (None, c[2], None)), "haar", "periodization")
    got = W.idwt2((c[0], (None, c[2], None)), "haar", "periodization")
    _assert_close(ref, got)


# --------------------------------------------------------------------------- #
# Validation
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("name", ["morl", "mexh", "gaus3", "cmor1.5-1.0", "shan", "fbsp", "cgau2"])
def test_continuous_wavelets_are_rejected(name):
    with pytest.raises(ValueError, match="continuous wavelet") as info:
        W.dwt(np.zeros(8), name)
    assert "no filter bank" in str(info.value)
    assert "db4" in str(info.value)


def test_meyer_suggests_dmey():
    with pytest.raises(ValueError, match="'dmey'"):
        W.get_wavelet("meyer")
    with pytest.raises(ValueError, match="no filter bank"):
        W.get_wavelet(pywt.ContinuousWavelet("mexh"))


def test_bad_inputs_raise_clear_errors():
    x = np.zeros((4, 8))
    with pytest.raises(ValueError, match="Unknown wavelet 'db99'.*db1-db38"):
        W.dwt(x, "db99")
    with pytest.raises(ValueError, match="Did you mean"):
        W.get_wavelet("sym44")
    with pytest.raises(ValueError, match="Unknown signal-extension mode 'circular'.*periodization"):
        W.dwt(x, "haar", mode="circular")
    with pytest.raises(ValueError, match=r"out of range for an input of rank 2; valid values are -2\.\.1"):
        W.dwt(x, "haar", axis=2)
    with pytest.raises(ValueError, match="out of range"):
        W.wavedec2(x, "haar", axes=(0, 5))
    with pytest.raises(ValueError, match="unique"):
        W.wavedec2(x, "haar", axes=(1, -1))
    with pytest.raises(ValueError, match="rank >= 2"):
        W.dwt2(np.zeros(8), "haar")
    with pytest.raises(ValueError, match="numeric"):
        W.dwt(np.array(["a", "b"]), "haar")
    with pytest.raises(ValueError, match="numeric"):
        W.wavedec("not an array", "haar")
    with pytest.raises(ValueError, match="same shape"):
        W.idwt(np.zeros(4), np.zeros(5), "haar")
    with pytest.raises(ValueError, match="too short"):
        W.idwt(np.zeros(2), np.zeros(2), "db4", mode="zero")
    with pytest.raises(ValueError, match="greater than 1"):
        W.dwt(np.zeros(1), "haar", mode="reflect")
    with pytest.raises(ValueError, match="wavelet name"):
        W.dwt(x, 3.5)
    with pytest.raises(ValueError, match="symbolic Keras tensor"):
        W.dwt(keras.Input((8,)), "haar")
    assert W.validate_mode("Symmetric") == "symmetric"
