"""Benchmark: dwt_keras against the other wavelet libraries, each against PyWavelets.

Every library runs on the same float32 array (default 64x256x256, seed 0), wavelets
haar/db4/sym8/coif3/bior4.4 and modes periodization/symmetric/zero, ``wavedec2`` +
``waverec2`` at level 3 (tensorflow-wavelets has single-level layers only: level 1, with
dwt_keras at level 1 alongside). Each library first has its output checked against
PyWavelets on the case; unsupported or wrong cases are marked and not timed. Timed cases
interleave the library with PyWavelets in the same process (medians of ``--repeats``), so
every figure is a ratio to PyWavelets measured side by side; forward+inverse and
forward+backward of ``sum(reconstruction^2)``.

The peers run in their own virtual environments (their dependencies clash with this
project's), by ``benchmarks/_wavelet_peer_worker.py``: ``--peers_dir`` holds ``torch/``
(ptwt, pytorch_wavelets), ``jax/`` (jaxwt) and the pip ``--target`` folders ``tfdwt/`` and
``tensorflow-wavelets/`` (used with this venv's TensorFlow).

Usage:
    python benchmarks/bench_wavelets_peers.py --peers_dir ../peers     # -> results/wavelet_peers.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pywt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from _record import Recorder  # noqa: E402
from _timing import interleaved  # noqa: E402

import tensorflow as tf  # noqa: E402

from dwt_keras import wavelets as W  # noqa: E402

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_wavelet_peer_worker.py")


def _peer_commands(peers_dir):
    """lib -> (argv prefix, extra env, level)."""
    py = sys.executable
    return {
        "ptwt": ([os.path.join(peers_dir, "torch", "bin", "python")], {}, 3),
        "pytorch_wavelets": ([os.path.join(peers_dir, "torch", "bin", "python")], {}, 3),
        "jaxwt": ([os.path.join(peers_dir, "jax", "bin", "python")], {}, 3),
        "tfdwt": ([py], {"PYTHONPATH": os.path.join(peers_dir, "tfdwt")}, 3),
        "tensorflow-wavelets": ([py], {"PYTHONPATH": os.path.join(peers_dir, "tensorflow-wavelets")}, 1),
    }


def dwt_keras_rows(x, level, wavelets, modes, a_repeats):
    rows = []
    xt = tf.constant(x)
    for w in wavelets:
        for mode in modes:
            def fwd_inv(t):
                return W.waverec2(W.wavedec2(t, w, mode, level), w, mode)

            def grad(t):
                with tf.GradientTape() as tape:
                    tape.watch(t)
                    loss = tf.reduce_sum(fwd_inv(t) ** 2)
                return tape.gradient(loss, t)

            xla, grad_xla = tf.function(fwd_inv, jit_compile=True), tf.function(grad, jit_compile=True)
            fns = {
                "fwd+inv": lambda: fwd_inv(xt).numpy(),
                "fwd+bwd": lambda: grad(xt).numpy(),
                "xla fwd+inv": lambda: xla(xt).numpy(),
                "xla fwd+bwd": lambda: grad_xla(xt).numpy(),
                "pywt": lambda: pywt.waverec2(pywt.wavedec2(x, w, mode, level=level), w, mode),
            }
            ref = pywt.wavedec2(x.astype(np.float64), w, mode, level=level)
            got = W.wavedec2(x, w, mode, level)
            tol = 1e-5 * float(np.abs(x).max())
            ok = all(np.abs(g.numpy() - r).max() <= tol for g, r in zip(
                [got[0], *got[-1]], [ref[0], *ref[-1]]))
            first, med, _ = interleaved(fns, a_repeats)
            rows.append({
                "lib": "dwt_keras", "wavelet": w, "mode": mode, "shape": list(x.shape), "level": level,
                "matches_pywt": {"coefficients": bool(ok)}, "status": "timed",
                "median_ms": {k: 1e3 * v for k, v in med.items()}, "first_call_s": first,
                "ratio_to_pywt": {k: med[k] / med["pywt"] for k in med},
            })
            print("dwt_keras", w, mode, level, {k: round(v, 2) for k, v in rows[-1]["ratio_to_pywt"].items()}, flush=True)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--peers_dir", default=os.path.join("..", "peers"))
    p.add_argument("--peers", default="ptwt,pytorch_wavelets,jaxwt,tfdwt,tensorflow-wavelets")
    p.add_argument("--shape", default="64,256,256")
    p.add_argument("--wavelets", default="haar,db4,sym8,coif3,bior4.4")
    p.add_argument("--modes", default="periodization,symmetric,zero")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--name", default="wavelet_peers")
    a = p.parse_args()
    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", message="Level value of")
    rec = Recorder(a.name)
    shape = tuple(int(s) for s in a.shape.split(","))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    wavelets, modes = a.wavelets.split(","), a.modes.split(",")
    rows = dwt_keras_rows(x, 3, wavelets, modes, a.repeats)
    rows += dwt_keras_rows(x, 1, wavelets, ["symmetric"], a.repeats)
    commands = _peer_commands(os.path.abspath(a.peers_dir))
    for lib in a.peers.split(","):
        argv, env, level = commands[lib]
        if not os.path.exists(argv[0]) or any(not os.path.isdir(v) for v in env.values()):
            rows.append({"lib": lib, "status": f"not installed under {a.peers_dir}: not measured"})
            continue
        out = subprocess.run(
            argv + [WORKER, lib, json.dumps(list(shape)), str(level), str(a.repeats), a.wavelets, a.modes],
            capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", **env),
            timeout=3600,
        )
        lines = [line for line in out.stdout.splitlines() if line.startswith('{"rows"')]
        peer_rows = json.loads(lines[-1])["rows"] if lines else [
            {"lib": lib, "status": "worker failed", "stderr": out.stderr[-2000:]}]
        for r in peer_rows:
            print(lib, r.get("wavelet"), r.get("mode"), r["status"],
                  {k: round(v, 2) for k, v in r.get("ratio_to_pywt", {}).items()}, flush=True)
        rows += peer_rows
    print("wrote", rec.write({"rows": rows, "shape": list(shape)}, seeds=[0]))


if __name__ == "__main__":
    main()
