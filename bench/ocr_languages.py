"""OCR per subtitle language: each candidate recogniser on the language corpus, and what auto-detection chose.

    .venv/bin/python bench/ocr_languages.py                 # every language, every candidate
    .venv/bin/python bench/ocr_languages.py --langs ja,ko   # some
    .venv/bin/python bench/ocr_languages.py --flow          # the whole flow per case (lang auto): CER, recall
    .venv/bin/python bench/ocr_languages.py --flow --langs ka,hy  # also scripts no model reads: the refusal
    .venv/bin/python bench/ocr_languages.py --models        # load time and resident memory per model
    .venv/bin/python bench/ocr_languages.py --lines         # the language of one line (2-3 frames) at a time
    .venv/bin/python bench/ocr_languages.py --cuts          # frames cut below 0-70%: the same verdict?

Candidates per case: PP-OCRv4 (rapidocr-onnxruntime), PP-OCRv6 small (rapidocr 3.10's wheel) and
Tesseract with the case's Debian language pack, all on the rows PP-OCRv4's detector finds in frames taken
at each subtitle's middle (samples/footage_languages.py). Prints CER (samples/scoring.squash), WER (its
words: glued words count), ms per row, load time and resident memory added by loading (each model loaded in
a fresh process).
`--models`: every OCR model on its own, one fresh process each (the ONNX files through onnxruntime, each
Tesseract language through tesserocr), then each language's engine as the flow loads it (PP-OCRv4 detector
and classifier + the language's recogniser): seconds and RSS added by the library import, by the load and
by the first read of a real subtitle row (onnxruntime sizes its arenas then).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# a language code that loads each ppocr model; PP-OCRv4's recogniser is no language's any more (its figures
# are in the README's table, measured while it read ch and en)
CANDIDATES = {"pp-ocrv6-small": "zh"}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def model_specs() -> list[tuple[str, str]]:
    """(label, spec) of every OCR model the languages use: each ONNX file, each installed Tesseract
    language, then each distinct engine."""
    from importlib.util import find_spec

    from core.packaged_models import _OCR_MODELS, ocr_model_file, tesseract_languages
    from stages.subtitles.languages import LANGUAGES

    wheel = Path(find_spec("rapidocr_onnxruntime").origin).parent  # PP-OCRv4 det, cls, rec
    onnx = sorted((wheel / "models").glob("*.onnx"))
    onnx += [ocr_model_file(name) for name in _OCR_MODELS]
    specs = [(f"onnx {path.stem}", f"onnx:{path}") for path in onnx]
    installed = tesseract_languages()
    specs += [(f"tesseract {lang}", f"tesseract:{lang}") for lang in sorted(installed) if lang != "eng"]
    engines: dict[object, str] = {}
    for code, lang in LANGUAGES.items():
        if lang.recogniser.engine == "ppocr" or lang.recogniser.model in installed:
            engines.setdefault(lang.recogniser, code)
    specs += [
        (f"engine {rec.engine} {rec.model} ({code})", f"engine:{code}") for rec, code in engines.items()
    ]
    return specs


def load_model(spec: str, row) -> dict:
    """One model in this (fresh) process: seconds and RSS MB added by import, load and the first read."""
    kind, name = spec.split(":", 1)
    figures, at = {"rss0": _rss_mb()}, time.perf_counter()

    def step(label: str) -> None:
        nonlocal at
        now, rss = time.perf_counter(), _rss_mb()
        figures[f"{label}_s"], figures[f"{label}_mb"] = now - at, rss - figures.get("rss", figures["rss0"])
        figures["rss"], at = rss, time.perf_counter()

    if kind == "onnx":
        import onnxruntime as ort

        step("import")
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1  # as OcrSettings.cpu_threads
        session = ort.InferenceSession(name, options, providers=["CPUExecutionProvider"])
        step("load")
        import numpy as np

        feed = session.get_inputs()[
            0
        ]  # an input of the size the engine feeds: a row, a classifier crop, a frame
        size = (48, 320) if "rec" in name else (48, 192) if "cls" in name else (640, 640)
        shape = [d if isinstance(d, int) else (1, 3, *size)[i] for i, d in enumerate(feed.shape)]
        session.run(None, {feed.name: np.random.default_rng(0).random(shape, dtype=np.float32)})
    elif kind == "tesseract":
        from stages.subtitles.tesseract import TesseractReader

        step("import")
        reader = TesseractReader(name)
        step("load")
        reader.read_line(row)
    else:
        import rapidocr_onnxruntime  # noqa: F401 - the libraries' cost apart from the models'
        import tesserocr  # noqa: F401

        from stages.subtitles.ocr import OcrSettings, RapidOcrEngine

        step("import")
        engine = RapidOcrEngine(OcrSettings(lang=name))
        step("load")
        engine.read(row)
    step("read")
    return figures


def print_models(media: Path) -> None:
    """The table of `--models`: each model loaded alone in a fresh process."""
    print("| model | import s | +MB | load s | +MB | first read s | +MB | RSS after, MB |")
    print("|---|---|---|---|---|---|---|---|")
    for label, spec in model_specs():
        r = _in_child("model", "-", spec)
        if "error" in r:
            print(f"| {label} | {r['error']} |")
            continue
        steps = " | ".join(f"{r[f'{k}_s']:.2f} | {r[f'{k}_mb']:.0f}" for k in ("import", "load", "read"))
        print(f"| {label} | {steps} | {r['rss']:.0f} |", flush=True)


def frames_at_events(video: Path, case) -> list[tuple[object, str]]:
    """The bottom third of the frame at each subtitle's middle, with the text shown."""
    import cv2
    import numpy as np

    from samples.footage import ass_plain_text

    out = []
    for event in case.events:
        raw = subprocess.run(
            ["ffmpeg", "-v", "error", "-ss", f"{(event.start + event.end) / 2:.2f}", "-i", str(video),
             "-frames:v", "1", "-f", "image2pipe", "-vcodec", "png", "-"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        out.append((image[int(image.shape[0] * 0.66) :], ass_plain_text(event.text)))
    return out


def measure(case_name: str, lang: str, media: Path) -> dict:
    """One recogniser (by language code) on one case, in this process: CER, speed, load time, memory."""
    from rapidfuzz.distance import Levenshtein

    from samples.footage import render_case
    from samples.footage_languages import language_case
    from samples.scoring import squash, word_errors, words
    from stages.subtitles.languages import language
    from stages.subtitles.ocr import OcrSettings, load_ocr_engine
    from stages.subtitles.rows import lines_to_rows
    from stages.subtitles.spacing import space_words

    case = language_case(case_name).case
    shots = frames_at_events(render_case(case, media), case)
    before, start = _rss_mb(), time.perf_counter()
    engine = load_ocr_engine(OcrSettings(lang=lang))
    load_s, load_mb = time.perf_counter() - start, _rss_mb() - before
    errors = chars = rows = word_edits = word_count = 0
    start, read = time.perf_counter(), []
    for image, truth in shots:
        lines = lines_to_rows(engine.read(image))
        rows += len(lines)
        text = space_words("\n".join(ln.text for ln in lines), language(lang).spaces)
        read.append(text)
        errors += Levenshtein.distance(squash(truth), squash(text))
        chars += len(squash(truth))
        word_edits, word_count = word_edits + word_errors(truth, text), word_count + len(words(truth))
    per_row = (time.perf_counter() - start) / max(1, rows)
    return {"cer": errors / max(1, chars), "wer": word_edits / max(1, word_count), "ms_row": 1000 * per_row,
            "load_s": load_s, "load_mb": load_mb, "read": read[:2]}  # fmt: skip


def detected(case_name: str, media: Path) -> str:
    """What auto-detection chose for the case (the flow's own stage function, on the same frames)."""
    from samples.footage import render_case
    from samples.footage_languages import language_case
    from stages.subtitles.ocr import OcrSettings
    from stages.subtitles.script import choose_language, subtitle_rows

    case = language_case(case_name).case
    images = [image for image, _ in frames_at_events(render_case(case, media), case)]
    start = time.perf_counter()
    choice = choose_language(subtitle_rows(images, OcrSettings()), OcrSettings())
    took = time.perf_counter() - start
    return f"{choice.lang}{'' if choice.supported else ' (unsupported)'} in {took:.1f}s: {choice.reason}"


def _in_child(*args: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True)
    if done.returncode:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_flow(cases, media: Path) -> None:
    import tempfile

    from flows.subtitles import extract_subtitles
    from samples.footage import render_case
    from samples.scoring import score_subtitles

    with tempfile.TemporaryDirectory() as out:
        for item in cases:
            start = time.perf_counter()
            try:
                result = extract_subtitles(str(render_case(item.case, media)), out)
                line = score_subtitles(item.case.truth(), list(result.events)).line()
                line += f"  {[event.text for event in result.events]}"
            except Exception as exc:  # noqa: BLE001 - the bench reports a refusal and goes on
                line = f"refused: {str(exc).splitlines()[0]}"
            print(f"{item.case.name:<20} {time.perf_counter() - start:5.1f}s  {line}", flush=True)


def verdict(choice) -> str:
    """A language choice in one word: "refused", "doubt" (read by the default reader, the reason says so) or
    the language it reads."""
    return "refused" if not choice.supported else "doubt" if choice.doubt else choice.lang


def run_lines(cases, media: Path) -> None:
    """The language stage on one line at a time, as a short clip gives it: each of a case's first four lines
    in two frames (0.2, 0.8 of its time) and in three (0.25, 0.5, 0.75); every choice that is not the case's
    language printed, then the tally per case."""
    from collections import Counter

    from samples.footage import render_case
    from samples.frames import frames_at
    from stages.subtitles.languages import language
    from stages.subtitles.ocr import OcrSettings
    from stages.subtitles.script import choose_language, subtitle_rows

    settings, tally, latin = OcrSettings(lang="auto"), Counter(), language("latin").recogniser
    for item in cases:
        video = render_case(item.case, media)
        for n, event in enumerate(item.case.events[:4]):
            for shares in ((0.2, 0.8), (0.25, 0.5, 0.75)):
                rows = subtitle_rows(frames_at(video, [event], shares), settings)
                choice = choose_language(rows, settings)
                tag = verdict(choice)
                own = tag == item.lang or (tag == "latin" and language(item.lang).recogniser == latin)
                tally[item.lang, "own" if own else tag] += 1  # fr, es, de: "latin" names their reading
                if not own:
                    print(f"{item.lang} line {n} {shares} {len(rows)} rows: {tag}: {choice.reason[:110]}")
    for lang in dict.fromkeys(lang for lang, _ in tally):
        print(lang, {tag: count for (code, tag), count in tally.items() if code == lang})
    print("all:", dict(Counter(tag for (_, tag) in tally.elements())))


CUTS = (0.0, 0.3, 0.5, 0.6, 0.7)  # shares of the frame's top left out: the band's crop moves rows by pixels


def run_cuts(cases, media: Path) -> None:
    """The language stage on the rows of each case's first four lines (12 frames, 0.2/0.5/0.8 of each time
    on screen, as test_ocr_languages' stage tests take them), the frames whole and cut below each share of
    CUTS: a verdict (the language read, refused, in doubt) that moves with the cut is what a user's framing
    could move too. Prints each choice, then each case's verdicts and the CPU s of the rows and the choice."""
    from samples.footage import render_case
    from samples.frames import frames_at
    from stages.subtitles.ocr import OcrSettings
    from stages.subtitles.script import choose_language, subtitle_rows

    settings = OcrSettings(lang="auto")
    for item in cases:
        frames = frames_at(render_case(item.case, media), item.case.events[:4], (0.2, 0.5, 0.8))
        verdicts = []
        for top in CUTS:
            start = time.process_time()
            rows = subtitle_rows([frame[round(top * frame.shape[0]) :] for frame in frames], settings)
            choice = choose_language(rows, settings)
            tag = verdict(choice)
            verdicts.append(f"{top:.1f}:{tag} ({time.process_time() - start:.1f} s)")
            print(f"  {item.lang} cut {top:.1f}: {len(rows)} rows, {tag}: {choice.reason[:110]}", flush=True)
        print(f"{item.lang:<3} {'reads' if item.supported else 'none':<5} " + "  ".join(verdicts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--langs", default="")
    parser.add_argument("--media", default="/tmp/yivideo-lang-media", help="where the corpus is rendered")
    parser.add_argument("--flow", action="store_true")
    parser.add_argument("--models", action="store_true", help="load time and memory of each model alone")
    parser.add_argument("--lines", action="store_true", help="the language of one line at a time")
    parser.add_argument("--cuts", action="store_true", help="the language of frames cut below 0-70%%")
    parser.add_argument("--child", nargs="+")
    args = parser.parse_args()
    media = Path(args.media)
    if args.child:
        kind, case_name, *rest = args.child
        if kind == "model":  # a real subtitle row: the French case's first line
            from samples.footage import render_case
            from samples.footage_languages import language_case

            case = language_case("fr").case
            image = frames_at_events(render_case(case, media), case)[0][0]
            result = load_model(rest[0], image[image.shape[0] // 2 :])
        elif kind == "measure":
            result = measure(case_name, rest[0], media)
        else:
            result = {"chose": detected(case_name, media)}
        print(json.dumps(result, ensure_ascii=False))
        return
    from core.packaged_models import tesseract_languages
    from samples.footage_languages import LANGUAGE_CASES, UNSUPPORTED_CASES
    from stages.subtitles.languages import language

    refusals = UNSUPPORTED_CASES if args.flow or args.cuts else ()  # scripts no model reads: the flow's
    known = LANGUAGE_CASES + refusals  # refusal, the stage's verdict; no candidates to measure
    cases = [c for c in known if not args.langs or c.lang in args.langs.split(",")]
    print(subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    if args.models:
        print_models(media)
        return
    if args.lines:
        run_lines(cases, media)
        return
    if args.cuts:
        run_cuts(cases, media)
        return
    if args.flow:
        from prefect.testing.utilities import prefect_test_harness

        with prefect_test_harness(server_startup_timeout=120):
            run_flow(cases, media)
        return
    for item in cases:
        name = item.case.name
        own = language(item.lang)
        langs = dict(CANDIDATES)
        if own.recogniser.engine == "tesseract" and own.recogniser.model in tesseract_languages():
            langs[f"tesseract {own.recogniser.model}"] = item.lang
        for label, lang in langs.items():
            r = _in_child("measure", name, lang)
            if "error" in r:
                print(f"{name:<20} {label:<16} {r['error']}")
                continue
            print(
                f"{name:<20} {label:<16} CER {r['cer']:6.1%}  WER {r['wer']:6.1%}  "
                f"{r['ms_row']:5.0f} ms/row  load {r['load_s']:4.2f}s +{r['load_mb']:4.0f} MB  {r['read']}",
                flush=True,
            )
        print(f"{name:<20} auto-detected: {_in_child('detect', name)['chose']}", flush=True)


if __name__ == "__main__":
    main()
