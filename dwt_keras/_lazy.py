"""Lazy re-exports for package `__init__` modules (PEP 562).

A package lists `public name -> submodule` once; the submodule is imported on first access, so
`import dwt_keras` stays fast and a user of one capability does not pay for the others. The
package's own submodules and subpackages are reachable the same way: after `import dwt_keras`,
`dwt_keras.compression.GradualCompression` imports `dwt_keras.compression` on first use.
"""

import importlib
import pkgutil


def lazy_exports(package, names):
    """Returns `(__getattr__, __dir__, __all__)` for a package exporting `names` lazily.

    Attributes that are not in `names` but name one of the package's submodules import that
    submodule (``__all__`` lists `names` only, so ``from package import *`` stays light).

    Args:
        package: the package's `__name__` (for error messages and caching).
        names: a dict `{public name: module path}`.

    Example:

    ```python
    __getattr__, __dir__, __all__ = lazy_exports(__name__, {"dwt": "dwt_keras.wavelets"})
    ```
    """
    import sys

    # A directory listing, no import: the submodules a user can reach as attributes.
    submodules = {m.name for m in pkgutil.iter_modules(sys.modules[package].__path__)
                  if not m.name.startswith("_")}

    def __getattr__(name):
        module = names.get(name)
        if module is not None:
            value = getattr(importlib.import_module(module), name)
        elif name in submodules:
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        setattr(sys.modules[package], name, value)  # later look-ups skip __getattr__
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names) | submodules)

    return __getattr__, __dir__, sorted(names)
