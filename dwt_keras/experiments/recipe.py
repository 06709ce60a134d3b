"""What a capability gives the experiment engine: a `Recipe`.

A recipe names its config class and supplies the phases of one run (`train`); the engine does
the rest the same way for every recipe (`Recipe.execute`): validation before anything is loaded
or created, the environment, the data, the run folder and its status, folds and ensembles, and
resuming a run whose folder is named by its settings.

The behaviours that really differ between recipes are attributes, not copies:

* `resumable`: the run folder is `<save_dir>/<run_name(config)>` and re-running the same
  command resumes it (the transformer); otherwise every run gets a new timestamped folder.
* `members_file`: where the summary of `--cv_folds` / `--ensemble` goes.
* the `Selection` each phase passes to `Run.fit` (monitored metric, in-memory best weights or a
  checkpoint).
"""

from __future__ import annotations

import dataclasses
import json

from dwt_keras.experiments.members import run_members
from dwt_keras.experiments.run import (
    CONFIG_FILE,
    REPORT_FILE,
    Environment,
    Run,
    load_data,
    run_state,
)
from dwt_keras.spectral.options import SPECTRAL_FIELDS
from dwt_keras.training.callbacks import read_history
from dwt_keras.utils.io import atomic_write_json
from dwt_keras.utils.options import OptionError

__all__ = ["Recipe", "config_dict"]


def config_dict(config):
    """A JSON-ready dict of a config (callbacks and functions by name, tuples as lists)."""
    out = {}
    for f in dataclasses.fields(config):
        v = getattr(config, f.name)
        if isinstance(v, (list, tuple)) and v and not isinstance(v[0], (int, float, str, bool)):
            v = [type(c).__name__ for c in v]
        elif callable(v):
            v = getattr(v, "__name__", repr(v))
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


class Recipe:
    """Base class of the engine's recipes (see the module docstring)."""

    #: Short name (status.json, messages).
    name = "recipe"
    #: The config dataclass.
    config_class = None
    #: Re-running the same command resumes the run in `<save_dir>/<run_name(config)>`.
    resumable = False
    #: Settings a resumed run may change (they do not change what is trained).
    resume_free = ("save_dir", "data_dir", "log_dir", "run_name", "verbose", "strategy",
                   "saliency_images", "export", "plots", "extra_callbacks")

    # ---- entry ----------------------------------------------------------------------------
    def execute(self, config, splits=None):
        """Validates `config`, then runs it (folds / members when asked); returns the report."""
        config = self.validate(config)
        if config.cv_folds or config.ensemble > 1:
            return run_members(self, config, splits)
        return self.run_one(config, splits)

    def validate(self, config):
        """Raises `OptionError` (a `ValueError`) for a bad setting, before anything happens."""
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} runs a {self.config_class.__name__}, got a "
                            f"{type(config).__name__}.")
        return config.validate()

    def run_one(self, config, splits=None):
        """One complete run (no folds, no members) in its own folder; returns the report."""
        with Environment(config) as env:
            if self.resumable:
                run, finished = self.open_resumable(config, env)
                if finished is not None:
                    return finished
                splits = self.load_data(config) if splits is None else splits
                prepared = self.prepare(config, splits, env)
                self.write_config(run, config)
            else:
                splits = self.load_data(config) if splits is None else splits
                # Building the model before the folder exists: a bad setting that only the
                # model reveals creates nothing.
                prepared = self.prepare(config, splits, env)
                run = Run.new(config, env, self.run_prefix(config), recipe=self.name)
            with run:
                report = self.train(run, splits, prepared)
                run.write_report(report)
        return report

    # ---- hooks ------------------------------------------------------------------------------
    def load_data(self, config):
        return load_data(config)

    def prepare(self, config, splits, environment):
        """Work done before the run folder exists (e.g. building the model); passed to train."""
        return None

    def train(self, run, splits, prepared):
        """The recipe's phases; returns the report dict."""
        raise NotImplementedError

    def run_prefix(self, config):
        return f"{config.dataset}-{self.name}"

    def run_name(self, config):
        raise NotImplementedError

    # ---- resumable runs ---------------------------------------------------------------------
    def open_resumable(self, config, environment):
        """`(run, finished_report)` of the folder named by the settings; the report is None
        unless that run is finished (a run with other settings there is an error)."""
        run = Run.named(config, environment, self.run_name(config), recipe=self.name)
        finished = self.finished_report(run, config)
        if finished is None:
            self.check_resume(run, config)
        return run, finished

    def write_config(self, run, config):
        atomic_write_json(run.dir / CONFIG_FILE, config_dict(config))

    def _comparable(self, config):
        out = {k: v for k, v in config.items() if k not in self.resume_free}
        if not out.get("spectral_reg"):
            for k in SPECTRAL_FIELDS[1:]:
                out.pop(k, None)
        return out

    def check_resume(self, run, config):
        """A folder holding a run with other settings is never resumed with these."""
        path = run.dir / CONFIG_FILE
        if not path.exists():
            return
        defaults = config_dict(self.config_class())
        # A run written before a setting existed ran with that setting's default.
        old = self._comparable({**defaults, **json.loads(path.read_text())})
        new = self._comparable(config_dict(config))
        diff = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                if json.dumps(old.get(k)) != json.dumps(new.get(k))}
        if diff:
            raise OptionError("run_name", f"The run folder {run.dir} holds a run with different "
                              f"settings {diff} (old, new). Pass a new --run_name (or "
                              "--save_dir) to start a separate run.")
        state = run_state(run.dir)
        if state is not None:
            done = len(read_history(run.dir / "history.csv"))
            print(f"[{self.name}] resuming the {state} run in {run.dir} from epoch "
                  f"{done + 1} of {config.epochs} ({done} done)", flush=True)

    def finished_report(self, run, config):
        """The report of a finished resumable run (None when it is not finished)."""
        if run_state(run.dir) != "done" or not (run.dir / REPORT_FILE).exists():
            return None
        self.check_resume(run, config)
        report = json.loads((run.dir / REPORT_FILE).read_text())
        run.say(f"[{self.name}] {run.dir} is complete; not retraining. Delete it to start over.")
        return self.complete_finished(run, config, report)

    def complete_finished(self, run, config, report):
        """Adds to a finished run what may be asked for later (saliency, export)."""
        return report

    # ---- folds and members --------------------------------------------------------------------
    def members_file(self, kind):
        """The file of the `--cv_folds` (`kind="cv"`) / `--ensemble` summary in the parent."""
        return REPORT_FILE

    def member_scalars(self, report):
        """The numeric test metrics of one member's report (cross-validation rows)."""
        raise NotImplementedError

    def member_model(self, report):
        """One member's final model (ensembles)."""
        raise NotImplementedError

    def member_file(self, report):
        """One member's stored model file (the ensemble's size is their sum)."""
        raise NotImplementedError

    def members_report(self, kind, result, parent, config, splits, reports):
        """The summary report of `kind` (`"cv"` or `"ensemble"`) from the engine's `result`."""
        result = dict(result)
        result.pop("model", None)
        return {"run_dir": str(parent.dir), "config": config_dict(config),
                "data": dict(splits.info),
                "cross_validation" if kind == "cv" else "ensemble": result,
                "runs": [r.get("run_dir") for r in reports]}
