"""The mel spectrogram resemblyzer's voice encoder was trained on, in numpy, without librosa.

resemblyzer computes it with `librosa.feature.melspectrogram`, and librosa's STFT module compiles numba
kernels when imported: the diarizer's load took 3.6 CPU s in each process that loads it (a model service,
a CLI run, a test worker) and ~20 s more the first time in a new environment (numba's cache is empty), for
a power STFT and a 40-band filterbank; 1.7 s without it. These are librosa 0.11's definitions (centred
frames padded with zeros, a periodic Hann window, Slaney's mel scale and area normalisation):
tests/test_diarization.py holds them to librosa's filters and scipy's STFT on real speech.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from stages.speech.audio import SAMPLE_RATE

# resemblyzer.hparams: sampling_rate 16 kHz (ours), mel_window_length 25 ms, step 10 ms, 40 channels
N_FFT = SAMPLE_RATE * 25 // 1000
HOP = SAMPLE_RATE * 10 // 1000
N_MELS = 40

_F_SP = 200.0 / 3  # Slaney's scale: linear below 1 kHz, logarithmic above
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOG_STEP = np.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, np.float64)
    linear = hz / _F_SP
    logarithmic = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOG_STEP
    return np.where(hz >= _MIN_LOG_HZ, logarithmic, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    linear = _F_SP * mel
    logarithmic = _MIN_LOG_HZ * np.exp(_LOG_STEP * (mel - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, logarithmic, linear)


@cache
def mel_filters() -> np.ndarray:
    """(N_MELS, N_FFT // 2 + 1) triangular filters from 0 Hz to Nyquist, each of unit area (float32)."""
    fft_hz = np.fft.rfftfreq(N_FFT, 1.0 / SAMPLE_RATE)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(SAMPLE_RATE / 2), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_hz[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


@cache
def _window() -> np.ndarray:
    return (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)).astype(np.float32)


def mel_spectrogram(wav: np.ndarray) -> np.ndarray:
    """(frames, N_MELS) float32 power mel spectrogram of 16 kHz mono samples, as resemblyzer's
    `wav_to_mel_spectrogram`: a frame every 10 ms, centred, over 25 ms."""
    padded = np.pad(np.asarray(wav, np.float32), N_FFT // 2)
    count = 1 + (len(padded) - N_FFT) // HOP
    frames = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:count]
    power = np.abs(np.fft.rfft(frames * _window(), axis=1)).astype(np.float32) ** 2
    return power @ mel_filters().T  # float32 by float32
