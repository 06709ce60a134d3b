"""Markdown tables for BENCHMARKS.md from the transform benchmarks' result files.

Usage: python benchmarks/report_wavelets.py   (reads benchmarks/results/wavelet_{modes,scaling,peers}.json)
"""

import json
import os

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _load(name):
    path = os.path.join(RESULTS, f"{name}.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _meta(d):
    m = d["meta"]
    return (f"`{m['command']}` (commit {m['git_commit']}, load {m['load_before']} -> "
            f"{m['load_after']}, quiet: {m['quiet']}, {m['started_utc']})")


def modes_tables(d):
    rows = [r for r in d["results"]["rows"] if "ratio_to_pywt" in r]
    ratios = {(r["case"], r["wavelet"], r["mode"], r["contender"]): r for r in rows}
    extra = {(r["case"], r["wavelet"], r["mode"], r["contender"]): r["ratio"]
             for r in d["results"]["rows"] if "ratio" in r}
    contenders = [c for c in ("eager", "tf.function", "xla", "tf.data.map", "fit", "fit xla",
                              "eager fwd+bwd", "xla fwd+bwd") if any(k[3] == c for k in ratios)]
    out = ["Ratio of median time to PyWavelets' (forward+inverse; <= 0.5 is the target), "
           "pywt median in ms, and the first call in s (eager / tf.function / xla):", "",
           "| case | wavelet | mode | " + " | ".join(contenders) + " | pywt ms | first call s | bwd/fwd eager, xla |",
           "|" + "---|" * (len(contenders) + 6)]
    for (case, w, mode, c), r in ratios.items():
        if c != "pywt":
            continue
        cells = [f"{ratios[(case, w, mode, k)]['ratio_to_pywt']:.2f}" if (case, w, mode, k) in ratios else "-" for k in contenders]
        first = "/".join(f"{ratios[(case, w, mode, k)]['first_call_s']:.2f}" for k in ("eager", "tf.function", "xla") if (case, w, mode, k) in ratios)
        bwd = ", ".join(f"{extra[(case, w, mode, k)]:.1f}" for k in ("eager fwd+bwd / fwd+inv", "xla fwd+bwd / fwd+inv") if (case, w, mode, k) in extra)
        out.append(f"| {case} | {w} | {mode} | " + " | ".join(cells) + f" | {r['median_ms']:.0f} | {first} | {bwd} |")
    return "\n".join(out)


def targets_table(d):
    """Issue 14's targets over every cell of a `wavelet_modes` run: range and count per target."""
    ratio, first, extra = {}, {}, {}  # contender -> its value in every cell
    for r in d["results"]["rows"]:
        if "ratio_to_pywt" in r:
            ratio.setdefault(r["contender"], []).append(r["ratio_to_pywt"])
            if "first_call_s" in r:
                first.setdefault(r["contender"], []).append(r["first_call_s"])
        if "ratio" in r:
            extra.setdefault(r["contender"], []).append(r["ratio"])

    def line(name, bound, values, unit=""):
        ok = sum(v <= bound for v in values)
        status = "met" if ok == len(values) else f"**missed** in {len(values) - ok}"
        return (f"| {name} | <= {bound:g}{unit} | {min(values):.2f}-{max(values):.2f}{unit} "
                f"({ok} of {len(values)} cells <= {bound:g}{unit}) | {status} |")

    out = ["| target | bound | measured (range over the cells) | status |", "|---|---|---|---|"]
    for c in ("eager", "tf.function", "xla", "tf.data.map", "fit", "fit xla"):
        if c in ratio:
            out.append(line(f"fwd+inv ratio to PyWavelets, `{c}`", 0.5, ratio[c]))
    for c, name in (("eager fwd+bwd / fwd+inv", "eager fwd+bwd over fwd+inv"),
                    ("xla fwd+bwd / fwd+inv", "xla fwd+bwd over fwd+inv")):
        if c in extra:
            out.append(line(name, 3, extra[c]))
    for c in ("eager", "tf.function", "xla"):
        if c in first:
            out.append(line(f"first call, `{c}`", 1, first[c], " s"))
    return "\n".join(out)


def scaling_table(d):
    rows = d["results"]["rows"]
    out = ["| dims | n | dwt_keras ms | pywt ms | ratio | dwt_keras first call s | dwt_keras peak MB | pywt peak MB | input MB |",
           "|---|---|---|---|---|---|---|---|---|"]
    by = {(r["dims"], r["n"], r["lib"]): r for r in rows if "median_s" in r}
    for (dims, n, lib), r in by.items():
        if lib != "dwt_keras" or (dims, n, "pywt") not in by:
            continue
        p = by[(dims, n, "pywt")]
        size = f"{n}" if dims == 1 else f"{n}x{n}"
        out.append(f"| {dims}-D | {size} | {1e3 * r['median_s']:.1f} | {1e3 * p['median_s']:.1f} | "
                   f"{r['median_s'] / p['median_s']:.2f} | {r['first_call_s']:.2f} | "
                   f"{r['peak_mb_above_baseline']:.0f} | {p['peak_mb_above_baseline']:.0f} | {r['input_mb']:.1f} |")
    return "\n".join(out)


def peers_table(d):
    out = ["| library | level | wavelet | mode | status | fwd+inv / pywt | fwd+bwd / pywt | xla fwd+inv / pywt | xla fwd+bwd / pywt |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in d["results"]["rows"]:
        q = r.get("ratio_to_pywt", {})
        cell = lambda k: f"{q[k]:.2f}" if k in q else "-"  # noqa: E731
        out.append(f"| {r['lib']} | {r.get('level', '-')} | {r.get('wavelet', '-')} | {r.get('mode', '-')} | "
                   f"{r['status']} | {cell('fwd+inv')} | {cell('fwd+bwd')} | {cell('xla fwd+inv')} | {cell('xla fwd+bwd')} |")
    return "\n".join(out)


def main():
    for name, fn in (("wavelet_modes", modes_tables), ("wavelet_modes", targets_table),
                     ("wavelet_scaling", scaling_table), ("wavelet_peers", peers_table)):
        d = _load(name)
        if d is None:
            print(f"({name}.json: not run)\n")
            continue
        print(f"From `benchmarks/results/{name}.json`: {_meta(d)}\n")
        print(fn(d) + "\n")


if __name__ == "__main__":
    main()
