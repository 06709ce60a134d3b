"""Compare W-MSA against ViT and the W-MSA ablations.

For each variant (see `dwt_keras.transformer.analysis.VARIANTS`: vit, wmsa,
wmsa_nokernel, wmsa_bias, wmsa_gibbs, wmsa_haar, wmsa_db2, wmsa_J2, wmsa_p2,
wmsa_shared_embedding): parameters, analytic forward FLOPs, training and
inference throughput / latency at a fixed batch, and peak memory (each variant
measured in a fresh process so the peak RSS is its own); test accuracy (mean ±
std over seeds) from the saved runs found under the --runs_dir folders (their
report.json; the W-MSA settings that only the saved model records, such as
token_norm, are read from its best.keras);
plots of attention maps and of the learned kernel from a saved W-MSA run.

Writes ``comparison.md``, ``comparison.json`` and the PNG plots to a new folder
under --save_dir.

Example:

    python apps/compare_models.py --variants=vit,wmsa,wmsa_nokernel \
        --runs_dir=saved_models/bench_wmsa --dataset=cifar10_subset

    # accuracy table only, from two benchmark folders
    python apps/compare_models.py --variants= \
        --runs_dir=saved_models/bench_wmsa,saved_models/bench_wmsa2
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from absl import app, flags  # noqa: E402

from dwt_keras.cli import define_common_flags  # noqa: E402

define_common_flags(dataset="cifar10_subset", batch_size=128, save_dir="./saved_models")
flags.DEFINE_list("variants", ["vit", "wmsa", "wmsa_nokernel", "wmsa_bias"],
                  "Variants to measure (empty: accuracy and plots only).")
flags.DEFINE_enum("model_size", "tiny", ["tiny", "small", "base"], "Size of the measured models.")
flags.DEFINE_integer("repeats", 10, "Timed repeats per measurement (median).", lower_bound=1)
flags.DEFINE_boolean("isolate", True, "Measure each variant in a fresh process (own peak memory).")
flags.DEFINE_list("runs_dir", [], "Folders searched for finished runs (report.json).")
flags.DEFINE_string("plot_run", None, "Run folder (with best.keras) for the attention and kernel "
                    "plots; default: the first W-MSA run with a kernel under --runs_dir.")
flags.DEFINE_integer("plot_image", 0, "Index of the test image used for attention maps.",
                     lower_bound=0)

FLAGS = flags.FLAGS


def _measure(args):
    from dwt_keras.transformer.analysis import measure_variant

    return measure_variant(**args)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    import json
    import multiprocessing
    import pathlib

    from dwt_keras.transformer import analysis
    from dwt_keras.utils.io import atomic_write_bytes, atomic_write_json, make_run_dir

    unknown = [v for v in FLAGS.variants if v not in analysis.VARIANTS]
    if unknown:
        raise app.UsageError(f"Unknown variants {unknown}; choose from {sorted(analysis.VARIANTS)}.")
    missing = [d for d in FLAGS.runs_dir if not pathlib.Path(d).is_dir()]
    if missing:
        raise app.UsageError(f"--runs_dir: not a folder: {', '.join(missing)}.")
    out_dir = make_run_dir(FLAGS.save_dir, f"compare-{FLAGS.model_size}")

    rows = []
    for name in FLAGS.variants:
        args = dict(name=name, batch_size=FLAGS.batch_size, repeats=FLAGS.repeats,
                    model_size=FLAGS.model_size)
        if FLAGS.isolate:
            with multiprocessing.get_context("spawn").Pool(1) as pool:
                row = pool.apply(_measure, (args,))
        else:
            row = _measure(args)
        print(f"{name}: {row['params']:,} params, {row['train_images_per_s']:.0f} train img/s, "
              f"{row['infer_ms_per_image']:.3f} ms/img inference", flush=True)
        rows.append(row)

    accuracy = analysis.collect_runs(FLAGS.runs_dir) if FLAGS.runs_dir else []

    plots = []
    plot_run = FLAGS.plot_run
    if plot_run is None and FLAGS.runs_dir:
        configs = [p for d in FLAGS.runs_dir for p in sorted(pathlib.Path(d).rglob("config.json"))]
        for path in configs:
            cfg = json.loads(path.read_text())
            if cfg.get("model") == "wmsa" and cfg.get("use_kernel") and (path.parent / "best.keras").exists():
                plot_run = str(path.parent)
                break
    if plot_run:
        import keras

        from dwt_keras.data import load_arrays

        model = keras.saving.load_model(pathlib.Path(plot_run) / "best.keras", compile=False)
        cfg = json.loads((pathlib.Path(plot_run) / "config.json").read_text())
        splits = load_arrays(cfg["dataset"], data_dir=FLAGS.data_dir, validation_split=0.0)
        image = splits.x_test[FLAGS.plot_image]
        plots.append(str(analysis.plot_attention_maps(model, image, out_dir / "attention_maps.png")))
        if getattr(model, "use_kernel", False):
            plots.append(str(analysis.plot_learned_kernel(model, out_dir / "learned_kernel.png")))

    result = {
        "speed_and_size": rows,
        "accuracy_from_saved_runs": accuracy,
        "plots": plots,
        "plot_run": plot_run,
        "flops_method": "analytic (matmuls + DWT filter bank; see dwt_keras.transformer.analysis)",
    }
    atomic_write_json(out_dir / "comparison.json", result)
    md = analysis.markdown_table(rows, accuracy)
    atomic_write_bytes(out_dir / "comparison.md", md.encode())
    print(md)
    print(f"written to {out_dir}")


if __name__ == "__main__":
    app.run(main)
