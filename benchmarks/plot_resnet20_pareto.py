"""Issue 15's Pareto plot: test accuracy against file bytes for ResNet-20 on the CIFAR-10
subset, every basis and the no-pruning files, from the result files (no training).

x: the stored file's bytes (log scale); y: test accuracy minus the same seed's dense test
accuracy (points), so seeds with different dense models share one axis. Plotted:

* the bases at one operating point (`fixed10_*`: keep 10 %, 5 retraining epochs), 3 seeds;
* the operating-point walks of the recipes (`keep15_retrain15`, and `standard`: the config): each
  stage's test accuracy against its bytes at 6 bits (recorded for curves, never used to choose),
  and the stored file the walk chose (a star: its bits chosen per layer);
* no pruning: k-means values alone (4/5/6/8 bits) and Keras 3 `model.quantize("int8")`;
* the target: >= 30x (a vertical line at float32 / 30) within 1.0 point (a horizontal line).

    python benchmarks/plot_resnet20_pareto.py   # writes benchmarks/results/resnet20_pareto.png
"""

import os

from render_benchmarks import RESULTS, load, no_pruning_results

OUT = os.path.join(RESULTS, "resnet20_pareto.png")

BASES = {"fixed10_identity": ("identity (magnitude pruning)", "o", "tab:gray"),
         "fixed10_dct": ("dct over the 3x3 taps", "s", "tab:blue"),
         "fixed10_flatten": ("haar over flattened cin*kh*kw", "v", "tab:red"),
         "fixed10_auto": ("auto (identity / dct per layer)", "D", "tab:green")}
WALKS = {"keep15_retrain15": ("walk, keep15_retrain15 (stage factor 0.8)", "tab:olive"),
         "standard": ("walk, the config's recipe (stage factor 0.9)", "tab:purple")}


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load("compression_targets_cifar10_subset_resnet20.json")["results"]["runs"]
    dense = {r["seed"]: r["dense_test_accuracy"] for r in runs}
    f32 = runs[0]["bytes_float32"]
    fig, ax = plt.subplots(figsize=(9, 5.5))
    for variant, (label, marker, color) in BASES.items():
        rs = [r for r in runs if r["variant"] == variant]
        if rs:
            ax.scatter([r["bytes_compressed_file"] for r in rs],
                       [100 * (r["compressed_test_accuracy"] - dense[r["seed"]]) for r in rs],
                       marker=marker, color=color, s=45, label=f"{label}, keep 10 %")
    for variant, (label, color) in WALKS.items():
        for i, r in enumerate(x for x in runs if x["variant"] == variant):
            stages = (r["operating_point"] or {}).get("stages", [])
            d = dense[r["seed"]]
            ax.plot([s["bytes_compressed_file"] for s in stages],
                    [100 * (s["test_accuracy"] - d) for s in stages], "-", color=color,
                    alpha=0.6, lw=1, label=f"{label}: stages at 6 bits" if i == 0 else None)
            ax.scatter([r["bytes_compressed_file"]], [100 * (r["compressed_test_accuracy"] - d)],
                       marker="*", s=140, color=color,
                       label=f"{label}: the stored file" if i == 0 else None)
    for i, res in enumerate(no_pruning_results()):
        d = res["dense"]["test_accuracy"]
        ks = list(res["kmeans_only"].values())
        ax.scatter([k["bytes_compressed_file"] for k in ks],
                   [100 * (k["test_accuracy_recalibrated"] - d) for k in ks], marker="P",
                   color="tab:orange", label="k-means values alone, no pruning (4-8 bits)"
                   if i == 0 else None)
        q = res["keras_quantize"].get("int8")
        if q:
            ax.scatter([q["bytes_keras"]], [100 * (q["test_accuracy"] - d)], marker="x",
                       color="black", label='Keras 3 model.quantize("int8") (.keras)'
                       if i == 0 else None)
    ax.axvline(f32 / 30, color="k", ls=":", lw=1)
    ax.axhline(-1.0, color="k", ls=":", lw=1)
    ax.text(f32 / 30, ax.get_ylim()[0], " 30x", va="bottom", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("file bytes (log)")
    ax.set_ylabel("test accuracy minus the seed's dense model (points)")
    ax.set_title("ResNet-20, CIFAR-10 subset (1,000 test images): accuracy against bytes")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    tmp = OUT + ".tmp.png"
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, OUT)
    print("wrote", OUT)


if __name__ == "__main__":
    main()
