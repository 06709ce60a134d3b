"""The paper's experiments (Wolter, Lin & Yao 2020) through the app, several variants x seeds.

Runs `apps/learnable_wavelet.py` once per (variant, seed), as a user would, interleaving the
variants seed by seed, reads each run's `report.json` and writes one result file through
`_record.py` (`benchmarks/results/<name>.json`), rewritten after every run: per run the
command, parameters, test metric (measured once, on the test split, with the weights of the
best validation epoch), best epoch, validation curve and time; per variant the mean, the sample
standard deviation and the values over seeds, and in how many seeds the target was met.
Re-running the same command resumes: runs already in the file with the same settings are kept.

Usage (the figures in BENCHMARKS.md):

  python benchmarks/bench_learnable_runs.py --name learnable_adding --experiment adding \
      --variants wavelet,gru --seeds 0,1,2 --target 0.91 --max_params 10000 -- \
      --hidden 256 --epochs 10 --steps_per_epoch 250
  python benchmarks/bench_learnable_runs.py --name learnable_mnist --experiment mnist \
      --variants wavelet,fastfood,dense --seeds 0,1,2 --target 0.991 --max_params 36100 -- \
      --epochs 5 --data_dir /work/shared/data

Everything after `--` is passed to the app unchanged (the same flags for every run).
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from _record import RESULTS_DIR, Recorder

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join("apps", "learnable_wavelet.py")
MONITOR = {"mnist": "val_accuracy", "smnist": "val_accuracy", "adding": "val_adding_accuracy",
           "copy": "val_loss"}


def _parse(argv):
    if "--" in argv:
        cut = argv.index("--")
        argv, app_flags = argv[:cut], argv[cut + 1:]
    else:
        app_flags = []
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True, help="result file stem under benchmarks/results")
    p.add_argument("--experiment", required=True, choices=sorted(MONITOR))
    p.add_argument("--variants", required=True,
                   help="comma-separated fc1 (mnist) or rnn (sequence tasks) variants")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--target", type=float, default=None,
                   help="the test metric a variant should reach (for the 'met in k of n' count)")
    p.add_argument("--max_params", type=int, default=None,
                   help="the parameter budget of the target (a run over it does not meet it)")
    p.add_argument("--save_dir", default="/tmp/bench_learnable_runs",
                   help="parent folder of the app's run folders (not committed)")
    args = p.parse_args(argv)
    args.variants = [v for v in args.variants.split(",") if v]
    args.seeds = [int(s) for s in args.seeds.split(",") if s]
    args.app_flags = app_flags
    return args


def _run_app(args, variant, seed):
    """One app run; returns its record (the report's figures and the command)."""
    axis = "--fc1" if args.experiment == "mnist" else "--rnn"
    save_dir = os.path.join(args.save_dir, args.name, f"{variant}-s{seed}")
    cmd = [sys.executable, APP, "--experiment", args.experiment, axis, variant, "--seed",
           str(seed), "--save_dir", save_dir, "--verbose", "2", "--noplots", *args.app_flags]
    start = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"run failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    report_line = [ln for ln in proc.stdout.splitlines() if ln.startswith("report: ")][-1]
    with open(report_line[len("report: "):]) as f:
        report = json.load(f)
    monitor = MONITOR[args.experiment]
    record = {
        "variant": variant, "seed": seed,
        "command": " ".join(["python", *cmd[1:]]),
        "params": report["params"], "test_accuracy": report["test_accuracy"],
        "best_epoch": report["best_epoch"], "epochs_run": report["epochs_run"],
        "monitor": monitor, "val_curve": report["history"].get(monitor, []),
        "train_seconds": report["train_seconds"], "wall_seconds": time.time() - start,
        "run_dir": report["run_dir"], "app_machine": report.get("machine"),
    }
    for key in ("fc1_params", "test_mse", "train_steps", "steps_per_epoch", "test_loss"):
        if key in report:
            record[key] = report[key]
    return record


def summarize(runs, variants, target=None, max_params=None):
    """Per variant: n, mean, sample std (ddof=1) and the per-seed test metric; with a target,
    in how many seeds it was met (test metric >= target and params <= max_params)."""
    out = {}
    for v in variants:
        rows = sorted((r for r in runs if r["variant"] == v), key=lambda r: r["seed"])
        if not rows:
            continue
        acc = np.array([r["test_accuracy"] for r in rows], dtype=float)
        entry = {"n": len(rows), "seeds": [r["seed"] for r in rows],
                 "test_accuracy": acc.tolist(), "mean": float(acc.mean()),
                 "std": float(acc.std(ddof=1)) if len(rows) > 1 else None,
                 "params": rows[0]["params"]}
        if target is not None:
            entry["met"] = int(sum(a >= target and (max_params is None or r["params"] <= max_params)
                                   for a, r in zip(acc, rows)))
        out[v] = entry
    return out


def main(argv=None):
    args = _parse(sys.argv[1:] if argv is None else argv)
    settings = {"experiment": args.experiment, "app_flags": args.app_flags,
                "target": args.target, "max_params": args.max_params}
    path = os.path.join(RESULTS_DIR, f"{args.name}.json")
    runs = []
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)["results"]
        if previous.get("settings") == settings:   # the same command: resume
            runs = [r for r in previous["runs"]
                    if r["variant"] in args.variants and r["seed"] in args.seeds]
    rec = Recorder(args.name)
    done = {(r["variant"], r["seed"]) for r in runs}
    for seed in args.seeds:
        for variant in args.variants:          # interleaved: every variant sees the same load
            if (variant, seed) in done:
                continue
            record = _run_app(args, variant, seed)
            runs.append(record)
            print(json.dumps({k: record[k] for k in ("variant", "seed", "params",
                                                     "test_accuracy", "best_epoch")}), flush=True)
            rec.write({"settings": settings, "runs": runs,
                       "summary": summarize(runs, args.variants, args.target, args.max_params)},
                      seeds=sorted({r["seed"] for r in runs}))
    print(json.dumps(summarize(runs, args.variants, args.target, args.max_params), indent=1))


if __name__ == "__main__":
    main()
