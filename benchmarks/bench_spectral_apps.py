"""Plumbing check of `--spectral_reg` in apps/DWT_model.py: the same run with and without it.

One seed, a few epochs: it shows that the app trains, compresses and reports with spectral
truncation on, and what it reports; it is not a study of whether truncation helps (see
apps/spectral_study.py and BENCHMARKS.md for that).

    TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 \
        python benchmarks/bench_spectral_apps.py --save_dir /tmp/spectral_apps \
        --out benchmarks/results/spectral_apps.md

Each run is `python apps/DWT_model.py <common flags> [--spectral_reg ...]`; the table is read
from the runs' report.json files.
"""

import argparse
import json
import os
import pathlib
import shlex
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_app(args, save_dir):
    save_dir = pathlib.Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    before = set(save_dir.iterdir())
    cmd = [sys.executable, "apps/DWT_model.py", *args, "--save_dir", str(save_dir)]
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1",
               TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="")
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    (run,) = set(save_dir.iterdir()) - before
    return cmd, json.loads((run / "report.json").read_text()), wall


def reloaded_accuracies(report):
    """Test accuracy of the run's saved dense .keras file and compressed file, reloaded here."""
    import keras

    from dwt_keras.compression import load_compressed
    from dwt_keras.experiments.compression import CompressionConfig
    from dwt_keras.experiments.run import load_data
    from dwt_keras.evaluation import evaluate_classifier

    cfg = report["config"]
    splits = load_data(CompressionConfig(dataset=cfg["dataset"], data_dir=cfg["data_dir"],
                                         validation_split=cfg["validation_split"],
                                         seed=cfg["seed"]))
    files = report["files"]
    dense = keras.models.load_model(files["dense_model"])
    comp = load_compressed(files["compressed_model"])
    return tuple(evaluate_classifier(m, splits.x_test, splits.y_test)["accuracy"]
                 for m in (dense, comp))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--save_dir", default="/tmp/spectral_apps")
    p.add_argument("--out", default="benchmarks/results/spectral_apps.md")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--truncation_epochs", type=int, default=2)
    p.add_argument("--retrain_epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    sys.path.insert(0, str(ROOT))
    from _timing import set_tf_threads

    set_tf_threads(1)

    common = ["--model", "lenet300", "--wavelet", "haar", "--keep_ratio", "0.03",
              "--epochs", str(a.epochs), "--retrain_epochs", str(a.retrain_epochs),
              "--batch_size", "128", "--seed", str(a.seed), "--noplots", "--verbose", "0"]
    spectral = ["--spectral_reg", "--truncation_epochs", str(a.truncation_epochs),
                "--tau_init", "0.05", "--tau_final", "1.0", "--mask_profile", "cosine"]
    rows = []
    for label, extra in (("without --spectral_reg", []), ("with --spectral_reg", spectral)):
        cmd, rep, wall = run_app(common + extra, a.save_dir)
        rows.append((label, cmd, rep, wall, reloaded_accuracies(rep)))
        print(label, rep["compressed"]["test_accuracy"], flush=True)

    root = str(ROOT)
    n = rows[0][2]["dataset"]
    lines = [
        "## Spectral truncation in apps/DWT_model.py: one-seed plumbing check (not a study)",
        "",
        f"Machine: 2-core x86_64 AMD EPYC VM, shared with other jobs, TF-CPU 2.21, 1 thread. "
        f"Seed {a.seed}, one run each, MNIST ({n['n_train']:,} train / {n['n_val']:,} validation "
        f"/ {n['n_test']:,} test), "
        f"LeNet-300-100, {a.epochs} dense epochs, haar keep 3 %, gradual schedule, "
        f"{a.retrain_epochs} retraining epochs, k-means 6-bit values, lzma. With the flag, the "
        f"first {a.truncation_epochs} dense epochs see DCT-low-passed inputs (cosine mask, "
        "tau 0.05 -> 1.0); early stopping starts after them. A single seed cannot tell whether "
        "the difference below is an effect of the truncation or noise.",
        "",
        "Command (from `benchmarks/bench_spectral_apps.py`):",
        "",
        "```",
        *[" ".join(shlex.quote(c) for c in cmd).replace(sys.executable, "python")
          .replace(root + "/", "") for _, cmd, _, _, _ in rows],
        "```",
        "",
        "| run | tau per dense epoch | dense test acc | compressed test acc | compressed file "
        "(B) | ratio | reloaded files: dense / compressed test acc | wall (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, _, rep, wall, (acc_dense, acc_comp) in rows:
        sp = rep["spectral"]
        taus = ", ".join(f"{t:g}" if ph else "off" for t, ph in
                         zip(sp.get("tau_history", []), sp.get("phase_history", []))) or "-"
        d, c = rep["dense"], rep["compressed"]
        lines.append(f"| {label} | {taus} | {d['test_accuracy']:.4f} | {c['test_accuracy']:.4f} "
                     f"| {c['bytes_compressed_file']:,} | {c['compression_ratio']:.1f}x "
                     f"| {acc_dense:.4f} / {acc_comp:.4f} | {wall:.0f} |")
    lines += ["", "Both reports passed the app's schema check (`validate_report`, run before "
              "report.json is written). Accuracies are on the test split: the report's dense "
              "figure is the trained model's, its compressed figure the reloaded file's; the "
              "`reloaded files` column re-evaluates the run's `dense_model.keras` and "
              "`compressed_model.dwtc` in this script. Wall time includes process start and "
              "TensorFlow import; the machine was shared, so it is not a speed figure.", ""]
    out = pathlib.Path(a.out)
    sys.path.insert(0, root)
    from dwt_keras.utils.io import atomic_write_bytes

    atomic_write_bytes(out, "\n".join(lines).encode())
    print("\n".join(lines))


if __name__ == "__main__":
    main()
