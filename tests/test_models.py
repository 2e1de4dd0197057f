"""Resident models are keyed by every setting that shapes the loaded object: no two settings share one."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter, deque
from dataclasses import fields, replace

import numpy as np
import pytest

from core import models
from core.models import evict, load_count, model_key
from stages.enhance.engines import ENGINES as ENHANCE_ENGINES
from stages.enhance.engines import enhance_model_key
from stages.enhance.settings import EnhanceSettings
from stages.speech.engines import AsrSettings, asr_model_key, load_asr_engine
from stages.subtitles.ocr import OcrSettings, load_ocr_engine, ocr_model_key


def changed(value: object) -> object:
    """Another value of the same kind (for every field type the settings classes use)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, tuple):
        return (*value, ("x", "y"))
    return f"{value or ''}other"


def variants(settings: object, names: set[str] | None = None):
    for f in fields(settings):
        if names is None or f.name in names:
            yield f.name, replace(settings, **{f.name: changed(getattr(settings, f.name))})


def test_model_key_takes_every_field_unless_told_and_rejects_unknown_names():
    key = model_key("ocr", OcrSettings())
    assert {name for name, _ in key.options} == {f.name for f in fields(OcrSettings)} - {"engine", "device"}
    with pytest.raises(ValueError, match="no field"):
        model_key("ocr", OcrSettings(), only={"det_max_side", "typo"})


@pytest.mark.parametrize("name", [f.name for f in fields(OcrSettings) if f.name != "engine"])
def test_every_ocr_setting_keys_the_engine(name):
    """The bug: det_max_side, cpu_threads, lang and cls_model_dir were left out of the key."""
    base = OcrSettings()
    value = "ko" if name == "lang" else changed(getattr(base, name))  # a code another recogniser reads
    other = replace(base, **{name: value})
    assert ocr_model_key(other) != ocr_model_key(base)


def test_languages_one_recogniser_reads_share_one_engine():
    """auto (the band and the language probe), ch, zh, ja and en all read with PP-OCRv6: one load a video."""
    keys = {ocr_model_key(OcrSettings(lang=code)) for code in ("auto", "ch", "zh", "ja", "en", "fr")}
    assert len(keys) == 1
    assert ocr_model_key(OcrSettings(lang="ko")) not in keys


def test_two_ocr_settings_load_two_engines_built_with_their_own_settings():
    small, large = OcrSettings(det_max_side=480), OcrSettings(det_max_side=1280, cpu_threads=2)
    evict()
    before = load_count("ocr", "rapidocr")
    first, second = load_ocr_engine(small), load_ocr_engine(large)
    assert first is not second and load_count("ocr", "rapidocr") == before + 2
    assert first.settings.det_max_side == 480 and second.settings.det_max_side == 1280
    assert load_ocr_engine(OcrSettings(det_max_side=480)) is first  # equal settings: resident
    frame = np.zeros((64, 256, 3), np.uint8)
    assert first.detect(frame) == [] and second.detect(frame) == []
    evict()


@pytest.mark.parametrize("engine", sorted(ENHANCE_ENGINES))
def test_every_setting_an_enhance_engine_loads_keys_it(engine):
    base = EnhanceSettings(engine=engine)
    loads = ENHANCE_ENGINES[engine].load_fields | {"device"}
    keys = {name: enhance_model_key(other) for name, other in variants(base, set(loads))}
    assert all(key != enhance_model_key(base) for key in keys.values()), keys


@pytest.mark.parametrize("engine", ["faster-whisper", "whisperx"])
def test_asr_settings_that_shape_the_model_key_it(engine):
    base = AsrSettings(engine=engine, model="tiny", device="cpu", compute_type="int8", cpu_threads=2)
    loads = {"model", "compute_type", "cpu_threads"} | (
        {"beam_size", "language", "vad_model"} if engine == "whisperx" else set()
    )
    for name, other in variants(base, loads):
        assert asr_model_key(other) != asr_model_key(base), name
    assert asr_model_key(replace(base, device="cuda:1")) != asr_model_key(replace(base, device="cuda:0"))


def test_an_engine_loads_only_the_models_it_calls_and_reads_as_rapidocr_does():
    """No angle classifier (lines are upright), and no PP-OCR recogniser where Tesseract reads (one recogniser
    for a Korean video, issue 22); the detector and recogniser built apart read what RapidOCR() reads with the
    same recogniser file (this also holds rapidocr-onnxruntime's config reading against its pin)."""
    import cv2
    from rapidocr_onnxruntime import RapidOCR

    from core.packaged_models import ocr_model_file
    from stages.subtitles.ocr import RapidOcrEngine

    korean = RapidOcrEngine(OcrSettings(lang="ko"))
    assert korean._ocr.text_rec is None and not hasattr(korean._ocr, "text_cls")
    english = RapidOcrEngine(OcrSettings(lang="en"))
    assert english._ocr.text_rec is not None and not hasattr(english._ocr, "text_cls")

    image = np.full((120, 640, 3), 30, np.uint8)
    cv2.putText(image, "Gate 5 closes at noon", (20, 75), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
    library = RapidOCR(rec_model_path=str(ocr_model_file(english.recogniser.model)))
    quads = english._detect_quads(image)
    read, _ = library.text_rec(library.get_crop_img_list(image, list(quads)))
    lines = english.read(image)
    assert [line.text for line in lines] == [text for text, *_ in read]
    assert " ".join(line.text for line in lines) == "Gate 5 closes at noon"


def test_the_detector_input_is_rapidocrs_own_tensor_made_faster():
    """The detector's normalisation by a byte table (float64 over every pixel was 4-9% of a detection) gives
    rapidocr's tensor bit for bit, and so the same boxes; other inputs go through rapidocr's own code."""
    import cv2
    from rapidocr_onnxruntime.ch_ppocr_det.utils import DetPreProcess

    from stages.subtitles.ocr import RapidOcrEngine

    engine = RapidOcrEngine(OcrSettings(lang="en"))
    detector = engine._ocr.text_det
    rng = np.random.default_rng(3)
    for shape in ((160, 1100, 3), (734, 720, 3), (1400, 1280, 3)):
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        ours = detector.get_preprocess(max(shape[:2]))
        theirs = DetPreProcess(ours.limit_side_len, ours.limit_type, detector.mean, detector.std)
        assert "normalize" in vars(ours), "the byte table, not the float64 arithmetic"
        made, want = ours(image), theirs(image)
        assert made.dtype == want.dtype == np.float32 and np.array_equal(made, want), shape
    floats = rng.random((32, 32, 3)).astype(np.float32)  # not bytes: the library's own arithmetic
    assert np.array_equal(
        detector.get_preprocess(32).normalize(floats), DetPreProcess(960, "max").normalize(floats)
    )
    image = np.full((120, 640, 3), 30, np.uint8)
    cv2.putText(image, "Gate 5 closes at noon", (20, 75), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
    from rapidocr_onnxruntime.ch_ppocr_det import TextDetector

    library = TextDetector.__new__(TextDetector)
    library.__dict__.update({k: v for k, v in detector.__dict__.items() if k != "get_preprocess"})
    assert np.array_equal(detector(image)[0], library(image)[0]) and len(detector(image)[0]) > 0
    from stages.subtitles.ppocr import detect  # the library's call, its preprocessing not kept on itself

    assert np.array_equal(detect(detector, image), library(image)[0])


def test_an_image_detected_once_is_not_detected_again_and_reads_the_same():
    """The language stage detects a window's first stitched batches and OCR reads the same batches next:
    the engine runs its detector once per image (it ran twice: ~0.4 CPU s a 720p batch), and what it
    remembers reads exactly as a fresh detection does, whoever changes the boxes it was handed."""
    import cv2

    from stages.subtitles.ocr import RapidOcrEngine

    engine, fresh = RapidOcrEngine(OcrSettings(lang="en")), RapidOcrEngine(OcrSettings(lang="en"))
    calls = []
    infer = engine._ocr.text_det.infer  # the detector's network: counted where it runs
    engine._ocr.text_det.infer = lambda tensor: calls.append(tensor.shape) or infer(tensor)
    image = np.full((120, 640, 3), 30, np.uint8)
    cv2.putText(image, "Gate 5 closes at noon", (20, 75), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (255, 255, 255), 3)
    boxes = engine.detect(image)
    engine._detect_quads(image)[:] = 0  # a caller scribbling on its boxes changes nothing remembered
    assert engine.read(image.copy()) == fresh.read(image) and boxes == fresh.detect(image)
    assert len(calls) == 1, "the second look at the same pixels reuses the first detection"
    other = image.copy()
    other[0, 0] = 31  # one pixel differs: another image, detected anew
    engine.detect(other)
    assert len(calls) == 2


def test_each_load_says_its_key_in_full_and_why(monkeypatch):
    """The model service's log and status name each load and its cause: a first load, or a reload and what
    dropped the model (over the resident cap, or unloaded when idle). Keys that differ only in a setting
    read apart (they all printed 'ocr:rapidocr:pp-ocrv4-det@cpu' before)."""
    monkeypatch.setenv("YIVIDEO_RESIDENT_MODELS_MB", "1")
    evict()
    # this process's history starts here: an earlier test in the same xdist worker had loaded and evicted the
    # Korean reader (its load said "reload"), and a full log (100 loads) leaves len() unchanged by a load
    for name, fresh in (("LOADS", deque(maxlen=100)), ("LOAD_COUNTS", Counter()), ("_dropped", {})):
        monkeypatch.setattr(models, name, fresh)
    chinese, korean = ocr_model_key(OcrSettings(lang="ch")), ocr_model_key(OcrSettings(lang="ko"))
    assert "lang=ppocr:pp-ocrv6-small" in str(chinese) and "lang=tesseract:kor" in str(korean)
    assert "det_max_side=1440" in str(chinese) and "det_model_dir" not in str(chinese)  # unset: not shown
    load_ocr_engine(OcrSettings(lang="ch"))
    load_ocr_engine(OcrSettings(lang="ko"))  # over the budget of 1 MB: the Chinese engine goes
    load_ocr_engine(OcrSettings(lang="ch"))
    evict(chinese, "unloaded after 300 s idle")
    load_ocr_engine(OcrSettings(lang="ch"))
    whys = [(key, why) for key, why, _ in models.LOADS]
    assert whys[1:] == [
        (str(korean), "first load"),
        (str(chinese), f"reload: evicted for {korean} (over 1 MB resident)"),
        (str(chinese), "reload: unloaded after 300 s idle"),
    ]
    assert whys[0][0] == str(chinese)
    evict()


def test_the_readers_the_probe_tries_do_not_push_out_a_pipelines_models(monkeypatch):
    """Issue 23: the language probe tries three Tesseract readers (kor, rus+ukr, ara) on a clip it cannot
    read; under the old cap of 4 models they pushed PP-OCRv6 out of a host that also held Whisper, and the
    next run loaded it again. By measured size (~190 MB in all) they fit the default budget: no reload."""
    for name in ("YIVIDEO_RESIDENT_MODELS_MB", "YIVIDEO_MAX_RESIDENT_MODELS"):
        monkeypatch.delenv(name, raising=False)
    evict()
    before = load_count()
    asr = AsrSettings(device="cpu")
    pipeline = [lambda: load_ocr_engine(OcrSettings(lang="ch")), lambda: load_asr_engine(asr)]
    held = [load() for load in pipeline]
    for code in ("ko", "ru", "ar"):
        load_ocr_engine(OcrSettings(lang=code))
    assert [load() for load in pipeline] == held and load_count() == before + 5, list(models.LOADS)[-6:]
    assert sum(map(models.resident_mb, models.resident_keys())) <= models.budget_mb()
    evict()


def test_the_budget_evicts_the_least_recently_used_models_past_it(monkeypatch):
    """Past YIVIDEO_RESIDENT_MODELS_MB the least recently used models go, by their measured size: with 60 MB,
    PP-OCRv6 (32) and the Korean reader (21) fit, the Russian one (21) pushes out the older of the two."""
    monkeypatch.setenv("YIVIDEO_RESIDENT_MODELS_MB", "60")
    evict()
    keys = {code: ocr_model_key(OcrSettings(lang=code)) for code in ("ch", "ko", "ru")}
    for code in ("ch", "ko"):
        load_ocr_engine(OcrSettings(lang=code))
    assert models.resident_keys() == [keys["ch"], keys["ko"]]
    load_ocr_engine(OcrSettings(lang="ch"))  # used again: the Korean reader is now the least recent
    load_ocr_engine(OcrSettings(lang="ru"))
    assert models.resident_keys() == [keys["ch"], keys["ru"]]
    evict()


HEAPS_AFTER_THREADS = """
import ctypes, os, sys, tempfile, threading
from runtime.runner import StageRunner
libc = ctypes.CDLL("libc.so.6")
libc.fopen.restype = ctypes.c_void_p
libc.fclose.argtypes = [ctypes.c_void_p]
libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
with StageRunner():
    started, stop, held = threading.Barrier(9), threading.Event(), []
    def stage():  # a task thread's C allocations while the others hold theirs
        held.append([bytearray(64 * 1024) for _ in range(50)])
        started.wait()
        stop.wait()
    threads = [threading.Thread(target=stage) for _ in range(8)]
    for t in threads:
        t.start()
    started.wait()
    path = os.path.join(tempfile.mkdtemp(), "heaps.xml")
    stream = libc.fopen(path.encode(), b"w")
    libc.malloc_info(0, stream)
    libc.fclose(stream)
    stop.set()
    for t in threads:
        t.join()
print(open(path).read().count("<heap nr="))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc arenas")
def test_a_process_running_stages_keeps_at_most_two_c_heaps():
    """Eight task threads allocating at once share two C heaps, not one each: each heap keeps the free pieces
    between its live blocks, and a 20-minute 720p run's memory grew with them (core.models.MALLOC_ARENAS)."""
    out = subprocess.run(
        [sys.executable, "-c", HEAPS_AFTER_THREADS], capture_output=True, text=True, timeout=120, check=True
    )
    assert int(out.stdout.split()[-1]) <= models.MALLOC_ARENAS, out.stdout
