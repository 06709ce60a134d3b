"""Wavelet multi-scale attention transformer (W-MSA) and a ViT baseline.

Public API:

* `WaveletTransformer`, `ViT`, `build_model`, `MODEL_SIZES` -- Keras models
  mapping (B, H, W, C) images to (B, num_classes) logits.
* `WaveletTokenizer`, `PatchTokenizer` -- image -> tokens (+ metadata).
* `WaveletKernel` -- the PSD kernel over (level, orientation, position).
* `KernelAttention`, `TransformerBlock`, `DropPath` -- building blocks.
* `ScaleAwarePositionalEncoding`, `LearnedPositionalEmbedding`.
"""

from dwt_keras.transformer.attention import KERNEL_MODES, KernelAttention
from dwt_keras.transformer.blocks import DropPath, TransformerBlock
from dwt_keras.transformer.kernel import SPATIAL_KERNELS, WaveletKernel
from dwt_keras.transformer.models import (
    MODEL_SIZES,
    SubbandEmbedding,
    ViT,
    WaveletTransformer,
    build_model,
)
from dwt_keras.transformer.positional import (
    LearnedPositionalEmbedding,
    ScaleAwarePositionalEncoding,
)
from dwt_keras.transformer.tokenizer import PatchTokenizer, WaveletTokenizer

__all__ = [
    "DropPath",
    "KERNEL_MODES",
    "KernelAttention",
    "LearnedPositionalEmbedding",
    "MODEL_SIZES",
    "PatchTokenizer",
    "SPATIAL_KERNELS",
    "ScaleAwarePositionalEncoding",
    "SubbandEmbedding",
    "TransformerBlock",
    "ViT",
    "WaveletKernel",
    "WaveletTokenizer",
    "WaveletTransformer",
    "build_model",
]
