"""Many images -> enhanced images (+ ZIP), each image isolated from the others.

python -m flows.enhance IMG... --output-dir DIR     # prints each output, then the ZIP path last
python -m flows.enhance --demo --output-dir DIR     # on generated faces plus one corrupt file
python -m flows.enhance --yardstick [PHOTO...]      # quality of every engine/model vs bicubic and Lanczos

Exit status: 0 all enhanced, 1 partially (the failures go to stderr), 2 none.

Batches of up to `batch_size` images run as child flows (one progress artifact each); inside a batch one
mapped task per image, at most `max_concurrency` at once. A bad image fails its own task with a clear reason;
the others go on. The run ends Completed when every image succeeded, otherwise Failed with the message
"partially completed: N of M ..." and a table artifact of successes and failures; the ZIP holds the successes.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from prefect import flow, unmapped
from prefect.artifacts import create_progress_artifact, create_table_artifact, update_progress_artifact
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.states import Completed, Failed, State

from blocks.enhance import EnhanceConfig
from blocks.loader import load_block
from blocks.runner import RunnerConfig
from core.cli import (
    EPILOG,
    CliParser,
    allowed_by,
    api_ready,
    positive,
    preflight_files,
    preflight_output_dir,
    run_cli,
)
from core.errors import ConfigError, OutputError, YiVideoError
from core.outputs import write_failure
from core.schema import EnhanceBatchResult, EnhancedImage, ImageFailure
from runtime.forms import choice, choices
from runtime.naming import artifact_key, run_named_after
from runtime.runner import StageRunner, add_runner_arguments, runner_from_arguments, runner_settings_from_env
from runtime.stage import Stages
from stages.enhance.batch import (
    batch_output_dir,
    discard_batch,
    failure_of,
    finish_batch,
    output_failure,
    plan_outputs,
)
from stages.enhance.engines import ENGINES, engine_class
from stages.enhance.engines.realesrgan import NCNN_MODELS
from stages.enhance.enhance import FACE_MODES, check_settings, enhance_image_task
from stages.enhance.settings import EnhanceSettings
from stages.enhance.yardstick import METHODS, QualityScore, format_table, score_photo_task, table_rows

# The Run form's dropdowns, from the registries (empty: the settings block's value)
EnhanceEngineName = choice(ENGINES)
EnhanceModelName = choice(NCNN_MODELS)
FaceModeName = choice(FACE_MODES)
YardstickMethods = choices(METHODS)


@flow(name="enhance-images", flow_run_name=run_named_after("enhance", "images"), task_runner=StageRunner())
def enhance_images(
    images: list[str],
    output_dir: str = "output",
    engine: EnhanceEngineName = None,
    scale: float | None = None,
    model: EnhanceModelName = None,
    faces: FaceModeName = None,
    settings_block: str | None = None,
    max_concurrency: int | None = None,
    batch_size: int | None = None,
) -> State:
    """Enhance `images` into `<output_dir>/enhance/batch-<hash>/` (+ enhanced.zip); bad images fail alone.

    The final state carries an EnhanceBatchResult. A batch with failed images ends Failed: a direct call
    raises EnhanceBatchFailed, which names them and is the partial result too (`.enhanced`, `.zip_path`);
    with `return_state=True`, `state.result(raise_on_failure=False)` returns it without raising.

    Args:
        images: paths of the image files (as the worker sees them)
        output_dir: folder under which `enhance/batch-<hash>/` is written
        engine: realesrgan-ncnn (learned, shipped), opencv-classic (no model) or gfpgan (faces, local
            weights); empty: the block's (realesrgan-ncnn)
        scale: output size / input size, 1 to 4 (default 2)
        model: realesrgan-ncnn network; empty: the block's, else chosen per image (waifu2x-photo for
            photographs, realesr-animevideov3 for drawn or animated pictures)
        faces: faithful (the block's default): faces found keep the input's colours and shapes under the
            network's texture; off: the network alone
        settings_block: name of a saved YiVideo Enhance Config block (defaults for everything here)
        max_concurrency: images processed at once (default 3)
        batch_size: images per child batch run, each with its own progress (default 20)
    """
    if not images:
        raise ConfigError("no images given")
    config = load_block(
        EnhanceConfig,
        settings_block,
        enhance__engine=engine,
        enhance__scale=scale,
        enhance__model=model,
        enhance__faces=faces,
        max_concurrency=max_concurrency,
        batch_size=batch_size,
    )
    settings = check_settings(config.engine_settings())
    images, output_dir = Stages.shared(images, output_dir)
    run_dir = batch_output_dir(output_dir, images, settings)
    plan = plan_outputs(images, run_dir)
    batches = [plan[i : i + config.batch_size] for i in range(0, len(plan), config.batch_size)]
    run_batch = enhance_batch.with_options(task_runner=_batch_runner(config.max_concurrency))
    outcomes: list[EnhancedImage | ImageFailure] = []
    for number, batch in enumerate(batches, start=1):
        state = run_batch(batch, settings, number, len(batches), return_state=True)
        done = state.result(raise_on_failure=False)
        if isinstance(done, BaseException):  # the batch run itself broke (not one of its images)
            raise done
        outcomes += done
        if output_failure(done):
            break
    try:
        if failed := output_failure(outcomes):
            raise OutputError(output_dir, failed.reason)
        result = finish_batch(run_dir, outcomes, settings)
    except OSError as exc:  # a full or read-only output disk: one clear error for the run, nothing kept
        discard_batch(run_dir, outcomes, output_dir)
        error = write_failure(output_dir, exc)
        if isinstance(error, OutputError):
            error = OutputError(output_dir, f"{error.cause}; {len(images)} images requested, none kept")
        raise error from exc
    _report(result)
    return final_state(result)


@flow(name="enhance-batch", flow_run_name="enhance batch {number}/{of}")
def enhance_batch(
    batch: list[tuple[Path, Path]], settings: EnhanceSettings, number: int = 1, of: int = 1
) -> list[EnhancedImage | ImageFailure] | State:
    """One mapped task per image; progress as each finishes; a failure becomes that image's row.

    A batch with a failed image ends Failed (red in the UI, not a green batch hiding it), its data still
    the list of every image's outcome, which the parent reads with `raise_on_failure=False`.
    """
    progress = create_progress_artifact(0.0, description=f"batch {number} of {of}: {len(batch)} images")
    futures = Stages().map(
        enhance_image_task,
        [src for src, _ in batch],
        [dest for _, dest in batch],
        unmapped(settings),
        gpu=engine_class(settings.engine).runs_on_gpu(),
        model=settings,
    )
    source_of = {future.task_run_id: src for future, (src, _) in zip(futures, batch, strict=True)}
    outcomes: dict[Path, EnhancedImage | ImageFailure] = {}
    for done, future in enumerate(as_completed(list(futures)), start=1):
        source = source_of[future.task_run_id]
        try:
            outcomes[source] = future.result()
        except Exception as exc:  # recorded as this image's failure; its task run is Failed with the cause
            outcomes[source] = failure_of(source, exc)
        failed = sum(isinstance(o, ImageFailure) for o in outcomes.values())
        update_progress_artifact(
            progress,
            100.0 * done / len(batch),
            description=f"batch {number} of {of}: {done} of {len(batch)} done, {failed} failed",
        )
    results = [outcomes[src] for src, _ in batch]
    failed = [o for o in results if isinstance(o, ImageFailure)]
    if failed:
        names = ", ".join(f.source.name for f in failed[:5]) + (" ..." if len(failed) > 5 else "")
        return Failed(message=f"{len(failed)} of {len(batch)} images failed: {names}", data=results)
    return results


class EnhanceBatchFailed(EnhanceBatchResult, YiVideoError):
    """A batch in which images failed: the one exception a direct `enhance_images(...)` call raises, naming
    them, and the partial result itself (`.enhanced`, `.failed`, `.zip_path`).

    Prefect turns a Failed state into an exception from its data, and only an exception will do: with a
    plain EnhanceBatchResult there, a direct call raised "TypeError: Unexpected result for failed state".
    """

    @classmethod
    def of(cls, result: EnhanceBatchResult) -> EnhanceBatchFailed:
        return cls(**{f.name: getattr(result, f.name) for f in fields(result)})

    def __str__(self) -> str:
        ok, total = len(self.enhanced), self.total
        reasons = "; ".join(f"{f.source.name}: {f.reason}" for f in self.failed[:5])
        more = f" (+{len(self.failed) - 5} more)" if len(self.failed) > 5 else ""
        head = f"partially completed: {ok} of {total} images enhanced"
        if not ok:
            head = f"failed: 0 of {total} images"
        return f"{head}; failed: {reasons}{more}"

    def __reduce__(self):  # picklable (results, process boundaries) by its fields, not Exception's args
        return type(self), tuple(getattr(self, f.name) for f in fields(self))


def final_state(result: EnhanceBatchResult) -> State:
    """Completed when every image succeeded; otherwise Failed, saying how many did and why the rest not."""
    if result.complete:
        return Completed(message=f"enhanced {len(result.enhanced)} of {result.total} images", data=result)
    failed = EnhanceBatchFailed.of(result)
    return Failed(message=str(failed), data=failed)


def _batch_runner(max_concurrency: int) -> StageRunner:
    """This run's runner with the pool capped at `max_concurrency` (on Ray, Ray's resources cap it)."""
    context = FlowRunContext.get()
    runner = context.task_runner if context else None
    active = getattr(runner, "active_settings", None)
    settings: RunnerConfig = active if active is not None else runner_settings_from_env()
    return StageRunner(settings.model_copy(update={"max_workers": max_concurrency}))


def _report(result: EnhanceBatchResult) -> None:
    rows = [
        {
            "image": item.source.name,
            "status": "enhanced",
            "output": item.output.name,
            "size": "{}x{} -> {}x{}".format(*item.input_size, *item.output_size),
            "model": item.model or item.engine,
            "faces": item.faces if item.faces is not None else "",
            "seconds": item.seconds,
        }
        for item in result.enhanced
    ] + [
        {
            "image": f.source.name,
            "status": "failed",
            "output": f"{f.error}: {f.reason}",
            "size": "",
            "model": "",
            "faces": "",
            "seconds": "",
        }
        for f in result.failed
    ]
    create_table_artifact(
        key=artifact_key("enhance", result.run_dir.name),
        table=rows,
        description=f"{len(result.enhanced)} of {result.total} images enhanced into {result.run_dir}",
    )


@flow(name="enhance-yardstick", flow_run_name=run_named_after("yardstick", "photos"))
def enhance_yardstick(
    photos: list[str] | None = None,
    output_dir: str = "output",
    methods: YardstickMethods = None,
    scale: int = 4,
) -> list[QualityScore]:
    """Shrink real photos `scale` times, enhance them back with every method and compare with the originals
    (PSNR, SSIM, NIQE); a table artifact and side-by-side pictures under `<output_dir>/yardstick/`.

    Args:
        photos: paths of real photographs (as the worker sees them); empty: the photos scikit-image ships
        output_dir: folder under which `yardstick/` (photos, pictures) is written
        methods: what to compare (baselines, engines and models); empty: all of them
        scale: how many times each photo is shrunk and enhanced back (2 to 4)
    """
    root = Path(output_dir) / "yardstick"
    if not photos:
        from samples.images import write_real_photos

        photos = [str(p) for p in write_real_photos(root / "photos")]
    scores: list[QualityScore] = []
    for photo in photos:
        scores += score_photo_task(photo, list(methods or METHODS), scale, root / "pictures")[0]
    create_table_artifact(
        key="enhance-yardstick",
        table=table_rows(scores),
        description=f"x{scale} from area downscales of {len(photos)} photos; PSNR, SSIM vs the original "
        "(higher is closer), NIQE without reference (lower is more natural); pictures in "
        f"{root / 'pictures'}",
    )
    return scores


def _yardstick_main(args: argparse.Namespace) -> int:
    preflight_output_dir(args.output_dir)
    preflight_files(args.images)
    scale = int(args.scale or 4)
    scores = enhance_yardstick(args.images or None, args.output_dir, scale=scale)
    print(format_table(scores))
    for picture in sorted((Path(args.output_dir) / "yardstick" / "pictures").glob("*.jpg")):
        print(picture)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = CliParser(description="Enhance images (super-resolution / face restoration).", epilog=EPILOG)
    parser.add_argument("images", nargs="*", help="image files (omit with --demo)")
    parser.add_argument("--output-dir", default="output")
    parser.add_argument("--demo", action="store_true", help="generate sample faces plus one corrupt file")
    parser.add_argument("--engine", default=None, choices=list(ENGINES))
    parser.add_argument(
        "--scale", type=allowed_by(EnhanceSettings, "scale"), help="1 to 4 (default 2; --yardstick: 4)"
    )
    parser.add_argument(
        "--model",
        default=None,
        choices=["auto", *NCNN_MODELS],
        help="realesrgan-ncnn network (default auto: the photo model for photographs, the anime model for "
        "drawn/animated pictures)",
    )
    parser.add_argument("--faces", default=None, choices=FACE_MODES, help="default faithful")
    parser.add_argument(
        "--yardstick",
        action="store_true",
        help="measure every engine/model against bicubic and Lanczos on IMAGES (default: scikit-image's "
        "photos): PSNR, SSIM, NIQE, side-by-side pictures",
    )
    parser.add_argument("--settings-block", default=None, help="name of a saved YiVideo Enhance Config block")
    parser.add_argument("--max-concurrency", type=positive(int), default=None)
    parser.add_argument("--batch-size", type=positive(int), default=None)
    add_runner_arguments(parser)
    args = parser.parse_args(argv)
    if args.yardstick:
        return _yardstick_main(args)
    if args.demo == bool(args.images):
        parser.error("give IMAGES or --demo (not both)")
    images = list(args.images)
    preflight_output_dir(args.output_dir)
    preflight_files(images)
    if args.demo:
        from samples.images import make_corrupt_image, make_face_set

        sample = Path(args.output_dir) / "sample"
        images = [str(p) for p in make_face_set(sample, 4)] + [str(make_corrupt_image(sample / "broken.jpg"))]
        print(f"generated {len(images)} sample images in {sample} (broken.jpg is corrupt on purpose)")
    api_ready()
    state = runner_from_arguments(enhance_images, args)(
        images,
        args.output_dir,
        engine=args.engine,
        scale=args.scale,
        model=None if args.model == "auto" else args.model,
        faces=args.faces,
        settings_block=args.settings_block,
        max_concurrency=args.max_concurrency,
        batch_size=args.batch_size,
        return_state=True,
    )
    result = state.result(raise_on_failure=False)
    if isinstance(result, BaseException) and not isinstance(result, EnhanceBatchResult):
        raise result  # the run itself failed (settings, the output disk): one line
    if not isinstance(result, EnhanceBatchResult):
        print(f"error: {state.message}", file=sys.stderr)
        return 2
    for failure in result.failed:
        print(f"failed: {failure.source}: {failure.error}: {failure.reason}", file=sys.stderr)
    print(state.message, file=sys.stderr)
    for item in result.enhanced:
        print(item.output)
    if result.zip_path:
        print(result.zip_path)
    if result.complete or (args.demo and result.enhanced):  # the demo's corrupt file fails on purpose
        return 0
    return 1 if result.enhanced else 2


if __name__ == "__main__":
    sys.exit(run_cli(main))
