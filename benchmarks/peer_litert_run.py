"""Runs .tflite files with ai_edge_litert (its own venv): test accuracy and batch-1 latency.

Called by ``bench_deployment.py``; prints one JSON line.

    /work/peers/litert/bin/python benchmarks/peer_litert_run.py --files '{"a": "a.tflite"}' \
        --data test.npz --repeats 2000
"""

import argparse
import json

import numpy as np

from dwt_keras.compression import litert


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", required=True, help="JSON {name: path}")
    p.add_argument("--data", required=True, help="npz with x, y")
    p.add_argument("--repeats", type=int, default=2000)
    a = p.parse_args()
    files = json.loads(a.files)
    d = np.load(a.data)
    x, y = d["x"], d["y"]
    out = {"interpreter": litert.interpreter_name(), "files": {}}
    for name, path in files.items():
        out["files"][name] = {"test_accuracy": litert.evaluate_litert(path, x, y)["accuracy"]}
    for delegates in (True, False):
        key = "latency_ms_batch1_" + ("xnnpack" if delegates else "builtin")
        for name, ms in litert.litert_latency_ms(files, x, 1, repeats=a.repeats,
                                                 default_delegates=delegates).items():
            out["files"][name][key] = ms
    print(json.dumps(out))


if __name__ == "__main__":
    main()
