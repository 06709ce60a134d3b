"""Summarise the W-MSA vs ViT accuracy runs under one or more save_dirs (finished or not).

Reads every run folder's report.json (finished: TEST accuracy) and history.csv
(per-epoch VALIDATION accuracy, also for unfinished runs), and prints / writes:
test accuracy mean ± std over finished seeds, and validation accuracy per epoch
(mean ± std over the seeds that reached it) so that partially finished runs are
still compared at equal epochs of the same schedule. Runs are grouped by the
variant names of `dwt_keras.transformer.analysis` (`vit`, `wmsa`,
`wmsa_nokernel`, `wmsa_previous`, ...), which include the W-MSA settings
recorded only in the saved model.

Usage:
    python benchmarks/bench_wmsa_summary.py --save_dir saved_models/bench_wmsa \
        --out benchmarks/results/wmsa_accuracy_summary.json
    python benchmarks/bench_wmsa_summary.py --save_dir saved_models/bench_wmsa saved_models/bench_wmsa2 \
        --models vit wmsa --out benchmarks/results/wmsa_accuracy_summary2.json
"""

import argparse
import csv
import json
import os
import pathlib

import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dwt_keras.transformer.analysis import saved_model_settings, variant_of_config  # noqa: E402


def read_history(path):
    """history.csv rows by epoch (last row wins); no TensorFlow import needed."""
    if not pathlib.Path(path).exists():
        return []
    rows = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            rows[int(row["epoch"])] = {k: float(v) if v else None for k, v in row.items()}
    return [rows[k] for k in sorted(rows)]


def _ms(values):
    v = np.asarray(values, dtype=float)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--save_dir", nargs="+", default=["saved_models/bench_wmsa"])
    ap.add_argument("--models", nargs="*", default=None,
                    help="only these variants (default: every variant found)")
    ap.add_argument("--out", default="benchmarks/results/wmsa_accuracy_summary.json")
    args = ap.parse_args()

    runs = {}
    cfg_paths = sorted(p for d in args.save_dir for p in pathlib.Path(d).glob("*/config.json"))
    for cfg_path in cfg_paths:
        cfg = json.loads(cfg_path.read_text())
        if cfg["model"] == "wmsa":
            cfg.update(saved_model_settings(cfg_path.parent))
        model = variant_of_config(cfg)
        if args.models and model not in args.models:
            continue
        rep_path = cfg_path.parent / "report.json"
        rep = json.loads(rep_path.read_text()) if rep_path.exists() else None
        hist = read_history(cfg_path.parent / "history.csv")
        runs.setdefault(model, []).append({
            "seed": cfg["seed"],
            "run_dir": str(cfg_path.parent),
            "epochs_planned": cfg["epochs"],
            "epochs_done": len(hist),
            "val_accuracy": [h.get("val_accuracy") for h in hist],
            "epoch_time_s": [h.get("epoch_time_s") for h in hist],
            "test_accuracy": rep["test"]["accuracy"] if rep else None,
            "test_f1_macro": rep["test"]["f1_macro"] if rep else None,
            "best_epoch": rep["selection"]["best_epoch"] if rep else None,
            "params": rep["params"] if rep else None,
        })

    summary = {"save_dir": args.save_dir, "models": {}}
    lines = ["| model | finished seeds | test accuracy (mean ± std) | macro F1 | params |",
             "|---|---|---:|---:|---:|"]
    for model, rs in sorted(runs.items()):
        done = [r for r in rs if r["test_accuracy"] is not None]
        entry = {"runs": rs, "finished_seeds": [r["seed"] for r in done]}
        if done:
            m, s = _ms([r["test_accuracy"] for r in done])
            entry["test_accuracy_mean"], entry["test_accuracy_std"] = m, s
            entry["test_f1_macro_mean"] = _ms([r["test_f1_macro"] for r in done])[0]
            lines.append(f"| {model} | {[r['seed'] for r in done]} | {m:.4f}"
                         f"{'' if s is None else f' ± {s:.4f}'} | {entry['test_f1_macro_mean']:.4f} | "
                         f"{done[0]['params']:,} |")
        else:
            lines.append(f"| {model} | none | — | — | — |")
        per_epoch = []
        for e in range(max((r["epochs_done"] for r in rs), default=0)):
            vals = [r["val_accuracy"][e] for r in rs if r["epochs_done"] > e]
            m, s = _ms(vals)
            per_epoch.append({"epoch": e + 1, "n_seeds": len(vals), "val_accuracy_mean": m,
                              "val_accuracy_std": s})
        entry["val_accuracy_per_epoch"] = per_epoch
        summary["models"][model] = entry

    lines += ["", "| epoch | " + " | ".join(f"{m} val acc (n seeds)" for m in sorted(runs)) + " |",
              "|---:|" + "---:|" * len(runs)]
    n_ep = max((len(e["val_accuracy_per_epoch"]) for e in summary["models"].values()), default=0)
    for e in range(n_ep):
        cells = []
        for m in sorted(runs):
            pe = summary["models"][m]["val_accuracy_per_epoch"]
            if e < len(pe):
                s = pe[e]["val_accuracy_std"]
                cells.append(f"{pe[e]['val_accuracy_mean']:.4f}{'' if s is None else f' ± {s:.4f}'} "
                             f"({pe[e]['n_seeds']})")
            else:
                cells.append("—")
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    md = "\n".join(lines)
    summary["markdown"] = md
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(summary, f, indent=2)
    os.replace(args.out + ".tmp", args.out)
    print(md)


if __name__ == "__main__":
    main()
