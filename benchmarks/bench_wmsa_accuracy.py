"""Accuracy of W-MSA-tiny vs ViT-tiny on the CIFAR-10 subset, same budget, several seeds.

Every run goes through the library pipeline (`dwt_keras.experiments.transformer.run_transformer`,
the same code `apps/wmsa_cifar10.py` runs): validation split 10% of the 4000
training images (selection of the best epoch on it), test on the 1000 test images.
Runs are interleaved (seed 0: wmsa, vit; seed 1: ...) so a partial run still gives
paired results, and an interrupted benchmark resumes when re-run (same run folders).

`--models` takes `vit`, `wmsa` and the ablation names of
`dwt_keras.transformer.analysis.VARIANTS` whose settings are training-config
fields (e.g. `wmsa_nokernel`, `wmsa_J2`, `wmsa_haar`, `wmsa_p2`).

Usage:
    python benchmarks/bench_wmsa_accuracy.py --epochs 20 --seeds 0 1 2 \
        --save_dir saved_models/bench_wmsa --out benchmarks/results/wmsa_accuracy.json
    python benchmarks/bench_wmsa_accuracy.py --models wmsa_J2 --epochs 10 --warmup_epochs 1 \
        --seeds 0 --save_dir saved_models/bench_wmsa2
"""

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from dwt_keras.transformer.analysis import VARIANTS  # noqa: E402
from dwt_keras.experiments.transformer import TrainConfig  # noqa: E402
from dwt_keras.experiments.transformer import run_transformer as train  # noqa: E402


def variant_settings(name):
    """(model, TrainConfig overrides) of a `VARIANTS` name; ValueError if not a config setting."""
    if name not in VARIANTS:
        raise ValueError(f"Unknown model {name!r}; choose from {sorted(VARIANTS)}.")
    kind, over = VARIANTS[name]
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    missing = sorted(set(over) - fields)
    if missing:
        raise ValueError(
            f"Variant {name!r} sets {missing}, which are model defaults, not training-config "
            "settings; it cannot be trained from this script."
        )
    return kind, dict(over)


def summarise(reports):
    acc = np.array([r["test"]["accuracy"] for r in reports])
    f1 = np.array([r["test"]["f1_macro"] for r in reports])
    return {
        "n_seeds": len(reports),
        "seeds": [r["config"]["seed"] for r in reports],
        "test_accuracy": acc.tolist(),
        "test_accuracy_mean": float(acc.mean()),
        "test_accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
        "test_f1_macro_mean": float(f1.mean()),
        "best_epoch": [r["selection"]["best_epoch"] for r in reports],
        "params": reports[0]["params"],
        "tokens": reports[0]["num_tokens"],
        "train_seconds_per_run": [r["train_seconds_total"] for r in reports],
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", nargs="+", default=["wmsa", "vit"],
                    help="vit, wmsa, or a VARIANTS ablation (wmsa_nokernel, wmsa_J2, wmsa_haar, ...)")
    ap.add_argument("--model_size", default="tiny")
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight_decay", type=float, default=0.05)
    ap.add_argument("--warmup_epochs", type=int, default=2)
    ap.add_argument("--augment", default="crop_flip")
    ap.add_argument("--dataset", default="cifar10_subset")
    ap.add_argument("--data_dir", default=os.environ.get("DWT_KERAS_DATA_DIR", "/work/shared/data"))
    ap.add_argument("--save_dir", default="saved_models/bench_wmsa")
    ap.add_argument("--out", default="benchmarks/results/wmsa_accuracy.json")
    args = ap.parse_args()
    try:
        settings = {name: variant_settings(name) for name in args.models}
    except ValueError as e:
        ap.error(str(e))

    reports = {m: [] for m in args.models}
    t_start = time.time()
    for seed in args.seeds:
        for name in args.models:
            model, over = settings[name]
            cfg = TrainConfig(
                model=model,
                model_size=args.model_size,
                **over,
                dataset=args.dataset,
                data_dir=args.data_dir,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                weight_decay=args.weight_decay,
                warmup_epochs=args.warmup_epochs,
                augment=args.augment,
                save_dir=args.save_dir,
                seed=seed,
                verbose=2,
            )
            t0 = time.time()
            rep = train(cfg)
            reports[name].append(rep)
            print(f"== {name} seed {seed}: test acc {rep['test']['accuracy']:.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
            out = {
                "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
                "machine": f"{os.cpu_count()}-core {platform.machine()}, shared",
                "budget": vars(args),
                "elapsed_s": time.time() - t_start,
                "results": {m: summarise(r) for m, r in reports.items() if r},
            }
            os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
            with open(args.out + ".tmp", "w") as f:
                json.dump(out, f, indent=2)
            os.replace(args.out + ".tmp", args.out)
    print(json.dumps(out["results"], indent=2))


if __name__ == "__main__":
    main()
