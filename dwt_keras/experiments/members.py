"""`--cv_folds` and `--ensemble`, written once for every recipe.

Both run the recipe's whole run several times inside ONE parent folder (each member in its own
sub-folder, with its usual report and model files), then write the summary there:

* cross-validation: fold `i` trains on the other folds of the *training* split (train and
  validation parts pooled) and selects / early-stops on fold `i`, with seed `seed + i`; every
  fold's model is evaluated on the untouched official test split, and the summary holds the
  mean and the sample standard deviation (ddof=1) of each test metric across the folds;
* ensembles: N runs with seeds `seed, ..., seed + N - 1` on the same splits; their final models
  are averaged at the logits (`dwt_keras.training.ensemble.build_ensemble`), the ensemble is
  evaluated on the test split, saved as `ensemble.keras`, and its size is the sum of its
  members' stored files; saliency maps and the export apply to the ensemble.

A recipe provides (see `dwt_keras.experiments.recipe.Recipe`): `run_one(config, splits)`, the
scalars of a member's report (`member_scalars`), a member's final model (`member_model`) and
stored file (`member_file`), and the layout of its summary (`members_report`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from dwt_keras.experiments.run import Environment, Run, load_data
from dwt_keras.training.cross_validation import fold_splits, summarize_folds
from dwt_keras.training.ensemble import build_ensemble, ensemble_bytes

__all__ = ["run_members"]


def run_members(recipe, config, splits=None):
    """Runs `config.cv_folds` folds or `config.ensemble` members of `recipe`; returns the
    summary report (also written into the parent folder)."""
    kind = "cv" if config.cv_folds else "ensemble"
    count = int(config.cv_folds or config.ensemble)
    with Environment(config) as env:
        if recipe.resumable:
            parent, finished = recipe.open_resumable(config, env)
            if finished is not None:
                return finished
        splits = load_data(config) if splits is None else splits
        if not recipe.resumable:
            parent = Run.new(config, env, f"{kind}{count}-{recipe.run_prefix(config)}",
                             recipe=recipe.name)
        with parent:
            if recipe.resumable:
                recipe.write_config(parent, config)
            return _run_parts(recipe, config, splits, parent, kind, count)


def _run_parts(recipe, config, splits, parent, kind, count):
    """The folds / members of `run_members` inside their parent run, then the summary."""

    name = "fold" if kind == "cv" else "member"
    parts = list(fold_splits(splits, count, seed=config.seed)) if kind == "cv" \
        else [(i, splits) for i in range(count)]
    members = []
    for i, member_splits in parts:
        parent.set_phase(f"{name} {i + 1} of {count}")
        member_config = dataclasses.replace(
            config, cv_folds=0, ensemble=1, seed=int(config.seed) + i,
            save_dir=str(parent.dir), run_name=f"{name}{i}",
            log_dir=(None if not config.log_dir else f"{config.log_dir}/{parent.dir.name}"),
            # Ensemble members skip saliency and export: they apply to the averaged model.
            **({} if kind == "cv" else {"saliency_images": 0, "export": "none"}))
        members.append((i, member_splits, recipe.run_one(member_config, splits=member_splits)))
    parent.set_phase(f"{'cross-validation' if kind == 'cv' else 'ensemble'} summary")
    reports = [m[2] for m in members]
    result = _cross_validation(recipe, config, members) if kind == "cv" \
        else _ensemble(recipe, config, splits, parent, reports)
    report = recipe.members_report(kind, result, parent, config, splits, reports)
    report.setdefault("run_dir", str(parent.dir))
    parent.write_json(recipe.members_file(kind), report)
    return report


def _cross_validation(recipe, config, members):
    rows = []
    for i, member_splits, report in members:
        row = dict(recipe.member_scalars(report))
        row.update(fold=i, n_train=int(member_splits.info["n_train"]),
                   n_val=int(member_splits.info["n_val"]), run_dir=str(report.get("run_dir")))
        rows.append(row)
    summary = summarize_folds([{k: v for k, v in r.items()
                                if k not in ("fold", "n", "n_train", "n_val", "run_dir")}
                               for r in rows])
    return {"cv_folds": len(rows), "seed": int(config.seed), "evaluated_on": "test",
            "folds_from": "training split (train + validation parts pooled); each fold "
                          "validates on its own fold",
            "folds": rows, "summary": summary}


def _ensemble(recipe, config, splits, parent, reports):
    models = [recipe.member_model(r) for r in reports]
    params = [int(m.count_params()) for m in models]
    member_metrics = [parent.evaluate(m, splits) for m in models]
    model = build_ensemble(models, input_shape=splits.x_test.shape[1:])
    test = parent.evaluate(model, splits)
    path = parent.save_model(model, "ensemble.keras")
    parent.files["ensemble_model"] = str(path)
    files = [recipe.member_file(r) for r in reports]
    result = {
        "n_members": len(models), "seeds": [int(config.seed) + i for i in range(len(models))],
        "evaluated_on": "test", "test": test,
        "members_test_accuracy": [float(m.get("accuracy", np.nan)) for m in member_metrics],
        "params": {"per_member": params, "total": int(sum(params))},
        "bytes": ensemble_bytes(files),
        "bytes_note": "bytes: the sum of the members' stored model files",
        "ensemble_file": {"path": str(path), "bytes": int(path.stat().st_size)},
    }
    extras = parent.finish(model, splits, export_errors="record")
    result["model"] = model
    result["training_extras"] = extras
    return result
