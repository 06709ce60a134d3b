"""PyWavelets' own tests, run against dwt_keras.

The test modules that ship inside the installed PyWavelets wheel (``pywt.tests``) are
imported, not copied: each test that calls one of the eight transforms dwt_keras provides
runs with ``pywt.dwt``, ``pywt.idwt``, ``pywt.wavedec``, ... replaced by thin wrappers around
``dwt_keras.wavelets`` (PyWavelets' default mode ``symmetric``, tensors converted back to
NumPy). Tests of functions dwt_keras does not provide (``swt``, ``wavedecn``, ...) are not
collected. The few intended differences are marked ``xfail(strict=True)`` with the reason
(the same reasons as the README's table of differences), so a test that starts passing, or
one that fails for another reason, is reported.
"""

import importlib
import inspect
import os
import re

import numpy as np
import pytest
import pywt
import tensorflow as tf

from dwt_keras import wavelets as W

MODULES = (
    "test_dwt_idwt",
    "test_multilevel",
    "test_perfect_reconstruction",
    "test_multidim",
    "test_modes",
)
FUNCTIONS = ("dwt", "idwt", "wavedec", "waverec", "dwt2", "idwt2", "wavedec2", "waverec2")
_CALLS = re.compile(r"\b(?:pywt\.)?(" + "|".join(FUNCTIONS) + r")\(")

#: Intended differences: test id -> reason (each also in the README's difference table).
#: None at present: every collected PyWavelets test passes against dwt_keras.
XFAIL = {}

#: PyWavelets marks it ``slow``: 55,200 eager dwt + idwt calls (100 wavelets x 6 modes x
#: 2 dtypes x 46 lengths up to 100,000), several minutes of per-call overhead here. It
#: passes (run it with DWT_KERAS_PYWT_SLOW=1); the long-signal behaviour it guards is
#: covered in CI by tests/test_wavelets_modes.py (10^6 samples, bounded plans).
SLOW = {"test_perfect_reconstruction::test_perfect_reconstruction"}


def _numpy(out):
    if isinstance(out, (tf.Tensor, tf.Variable)):
        return out.numpy()
    if isinstance(out, tuple):
        return tuple(_numpy(o) for o in out)
    if isinstance(out, list):
        return [_numpy(o) for o in out]
    return out


def dwt(data, wavelet, mode="symmetric", axis=-1):
    return _numpy(W.dwt(data, wavelet, mode, axis))


def idwt(cA, cD, wavelet, mode="symmetric", axis=-1):
    return _numpy(W.idwt(cA, cD, wavelet, mode, axis))


def wavedec(data, wavelet, mode="symmetric", level=None, axis=-1):
    return _numpy(W.wavedec(data, wavelet, mode, level, axis))


def waverec(coeffs, wavelet, mode="symmetric", axis=-1):
    return _numpy(W.waverec(coeffs, wavelet, mode, axis))


def dwt2(data, wavelet, mode="symmetric", axes=(-2, -1)):
    return _numpy(W.dwt2(data, wavelet, mode, axes))


def idwt2(coeffs, wavelet, mode="symmetric", axes=(-2, -1)):
    return _numpy(W.idwt2(coeffs, wavelet, mode, axes))


def wavedec2(data, wavelet, mode="symmetric", level=None, axes=(-2, -1)):
    return _numpy(W.wavedec2(data, wavelet, mode, level, axes))


def waverec2(coeffs, wavelet, mode="symmetric", axes=(-2, -1)):
    return _numpy(W.waverec2(coeffs, wavelet, mode, axes))


_WRAPPERS = {name: globals()[name] for name in FUNCTIONS}
_MODULES = {name: importlib.import_module(f"pywt.tests.{name}") for name in MODULES}


_ORIGINALS = {name: getattr(pywt, name) for name in FUNCTIONS}


@pytest.fixture(autouse=True)
def _dwt_keras_in_pywt(monkeypatch):
    for name, fn in _WRAPPERS.items():
        monkeypatch.setattr(pywt, name, fn)
        for module in _MODULES.values():  # `from pywt import dwt` style imports
            if vars(module).get(name) is _ORIGINALS[name]:
                monkeypatch.setattr(module, name, fn)


def _source(fn):
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


def _uses_our_functions(fn, module):
    """True if ``fn`` calls one of FUNCTIONS, directly or through a helper of its module."""
    helpers = [
        name for name, f in vars(module).items()
        if inspect.isfunction(f) and not name.startswith("test_")
        and f.__module__ == module.__name__ and _CALLS.search(_source(f))
    ]
    src = _source(fn)
    return bool(_CALLS.search(src) or any(re.search(rf"\b{h}\(", src) for h in helpers))


def _collect():
    for mod_name, module in _MODULES.items():
        for name, fn in vars(module).items():
            if not (name.startswith("test_") and callable(fn) and _uses_our_functions(fn, module)):
                continue
            test_id = f"{mod_name}::{name}"
            if test_id in XFAIL:
                fn = pytest.mark.xfail(reason=XFAIL[test_id], strict=True)(fn)
            if test_id in SLOW and not os.environ.get("DWT_KERAS_PYWT_SLOW"):
                fn = pytest.mark.skip(reason="PyWavelets' slow test; DWT_KERAS_PYWT_SLOW=1 runs it")(fn)
            yield f"test_{mod_name[5:]}__{name[5:]}", fn


for _name, _fn in _collect():
    globals()[_name] = _fn


def test_the_shim_collected_pywt_tests():
    """Guards against a PyWavelets release that moves its tests (nothing would run)."""
    names = [n for n in globals() if n.startswith("test_") and "__" in n]
    assert len(names) >= 50, names
    for mod_name in MODULES:
        assert any(n.startswith(f"test_{mod_name[5:]}__") for n in names), mod_name
