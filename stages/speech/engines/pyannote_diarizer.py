"""pyannote speaker diarization (through whisperX) for users who have a local pyannote pipeline folder.

The same interface as the offline resemblyzer engine: a WAV in, speaker turns out. It never downloads:
`diarize_model` must name a local pipeline folder (e.g. a saved `pyannote/speaker-diarization-community-1`).
"""

from __future__ import annotations

import gc
import importlib.util
import sys
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.schema import SpeakerTurn
from stages.speech.engines.base import AsrSettings


class PyannoteDiarizer:
    """whisperX's DiarizationPipeline over a local pyannote pipeline; count given or bounded by settings."""

    name = "pyannote"

    def __init__(self, settings: AsrSettings) -> None:
        if not settings.diarize_model:
            raise ConfigError("pyannote diarization needs diarize_model: a local pyannote pipeline folder")
        folder = Path(settings.diarize_model).expanduser()
        if not folder.exists():
            raise ConfigError(f"pyannote diarize_model {settings.diarize_model!r} does not exist")
        if importlib.util.find_spec("whisperx") is None:
            raise ConfigError("pyannote diarization needs whisperx: pip install 'yivideo-flows[whisperx]'")
        from whisperx.diarize import DiarizationPipeline

        self.device = "cpu" if settings.device in ("auto", "cpu") else settings.device
        self.model_name = str(folder.resolve())
        self.pipeline: Any = DiarizationPipeline(model_name=self.model_name, device=self.device)

    def diarize(self, wav: Path, settings: AsrSettings) -> list[SpeakerTurn]:
        import whisperx

        frame = self.pipeline(
            whisperx.load_audio(str(wav)),
            num_speakers=settings.speakers,
            min_speakers=settings.min_speakers,
            max_speakers=settings.max_speakers,
        )
        turns = [SpeakerTurn(str(r.speaker), float(r.start), float(r.end)) for r in frame.itertuples()]
        return sorted(turns, key=lambda t: (t.start, t.speaker))

    def close(self) -> None:
        self.pipeline = None
        gc.collect()
        torch = sys.modules.get("torch")
        if torch is not None and torch.cuda.is_available():
            torch.cuda.empty_cache()
