"""Atomic file output and run folders.

Every file the library writes goes through a temporary file in the same folder followed by
`os.replace`, so an interrupted run never leaves a half-written report, model or figure behind.
"""

import contextlib
import datetime
import json
import os
import pathlib
import secrets
import tempfile

import numpy as np


def _create_temporary(path):
    """Creates a new empty file beside `path` and returns its name.

    Created with ``os.open(..., 0o666)`` so that the kernel applies the umask, exactly as for a
    plain ``open(path, "w")`` (``tempfile.mkstemp`` would give 0600 whatever the umask).
    """
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp{path.suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"Could not create a temporary file beside {path}.")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; renames it onto `path` only on success.

    The caller writes the file at the yielded path (its name keeps `path`'s suffix, e.g. for
    ``model.save``); an exception leaves `path` as it was and removes the temporary file. The
    file gets the mode a plain ``open(path, "w")`` would give (0666 less the umask).

    Example:

    ```python
    with atomic_path("out/model.keras") as tmp:
        model.save(tmp)
    ```
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temporary(path)
    try:
        yield str(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return pathlib.Path(path)


def _json_default(obj):
    # NumPy scalars and arrays appear in metrics everywhere; store them as plain JSON.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, pathlib.Path):
        return str(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def atomic_write_json(path, obj, indent=2):
    """Writes `obj` as JSON to `path` atomically (NumPy values are converted)."""
    text = json.dumps(obj, indent=indent, default=_json_default, allow_nan=True)
    return atomic_write_bytes(path, (text + "\n").encode("utf-8"))


def atomic_save_figure(fig, path, **savefig_kwargs):
    """Saves a matplotlib figure atomically and closes it."""
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    savefig_kwargs.setdefault("dpi", 100)
    savefig_kwargs.setdefault("bbox_inches", "tight")
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=path.suffix.lstrip(".") or "png", **savefig_kwargs)
    finally:
        plt.close(fig)
    return path


def check_writable_dir(path):
    """Creates `path` if needed and checks that files can be written there.

    Raises:
        ValueError: if the folder cannot be created or written, with the reason and a fix.
    """
    path = pathlib.Path(path).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write_test_"):
            pass
    except OSError as e:
        raise ValueError(
            f"Cannot write to the output folder '{path}': {e.strerror or e}. "
            "Pass a folder you can write to (e.g. --save_dir ./saved_models)."
        ) from e
    return path


def make_run_dir(save_dir, prefix):
    """Creates a new, unique run folder `<save_dir>/<prefix>-<UTC timestamp>[-N]`.

    An earlier run's folder is never reused: if the name exists, a counter is appended.

    Args:
        save_dir: the parent folder (created if missing; must be writable).
        prefix: a short name for the run, e.g. `"mnist-lenet300-haar"`.

    Returns:
        The `pathlib.Path` of the new, empty folder.
    """
    save_dir = check_writable_dir(save_dir)
    safe = "".join(c if (c.isalnum() or c in "._-") else "_" for c in str(prefix)) or "run"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = f"{safe}-{stamp}"
    for n in range(10000):
        candidate = save_dir / (base if n == 0 else f"{base}-{n}")
        try:
            candidate.mkdir()  # atomic: fails if another run took the name first
            return candidate
        except FileExistsError:
            continue
    raise RuntimeError(f"Could not create a unique run folder under {save_dir}.")
