"""rapidocr-onnxruntime's PP-OCR pipeline, built with only the parts this project calls, its detector's input
made in float32 (the same tensor, bit for bit)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator

import cv2
import numpy as np


def detector_and_recogniser(with_recogniser: bool, **options):
    """rapidocr-onnxruntime's pipeline holding only the parts this engine calls: the detector, and the
    recogniser where the language reads with PP-OCR (None where Tesseract reads).

    `RapidOCR()` always builds its angle classifier (never called: subtitle lines are upright) and its
    recogniser: a Korean or Russian video loaded two recognisers and a classifier for one (0.2 s + 13 MB and
    0.8 s + 38 MB a load, bench/ocr_languages.py --models). The config is read as RapidOCR reads it and
    `get_crop_img_list` is its own method (tests/test_models.py holds this against the pin).
    """
    from rapidocr_onnxruntime import main as rapid  # heavy: onnxruntime

    config = rapid.UpdateParameters()(
        rapid.update_model_path(rapid.read_yaml(rapid.DEFAULT_CFG_PATH)), **options
    )
    ocr = rapid.RapidOCR.__new__(rapid.RapidOCR)
    cuda = bool(options.get("det_use_cuda") or options.get("rec_use_cuda"))  # asked where cuda_sessions holds
    with contextlib.nullcontext() if cuda else _sessions_on_shared_arena():
        ocr.text_det = rapid.TextDetector(config["Det"])
        ocr.text_rec = rapid.TextRecognizer(config["Rec"]) if with_recogniser else None
    ocr.text_det.get_preprocess = _float32_preprocessing(ocr.text_det.get_preprocess)
    return ocr


def cuda_sessions(asked: bool) -> bool:
    """Whether the library will build CUDA sessions, by its own test (`OrtInferSession._check_cuda`): asked
    for, and an onnxruntime built for the GPU with the provider. A GPU slot asks for CUDA, but the
    `onnxruntime` package we install has none: rapidocr then builds CPU sessions, which belong on the arena
    and on the CPU threads the settings give, as any other."""
    import onnxruntime as ort

    return asked and ort.get_device() == "GPU" and "CUDAExecutionProvider" in ort.get_available_providers()


_ARENA_LOCK = threading.Lock()
_ARENA: list[bool] = []  # the process's shared onnxruntime CPU arena, registered once


@contextlib.contextmanager
def _sessions_on_shared_arena() -> Iterator[None]:
    """rapidocr's CPU sessions built, while inside, on onnxruntime's memory arena, one for the process,
    shared by every OCR session (rapidocr turns the arena off: each run allocated and freed its tensors
    anew, page faults included). Three engines reading real batches: 11.7 -> 9.8 CPU s, the same lines,
    peak RSS 874 -> 752 MB (an arena per session: 1870 MB). It keeps what it took, grown by powers of two:
    grown by what each run asked, batches of other sizes fragmented it (the 60 s 720p bench's 2nd run: 1029
    MB peak RSS, 723 by powers of two, 643 without an arena). CUDA sessions are left alone.
    The sessions plan no memory pattern: with one, the second run of an input shape allocated that plan's
    block (~260 MB for a 1300 x 1280 batch) beside the first run's chunks, free in the arena but cut to other
    sizes: the arena held both. Without it each run takes its tensors from the chunks the first one left
    (a 300 s window of 720p footage read alone: peak RSS 788 -> 549 MiB, OCR 22.3-22.9 CPU s either way).
    The options are the library's own with these three changed, given to the session it builds: building
    its session and then ours cost ~90 ms of a ~200 ms load (tests/test_subtitle_stages.py holds it)."""
    import onnxruntime as ort
    from rapidocr_onnxruntime.utils.infer_engine import OrtInferSession

    library = OrtInferSession.__dict__["_init_sess_opts"]

    def on_the_arena(config: dict) -> ort.SessionOptions:
        options = library.__func__(config)
        options.enable_cpu_mem_arena = True
        options.enable_mem_pattern = False
        options.add_session_config_entry("session.use_env_allocators", "1")
        return options

    with _ARENA_LOCK:  # also keeps the swapped method to one load at a time
        if not _ARENA:
            cpu = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            by_powers_of_two = ort.OrtArenaCfg({"arena_extend_strategy": 0})
            ort.create_and_register_allocator(cpu, by_powers_of_two)
            _ARENA.append(True)
        OrtInferSession._init_sess_opts = staticmethod(on_the_arena)
        try:
            yield
        finally:
            OrtInferSession._init_sess_opts = library


def detect(detector, image: np.ndarray) -> np.ndarray | None:
    """The detector's boxes for `image`, as `TextDetector.__call__` finds them, its preprocessing kept in a
    local: the library keeps it on the detector (sized by the image), so two calls at once on one detector
    (the model service's callers share it) could swap theirs."""
    shape = image.shape[:2]
    tensor = detector.get_preprocess(max(shape))(image)
    if tensor is None:
        return None
    boxes, _ = detector.postprocess_op(detector.infer(tensor)[0], shape)
    return detector.filter_tag_det_res(boxes, shape)


def _float32_preprocessing(make: Callable) -> Callable:
    """The detector's `get_preprocess` whose normalisation maps each byte through a 256-entry table.

    rapidocr normalises the resized image in float64 ((x * 1/255 - mean) / std over every pixel, then cast
    to float32): 10 ms of a 260 ms detection on a whole 720 x 734 frame, 120 ms of 1.3 s on a 1400 px batch.
    The table holds that same arithmetic for the 256 byte values, so the tensor is unchanged.
    """

    def get_preprocess(max_wh: int):
        op = make(max_wh)
        table = (np.arange(256, dtype="float32").reshape(256, 1) * op.scale - op.mean) / op.std
        table = np.ascontiguousarray(table.astype(np.float32).reshape(1, 256, -1))
        library = op.normalize

        def normalize(img: np.ndarray) -> np.ndarray:
            if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != table.shape[2]:
                return library(img)
            return cv2.LUT(img, table)

        op.normalize = normalize
        return op

    return get_preprocess
