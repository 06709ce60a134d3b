"""The package map holds: imports flow downward, and no package reaches into a sibling.

Layers, lowest first (README, "Architecture"):

    utils, _lazy                       small shared utilities
    wavelets, data, evaluation, models the transforms, data, metrics, plain architectures
    training                           training pieces (optimizers, callbacks, ...)
    compression, learnable, transformer, spectral, layers   the capabilities (never each other)
    experiments                        the engine and its recipes
    tuning, cli                        the search over the recipes; flags from the configs
    apps/                              flag wiring only

Every `import` and `from ... import` is checked, the function-local ones too.
"""

import ast
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[1]

LAYERS = {
    "_lazy": 0, "utils": 0,
    "wavelets": 1, "transforms": 1, "data": 1, "evaluation": 1, "models": 1,
    "training": 2,
    "compression": 3, "learnable": 3, "transformer": 3, "spectral": 3, "layers": 3,
    "experiments": 4,
    "tuning": 5, "cli": 5,
}
CAPABILITIES = {"compression", "learnable", "transformer", "spectral", "layers"}


def _package(module):
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "dwt_keras" else None


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "dwt_keras":
                for alias in node.names:
                    yield f"dwt_keras.{alias.name}", node.lineno
            else:
                yield node.module, node.lineno


def test_imports_flow_downward():
    bad = []
    for path in sorted((ROOT / "dwt_keras").rglob("*.py")):
        rel = path.relative_to(ROOT)
        own = rel.parts[1].removesuffix(".py") if len(rel.parts) > 1 else None
        if own in (None, "__init__"):
            continue
        assert own in LAYERS, f"{rel}: package {own!r} is not on the package map"
        for module, line in _imports(path):
            target = _package(module)
            if target is None or target == own:
                continue
            assert target in LAYERS, f"{rel}:{line} imports {module}, not on the package map"
            upward = LAYERS[target] > LAYERS[own]
            sideways = own in CAPABILITIES and target in CAPABILITIES
            if upward or sideways:
                bad.append(f"{rel}:{line} imports {module}")
    assert not bad, "imports against the package map:\n" + "\n".join(bad)


def test_apps_are_flag_wiring_only():
    """Apps import the cli and the engine (or the tuner), never the capability packages."""
    bad = []
    for path in sorted((ROOT / "apps").glob("*.py")):
        for module, line in _imports(path):
            target = _package(module)
            if target is not None and target not in ("cli", "experiments", "tuning"):
                bad.append(f"{path.name}:{line} imports {module}")
    assert not bad, "\n".join(bad)
