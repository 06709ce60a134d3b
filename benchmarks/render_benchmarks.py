"""Generates the tables of BENCHMARKS.md from the result files in `benchmarks/results/`.

Every table of BENCHMARKS.md that this script owns sits between two markers::

    <!-- table:NAME -->
    ...generated, never edited by hand...
    <!-- /table:NAME -->

and is the output of the function registered as NAME below, which reads only files under
`benchmarks/results/` (each written by the script that measured it; since `_record.py`, with
the command, git commit, machine, load before/after, seeds and time). The prose around the
markers stays hand-written. Usage::

    python benchmarks/render_benchmarks.py           # rewrite the tables in BENCHMARKS.md
    python benchmarks/render_benchmarks.py --check   # exit 1 if a table differs from its files

`tests/test_benchmarks_doc.py` runs the check, so a table and its files cannot diverge.

Adding a table (one small function per table):

1. Let the benchmark script write `benchmarks/results/<file>.json` through
   `_record.Recorder(<file>).write(results, seeds=...)`.
2. Add a function here that reads it and returns markdown, and register it::

       @table("my_table")
       def _my_table():
           res = load("my_file.json")["results"]
           return md_table(["a", "b"], [[r["a"], pct(r["b"])] for r in res["rows"]])

   Format numbers with the helpers (`pct`, `num`, `mean_std`, ...); timings go through
   `timing_note` / `ratio`, which enforce the speed rule below.
3. Put `<!-- table:my_table -->` and `<!-- /table:my_table -->` where the table belongs in
   BENCHMARKS.md and run this script. A marker without a function, a function without a
   marker, or a missing file is an error.

The rule for timings: a file whose `meta.quiet` is true (load average <= 1.5 before and after,
on these 2 cores) gives numbers. A `_record.py` file that is not quiet gives no timing at all:
its table says so, with the load and the command to re-run. Files older than `_record.py`
(no `meta`; measured at the load averages the prose states) give same-run ratios only, to one
decimal and marked with "~", never absolute times.

A summary row (the first table) is a function registered with `@summary_row`; the rows appear
in registration order.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
DOC = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")

TABLES = {}
SUMMARY_ROWS = []
MARKER = re.compile(r"<!-- table:(?P<name>[\w-]+) -->\n(?P<body>.*?)<!-- /table:(?P=name) -->",
                    re.S)


def table(name):
    """Registers a function returning the markdown of table `name`."""

    def register(fn):
        if name in TABLES:
            raise ValueError(f"table {name!r} registered twice")
        TABLES[name] = fn
        return fn

    return register


def summary_row(fn):
    """Registers a function returning one summary row: [benchmark, target, measured, status]."""
    SUMMARY_ROWS.append(fn)
    return fn


# ---- reading and formatting ---------------------------------------------------------------

def load(relpath):
    with open(os.path.join(RESULTS, relpath)) as f:
        return json.load(f)


def load_csv(relpath):
    with open(os.path.join(RESULTS, relpath), newline="") as f:
        return list(csv.DictReader(f))


def markdown_rows(relpath, heading):
    """The rows of the first markdown table after `heading` in an output file (as strings)."""
    with open(os.path.join(RESULTS, relpath)) as f:
        text = f.read()
    start = text.index(heading) if heading else 0
    lines = [ln for ln in text[start:].splitlines()]
    first = next(i for i, ln in enumerate(lines) if ln.startswith("|"))
    rows = []
    for ln in lines[first + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def md_table(header, rows, align=None):
    out = ["| " + " | ".join(header) + " |",
           "|" + "|".join(align or ["---"] * len(header)) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def pct(x, digits=2):
    return "-" if x is None else f"{100 * x:.{digits}f}"


def num(x, digits=0):
    return "-" if x is None else f"{x:,.{digits}f}"


def mean_std(values, scale=100, digits=2):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    m = statistics.mean(values) * scale
    if len(values) == 1:
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def per_seed(values, scale=100, digits=2):
    return " / ".join(f"{v * scale:.{digits}f}" for v in values)


def loads(meta):
    return f"load {meta['load_before']:.1f} → {meta['load_after']:.1f}"


def timing_note(meta, command=None):
    """None when `meta` is quiet; else the sentence a table prints instead of its timings."""
    if meta.get("quiet"):
        return None
    return (f"Not measured on a quiet machine ({loads(meta)} on {meta['machine']['cores']} "
            f"cores, `quiet: false`): no timing is quoted. Re-run on a quiet machine: "
            f"`{command or meta['command']}`.")


def timed(relpath):
    """``(results, None)`` for a quiet file; ``(None, sentence)`` for one whose timings the rule
    keeps out of the tables (`timing_note`)."""
    f = load(relpath)
    note = timing_note(f["meta"])
    return (None, note) if note else (f["results"], None)


def ratio(x):
    """A same-run time ratio from a file older than `_record.py` (noisy machine)."""
    return f"~{x:.1f}x"


@table("tfdata_iterator")
def _tfdata_iterator():
    res, note = timed("tfdata_iterator.json")
    if note:
        return note
    names = ["tf.function", "new iterator", "kept iterator", "new iterator, identity map",
             "pywt"]
    rows = [[r["mode"]] + [f"{num(r['median_ms'][k], 1)} ({r['ratio_to_pywt'][k]:.2f})"
                           for k in names]
            + [f"{r['graph_nodes']} ({r['graph_nodes_not_const']})" if "graph_nodes" in r else "-"]
            for r in res["rows"]]
    return md_table(["mode"] + [f"{k}: ms (/ pywt)" for k in names]
                    + ["graph nodes (not Const)"], rows, ["---"] + ["---:"] * (len(names) + 1))


@table("wavelet_layout")
def _wavelet_layout():
    res, note = timed("wavelet_layout.json")
    if note:
        return note
    cell = {(r["case"], r["mode"], r["layout"], r["contender"]): r for r in res["rows"]}
    rows = []
    for case, mode in dict.fromkeys((r["case"], r["mode"]) for r in res["rows"]):
        line = [case, mode]
        for contender in ("tf.function", "tf.data new iterator"):
            for layout in ("caller's", "axes first"):
                r = cell[(case, mode, layout, contender)]
                line.append(f"{num(r['median_ms'], 1)} ({r['ratio_to_pywt']:.2f})")
        line += [" / ".join(f"{cell[(case, mode, layout, 'first call')]['seconds']:.2f}"
                            for layout in ("caller's", "axes first"))]
        rows.append(line)
    return md_table(["case", "mode", "tf.function, caller's layout: ms (/ pywt)",
                     "tf.function, axes first", "new tf.data iterator, caller's layout",
                     "new tf.data iterator, axes first", "first call s (caller's / axes first)"],
                    rows, ["---", "---"] + ["---:"] * 5)


# ---- summary ------------------------------------------------------------------------------

@table("summary")
def _summary():
    return md_table(["benchmark", "target", "measured", "status"], [f() for f in SUMMARY_ROWS])


# ---- wavelet transforms (section owned by the transforms work; from its output file) ------

@summary_row
def _row_transform():
    f = load("wavelet_modes.json")
    rows = [r for r in f["results"]["rows"] if "ratio_to_pywt" in r and r["contender"] != "pywt"]
    title = ("wavelet transforms, every execution mode, fwd+inv vs PyWavelets "
             f"({len(f['results']['cases'])} cases, {len({r['contender'] for r in rows})} "
             "contenders)")
    if not f["meta"].get("quiet"):
        return [title, "<= 0.5x", _not_quiet(f, "wavelet_modes.json") + "; same-run ratios, "
                "indicative only, in its [section](#wavelet-transforms)",
                "to re-measure on a quiet machine"]
    per_mode = {}  # the forward+inverse contenders (the 0.5x target is not theirs to meet)
    for r in rows:
        if "fwd+bwd" not in r["contender"]:
            per_mode.setdefault(r["contender"], []).append(r["ratio_to_pywt"])
    text = "; ".join(f"{c} {sum(v <= 0.5 for v in vs)} of {len(vs)}" for c, vs in per_mode.items())
    met = all(v <= 0.5 for vs in per_mode.values() for v in vs)
    return [title, "<= 0.5x", f"cells within 0.5x: {text} (quiet, one thread, "
            f"{loads(f['meta'])}; `wavelet_modes.json`)", "met" if met else "**missed**"]


@summary_row
def _row_transform_memory():
    f = load("wavelet_scaling.json")
    peak = {(r["dims"], r["n"]): r for r in f["results"]["rows"] if r["lib"] == "dwt_keras"}
    n1 = max(n for d, n in peak if d == 1)
    n2 = max(n for d, n in peak if d == 2)
    return [f"`wavedec`+`waverec` peak memory against n ({f['results']['wavelet']}, "
            f"{f['results']['mode']})", "O(n)",
            f"peak {num(peak[(1, n1)]['peak_mb_above_baseline'])} MB at {n1:,} samples (1-D), "
            f"{num(peak[(2, n2)]['peak_mb_above_baseline'])} MB at {n2}x{n2} (2-D); times: "
            + _not_quiet(f, "wavelet_scaling.json"), "memory: linear in n (see its section)"]


# ---- DWT weight compression -----------------------------------------------------------------

SWEEP = "compression_mnist/sweep.json"


@table("compression_sweep")
def _compression_sweep():
    rows = []
    for r in load_csv("compression_mnist/sweep.csv"):
        err = float(r["mask_projection_error"])
        rows.append([r["basis"], f"{float(r['keep_ratio']):g}", pct(float(r["val_accuracy"])),
                     pct(float(r["test_accuracy"])), num(int(r["bytes_compressed_file"])),
                     f"{float(r['compression_ratio']):.1f}x", "0" if err == 0 else f"{err:.1e}"])
    return md_table(["basis", "keep", "val %", "test %", "file bytes", "ratio vs float32",
                     "max mask projection error"], rows)


@table("compression_selected")
def _compression_selected():
    s = load(SWEEP)
    dense_val = s["dense"]["val_accuracy"]
    rows = []
    for basis, r in s["selected"].items():
        name = "identity (magnitude pruning)" if basis == "identity" else basis
        if r is None:
            best = max((x for x in s["rows"] if x["basis"] == basis),
                       key=lambda x: x["val_accuracy"])
            rows.append([name, f"none qualifies (best validation: keep {best['keep_ratio']:g}, "
                               f"{pct(best['val_accuracy'])} < {pct(dense_val - s['tolerance'])})",
                         "-", "-", f"({pct(best['test_accuracy'])} at "
                                   f"{best['compression_ratio']:.1f}x)", "-"])
            continue
        drop = 100 * (r["test_accuracy"] - s["dense"]["test_accuracy"])
        rows.append([name, f"{r['keep_ratio']:g}", f"{num(r['bytes_compressed_file'])} B",
                     f"{r['compression_ratio']:.1f}x", pct(r["test_accuracy"]), f"{drop:+.2f}"])
    return md_table(["basis", "selected keep", "file", "ratio", "test %", "test change (pt)"],
                    rows)


@table("compression_identity_gap")
def _compression_identity_gap():
    s = load(SWEEP)
    by = {}
    for r in s["rows"]:
        by.setdefault(r["keep_ratio"], {})[r["basis"]] = r["test_accuracy"]
    rows = []
    for keep in sorted(by, reverse=True):
        wavelets = [v for b, v in by[keep].items() if b not in ("identity", "dct")]
        gaps = [100 * (w - by[keep]["identity"]) for w in wavelets]
        rows.append([f"{keep:g}", pct(by[keep]["identity"]), f"{min(gaps):.2f}",
                     f"{max(gaps):.2f}"])
    return md_table(["keep", "identity test %", "wavelet bases minus identity: min (pt)",
                     "max (pt)"], rows)


@summary_row
def _row_lenet300():
    s = load(SWEEP)
    sel = {b: r for b, r in s["selected"].items() if r is not None}
    best = min(sel.values(), key=lambda r: r["bytes_compressed_file"])
    over = sorted((r["compression_ratio"], b) for b, r in sel.items()
                  if r["compression_ratio"] >= 100 and b not in ("identity", "dct"))
    return ["MNIST LeNet-300-100, smallest file within 0.3 pt of dense (selected on validation, "
            "test reported)", ">= 100x smaller than dense float32",
            f"{best['basis']} {num(best['bytes_compressed_file'])} B = "
            f"{best['compression_ratio']:.1f}x (test {pct(best['test_accuracy'])} % vs dense "
            f"{pct(s['dense']['test_accuracy'])} %); " +
            ", ".join(f"{b} {r:.1f}x" for r, b in reversed(over) if b != best["basis"]) +
            "; identity (magnitude pruning): no keep ratio qualifies; one seed",
            "met (wavelet bases)"]


OVERHEAD = "compression_overhead.json"


@table("compression_overhead")
def _compression_overhead():
    res = load(OVERHEAD)
    rows = []
    for batch, variants in res["batch_sizes"].items():
        for name, v in variants.items():
            if name != "plain":
                rows.append([batch, name, ratio(v["cpu_ratio"]), ratio(v["wall_ratio"])])
    return md_table(["batch", "basis", "CPU-time ratio to plain fit()", "wall ratio"], rows)


@summary_row
def _row_overhead():
    res = load(OVERHEAD)
    cpu = [v["cpu_ratio"] for vs in res["batch_sizes"].values() for k, v in vs.items()
           if k not in ("plain", "identity")]
    m = res["machine"]
    text = (f"~{min(cpu):.1f}-{max(cpu):.1f}x CPU time (wavelet and DCT bases; one run at load "
            f"{min(m['load_avg_end'][0], m['load_avg_start'][0]):.0f}-"
            f"{max(m['load_avg_end'][0], m['load_avg_start'][0]):.0f})")
    status = "**missed** (noisy machine)"
    quiet = load(COEFFICIENT_FIT)
    if quiet["meta"].get("quiet"):
        projected = [r for k in ("0.05", "0.03") for r in _fit_ratios(quiet, "projected", k)]
        text += (f"; quiet, one thread (LeNet-300-100 haar, keep 3-5 %): "
                 f"{_span(projected, '{:.1f}')}x wall time (`{COEFFICIENT_FIT}`)")
        status = "**missed**"
    return ["retraining with the mask held vs plain `fit()`, epoch time", "<= 1.15x", text,
            status]


# ---- the standard commands' operating point (issue 12) ---------------------------------------

#: Issue 12's targets per config: (ratio target, accuracy rule, its words).
TARGETS = {
    "mnist_lenet300": (150.0, lambda r: r["drop_points"] <= 0.3, "<= 0.3 pt below dense (test)"),
    "mnist_lenet5": (200.0, lambda r: r["test_error"] <= 0.010, "<= 1.0 % test error"),
    "cifar10_subset_resnet20": (30.0, lambda r: r["drop_points"] <= 1.0,
                                "<= 1.0 pt below dense (test)"),
}


def _meets(config, r):
    ratio_target, ok, _ = TARGETS[config]
    return r["compression_ratio"] >= ratio_target and bool(ok(r))


def _target_runs(config):
    f = load(f"compression_targets_{config}.json")
    runs = {}
    for r in f["results"]["runs"]:
        runs.setdefault(r["variant"], []).append(r)
    return f, runs


def _target_table(config):
    f, runs = _target_runs(config)
    ratio_target, _, words = TARGETS[config]
    rows = []
    for variant, rs in runs.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        met = sum(_meets(config, r) for r in rs)
        rows.append([
            variant, ", ".join(str(r["seed"]) for r in rs),
            mean_std([r["dense_test_accuracy"] for r in rs]),
            mean_std([r["compressed_test_accuracy"] for r in rs]),
            per_seed([r["drop_points"] / 100 for r in rs]),
            " / ".join(num(r["bytes_compressed_file"]) for r in rs),
            " / ".join(f"{r['compression_ratio']:.1f}x" for r in rs),
            " / ".join(f"{r['keep_ratio']:.4g}" for r in rs),
            f"{met} of {len(rs)}"])
    return md_table(["variant", "seeds", "dense test %", "compressed test %",
                     "drop (pt) per seed", "file bytes per seed", "ratio per seed",
                     "chosen keep per seed", f"target met ({ratio_target:g}x, {words})"], rows)


def _target_bytes(config):
    _, runs = _target_runs(config)
    rows = []
    for variant, rs in runs.items():
        for r in sorted(rs, key=lambda r: r["seed"]):
            parts = r["storage"]["parts"]
            rows.append([variant, r["seed"], num(r["bytes_compressed_file"])]
                        + [num(parts[k]["coded"]) if k in parts else "-" for k in
                           ("positions", "values", "codebooks", "dense", "header",
                            "architecture")]
                        + [", ".join(f"{p['layer']} {p['basis_name']}" for p in r["plan"]),
                           ", ".join(f"{k} {v}" for k, v in (r["bits"] or {}).items())
                           if isinstance(r["bits"], dict) else str(r["bits"])])
    return md_table(["variant", "seed", "file", "positions", "values", "codebooks",
                     "biases / dense", "header", "architecture", "basis per layer",
                     "k-means bits"], rows)


def _target_stages(config):
    _, runs = _target_runs(config)
    rows = []
    for variant, rs in runs.items():
        for r in sorted(rs, key=lambda r: r["seed"]):
            op = r["operating_point"]
            if not op:
                continue
            rows.append([variant, r["seed"], pct(op["val_accuracy_bar"]), " → ".join(
                f"{s['keep_ratio']:.3g}: {pct(s['val_accuracy'])} % / "
                f"{num(s['bytes_compressed_file'])} B{'' if s['within_bar'] else ' (below)'}"
                for s in op["stages"]),
                op["chosen_stage"]])
    return md_table(["variant", "seed", "validation bar %",
                     "stages: keep: validation % / bytes at 6 bits", "chosen stage"], rows)


def _span(values, fmt):
    lo, hi = fmt.format(min(values)), fmt.format(max(values))
    return lo if lo == hi else f"{lo}-{hi}"


def _target_row(config, title):
    _, runs = _target_runs(config)
    ratio_target, ok, words = TARGETS[config]
    rs = runs.get("standard")
    if not rs:
        return [title, f">= {ratio_target:g}x, {words}",
                "no run of the standard command in the result file", "not measured"]
    ratio_met = sum(r["compression_ratio"] >= ratio_target for r in rs)
    accuracy_met = sum(bool(ok(r)) for r in rs)
    met = sum(_meets(config, r) for r in rs)
    if met == len(rs) and len(rs) >= 3:
        status = "met (3 of 3 seeds)" if len(rs) == 3 else f"met ({met} of {len(rs)} seeds)"
    elif met:
        status = f"met in {met} of {len(rs)} seeds"
    else:
        status = (f"**missed**: ratio met in {ratio_met} of {len(rs)}, accuracy in "
                  f"{accuracy_met} of {len(rs)} seed(s)")
    ident = runs.get("identity")
    text = (f"{_span([r['compression_ratio'] for r in rs], '{:.1f}')}x at "
            f"{mean_std([r['compressed_test_accuracy'] for r in rs])} % test (dense "
            f"{mean_std([r['dense_test_accuracy'] for r in rs])} %), {len(rs)} seed(s)")
    if ident:
        unmet = sum(not (r["operating_point"] or {}).get("met", True) for r in ident)
        text += (f"; identity (magnitude pruning), same command: "
                 f"{_span([r['compression_ratio'] for r in ident], '{:.1f}')}x at "
                 f"{mean_std([r['compressed_test_accuracy'] for r in ident])} %, "
                 f"{len(ident)} seed(s)" + (f" (its first stage below the validation bar in "
                                            f"{unmet})" if unmet else ""))
    return [title, f">= {ratio_target:g}x, {words}", text, status]


@table("coder_vs_nncodec")
def _coder_vs_nncodec():
    res = load("compressed_file.json")["results"]
    rows = []
    for r in res["rows"]:
        head = [r["model"], f"{100 * r['keep']:g} %"]
        for key, name in (("format1", "format 1 (lzma over varints, 6-bit k-means)"),
                          ("format3", "format 3 (range-coded positions, 6-bit k-means)"),
                          ("format3_chosen_bits", "format 3, bits per layer on validation")):
            v = r[key]
            rows.append(head + [name, num(v["kept_coefficient_bytes"]), num(v["bytes"]),
                                pct(v["test_accuracy"])])
        for v in r["nncodec"]:
            rows.append(head + [f"NNCodec (DeepCABAC), QP {v['qp']}",
                                num(v["kept_coefficient_bytes"]), "-", pct(v["test_accuracy"])])
    return md_table(["model", "keep", "coder of the kept coefficients",
                     "kept-coefficient bytes", "whole file bytes", "test %"], rows)


TARGET_TITLES = {
    "mnist_lenet300": "MNIST LeNet-300-100, the standard command "
                      "(`--flagfile=configs/mnist_lenet300.cfg`)",
    "mnist_lenet5": "MNIST Caffe LeNet-5, the standard command "
                    "(`--flagfile=configs/mnist_lenet5.cfg`)",
    "cifar10_subset_resnet20": "cifar10_subset ResNet-20, "
                               "`--flagfile=configs/cifar10_subset_resnet20.cfg` (issue 15)",
}

#: The ablation rows: (variant, the piece it switches off).
ABLATIONS = (
    ("standard", "none (the standard command)"),
    ("ablation_fixed_keep", "the operating-point walk (the fixed starting keep)"),
    ("ablation_haar", "`auto` (haar for every layer that fits it)"),
    ("identity", "the wavelet and DCT bases (magnitude pruning)"),
    ("ablation_fixed_bits", "bits chosen per layer (6 bits everywhere)"),
    ("ablation_float32_small", "int8 small weights (biases as float32)"),
)


def _target_ablation(config, seed=0):
    _, runs = _target_runs(config)
    by = {v: next((r for r in rs if r["seed"] == seed), None) for v, rs in runs.items()}
    base = by.get("standard")
    rows = []
    for variant, piece in ABLATIONS:
        r = by.get(variant)
        if r is None or base is None:
            continue
        small = (r["storage"]["parts"].get("dense") or {}).get("coded")
        rows.append([piece, f"`{variant}`", num(r["bytes_compressed_file"]),
                     f"{r['compression_ratio']:.1f}x",
                     f"{base['compression_ratio'] / r['compression_ratio']:.2f}x",
                     pct(r["compressed_test_accuracy"]), num(small)])
    rows.append(["compressibility training", "not in the standard config", "-", "-", "-", "-",
                 "-"])
    return md_table(["piece switched off", "variant", "file bytes", "ratio",
                     "standard's ratio / this", "test %", "biases / dense bytes"], rows,
                    ["---", "---", "---:", "---:", "---:", "---:", "---:"])


for _config in TARGETS:   # three tables and a summary row per standard config
    _short = _config.replace("mnist_", "").replace("cifar10_subset_", "")
    table(f"targets_{_short}")(lambda c=_config: _target_table(c))
    table(f"targets_{_short}_bytes")(lambda c=_config: _target_bytes(c))
    table(f"targets_{_short}_stages")(lambda c=_config: _target_stages(c))
    if _config.startswith("mnist_"):
        table(f"targets_{_short}_ablation")(lambda c=_config: _target_ablation(c))
    summary_row(lambda c=_config: _target_row(c, TARGET_TITLES[c]))


def no_pruning_results():
    """The results of the ResNet-20 seeds' no-pruning files, in seed order (also read by
    plot_resnet20_pareto.py)."""
    names = sorted(n for n in os.listdir(RESULTS)
                   if re.fullmatch(r"no_pruning_resnet20_s\d+\.json", n))
    return [load(n)["results"] for n in names]


@table("no_pruning_resnet20")
def _no_pruning_resnet20():
    files = no_pruning_results()
    f32 = files[0]["bytes_float32"]

    def seeds(values, fmt=pct):
        return " / ".join(fmt(v) for v in values)

    recals = [r["dense"].get("recalibrated_test_accuracy") or {} for r in files]
    rows = [["dense float32 (the run's dense model)", num(f32), "1.0x",
             seeds(r["dense"]["test_accuracy"] for r in files), "-"],
            ["the same, BatchNorm statistics re-estimated on the clean training images", num(f32),
             "1.0x", seeds(c.get("clean_training_images") for c in recals), "-"],
            [f"the same, re-estimated on the training pipeline's batches "
             f"({recals[0].get('augment')})", num(f32), "1.0x",
             seeds(c.get("augmented_batches") for c in recals), "-"]]
    for mode, q in files[0]["keras_quantize"].items():
        qs = [r["keras_quantize"][mode] for r in files]
        rows.append([f'Keras 3 `model.quantize("{mode}")` (.keras; quantises '
                     f'{q["n_quantized_layers"]} of {q["n_weighted_layers"]} layers with weights: '
                     f'{", ".join(q["quantized_layers"]) or "none"})',
                     seeds((x["bytes_keras"] for x in qs), num), f"{q['ratio']:.2f}x",
                     seeds(x["test_accuracy"] for x in qs), "-"])
    for bits in files[0]["kmeans_only"]:
        ks = [r["kmeans_only"][bits] for r in files]
        rows.append([f"k-means values alone, {bits} bits, every weight kept (.dwtc)",
                     seeds((k["bytes_compressed_file"] for k in ks), num),
                     _span([k["ratio"] for k in ks], "{:.1f}") + "x",
                     seeds(k.get("test_accuracy_recalibrated") for k in ks),
                     seeds(k["test_accuracy"] for k in ks)])
    n = len(files)
    return md_table(["model / file (no pruning)", f"bytes (per seed, {n} seed(s))",
                     "ratio to float32", "test % per seed",
                     "test % without BatchNorm re-estimation"], rows)


#: The bases side by side at one operating point (bench_compression_targets' fixed10_*).
BASES_VARIANTS = (("fixed10_identity", "identity (magnitude pruning)"),
                  ("fixed10_dct", "dct (2-D DCT over each filter's 3x3 taps)"),
                  ("fixed10_flatten", "wavelet fallback (1-D haar over flattened cin*kh*kw)"),
                  ("fixed10_auto", "auto (identity or dct per layer)"))


def _points_vs(run, reference):
    if reference is None:
        return "-"
    return f"{100 * (run['compressed_test_accuracy'] - reference['compressed_test_accuracy']):+.1f}"


@table("resnet20_bases")
def _resnet20_bases():
    _, runs = _target_runs("cifar10_subset_resnet20")
    ident = {r["seed"]: r for r in runs.get("fixed10_identity", [])}
    rows = []
    for variant, words in BASES_VARIANTS:
        rs = sorted(runs.get(variant, []), key=lambda r: r["seed"])
        if not rs:
            continue
        vs = [(r, ident.get(r["seed"])) for r in rs]
        rows.append([
            words, ", ".join(str(r["seed"]) for r in rs),
            mean_std([r["compressed_test_accuracy"] for r in rs]),
            per_seed([r["drop_points"] / 100 for r in rs]),
            " / ".join(num(r["bytes_compressed_file"]) for r in rs),
            " / ".join(f"{r['compression_ratio']:.1f}x" for r in rs),
            " / ".join(f"{i['bytes_compressed_file'] / r['bytes_compressed_file']:.2f}x"
                       if i else "-" for r, i in vs),
            " / ".join(_points_vs(r, i) for r, i in vs)])
    return md_table(["basis", "seeds", "test %", "drop (pt) per seed", "file bytes per seed",
                     "ratio per seed", "identity's bytes / this, per seed",
                     "test pt vs identity, per seed"], rows)


@table("resnet20_energy")
def _resnet20_energy():
    res = load("auto_basis_resnet20_trained.json")["results"]
    table_, rows = res["mean_energy_kept_by_type"], []
    for kind, fams in table_.items():
        for keep in map(str, res["keeps"]):
            best = res["best_by_type"][kind][keep]
            flat = fams.get("haar_L4@flat", {}).get(keep)
            rows.append([kind, keep, pct(fams["identity"][keep], 1),
                         pct(fams["dct"][keep], 1) if "dct" in fams else "-",
                         "-" if flat is None else pct(flat, 1),
                         f"{best} {pct(fams[best][keep], 1)}"])
    accs = ", ".join(f"seed {m['seed']} {pct(m['dense_test_accuracy'])} %" for m in res["models"])
    return (md_table(["layer type", "keep", "identity: energy kept %", "dct over the taps %",
                      "haar over flattened cin*kh*kw, level 4 %", "best candidate %"], rows)
            + f"\n(the dense models of the recipe runs: {accs})")


@table("transformer_compression")
def _transformer_compression():
    res = load("transformer_compression.json")["results"]
    rows = []
    for r in res["runs"]:
        op = r["operating_point"] or {}
        rows.append([r["model"], r["basis"], r["seed"], num(r["n_params"]),
                     pct(r["dense_test_accuracy"]), pct(r["compressed_test_accuracy"]),
                     f"{r['drop_points']:.2f}", num(r["bytes_float32"]),
                     num(r["bytes_compressed_file"]), f"{r['compression_ratio']:.1f}x",
                     pct(r["fraction_of_bytes_removed"], 1), f"{r['keep_ratio']:.3g}",
                     " → ".join(f"{s['keep_ratio']:.3g}: {pct(s['val_accuracy'])}"
                                f"{'' if s['within_bar'] else ' (below)'}"
                                for s in op.get("stages", [])),
                     "yes" if op.get("met") else "no"])
    return md_table(["model", "basis", "seed", "params", "dense test %", "compressed test %",
                     "drop (pt)", "float32 bytes", "file bytes", "ratio", "bytes removed %",
                     "chosen keep", "walk: keep: validation %", "within 1 pt on validation"],
                    rows)


# ---- coefficient domain and deployment (sections owned by that work; from its files) ---------

#: The coefficient-domain fit timings: the quiet one-thread run.
COEFFICIENT_FIT = "coefficient_domain_fit_quiet.json"


@table("coefficient_fit")
def _coefficient_fit():
    f = load(COEFFICIENT_FIT)
    rows = []
    for batch, variants in f["results"]["batch_sizes"].items():
        plain = variants["plain"]
        rows.append(["plain `fit()` of the dense model", "-", batch,
                     num(1e3 * plain["wall_s_median"]), "1.00", "1.00", "-"])
        for name, v in variants.items():
            kind, _, keep = name.partition("_")
            if kind not in ("coefficient", "projected"):
                continue
            rows.append(["coefficient form" if kind == "coefficient" else
                         "dense, mask held by projection", f"{100 * float(keep):g} %", batch,
                         num(1e3 * v["wall_s_median"]), f"{v['wall_ratio']:.2f}",
                         f"{v['cpu_ratio']:.2f}", "; ".join(
                             f"{x['layer']} {num(x['kept'])} ({x['product']})"
                             for x in v["layers"] or [])])
    return _with_timing_note(md_table(
        ["retraining", "keep", "batch", "epoch ms (median)", "wall / plain", "CPU / plain",
         "kept coefficients (product) per layer"], rows,
        ["---", "---", "---", "---:", "---:", "---:", "---"]), f["meta"])


def _fit_ratios(f, kind, keep):
    return [v[f"{kind}_{keep}"]["wall_ratio"] for v in f["results"]["batch_sizes"].values()
            if f"{kind}_{keep}" in v]


@table("coefficient_products")
def _coefficient_products():
    res, note = timed("coefficient_domain_products.json")
    if note:
        return note
    names = ["gather", "rows", "dense"]
    rows = [[r["layer"], f"{100 * r['keep_ratio']:g} %", r["batch_size"], num(r["kept"]),
             f"{r['used_rows']} of {r['n_coef_in']}", f"{1e3 * r['seconds']['plain']:.2f}"]
            + [f"{r['ratio_to_plain'][k]:.2f}" for k in names] for r in res["rows"]]
    return md_table(["layer", "keep", "batch", "kept", "rows used", "plain Dense step ms"]
                    + [f"{k} / plain" for k in names], rows,
                    ["---"] * 3 + ["---:"] * (3 + len(names)))


@table("coefficient_conv")
def _coefficient_conv():
    res, note = timed("coefficient_domain_conv.json")
    if note:
        return note
    rows = [[f"{100 * r['keep_ratio']:g} %", r["batch_size"], num(r["kept"]),
             f"{1e3 * r['seconds']['conv2d']:.2f}"]
            + [f"{r['ratio_to_conv2d'][k]:.2f}" for k in ("coefficient_gather",
                                                           "coefficient_dense")]
            for r in res["rows"]]
    return md_table(["keep", "batch", "kept", "Conv2D step ms", "patches + gather / Conv2D",
                     "patches + dense / Conv2D"], rows, ["---"] * 2 + ["---:"] * 4)


DEPLOYMENT = "deployment_lenet300.json"
#: The same command on a quiet machine (the latencies are quoted from it).
DEPLOYMENT_QUIET = "deployment_lenet300_quiet.json"
LITERT_FILES = {"coefficient_int8": "coefficient form, int8 values",
                "coefficient_float32": "coefficient form, float32 values",
                "dense_float32": "dense float32 (converter)",
                "dense_dynamic_int8": "dense, dynamic-range int8 (converter)"}


def _with_timing_note(table_md, meta):
    """A table without timings, followed by the sentence saying why (when not quiet)."""
    note = timing_note(meta)
    return table_md if note is None else f"{table_md}\n\n{note}"


@table("deployment_forms")
def _deployment_forms():
    f = load(DEPLOYMENT_QUIET)
    forms = f["results"]["deployment"]["forms"]
    names = {"dense": "dense model",
             "dense_form": "`load_compressed(p)` (dense form, masks attached)",
             "coefficient": '`load_compressed(p, form="coefficient")`'}
    quiet = f["meta"].get("quiet")
    rows = [[label, f"{pct(forms[k]['test_accuracy'])} %", num(forms[k]["weight_bytes"]),
             num(forms[k]["macs_per_sample"])]
            + ([f"{forms[k]['latency_ms_batch1']:.2f}", f"{forms[k]['latency_ms_batch256']:.2f}"]
               if quiet else []) for k, label in names.items()]
    header = ["form", "test acc.", "weight bytes held", "multiply-adds / sample"]
    if quiet:
        header += ["latency ms, batch 1", "latency ms, batch 256"]
    return _with_timing_note(md_table(header, rows), f["meta"])


@table("deployment_files")
def _deployment_files():
    f = load(DEPLOYMENT)
    r = f["results"]
    lite = r["litert"]
    rows = [[label, num(lite[k]["bytes"]), num(lite[k]["bytes_zipped"]),
             f"{pct(lite[k]['test_accuracy_tf_lite'])} %"] for k, label in LITERT_FILES.items()]
    t = r["tfmot"]
    rows.append([f"tfmot {t['tfmot']} pruning to the same per-layer budget, stripped, "
                 "dynamic-range int8", num(t["bytes"]), num(t["bytes_zipped"]),
                 f"{pct(t['test_accuracy'])} %"])
    for bits, q in r["keras_quantize"].items():
        rows.append([f'Keras 3 `model.quantize("{bits}")` (.keras)', num(q["bytes_keras"]),
                     num(q["bytes_keras_zip"]), f"{pct(q['test_accuracy'])} %"])
    return _with_timing_note(md_table(["file", "bytes", "zipped", "test acc."], rows), f["meta"])


#: The batch-1 latency keys of a LiteRT file in the deployment results, with their runtimes.
LITERT_RUNTIMES = {"tf_lite_xnnpack": "tf.lite, XNNPACK", "tf_lite_builtin": "tf.lite, built-in",
                   "xnnpack_ai_edge_litert": "ai_edge_litert, XNNPACK",
                   "builtin_ai_edge_litert": "ai_edge_litert, built-in"}


def _latency_vs_dense(lite, name, runtime):
    """`(µs, time / dense float32 file's)` of LiteRT file `name` at batch 1, or None."""
    key = f"latency_ms_batch1_{runtime}"
    v = lite[name].get(key)
    return None if v is None else (1e3 * v, v / lite["dense_float32"][key])


@table("deployment_latency")
def _deployment_latency():
    res, note = timed(DEPLOYMENT_QUIET)
    if note:
        return note
    lite = res["litert"]
    rows = []
    for name, label in LITERT_FILES.items():
        cells = [_latency_vs_dense(lite, name, runtime) for runtime in LITERT_RUNTIMES]
        rows.append([label, num(lite[name]["bytes"])]
                    + ["-" if c is None else f"{c[0]:.1f} ({c[1]:.2f}x)" for c in cells])
    return md_table(["LiteRT file", "bytes"] + [f"batch-1 µs, {r} (/ dense float32)"
                                                for r in LITERT_RUNTIMES.values()], rows,
                    ["---", "---:"] + ["---:"] * len(LITERT_RUNTIMES))


@summary_row
def _row_coefficient_fit():
    f = load(COEFFICIENT_FIT)
    title = ("retraining in the coefficient domain (`retrain_coefficient_domain`, LeNet-300-100, "
             "haar) vs plain `fit()`, epoch time")
    target = "<= 1.0x at 5 % keep; < 1.0x at <= 3 %"
    note = timing_note(f["meta"])
    if note:
        return [title, target, "no timing quoted (not quiet; see its section)",
                "to re-measure on a quiet machine"]
    at5, at3, at1 = (_fit_ratios(f, "coefficient", k) for k in ("0.05", "0.03", "0.01"))
    met = max(at5) <= 1.0 and max(at3 + at1) < 1.0
    return [title, target,
            f"wall time {_span(at5, '{:.2f}')}x at 5 %, {_span(at3, '{:.2f}')}x at 3 %, "
            f"{_span(at1, '{:.2f}')}x at 1 % (batch 32 and 128; quiet, one thread, "
            f"{loads(f['meta'])})", "met" if met else "**missed**"]


@summary_row
def _row_litert():
    r = load(DEPLOYMENT)["results"]
    lite, dense = r["litert"]["coefficient_int8"], r["deployment"]
    db4 = load("deployment_lenet300_db4.json")["results"]["litert"]["coefficient_int8"]
    quiet, note = timed(DEPLOYMENT_QUIET)
    if note:
        latency = note
    else:
        _, vs_dense = _latency_vs_dense(quiet["litert"], "coefficient_int8", "tf_lite_xnnpack")
        latency = f"batch-1 latency {vs_dense:.2f}x the dense float32 file's (XNNPACK, quiet)"
    return ["LiteRT export of the coefficient form, LeNet-300-100 haar 3 %",
            "<= 40 KB, <= 0.3 pt below dense, batch-1 latency <= dense float32 .tflite",
            f"**{num(lite['bytes'])} B** (int8 values, per-unit scales), test "
            f"**{pct(lite['test_accuracy_tf_lite'])} %** vs dense "
            f"{pct(dense['dense_litert_test_accuracy'])} %; {latency}; "
            f"db4: {num(db4['bytes'])} B, {pct(db4['test_accuracy_tf_lite'])} %",
            "haar: size, accuracy met; latency **missed**; db4: size missed"]


@summary_row
def _row_coefficient_memory():
    forms = load("deployment_lenet300.json")["results"]["deployment"]["forms"]
    return ["`load_compressed(path, form=\"coefficient\")`, weights held in memory",
            "proportional to the kept coefficients",
            f"{num(forms['coefficient']['weight_bytes'])} B vs "
            f"{num(forms['dense']['weight_bytes'])} B dense "
            f"({num(forms['dense_form']['weight_bytes'])} B for the dense form with its masks)",
            "met"]


# ---- learnable wavelet layers ---------------------------------------------------------------

def _runs_table(res, metric_name, with_mse=False):
    """Per variant: params, steps/epochs, test metric mean ± std and per seed, target met."""
    settings, summary = res["settings"], res["summary"]
    rows = []
    for variant, s in summary.items():
        runs = sorted((r for r in res["runs"] if r["variant"] == variant),
                      key=lambda r: r["seed"])
        row = [variant, num(s["params"]), ", ".join(str(x) for x in s["seeds"]),
               mean_std(s["test_accuracy"]), per_seed(s["test_accuracy"]),
               " / ".join(str(r["best_epoch"]) for r in runs)]
        if with_mse:
            row.append(" / ".join(f"{r['test_mse']:.4f}" for r in runs))
        if settings.get("target") is not None:
            row.append(f"{s['met']} of {s['n']}")
        rows.append(row)
    header = ["variant", "params", "seeds", f"test {metric_name} % (mean ± std)",
              "per seed", "best epoch per seed"]
    if with_mse:
        header.append("test MSE per seed")
    if settings.get("target") is not None:
        header.append(f"target met (>= {pct(settings['target'], 1)} %"
                      + (f", <= {num(settings['max_params'])} params)"
                         if settings.get("max_params") else ")"))
    return md_table(header, rows)


@table("learnable_mnist")
def _learnable_mnist():
    return _runs_table(load("learnable_mnist.json")["results"], "accuracy")


@table("learnable_adding")
def _learnable_adding():
    return _runs_table(load("learnable_adding.json")["results"], "adding accuracy",
                       with_mse=True)


@table("learnable_adding_curves")
def _learnable_adding_curves():
    res = load("learnable_adding.json")["results"]
    steps = res["runs"][0]["steps_per_epoch"]
    variants = list(res["summary"])
    n_epochs = max(len(r["val_curve"]) for r in res["runs"])
    rows = []
    for e in range(n_epochs):
        row = [num((e + 1) * steps)]
        for v in variants:
            runs = sorted((r for r in res["runs"] if r["variant"] == v), key=lambda r: r["seed"])
            row.append(" / ".join(pct(r["val_curve"][e], 1) if e < len(r["val_curve"]) else "-"
                                  for r in runs))
        rows.append(row)
    return md_table(["steps"] + [f"{v}: validation % per seed" for v in variants], rows)


def _learnable_summary(name, what, target_text):
    f = load(name)
    res, s = f["results"], f["results"]["summary"]
    main = s.get("wavelet")
    measured = "; ".join(f"{v} {num(x['params'])} params {mean_std(x['test_accuracy'])} %"
                         for v, x in s.items())
    asked = _flag(f["meta"]["command"].split(), "--seeds")
    seeds = f"{main['n']} seeds" + (f" of the {len(asked.split(','))} the command asked for"
                                    if asked and len(asked.split(",")) != main["n"] else "")
    status = (f"met in {main['met']} of {main['n']} seeds" if main["met"] else
              f"**missed** (0 of {main['n']} seeds)")
    return [what, target_text, f"{measured} (test, mean ± std over {seeds}, "
                               f"{_budget(res)})", status]


def _flag(argv, key):
    return argv[argv.index(key) + 1] if key in argv else None


def _budget(res):
    flags = res["settings"]["app_flags"]
    if res["settings"]["experiment"] == "mnist":
        return f"{_flag(flags, '--epochs')} epochs, full training split"
    return (f"{int(_flag(flags, '--epochs')) * int(_flag(flags, '--steps_per_epoch')):,} "
            "steps each")


@summary_row
def _row_learnable_mnist():
    return _learnable_summary("learnable_mnist.json",
                              "MNIST CNN with a learnable wavelet fc1 (Wolter et al. 2020)",
                              "<= 36,100 params, >= 99.1 %")


@summary_row
def _row_learnable_adding():
    return _learnable_summary("learnable_adding.json",
                              "adding problem T=150, wavelet GRU (hidden 256, all 3 matrices)",
                              "<= 10,000 params, >= 91 %")


@table("learnable_speed")
def _learnable_speed():
    res, note = timed("learnable_speed.json")
    if note:
        return note
    rows = [[num(r["n"]), "on" if r["jit"] else "off", num(r["dense_ms"], 2),
             f"{num(r['wavelet_ms'], 2)} ({r['wavelet_time_vs_dense']:.2f}x)",
             f"{num(r['fastfood_ms'], 2)} ({r['fastfood_time_vs_dense']:.2f}x)",
             f"{num(r['params']['dense'])} / {num(r['params']['wavelet'])} / "
             f"{num(r['params']['fastfood'])}"]
            for r in res["rows"]]
    return md_table(["n", "XLA", "Dense ms", "WaveletDense ms (time / Dense)",
                     "FastfoodDense ms (time / Dense)", "params Dense / wavelet / Fastfood"],
                    rows, ["---:", "---", "---:", "---:", "---:", "---:"])


@table("gru_step")
def _gru_step():
    res, note = timed("gru_step.json")
    if note:
        return note
    rows = res["rows"]
    gru = {(r["hidden"], r["jit"]): r["all_s_per_step"] for r in rows if r["variant"] == "gru"}
    out = []
    for r in rows:
        base = gru.get((r["hidden"], r["jit"]))
        # per-round ratio (the same round saw the same load), then the median over rounds
        vs_gru = (statistics.median(a / b for a, b in zip(r["all_s_per_step"], base))
                  if base else None)
        out.append([num(r["hidden"]), r["variant"], "on" if r["jit"] else "off",
                    num(r["params"]), num(1e3 * r["median_s_per_step"], 1),
                    "-" if vs_gru is None else f"{vs_gru:.2f}x"])
    return md_table(["hidden", "variant", "XLA", "params", "ms per training step (median)",
                     "time / keras GRU (same hidden, same XLA)"], out,
                    ["---:", "---", "---", "---:", "---:", "---:"])


def _not_quiet(f, name):
    return f"no timing quoted: not quiet, {loads(f['meta'])} (`{name}`)"


# ---- W-MSA ----------------------------------------------------------------------------------

WMSA_NAMES = {"vit_tiny_p4": "ViT-tiny (p=4)",
              "wmsa_tiny_fold": "W-MSA-tiny, kernel folded into q/k (default)",
              "wmsa_tiny_bias": "W-MSA-tiny, shared heads x N x N log-bias",
              "wmsa_tiny_nokernel": "W-MSA-tiny, no kernel (plain attention)"}


@table("wmsa_throughput")
def _wmsa_throughput():
    res = load("wmsa_throughput.json")["results"]
    rows = [[WMSA_NAMES[k], num(v["params"]), v["tokens"],
             ratio(v["train_time_ratio_vs_vit_median"]), ratio(v["infer_time_ratio_vs_vit_median"])]
            for k, v in res.items()]
    return md_table(["model", "params", "tokens", "train time / ViT", "inference time / ViT"],
                    rows, ["---", "---:", "---:", "---:", "---:"])


@summary_row
def _row_wmsa_throughput():
    v = load("wmsa_throughput.json")["results"]["wmsa_tiny_fold"]
    return ["W-MSA-tiny vs ViT-tiny throughput, 32x32x3, B=128", "within 2x",
            f"train {ratio(v['train_time_ratio_vs_vit_median'])}, inference "
            f"{ratio(v['infer_time_ratio_vs_vit_median'])} of ViT's time (one run on a shared "
            "machine; the file records no load average)", "met (noisy machine)"]


SUMMARY2 = "wmsa_accuracy_summary2.json"


def _seed_accuracies(models, name):
    return {r["seed"]: r["test_accuracy"] for r in models[name]["runs"]}


@table("wmsa_accuracy")
def _wmsa_accuracy():
    models = load(SUMMARY2)["models"]
    names = {"vit": "ViT-tiny", "wmsa": "**W-MSA-tiny (token LayerNorm, kernel lr x10)**",
             "wmsa_nokernel": "W-MSA-tiny, no kernel",
             "wmsa_previous": "W-MSA-tiny, previous (no token norm, kernel lr x1)"}
    rows = []
    for key, label in names.items():
        m = models[key]
        accs = [r["test_accuracy"] for r in sorted(m["runs"], key=lambda r: r["seed"])]
        rows.append([label, ", ".join(str(s) for s in m["finished_seeds"]),
                     mean_std(accs, scale=1, digits=4), per_seed(accs, scale=1, digits=3),
                     f"{m['test_f1_macro_mean']:.4f}", num(m["runs"][0]["params"])])
    return md_table(["model", "seeds", "test accuracy (mean ± std)", "per seed", "macro F1",
                     "params"], rows, ["---", "---", "---:", "---", "---:", "---:"])


@table("wmsa_paired")
def _wmsa_paired():
    models = load(SUMMARY2)["models"]
    vit = _seed_accuracies(models, "vit")
    rows = []
    for key in ("wmsa", "wmsa_nokernel"):
        acc = _seed_accuracies(models, key)
        diffs = [acc[s] - vit[s] for s in sorted(acc)]
        rows.append([f"{key} minus vit", per_seed(diffs, digits=1), mean_std(diffs, digits=1),
                     f"{sum(d > 0 for d in diffs)} of {len(diffs)}"])
    acc, nok = _seed_accuracies(models, "wmsa"), _seed_accuracies(models, "wmsa_nokernel")
    diffs = [nok[s] - acc[s] for s in sorted(acc)]
    rows.append(["wmsa_nokernel minus wmsa", per_seed(diffs, digits=1), mean_std(diffs, digits=1),
                 f"{sum(d > 0 for d in diffs)} of {len(diffs)}"])
    return md_table(["paired difference (test, points)", "seeds 0 / 1 / 2", "mean ± std",
                     "seeds ahead"], rows)


def _val_per_epoch(models, keys):
    per = {k: {e["epoch"]: e for e in models[k]["val_accuracy_per_epoch"]} for k in keys}
    epochs = sorted(per[keys[0]])
    return [[e] + [f"{per[k][e]['val_accuracy_mean']:.4f} ± {per[k][e]['val_accuracy_std']:.4f}"
                   for k in keys] for e in epochs]


@table("wmsa_val_per_epoch")
def _wmsa_val_per_epoch():
    models = load(SUMMARY2)["models"]
    return md_table(["epoch", "ViT val acc", "W-MSA val acc (fixed)", "W-MSA val acc (previous)"],
                    _val_per_epoch(models, ["vit", "wmsa", "wmsa_previous"]),
                    ["---:", "---:", "---:", "---:"])


@table("wmsa_pilot")
def _wmsa_pilot():
    runs = load("wmsa_fix_pilot.json")["runs"]
    labels = {"fix-subband_rms-klr1-s0-stop3": '`token_norm="subband_rms"`, m = 1',
              "fix-layernorm-klr1-s0-stop3": '`token_norm="layernorm"`, m = 1',
              "fix-layernorm-klr10-s0-stop3": '`token_norm="layernorm"`, m = 10',
              "previous W-MSA (token_norm none, kernel_lr_multiplier 1), first 3 epochs of its "
              "10-epoch run": "previous W-MSA (no token norm, m = 1; its 10-epoch run)",
              "ViT-tiny, first 3 epochs of its 10-epoch run":
                  "ViT-tiny (its 10-epoch run, for reference)"}
    rows = []
    for r in runs:
        label = labels.get(r["run"], r["run"])
        val = [f"{v:.3f}" for v in r["val_accuracy"][:3]]
        rows.append([label, *val, " / ".join(f"{v:.3f}" for v in r["train_accuracy"][:3])])
    return md_table(["variant (seed 0)", "val acc epoch 1", "epoch 2", "epoch 3",
                     "train acc epoch 1 / 2 / 3"], rows, ["---", "---:", "---:", "---:", "---"])


@table("wmsa_ablations")
def _wmsa_ablations():
    rows = []
    labels = {"vit": "vit", "wmsa": "wmsa (db4, J=3, p=4, kernel)",
              "wmsa_nokernel": "wmsa_nokernel (plain attention, same tokens)",
              "wmsa_J2": "wmsa_J2 (2 levels: A2 + 2 detail levels)",
              "wmsa_haar": "wmsa_haar (Haar instead of db4)",
              "wmsa_previous": "wmsa_previous (no token norm, kernel lr x1)"}
    comparison = load("wmsa_compare/compare-tiny-20261123-000042/comparison.json")
    for r in comparison["accuracy_from_saved_runs"]:
        sd = r["test_accuracy_std"]
        acc = f"{r['test_accuracy_mean']:.4f}" + ("" if sd is None else f" ± {sd:.4f}")
        rows.append([labels.get(r["variant"], r["variant"]), ", ".join(map(str, r["seeds"])), acc,
                     f"{r['test_f1_macro_mean']:.4f}", num(r["params"])])
    return md_table(["variant", "seeds", "test accuracy", "macro F1", "params"], rows,
                    ["---", "---", "---:", "---:", "---:"])


@summary_row
def _row_wmsa_accuracy():
    models = load(SUMMARY2)["models"]
    vit, wmsa = _seed_accuracies(models, "vit"), _seed_accuracies(models, "wmsa")
    diffs = [wmsa[s] - vit[s] for s in sorted(wmsa)]
    return ["cifar10_subset accuracy, same budget (10 epochs), 3 seeds", "W-MSA >= ViT",
            f"W-MSA-tiny {mean_std(list(wmsa.values()), digits=1)} % vs ViT-tiny "
            f"{mean_std(list(vit.values()), digits=1)} % (ahead in "
            f"{sum(d > 0 for d in diffs)} of {len(diffs)} seeds, paired "
            f"{mean_std(diffs, digits=1)} pt)", "met"]


@summary_row
def _row_wmsa_ablations():
    models = load(SUMMARY2)["models"]
    nok = [r["test_accuracy"] for r in models["wmsa_nokernel"]["runs"]]
    single = {r["variant"]: r for r in load(
        "wmsa_compare/compare-tiny-20261123-000042/comparison.json")["accuracy_from_saved_runs"]}
    return ["W-MSA ablations, same budget", "report",
            f"no kernel {mean_std(nok, digits=1)} % (3 seeds; the PSD kernel adds nothing "
            f"measurable here); haar {pct(single['wmsa_haar']['test_accuracy_mean'], 1)} %, J=2 "
            f"{pct(single['wmsa_J2']['test_accuracy_mean'], 1)} % (seed 0 only)", "measured"]


@table("wmsa_previous")
def _wmsa_previous():
    models = load("wmsa_accuracy_summary.json")["models"]
    rows = []
    for key in ("vit", "wmsa"):
        m = models[key]
        accs = [r["test_accuracy"] for r in sorted(m["runs"], key=lambda r: r["seed"])]
        rows.append([key, ", ".join(map(str, m["finished_seeds"])),
                     mean_std(accs, scale=1, digits=4), per_seed(accs, scale=1, digits=3),
                     f"{m['test_f1_macro_mean']:.4f}", num(m["runs"][0]["params"])])
    return md_table(["model", "finished seeds", "test accuracy (mean ± std)", "per seed",
                     "macro F1", "params"], rows, ["---", "---", "---:", "---", "---:", "---:"])


# ---- spectral truncation --------------------------------------------------------------------

def _study_table(name, conditions):
    s = load(name)
    rows = []
    for c in conditions:
        x = s["summary"][c]

        def ms(key, scale=1.0, digits=1):
            v = x[key]
            return f"{v['mean'] * scale:.{digits}f} ± {v['std'] * scale:.{digits}f}"

        rows.append([c, f"{x['epochs_to_target']['n']}/{x['n_runs']}", ms("epochs_to_target"),
                     ms("epochs_to_target_val"), ms("final_test_accuracy", 100),
                     ms("test_accuracy_at_best_val", 100)])
    target = pct(s["config"]["target_accuracy"], 0)
    return md_table(["condition", "reached", f"epochs to {target} % (test)",
                     f"epochs to {target} % (val)", "final test acc (%)",
                     "test acc at best val (%)"], rows)


def _study_seeds(name, conditions):
    s = load(name)
    runs = {(r["condition"], r["seed"]): r for r in s["runs"]}
    rows = []
    for seed in sorted({r["seed"] for r in s["runs"]}):
        row = [seed]
        for c in conditions:
            r = runs.get((c, seed))
            row.append("-" if r is None else
                       f"{r['epochs_to_target'] if r['epochs_to_target'] is not None else '–'}"
                       f" / {pct(r['final_test_accuracy'], 1)}")
        rows.append(row)
    paired = ["paired vs baseline: epochs / final acc (pt)", "-"]
    for c in conditions[1:]:
        de = [runs[(c, sd)]["epochs_to_target"] - runs[("baseline", sd)]["epochs_to_target"]
              for sd in sorted({r["seed"] for r in s["runs"]})
              if runs[(c, sd)]["epochs_to_target"] is not None
              and runs[("baseline", sd)]["epochs_to_target"] is not None]
        da = [runs[(c, sd)]["final_test_accuracy"] - runs[("baseline", sd)]["final_test_accuracy"]
              for sd in sorted({r["seed"] for r in s["runs"]})]
        paired.append(f"{mean_std(de, scale=1, digits=1)} (n={len(de)}) / "
                      f"{mean_std(da, digits=1)} (n={len(da)})")
    rows.append(paired)
    return md_table(["seed"] + [f"{c}: epochs to target / final test %" for c in conditions],
                    rows)


CNN_CONDITIONS = ["baseline", "linear", "cosine"]
WMSA_CONDITIONS = ["baseline", "cosine", "linear"]


@table("spectral_study_cnn")
def _spectral_cnn():
    return _study_table("spectral_study.json", CNN_CONDITIONS)


@table("spectral_study_cnn_seeds")
def _spectral_cnn_seeds():
    return _study_seeds("spectral_study.json", CNN_CONDITIONS)


@table("spectral_study_wmsa")
def _spectral_wmsa():
    return _study_table("spectral_study_wmsa.json", WMSA_CONDITIONS)


@table("spectral_study_wmsa_seeds")
def _spectral_wmsa_seeds():
    return _study_seeds("spectral_study_wmsa.json", WMSA_CONDITIONS)


def _study_row(name, what, n_seeds_text):
    s = load(name)["summary"]
    finals = ", ".join(f"{c} {s[c]['final_test_accuracy']['mean'] * 100:.1f}" for c in s)
    return [what, "report, incl. no gain",
            f"final test acc. (%, mean over {n_seeds_text}): {finals}; epochs to target: " +
            ", ".join(f"{c} {s[c]['epochs_to_target']['mean']:.1f}" for c in s),
            "no gain measured"]


@summary_row
def _row_spectral_cnn():
    return _study_row("spectral_study.json", "spectral truncation convergence study, "
                      "cifar10_subset, small CNN, 30 epochs", "5 seeds")


@summary_row
def _row_spectral_wmsa():
    return _study_row("spectral_study_wmsa.json", "same study, W-MSA-tiny, 6 epochs "
                      "(truncation over 3)", "3 seeds")


@table("spectral_apps")
def _spectral_apps():
    rows = markdown_rows("spectral_apps.md", "| run |")
    return md_table(["run", "tau per dense epoch", "dense test acc", "compressed test acc",
                     "compressed file (B)", "ratio", "reloaded files: dense / compressed test acc"],
                    [r[:7] for r in rows])


@summary_row
def _row_spectral_apps():
    rows = {r[0]: r for r in markdown_rows("spectral_apps.md", "| run |")}
    a, b = rows["without --spectral_reg"], rows["with --spectral_reg"]
    return ["`--spectral_reg` in apps/DWT_model.py (LeNet-300-100, 3 epochs, 1 seed)",
            "runs, plain model saved", f"{a[2]} / {a[4]} B without, {b[2]} / {b[4]} B with "
            "(one seed: a plumbing check, not a study)", "runs"]


# ---- rendering ------------------------------------------------------------------------------

def render(text):
    """`text` with every marked table regenerated. Raises ValueError on unknown/missing ones."""
    found = [m.group("name") for m in MARKER.finditer(text)]
    unknown = sorted(set(found) - set(TABLES))
    missing = sorted(set(TABLES) - set(found))
    if unknown or missing:
        raise ValueError(f"BENCHMARKS.md markers without a table function: {unknown}; table "
                         f"functions without markers: {missing}")
    return MARKER.sub(lambda m: f"<!-- table:{m.group('name')} -->\n"
                                f"{TABLES[m.group('name')]().rstrip()}\n"
                                f"<!-- /table:{m.group('name')} -->", text)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="do not write; exit 1 if a table differs from what its files give")
    p.add_argument("--doc", default=DOC)
    args = p.parse_args(argv)
    with open(args.doc) as f:
        text = f.read()
    new = render(text)
    if args.check:
        if new != text:
            print(f"{args.doc}: tables differ from benchmarks/results; run "
                  "python benchmarks/render_benchmarks.py", file=sys.stderr)
            return 1
        return 0
    if new != text:
        tmp = args.doc + ".tmp"
        with open(tmp, "w") as f:
            f.write(new)
        os.replace(tmp, args.doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
