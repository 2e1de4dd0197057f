"""Burned-in subtitles to SRT/JSON/TXT: keyframes, band, crop, stitch, OCR, postprocess.

python -m flows.subtitles VIDEO --output-dir DIR      # prints the SRT path last
python -m flows.subtitles --demo --output-dir DIR     # on a generated sample video
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from blocks.loader import load_block
from blocks.subtitles import SubtitleConfig
from core.caching import close_work_dir, consume, open_work_dir
from core.cli import (
    EPILOG,
    CliParser,
    api_ready,
    positive,
    preflight_media,
    preflight_output_dir,
    run_cli,
)
from core.damage import combined_damage, decode_check_task, exit_status, report_damage
from core.errors import ConfigError
from core.media import probe_task
from core.outputs import discard_if_empty, run_output_dir, safe_stem, write_manifest
from core.progress import StageProgress
from core.schema import (
    Band,
    DecodeDamage,
    FrameText,
    KeyframeSet,
    MediaInfo,
    StitchedBatch,
    SubtitleEvent,
    SubtitleResult,
)
from runtime.forms import choice
from runtime.naming import artifact_key, run_named_after, stage_timing_table
from runtime.runner import StageRunner, add_runner_arguments, runner_from_arguments
from runtime.stage import Stages
from stages.subtitles.area import describe_band, signal_settings, subtitle_area_task
from stages.subtitles.band import WHOLE_FRAME
from stages.subtitles.crop import crop_task
from stages.subtitles.keyframes import keyframes_task, video_windows
from stages.subtitles.language_stage import language_task
from stages.subtitles.languages import AUTO, LANGUAGE_CHOICES, spacing_of
from stages.subtitles.ocr import ENGINES, OcrSettings, ocr_task
from stages.subtitles.postprocess import PostprocessSettings, postprocess_task, write_subtitle_files
from stages.subtitles.stitch import batch_keyframes, stitch_task

WindowStage = Literal["keyframes", "crop", "stitch", "ocr"]
OcrEngineName = choice(ENGINES)  # the Run form's dropdowns (empty: the settings block's value)
SubtitleLanguage = choice(LANGUAGE_CHOICES)
WINDOW_STAGES: tuple[WindowStage, ...] = ("keyframes", "crop", "stitch", "ocr")


@dataclass(frozen=True)
class BandTexts:
    """What the windowed stages made of one band, summed over the windows: the texts in time order."""

    texts: list[FrameText]
    samples: int
    keyframes: int
    crops: int
    batches: int
    lang: str = AUTO  # the language read (told from the first batches when the settings say auto)

    def summary(self, stage: WindowStage) -> str:
        """One line per stage for the pipeline's table."""
        read = sum(1 for t in self.texts if t.lines)
        return {
            "keyframes": f"{self.keyframes} keyframes with text from {self.samples} samples",
            "crop": f"{self.crops} band crops",
            "stitch": f"{self.batches} stitched OCR batches",
            "ocr": f"{read} of {len(self.texts)} keyframes read",
        }[stage]


def find_band(info: MediaInfo, settings: SubtitleConfig, stages: Stages) -> Band:
    """The subtitle band: the user's, or detected (PP-OCR text detection on sampled frames)."""
    ocr, signal = settings.ocr, signal_settings(settings.keyframes)
    return stages.run(subtitle_area_task, info, ocr, settings.area, settings.band, signal, model=ocr)


def read_band_texts(
    info: MediaInfo,
    band: Band,
    settings: SubtitleConfig,
    stages: Stages,
    work_dir: Path,
    until: WindowStage = "ocr",
    keep: bool = False,
    window_damage: list[DecodeDamage] | None = None,
) -> BandTexts:
    """Keyframes -> crop -> stitch -> OCR over the video window by window (`keyframes.window_seconds`),
    each window's images deleted after its OCR unless `keep`: temporary disk stays bounded on long video
    (two windows' images at most). The next window's keyframes decode while this one is read: OCR uses
    one core, decoding the other. `until` stops each window after that stage (the pipeline's chains).
    Each window's decode errors (KeyframeSet.damage) go into `window_damage` as it is decoded: the caller has
    those of the windows before a failure too."""
    windows = video_windows(info.duration, settings.keyframes.window_seconds)
    texts: list[FrameText] = []
    samples = kept = cropped = stitched = 0
    ocr = settings.ocr

    def decode(window: tuple[float, float]) -> Callable[[], KeyframeSet]:
        folder = work_dir / f"{window[0]:08.1f}"
        return stages.start(keyframes_task, info, band, folder, settings.keyframes, window)

    decoding = decode(windows[0])
    try:
        for number, window in enumerate(windows, 1):
            folder = work_dir / f"{window[0]:08.1f}"
            keyframes = decoding()
            if window_damage is not None and keyframes.damage is not None:
                window_damage.append(keyframes.damage)
            if number < len(windows):
                decoding = decode(windows[number])
            samples, kept = samples + keyframes.samples_decoded, kept + len(keyframes.frames)
            if until != "keyframes":
                crops = stages.run(crop_task, keyframes, folder, settings.keyframes)
                cropped += len(crops.frames)
                if until != "crop":
                    # every crop stacked until the language is told from them (stitch.py's followers)
                    batches = stages.run(stitch_task, crops, folder, ocr.lang != AUTO)
                    stitched += len(batches)
                    if until != "stitch":
                        if ocr.lang == AUTO and batches:  # once per video, from the first batches with text
                            ocr = stages.run(language_task, batches, ocr, str(info.path), model=ocr)
                        texts += read_batches(info, crops, batches, ocr, stages, window)
            if not keep:
                consume(folder)  # finished: the cached results pointing into it stay reusable
    except Exception:
        with contextlib.suppress(Exception):  # the next window decodes into work_dir: it ends before the
            decoding()  # caller cleans up (no image written after the folder is gone, no stray task failed)
        raise
    return BandTexts(texts, samples, kept, cropped, stitched, ocr.lang)


def pictures_damage(info: MediaInfo, window_damage: list[DecodeDamage], stages: Stages) -> DecodeDamage:
    """The pictures' decode errors once `read_band_texts` ran: its windows' joined, or a decode check of the
    pictures where an empty band decoded nothing. Subtitles lose nothing to damaged audio."""
    if window_damage:
        return combined_damage(info.path, window_damage)
    return stages.run(decode_check_task, info, "video")


def read_batches(
    info: MediaInfo,
    crops: KeyframeSet,
    batches: list[StitchedBatch],
    ocr: OcrSettings,
    stages: Stages,
    window: tuple[float, float],
) -> list[FrameText]:
    """OCR, one task run per batch (`ocr batch 2/5` in the UI, each resumable on its own), in order."""
    total = len(batches)
    parts = [batch_keyframes(crops, batch) for batch in batches]
    frames, read = sum(len(part.frames) for part in parts), [0]
    progress = StageProgress(
        f"OCR of {info.path.name} {window[0]:.0f}-{window[1]:.0f} s", items=frames, unit="keyframes"
    )

    def advance(texts: list[FrameText]) -> None:
        read[0] += len(texts)
        progress(read[0] / max(1, frames))

    numbers = list(range(1, total + 1))
    per_batch = stages.run_each(
        ocr_task, batches, parts, unmapped(ocr), numbers, unmapped(total), model=ocr, on_each=advance
    )
    progress.done()
    return [text for texts in per_batch for text in texts]


def spaced_for(reading: BandTexts, settings: SubtitleConfig) -> PostprocessSettings:
    """The user's postprocess settings with the word spaces of the language read: the English repair only
    for ch/en, none for ja/zh, the words as read elsewhere; simplified Chinese glyphs where ch was read."""
    return replace(settings.postprocess, spacing=spacing_of(reading.lang), simplified=reading.lang == "ch")


@flow(
    name="extract-subtitles", flow_run_name=run_named_after("subtitles", "video"), task_runner=StageRunner()
)
def extract_subtitles(
    video: str,
    output_dir: str = "output",
    sample_fps: float | None = None,
    band: tuple[float, float, float, float] | None = None,
    ocr_engine: OcrEngineName = None,
    settings_block: str | None = None,
    lang: SubtitleLanguage = None,
) -> SubtitleResult:
    """Read the burned-in subtitles of `video` into `<output_dir>/subtitles/<stem>-<hash>/<stem>.srt`.

    Args:
        video: path of the video file (as the worker sees it)
        output_dir: folder under which `subtitles/<stem>-<hash>/` is written
        sample_fps: frames per second sampled for subtitle changes (default 10; more finds shorter lines)
        band: subtitle band as fractions of the frame [x0, y0, x1, y1]; empty: detected
        ocr_engine: rapidocr (PP-OCR ONNX in the wheels, offline) or paddleocr (installed, local models)
        settings_block: name of a saved YiVideo Subtitle Settings block (defaults for everything above)
        lang: subtitle language: auto (told from the pixels) or ch, en, zh, ja, ko, ru, uk, fr, es, de, vi...
    """
    settings = load_block(
        SubtitleConfig,
        settings_block,
        keyframes__sample_fps=sample_fps,
        band=band,
        ocr__engine=ocr_engine,
        ocr__lang=lang,
    )
    if not settings.sample_fps > 0:
        raise ConfigError(f"sample_fps must be above 0 (got {settings.sample_fps})")
    stages = Stages()
    (video,), output_dir = stages.shared([video], output_dir)
    info = stages.run(probe_task, video, "video")
    # a corrupt middle decodes as lost subtitles: the keyframes decode of each window dates its errors
    window_damage: list[DecodeDamage] = []
    run_dir = run_output_dir(output_dir, "subtitles", info.path)
    work = open_work_dir(run_dir / ".work")  # a crashed run's .work (and its token) lets a re-run resume
    try:
        subtitle_band = find_band(info, settings, stages)  # `band`, the parameter, is the user's fractions
        reading = read_band_texts(info, subtitle_band, settings, stages, work, window_damage=window_damage)
        damage = pictures_damage(info, window_damage, stages)
        by_position = subtitle_band.source == WHOLE_FRAME  # lines all over the frame: events per position
        events = stages.run(postprocess_task, reading.texts, spaced_for(reading, settings), by_position)
        files = write_subtitle_files(
            events, run_dir, safe_stem(info.path), video=info.path, band=subtitle_band,
            sample_fps=settings.sample_fps,
        )  # fmt: skip
    except BaseException as exc:
        if isinstance(exc, Exception) and window_damage:  # a failed run is explained by what was decoded
            with contextlib.suppress(Exception):
                report_damage(combined_damage(info.path, window_damage), "subtitles")
        close_work_dir(work, exc)  # kept when the user stopped the run: the re-run resumes from it
        discard_if_empty(run_dir, output_dir)  # a failed run leaves no empty folder behind
        raise
    close_work_dir(work)
    report_damage(damage, "subtitles")
    write_manifest(
        run_dir,
        flow="subtitles",
        input_path=info.path,
        outputs=files,
        extra={
            "events": len(events),
            "band": subtitle_band,
            "lang": reading.lang,
            "stage_seconds": stages.timings,
            "decode_errors": damage,
        },
    )
    _report(info.path.name, describe_band(subtitle_band, info), events, files["srt"])
    stage_timing_table("subtitles", info.path, stages.timings)
    result = SubtitleResult(
        info.path, tuple(events), subtitle_band, files["srt"], files["json"], files["txt"], stages.timings,
        damage if damage.damaged else None,
    )  # fmt: skip
    if not events:  # the run says so, not only an empty file: "Completed" alone hid aliasing misses
        return Completed(message=f"no subtitles found: {describe_band(subtitle_band, info)}", data=result)
    return result


def _report(name: str, band: str, events: list[SubtitleEvent], srt_path: Path) -> None:
    rows = "\n".join(
        f"| {e.index} | {e.start:.2f} | {e.end:.2f} | {e.text.replace(chr(10), ' / ')} |" for e in events[:15]
    )
    found = f"{len(events)} events" if events else "**No subtitles found**: the SRT is empty"
    create_markdown_artifact(
        key=artifact_key("subtitles", name),
        markdown=f"## Subtitles of {name}\n\n{band}\n\n"
        f"{found} → {srt_path.name} in `{srt_path.parent}`\n\n"
        f"| # | start | end | text |\n|---|---|---|---|\n{rows}\n",
        description=f"first subtitles of {name}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(
        description="Extract burned-in subtitles from a video into SRT/JSON/TXT.", epilog=EPILOG
    )
    parser.add_argument("video", nargs="?", help="video file (omit with --demo)")
    parser.add_argument("--output-dir", default="output")
    parser.add_argument("--demo", action="store_true", help="generate a sample video with known subtitles")
    parser.add_argument("--sample-fps", type=positive(), default=None, help="frames sampled per second")
    parser.add_argument(
        "--band",
        type=float,
        nargs=4,
        metavar=("X0", "Y0", "X1", "Y1"),
        default=None,
        help="subtitle band as fractions of the frame (default: detected)",
    )
    parser.add_argument("--ocr-engine", default=None, choices=["rapidocr", "paddleocr"])
    parser.add_argument(
        "--lang", choices=LANGUAGE_CHOICES, help="subtitle language (default auto: told from the pixels)"
    )
    add_runner_arguments(parser)
    args = parser.parse_args(argv)
    if args.demo == bool(args.video):
        parser.error("give a VIDEO or --demo (not both)")
    video = args.video
    if args.demo:
        from samples.video import demo_script, make_subtitled_video

        video = str(
            make_subtitled_video(
                Path(args.output_dir) / "sample" / "demo.mp4",
                demo_script(),
                duration=10.0,
                logo=True,
                clock=True,
            )
        )
        print(f"generated sample video {video}")
    else:
        preflight_output_dir(args.output_dir)
        preflight_media(video, "video")
    api_ready()
    result = runner_from_arguments(extract_subtitles, args)(
        video, args.output_dir, args.sample_fps, tuple(args.band) if args.band else None, args.ocr_engine,
        lang=args.lang,
    )  # fmt: skip
    if args.demo:
        print(result.srt_path.read_text(encoding="utf-8"))
    print(result.srt_path)
    return exit_status(result.damage)  # 1 (partly done) with a warning when the input was damaged


if __name__ == "__main__":
    sys.exit(run_cli(main))
