"""The language stage: the subtitle language of a video told once, from its first stitched batches
(script.py's choice), before any line is read; a script no installed model reads stops the run here."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
from prefect import get_run_logger, task

from core.caching import resumable
from core.models import on_model_thread, release_freed_memory
from core.schema import StitchedBatch
from gpu.devices import GPU_CAPABLE_TAG
from stages.subtitles.languages import AUTO, language
from stages.subtitles.ocr import OcrSettings, load_ocr_engine
from stages.subtitles.script import (
    FIRST_BATCHES,
    MAX_ROWS,
    MIN_ROWS,
    TRIES,
    ScriptChoice,
    choose_language,
    subtitle_rows,
)


def resolve_language(batches: list[StitchedBatch], settings: OcrSettings, video: str | Path) -> ScriptChoice:
    """The choice for a video from its first stitched batches; a given language (not auto) is kept."""
    import cv2

    if settings.lang != AUTO:
        spec = language(settings.lang)
        return ScriptChoice(spec.code, spec.script, True, f"subtitles in {spec.name} (given)")

    def images(some: list[StitchedBatch]) -> list[np.ndarray]:
        read = [cv2.imread(str(b.image_path), cv2.IMREAD_COLOR) for b in some]
        return [image for image in read if image is not None]

    def rows_from(start: int) -> tuple[list[np.ndarray], int]:
        """Rows of FIRST_BATCHES batches from `start`, and of the next ones while too few to judge a script
        from; the index after the last batch taken."""
        end = start + FIRST_BATCHES
        rows = subtitle_rows(images(batches[start:end]), settings)
        while len(rows) < MIN_ROWS and end < len(batches):
            rows += subtitle_rows(images([batches[end]]), settings, limit=MAX_ROWS - len(rows))
            end += 1
        return rows, end

    rows, end = rows_from(0)
    choice = choose_language(rows, settings)
    for _ in range(TRIES - 1):  # in doubt (rows nothing reads): the window's next batches, if it has some
        if not choice.doubt or end >= len(batches):
            break
        rows, end = rows_from(end)
        if rows:
            choice = choose_language(rows, settings)
    return choice


@task(
    name="subtitle-language",
    task_run_name="tell the subtitle language",
    **resumable(),  # the probe model costs seconds: a re-run after OCR was stopped does not pay it again
    tags=[GPU_CAPABLE_TAG],
)
def language_task(batches: list[StitchedBatch], settings: OcrSettings, video: str) -> OcrSettings:
    """The OCR settings with the language the subtitles are in (once per video); an unreadable script
    fails the run here, before any OCR, with one line naming the script and what to install."""
    from gpu.slot import gpu_slot

    with gpu_slot("ocr") as grant:  # the probe (PP-OCRv6) stays resident: the next video is probed too
        settings = replace(settings, device=grant.device)
        engine = load_ocr_engine(replace(settings, lang=AUTO))  # the engine subtitle_rows detects with
        choice = on_model_thread(engine, resolve_language, batches, settings, video)
    release_freed_memory()  # once a video: the probe's tensors, where another engine reads the language
    if not choice.supported:
        raise choice.refuse(video)
    logger = get_run_logger()
    (logger.warning if choice.doubt else logger.info)("%s", choice.reason)
    return replace(settings, lang=choice.lang)
