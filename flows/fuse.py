"""Burned-in subtitles and speech in one subtitle file: both flows on one video, then their lines fused.

python -m flows.fuse VIDEO --output-dir DIR              # prints the fused SRT path last
python -m flows.fuse VIDEO --diarize                     # speaker labels on the spoken side
python -m flows.fuse VIDEO --lang ja --language ja       # the subtitles' language, the speech's language

The pipeline flow runs the same fusion as its `fuse` step (`fuse_into`), on the events and the transcript
its own steps made.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.states import State

from core.cli import EPILOG, CliParser, api_ready, preflight_media, preflight_output_dir, run_cli
from core.damage import exit_status
from core.media import probe_task
from core.outputs import run_output_dir, safe_stem, scratch_dir, write_manifest
from core.schema import MediaInfo, SubtitleEvent, SubtitleResult, TranscriptResult
from flows.subtitles import SubtitleLanguage, extract_subtitles
from flows.transcribe import SpeechLanguage, transcribe
from runtime.naming import artifact_key, run_named_after
from runtime.runner import StageRunner, add_runner_arguments, runner_from_arguments
from runtime.stage import Stages
from stages.fusion.files import FusedOutput, disagreement_rows, write_fused_files_task
from stages.fusion.fuse import FusionResult, fuse_task
from stages.speech.audio import extract_audio_task, require_audio
from stages.speech.languages import WHISPER_LANGUAGES
from stages.subtitles.languages import LANGUAGE_CHOICES


@flow(name="fuse-subtitles", flow_run_name=run_named_after("fuse", "video"), task_runner=StageRunner())
def fuse_subtitles(
    video: str,
    output_dir: str = "output",
    language: SpeechLanguage = None,
    diarize: bool | None = None,
    lang: SubtitleLanguage = None,
) -> FusedOutput:
    """Read the burned-in subtitles and transcribe the speech of `video`, then fuse them into
    `<output_dir>/fuse/<stem>-<hash>/<stem>.fused.srt/.vtt/.json` and a disagreement table.

    Args:
        video: path of the video file (as the worker sees it)
        output_dir: folder under which subtitles/, transcribe/ and fuse/ are written
        language: the speech's Whisper code (en, zh, ...); empty: detected
        diarize: speaker labels on the spoken side (kept per line beside translated subtitles)
        lang: the subtitles' language: auto (told from the pixels) or ch, en, zh, ja, ko, ru, fr, es, de...
    """
    stages = Stages()
    info = require_audio(stages.run(probe_task, video, "video"))  # a silent video fails before any OCR
    shown = extract_subtitles(video, output_dir, lang=lang)
    shown = shown.result() if isinstance(shown, State) else shown  # "no subtitles found" is a Completed state
    heard = transcribe(video, output_dir, language=language, diarize=diarize)
    run_dir = run_output_dir(output_dir, "fuse", shown.video)
    fused, files = fuse_into(run_dir, info, list(shown.events), heard, stages)
    write_manifest(
        run_dir, flow="fuse", input_path=shown.video, outputs=files,
        extra={"subtitles": shown.json_path, "transcript": heard.json_path, "lines": len(fused.lines),
               "disagreements": len(fused.disagreements), "stage_seconds": _seconds(shown, heard, stages)},
    )  # fmt: skip
    return FusedOutput(fused, files["srt"], files["vtt"], files["json"], shown, heard)


def fuse_into(
    run_dir: Path, info: MediaInfo, events: list[SubtitleEvent], heard: TranscriptResult, stages: Stages
) -> tuple[FusionResult, dict[str, Path]]:
    """The events and the transcript of one video fused into `run_dir`/<stem>.fused.srt/.vtt/.json, with
    the disagreement table as an artifact; the fuse flow and the pipeline's `fuse` step both run this."""
    work = scratch_dir(run_dir)  # removed below; a killed run's by the next run here
    try:  # the speech track again (the transcribe flow keeps none): lines are timed by the voice's onset
        audio = stages.run(extract_audio_task, info, work)
        fused = stages.run(fuse_task, events, heard.transcript, audio)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    files = stages.run(write_fused_files_task, fused, run_dir, safe_stem(info.path))
    create_table_artifact(
        disagreement_rows(fused), key=artifact_key("fuse-disagreements", info.path.name),
        description=f"{len(fused.disagreements)} lines of {info.path.name} where the subtitles and the "
        "speech differ: both texts and times",
    )  # fmt: skip
    return fused, files


def _seconds(shown: SubtitleResult, heard: TranscriptResult, stages: Stages) -> dict[str, float]:
    return {**{f"subtitles.{k}": v for k, v in shown.stage_seconds.items()},
            **{f"transcribe.{k}": v for k, v in heard.stage_seconds.items()}, **stages.timings}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(
        description="Fuse a video's burned-in subtitles and its speech into one SRT/VTT/JSON.", epilog=EPILOG
    )
    parser.add_argument("video", help="video file with burned-in subtitles and a soundtrack")
    parser.add_argument("--output-dir", default="output")
    parser.add_argument(
        "--language", default=None, choices=WHISPER_LANGUAGES, metavar="CODE",
        help="the speech's Whisper code (en, zh, ...); default: detected",
    )  # fmt: skip
    parser.add_argument("--diarize", action="store_true", default=None, help="speaker labels on the speech")
    parser.add_argument(
        "--lang", choices=LANGUAGE_CHOICES, help="the subtitles' language (default auto: from the pixels)"
    )
    add_runner_arguments(parser)
    args = parser.parse_args(argv)
    preflight_output_dir(args.output_dir)
    require_audio(preflight_media(args.video, "video"))
    api_ready()
    result = runner_from_arguments(fuse_subtitles, args)(
        args.video, args.output_dir, args.language, args.diarize, args.lang
    )
    fused = result.result
    print(f"{len(fused.lines)} lines, {len(fused.disagreements)} where subtitles and speech differ")
    print(result.vtt_path)
    print(result.json_path)
    print(result.srt_path)
    return exit_status(result.subtitles.damage or result.speech.damage)  # 1 with a warning: damaged input


if __name__ == "__main__":
    sys.exit(run_cli(main))
