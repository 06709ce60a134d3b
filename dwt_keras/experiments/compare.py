"""The model comparison behind `apps/compare_models.py`: W-MSA against ViT and the ablations.

For each variant (`dwt_keras.transformer.analysis.VARIANTS`): parameters, analytic forward
FLOPs, training and inference throughput / latency at a fixed batch, and peak memory (each
variant measured in a fresh process so the peak RSS is its own); test accuracy (mean ± std over
seeds) from the FINISHED runs found under `runs_dir` (unfinished or interrupted run folders are
skipped and listed); attention-map and learned-kernel plots from a saved W-MSA run. Writes
`comparison.md`, `comparison.json` and the PNGs into a new run folder.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib

import keras

from dwt_keras import data
from dwt_keras.experiments.options import RunOptions
from dwt_keras.experiments.run import Environment, Run, is_finished, run_state
from dwt_keras.transformer import analysis
from dwt_keras.transformer.analysis import measure_variant
from dwt_keras.utils.options import OptionError, option, validate_options

__all__ = ["CompareConfig", "run_compare", "finished_runs"]


@dataclasses.dataclass
class CompareConfig(RunOptions):
    """Settings of a comparison (the flags of `apps/compare_models.py`)."""

    dataset: str = option("cifar10_subset")
    batch_size: int = option(128, "Batch size of the speed measurements.", minimum=1)
    variants: tuple = option(("vit", "wmsa", "wmsa_nokernel", "wmsa_bias"), "Variants to measure "
                             "(empty: accuracy and plots only).", list_of=str)
    model_size: str = option("tiny", "Size of the measured models.",
                             choices=("tiny", "small", "base"))
    repeats: int = option(10, "Timed repeats per measurement (median).", minimum=1)
    isolate: bool = option(True, "Measure each variant in a fresh process (own peak memory).")
    runs_dir: tuple = option((), "Folders searched for finished runs (report.json).",
                             list_of=str)
    plot_run: str | None = option(None, "Run folder (with best.keras) for the attention and "
                                  "kernel plots; default: the first W-MSA run with a kernel "
                                  "under --runs_dir.")
    plot_image: int = option(0, "Index of the test image used for attention maps.", minimum=0)

    def validate(self):
        validate_options(self)
        unknown = [v for v in self.variants if v not in analysis.VARIANTS]
        if unknown:
            raise OptionError("variants", f"`variants` must be among "
                              f"{', '.join(sorted(analysis.VARIANTS))}. Received: {list(unknown)}")
        missing = [d for d in self.runs_dir if not pathlib.Path(d).is_dir()]
        if missing:
            raise OptionError("runs_dir", f"`runs_dir` entries must be folders. "
                                          f"Received: {', '.join(missing)}")
        return self


def finished_runs(runs_dir):
    """`(finished, skipped)`: the run folders holding a report under `runs_dir` whose run
    completed, and those that did not (interrupted, failed, still running)."""
    dirs = [runs_dir] if isinstance(runs_dir, (str, pathlib.Path)) else list(runs_dir)
    folders = sorted({p.parent for d in dirs for p in pathlib.Path(d).rglob("report.json")})
    finished = [f for f in folders if is_finished(f)]
    skipped = [{"run_dir": str(f), "state": run_state(f)} for f in folders if not is_finished(f)]
    return finished, skipped


def _measure(args):
    return measure_variant(**args)


def run_compare(config):
    """Runs the comparison of `config` in a new run folder; returns its result."""
    import multiprocessing

    config.validate()
    with Environment(config) as env:
        run = Run.new(config, env, f"compare-{config.model_size}", recipe="compare")
        with run:
            rows = []
            for name in config.variants:
                run.set_phase(f"measuring {name}")
                args = dict(name=name, batch_size=config.batch_size, repeats=config.repeats,
                            model_size=config.model_size)
                if config.isolate:
                    with multiprocessing.get_context("spawn").Pool(1) as pool:
                        row = pool.apply(_measure, (args,))
                else:
                    row = _measure(args)
                print(f"{name}: {row['params']:,} params, {row['train_images_per_s']:.0f} train "
                      f"img/s, {row['infer_ms_per_image']:.3f} ms/img inference", flush=True)
                rows.append(row)
            finished, skipped = finished_runs(config.runs_dir) if config.runs_dir else ([], [])
            accuracy = analysis.collect_runs(finished) if finished else []
            plots = _plots(run, config, finished)
            result = {"speed_and_size": rows, "accuracy_from_saved_runs": accuracy,
                      "skipped_unfinished_runs": skipped, "plots": plots[1:],
                      "plot_run": plots[0],
                      "flops_method": "analytic (matmuls + DWT filter bank; see "
                                      "dwt_keras.transformer.analysis)"}
            run.write_json("comparison.json", result)
            md = analysis.markdown_table(rows, accuracy)
            (run.dir / "comparison.md").write_text(md)
            run.write_report(result)
            print(md)
            print(f"written to {run.dir}")
    return result


def _plots(run, config, finished):
    """`[plot_run, png, ...]`: attention maps and the learned kernel of a saved W-MSA run."""

    plot_run = config.plot_run
    if plot_run is None:
        for folder in finished:
            path = folder / "config.json"
            if not path.exists():
                continue
            cfg = json.loads(path.read_text())
            if cfg.get("model") == "wmsa" and cfg.get("use_kernel") and \
                    (folder / "best.keras").exists():
                plot_run = str(folder)
                break
    if not plot_run:
        return [None]

    run.set_phase("plots")
    model = keras.saving.load_model(pathlib.Path(plot_run) / "best.keras", compile=False)
    cfg = json.loads((pathlib.Path(plot_run) / "config.json").read_text())
    splits = data.load_arrays(cfg["dataset"], data_dir=config.data_dir, validation_split=0.0)
    image = splits.x_test[config.plot_image]
    out = [plot_run, str(analysis.plot_attention_maps(model, image, run.dir / "attention_maps.png"))]
    if getattr(model, "use_kernel", False):
        out.append(str(analysis.plot_learned_kernel(model, run.dir / "learned_kernel.png")))
    return out
