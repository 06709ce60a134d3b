"""Worker of bench_wavelets_peers.py: times one wavelet library against PyWavelets.

Runs inside that library's own virtual environment (it imports only NumPy, PyWavelets and
the library). For each (wavelet, mode) it first checks the library against PyWavelets on
the case (coefficients and reconstruction); a case the library does not support or gets
wrong is reported so and not timed. Timed cases interleave the library with PyWavelets
(forward+inverse, and forward+backward of sum(reconstruction^2) where differentiable) and
report medians. Prints one JSON object.
"""

import json
import os
import sys
import traceback

import numpy as np
import pywt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _timing import interleaved  # noqa: E402


def _close(a, b, tol):
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and float(np.abs(a - b).max()) <= tol


def _torch_timers(fwd_inv):
    import torch

    xt = torch.from_numpy(X)

    def f_inv():
        with torch.no_grad():
            fwd_inv(xt)[1].numpy()

    def f_bwd():
        t = xt.clone().requires_grad_(True)
        (fwd_inv(t)[1] ** 2).sum().backward()
        t.grad.numpy()

    return {"fwd+inv": f_inv, "fwd+bwd": f_bwd}


def _tf_timers(fwd_inv):
    import tensorflow as tf

    xt = tf.constant(X)

    def f_bwd():
        with tf.GradientTape() as tape:
            tape.watch(xt)
            loss = tf.reduce_sum(fwd_inv(xt)[1] ** 2)
        tape.gradient(loss, xt).numpy()

    return {"fwd+inv": lambda: fwd_inv(xt)[1].numpy(), "fwd+bwd": f_bwd}


def adapter(lib, shape, level):
    """``(fwd_inv(x_np, w, mode) -> (cA, details_finest_first_list, rec), timed fns)``."""
    if lib == "ptwt":
        import ptwt
        import torch

        def make(w, mode):
            if mode == "periodization":
                raise NotImplementedError("ptwt has no periodization mode")

            def fwd_inv(x):
                c = ptwt.wavedec2(x, w, mode=mode, level=level)
                return c, ptwt.waverec2(c, w)

            def check(x_np):
                c, rec = fwd_inv(torch.from_numpy(x_np))
                return c[0].numpy(), [tuple(d.numpy() for d in c[-1])], rec.numpy()

            return check, _torch_timers(fwd_inv)

        return make
    if lib == "pytorch_wavelets":
        import torch
        from pytorch_wavelets import DWTForward, DWTInverse

        def make(w, mode):
            if mode not in ("zero", "symmetric", "periodization", "reflect"):
                raise NotImplementedError(f"mode {mode}")
            fwd, inv = DWTForward(J=level, wave=w, mode=mode), DWTInverse(wave=w, mode=mode)

            def fwd_inv(x):
                yl, yh = fwd(x[:, None])
                return (yl, yh), inv((yl, yh))[:, 0]

            def check(x_np):
                (yl, yh), rec = fwd_inv(torch.from_numpy(x_np))
                fine = yh[0][:, 0]
                return yl[:, 0].numpy(), [tuple(fine[:, k].numpy() for k in range(3))], rec.numpy()

            return check, _torch_timers(fwd_inv)

        return make
    if lib == "jaxwt":
        import jax
        import jax.numpy as jnp
        import jaxwt

        def make(w, mode):
            if mode == "periodization":
                raise NotImplementedError("jaxwt has no periodization mode")

            def fwd_inv(x):
                c = jaxwt.wavedec2(x, w, mode=mode, level=level)
                return c, jaxwt.waverec2(c, w)

            def check(x_np):
                c, rec = fwd_inv(jnp.asarray(x_np))
                return np.asarray(c[0]), [tuple(np.asarray(d) for d in c[-1])], np.asarray(rec)

            xt = jnp.asarray(X)
            inv_jit = jax.jit(lambda x: fwd_inv(x)[1])
            bwd_jit = jax.jit(jax.grad(lambda x: (fwd_inv(x)[1] ** 2).sum()))
            return check, {
                "fwd+inv": lambda: np.asarray(inv_jit(xt).block_until_ready()),
                "fwd+bwd": lambda: np.asarray(bwd_jit(xt).block_until_ready()),
            }

        return make
    if lib == "tfdwt":
        import tensorflow as tf
        from TFDWT.multilevel.dwt2 import dwt2, idwt2

        def make(w, mode):
            if mode != "periodization":
                raise NotImplementedError("tfdwt is periodic only (dense N x N matrices)")

            def fwd_inv(x):
                s = dwt2(x[..., None], level, w)
                return s, idwt2(s, level, w)[..., 0]

            def check(x_np):
                s, rec = fwd_inv(tf.constant(x_np))
                return s[-1][..., 0].numpy(), [], rec.numpy()

            return check, _tf_timers(fwd_inv)

        return make
    if lib == "tensorflow-wavelets":
        import tensorflow as tf
        from tensorflow_wavelets.Layers.DWT import DWT, IDWT

        def make(w, mode):
            if mode != "symmetric":
                raise NotImplementedError("tensorflow-wavelets extends symmetrically only")
            if level != 1:
                raise NotImplementedError("single-level layers only")
            fwd, inv = DWT(wavelet_name=w, concat=0), IDWT(wavelet_name=w, concat=0)

            def fwd_inv(x):
                y = fwd(x[..., None])
                return y, inv(y)[..., 0]

            def check(x_np):
                y, rec = fwd_inv(tf.constant(x_np))
                return y[..., 0].numpy(), [], rec.numpy()

            return check, _tf_timers(fwd_inv)

        return make
    raise ValueError(lib)


def main():
    global X
    lib, shape, level, repeats = sys.argv[1], tuple(json.loads(sys.argv[2])), int(sys.argv[3]), int(sys.argv[4])
    wavelets, modes = sys.argv[5].split(","), sys.argv[6].split(",")
    X = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x64 = X.astype(np.float64)
    make = adapter(lib, shape, level)
    rows = []
    for w in wavelets:
        for mode in modes:
            row = {"lib": lib, "wavelet": w, "mode": mode, "shape": list(shape), "level": level}
            try:
                check, fns = make(w, mode)
                ca, dets, rec = check(X)  # float32, as timed
                det = dets[0] if dets else ()
                ref = pywt.wavedec2(x64, w, mode, level=level)
                ref_rec = pywt.waverec2(ref, w, mode)
                tol = 1e-5 * float(np.abs(x64).max())  # the float32 tolerance of the README
                ok_ca = _close(ca, ref[0], tol)
                ok_det = all(_close(a, b, tol) for a, b in zip(det, ref[-1])) if det else None
                ok_rec = _close(np.asarray(rec)[..., : shape[-2], : shape[-1]], ref_rec[..., : shape[-2], : shape[-1]], tol)
                row["matches_pywt"] = {"cA": ok_ca, "details": ok_det, "reconstruction": ok_rec}
                if not (ok_ca and ok_rec):
                    row["status"] = "wrong (differs from PyWavelets): not timed"
                    rows.append(row)
                    continue
            except NotImplementedError as err:
                row["status"] = f"unsupported: {err}"
                rows.append(row)
                continue
            except Exception as err:  # a peer failing on a case is a result, not a crash
                row["status"] = f"error: {type(err).__name__}: {err}"[:300]
                row["traceback"] = traceback.format_exc()[-600:]
                rows.append(row)
                continue

            def pywt_fn():
                pywt.waverec2(pywt.wavedec2(X, w, mode, level=level), w, mode)

            fns = dict(fns, pywt=pywt_fn)
            first, med, _ = interleaved(fns, repeats)
            row.update(status="timed", median_ms={k: 1e3 * v for k, v in med.items()},
                       first_call_s=first, ratio_to_pywt={k: med[k] / med["pywt"] for k in med})
            rows.append(row)
            print(json.dumps({"progress": [w, mode, row["status"]]}), file=sys.stderr, flush=True)
    print(json.dumps({"rows": rows}))


if __name__ == "__main__":
    main()
