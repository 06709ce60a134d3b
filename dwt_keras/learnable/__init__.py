"""Learnable structured linear layers (Wolter, Lin & Yao, ICANN 2020).

`WaveletDense` (learnable fast wavelet transform), `FastfoodDense` (Walsh-Hadamard based), the
wavelet loss, and GRU cells / layers whose recurrent matrices are replaced by them.
"""

from dwt_keras.learnable.wavelet_dense import WaveletDense
from dwt_keras.learnable.wavelet_dense import coefficient_lengths
from dwt_keras.learnable.wavelet_dense import num_coefficients
from dwt_keras.learnable.wavelet_dense import padded_filter_bank
from dwt_keras.learnable.wavelet_dense import wavelet_analysis
from dwt_keras.learnable.wavelet_dense import wavelet_filter_loss
from dwt_keras.learnable.wavelet_dense import wavelet_synthesis
from dwt_keras.learnable.fastfood import FastfoodDense
from dwt_keras.learnable.fastfood import fast_walsh_hadamard
from dwt_keras.learnable.recurrent import FastfoodGRU
from dwt_keras.learnable.recurrent import FastfoodGRUCell
from dwt_keras.learnable.recurrent import WaveletGRU
from dwt_keras.learnable.recurrent import WaveletGRUCell
