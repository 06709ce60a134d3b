"""Lazy re-exports for package `__init__` modules (PEP 562).

A package lists `public name -> submodule` once; the submodule is imported on first access, so
`import dwt_keras` stays fast and a user of one capability does not pay for the others.
"""

import importlib


def lazy_exports(package, names):
    """Returns `(__getattr__, __dir__, __all__)` for a package exporting `names` lazily.

    Args:
        package: the package's `__name__` (for error messages and caching).
        names: a dict `{public name: module path}`.

    Example:

    ```python
    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"dwt": "dwt_keras.wavelets"})
    ```
    """
    import sys

    def __getattr__(name):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__, sorted(names)
