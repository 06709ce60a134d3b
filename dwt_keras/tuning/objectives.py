"""Size-aware objectives for compression searches.

A compression trial yields a validation accuracy `a` (in [0, 1]) and a measured compression
ratio `r` (dense float32 bytes / compressed-file bytes). The search maximises `val_score`:

* `val_accuracy`: `a` alone (size-blind; the compression settings are then chosen only for
  accuracy).
* `constrained` (default): maximise `a` subject to `r >= min_ratio`:
  `score = a` when `r >= min_ratio`, else `a - 1 - log10(min_ratio / r)`. Every trial that meets
  the ratio ranks above every trial that does not (`a <= 1`), and among those that miss it, the
  closer one comes to the ratio (and then the more accurate) the better.
* `tradeoff`: `score = a + weight * log10(r)`: with the default `weight = 0.01`, ten times
  smaller is worth one accuracy point.

All values come from the validation split; the test split is only used to report the final
model.
"""

import math

OBJECTIVES = ("val_accuracy", "constrained", "tradeoff")


def validate_objective(kind, min_ratio=10.0, weight=0.01):
    if kind not in OBJECTIVES:
        raise ValueError(f"Unknown objective {kind!r}. Valid choices: {', '.join(OBJECTIVES)}.")
    if not min_ratio > 0:
        raise ValueError(f"min_compression_ratio must be > 0, got {min_ratio}.")
    if not weight >= 0:
        raise ValueError(f"tradeoff weight must be >= 0, got {weight}.")


def size_aware_score(val_accuracy, compression_ratio, kind="constrained", min_ratio=10.0,
                     weight=0.01):
    """The `val_score` of one trial (see the module docstring).

    Args:
        val_accuracy: validation accuracy in [0, 1].
        compression_ratio: dense float32 bytes / compressed-file bytes (> 0).
        kind: one of `OBJECTIVES`.
        min_ratio: the ratio constraint of `constrained`.
        weight: the log10-ratio weight of `tradeoff`.

    Example:

    >>> size_aware_score(0.98, 120.0, "constrained", min_ratio=100.0)
    0.98
    >>> round(size_aware_score(0.99, 10.0, "constrained", min_ratio=100.0), 6)
    -1.01
    """
    validate_objective(kind, min_ratio, weight)
    a, r = float(val_accuracy), float(compression_ratio)
    if kind == "val_accuracy":
        return a
    if not r > 0:
        raise ValueError(f"compression_ratio must be > 0, got {r}.")
    if kind == "constrained":
        return a if r >= min_ratio else a - 1.0 - math.log10(min_ratio / r)
    return a + weight * math.log10(r)
