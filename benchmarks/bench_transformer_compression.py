"""Issue 15, item 4: ViT-tiny and W-MSA-tiny trained on the CIFAR-10 subset, then compressed
with the compression recipe (`apps/DWT_model.py`'s engine), the same operating-point walk and
stored file as the conv nets; what fraction of the bytes can go at <= 1 point.

The dense training is the W-MSA benchmark's budget (`configs/vit_tiny_subset.cfg`,
`configs/wmsa_tiny_subset.cfg`: 10 epochs, batch 128, AdamW 1e-3 with weight decay 0.05 and
clip-norm 1, one warm-up epoch then cosine, label smoothing 0.1, crop+flip). The transformer
blocks' Dense kernels (attention `qkv` / `proj`, MLP `fc1` / `fc2`, planned by path since they
are nested in the blocks) and the head have no spatial geometry: each basis works over the input
axis (identity, the DCT, the wavelets of `auto`). The first basis of `--bases` trains the dense
model; the others start from its `dense_model.keras` (`--init_from`, `--epochs 0`).

    python benchmarks/bench_transformer_compression.py --models vit,wmsa --bases auto,identity \
        --seed 0 --data_dir ../shared/data

Results: `benchmarks/results/transformer_compression.json` (one entry per model, basis and
seed; a re-run skips those already recorded).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from _record import RESULTS_DIR, Recorder  # noqa: E402

#: The builder keywords of each model (the tokenizer of W-MSA as in wmsa_tiny_subset.cfg).
MODELS = {
    "vit": {"model_size": "tiny", "patch_size": 4},
    "wmsa": {"model_size": "tiny", "patch_size": 4, "n_levels": 3, "wavelet": "db4",
             "use_kernel": True},
}

#: The dense recipe and the compression settings (as in the conv nets' configs).
SETTINGS = dict(
    dataset="cifar10_subset", epochs=10, batch_size=128, optimizer="adamw", lr=1e-3,
    weight_decay=0.05, clipnorm=1.0, lr_schedule="warmup_cosine", warmup_epochs=1,
    label_smoothing=0.1, augment="crop_flip", early_stopping_patience=0,
    schedule="gradual", keep_ratio=0.3, retrain_epochs=3, max_accuracy_drop=1.0,
    stage_factor=0.6, stage_epochs=2, quantize="kmeans", quant_bits=6, choose_bits=True,
    small_weights="int8", plots=False, verbose=2)


def _builder(kind):
    def build(config, info):
        from dwt_keras.experiments.registry import build_model

        return build_model(kind, tuple(info["image_shape"]), info["num_classes"],
                           **MODELS[kind])

    build.__name__ = kind
    return build


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="vit,wmsa")
    p.add_argument("--bases", default="auto,identity")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=SETTINGS["epochs"])
    p.add_argument("--keep_ratio", type=float, default=SETTINGS["keep_ratio"],
                   help="the walk's first stage")
    p.add_argument("--retrain_epochs", type=int, default=SETTINGS["retrain_epochs"])
    p.add_argument("--data_dir", default=os.path.join(os.path.dirname(RESULTS_DIR), "..", "..",
                                                      "shared", "data"))
    p.add_argument("--save_dir", default="/tmp/transformer_compression")
    a = p.parse_args()

    from dwt_keras.experiments.compression import CompressionConfig, run_compression

    name = "transformer_compression"
    path = os.path.join(RESULTS_DIR, f"{name}.json")
    runs = json.load(open(path))["results"]["runs"] if os.path.exists(path) else []
    rec = Recorder(name)
    for kind in a.models.split(","):
        # one dense model per model and seed: the first recorded run that trained it
        trained = [r for r in runs if (r["model"], r["seed"]) == (kind, a.seed)
                   and not r["dense_from"] and r["settings"]["epochs"] == a.epochs]
        dense_from = (os.path.join(trained[0]["run_dir"], "dense_model.keras")
                      if trained else None)
        for basis in a.bases.split(","):
            settings = dict(SETTINGS, epochs=a.epochs, keep_ratio=a.keep_ratio,
                            retrain_epochs=a.retrain_epochs)
            if any((r["model"], r["basis"], r["seed"]) == (kind, basis, a.seed) and
                   all(r["settings"][k] == settings[k] for k in ("keep_ratio", "retrain_epochs"))
                   for r in runs):
                continue
            if dense_from:
                settings.update(init_from=dense_from, epochs=0)
            config = CompressionConfig(model_fn=_builder(kind), wavelet=basis, seed=a.seed,
                                       data_dir=a.data_dir, save_dir=a.save_dir, **settings)
            t0 = time.time()
            report = run_compression(config)
            d, c = report["dense"], report["compressed"]
            dense_from = dense_from or report["files"]["dense_model"]
            op = report.get("operating_point") or {}
            runs.append({
                "model": kind, "basis": basis, "seed": a.seed, "model_options": MODELS[kind],
                # `epochs`: the dense model's (a run started from it trains 0 itself)
                "settings": {k: v for k, v in settings.items()
                             if k not in ("init_from", "epochs")} | {"epochs": a.epochs},
                "dense_from": settings.get("init_from"), "n_params": d["n_params"],
                "dense_test_accuracy": d["test_accuracy"],
                "dense_val_accuracy": d.get("val_accuracy"),
                "compressed_test_accuracy": c["test_accuracy"],
                "drop_points": 100 * (d["test_accuracy"] - c["test_accuracy"]),
                "bytes_float32": d["bytes_float32"],
                "bytes_compressed_file": c["bytes_compressed_file"],
                "compression_ratio": c["compression_ratio"],
                "fraction_of_bytes_removed": 1 - c["bytes_compressed_file"] / d["bytes_float32"],
                "keep_ratio": report["keep_ratio"], "operating_point": op,
                "plan": [{k: p.get(k) for k in ("layer", "basis_name", "view", "level")}
                         for p in report["plan"]],
                "dense_layers": [{k: e.get(k) for k in ("layer", "n_weights", "reason")}
                                 for e in report.get("dense_layers", [])],
                "storage": c.get("byte_breakdown"), "seconds": time.time() - t0,
                "run_dir": report["run_dir"]})
            rec.write({"runs": runs}, seeds=sorted({r["seed"] for r in runs}))
            print(f"{kind} {basis} seed {a.seed}: {c['compression_ratio']:.1f}x at "
                  f"{100 * c['test_accuracy']:.2f} % (dense {100 * d['test_accuracy']:.2f} %)",
                  flush=True)


if __name__ == "__main__":
    main()
