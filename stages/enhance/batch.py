"""A batch of images: where outputs go (content-addressed folder, unique names), failures as rows, the ZIP and
the manifest."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from core.errors import OutputError
from core.outputs import atomic_path, discard_if_empty, file_digest, safe_stem, write_json_atomic
from core.schema import EnhanceBatchResult, EnhancedImage, ImageFailure
from stages.enhance.imaging import output_suffix
from stages.enhance.settings import EnhanceSettings


def batch_output_dir(output_root: str | Path, images: list[str | Path], settings: EnhanceSettings) -> Path:
    """`<root>/enhance/batch-<hash8>/`: the hash covers every input's content and the settings, so the same
    batch lands in the same folder and a different one never mixes with it. Unreadable inputs still count."""
    import hashlib

    h = hashlib.sha256(repr(sorted(asdict(settings).items())).encode())
    for image in images:
        path = Path(image)
        try:
            h.update(f"{path.resolve()}:{file_digest(path)}\n".encode())
        except OSError:
            h.update(f"{path}:unreadable\n".encode())
    out = Path(output_root) / "enhance" / f"batch-{h.hexdigest()[:8]}"
    out.mkdir(parents=True, exist_ok=True)
    return out


def plan_outputs(images: list[str | Path], run_dir: Path) -> list[tuple[Path, Path]]:
    """(source, destination) per image, in input order; names stay unique when two inputs share a stem."""
    taken: set[str] = set()
    plan = []
    for image in images:
        stem, suffix = safe_stem(image), output_suffix(image)
        name, n = f"{stem}{suffix}", 1
        while name.lower() in taken or name == "manifest.json":
            n += 1
            name = f"{stem}-{n}{suffix}"
        taken.add(name.lower())
        plan.append((Path(image), run_dir / name))
    return plan


def failure_of(source: Path, exc: BaseException) -> ImageFailure:
    """An image's failure as the batch reports it: the error class and its cause (the path is the row)."""
    return ImageFailure(source=Path(source), error=type(exc).__name__, reason=str(getattr(exc, "cause", exc)))


def output_failure(outcomes: list[EnhancedImage | ImageFailure]) -> ImageFailure | None:
    """The first image that failed because the output disk did (full, read-only): not that image's fault,
    and every image after it would fail the same way, so the whole run stops on it."""
    failed = (o for o in outcomes if isinstance(o, ImageFailure))
    return next((o for o in failed if o.error == OutputError.__name__), None)


def discard_batch(
    run_dir: Path, outcomes: list[EnhancedImage | ImageFailure], output_root: str | Path
) -> None:
    """After the output disk failed: remove what this run published, so a full disk leaves no partial batch
    (and gets its space back); the folder goes too when nothing else is in it."""
    for item in outcomes:
        if isinstance(item, EnhancedImage):
            item.output.unlink(missing_ok=True)
    for name in ("enhanced.zip", "manifest.json"):
        (run_dir / name).unlink(missing_ok=True)
    discard_if_empty(run_dir, output_root)


def finish_batch(
    run_dir: Path, outcomes: list[EnhancedImage | ImageFailure], settings: EnhanceSettings
) -> EnhanceBatchResult:
    """Write the ZIP of every enhanced image (atomically, once all are done) and the manifest."""
    import zipfile

    enhanced = tuple(o for o in outcomes if isinstance(o, EnhancedImage))
    failed = tuple(o for o in outcomes if isinstance(o, ImageFailure))
    zip_path = None
    if enhanced:
        zip_path = run_dir / "enhanced.zip"
        with atomic_path(zip_path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
            for item in enhanced:  # images are compressed already: store them
                archive.write(item.output, arcname=item.output.name)
    manifest = write_json_atomic(
        run_dir / "manifest.json",
        {
            "flow": "enhance",
            "settings": settings,
            "enhanced": enhanced,
            "failed": failed,
            "zip": zip_path,
            "summary": f"{len(enhanced)} of {len(outcomes)} images enhanced",
        },
    )
    return EnhanceBatchResult(run_dir, enhanced, failed, zip_path, manifest)
