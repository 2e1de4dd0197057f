"""The diarization engine interface: a 16 kHz mono WAV in, speaker turns out (RTTM-like, may overlap)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from core.schema import SpeakerTurn
from stages.speech.engines.base import AsrSettings


class Diarizer(Protocol):
    name: str
    model_name: str
    device: str

    def diarize(self, wav: Path, settings: AsrSettings) -> list[SpeakerTurn]:
        """Who spoke when: turns in time order, `settings.speakers` of them when given."""
        ...

    def close(self) -> None:
        """Free the model (called on eviction)."""
        ...
