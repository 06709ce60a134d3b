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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from dwt_keras import cli  # noqa: E402
from dwt_keras.experiments.compare import CompareConfig  # noqa: E402

cli.define_flags(CompareConfig)


def main(argv):
    if len(argv) > 1:
        raise cli.app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from dwt_keras.experiments.compare import run_compare

    run_compare(cli.config_from_flags(CompareConfig))


if __name__ == "__main__":
    cli.run(main)
