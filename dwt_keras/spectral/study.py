"""The spectral-truncation convergence study: its statistics, table and merging.

Does the curriculum speed up training? For each condition (`baseline` = no truncation,
`linear` and `cosine` mask profiles) and seed, a model is trained for a fixed number of epochs;
after every epoch its test accuracy is measured (the study's question is "epochs and wall time
to reach a fixed test accuracy", so here, and only here, the test split is evaluated at every
epoch), together with the validation accuracy; the test accuracy at the epoch of best
*validation* accuracy is the model-selection view. The runs themselves are the experiment
engine's (`dwt_keras.experiments.spectral_study`); this module turns their per-epoch records
into the summary (`run_summary`, `summarize`), the markdown table (`results_markdown`) and
merges studies run in parts (`merge_results`).
"""

import json
import pathlib

import numpy as np

__all__ = ["CONDITIONS", "MODELS", "run_summary", "summarize", "results_markdown",
           "model_description", "merge_results", "load_results", "write_results"]

CONDITIONS = ("baseline", "linear", "cosine")
#: Models of the study: the small CNN, or W-MSA-tiny (`dwt_keras.transformer`).
MODELS = ("cnn", "wmsa")


def _first_reach(values, target):
    for i, v in enumerate(values):
        if v >= target:
            return i
    return None


def run_summary(condition, seed, records, target_accuracy, wall_time_s):
    """The summary of one (condition, seed) run from its per-epoch records.

    Args:
        condition, seed: the run.
        records: one dict per epoch with `train_time_s`, `test_accuracy`, `val_accuracy`, ...
        target_accuracy: the fixed test accuracy of the time-to-accuracy metric.
        wall_time_s: the wall time of the whole fit.
    """
    test = [r["test_accuracy"] for r in records]
    val = [r["val_accuracy"] for r in records]
    cum = np.cumsum([r["train_time_s"] for r in records])
    reach = _first_reach(test, target_accuracy)
    reach_val = _first_reach(val, target_accuracy)
    best_val = int(np.argmax(val))
    return {
        "condition": condition,
        "seed": int(seed),
        "epochs_to_target": None if reach is None else reach + 1,
        "time_to_target_s": None if reach is None else float(cum[reach]),
        "epochs_to_target_val": None if reach_val is None else reach_val + 1,
        "final_test_accuracy": test[-1],
        "best_val_epoch": best_val + 1,
        "test_accuracy_at_best_val": test[best_val],
        "max_test_accuracy": float(max(test)),
        "train_time_s": float(cum[-1]),
        "wall_time_s": float(wall_time_s),
        "history": records,
    }


def _mean_std(values):
    values = [v for v in values if v is not None]
    if not values:
        return None, None, 0
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0, len(a)


_SUMMARY_KEYS = (
    "epochs_to_target",
    "time_to_target_s",
    "epochs_to_target_val",
    "final_test_accuracy",
    "test_accuracy_at_best_val",
    "max_test_accuracy",
    "train_time_s",
)


def summarize(runs):
    """Mean, sample std and count (runs that reached the target) per condition and metric."""
    out = {}
    for cond in dict.fromkeys(r["condition"] for r in runs):
        rs = [r for r in runs if r["condition"] == cond]
        out[cond] = {"n_runs": len(rs)}
        for k in _SUMMARY_KEYS:
            m, s, n = _mean_std([r[k] for r in rs])
            out[cond][k] = {"mean": m, "std": s, "n": n}
    return out


def _fmt(stat, digits=3, pct=False):
    if stat["mean"] is None:
        return "not reached"
    scale = 100.0 if pct else 1.0
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def model_description(config):
    """One line naming the study's model (for reports); `config` is the study's config dict."""
    if config.get("model", "cnn") == "wmsa":
        return ("W-MSA-tiny (WaveletTransformer: width 96, 4 blocks, 3 heads, db4, J=3, "
                "4x4 grouping, LayerNorm on the embedded tokens)")
    return f"Small CNN (width {config.get('width', 16)})"


#: The training extras a study may set for every condition alike, and their defaults.
STUDY_EXTRAS = {"augment": "none", "lr_schedule": "constant", "l1": 0.0, "l2": 0.0,
                "dropout": 0.0, "batch_norm": False}


def _extras(config):
    return {k: config.get(k) for k, default in STUDY_EXTRAS.items()
            if config.get(k, default) != default}


def results_markdown(summary, config, info=None, command=None, machine=None):
    """A markdown table of `summarize` output with the study settings (`config`: a dict)."""
    c = config
    extras = _extras(c)
    lines = [
        f"{model_description(c)} on {c['dataset']}"
        + (f" ({info['n_train']} train / {info['n_val']} val / {info['n_test']} test)"
           if info else "")
        + f", {c['epochs']} epochs, {c.get('optimizer', 'adam').capitalize()} lr {c['lr']}, "
        f"batch {c['batch_size']}, seeds {list(c['seeds'])}; "
        f"truncation: tau {c['tau_init']} -> {c['tau_final']} over {c['truncation_epochs']} "
        f"epochs then off (cosine roll-off {c.get('mask_rolloff', c.get('rolloff'))}). Target test accuracy "
        f"{c['target_accuracy']:.2f}. Mean ± sample std over seeds; 'reached' counts the runs "
        "that reached the target (epoch/time means are over those runs only). Time = training "
        "batches only."
        + (f" Training extras (all conditions): {extras}." if extras else ""),
        "",
        "| condition | reached | epochs to target (test) | train time to target (s) "
        "| epochs to target (val) | final test acc (%) | test acc at best val (%) | total train time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for cond, s in summary.items():
        lines.append(
            f"| {cond} | {s['epochs_to_target']['n']}/{s['n_runs']} | {_fmt(s['epochs_to_target'], 1)} "
            f"| {_fmt(s['time_to_target_s'], 1)} | {_fmt(s['epochs_to_target_val'], 1)} "
            f"| {_fmt(s['final_test_accuracy'], 1, True)} | {_fmt(s['test_accuracy_at_best_val'], 1, True)} "
            f"| {_fmt(s['train_time_s'], 1)} |"
        )
    if command:
        lines += ["", f"Command: `{command}`"]
    if machine:
        lines += [f"Machine: {machine}"]
    return "\n".join(lines) + "\n"


def load_results(path):
    with open(path) as f:
        return json.load(f)


def merge_results(results_list, command=None):
    """Combines study results run in parts (e.g. different seeds in parallel).

    Settings other than the seeds must agree; a (condition, seed) pair present
    twice is an error. Returns a results dict like `run_study`'s, with the
    summary recomputed over all runs and `complete` true only if every part was.
    """
    if not results_list:
        raise ValueError("merge_results needs at least one results dict.")
    base = dict(results_list[0]["config"])
    base.pop("seeds", None)
    runs, seen, seeds = [], set(), []
    for res in results_list:
        cfg = dict(res["config"])
        part_seeds = cfg.pop("seeds", ())
        if {k: v for k, v in cfg.items() if k != "conditions"} != {
            k: v for k, v in base.items() if k != "conditions"
        }:
            raise ValueError("merge_results: the parts were run with different settings.")
        for r in res["runs"]:
            key = (r["condition"], r["seed"])
            if key in seen:
                raise ValueError(f"merge_results: run {key} appears twice.")
            seen.add(key)
            runs.append(r)
        seeds += [s for s in part_seeds if s not in seeds]
    config = dict(results_list[0]["config"], seeds=sorted({r["seed"] for r in runs}))
    return {
        "config": config,
        "data": results_list[0].get("data"),
        "machine": results_list[0].get("machine"),
        "command": command or [r.get("command") for r in results_list],
        "summary": summarize(runs),
        "runs": runs,
        "complete": all(r.get("complete") for r in results_list),
        "parts": len(results_list),
    }


def write_results(results, out_dir):
    """Writes `spectral_study.json` and `spectral_study.md` for a results dict."""
    from dwt_keras.utils.io import atomic_write_bytes, atomic_write_json, check_writable_dir

    out_dir = check_writable_dir(pathlib.Path(out_dir))
    cmd = results.get("command")
    cmd = "; ".join(c for c in cmd if c) if isinstance(cmd, list) else cmd
    atomic_write_json(out_dir / "spectral_study.json", results)
    md = results_markdown(results["summary"], results["config"], results.get("data"), cmd,
                          results.get("machine"))
    atomic_write_bytes(out_dir / "spectral_study.md", md.encode())
    return out_dir
