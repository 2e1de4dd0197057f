"""Burned-in subtitles to SRT/JSON/TXT: keyframes, band, crop, stitch, OCR, postprocess.

python -m flows.subtitles VIDEO --output-dir DIR      # prints the SRT path last
python -m flows.subtitles --demo --output-dir DIR     # on a generated sample video
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Literal

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.states import Completed

from blocks.loader import load_block
from blocks.subtitles import SubtitleConfig
from core.caching import open_work_dir
from core.cli import EPILOG, positive, preflight_media, preflight_output_dir, run_cli
from core.errors import ConfigError
from core.media import probe_task
from core.outputs import discard_if_empty, run_output_dir, safe_stem, write_manifest
from core.schema import SubtitleEvent, SubtitleResult
from runtime.naming import artifact_key, run_named_after, stage_timing_table
from runtime.runner import StageRunner, add_runner_arguments, run_stage, runner_from_arguments
from stages.subtitles.area import describe_band, subtitle_area_task
from stages.subtitles.crop import crop_task
from stages.subtitles.keyframes import keyframes_task, video_windows
from stages.subtitles.ocr import ocr_task
from stages.subtitles.postprocess import postprocess_task, write_subtitle_files
from stages.subtitles.stitch import stitch_task


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
    ocr = settings.ocr
    timings: dict[str, float] = {}
    clock = _StageClock(timings)

    info = clock("probe", probe_task, video, "video")
    run_dir = run_output_dir(output_dir, "subtitles", info.path)
    work = open_work_dir(run_dir / ".work")  # a crashed run's .work (and its token) lets a re-run resume
    try:
        area = clock("subtitle_area", subtitle_area_task, info, ocr, settings.area, settings.band)
        texts = []
        for window in video_windows(info.duration, settings.keyframes.window_seconds):  # bounded temp disk
            part = work / f"{window[0]:08.1f}"
            keyframes = clock("keyframes", keyframes_task, info, area, part, settings.keyframes, window)
            crops = clock("crop", crop_task, keyframes, part)
            batches = clock("stitch", stitch_task, crops, part)
            texts += clock("ocr", ocr_task, batches, crops, ocr)
            shutil.rmtree(part, ignore_errors=True)
        events = clock("postprocess", postprocess_task, texts, settings.postprocess)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        discard_if_empty(run_dir, output_dir)  # a failed run leaves no empty folder behind
        raise
    shutil.rmtree(work, ignore_errors=True)
    stem = safe_stem(info.path)
    files = write_subtitle_files(
        events, run_dir, stem, video=info.path, band=area, sample_fps=settings.sample_fps
    )
    write_manifest(
        run_dir,
        flow="subtitles",
        input_path=info.path,
        outputs=files,
        extra={"events": len(events), "band": area, "stage_seconds": timings},
    )
    _report(info.path.name, describe_band(area, info), events, files["srt"])
    stage_timing_table("subtitles", info.path, timings)
    result = SubtitleResult(
        info.path, tuple(events), area, files["srt"], files["json"], files["txt"], timings
    )
    if not events:  # the run says so, not only an empty file: "Completed" alone hid aliasing misses
        return Completed(message=f"no subtitles found: {describe_band(area, info)}", data=result)
    return result


class _StageClock:
    """Runs a stage through the flow's task runner and records its wall time (bench and manifest show it)."""

    def __init__(self, timings: dict[str, float]) -> None:
        self.timings = timings

    def __call__(self, name, task_fn, *args):
        started = time.perf_counter()
        result = run_stage(task_fn, *args)
        self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - started, 3)
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
