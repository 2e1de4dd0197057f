"""What a page may ask of each file: the jobs its kind takes, the engines that can run here, values in range.

Checked twice, one row (one file and its jobs) at a time: before the upload, on the kind the file's name
says, and at the start, on the kind the probe found. A row that cannot run is refused in plain words and
the other rows go on. The page builds its form from `options()`, so it offers nothing this check refuses.
"""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from stages.subtitles.languages import AUTO
from stages.subtitles.languages import LANGUAGES as SUBTITLE_LANGUAGES

if TYPE_CHECKING:
    from stages.enhance.settings import EnhanceSettings

JOBS: dict[str, tuple[str, set[str], str]] = {  # job -> (label, kinds it takes, what it makes)
    "subtitles": ("burned-in subtitles", {"video"}, "reads the text burned into the picture: SRT, TXT, JSON"),
    "transcode": ("renditions", {"video"}, "the ticked renditions (MP4s, a thumbnail)"),
    "transcribe": ("transcript of the speech", {"video", "audio"}, "Whisper: SRT, VTT, JSON (+ speakers)"),
    "fuse": (
        "subtitles + speech fused",
        {"video"},
        "the burned-in text checked against the speech: one SRT, VTT, JSON and what they disagree on",
    ),
    "enhance": ("enhance photo", {"image"}, "a sharper, larger photo and a ZIP of the batch"),
}
AUTOMATIC = {"video": ["subtitles", "transcode"], "audio": ["transcribe"], "image": ["enhance"]}
KIND_WORDS = {"video": "a video", "audio": "an audio file", "image": "a photo"}
ENGINES = {
    "realesrgan-ncnn": "learned super-resolution (Real-ESRGAN, shipped)",
    "opencv-classic": "no model: denoise, Lanczos upscale, sharpen (fast)",
    "gfpgan": "face restoration (GFPGAN, local weights)",
}
SCALE = {"min": 1.0, "max": 4.0, "step": 0.5, "default": 2.0}
SPEAKERS = {"min": 1, "max": 20}
LANGUAGES = {  # Whisper's codes; empty: detected
    "zh": "Chinese", "en": "English", "ja": "Japanese", "ko": "Korean", "yue": "Cantonese",
    "de": "German", "fr": "French", "es": "Spanish", "it": "Italian", "pt": "Portuguese", "ru": "Russian",
    "ar": "Arabic", "hi": "Hindi", "vi": "Vietnamese", "th": "Thai", "id": "Indonesian", "tr": "Turkish",
    "nl": "Dutch", "pl": "Polish", "uk": "Ukrainian",
}  # fmt: skip


class JobChoice(BaseModel):
    """One job for one file, as the page sends it (a file with three jobs sends three of these)."""

    upload: str = Field("", description="the upload's id (empty before the upload)")
    name: str = Field("", description="the file's name (before the upload: its kind is guessed from it)")
    size: int | None = Field(None, description="the file's size in bytes (before the upload)")
    job: str = "automatic"
    engine: str | None = None
    scale: float | None = None
    presets: list[str] = Field(default_factory=list)
    diarize: bool | None = None
    speakers: int | None = None
    language: str | None = None
    subtitle_lang: str | None = Field(None, description="the burned-in text's language: auto or a code")


@dataclass(frozen=True)
class Refusal:
    """A row that will not start, and why, in words for the person who chose it."""

    index: int
    name: str
    reason: str


def kind_of_name(name: str) -> str | None:
    """video, audio or image as the name's extension says; None when it does not say (probed later)."""
    guessed = mimetypes.guess_type(name)[0] or ""
    kind = guessed.split("/")[0]
    return kind if kind in KIND_WORDS else None


@cache
def engines_here() -> dict[str, str]:
    """Engine -> why it cannot run on this host ('' when it can): gfpgan needs its package and weights."""
    import importlib.util

    from stages.enhance.settings import EnhanceSettings

    missing = {name: "" for name in ENGINES}
    if importlib.util.find_spec("gfpgan") is None:
        missing["gfpgan"] = "the gfpgan package is not installed here"
    else:
        missing["gfpgan"] = weights_missing(EnhanceSettings(engine="gfpgan"))
    return missing


def weights_missing(settings: EnhanceSettings) -> str:
    """What the page says of GFPGAN's weight files: '' when all are on disk, else the first one missing."""
    from core.errors import MissingModelFile
    from stages.enhance.engines.gfpgan import gfpgan_weights

    try:
        gfpgan_weights(settings)
    except MissingModelFile as exc:
        return f"its weights are missing ({exc.path.name})"
    return ""


def options(presets: dict[str, str], default_presets: list[str]) -> dict[str, Any]:
    """What the page offers: only what `check_choice` accepts."""
    here = engines_here()
    return {
        "jobs": [
            {"name": n, "label": label, "takes": sorted(kinds), "makes": makes}
            for n, (label, kinds, makes) in JOBS.items()
        ],
        "automatic": AUTOMATIC,
        "engines": [{"name": n, "description": d} for n, d in ENGINES.items() if not here[n]],
        "engines_missing": {n: why for n, why in here.items() if why},
        "scale": SCALE,
        "speakers": SPEAKERS,
        "languages": [{"code": c, "name": n} for c, n in LANGUAGES.items()],
        "subtitle_languages": [{"code": AUTO, "name": "told from the pixels"}]
        + [{"code": c, "name": lang.name} for c, lang in SUBTITLE_LANGUAGES.items()],
        "presets": [{"name": n, "description": d} for n, d in presets.items()],
        "default_presets": default_presets,
    }


def check_choice(choice: JobChoice, name: str, kind: str | None, known_presets: set[str]) -> list[str]:
    """The jobs this choice runs, or a JobRefused saying what is wrong with it in plain words."""
    if choice.job == "automatic":
        if kind is None:
            raise JobRefused(f"{name}: its kind is found once uploaded; choose a job for it")
        return AUTOMATIC[kind]
    if choice.job not in JOBS:
        raise JobRefused(f"{name}: there is no job called {choice.job!r}; choose one of {', '.join(JOBS)}")
    label, takes, _ = JOBS[choice.job]
    if kind is not None and kind not in takes:
        wanted = " or ".join(KIND_WORDS[k] for k in sorted(takes))
        raise JobRefused(f"{name} is {KIND_WORDS[kind]}: {label} needs {wanted}")
    _check_values(choice, name, known_presets)
    return [choice.job]


def _check_values(choice: JobChoice, name: str, known_presets: set[str]) -> None:
    if choice.job == "enhance":
        here = engines_here()
        if choice.engine is not None and choice.engine not in ENGINES:
            raise JobRefused(f"{name}: there is no engine called {choice.engine!r}")
        if choice.engine and here[choice.engine]:
            usable = " or ".join(n for n, why in here.items() if not why)
            raise JobRefused(f"{name}: the {choice.engine} engine cannot run here: {here[choice.engine]}; "
                             f"choose {usable}")  # fmt: skip
        low, high = SCALE["min"], SCALE["max"]
        if choice.scale is not None and not low <= choice.scale <= high:
            raise JobRefused(f"{name}: scale {choice.scale:g} is out of range: choose {low:g} to {high:g}")
    if choice.job == "transcode":
        unknown = sorted(set(choice.presets) - known_presets)
        if unknown:
            raise JobRefused(f"{name}: no rendition called {', '.join(unknown)}")
    if choice.job in ("subtitles", "fuse") and choice.subtitle_lang:
        if choice.subtitle_lang != AUTO and choice.subtitle_lang not in SUBTITLE_LANGUAGES:
            raise JobRefused(f"{name}: subtitle language {choice.subtitle_lang!r} is not offered; "
                             "leave it on auto")  # fmt: skip
    if choice.job == "fuse" and choice.speakers is not None:
        raise JobRefused(f"{name}: the fused job takes no number of speakers; tick speaker labels to have "
                         "them counted")  # fmt: skip
    if choice.job in ("transcribe", "fuse"):
        low, high = SPEAKERS["min"], SPEAKERS["max"]
        if choice.speakers is not None and not low <= choice.speakers <= high:
            raise JobRefused(f"{name}: {choice.speakers} speakers is out of range: give {low} to {high}, "
                             "or leave it empty to have them counted")  # fmt: skip
        if choice.language and choice.language not in LANGUAGES:
            raise JobRefused(f"{name}: language {choice.language!r} is not offered; leave it on detect")


class JobRefused(ValueError):
    """A row that cannot run: said before its upload, and again before any run starts."""


def plain_validation(errors: list[dict[str, Any]]) -> str:
    """FastAPI's validation list as a sentence: `row 1, scale: a number is needed`."""
    words = {"float_parsing": "a number is needed", "int_parsing": "a whole number is needed",
             "bool_parsing": "yes or no is needed", "missing": "missing"}  # fmt: skip
    said = []
    for error in errors:
        loc = [str(p) for p in error.get("loc", ()) if p != "body"]
        where = ", ".join(f"row {int(p) + 1}" if p.isdigit() else p for p in loc if p != "items")
        said.append(f"{where}: {words.get(error.get('type', ''), error.get('msg', 'not accepted'))}")
    return "; ".join(said)
