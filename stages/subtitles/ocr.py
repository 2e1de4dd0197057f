"""OCR engines behind one small interface, chosen by configuration.

`rapidocr` (PaddleOCR's PP-OCRv4 detector as ONNX, shipped in the wheel) is the offline default; its
recogniser is the one the subtitle language needs (stages/subtitles/languages.py: PP-OCRv6 for Han, kana
and Latin, or Tesseract with a Debian language pack). `paddleocr` is used where that package is installed
and pointed at local model directories. Both return OcrLine boxes in the coordinates of the image they were
given.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
from prefect import task

from core.caching import resumable
from core.errors import ConfigError
from core.model_service import served_model
from core.models import ModelKey, model_key, on_model_thread, release_freed_memory
from core.outputs import read_image
from core.schema import FrameText, KeyframeSet, OcrLine, StitchedBatch
from gpu.devices import GPU_CAPABLE_TAG
from stages.subtitles.band import WHOLE_FRAME
from stages.subtitles.languages import AUTO, DEFAULT, PP_OCRV4, Recogniser, language, spacing_of
from stages.subtitles.lead import read_lead
from stages.subtitles.ppocr import cuda_sessions, detect, detector_and_recogniser
from stages.subtitles.rows import lines_to_rows

DETECTIONS_KEPT = 64  # images whose text boxes an engine remembers (RapidOcrEngine._detect_quads): a
# language stage detects a few batches and a dozen rows before the batches are read


@dataclass(frozen=True)
class OcrSettings:
    """Engine choice and its local model paths; `device` comes from the GPU slot."""

    engine: str = "rapidocr"
    device: str = "cpu"
    det_model_dir: str | None = None  # paddleocr: local inference model folders
    rec_model_dir: str | None = None
    cls_model_dir: str | None = None
    lang: str = AUTO  # auto: the script is told from the pixels once per video (stages/subtitles/script.py);
    # or a code of stages/subtitles/languages.py: ch (Chinese+English), en, zh, ja, ko, ru, uk, fr...
    box_threshold: float = 0.5
    min_text_score: float = 0.5
    det_max_side: int = 1440  # detector input long side: stitched batches (<= 1400 px) are never shrunk;
    # at 960 the detector lost parts of 20-30 px lines on bright footage (fragments, one line -> 3 events)
    rec_min_height: int = 48  # line crops below this are upscaled (bicubic) before recognition
    cpu_threads: int = 1  # onnxruntime threads on CPU: 1 stays steady beside Prefect and other runs;
    # more threads spin-wait for cores others hold (measured 2.5 s steady vs 1.8-5.1 s with 2 on 2 cores)

    def __post_init__(self) -> None:
        if self.lang != AUTO:
            language(self.lang)  # an unknown code fails here, once, naming the known ones


class OcrEngine(Protocol):
    name: str

    def read(self, image: np.ndarray) -> list[OcrLine]:
        """Every text line in a BGR image, with its box and recognition confidence."""
        ...

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Text boxes only (no recognition): cheap, for finding the subtitle band."""
        ...

    def quads(self, image: np.ndarray) -> np.ndarray:
        """The detector's text quads (n x 4 x 2, image pixels), remembered for `read` of the same image."""
        ...

    def read_at(self, image: np.ndarray, quads: np.ndarray) -> list[OcrLine]:
        """`read` at given quads (recognition alone): another sample of a line already detected."""
        ...

    def read_line(self, crop: np.ndarray) -> tuple[str, float]:
        """Recognition alone of one line's crop (no detection): is a known line there?"""
        ...


def _quad_to_box(quad) -> tuple[int, int, int, int]:
    pts = np.asarray(quad, dtype=float).reshape(-1, 2)
    return (
        int(pts[:, 0].min()),
        int(pts[:, 1].min()),
        int(np.ceil(pts[:, 0].max())),
        int(np.ceil(pts[:, 1].max())),
    )


def upscale_line(crop: np.ndarray, min_height: int) -> np.ndarray:
    """A small line crop scaled up bicubically to `min_height`.

    The recogniser resizes every line to 48 px itself, but bilinearly: from ~18 px text that blurs the
    gaps between words and it drops the spaces ("gatheratthe"); a bicubic upscale first keeps them.
    """
    import cv2

    h = crop.shape[0]
    if h >= min_height or h == 0:
        return crop
    scale = min_height / h
    return cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), min_height), interpolation=cv2.INTER_CUBIC)


class RapidOcrEngine:
    """PP-OCR through rapidocr-onnxruntime: its PP-OCRv4 detector, the language's recogniser.

    Detection runs on a copy shrunk to `det_max_side` (subtitle text stays far above the detector's
    minimum size), recognition on full-resolution line crops: detection is most of the cost on a CPU.
    """

    name = "rapidocr"
    shared_calls = True  # calls at once are safe (onnxruntime sessions, `detect`, locks around the rest)

    def __init__(self, settings: OcrSettings) -> None:
        from core.packaged_models import ocr_model_file
        from stages.subtitles.tesseract import TesseractReader

        # CUDA sessions where onnxruntime can build them; else CPU ones (a GPU slot's too, on the onnxruntime
        # we install), on the settings' threads and without rapidocr's warnings that CUDA was asked for
        cuda = cuda_sessions(settings.device.startswith("cuda"))
        self.settings = settings
        self._detected: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._detected_lock = threading.Lock()
        lang = language(DEFAULT if settings.lang == AUTO else settings.lang)
        self.recogniser = lang.recogniser
        tesseract = self.recogniser.engine == "tesseract"
        self._lines = TesseractReader(self.recogniser.model, lang.debian) if tesseract else None
        rec = {}  # PP-OCRv4's recogniser is rapidocr-onnxruntime's own
        if not tesseract and self.recogniser != PP_OCRV4:
            rec = {"rec_model_path": str(ocr_model_file(self.recogniser.model))}
        threads = {} if cuda else {"intra_op_num_threads": settings.cpu_threads, "inter_op_num_threads": 1}
        self._ocr = detector_and_recogniser(
            with_recogniser=not tesseract,
            **threads,
            **rec,
            det_limit_type="max",
            det_box_thresh=settings.box_threshold,
            text_score=settings.min_text_score,
            det_use_cuda=cuda,
            rec_use_cuda=cuda,
        )

    def _detect_quads(self, image: np.ndarray) -> np.ndarray:
        """The detector's quads, remembered for the last few images: the language stage detects a window's
        first stitched batches and the OCR of the same batches reads them next (one detection, not two)."""
        key = (image.shape, hashlib.blake2b(np.ascontiguousarray(image).data, digest_size=16).digest())
        with self._detected_lock:
            if key in self._detected:
                return self._detected[key].copy()
        quads = self._run_detector(image)
        with self._detected_lock:
            self._detected[key] = quads.copy()
            while len(self._detected) > DETECTIONS_KEPT:
                self._detected.popitem(last=False)
        return quads

    def _run_detector(self, image: np.ndarray) -> np.ndarray:
        import cv2

        h, w = image.shape[:2]
        scale = min(1.0, self.settings.det_max_side / max(h, w))
        small = (
            image if scale == 1.0 else cv2.resize(image, (round(w * scale), round(h * scale)), cv2.INTER_AREA)
        )
        quads = detect(self._ocr.text_det, small)
        if quads is None or len(quads) == 0:
            return np.zeros((0, 4, 2), np.float32)
        return (np.asarray(quads, np.float32) / scale).astype(np.float32)

    def quads(self, image: np.ndarray) -> np.ndarray:
        return self._detect_quads(image)

    def read(self, image: np.ndarray) -> list[OcrLine]:
        return self.read_at(image, self._detect_quads(image))

    def read_at(self, image: np.ndarray, quads: np.ndarray) -> list[OcrLine]:
        if len(quads) == 0:
            return []
        if self._lines is not None:
            return self._read_rows(image, [_quad_to_box(q) for q in quads])
        crops = self._ocr.get_crop_img_list(image, list(quads))
        crops = [upscale_line(c, self.settings.rec_min_height) for c in crops]
        recognised, _ = self._ocr.text_rec(crops)
        lines = []
        for quad, (text, score, *_rest) in zip(quads, recognised, strict=True):
            if str(text).strip() and float(score) >= self.settings.min_text_score:
                lines.append(OcrLine(text=str(text).strip(), confidence=float(score), box=_quad_to_box(quad)))
        return lines

    def _read_rows(self, image: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> list[OcrLine]:
        """Tesseract reads whole rows (the detector's boxes on one row joined): it needs the word gaps."""
        lines = []
        for row in lines_to_rows([OcrLine("", 1.0, box) for box in boxes]):
            x0, y0, x1, y1 = row.box
            pad = max(2, (y1 - y0) // 8)
            crop = image[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad]
            text, score = self._lines.read_line(crop)
            if text and score >= self.settings.min_text_score:
                lines.append(OcrLine(text, score, row.box))
        return lines

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        return [_quad_to_box(q) for q in self._detect_quads(image)]

    def read_line(self, crop: np.ndarray) -> tuple[str, float]:
        if self._lines is not None:
            return self._lines.read_line(crop)
        recognised, _ = self._ocr.text_rec([upscale_line(crop, self.settings.rec_min_height)])
        text, score, *_rest = recognised[0]
        return str(text).strip(), float(score)

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()


class PaddleOcrEngine:
    """PaddleOCR with local model folders (it would otherwise download them, which cannot work offline)."""

    name = "paddleocr"

    def __init__(self, settings: OcrSettings) -> None:
        missing = [n for n in ("det_model_dir", "rec_model_dir") if not getattr(settings, n)]
        if missing:
            raise ConfigError(f"paddleocr engine needs local model folders: set {', '.join(missing)}")
        for name in ("det_model_dir", "rec_model_dir", "cls_model_dir"):
            folder = getattr(settings, name)
            if folder and not Path(folder).is_dir():
                raise ConfigError(f"paddleocr {name} {folder!r} is not a folder")
        try:
            from paddleocr import PaddleOCR
        except ImportError as exc:
            raise ConfigError(
                "paddleocr engine selected but paddleocr is not installed: "
                "pip install 'yivideo-flows[paddleocr]'"
            ) from exc
        self.settings = settings
        self._ocr = PaddleOCR(
            use_angle_cls=False,
            lang="ch" if settings.lang == AUTO else settings.lang,
            det_model_dir=settings.det_model_dir,
            rec_model_dir=settings.rec_model_dir,
            cls_model_dir=settings.cls_model_dir,
            use_gpu=settings.device.startswith("cuda"),
            det_limit_type="max",
            det_limit_side_len=settings.det_max_side,
            show_log=False,
        )

    def read(self, image: np.ndarray) -> list[OcrLine]:
        pages = self._ocr.ocr(image, cls=False) or []
        lines = []
        for quad, (text, score) in pages[0] or [] if pages else []:
            if str(text).strip() and score >= self.settings.min_text_score:
                lines.append(OcrLine(text=str(text).strip(), confidence=float(score), box=_quad_to_box(quad)))
        return lines

    def detect(self, image: np.ndarray) -> list[tuple[int, int, int, int]]:
        pages = self._ocr.ocr(image, rec=False, cls=False) or []
        return [_quad_to_box(q) for q in (pages[0] or [])] if pages else []

    def quads(self, image: np.ndarray) -> np.ndarray:
        """None remembered: PaddleOCR detects and recognises in one call, so a follower is detected alone."""
        return np.zeros((0, 4, 2), np.float32)

    def read_at(self, image: np.ndarray, quads: np.ndarray) -> list[OcrLine]:
        return self.read(image)

    def read_line(self, crop: np.ndarray) -> tuple[str, float]:
        pages = self._ocr.ocr(crop, det=False, cls=False) or []
        text, score = pages[0][0] if pages and pages[0] else ("", 0.0)
        return str(text).strip(), float(score)


ENGINES: dict[str, type] = {"rapidocr": RapidOcrEngine, "paddleocr": PaddleOcrEngine}


def recogniser_for(settings: OcrSettings) -> Recogniser:
    """The recogniser the language needs; "auto" builds today's default (the band stage only detects)."""
    return language(DEFAULT if settings.lang == AUTO else settings.lang).recogniser


def ocr_model_key(settings: OcrSettings) -> ModelKey:
    """Every OCR setting shapes the engine built from it (thresholds, sizes, threads, models); languages
    read by one recogniser share one engine (auto, ch, zh, ja, en all load PP-OCRv6)."""
    if settings.engine not in ENGINES:
        raise ConfigError(f"unknown OCR engine {settings.engine!r}; known: {', '.join(sorted(ENGINES))}")
    if settings.engine == "paddleocr":
        return model_key("ocr", settings, resolved={"model": settings.det_model_dir})
    rec = recogniser_for(settings)
    return model_key("ocr", settings, resolved={"model": "pp-ocrv4-det", "lang": f"{rec.engine}:{rec.model}"})


def load_ocr_engine(settings: OcrSettings) -> OcrEngine:
    """The resident engine for these settings: the host's model service's in a deployed run (loaded once per
    host), else this process's (loaded once per process)."""
    return served_model(ocr_model_key(settings), ENGINES[settings.engine], settings)


# ---------------------------------------------------------------- the OCR stage over stitched batches
REREAD_MISSES = 2  # a line whose keyframes read nothing at 1.5x this many times in a row gets no more second
# looks: a textured background the signal takes for a line kept 44 keyframes of one "line" on a real drama
# (…7489: 81 second looks of 97 keyframes, none reading anything); "嗯" and "（完）" on the
# footage corpus are read at their first second look. Whole frames (band source "frame") get none: they are
# read unscaled, not fitted to a band's 128-160 px; on the meme edit the second looks read only stray glyphs
# (T, U, 9, 二) and cost 34.2 -> 26.9 CPU s, its 25 lines read exactly either way


RESPACE_MARGIN = 0.125  # of the line's height, around the detector's box, for the glued-words re-read: on
# the German corpus case's batches it reads "Wir sehen uns" at 1/8, 1/4 and 1/2; the French and Spanish lines
# read alike at 1/8, while 1/4 and 1/2 lose letters ("Il a" -> "I a", "la" -> "a")


def respaces(settings: OcrSettings) -> bool:
    """Whether the OCR stage re-reads lines for glued words: PP-OCR lines of a language whose words are
    spaced and kept as read (fr, de, es...: the English repair mends en and ch; ja and zh have no spaces;
    Tesseract reads whole padded rows)."""
    return spacing_of(settings.lang) == "keep" and recogniser_for(settings).engine == "ppocr"


def respaced(line: OcrLine, strip: np.ndarray, engine: OcrEngine) -> str:
    """`line`'s text read again with a margin around its box where that reading has the same letters and
    more word spaces. The tight crop of the detector's box can glue words ("Wirsehen uns"); the margin
    alone can lose a letter at the edge, so only the spaces are taken from it."""
    x0, y0, x1, y1 = line.box
    pad = max(2, round((y1 - y0) * RESPACE_MARGIN))
    text, _ = engine.read_line(strip[max(0, y0 - pad) : y1 + pad, max(0, x0 - pad) : x1 + pad])
    if "".join(text.split()) == "".join(line.text.split()) and text.count(" ") > line.text.count(" "):
        return text
    return line.text


def recognize_batches(
    batches: list[StitchedBatch], keyframes: KeyframeSet, engine: OcrEngine, respace: bool = False
) -> list[FrameText]:
    """OCR each stitched batch once and give every keyframe its own lines back, a batch's followers (keyframes
    not stitched: stitch.py's `follows`) recognised at its quads (`read_follower`); `respace` (`respaces`)
    re-reads each line with a margin for the word spaces the tight crop glued (once per text read: the
    keyframes of one line mostly read alike)."""
    per_frame: dict[int, list[OcrLine]] = {kf.index: [] for kf in keyframes.frames}
    spaced: dict[str, str] = {}  # tight reading -> its reading with the margin's spaces

    def spaces_of(line: OcrLine, crop: np.ndarray) -> OcrLine:
        if not respace:
            return line
        if line.text not in spaced:
            spaced[line.text] = respaced(line, crop, engine)
        return replace(line, text=spaced[line.text])

    by_index = {kf.index: kf for kf in keyframes.frames}
    for batch in batches:
        image = read_image(batch.image_path, "stitched batch")
        rows = list(zip(batch.keyframe_indices, batch.y_offsets, batch.heights, strict=True))
        for line in engine.read(image):
            centre = (line.box[1] + line.box[3]) / 2
            for kf_index, top, height in rows:
                if top <= centre < top + height:
                    x0, y0, x1, y1 = line.box
                    own = OcrLine(line.text, line.confidence, (x0, y0 - top, x1, y1 - top))
                    per_frame[kf_index].append(spaces_of(own, image[top : top + height]))
                    break
        quads = engine.quads(image) if batch.followers else np.zeros((0, 4, 2), np.float32)  # from `read`
        for follower, leader, shift in batch.followers:
            top = next(top for index, top, _ in rows if index == leader)
            crop = read_image(by_index[follower].image_path, "band crop")
            lines = read_follower(engine, quads, crop, top, shift, len(per_frame[leader]))
            per_frame[follower] = [spaces_of(line, crop) for line in lines]
    misses: dict[int, int] = {}  # per on-screen line: second looks in a row that found nothing
    second_looks = keyframes.band.source != WHOLE_FRAME
    for kf in keyframes.frames:
        if second_looks and not per_frame[kf.index] and misses.get(kf.line, 0) < REREAD_MISSES:
            per_frame[kf.index] = reread_enlarged(kf.image_path, engine)
            misses[kf.line] = 0 if per_frame[kf.index] else misses.get(kf.line, 0) + 1
        if kf.lead and per_frame[kf.index]:
            per_frame[kf.index] = read_lead(kf.lead, per_frame[kf.index], engine, kf.image_path)
    return [
        FrameText(kf.index, kf.start, kf.end, lines_to_rows(per_frame[kf.index]), kf.line)
        for kf in keyframes.frames
    ]


def read_follower(
    engine: OcrEngine, quads: np.ndarray, crop: np.ndarray, top: int, shift: int, leader_lines: int
) -> list[OcrLine]:
    """A keyframe read at the quads detected in its leader's batch (`top`: the leader's row in the batch,
    `shift`: how many columns further right the same text sits in this crop). It is detected on its own
    where its leader read nothing or where a quad reads nothing here: the text may have moved or changed.
    `quads` come once per batch: through the model service each call ships the whole batch image."""
    height = crop.shape[0]
    centres = quads[:, :, 1].mean(axis=1) if len(quads) else np.zeros(0)
    mine = quads[(centres >= top) & (centres < top + height)] + np.float32([shift, -top])
    if leader_lines == 0 or len(mine) == 0:
        return engine.read(crop)
    mine[:, :, 0] = np.clip(mine[:, :, 0], 0, crop.shape[1] - 1)
    mine[:, :, 1] = np.clip(mine[:, :, 1], 0, height - 1)
    lines = engine.read_at(crop, mine)
    return lines if len(lines) >= leader_lines else engine.read(crop)


def reread_enlarged(crop_path: Path, engine: OcrEngine, scale: float = 1.5) -> list[OcrLine]:
    """A second look at a crop whose text signal was set but where the batch read nothing.

    The detector misses lone characters over textured footage ("嗯" on grass) at the batch scale and
    finds them at 1.5x; only such crops pay for the second pass. Boxes are mapped back to the crop.
    """
    import cv2

    image = read_image(crop_path, "band crop")
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    return [
        OcrLine(ln.text, ln.confidence, tuple(int(round(v / scale)) for v in ln.box))
        for ln in engine.read(big)
    ]


@task(
    name="ocr",
    task_run_name="ocr batch {number}/{total}",  # one task run per stitched batch: progress in the UI
    **resumable(),  # per batch: a re-run resumes after the last batch that finished
    tags=[GPU_CAPABLE_TAG],
)
def ocr_task(
    batch: StitchedBatch, keyframes: KeyframeSet, settings: OcrSettings, number: int = 1, total: int = 1
) -> list[FrameText]:
    """One stitched batch and its keyframes (`batch_keyframes`). GPU-capable: the resident engine (loaded
    once per process, or held by the host's model service in a deployed run) runs on the slot's device,
    inside the slot this run holds for this batch only."""
    from gpu.slot import gpu_slot

    with gpu_slot("ocr") as grant:
        engine = load_ocr_engine(replace(settings, device=grant.device))
        if number == 1:
            release_freed_memory()  # what this window's earlier stages freed in their threads' arenas
        return on_model_thread(engine, recognize_batches, [batch], keyframes, engine, respaces(settings))
