"""MNIST LeNet-300-100: dense test accuracy, and per basis the smallest compressed file whose
accuracy stays within 0.3 points of dense (selected on VALIDATION, reported on TEST).

    python benchmarks/bench_compression.py --epochs 10 --retrain_epochs 2 \
        --keep_ratios 0.05,0.03,0.02,0.015,0.01 --out benchmarks/results/compression_mnist

Runs the sweep recipe (apps/compression_sweep.py); its run folder under --out holds
sweep.csv / sweep.json / pareto.png, and dense.json is written beside it.
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--retrain_epochs", type=int, default=2)
    p.add_argument("--keep_ratios", default="0.05,0.03,0.02,0.015,0.01")
    p.add_argument("--bases", default="identity,dct,haar,db2,db4,sym4,coif2,bior2.2")
    p.add_argument("--quant_bits", type=int, default=6)
    p.add_argument("--tolerance", type=float, default=0.003)
    p.add_argument("--model", default="lenet300")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="benchmarks/results/compression_mnist")
    a = p.parse_args()

    from dwt_keras.experiments.sweep import SweepConfig, run_sweep
    from dwt_keras.utils.io import atomic_write_json

    # The sweep recipe (what apps/compression_sweep.py runs), with this benchmark's settings.
    result = run_sweep(SweepConfig(
        model=a.model, batch_size=a.batch_size, seed=a.seed, epochs=a.epochs,
        retrain_epochs=a.retrain_epochs, bases=tuple(a.bases.split(",")),
        keep_ratios=tuple(float(r) for r in a.keep_ratios.split(",")), quant_bits=a.quant_bits,
        tolerance=a.tolerance, save_dir=a.out, verbose=2))
    atomic_write_json(os.path.join(a.out, "dense.json"), {**result["dense"], "args": vars(a),
                                                           "run_dir": result["run_dir"]})
    print(json.dumps({"dense": result["dense"], "winner": result["winner"],
                      "selected": result["selected"]}, indent=1))


if __name__ == "__main__":
    main()
