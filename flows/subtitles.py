"""Burned-in subtitles to SRT/JSON/TXT: keyframes, band, crop, stitch, OCR, postprocess.

python -m flows.subtitles VIDEO --output-dir DIR      # prints the SRT path last
python -m flows.subtitles --demo --output-dir DIR     # on a generated sample video
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from prefect import flow, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from blocks.loader import load_block
from blocks.subtitles import SubtitleConfig
from core.caching import open_work_dir
from core.cli import EPILOG, positive, preflight_media, preflight_output_dir, run_cli
from core.errors import ConfigError
from core.media import probe_task
from core.outputs import discard_if_empty, run_output_dir, safe_stem, write_manifest
from core.progress import StageProgress
from core.schema import (
    Band,
    FrameText,
    KeyframeSet,
    MediaInfo,
    StitchedBatch,
    SubtitleEvent,
    SubtitleResult,
    TranscriptResult,
)
from runtime.naming import artifact_key, run_named_after, stage_timing_table
from runtime.runner import StageRunner, add_runner_arguments, runner_from_arguments
from runtime.stage import Stages
from stages.subtitles.area import describe_band, subtitle_area_task
from stages.subtitles.crop import crop_task
from stages.subtitles.keyframes import keyframes_task, video_windows
from stages.subtitles.ocr import OcrSettings, batch_keyframes, ocr_task
from stages.subtitles.postprocess import postprocess_task, write_subtitle_files
from stages.subtitles.stitch import stitch_task


@dataclass
class ChainState:
    """What the steps of one chain have produced so far on one video (the pipeline adds its own steps)."""

    info: MediaInfo
    run_dir: Path
    work_dir: Path
    settings: SubtitleConfig
    stages: Stages
    output_root: Path = Path("output")
    window: tuple[float, float] | None = None  # the part of the video keyframes are taken from (None: all)
    band: Band | None = None
    keyframes: KeyframeSet | None = None
    crops: KeyframeSet | None = None
    batches: list[StitchedBatch] | None = None
    texts: list[FrameText] | None = None
    events: list[SubtitleEvent] | None = None
    speech: TranscriptResult | None = None  # the pipeline's transcribe and diarize steps
    subtitle_files: dict[str, Path] = field(default_factory=dict)
    outputs: dict[str, Path] = field(default_factory=dict)

    @property
    def ocr(self) -> OcrSettings:
        return self.settings.ocr


@dataclass(frozen=True)
class Step:
    """A named step of a chain: the steps it reads from, and what runs (returns a one-line summary)."""

    name: str
    needs: tuple[str, ...]
    run: Callable[[ChainState], str]
    about: str


# ---------------------------------------------------------------- the subtitle chain, composed once
def _subtitle_area(s: ChainState) -> str:
    s.band = s.stages.run(subtitle_area_task, s.info, s.ocr, s.settings.area, s.settings.band, model=s.ocr)
    return describe_band(s.band, s.info)


def _keyframes(s: ChainState) -> str:
    args = (s.info, s.band, s.work_dir, s.settings.keyframes) + ((s.window,) if s.window else ())
    s.keyframes = s.stages.run(keyframes_task, *args)
    return f"{len(s.keyframes.frames)} keyframes with text from {s.keyframes.samples_decoded} samples"


def _crop(s: ChainState) -> str:
    s.crops = s.stages.run(crop_task, s.keyframes, s.work_dir)
    return f"{len(s.crops.frames)} band crops"


def _stitch(s: ChainState) -> str:
    s.batches = s.stages.run(stitch_task, s.crops, s.work_dir)
    return f"{len(s.batches)} stitched OCR batches"


def _ocr(s: ChainState) -> str:
    total = len(s.batches)  # one task run per batch (`ocr batch 2/5`), each resumable on its own
    parts = [batch_keyframes(s.crops, batch) for batch in s.batches]
    numbers = list(range(1, total + 1))
    frames, read = sum(len(part.frames) for part in parts), [0]
    window = f" {s.window[0]:.0f}-{s.window[1]:.0f} s" if s.window else ""
    progress = StageProgress(f"OCR of {s.info.path.name}{window}", items=frames, unit="keyframes")

    def advance(texts: list[FrameText]) -> None:
        read[0] += len(texts)
        progress(read[0] / max(1, frames))

    per_batch = s.stages.run_each(
        ocr_task, s.batches, parts, unmapped(s.ocr), numbers, unmapped(total), model=s.ocr, on_each=advance
    )
    progress.done()
    s.texts = [text for texts in per_batch for text in texts]
    return f"{sum(1 for t in s.texts if t.lines)} of {len(s.texts)} keyframes read"


def _postprocess(s: ChainState) -> str:
    s.events = s.stages.run(postprocess_task, s.texts, s.settings.postprocess)
    s.subtitle_files = write_subtitle_files(
        s.events, s.run_dir, safe_stem(s.info.path), video=s.info.path, band=s.band,
        sample_fps=s.settings.sample_fps,
    )  # fmt: skip
    s.outputs.update({f"subtitles_{kind}": path for kind, path in s.subtitle_files.items()})
    first = s.events[0].text.replace("\n", " / ") if s.events else "(none)"
    return f"{len(s.events)} subtitle events; first: {first}"


SUBTITLE_STEPS: dict[str, Step] = {
    step.name: step
    for step in (
        Step("subtitle_area", (), _subtitle_area, "find the subtitle band (OCR text detection)"),
        Step("keyframes", ("subtitle_area",), _keyframes, "sample the band, keep frames where it changed"),
        Step("crop", ("keyframes",), _crop, "crop keyframes to the text, static overlays masked"),
        Step("stitch", ("crop",), _stitch, "stack crops into batches so OCR runs once per batch"),
        Step("ocr", ("stitch",), _ocr, "read each batch with PP-OCR, map lines back to keyframes"),
        Step("postprocess", ("ocr",), _postprocess, "merge readings into timed events; write SRT/JSON/TXT"),
    )
}
WINDOWED = ("keyframes", "crop", "stitch", "ocr")  # run per window of the video: temp disk stays bounded


def read_windows(s: ChainState) -> None:
    """The windowed steps over every window of the video, each window's images deleted after its OCR."""
    work, texts = s.work_dir, []
    for window in video_windows(s.info.duration, s.settings.keyframes.window_seconds):
        s.window, s.work_dir = window, work / f"{window[0]:08.1f}"
        for name in WINDOWED:
            SUBTITLE_STEPS[name].run(s)
        texts += s.texts or []
        shutil.rmtree(s.work_dir, ignore_errors=True)
    s.work_dir, s.window, s.texts = work, None, texts


@flow(
    name="extract-subtitles", flow_run_name=run_named_after("subtitles", "video"), task_runner=StageRunner()
)
def extract_subtitles(
    video: str,
    output_dir: str = "output",
    sample_fps: float | None = None,
    band: tuple[float, float, float, float] | None = None,
    ocr_engine: Literal["rapidocr", "paddleocr"] | None = None,
    settings_block: str | None = None,
) -> SubtitleResult:
    """Read the burned-in subtitles of `video` into `<output_dir>/subtitles/<stem>-<hash>/<stem>.srt`.

    Args:
        video: path of the video file (as the worker sees it)
        output_dir: folder under which `subtitles/<stem>-<hash>/` is written
        sample_fps: frames per second sampled for subtitle changes (default 10; more finds shorter lines)
        band: subtitle band as fractions of the frame [x0, y0, x1, y1]; empty: detected
        ocr_engine: rapidocr (PP-OCRv4 ONNX, offline) or paddleocr (installed, local model folders)
        settings_block: name of a saved YiVideo Subtitle Settings block (defaults for everything above)
    """
    settings = load_block(
        SubtitleConfig, settings_block, keyframes__sample_fps=sample_fps, band=band, ocr__engine=ocr_engine
    )
    if not settings.sample_fps > 0:
        raise ConfigError(f"sample_fps must be above 0 (got {settings.sample_fps})")
    stages = Stages()
    (video,), output_dir = stages.shared([video], output_dir)
    info = stages.run(probe_task, video, "video")
    run_dir = run_output_dir(output_dir, "subtitles", info.path)
    work = open_work_dir(run_dir / ".work")  # a crashed run's .work (and its token) lets a re-run resume
    state = ChainState(info, run_dir, work, settings, stages, Path(output_dir))
    try:
        SUBTITLE_STEPS["subtitle_area"].run(state)
        read_windows(state)
        SUBTITLE_STEPS["postprocess"].run(state)
    except BaseException:
        shutil.rmtree(state.work_dir, ignore_errors=True)
        discard_if_empty(run_dir, output_dir)  # a failed run leaves no empty folder behind
        raise
    shutil.rmtree(state.work_dir, ignore_errors=True)
    files, events, area = state.subtitle_files, state.events or [], state.band
    write_manifest(
        run_dir,
        flow="subtitles",
        input_path=info.path,
        outputs=files,
        extra={"events": len(events), "band": area, "stage_seconds": stages.timings},
    )
    _report(info.path.name, describe_band(area, info), events, files["srt"])
    stage_timing_table("subtitles", info.path, stages.timings)
    result = SubtitleResult(
        info.path, tuple(events), area, files["srt"], files["json"], files["txt"], stages.timings
    )
    if not events:  # the run says so, not only an empty file: "Completed" alone hid aliasing misses
        return Completed(message=f"no subtitles found: {describe_band(area, info)}", data=result)
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
    parser = argparse.ArgumentParser(
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
    result = runner_from_arguments(extract_subtitles, args)(
        video, args.output_dir, args.sample_fps, tuple(args.band) if args.band else None, args.ocr_engine
    )
    if args.demo:
        print(result.srt_path.read_text(encoding="utf-8"))
    print(result.srt_path)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
