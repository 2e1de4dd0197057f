"""Where a voice starts, measured on the speech track: Whisper's first word of a phrase often begins in
the silence before it (0.2-0.4 s early on the fusion material), too early to time a line by."""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FRAME = 0.01  # seconds per level
DIGITAL_SILENCE = -90.0  # dB: samples of (near) zero, below any microphone's noise


@dataclass(frozen=True)
class VoiceLevels:
    """dB of each 10 ms frame of a speech track."""

    db: np.ndarray

    def onset(self, near: float) -> float:
        """The first voiced frame in [near - 0.25, near + 0.6] s; `near` itself where none is."""
        return self._edge(near, 0.25, 0.6, first=True)

    def offset(self, near: float) -> float:
        """The end of the last voiced frame in [near - 0.6, near + 0.6] s; `near` itself where none is."""
        return self._edge(near, 0.6, 0.6, first=False)

    def _edge(self, near: float, before: float, after: float, first: bool, context: float = 3.0) -> float:
        """A voiced frame is 30% of the way from the quiet to the speech peaks around it (±`context` s);
        where the track has no clear quiet (noise, music) the words' own time stands."""
        lo, hi = int(max(0.0, near - before) / FRAME), int((near + after) / FRAME)
        around = self.db[max(0, lo - int(context / FRAME)) : hi + int(context / FRAME)]
        if hi <= lo or not len(around):
            return near
        around = around[around > DIGITAL_SILENCE]  # an edited track's zeros are not its noise floor
        if not len(around):
            return near
        floor, peak = np.percentile(around, [5, 95])
        if peak - floor < 15:  # no clear silence around the word: nothing to measure against
            return near
        loud = np.flatnonzero(self.db[lo:hi] > floor + 0.3 * (peak - floor))
        if not len(loud):
            return near
        return round((lo + loud[0]) * FRAME, 2) if first else round((lo + loud[-1] + 1) * FRAME, 2)


def voice_levels(wav_path: str | Path) -> VoiceLevels:
    """Levels of a mono 16-bit PCM WAV (the speech stage's extracted track), read in blocks."""
    levels = []
    with wave.open(str(wav_path), "rb") as wav:
        frame = int(wav.getframerate() * FRAME)
        while block := wav.readframes(frame * 6000):  # a minute at a time
            samples = np.frombuffer(block, "<i2").astype(np.float32) / 32768
            samples = samples[: len(samples) // frame * frame].reshape(-1, frame)
            levels.append(10 * np.log10(np.mean(samples**2, axis=1) + 1e-10))
    return VoiceLevels(np.concatenate(levels) if levels else np.zeros(0, np.float32))
