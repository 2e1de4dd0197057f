"""Per-video subtitle figures on the six shared real videos, stage functions called directly (no Prefect).

    .venv/bin/python bench/realvideo.py                 # all six: recall, precision, CER, exact, start/end
                                                        # error median and max, wall and CPU seconds
    .venv/bin/python bench/realvideo.py --stems …297    # those only (a suffix of the stem is enough)
    .venv/bin/python bench/realvideo.py --events        # also every event beside its key line
    .venv/bin/python bench/realvideo.py --cuts 100      # 100 five-second cuts, each scored against its
                                                        # part of the key; the imperfect ones printed
    .venv/bin/python bench/realvideo.py --languages --cuts 36 --batch-height 700
                                                        # the language stage only (no OCR), on the six
                                                        # and the cuts: each choice, refused or in doubt

The same stages in the same order as flows/subtitles.py (band, keyframes, crop, stitch, language, OCR,
postprocess), in one process, models loaded once before the first timing (the warm-up reads a frame of the
first video). The flow's own figures are tests/test_realvideo_subtitles.py; this is the per-video table
issue 21's closing note asks for, and where a change is measured before it is tested.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from samples.realvideo import (  # noqa: E402
    REALVIDEO_MISSING,
    REALVIDEO_STEMS,
    answer_key,
    cut_edges,
    cut_key,
    cut_realvideo,
    realvideo_available,
    realvideo_path,
)
from samples.scoring import SubtitleScore, pooled, score_subtitles  # noqa: E402

SCATTERED = "douyin_7625248139076178405_zh"
BATCH_HEIGHT: list[int] = []  # --batch-height: stitched batches this tall (default: stitch.MAX_BATCH_HEIGHT)
# (--languages takes several: each video's crops stitched and its language told at each height)


def run_video(
    video: Path, key: list, work: Path, optional: list = ()
) -> tuple[SubtitleScore, list, dict[str, float]]:
    """The flow's stages on one video; the score against its key, the events and seconds per stage. A
    script the flow would refuse raises MediaInputError, as the flow's language stage does. Events during
    an `optional` line (a cut's edges show it for a moment) are left out of the score."""
    from blocks.subtitles import SubtitleConfig
    from core.media import probe_media
    from stages.subtitles.band import WHOLE_FRAME
    from stages.subtitles.language_stage import resolve_language
    from stages.subtitles.languages import AUTO, spacing_of
    from stages.subtitles.ocr import load_ocr_engine, recognize_batches
    from stages.subtitles.postprocess import events_by_position, frames_to_events
    from stages.subtitles.stitch import batch_keyframes

    settings = SubtitleConfig()
    seconds: dict[str, float] = {}

    def timed(name: str, fn, *args):
        started = time.perf_counter()
        out = fn(*args)
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started
        return out

    info = probe_media(video)
    ocr = settings.ocr
    texts = []
    band, windows = stitched_windows(info, settings, work / video.stem, BATCH_HEIGHT[:1], timed)
    for crops, stitched in windows:
        batches = stitched[BATCH_HEIGHT[0] if BATCH_HEIGHT else None]
        if ocr.lang == AUTO and batches:
            choice = timed("language", resolve_language, batches, ocr, info.path)
            if not choice.supported:
                raise choice.refuse(info.path)
            ocr = replace(ocr, lang=choice.lang)
        engine = load_ocr_engine(ocr)
        for batch in batches:  # one batch a call with its keyframes, as the flow's OCR tasks read them
            texts += timed("ocr", recognize_batches, [batch], batch_keyframes(crops, batch), engine)
    post = replace(settings.postprocess, spacing=spacing_of(ocr.lang), simplified=ocr.lang == "ch")
    to_events = events_by_position if band.source == WHOLE_FRAME else frames_to_events
    events = timed("postprocess", to_events, texts, post)
    seconds["keyframes_kept"] = len(texts)
    scored = [e for e in events if not any(_is_reading_of(e, cue) for cue in optional)]
    return score_subtitles(key, scored), events, seconds


def _cpu_seconds() -> tuple[float, float]:
    """CPU seconds (user + system) of this process and of its finished children (ffmpeg): wall time says
    little on a shared machine, and the decodes are a third of a video's CPU."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def _untimed(name: str, fn, *args):  # noqa: ARG001 (the name a timed caller files the seconds under)
    return fn(*args)


def stitched_windows(info, settings, folder: Path, heights=(), timed=_untimed, first_only: bool = False):  # noqa: ANN001
    """The flow's stages up to stitch, as flows/subtitles.py runs them: the band, and the windows (only the
    first with `first_only`), each lazily as (its crops, {height: its batches stitched that tall}) for each
    of `heights` (px; none: the stage's default, keyed None). `timed(name, fn, *args)` runs each stage."""
    from stages.subtitles.area import detect_subtitle_band, signal_settings
    from stages.subtitles.crop import crop_keyframes
    from stages.subtitles.keyframes import extract_keyframes, video_windows
    from stages.subtitles.stitch import stitch_keyframes

    keys = settings.keyframes
    band = timed("band", detect_subtitle_band, info, settings.ocr, settings.area, None, signal_settings(keys))
    windows = video_windows(info.duration, keys.window_seconds)

    def each_window():
        for window in windows[:1] if first_only else windows:
            where = folder / f"{window[0]:08.1f}"
            keyframes = timed("keyframes", extract_keyframes, info, band, where, keys, window)
            crops = timed("crop", crop_keyframes, keyframes, where, keys)
            stitched = {}
            for height in heights or [None]:
                (where / str(height)).mkdir(parents=True, exist_ok=True)
                tall = [height] if height else []
                stitched[height] = timed("stitch", stitch_keyframes, crops, where / str(height), *tall)
            yield crops, stitched

    return band, each_window()


def _is_reading_of(event, cue) -> bool:  # noqa: ANN001 (an event, a key cue)
    """The event reads the cue: near it in time (0.3 s) and at most a third of its characters wrong."""
    from rapidfuzz.distance import Levenshtein

    from samples.scoring import squash

    near = event.start < cue.end + 0.3 and event.end > cue.start - 0.3
    text, ref = squash(event.text), squash(cue.text)
    return near and Levenshtein.distance(text, ref) <= max(1, len(ref) // 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stems", nargs="*", help="stems or their suffixes (default: all six)")
    parser.add_argument("--events", action="store_true", help="print every event beside the key")
    parser.add_argument("--cuts", type=int, default=0, help="instead: this many short cuts of the six")
    parser.add_argument("--cut-seconds", type=float, default=5.0, help="length of each cut")
    parser.add_argument("--batch-height", type=int, nargs="*", help="stitched batches this tall (px)")
    parser.add_argument("--languages", action="store_true", help="the language stage only: six and cuts")
    parser.add_argument("--damaged", action="store_true", help="the language of damaged real row sets")
    args = parser.parse_args()
    if not realvideo_available():
        raise SystemExit(REALVIDEO_MISSING)
    BATCH_HEIGHT[:] = args.batch_height or []
    if args.languages:
        return run_languages(args.cuts, args.cut_seconds)
    if args.damaged:
        return run_damaged()
    if args.cuts:
        return run_cuts(args.cuts, args.cut_seconds)
    stems = [s for s in REALVIDEO_STEMS if not args.stems or any(s.endswith(x) or x in s for x in args.stems)]
    from core.media import probe_media
    from stages.subtitles.language_stage import resolve_language  # noqa: F401  (imports its models' code)
    from stages.subtitles.ocr import OcrSettings, load_ocr_engine

    load_ocr_engine(OcrSettings(lang="ch"))  # warm: the model load is not a video's cost
    probe_media(realvideo_path(stems[0]))
    scores: dict[str, SubtitleScore] = {}
    total_cpu = 0.0
    with tempfile.TemporaryDirectory(prefix="realvideo-bench-") as tmp:
        for stem in stems:
            load = os.getloadavg()[0]
            wall0, cpu0 = time.perf_counter(), _cpu_seconds()
            score, events, seconds = run_video(realvideo_path(stem), answer_key(stem), Path(tmp))
            wall, (cpu, kids) = (
                time.perf_counter() - wall0,
                (a - b for a, b in zip(_cpu_seconds(), cpu0, strict=True)),
            )
            scores[stem] = score
            print(
                f"…{stem.removesuffix('_zh')[-4:]}  recall {score.recall:.2f}  "
                f"precision {score.precision:.2f}  "
                f"CER {score.cer:6.2%}  exact {score.exact_lines:.2f}  "
                f"start {score.median_start_error:.3f}/{score.max_start_error:.3f}  "
                f"end {score.median_end_error:.3f}/{score.max_end_error:.3f}  "
                f"({score.matched}/{score.truth}, {score.predicted} events)  "
                f"wall {wall:.1f} s  cpu {cpu:.1f} s + ffmpeg {kids:.1f} s  load {load:.1f}"
            )
            total_cpu += cpu + kids
            print("      " + "  ".join(f"{k} {v:.1f}" for k, v in seconds.items()))
            if args.events:
                for cue in answer_key(stem):
                    print(f"      key  {cue.start:6.2f}-{cue.end:6.2f}  {cue.text}")
                for e in events:
                    print(f"      got  {e.start:6.2f}-{e.end:6.2f}  {e.text!r}  {e.confidence:.3f}")
    print(f"CPU of the {len(stems)} videos: {total_cpu:.1f} s (this process and its ffmpeg children)")
    dramas = [s for stem, s in scores.items() if stem != SCATTERED]  # pooled as the test pools them
    if len(dramas) > 1:
        print(f"dramas pooled: {pooled(dramas).line()}")
    return 0


def run_cuts(count: int, seconds: float) -> int:
    """Short cuts, as users trim and send them (the offsets of bench/throughput.py: round-robin over the six,
    1.7 s apart), each scored against its part of the key; the imperfect ones are printed."""
    from core.errors import MediaInputError

    scores, refused, cpu0 = [], [], time.process_time()
    with tempfile.TemporaryDirectory(prefix="realvideo-cuts-") as tmp:
        for i, (stem, start) in enumerate(cut_starts(count, seconds)):
            clip = cut_realvideo(stem, start, seconds, Path(tmp) / f"cut-{i:03d}.mp4")
            key, name = cut_key(stem, start, seconds), f"…{stem.removesuffix('_zh')[-4:]} at {start:5.2f} s"
            edges = cut_edges(stem, start, seconds)
            try:
                score, events, _ = run_video(clip, key, Path(tmp), edges)
            except MediaInputError as exc:
                refused.append(name)
                print(f"{name}  refused: {exc}")
                continue
            scores.append(score)
            if score.matched < score.truth or score.predicted > score.matched or score.cer > 0:
                print(f"{name}  {score.line()}")
                print(f"      key {[c.text for c in key]}  got {[e.text for e in events]}")
    perfect = sum(s.matched == s.truth == s.predicted and s.cer == 0 for s in scores)
    cpu, load = time.process_time() - cpu0, os.getloadavg()[0]
    print(
        f"{count} cuts of {seconds:g} s: {perfect} read perfectly, {len(refused)} refused; "
        f"pooled {pooled(scores).line()}; CPU {cpu:.0f} s, load {load:.1f}"
    )
    return 0


def cut_starts(count: int, seconds: float) -> list[tuple[str, float]]:
    """The cuts' videos and starts (round-robin, 1.7 s apart), here and in bench/throughput.py."""
    from core.media import probe_media

    lengths = {stem: probe_media(realvideo_path(stem)).duration for stem in REALVIDEO_STEMS}
    stems = [REALVIDEO_STEMS[i % len(REALVIDEO_STEMS)] for i in range(count)]
    return [
        (stem, round((i // len(REALVIDEO_STEMS)) * 1.7 % max(0.1, lengths[stem] - seconds), 2))
        for i, stem in enumerate(stems)
    ]


def run_languages(cuts: int, seconds: float) -> int:
    """The flow's stages up to the language of the first window (no OCR), on the six and `cuts` cuts: each
    choice, whether it was refused or is in doubt, and the language stage's seconds (after a warm-up)."""
    from blocks.subtitles import SubtitleConfig
    from core.media import probe_media
    from stages.subtitles.language_stage import resolve_language
    from stages.subtitles.ocr import OcrSettings, load_ocr_engine

    settings = SubtitleConfig()
    load_ocr_engine(OcrSettings(lang="ch"))
    tally: dict[tuple[int | None, str], int] = {}
    with tempfile.TemporaryDirectory(prefix="realvideo-languages-") as tmp:
        items = [(stem, None) for stem in REALVIDEO_STEMS] + cut_starts(cuts, seconds)
        for n, (stem, start) in enumerate(items):
            video = realvideo_path(stem)
            if start is not None:
                video = cut_realvideo(stem, start, seconds, Path(tmp) / f"cut-{n:03d}.mp4")
            info = probe_media(video)
            _, windows = stitched_windows(
                info, settings, Path(tmp) / f"{n:03d}", BATCH_HEIGHT, first_only=True
            )
            for height, batches in next(windows)[1].items():
                load, started = os.getloadavg()[0], time.perf_counter()
                choice = resolve_language(batches, settings.ocr, info.path) if batches else None
                took = time.perf_counter() - started
                tag = "no batches" if choice is None else "REFUSED" if not choice.supported else (
                    "doubt" if choice.doubt else choice.lang)  # fmt: skip
                tally[(height, tag)] = tally.get((height, tag), 0) + 1
                name = f"…{stem.removesuffix('_zh')[-4:]}" + ("" if start is None else f" at {start:5.2f} s")
                reason = "" if choice is None else choice.reason[:120]
                took = f"{took:4.1f} s (load {load:.1f})"
                print(f"{name:<16} {height} px {len(batches):2d} batches {tag:<8} {took} {reason}")
    print(f"{len(items)} videos (six and {cuts} cuts), choices by batch height (px): {tally}")
    return 0


def run_damaged() -> int:
    """choose_language on every damaged row set of samples/damaged_rows.py: each choice that is not Chinese
    in doubt or read (a refusal, another reader or language), and the tally by damage."""
    from collections import Counter

    from samples.damaged_rows import damaged_row_sets
    from stages.subtitles.ocr import OcrSettings
    from stages.subtitles.script import choose_language, subtitle_rows

    settings = OcrSettings(lang="auto")
    sets = damaged_row_sets(lambda frames: subtitle_rows(frames, settings))
    tally: Counter[str] = Counter()
    started, load = time.perf_counter(), os.getloadavg()[0]
    for (stem, n, damage), rows in sets.items():
        choice = choose_language(rows, settings)
        tag = "REFUSED" if not choice.supported else "doubt" if choice.doubt else choice.lang
        tally[tag] += 1
        if tag not in ("doubt", "ch"):
            name = f"…{stem.removesuffix('_zh')[-4:]} set {n} {damage}"
            print(f"{name:<30} {len(rows):2d} rows {tag}: {choice.reason}")
    took = time.perf_counter() - started
    print(
        f"{len(sets)} damaged row sets: {dict(tally)}; {took:.0f} s, load {load:.1f}-{os.getloadavg()[0]:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
