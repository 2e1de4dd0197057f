"""Audio extraction: any video or audio file to the 16 kHz mono PCM WAV that speech models expect.

ffmpeg resamples once up front, so every engine reads the same samples and the speech stage can stream
the WAV in windows (`iter_audio_windows`) instead of decoding the whole file into memory.
"""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from prefect import task
from prefect.cache_policies import NONE

from core.errors import MediaInputError, StageError, StageTimeout
from core.media import require_tool, run_media_command
from core.outputs import atomic_path, safe_stem
from core.schema import AudioTrack, MediaInfo

SAMPLE_RATE = 16000


def extraction_timeout(duration: float) -> float:
    """ffmpeg decodes audio at hundreds of times realtime; a minute plus a tenth of the duration is ample."""
    return 60.0 + 0.1 * max(duration, 0.0)


def require_audio(info: MediaInfo) -> MediaInfo:
    """Fail before any work when there is nothing to listen to (an image, a video without sound)."""
    if info.kind not in ("video", "audio"):
        raise MediaInputError(info.path, f"is {info.kind}, expected video or audio")
    if not info.has_audio:
        raise MediaInputError(info.path, "has no audio track: nothing to transcribe")
    return info


def extract_audio(info: MediaInfo, work_dir: str | Path, *, sample_rate: int = SAMPLE_RATE) -> AudioTrack:
    """The first audio track of `info.path` as mono 16-bit PCM WAV in `work_dir` (written atomically).

    A video without an audio track, or an audio track ffmpeg cannot decode, is a MediaInputError.
    """
    require_audio(info)
    out = Path(work_dir) / f"{safe_stem(info.path)}.16k.wav"
    cmd = [require_tool("ffmpeg"), "-v", "error", "-nostdin", "-y", "-i", str(info.path)]
    cmd += ["-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(sample_rate)]
    cmd += ["-c:a", "pcm_s16le", "-f", "wav"]
    with atomic_path(out) as tmp:
        try:
            run_media_command(
                [*cmd, str(tmp)],
                timeout=extraction_timeout(info.duration),
                stage="extract_audio",
                subject=info.path,
            )
        except StageTimeout:
            raise
        except StageError as exc:
            raise MediaInputError(info.path, f"audio track could not be decoded ({exc.cause})") from exc
        frames, rate = _wav_frames(tmp)
    return AudioTrack(source=info.path, path=out, sample_rate=rate, duration=frames / rate)


def _wav_frames(path: Path) -> tuple[int, int]:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes(), wav.getframerate()


def read_wav_info(path: str | Path) -> tuple[int, float]:
    """(sample rate, duration in seconds) of a PCM WAV, read from its header."""
    frames, rate = _wav_frames(Path(path))
    return rate, frames / rate


def _quietest_point(samples: np.ndarray, sample_rate: int, search: float, frame: float = 0.05) -> int:
    """Index of the quietest `frame`-long slice in the last `search` seconds (a cut there splits no word)."""
    hop = max(1, int(frame * sample_rate))
    start = max(0, len(samples) - int(search * sample_rate))
    tail = samples[start : start + (len(samples) - start) // hop * hop]
    if len(tail) < hop:
        return len(samples)
    energy = np.square(tail.reshape(-1, hop).astype(np.float32)).mean(axis=1)
    return start + int(np.argmin(energy)) * hop + hop // 2


def iter_audio_windows(
    path: str | Path, *, window: float = 600.0, search: float = 20.0
) -> Iterator[tuple[float, np.ndarray]]:
    """Yield (offset seconds, float32 samples) windows of about `window` seconds from a mono 16-bit WAV.

    Each window but the last ends at the quietest point of its last `search` seconds, so a window cut
    rarely lands inside a word; memory stays at one window whatever the file's length.
    """
    with wave.open(str(path), "rb") as wav:
        if wav.getnchannels() != 1 or wav.getsampwidth() != 2:
            raise StageError("transcribe", path, "expected a mono 16-bit PCM WAV (run extract_audio first)")
        rate = wav.getframerate()
        size = max(int(window * rate), int(2 * search * rate))
        consumed = 0  # samples handed out so far
        carry = np.zeros(0, np.int16)
        while True:
            block = np.frombuffer(wav.readframes(size - len(carry)), dtype="<i2")
            samples = np.concatenate([carry, block]) if len(carry) else block
            if len(samples) == 0:
                return
            last = len(samples) < size
            cut = len(samples) if last else _quietest_point(samples, rate, search)
            yield consumed / rate, samples[:cut].astype(np.float32) / 32768.0
            consumed += cut
            carry = samples[cut:].copy()
            if last:
                return


@task(name="extract_audio", task_run_name="extract audio", cache_policy=NONE)
def extract_audio_task(info: MediaInfo, work_dir: Path) -> AudioTrack:
    """CPU stage: never waits on the GPU."""
    from prefect import get_run_logger

    track = extract_audio(info, work_dir)
    get_run_logger().info("%s: %.1f s of %d Hz mono audio", info.path.name, track.duration, track.sample_rate)
    return track
