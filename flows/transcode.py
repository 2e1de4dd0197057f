"""Renditions of a video from named presets (MP4s, a muted preview, a JPG thumbnail), each one checked.

python -m flows.transcode VIDEO --preset mp4_standard --preset thumbnail --output-dir DIR   # paths last
python -m flows.transcode --list                                                          # the presets

One task per preset, all submitted at once; each runs ffmpeg (NVENC where it works, else libx264/libx265),
probes its output and only then publishes it. A non-video input (audio, image, text: by probing) is skipped
with the reason logged and an empty result; a corrupt video fails with ffmpeg's or the check's words.
"""

from __future__ import annotations

import mimetypes
import sys
from pathlib import Path

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture

from blocks.presets import SEED_PRESETS, load_presets
from core.cli import EPILOG, CliParser, api_ready, positive, preflight_output_dir, run_cli
from core.damage import decode_check_task, exit_status, report_damage
from core.errors import MediaInputError, PartlyDone
from core.media import check_input_file, probe_media
from core.outputs import discard_if_empty, run_output_dir, safe_stem, write_manifest
from core.schema import MediaInfo, Rendition, TranscodeResult
from runtime.forms import choices
from runtime.naming import artifact_key, run_named_after
from runtime.runner import StageRunner, add_runner_arguments, runner_from_arguments
from runtime.stage import Stages
from stages.transcode.command import timeout_from_environment
from stages.transcode.presets import TranscodePreset, resolve_presets
from stages.transcode.transcode import transcode_task

FLOW = "transcode"
# The Run form offers the shipped presets as a multi-select (a typo cannot be submitted); Python callers may
# still name presets of a saved block or `custom_presets`, which are checked when the run starts.
PresetNames = choices(SEED_PRESETS)


def video_or_skip_reason(video: str | Path) -> tuple[MediaInfo | None, str | None]:
    """(info, None) for a video; (None, reason) for audio, images and files that are not media at all.

    A file that ffprobe cannot read is skipped only when its name says it is not media (notes.txt); one
    named like media (clip.mp4) or not named at all is corrupt, and fails with ffprobe's reason.
    """
    path = check_input_file(video)
    try:
        info = probe_media(path)
    except MediaInputError as exc:
        mime = mimetypes.guess_type(path.name)[0]
        if mime and not mime.startswith(("video/", "audio/", "image/")):
            return None, f"not a media file ({mime}; {exc.cause})"
        raise
    if info.kind != "video":
        return None, f"is {info.kind}, not video"
    return info, None


@task(name="check-video", task_run_name="check the input", cache_policy=NONE)
def check_video_task(video: str) -> tuple[MediaInfo | None, str | None]:
    """Probe before anything is written: a skipped or corrupt input leaves no output folder behind."""
    return video_or_skip_reason(video)


@flow(name="transcode", flow_run_name=run_named_after("transcode", "video"), task_runner=StageRunner())
def transcode(
    video: str,
    presets: PresetNames = None,
    output_dir: str = "output",
    presets_block: str | None = None,
    custom_presets: dict[str, TranscodePreset] | None = None,
    timeout_seconds: float | None = None,
) -> TranscodeResult:
    """Render `video` with each preset into `<output_dir>/transcode/<stem>-<hash>/<stem>.<preset>.<ext>`.

    Args:
        video: path of the video file (as the worker sees it)
        presets: renditions to make (the Run form lists the shipped presets); empty: the block's defaults
        output_dir: folder under which `transcode/<stem>-<hash>/` is written
        presets_block: name of a saved YiVideo Transcode Presets block (adds or replaces presets)
        custom_presets: presets given in full, by name (code; they replace shipped ones of the same name)
        timeout_seconds: ffmpeg time limit per preset (default: $YIVIDEO_TRANSCODE_TIMEOUT_S, else 120 s +
            20 s per second of video)
    """
    timeout_seconds = timeout_seconds or timeout_from_environment()  # checked here, not in each stage
    library = load_presets(presets_block)
    chosen = resolve_presets(presets or library.default_presets, library.known(custom_presets))
    stages = Stages()
    (video,), output_dir = stages.shared([video], output_dir)
    info, skipped = stages.run(check_video_task, video)
    if info is None:
        get_run_logger().warning("skipped %s: %s", video, skipped)
        return TranscodeResult(Path(video), skipped=skipped)
    damage = stages.run(decode_check_task, info)  # a corrupt middle decodes "fine" as frozen frames
    report_damage(damage, FLOW)
    run_dir = run_output_dir(output_dir, FLOW, info.path)
    stem = safe_stem(info.path)
    # ffmpeg's own time limit (timeout_seconds) wins over a shorter policy timeout; only video presets may
    # encode on a GPU (NVENC), so only they ask Ray for one
    futures = {
        name: stages.submit(
            transcode_task, info.path, name, preset, run_dir, stem, timeout_seconds,
            min_timeout=timeout_seconds or 0.0, gpu=preset.kind == "video",
        )
        for name, preset in chosen.items()
    }  # fmt: skip
    renditions, failures = _gather(futures)
    if failures and not renditions:
        discard_if_empty(run_dir, output_dir)  # nothing was published: leave no empty folder behind
        raise next(iter(failures.values()))
    manifest = write_manifest(
        run_dir,
        flow=FLOW,
        input_path=info.path,
        outputs={r.preset: r.path for r in renditions},
        extra={
            "renditions": renditions,
            "presets": {name: p.model_dump() for name, p in chosen.items()},
            "failed": {name: str(exc) for name, exc in failures.items()},
            "decode_errors": damage,
        },
    )
    if failures:  # the finished renditions stay, listed in the manifest; the run still fails
        (name, first), *_ = failures.items()
        kept = ", ".join(str(r.path) for r in renditions)
        summary = f"{len(failures)} of {len(chosen)} presets failed ({name}: {first})"
        raise PartlyDone(FLOW, info.path, f"{summary}; kept: {kept}; manifest {manifest}")
    _report(info, renditions)
    damaged = damage if damage.damaged else None
    return TranscodeResult(info.path, tuple(renditions), run_dir, manifest, damage=damaged)


def _gather(futures: dict[str, PrefectFuture]) -> tuple[list[Rendition], dict[str, Exception]]:
    """Every preset's rendition once all have finished, and each failed preset's error (each logged)."""
    renditions: list[Rendition] = []
    failures: dict[str, Exception] = {}
    for name, future in futures.items():
        try:
            renditions.append(future.result())
        except Exception as exc:
            get_run_logger().error("preset %s failed: %s", name, exc)
            failures[name] = exc
    return renditions, failures


def _report(info: MediaInfo, renditions: list[Rendition]) -> None:
    create_table_artifact(
        key=artifact_key("transcode", info.path),
        table=[
            {
                "file": r.path.name,
                "preset": r.preset,
                "encoder": r.encoder,
                "size": f"{r.width}x{r.height}",
                "audio": "yes" if r.has_audio else "no",
                "seconds of video": r.duration,
                "kB": round(r.size_bytes / 1024, 1),
                "took (s)": r.seconds,
                "folder": str(r.path.parent),
            }
            for r in renditions
        ],
        description=f"renditions of {info.path.name} ({info.width}x{info.height}, {info.duration:.2f} s)",
    )


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description="Transcode a video into renditions from named presets.", epilog=EPILOG)
    parser.add_argument("video", nargs="?", help="video file")
    parser.add_argument(
        "--preset",
        dest="presets",
        action="append",
        metavar="NAME",
        help="a preset to render (repeat for several; default: the block's default_presets)",
    )
    parser.add_argument("--output-dir", default="output")
    parser.add_argument(
        "--presets-block", default=None, help="name of a saved YiVideo Transcode Presets block"
    )
    parser.add_argument("--timeout", type=positive(), default=None, help="ffmpeg time limit per preset (s)")
    parser.add_argument("--list", action="store_true", help="list the known presets and exit")
    add_runner_arguments(parser)
    args = parser.parse_args(argv)
    if args.list:
        library = load_presets(args.presets_block)
        for name, preset in library.known().items():
            print(f"{name:22} {preset.description}")
        return 0
    if not args.video:
        parser.error("give a VIDEO (or --list)")
    preflight_output_dir(args.output_dir)
    if (skipped := video_or_skip_reason(args.video)[1]) is not None:  # the CLI asked for this file: an error
        raise MediaInputError(args.video, skipped)
    api_ready()
    result = runner_from_arguments(transcode, args)(
        args.video, args.presets, args.output_dir, args.presets_block, None, args.timeout
    )
    if result.skipped:
        print(f"skipped {args.video}: {result.skipped}", file=sys.stderr)
        return 0
    for rendition in result.renditions:
        print(rendition.path)
    print(result.manifest_path)
    return exit_status(result.damage)  # 1 (partly done) with a warning when the input was damaged


if __name__ == "__main__":
    sys.exit(run_cli(main))
