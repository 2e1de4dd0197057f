"""Speech to SRT/VTT/JSON: probe, extract audio, transcribe (VAD + Whisper), optional diarization, write.

python -m flows.transcribe MEDIA --output-dir DIR                 # prints the SRT path last
python -m flows.transcribe MEDIA --diarize [--speakers 2]         # speaker labels, RTTM, speakers table
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from blocks.asr import AsrConfig
from blocks.loader import load_block
from core.cli import EPILOG, CliParser, allowed_by, api_ready, preflight_media, preflight_output_dir, run_cli
from core.damage import decode_check_task, exit_status, report_damage
from core.media import probe_task
from core.outputs import run_output_dir, safe_stem, scratch_dir, write_manifest
from core.schema import DecodeDamage, Diarization, SpeechSegment, Transcript, TranscriptResult
from runtime.forms import choice
from runtime.naming import artifact_key, run_named_after, stage_timing_table
from runtime.placement import GpuUse
from runtime.runner import StageRunner, add_runner_arguments, runner_from_arguments
from runtime.stage import Stages
from stages.speech.audio import extract_audio_task, require_audio
from stages.speech.diarize import diarize_task, speaker_table
from stages.speech.engines import ENGINES, AsrSettings
from stages.speech.languages import WHISPER_LANGUAGES
from stages.speech.transcribe import transcribe_task
from stages.speech.transcript import write_transcript_task

# The Run form's dropdowns, from the registries (empty: the settings block's value)
SpeechLanguage = choice(WHISPER_LANGUAGES)
AsrEngineName = choice(ENGINES)


@flow(name="transcribe", flow_run_name=run_named_after("transcribe", "media"), task_runner=StageRunner())
def transcribe(
    media: str,
    output_dir: str = "output",
    language: SpeechLanguage = None,
    engine: AsrEngineName = None,
    model: str | None = None,
    diarize: bool | None = None,
    settings_block: str | None = None,
    speakers: int | None = None,
) -> TranscriptResult:
    """Transcribe the speech of `media` into `<output_dir>/transcribe/<stem>-<hash>/<stem>.srt/.vtt/.json`.

    Args:
        media: path of the video or audio file (as the worker sees it)
        output_dir: folder under which `transcribe/<stem>-<hash>/` is written
        language: Whisper's code of the speech, such as en, zh, de; empty: detected (or the block's)
        engine: faster-whisper (offline default) or whisperx (installed, local models); empty: the block's
        model: Whisper model: `base` (packaged), a model name or a local CTranslate2 folder
        diarize: label speakers (offline resemblyzer by default): labelled cues, RTTM, speakers table
        settings_block: name of a saved YiVideo ASR Engine block (defaults for everything above)
        speakers: the number of speakers when known (implies diarize); empty: estimated
    """
    if speakers and diarize is None:  # giving the count asks for speaker labels
        diarize = True
    block = load_block(
        AsrConfig, settings_block, asr__language=language, asr__engine=engine, asr__model=model,
        asr__diarize=diarize, asr__speakers=speakers,
    )  # fmt: skip
    asr = block.asr
    stages = Stages()
    diarization: Diarization | None = None
    (media,), output_dir = stages.shared([media], output_dir)
    info = require_audio(stages.run(probe_task, media, "video", "audio"))
    damage = stages.run(decode_check_task, info, "audio")  # a corrupt stretch of audio is speech lost
    report_damage(damage, "transcribe")
    work = scratch_dir(Path(output_dir) / "transcribe")  # beside the outputs: other (Ray) workers see it
    try:
        audio = stages.run(extract_audio_task, info, work)
        # long audio runs long: the stage may take twice the audio's duration before it counts as hung;
        # a GPU from Ray only where the engine may use one (a pinned CUDA device requires one); the
        # ASR model stays loaded in its warm actor on a Ray cluster
        transcript = stages.run(
            transcribe_task, audio, asr, min_timeout=2 * audio.duration, gpu=_gpu_use(asr), model=asr
        )
        if asr.diarize:
            transcript, diarization = stages.run(diarize_task, audio, transcript, asr, gpu=_gpu_use(asr))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _publish(info.path, output_dir, transcript, diarization, block, stages, damage)


def label_speakers(
    result: TranscriptResult, output_dir: str, settings_block: str | None = None, speakers: int | None = None
) -> TranscriptResult:
    """The diarize stage on a finished transcription (the pipeline's `diarize`): speaker labels on its
    words, segments and cues, `<stem>.rttm` and the `speakers` table; its files are rewritten in place."""
    block = load_block(AsrConfig, settings_block, asr__diarize=True, asr__speakers=speakers)
    asr = block.asr
    stages = Stages()
    info = require_audio(stages.run(probe_task, str(result.media), "video", "audio"))
    work = scratch_dir(Path(output_dir) / "transcribe")
    try:
        audio = stages.run(extract_audio_task, info, work)
        transcript, diarization = stages.run(diarize_task, audio, result.transcript, asr, gpu=_gpu_use(asr))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    stages.timings = {**result.stage_seconds, **stages.timings}
    return _publish(info.path, output_dir, transcript, diarization, block, stages, result.damage)


def _publish(
    media: Path,
    output_dir: str,
    transcript: Transcript,
    diarization: Diarization | None,
    block: AsrConfig,
    stages: Stages,
    damage: DecodeDamage | None = None,
) -> TranscriptResult:
    """Write SRT/VTT/JSON (+ RTTM), the manifest and the transcript artifact."""
    run_dir = run_output_dir(output_dir, "transcribe", media)
    files = stages.run(write_transcript_task, transcript, run_dir, safe_stem(media), block.cues, diarization)
    write_manifest(
        run_dir,
        flow="transcribe",
        input_path=media,
        outputs=files,
        extra={
            "language": transcript.language,
            "language_probability": transcript.language_probability,
            "segments": len(transcript.segments),
            "engine": transcript.engine,
            "speakers": list(diarization.speakers) if diarization else None,
            "stage_seconds": stages.timings,
            "decode_errors": damage,
        },
    )
    _report(media.name, transcript, files["srt"])
    if diarization is not None:
        create_table_artifact(
            speaker_table(diarization), key=artifact_key("speakers", media.name),
            description=f"who spoke in {media.name}: talk time and turns",
        )  # fmt: skip
    stage_timing_table("transcribe", media, stages.timings)
    return TranscriptResult(
        media, transcript, files["srt"], files["vtt"], files["json"], stages.timings, diarization,
        files.get("rttm"), damage if damage is not None and damage.damaged else None,
    )  # fmt: skip


def _gpu_use(asr: AsrSettings) -> GpuUse:
    """Ask Ray for a GPU only where the engine may use one; a pinned CUDA device requires one."""
    if asr.device == "cpu":
        return False
    return "required" if asr.device.startswith("cuda") else True


def _cells(segment: SpeechSegment, diarized: bool) -> list[str]:
    speaker = [segment.speaker or ""] if diarized else []
    text = segment.text.replace("|", "/")
    return [str(segment.index), f"{segment.start:.2f}", f"{segment.end:.2f}", *speaker, text]


def _report(name: str, transcript: Transcript, srt_path: Path) -> None:
    """The first segments as a table; a diarized transcript gets a speaker column."""
    diarized = any(s.speaker for s in transcript.segments)
    columns = ["#", "start", "end", *(["speaker"] if diarized else []), "text"]
    head = f"| {' | '.join(columns)} |\n|{'---|' * len(columns)}"
    rows = "\n".join("| " + " | ".join(_cells(s, diarized)) + " |" for s in transcript.segments[:15])
    language = (
        f"language **{transcript.language}** (p={transcript.language_probability:.2f})"
        if transcript.language
        else "no speech detected"
    )
    create_markdown_artifact(
        key=artifact_key("transcript", name),
        markdown=f"## Speech in {name}\n\n{language}, {transcript.engine} on {transcript.device}\n\n"
        f"{len(transcript.segments)} segments → {srt_path.name} in `{srt_path.parent}`\n\n"
        f"{head}\n{rows}\n",
        description=f"first segments of {name}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(
        description="Transcribe the speech of a video or audio file to SRT/VTT/JSON.", epilog=EPILOG
    )
    parser.add_argument("media", help="video or audio file")
    parser.add_argument("--output-dir", default="output")
    parser.add_argument(
        "--language", default=None, choices=WHISPER_LANGUAGES, metavar="CODE",
        help="Whisper's code (en, zh, de, ...); default: detected",
    )  # fmt: skip
    parser.add_argument("--engine", default=None, choices=list(ENGINES))
    parser.add_argument(
        "--model",
        default=None,
        help="'base' (packaged, default), a faster-whisper model name or a local folder",
    )
    parser.add_argument(
        "--diarize", action="store_true", default=None, help="speaker labels (offline resemblyzer by default)"
    )
    parser.add_argument(
        "--speakers",
        type=allowed_by(AsrSettings, "speakers", int),
        default=None,
        help="the number of speakers",
    )
    parser.add_argument("--settings-block", default=None, help="name of a saved YiVideo ASR Engine block")
    add_runner_arguments(parser)
    args = parser.parse_args(argv)
    preflight_output_dir(args.output_dir)
    require_audio(preflight_media(args.media, "video", "audio"))
    api_ready()
    result = runner_from_arguments(transcribe, args)(
        args.media, args.output_dir, args.language, args.engine, args.model, args.diarize,
        args.settings_block, args.speakers,
    )  # fmt: skip
    t = result.transcript
    print(f"{len(t.segments)} segments, language {t.language} (p={t.language_probability:.2f})")
    if result.diarization is not None:
        print(f"{len(result.diarization.speakers)} speakers: {', '.join(result.diarization.speakers)}")
        print(result.rttm_path)
    print(result.vtt_path)
    print(result.json_path)
    print(result.srt_path)
    return exit_status(result.damage)  # 1 (partly done) with a warning when the audio was damaged


if __name__ == "__main__":
    sys.exit(run_cli(main))
