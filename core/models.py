"""Resident models: loaded once per worker process, reused by every later run in that process.

Loading a model costs seconds and a request milliseconds, so engines ask `resident_model()` for their
model keyed by `model_key()`: the capability and every settings field that shapes the loaded object
(engine, model, device, threads, language, sizes...). The models held stay within a memory budget,
YIVIDEO_RESIDENT_MODELS_MB, each counted at its measured size (`resident_mb`): past it the least recently
used model not in a call (`holding`) is evicted; eviction closes the model and frees GPU memory.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import threading
import time
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, fields
from fnmatch import fnmatchcase
from functools import cache
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ModelKey:
    capability: str  # "ocr", "asr", "enhance", ...
    engine: str  # "rapidocr", "faster-whisper", ...
    model: str  # model name or local path
    device: str = "cpu"  # "cpu", "cuda", "cuda:1"
    options: tuple[tuple[str, Any], ...] = ()  # anything else that changes the loaded object

    def __str__(self) -> str:
        """The key as logs and the model service's status show it: every option set, so two keys that load
        different objects never read alike (the recogniser, thresholds, sizes, threads)."""
        shown = ",".join(f"{name}={value}" for name, value in self.options if value is not None)
        return f"{self.capability}:{self.engine}:{self.model}@{self.device}" + (f"[{shown}]" if shown else "")


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        items = [_hashable(v) for v in value]
        return tuple(sorted(items, key=repr) if isinstance(value, set | frozenset) else items)
    return value


def model_key(
    capability: str,
    settings: Any,
    *,
    only: Iterable[str] | None = None,
    per_run: Iterable[str] = (),
    resolved: Mapping[str, Any] | None = None,
) -> ModelKey:
    """The key of the model a settings dataclass loads, derived from its fields, not hand-listed.

    Every field is in the key unless `only` names the ones an engine loads, or `per_run` names ones used
    per request; so a field added to a settings class keys the model by default, and two settings that
    load different objects never share one. `resolved` replaces raw values by what is really loaded
    ("auto" -> "int8", a model name -> its folder). `engine`, `model` and `device` fill their own slots.
    """
    names = [f.name for f in fields(settings)]
    wanted = set(names if only is None else only) - set(per_run)
    unknown = (wanted | set(per_run)) - set(names)
    if unknown:
        raise ValueError(f"{type(settings).__name__} has no field(s) {sorted(unknown)}")
    values = {name: getattr(settings, name) for name in names if name in wanted}
    values.update(resolved or {})
    engine, model = str(values.pop("engine", "")), str(values.pop("model", "") or "")
    device = str(values.pop("device", "cpu"))
    return ModelKey(
        capability, engine, model, device, tuple(sorted((k, _hashable(v)) for k, v in values.items()))
    )


_models: OrderedDict[ModelKey, Any] = OrderedDict()
_key_locks: dict[ModelKey, threading.Lock] = {}
_registry_lock = threading.Lock()
_held: Counter[ModelKey] = Counter()  # calls running on each model: never evicted under them
LOAD_COUNTS: Counter[ModelKey] = Counter()
LOADS: deque[tuple[str, str, float]] = deque(maxlen=100)  # the last loads: key, why, seconds
_dropped: dict[ModelKey, str] = {}  # why a model loaded before is gone (the reason its next load gives)
_log = logging.getLogger("yivideo.models")

BUDGET_ENV, BUDGET_MB = "YIVIDEO_RESIDENT_MODELS_MB", 512
# What a model holds once loaded and called, by its key (first pattern that matches): RSS growth in a fresh
# process at its second load, after its first call and malloc_trim (bench/model_service.py --sizes, load 3-9;
# the first load of a kind also imports its libraries, never freed and not counted: +40 MB onnxruntime,
# +30 MB CTranslate2, +510 MB torch for the diarizer).
# The budget's default holds every packaged model at once (450 MB: a mixed host does not evict and reload),
# and a subtitles and speech pipeline's models (190 MB) are far below it. A model not measured counts as the
# whole default budget: it is never undercounted by more than its excess over that.
RESIDENT_MB: tuple[tuple[str, int], ...] = (
    # the PP-OCR detector + one Tesseract reader (kor 21, rus+ukr 14, ara 11 MB)
    ("ocr:rapidocr:*lang=tesseract:*", 21),
    ("ocr:rapidocr:*", 32),  # the PP-OCR detector + PP-OCRv6's recogniser
    ("asr:faster-whisper:*whisper-base-*", 113),  # the packaged base (int8 on the CPU)
    ("diarize:resemblyzer:*", 5),
    ("enhance:realesrgan-ncnn:waifu2x-photo@*", 8),
    ("enhance:realesrgan-ncnn:realesr-animevideov3@*", 10),
    ("enhance:realesrgan-ncnn:realesrgan-x4plus@*", 257),
    ("enhance:realesrgan-ncnn:realesrgan-x4plus-anime@*", 69),
)


def budget_mb() -> int:
    return max(1, int(os.environ.get(BUDGET_ENV, "") or BUDGET_MB))


def resident_mb(key: ModelKey) -> int:
    """The measured memory of the model `key` loads (RESIDENT_MB); the default budget if not measured."""
    text = str(key)
    return next((mb for pattern, mb in RESIDENT_MB if fnmatchcase(text, pattern)), BUDGET_MB)


def resident_model(key: ModelKey, loader: Callable[[], T]) -> T:
    """The model for `key`, loading it with `loader` only the first time in this process."""
    with _registry_lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one loader per key; other keys load concurrently
        with _registry_lock:
            if key in _models:
                return _models[key]
        started = time.monotonic()
        model = loader()
        seconds = time.monotonic() - started
        with _registry_lock:
            _models[key] = model
            why = _dropped.pop(key, "first load" if not LOAD_COUNTS[key] else "loaded again")
            LOAD_COUNTS[key] += 1
            LOADS.append((str(key), why, round(seconds, 2)))
            dropped = _over_budget(key)
        _release(dropped)
        _log.info("loaded %s (%d MB) in %.2f s: %s", key, resident_mb(key), seconds, why)
        return model


@contextmanager
def holding(key: ModelKey, loader: Callable[[], T]) -> Iterator[T]:
    """The resident model for `key` (loaded as by `resident_model`), never evicted while held: a small model
    loaded meanwhile pushes out idle ones, not the one a call runs on. The budget is kept again on release."""
    with _registry_lock:
        _held[key] += 1
    try:
        yield resident_model(key, loader)
    finally:
        with _registry_lock:
            _held[key] -= 1
            if not _held[key]:
                del _held[key]
            dropped = _over_budget(key)
        _release(dropped)


def _over_budget(keep: ModelKey) -> list[Any]:
    """Drop the least recently used models, not held nor `keep`, until the rest fit the budget (under
    _registry_lock; the caller releases what is returned outside it). Held models may exceed it meanwhile."""
    budget, dropped = budget_mb(), []
    used = sum(resident_mb(k) for k in _models)
    for old_key in [k for k in _models if k != keep and not _held[k]]:  # least recently used first
        if used <= budget:
            break
        dropped.append(_models.pop(old_key))
        used -= resident_mb(old_key)
        _dropped[old_key] = f"reload: evicted for {keep} (over {budget} MB resident)"
    return dropped


def evict(key: ModelKey | None = None, why: str = "evicted") -> int:
    """Drop one model (or all with None) and free its memory; returns how many were dropped. `why` is what
    its next load says (the load log tells first loads from reloads and their cause)."""
    with _registry_lock:
        keys = list(_models) if key is None else [key]
    return evict_keys(keys, why)


def evict_keys(keys: Iterable[ModelKey], why: str = "evicted") -> int:
    """Drop these models (those resident) and free their memory once for all (`evict`)."""
    keys = list(keys)  # outside the lock: an iterable that reads the registry would wait on it for good
    with _registry_lock:
        dropped = [_models.pop(k) for k in keys if k in _models]
        _dropped.update((k, f"reload: {why}") for k in keys if k in LOAD_COUNTS)
    count = len(dropped)
    _release(dropped)
    return count


def load_count(capability: str | None = None, engine: str | None = None) -> int:
    """How many loads happened in this process (tests and benches prove residency with it)."""
    return sum(
        n
        for k, n in LOAD_COUNTS.items()
        if (capability is None or k.capability == capability) and (engine is None or k.engine == engine)
    )


def resident_keys() -> list[ModelKey]:
    with _registry_lock:
        return list(_models)


def release_freed_memory() -> None:
    """Hand the free pages of the C heap back to the system (glibc's `malloc_trim`); a no-op elsewhere.

    A detector call on a stitched batch allocates and frees ~0.5 GB of tensors, and each Prefect task
    thread that calls it gets its own malloc arena, which keeps those pages: a 10-minute 720p run grew to
    3.7 GB RSS reading its batches on new threads, and stays near its models' size with a trim per batch.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


MALLOC_ARENAS = 2  # glibc's M_ARENA_MAX for a process that runs stages (see limit_malloc_arenas)


def limit_malloc_arenas() -> None:
    """At most MALLOC_ARENAS C heaps in this process (glibc's `mallopt(M_ARENA_MAX)`); a no-op elsewhere.

    Every Prefect task thread that allocates gets a heap of its own by default (up to 8 per core), and
    each heap keeps the free pieces between its live blocks, which `malloc_trim` cannot hand back: 20
    minutes of 720p grew from 585 to 632 MiB by tenths with the heaps' free bytes 93 -> 153 MB, and flat
    at 532-594 MiB with two heaps, the same CPU (bench/subtitles.py --hour, load 10-12). Set where a
    process starts running stages, before its task threads allocate."""
    libc = _libc()
    if libc is not None and hasattr(libc, "mallopt"):
        libc.mallopt(-8, MALLOC_ARENAS)  # M_ARENA_MAX (malloc.h)


@cache
def _libc() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
    return ctypes.CDLL(name) if name else None


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    return getattr(_libc(), "malloc_trim", None)


def _release(models: list[Any]) -> None:
    """Close what can be closed, then collect once and return cached CUDA memory to the driver: a full
    collection costs ~0.25 CPU s in a process with Prefect loaded, and the language stage drops the 3-5
    readers it tried together. Empties `models`: the caller's list holds the last references."""
    if not models:
        return
    while models:
        _close(models.pop())
    gc.collect()
    torch = sys.modules.get("torch")  # only if some engine already imported it
    if torch is not None and getattr(torch, "cuda", None) is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
    release_freed_memory()


def _close(model: Any) -> None:
    for closer in ("close", "unload_model", "release"):
        fn = getattr(model, closer, None)
        if callable(fn):
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort while freeing
                pass
            return


_model_threads: weakref.WeakKeyDictionary[Any, ThreadPoolExecutor] = weakref.WeakKeyDictionary()
_threads_guard = threading.Lock()


def on_model_thread(model: Any, call: Callable[..., R], *args: Any) -> R:
    """`call(*args)` on the resident model's own thread, one call at a time. Stages run as concurrent task
    runs (threads) sharing the model, whose sessions keep per-call state; one onnxruntime thread per engine
    is also the measured steady setting on a shared CPU (OcrSettings.cpu_threads). One thread is also one
    malloc arena: an OCR batch's detector tensors (~0.4 GB) are freed where the next batch allocates them
    again, so memory stays bounded without handing them back to the system after each batch (a batch on a
    new task thread kept them in that thread's arena: 3.7 GB at 10 minutes of 720p; a trim after each batch
    cost ~17 CPU s per 10 minutes faulting them in again)."""
    with _threads_guard:
        thread = _model_threads.get(model)
        if thread is None:
            thread = _model_threads[model] = ThreadPoolExecutor(1, thread_name_prefix="model")
    return thread.submit(call, *args).result()
