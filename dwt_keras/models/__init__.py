"""Reference models: `lenet300`, `lenet5`, `resnet18` and `resnet20` (CIFAR variants), `mlp`.

All models take images `(H, W, C)` and return logits (no softmax), so they pair with
`SparseCategoricalCrossentropy(from_logits=True)`.
"""

from dwt_keras.models.registry import (MODELS, build_model, lenet5, lenet300, mlp, resnet18,
                                       resnet20)

__all__ = ["MODELS", "build_model", "lenet300", "lenet5", "resnet18", "resnet20", "mlp"]
