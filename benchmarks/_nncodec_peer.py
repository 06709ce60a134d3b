"""Runs in NNCodec's own venv (numpy<2, torch): codes the kept-coefficient tensors of
``in.npz`` with NNCodec (DeepCABAC) at each QP and writes bytes and decoded tensors.

    /work/peers/nncodec/bin/python benchmarks/_nncodec_peer.py IN.npz OUT.npz QP[,QP...]

NNCodec imports torchvision for its image-classification use cases only; the torchvision
wheel that resolves with torch 2.13.0+cpu here does not load (``torchvision::nms``), so a
stand-in module is installed before the import. The dict-of-arrays API used below never
touches it.
"""

import importlib.abc
import importlib.machinery
import os
import sys
import tempfile
import time
import unittest.mock


class _TorchvisionStandIn(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name == "torchvision" or name.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = unittest.mock.MagicMock()
        module.__path__, module.__name__, module.__spec__ = [], spec.name, spec
        return module

    def exec_module(self, module):
        pass


sys.meta_path.insert(0, _TorchvisionStandIn())

import numpy as np  # noqa: E402
from nncodec.nnc import compression as nnc  # noqa: E402


def main(src, dst, qps):
    arrays = dict(np.load(src))
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for qp in qps:
            path = os.path.join(tmp, f"qp{qp}.nnc")
            t = time.perf_counter()
            nnc.compress(arrays, bitstream_path=path, qp=qp, verbose=False)
            enc_s = time.perf_counter() - t
            t = time.perf_counter()
            decoded = nnc.decompress(path)
            dec_s = time.perf_counter() - t
            out[f"bytes_qp{qp}"] = np.array(os.path.getsize(path))
            out[f"seconds_qp{qp}"] = np.array([enc_s, dec_s])
            for k, v in decoded.items():
                out[f"qp{qp}/{k}"] = np.asarray(v, np.float32)
    np.savez(dst, **out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], [int(q) for q in sys.argv[3].split(",")])
