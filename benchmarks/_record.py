"""One format for every benchmark result file under ``benchmarks/results/``.

Every script that measures a figure quoted in BENCHMARKS.md writes it through
:func:`write_result`, so each file says how it was made: the command, the git
commit, the machine, the load average before and after, the seeds and when.

Usage inside a benchmark script::

    from _record import Recorder          # benchmarks/ is the script's folder
    rec = Recorder("wavelet_modes")        # takes the "before" load now
    ...measure...
    rec.write({"rows": rows}, seeds=[0, 1, 2])   # -> benchmarks/results/wavelet_modes.json

A figure taken with ``load_before`` or ``load_after`` above :data:`QUIET_LOAD` is flagged
``"quiet": false`` and must not be quoted as a speed figure.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from dwt_keras.utils.machine import cpu_model  # noqa: E402

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
#: Above this 1-minute load average on the 2-core machines a timing is noise.
QUIET_LOAD = 1.5


def _git_commit():
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
            text=True, timeout=10, cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        commit = out.stdout.strip() or None
        if commit and dirty.stdout.strip():
            commit += "+dirty"
        return commit
    except (OSError, subprocess.SubprocessError):
        return None


def machine():
    """A description of this machine and the software versions that matter."""
    info = {
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    for name in ("tensorflow", "keras", "pywt", "numpy", "torch", "jax"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = getattr(module, "__version__", None)
    return info


class Recorder:
    """Collects the metadata of one benchmark run and writes its result file.

    Args:
        name: the result file's stem: ``benchmarks/results/<name>.json``.
        results_dir: where to write (default ``benchmarks/results``).
    """

    def __init__(self, name, results_dir=None):
        self.name = name
        self.results_dir = results_dir or RESULTS_DIR
        self.load_before = os.getloadavg()[0]
        self.started = datetime.datetime.now(datetime.timezone.utc)

    def metadata(self, seeds=None):
        load_after = os.getloadavg()[0]
        return {
            "command": " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable)] + sys.argv),
            "git_commit": _git_commit(),
            "machine": machine(),
            "load_before": round(self.load_before, 2),
            "load_after": round(load_after, 2),
            "quiet": bool(self.load_before <= QUIET_LOAD and load_after <= QUIET_LOAD),
            "seeds": list(seeds) if seeds is not None else None,
            "started_utc": self.started.isoformat(timespec="seconds"),
            "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }

    def write(self, results, seeds=None):
        """Writes ``{"meta": ..., "results": results}`` atomically; returns the path."""
        os.makedirs(self.results_dir, exist_ok=True)
        path = os.path.join(self.results_dir, f"{self.name}.json")
        payload = {"meta": self.metadata(seeds), "results": results}
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(payload, f, indent=1, sort_keys=False, default=float)
            f.write("\n")
        os.replace(tmp, path)
        return path
